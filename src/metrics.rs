//! Prometheus metrics: what `GET /metrics` serves (DESIGN.md, "Lists, tags,
//! metrics, ...").
//!
//! One [`Metrics`] per process, built by [`crate::app::App`] and handed to
//! the tasks that move its numbers (worker pool, scheduler, alert sender)
//! and to the HTTP state; nothing is global, so several monitors in one
//! process (tests) keep their own numbers. Every hook on a check's path is
//! a relaxed atomic add: no lock, no allocation, no label lookup (the
//! labelled counters are resolved once, here). The series read from
//! elsewhere (services by status, WebSocket clients, dropped checks, the
//! bus's queue depths) are read at scrape time instead of being kept up to
//! date.
//!
//! Each process exposes what it does: a worker-only process counts checks
//! and has no scheduler lag or services; an API-only one has the services
//! gauge and WebSocket clients but no checks.

mod queues;

pub use queues::{ASK_WITHIN, FRESH_FOR};

use crate::domain::Status;
use crate::domain::outbox::AlertEvent;
use crate::domain::time::Millis;
use crate::drops::{DROPPED, DropCause};
use crate::store::StatusCount;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The `Content-Type` of what [`Metrics::encode`] writes: the Prometheus
/// text format 0.0.4, which every Prometheus and `promtool` reads.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Upper bounds of `healthmon_check_duration_seconds`: from a loopback
/// answer to the longest timeout a check may have.
const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Upper bounds of `healthmon_schedule_lag_seconds`: a healthy scheduler
/// publishes within milliseconds; seconds mean it is blocked or starved.
const LAG_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The statuses `healthmon_services` has a series for, each scrape (a
/// status with no service is 0, not missing, so a graph does not break).
const SERVICE_STATUSES: [Status; 4] = [Status::Pending, Status::Up, Status::Degraded, Status::Down];

/// The alert events `healthmon_alerts_total` has a series for from the start.
const ALERT_KINDS: [AlertEvent; 7] = [
    AlertEvent::Down,
    AlertEvent::Up,
    AlertEvent::Degraded,
    AlertEvent::Reminder,
    AlertEvent::Test,
    AlertEvent::RegionImpaired,
    AlertEvent::RegionRecovered,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    kind: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabel {
    cause: &'static str,
}

/// What became of an alert delivery attempt, the `state` label of
/// `healthmon_alerts_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertState {
    /// Delivered (a 2xx, or mail accepted).
    Sent,
    /// Failed and given up on (a permanent error, or retried too long).
    Failed,
    /// Failed and to be tried again.
    Retried,
}

impl AlertState {
    fn as_str(self) -> &'static str {
        match self {
            AlertState::Sent => "sent",
            AlertState::Failed => "failed",
            AlertState::Retried => "retried",
        }
    }
}

/// A histogram kept in atomics: observing is two relaxed adds and a
/// search of a dozen bounds, so the check path never takes a lock
/// (prometheus-client's own histogram locks a mutex per observation).
#[derive(Clone, Debug)]
struct AtomicHistogram(Arc<HistogramInner>);

#[derive(Debug)]
struct HistogramInner {
    bounds: &'static [f64],
    /// One per bound, then the overflow (+Inf); not cumulative.
    counts: Box<[AtomicU64]>,
    /// Sum of the observations in microseconds (a u64 counts 584,000
    /// years of them).
    sum_us: AtomicU64,
}

