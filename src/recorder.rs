//! The recorder: takes results from the bus, writes them in batches (one
//! transaction per batch: logs, statuses by the services' thresholds,
//! transitions and their alerts' outbox rows), then publishes the events
//! the store reports, asks the scheduler to retry services whose failure
//! is not confirmed yet, and acknowledges the results.
//!
//! A batch closes when it is full or `flush_ms` after its first result, so
//! a result waits at most that long. A failed write is retried with backoff
//! and nothing is acknowledged until it commits: with a broker, results are
//! never lost to a database outage; in-process they wait in the bounded
//! channel, which pushes back on the workers.
//!
//! Each committed status change is logged at INFO with its reason, at most
//! a bounded number a second ([`changes`]).
//!
//! A regional service's results are votes ([`rounds`], [`regional`]): each
//! is logged with its region as it comes, and once its round closes (every
//! live, not impaired region answered, or `timeout + 5 s` after it was
//! due) the round's verdict is recorded as one more result, without a
//! region, which alone moves the status, thresholds and alerts.

pub mod changes;
pub mod regional;
pub mod rounds;

use crate::bus::{Bus, BusError, Delivery};
use crate::domain::CheckResult;
use crate::domain::event::ScheduleUpdate;
use crate::store::Store;
use changes::ChangeLog;
use regional::Regional;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Batching limits.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Most results per transaction.
    pub max_batch: usize,
    /// Longest a result waits for its batch.
    pub max_wait: Duration,
}

/// Write attempts for the last batch once shutdown has begun.
const FINAL_ATTEMPTS: u32 = 3;

/// Runs until `drain` is cancelled, then writes what is still queued and
/// returns. `drain` must fire only after the workers have stopped.
pub async fn run(
    store: Store,
    bus: Bus,
    limits: BatchLimits,
    drain: CancellationToken,
) -> Result<(), BusError> {
    let mut results = bus.consume_results()?;
    let max_batch = limits.max_batch.max(1);
    let mut batch: Vec<Delivery<CheckResult>> = Vec::with_capacity(max_batch);
    let mut sink = Sink {
        regional: Regional::new(&bus),
        changes: ChangeLog::default(),
        store,
        bus,
        drain: drain.clone(),
    };
    loop {
        let summary_due = sink.changes.due();
        let wake = sink.regional.next_wake();
        let first = tokio::select! {
            () = drain.cancelled() => None,
            d = results.next() => d,
            // A round's deadline, or the recorder's heartbeat.
            () = sleep_ms(wake) => {
                sink.settle(false).await;
                continue;
            }
            // A storm's summary is written when its second is over, not
            // only when the next change arrives.
            () = sleep_until(summary_due), if summary_due.is_some() => {
                sink.changes.flush_due();
                continue;
            }
        };
        let Some(first) = first else {
            // Shutting down: everything already queued goes in final batches.
            while let Some(d) = results.try_next() {
                batch.push(d);
                if batch.len() == max_batch {
                    sink.write(&mut batch).await;
                }
            }
            sink.write(&mut batch).await;
            // Open rounds are judged on what they have: a verdict with
            // enough answers is not lost to the restart.
            sink.settle(true).await;
            sink.changes.flush();
            return Ok(());
        };
        batch.push(first);
        let deadline = Instant::now() + limits.max_wait;
        while batch.len() < max_batch {
            if let Some(d) = results.try_next() {
                batch.push(d);
                continue;
            }
            match tokio::time::timeout_at(deadline, results.next()).await {
                Ok(Some(d)) => batch.push(d),
                Ok(None) | Err(_) => break,
            }
        }
        sink.write(&mut batch).await;
    }
}

/// Sleeps until `at` (epoch ms).
async fn sleep_ms(at: crate::domain::time::Millis) {
    let wait = at.saturating_sub(crate::domain::time::now_ms()).max(0);
    tokio::time::sleep(Duration::from_millis(wait as u64)).await;
}

