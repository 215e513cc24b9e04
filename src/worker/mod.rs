//! The worker pool: takes check jobs from the bus, runs them with bounded
//! concurrency, publishes each result and only then acknowledges the job (so
//! with a broker, a worker that dies mid-check leaves the job to be
//! redelivered). Workers never touch the store.
//!
//! A result the bus does not take (the results queue is at
//! `queue.results_max` while the database is down, or the broker is away)
//! is offered again with backoff by the check's own task, which keeps its
//! concurrency slot and its job unacknowledged meanwhile. So a backlog
//! slows the pool down to what the recorders drain instead of piling up
//! results somewhere, and no finished check is dropped.
//!
//! A worker belongs to its checker's region ([`Checker::region`]): it takes
//! the jobs any worker may run and its region's, and beats
//! ([`crate::bus::beat`]) every couple of seconds with its region and how
//! many checks it has done, so the fleet knows each region's live workers.

pub mod check;
pub mod dns;
pub mod guard;
pub mod http;
pub mod net;
pub mod tcp;
pub mod tls;

use crate::bus::beat::{BEAT_EVERY, process_id};
use crate::bus::{Beat, Bus, BusError};
use crate::domain::time::now_ms;
use crate::domain::{CheckKind, CheckResult};
use crate::drops::{self, DropCause};
use crate::metrics::Metrics;
pub use check::Checker;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
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
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<(), BusError> {
    let mut jobs = bus.consume_jobs_in(checker.region())?;
    let done = Arc::new(AtomicU64::new(0));
    let beating = beat(&bus, checker.region().to_owned(), Arc::clone(&done));
    tokio::pin!(beating);
    // One checker for every check's task: cloning it per check copied its
    // region's name (an allocation) and a handful of reference counts.
    let checker = Arc::new(checker);
    let permits = Arc::new(Semaphore::new(limits.concurrency.max(1)));
    let mut in_flight = JoinSet::new();
    loop {
        // Reap finished checks so the set stays as small as the concurrency.
        while in_flight.try_join_next().is_some() {}
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            () = &mut beating => break,
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let delivery = tokio::select! {
            () = shutdown.cancelled() => break,
            () = &mut beating => break,
            d = jobs.next() => match d {
                Some(d) => d,
                None => break,
            },
        };
        if CheckKind::of_url(&delivery.msg.url) == CheckKind::Push {
            // A job queued just before its service became `push://`: there is
            // nothing to request, and the scheduler's deadline judges it now,
            // so a result here could only be a false DOWN.
            tracing::debug!(
                service_id = delivery.msg.service_id.get(),
                "dropping a job for a push service"
            );
            if let Err(e) = delivery.ack().await {
                tracing::debug!(error = %e, "cannot acknowledge a push service's job");
            }
            continue;
        }
        if delivery.msg.is_stale(now_ms()) {
            // Counted, and reported at INFO once a second with the others
            // (see crate::drops); a line per job would flood the log.
            tracing::debug!(
                service_id = delivery.msg.service_id.get(),
                "dropping a stale job"
            );
            drops::record(DropCause::StaleAtWorker, 1);
            // A failed ack (the broker connection just went) only means the
            // job comes back, stale again, to be dropped then.
            if let Err(e) = delivery.ack().await {
                tracing::debug!(error = %e, "cannot acknowledge a stale job");
            }
            continue;
        }
        let bus = bus.clone();
        let checker = Arc::clone(&checker);
        let metrics = Arc::clone(&metrics);
        let done = Arc::clone(&done);
        in_flight.spawn(async move {
            let (running, started) = (metrics.check_started(), Instant::now());
            let result = checker.run(&delivery.msg).await;
            metrics.check_done(result.status, started.elapsed());
            done.fetch_add(1, Ordering::Relaxed);
            drop(running);
            tracing::debug!(
                service_id = result.service_id.get(),
                status = %result.status,
                latency_ms = result.latency_ms,
                "check done"
            );
            match publish_until_taken(&bus, result).await {
                Ok(()) => {
                    if let Err(e) = delivery.ack().await {
                        tracing::warn!(error = %e, "cannot acknowledge a job");
                    }
                }
                // The bus is shutting down: the job stays unacknowledged and
                // comes back to a worker.
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

/// Beats for this worker until dropped (it never ends by itself): its
/// region and the checks it has finished, every [`BEAT_EVERY`], the first
/// at once so a new worker counts as live before its first job.
async fn beat(bus: &Bus, region: String, done: Arc<AtomicU64>) {
    let id = process_id();
    let mut every = tokio::time::interval(BEAT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let beat = Beat::Worker {
            id: id.clone(),
            region: region.clone(),
            checks: done.load(Ordering::Relaxed),
            at: now_ms(),
        };
        if let Err(e) = bus.publish_beat(&beat).await {
            tracing::debug!(error = %e, "cannot send the worker's heartbeat");
        }
    }
}

/// First pause before a refused result is offered again.
const RETRY_MIN: Duration = Duration::from_millis(50);
/// Longest pause between offers: short enough that a drained queue is
/// refilled within a couple of seconds, long enough that hundreds of
/// waiting checks cost the broker little.
const RETRY_MAX: Duration = Duration::from_secs(2);
/// Least time between two warnings about waiting results, so a full queue
/// and a whole pool waiting on it make a line every so often, not a flood.
const WARN_EVERY_MS: i64 = 10_000;

/// Checks of this process whose result waits for the bus to take it.
static WAITING: AtomicUsize = AtomicUsize::new(0);
/// When the last waiting warning was logged (epoch ms).
static LAST_WARNED: AtomicI64 = AtomicI64::new(0);

/// Publishes `result`, offering it again with capped, jittered backoff for
/// as long as the bus refuses it (full or unavailable). Returns an error
/// only for what waiting cannot mend: the bus closed, or an unencodable
/// result. Shutdown ends the wait by cancelling the task (see [`run`]).
async fn publish_until_taken(bus: &Bus, result: CheckResult) -> Result<(), BusError> {
    let mut pause = RETRY_MIN;
    // Dropped on return, or with the task if shutdown cancels it.
    let mut waiting = None;
    loop {
        let refused = match bus.publish_result(result.clone()).await {
            Ok(()) => return Ok(()),
            Err(e @ (BusError::Closed | BusError::Encode(_))) => return Err(e),
            Err(e) => e,
        };
        waiting.get_or_insert_with(Waiting::start);
        let now = now_ms();
        let last = LAST_WARNED.load(Ordering::Relaxed);
        if now - last >= WARN_EVERY_MS
            && LAST_WARNED
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(error = %refused, waiting = WAITING.load(Ordering::Relaxed),
                "the bus does not take results; checks wait with their jobs unacknowledged");
        }
        tracing::debug!(service_id = result.service_id.get(), error = %refused,
            retry_in_ms = pause.as_millis() as u64, "offering a result again");
        tokio::time::sleep(jitter(pause)).await;
        pause = (pause * 2).min(RETRY_MAX);
    }
}

/// Counts a check in [`WAITING`] while it lives (a cancelled task included).
struct Waiting;

impl Waiting {
    fn start() -> Self {
        WAITING.fetch_add(1, Ordering::Relaxed);
        Waiting
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        WAITING.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A pause between `d / 2` and `d`, so checks refused together do not all
/// come back at the same moment.
fn jitter(d: Duration) -> Duration {
    let half = d / 2;
    half + half.mul_f64(fastrand::f64())
}