impl AtomicHistogram {
    fn new(bounds: &'static [f64]) -> Self {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self(Arc::new(HistogramInner {
            bounds,
            counts,
            sum_us: AtomicU64::new(0),
        }))
    }

    fn observe(&self, value: Duration) {
        let seconds = value.as_secs_f64();
        let i = self.0.bounds.partition_point(|b| *b < seconds);
        if let Some(c) = self.0.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let us = u64::try_from(value.as_micros()).unwrap_or(u64::MAX);
        self.0.sum_us.fetch_add(us, Ordering::Relaxed);
    }
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = self
            .0
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.0.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        // The count is the buckets' sum, so a scrape racing an observation
        // still shows a +Inf bucket equal to the count.
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.0.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// The metrics of one process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    checks_up: Counter,
    checks_degraded: Counter,
    checks_down: Counter,
    check_duration: AtomicHistogram,
    schedule_lag: AtomicHistogram,
    in_flight: Gauge,
    ws_clients: Gauge,
    services: Family<StatusLabel, Gauge>,
    services_paused: Gauge,
    alerts: Family<AlertLabels, Counter>,
    dropped: Family<CauseLabel, Counter>,
    queues: queues::Queues,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every series registered, at zero.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let checks = Family::<ResultLabel, Counter>::default();
        let counter = |result| checks.get_or_create(&ResultLabel { result }).clone();
        let (checks_up, checks_degraded, checks_down) =
            (counter("up"), counter("degraded"), counter("down"));
        registry.register(
            "healthmon_checks",
            "Checks run by this process's workers, by result",
            checks,
        );
        let check_duration = AtomicHistogram::new(DURATION_BUCKETS);
        registry.register(
            "healthmon_check_duration_seconds",
            "Wall time of a check, from its start to its result",
            check_duration.clone(),
        );
        let schedule_lag = AtomicHistogram::new(LAG_BUCKETS);
        registry.register(
            "healthmon_schedule_lag_seconds",
            "How late the scheduler handed a job to the bus: publish time minus the time it was due",
            schedule_lag.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "healthmon_checks_in_flight",
            "Checks running now in this process",
            in_flight.clone(),
        );
        let ws_clients = Gauge::default();
        registry.register(
            "healthmon_ws_clients",
            "WebSocket clients connected to this process",
            ws_clients.clone(),
        );
        let services = Family::<StatusLabel, Gauge>::default();
        for status in SERVICE_STATUSES {
            drop(services.get_or_create(&StatusLabel {
                status: status_label(status),
            }));
        }
        registry.register(
            "healthmon_services",
            "Services that are not paused, by last status (read from the store at scrape time)",
            services.clone(),
        );
        let services_paused = Gauge::default();
        registry.register(
            "healthmon_services_paused",
            "Paused services (read from the store at scrape time)",
            services_paused.clone(),
        );
        let alerts = Family::<AlertLabels, Counter>::default();
        // Every pair at 0 from the start, so the family is served (an empty
        // one is left out of the text) and rate() has a series to start from.
        for kind in ALERT_KINDS {
            for state in [AlertState::Sent, AlertState::Failed, AlertState::Retried] {
                drop(alerts.get_or_create(&AlertLabels {
                    kind: kind.as_str().to_owned(),
                    state: state.as_str(),
                }));
            }
        }
        registry.register(
            "healthmon_alerts",
            "Alert delivery attempts by this process, by event kind (down, up, degraded, \
             reminder, test) and what became of them (sent, failed, retried)",
            alerts.clone(),
        );
        let dropped = Family::<CauseLabel, Counter>::default();
        for cause in DropCause::ALL {
            drop(dropped.get_or_create(&CauseLabel {
                cause: cause.as_str(),
            }));
        }
        registry.register(
            "healthmon_checks_dropped",
            "Checks that fell due but were never run, by cause",
            dropped.clone(),
        );
        let queues = queues::Queues::default();
        registry.register(
            "healthmon_queue_messages",
            "Messages waiting in the bus's queues (jobs, results, and with a broker dead), read \
             at scrape time: in-process one job or result each, on RabbitMQ the ready messages \
             of the shared queue, each up to 32 jobs or 64 results",
            queues.messages.clone(),
        );
        registry.register(
            "healthmon_queue_consumers",
            "Consumers taking from each of the bus's queues, read at scrape time",
            queues.consumers.clone(),
        );
        registry.register(
            "healthmon_queue_capacity",
            "Most messages each bounded queue of the bus holds",
            queues.capacity.clone(),
        );
        Self {
            registry,
            checks_up,
            checks_degraded,
            checks_down,
            check_duration,
            schedule_lag,
            in_flight,
            ws_clients,
            services,
            services_paused,
            alerts,
            dropped,
            queues,
        }
    }

    /// Counts a check as running until the returned guard is dropped (also
    /// when its task is cancelled at shutdown).
    pub fn check_started(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight(&self.in_flight)
    }

    /// Counts a finished check by its result and how long it took.
    pub fn check_done(&self, status: Status, took: Duration) {
        let counter = match status {
            Status::Up => &self.checks_up,
            Status::Degraded => &self.checks_degraded,
            Status::Down => &self.checks_down,
            // A worker never reports PENDING.
            Status::Pending => return,
        };
        counter.inc();
        self.check_duration.observe(took);
    }

    /// Notes the lag of each job handed to the bus at `published`, given
    /// the times they were due.
    pub fn jobs_published(&self, due: &[Millis], published: Millis) {
        for at in due {
            let late = u64::try_from(published.saturating_sub(*at)).unwrap_or(0);
            self.schedule_lag.observe(Duration::from_millis(late));
        }
    }

    /// Counts alert delivery attempts: one per alert of `events` (their
    /// event kinds), as `state`.
    pub fn alerts<'a>(&self, events: impl IntoIterator<Item = &'a str>, state: AlertState) {
        for kind in events {
            self.alerts
                .get_or_create(&AlertLabels {
                    kind: kind.to_owned(),
                    state: state.as_str(),
                })
                .inc();
        }
    }

    /// Sets the services gauge from the store's grouped count.
    pub fn set_services(&self, counts: &[StatusCount]) {
        let mut paused = 0;
        let mut by_status = [0i64; SERVICE_STATUSES.len()];
        for c in counts {
            if c.paused {
                paused += c.count;
            } else if let Some(i) = SERVICE_STATUSES
                .iter()
                .position(|s| s.as_str().eq_ignore_ascii_case(&c.status))
            {
                by_status[i] += c.count;
            }
        }
        for (status, n) in SERVICE_STATUSES.iter().zip(by_status) {
            self.services
                .get_or_create(&StatusLabel {
                    status: status_label(*status),
                })
                .set(n);
        }
        self.services_paused.set(paused);
    }

    /// Sets the WebSocket clients gauge.
    pub fn set_ws_clients(&self, n: usize) {
        self.ws_clients.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Writes every series in the Prometheus text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        // The drop counters are process-wide (crate::drops) and only grow;
        // they are copied in here rather than hooked twice.
        for cause in DropCause::ALL {
            let counter = self.dropped.get_or_create(&CauseLabel {
                cause: cause.as_str(),
            });
            let (now, shown) = (DROPPED.get(cause), counter.get());
            if now > shown {
                counter.inc_by(now - shown);
            }
        }
        let mut out = String::with_capacity(4096);
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// The `status` label of a status: lower case, as in the API's JSON.
fn status_label(status: Status) -> &'static str {
    match status {
        Status::Pending => "pending",
        Status::Up => "up",
        Status::Degraded => "degraded",
        Status::Down => "down",
    }
}

