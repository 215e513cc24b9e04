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
    /// Days a sent or failed alert is kept before log maintenance deletes
    /// it; pending ones stay whatever their age.
    pub retention_days: u32,
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
            retention_days: 30,
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
    retention_days: i64,
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
            // At least 30 days (the longest remind_every_s): a reminder's
            // row must outlive its slot, or the sender would write it again.
            retention_days: in_range("alerts.retention_days", self.retention_days, 30, 36_500)?
                as u32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_with;

    fn load(pairs: &[(&str, &str)]) -> Result<AlertsSettings, ConfigError> {
        let env = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        load_with(None, &env).map(|s| s.alerts)
    }

    #[test]
    fn the_shipped_defaults_are_the_documented_ones() {
        assert_eq!(load(&[]).unwrap(), AlertsSettings::default());
        let d = AlertsSettings::default();
        assert_eq!(d.storm_threshold, 20);
        assert_eq!(d.storm_window, Duration::from_secs(60));
        assert_eq!(d.max_age, Duration::from_secs(86_400));
    }

    #[test]
    fn values_come_from_the_environment_and_bad_ones_name_their_key() {
        let s = load(&[
            ("HEALTHMON__ALERTS__STORM_THRESHOLD", "5"),
            ("HEALTHMON__ALERTS__CONCURRENCY", "2"),
        ])
        .unwrap();
        assert_eq!((s.storm_threshold, s.concurrency), (5, 2));
        for (key, value, named) in [
            (
                "HEALTHMON__ALERTS__STORM_THRESHOLD",
                "0",
                "alerts.storm_threshold",
            ),
            (
                "HEALTHMON__ALERTS__STORM_WINDOW_S",
                "0",
                "alerts.storm_window_s",
            ),
            ("HEALTHMON__ALERTS__MAX_AGE_S", "10", "alerts.max_age_s"),
            ("HEALTHMON__ALERTS__CONCURRENCY", "0", "alerts.concurrency"),
            (
                "HEALTHMON__ALERTS__HTTP_TIMEOUT_S",
                "0",
                "alerts.http_timeout_s",
            ),
            ("HEALTHMON__ALERTS__POLL_MS", "1", "alerts.poll_ms"),
            (
                "HEALTHMON__ALERTS__RETENTION_DAYS",
                "7",
                "alerts.retention_days",
            ),
        ] {
            let e = load(&[(key, value)]).unwrap_err().to_string();
            assert!(e.starts_with(named), "{key}={value}: {e}");
        }
    }
}
