//! The worker pool: takes check jobs from the bus, runs them with bounded
//! concurrency, publishes each result and only then acknowledges the job (so
//! with a broker, a worker that dies mid-check leaves the job to be
//! redelivered). Workers never touch the store.

pub mod check;
pub mod guard;

use crate::bus::{Bus, BusError};
use crate::domain::time::now_ms;
use crate::drops::{self, DropCause};
pub use check::Checker;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Limits of one process's worker pool.
#[derive(Debug, Clone, Copy)]
pub struct PoolLimits {
    /// Checks running at once.
    pub concurrency: usize,
    /// How long in-flight checks may go on after shutdown starts.
    pub shutdown_grace: Duration,
}

/// Runs the pool until `shutdown`; then lets in-flight checks finish within
/// the grace period and cancels the rest (their jobs are simply not
/// recorded; the next slot checks again).
pub async fn run(
    bus: Bus,
    checker: Checker,
    limits: PoolLimits,
    shutdown: CancellationToken,
) -> Result<(), BusError> {
    let mut jobs = bus.consume_jobs()?;
    let permits = Arc::new(Semaphore::new(limits.concurrency.max(1)));
    let mut in_flight = JoinSet::new();
    loop {
        // Reap finished checks so the set stays as small as the concurrency.
        while in_flight.try_join_next().is_some() {}
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let delivery = tokio::select! {
            () = shutdown.cancelled() => break,
            d = jobs.next() => match d {
                Some(d) => d,
                None => break,
            },
        };
        if delivery.msg.is_stale(now_ms()) {
            // Counted, and reported at INFO once a second with the others
            // (see crate::drops); a line per job would flood the log.
            tracing::debug!(service_id = delivery.msg.service_id, "dropping a stale job");
            drops::record(DropCause::StaleAtWorker, 1);
            // A failed ack (the broker connection just went) only means the
            // job comes back, stale again, to be dropped then.
            if let Err(e) = delivery.ack().await {
                tracing::debug!(error = %e, "cannot acknowledge a stale job");
            }
            continue;
        }
        let bus = bus.clone();
        let checker = checker.clone();
        in_flight.spawn(async move {
            let result = checker.run(&delivery.msg).await;
            tracing::debug!(
                service_id = result.service_id,
                status = %result.status,
                latency_ms = result.latency_ms,
                "check done"
            );
            match bus.publish_result(result).await {
                Ok(()) => {
                    if let Err(e) = delivery.ack().await {
                        tracing::warn!(error = %e, "cannot acknowledge a job");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot publish a result"),
            }
            drop(permit);
        });
    }
    drop(jobs);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while in_flight.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::info!(
            cancelled = in_flight.len(),
            "cancelling checks still running at shutdown"
        );
        drops::record(DropCause::Shutdown, in_flight.len() as u64);
        in_flight.shutdown().await;
    }
    // The pending once-a-second report may not run once the runtime stops.
    drops::flush();
    Ok(())
}