/// A running check, counted in `healthmon_checks_in_flight` while it lives.
#[derive(Debug)]
pub struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix} in\n{text}"))
    }

    #[test]
    fn checks_count_by_result_and_the_histogram_is_cumulative() {
        let m = Metrics::new();
        {
            let _a = m.check_started();
            let _b = m.check_started();
            let text = m.encode().expect("encode");
            assert_eq!(
                line(&text, "healthmon_checks_in_flight "),
                "healthmon_checks_in_flight 2"
            );
        }
        m.check_done(Status::Up, Duration::from_millis(3));
        m.check_done(Status::Up, Duration::from_millis(300));
        m.check_done(Status::Down, Duration::from_secs(120));
        let text = m.encode().expect("encode");
        assert_eq!(
            line(&text, "healthmon_checks_in_flight "),
            "healthmon_checks_in_flight 0"
        );
        assert!(
            text.contains("healthmon_checks_total{result=\"up\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("healthmon_checks_total{result=\"degraded\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("healthmon_checks_total{result=\"down\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("healthmon_check_duration_seconds_bucket{le=\"0.005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("healthmon_check_duration_seconds_bucket{le=\"0.5\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("healthmon_check_duration_seconds_bucket{le=\"60\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("healthmon_check_duration_seconds_bucket{le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("healthmon_check_duration_seconds_count 3\n"),
            "{text}"
        );
        assert!(
            text.contains("healthmon_check_duration_seconds_sum 120.303\n"),
            "{text}"
        );
    }

    #[test]
    fn services_by_status_leave_paused_ones_out_and_show_zeros() {
        let m = Metrics::new();
        let count = |paused, status: &str, count| StatusCount {
            paused,
            status: status.into(),
            count,
        };
        m.set_services(&[
            count(false, "UP", 3),
            count(true, "UP", 2),
            count(false, "DOWN", 1),
        ]);
        let text = m.encode().expect("encode");
        assert!(
            text.contains("healthmon_services{status=\"up\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("healthmon_services{status=\"down\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("healthmon_services{status=\"pending\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("healthmon_services_paused 2\n"), "{text}");
        // A later scrape with no DOWN service says 0, not the old 1.
        m.set_services(&[count(false, "UP", 4)]);
        let text = m.encode().expect("encode");
        assert!(
            text.contains("healthmon_services{status=\"down\"} 0\n"),
            "{text}"
        );
    }

    #[test]
    fn lag_and_alerts_are_labelled() {
        let m = Metrics::new();
        m.jobs_published(&[1_000, 1_990], 2_000);
        m.alerts(["down", "down", "up"], AlertState::Sent);
        m.alerts(["down"], AlertState::Retried);
        let text = m.encode().expect("encode");
        assert!(
            text.contains("healthmon_schedule_lag_seconds_bucket{le=\"0.01\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("healthmon_schedule_lag_seconds_bucket{le=\"1\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("healthmon_alerts_total{kind=\"down\",state=\"sent\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("healthmon_alerts_total{kind=\"up\",state=\"sent\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("healthmon_alerts_total{kind=\"down\",state=\"retried\"} 1\n"),
            "{text}"
        );
    }
}
