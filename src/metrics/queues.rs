//! The bus's queue depths as series (`healthmon_queue_messages`,
//! `healthmon_queue_consumers`, `healthmon_queue_capacity`), read from the
//! bus at scrape time.
//!
//! With a broker each read is a round trip, so an answer is kept for
//! [`FRESH_FOR`] and only one read runs at a time: a scrape storm (several
//! Prometheus servers, a dashboard refreshing) costs the broker one read a
//! second at most. A broker that does not answer within [`ASK_WITHIN`]
//! leaves the series out of the scrape (a gap in a graph, not a stale
//! number shown as fresh, and never a failed scrape), and says so once in
//! the log until it answers again.

use super::Metrics;
use crate::bus::{Bus, QueueDepth};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// How long one read of the depths is shown.
pub const FRESH_FOR: Duration = Duration::from_secs(1);
/// Longest a scrape waits for the broker's counts.
pub const ASK_WITHIN: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct QueueLabel {
    queue: std::borrow::Cow<'static, str>,
}

/// The queue series and the last read.
#[derive(Debug, Default)]
pub(super) struct Queues {
    pub(super) messages: Family<QueueLabel, Gauge>,
    pub(super) consumers: Family<QueueLabel, Gauge>,
    pub(super) capacity: Family<QueueLabel, Gauge>,
    /// When the depths were last read; held while a read runs, so
    /// concurrent scrapes wait for it instead of asking again.
    last_read: tokio::sync::Mutex<Option<Instant>>,
    /// Whether the last read failed and was logged.
    failing: AtomicBool,
    /// The queues shown, so one no longer read (a region gone) is removed.
    shown: std::sync::Mutex<Vec<QueueLabel>>,
}

fn gauge(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Queues {
    /// Shows `depths`, or no series at all for `None`. Series are set in
    /// place rather than cleared first, so a scrape encoding meanwhile
    /// never sees them half gone.
    pub(super) fn show(&self, depths: Option<&[QueueDepth]>) {
        let Some(depths) = depths else {
            self.messages.clear();
            self.consumers.clear();
            self.capacity.clear();
            return;
        };
        let labels: Vec<QueueLabel> = depths
            .iter()
            .map(|d| QueueLabel {
                queue: d.queue.clone(),
            })
            .collect();
        {
            let mut shown = self
                .shown
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for gone in shown.iter().filter(|l| !labels.contains(l)) {
                self.messages.remove(gone);
                self.consumers.remove(gone);
                self.capacity.remove(gone);
            }
            shown.clone_from(&labels);
        }
        for (d, label) in depths.iter().zip(labels) {
            self.messages.get_or_create(&label).set(gauge(d.messages));
            self.consumers.get_or_create(&label).set(gauge(d.consumers));
            if let Some(max) = d.capacity {
                self.capacity.get_or_create(&label).set(gauge(max));
            } else {
                self.capacity.remove(&label);
            }
        }
    }
}

impl Metrics {
    /// Reads the bus's queue depths into the series, unless the last read
    /// is under [`FRESH_FOR`] old.
    pub async fn read_queues(&self, bus: &Bus) {
        let q = &self.queues;
        let mut last = q.last_read.lock().await;
        if last.is_some_and(|t| t.elapsed() < FRESH_FOR) {
            return;
        }
        let depths = bus.queue_depths(ASK_WITHIN).await;
        match (&depths, q.failing.load(Ordering::Relaxed)) {
            (None, false) => {
                tracing::warn!(
                    wait_ms = ASK_WITHIN.as_millis() as u64,
                    "the message broker did not give its queue depths; /metrics leaves \
                     healthmon_queue_* out until it does"
                );
                q.failing.store(true, Ordering::Relaxed);
            }
            (Some(_), true) => {
                tracing::info!("the message broker gives its queue depths again");
                q.failing.store(false, Ordering::Relaxed);
            }
            _ => {}
        }
        q.show(depths.as_deref());
        *last = Some(Instant::now());
    }
}
