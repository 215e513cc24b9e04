//! `[alerts]`: how the alert sender delivers the outbox.

use super::{ConfigError, in_range};
use serde::Deserialize;
use std::time::Duration;

/// `[alerts]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertsSettings {
    /// More alerts than this for one channel within `storm_window` are sent
    /// as one grouped message.
    pub storm_threshold: usize,
    /// The window storms are counted in.
    pub storm_window: Duration,
    /// How long an alert is retried after it was written; then it fails.
    pub max_age: Duration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Longest one HTTP delivery may take, response included.
    pub http_timeout: Duration,
    /// How often the outbox is polled when nothing wakes the sender.
    pub poll_interval: Duration,
    /// Bytes of a receiver's response that are read (then dropped).
    pub max_response_bytes: usize,
}

impl Default for AlertsSettings {
    fn default() -> Self {
        Self {
            storm_threshold: 20,
            storm_window: Duration::from_secs(60),
            max_age: Duration::from_secs(86_400),
            concurrency: 16,
            http_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_millis(250),
            max_response_bytes: 65_536,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlerts {
    storm_threshold: i64,
    storm_window_s: i64,
    max_age_s: i64,
    concurrency: i64,
    http_timeout_s: i64,
    poll_ms: i64,
    max_response_bytes: i64,
}

impl RawAlerts {
    pub(super) fn validate(self) -> Result<AlertsSettings, ConfigError> {
        Ok(AlertsSettings {
            storm_threshold: in_range("alerts.storm_threshold", self.storm_threshold, 1, 100_000)?
                as usize,
            storm_window: Duration::from_secs(in_range(
                "alerts.storm_window_s",
                self.storm_window_s,
                1,
                86_400,
            )? as u64),
            max_age: Duration::from_secs(in_range(
                "alerts.max_age_s",
                self.max_age_s,
                60,
                30 * 86_400,
            )? as u64),
            concurrency: in_range("alerts.concurrency", self.concurrency, 1, 1_024)? as usize,
            http_timeout: Duration::from_secs(in_range(
                "alerts.http_timeout_s",
                self.http_timeout_s,
                1,
                300,
            )? as u64),
            poll_interval: Duration::from_millis(in_range(
                "alerts.poll_ms",
                self.poll_ms,
                10,
                60_000,
            )? as u64),
            max_response_bytes: in_range(
                "alerts.max_response_bytes",
                self.max_response_bytes,
                0,
                16 << 20,
            )? as usize,
        })
    }
}