/// Sleeps until `at` (the caller only polls this with `Some`).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Where results go: the store, the bus, and what the recorder keeps
/// between batches.
struct Sink {
    store: Store,
    bus: Bus,
    drain: CancellationToken,
    changes: ChangeLog,
    regional: Regional,
}

impl Sink {
    /// Beats, closes the rounds that are due (all with `all`), publishes the
    /// impaired regions' changes and records the verdicts.
    async fn settle(&mut self, all: bool) {
        let (store, bus, regional) = (&self.store, &self.bus, &mut self.regional);
        regional.beat(bus).await;
        let settled = regional.close(store, all).await;
        if !settled.events.is_empty()
            && let Err(e) = bus.publish_events(&settled.events).await
        {
            tracing::warn!(error = %e, "cannot publish a region's change");
        }
        if regional.write_alerts(store).await {
            crate::alert::sender::outbox_written();
        }
        self.commit(&settled.verdicts).await;
    }

    /// Writes a batch, retrying until it commits (or, once draining, a few
    /// times), then logs its status changes, publishes its events,
    /// acknowledges its results, and counts its votes in their rounds.
    async fn write(&mut self, batch: &mut Vec<Delivery<CheckResult>>) {
        if batch.is_empty() {
            return;
        }
        let results: Vec<CheckResult> = batch.iter().map(|d| d.msg.clone()).collect();
        if !self.commit(&results).await {
            batch.clear();
            return;
        }
        for delivery in batch.drain(..) {
            if let Err(e) = delivery.ack().await {
                tracing::warn!(error = %e, "cannot acknowledge a result");
            }
        }
        if results.iter().any(|r| r.region.is_some()) {
            self.regional.take(&self.store, &results).await;
            self.settle(false).await;
        }
    }

    /// Records results, retrying until they commit (or, once draining, a few
    /// times: then false), then logs their status changes, publishes their
    /// events and asks for the retries of unconfirmed failures.
    async fn commit(&mut self, results: &[CheckResult]) -> bool {
        let (store, bus, drain, changes) = (&self.store, &self.bus, &self.drain, &mut self.changes);
        if results.is_empty() {
            return true;
        }
        let mut backoff = Duration::from_millis(50);
        let mut attempts_after_drain = 0;
        let recorded = loop {
            match store.record_batch(results).await {
                Ok(recorded) => break recorded,
                Err(e) => {
                    if drain.is_cancelled() {
                        attempts_after_drain += 1;
                        if attempts_after_drain >= FINAL_ATTEMPTS {
                            tracing::error!(error = %e, lost = results.len(),
                            "giving up on results at shutdown: the database keeps failing");
                            return false;
                        }
                    }
                    tracing::warn!(error = %e, batch = results.len(), retry_in_ms = backoff.as_millis() as u64,
                    "cannot record results; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        if recorded.alerts > 0 {
            crate::alert::sender::outbox_written();
        }
        let events = recorded.events;
        // Committed: these changes happened, whatever becomes of the events.
        changes.log(&events);
        if let Err(e) = bus.publish_events(&events).await {
            tracing::warn!(error = %e, events = events.len(), "cannot publish events");
        }
        // After the commit, so the retry's result finds the failing round
        // logged. Together, not one confirm after another (at most a batch of
        // them). A lost one costs only speed: the next round counts too.
        let asked = recorded.retries.iter().map(|retry| async move {
            let update = ScheduleUpdate::Retry {
                id: retry.service_id,
                at: retry.at,
            };
            if let Err(e) = bus.publish_schedule(update).await {
                tracing::warn!(error = %e, service_id = retry.service_id.get(),
                "cannot ask for a retry of an unconfirmed failure; the next round will tell");
            }
        });
        futures_util::future::join_all(asked).await;
        tracing::debug!(
            results = results.len(),
            events = events.len(),
            retries = recorded.retries.len(),
            alerts = recorded.alerts,
            "batch recorded"
        );
        true
    }
}
