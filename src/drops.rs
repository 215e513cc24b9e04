//! Checks that fell due but were never run, counted per cause.
//!
//! A dropped check leaves no log row, so without a count it shows only as a
//! gap. Each cause has a process-wide counter that only grows (what a
//! Prometheus counter, `/metrics`, can read with [`DroppedChecks::get`]),
//! and drops are logged at INFO, aggregated: at most one line per cause a
//! second ([`REPORT_EVERY`]), with the number dropped since the last line.
//! One line per job would flood the log exactly when the monitor is already
//! behind (after an outage, thousands of jobs go stale at once).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Why a due check was not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropCause {
    /// The job waited longer than its service's interval before a worker
    /// was free for it (workers saturated, or a backlog after a stall); the
    /// next slot's job is already on its way.
    StaleAtWorker,
    /// The scheduler woke more than an interval late (it was blocked on a
    /// full job queue, or starved of CPU) and skipped the slots it missed:
    /// one job for the latest, none for the others.
    SchedulerLate,
    /// The scheduler could not hand due jobs to the bus (the broker was away
    /// longer than the publish wait).
    BusUnavailable,
    /// The check was still running when the shutdown grace period ran out.
    Shutdown,
}

impl DropCause {
    /// Every cause, in a fixed order.
    pub const ALL: [DropCause; 4] = [
        DropCause::StaleAtWorker,
        DropCause::SchedulerLate,
        DropCause::BusUnavailable,
        DropCause::Shutdown,
    ];

    /// The cause's name in logs (and the label a metric will use).
    pub fn as_str(self) -> &'static str {
        match self {
            DropCause::StaleAtWorker => "stale_at_worker",
            DropCause::SchedulerLate => "scheduler_late",
            DropCause::BusUnavailable => "bus_unavailable",
            DropCause::Shutdown => "shutdown",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for DropCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How often at most a cause gets an INFO line.
pub const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Per-cause counters of dropped checks since the process started.
#[derive(Debug)]
pub struct DroppedChecks {
    counts: [AtomicU64; 4],
    /// What the last INFO line of each cause had counted up to.
    reported: [AtomicU64; 4],
    /// A report is scheduled and will pick up anything added meanwhile.
    report_pending: AtomicBool,
}

/// The process's counters.
pub static DROPPED: DroppedChecks = DroppedChecks::new();

impl DroppedChecks {
    /// Counters at zero.
    pub const fn new() -> Self {
        Self {
            counts: [const { AtomicU64::new(0) }; 4],
            reported: [const { AtomicU64::new(0) }; 4],
            report_pending: AtomicBool::new(false),
        }
    }

    /// Checks dropped for `cause` since the process started.
    pub fn get(&self, cause: DropCause) -> u64 {
        self.counts[cause.index()].load(Ordering::Relaxed)
    }

    /// Counts `n` checks dropped for `cause` without logging them (see
    /// [`record`] for the process's counters, which also log).
    pub fn add(&self, cause: DropCause, n: u64) {
        if n > 0 {
            self.counts[cause.index()].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// For each cause with drops since the last call: (cause, dropped since
    /// then, dropped in all). Marks them reported.
    pub fn take_unreported(&self) -> Vec<(DropCause, u64, u64)> {
        DropCause::ALL
            .into_iter()
            .filter_map(|cause| {
                let now = self.get(cause);
                let before = self.reported[cause.index()].swap(now, Ordering::Relaxed);
                (now > before).then(|| (cause, now - before, now))
            })
            .collect()
    }

    /// Logs what [`DroppedChecks::take_unreported`] returns, one INFO line
    /// per cause.
    pub fn report(&self) {
        for (cause, dropped, total) in self.take_unreported() {
            tracing::info!(
                dropped,
                %cause,
                total,
                "due checks dropped without running"
            );
        }
    }
}

impl Default for DroppedChecks {
    fn default() -> Self {
        Self::new()
    }
}

/// Counts `n` checks dropped for `cause` in the process's counters and makes
/// sure an INFO line reports them within [`REPORT_EVERY`]: the first drop
/// after a quiet spell schedules one report, which sums up every drop that
/// arrives before it runs.
pub fn record(cause: DropCause, n: u64) {
    if n == 0 {
        return;
    }
    DROPPED.add(cause, n);
    if DROPPED.report_pending.swap(true, Ordering::AcqRel) {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn(async {
                tokio::time::sleep(REPORT_EVERY).await;
                // Cleared before reading, so a drop counted after the read
                // schedules a report of its own.
                DROPPED.report_pending.store(false, Ordering::Release);
                DROPPED.report();
            });
        }
        // No runtime to wait on: report at once.
        Err(_) => {
            DROPPED.report_pending.store(false, Ordering::Release);
            DROPPED.report();
        }
    }
}

/// Reports at once whatever is not reported yet (at shutdown, so the last
/// drops are not lost with the pending report).
pub fn flush() {
    DROPPED.report();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_grow_per_cause_and_reports_carry_only_what_is_new() {
        let d = DroppedChecks::new();
        d.add(DropCause::StaleAtWorker, 3);
        d.add(DropCause::BusUnavailable, 2);
        d.add(DropCause::StaleAtWorker, 1);
        d.add(DropCause::Shutdown, 0);
        assert_eq!(d.get(DropCause::StaleAtWorker), 4);
        assert_eq!(d.get(DropCause::SchedulerLate), 0);
        assert_eq!(
            d.take_unreported(),
            [
                (DropCause::StaleAtWorker, 4, 4),
                (DropCause::BusUnavailable, 2, 2)
            ]
        );
        assert!(d.take_unreported().is_empty(), "nothing new since");
        d.add(DropCause::StaleAtWorker, 5);
        assert_eq!(d.take_unreported(), [(DropCause::StaleAtWorker, 5, 9)]);
        assert_eq!(
            d.get(DropCause::StaleAtWorker),
            9,
            "the counter never resets"
        );
    }

    #[test]
    fn cause_names_are_stable_labels() {
        let names: Vec<&str> = DropCause::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            names,
            [
                "stale_at_worker",
                "scheduler_late",
                "bus_unavailable",
                "shutdown"
            ]
        );
        assert_eq!(DropCause::SchedulerLate.to_string(), "scheduler_late");
    }
}
