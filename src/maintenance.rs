//! Log maintenance: health logs are rolled up into hourly counts and, once
//! counted and expired, deleted, so the store does not grow forever. Its
//! settings are the `logs.*` section. (Keeping the broker connection up is
//! another job, `bus::Keeper`'s.)
//!
//! One process of the fleet (the holder of the log maintenance lock among
//! processes with the scheduler role; with SQLite, the process) does two
//! things on two clocks:
//!
//! - every `logs.rollup_interval_s` (a few seconds) it counts the logs
//!   recorded since into the hourly rollups, in paced chunks of
//!   [`ROLLUP_CHUNK`];
//! - every `logs.maintenance_interval_s` it also deletes logs older than
//!   `logs.retention_days`, then rollups older than
//!   `logs.rollup_retention_days`, then sent and failed alerts older than
//!   `alerts.retention_days` (the outbox would otherwise only grow, and
//!   `GET /alerts` with it), in batches of [`DELETE_BATCH`], pausing
//!   between batches (see [`BATCH_PAUSE`]).
//!
//! Rolling up often keeps each round small: rare, large rounds held the
//! recorder back long enough that its backlog never drained on 2 cores
//! (BENCHMARKS.md, "What changed"), while a few seconds' worth of logs is a
//! few short transactions. Only logs
//! already rolled up are deleted (see [`Store::delete_logs_before`]), so no
//! hour is lost.

use crate::config::LogsSettings;
use crate::domain::time::now_ms;
use crate::store::{Leadership, RollupReport, Store, StoreError};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Logs deleted per statement.
pub const DELETE_BATCH: i64 = 1_000;
/// Shortest pause between two delete batches or rollup chunks. The pause is
/// also at least twice as long as the batch took, so maintenance holds the
/// database (SQLite's one write lock) at most a third of the time while a
/// backlog is cleared.
pub const BATCH_PAUSE: Duration = Duration::from_millis(10);
/// Longest a round of rollups runs before it yields, and so the longest a
/// pass's deleting runs: a round that never caught up (a store receiving
/// logs faster than a paced rollup counts them) used to keep the pass from
/// ever reaching its deletes, and a pass with millions of expired logs kept
/// rollups waiting for the whole of it. Each round does its share and the
/// next tick goes on where it stopped.
pub const ROUND_BUDGET: Duration = Duration::from_secs(2);
/// Logs counted per rollup transaction: small enough that SQLite's write
/// lock is held for a few tens of milliseconds at a time (at 100,000
/// services each log of a chunk is its own service-hour, so a chunk is as
/// many upserts).
pub const ROLLUP_CHUNK: i64 = 5_000;

/// Runs rollups and retention until `shutdown` is cancelled. A failed round
/// is logged and tried again at the next tick.
pub async fn run(
    store: Store,
    settings: LogsSettings,
    alerts_retention_days: u32,
    shutdown: CancellationToken,
) -> Result<(), StoreError> {
    let mut every = tokio::time::interval(Duration::from_secs(settings.rollup_interval_s));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let retention_every = Duration::from_secs(settings.maintenance_interval_s);
    let mut last_retention: Option<Instant> = None;
    let mut unfinished = false;
    let mut lead: Option<Leadership> = None;
    let mut standing_by = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            _ = every.tick() => {}
        }
        if let Some(held) = lead.as_mut()
            && !held.still_held().await
        {
            lead = None;
        }
        if lead.is_none() {
            match store.try_maintain_logs().await {
                Ok(Some(got)) => {
                    tracing::info!("this process runs log maintenance");
                    standing_by = false;
                    lead = Some(got);
                }
                Ok(None) => {
                    if !standing_by {
                        tracing::info!("another process runs log maintenance; standing by");
                        standing_by = true;
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot take the log maintenance lock");
                    continue;
                }
            }
        }
        // A pass cut short by its budget goes on at the next tick, not an
        // interval later.
        let retention_due =
            unfinished || last_retention.is_none_or(|at| at.elapsed() >= retention_every);
        let done = if retention_due {
            pass(&store, &settings, alerts_retention_days, &shutdown).await
        } else {
            roll_up(&store, &shutdown).await.map(|r| {
                tracing::debug!(
                    rollup_rows = r.hours,
                    rolled_up_to_log_id = r.upto_log_id,
                    "rolled up"
                );
                Finished::Yes
            })
        };
        match done {
            Ok(Finished::Yes) if retention_due => {
                last_retention = Some(Instant::now());
                unfinished = false;
            }
            Ok(Finished::Yes) => {}
            Ok(Finished::No) => unfinished = true,
            Err(e) => {
                tracing::warn!(error = %e, "log maintenance failed; retrying at the next tick")
            }
        }
    }
}

/// Whether a pass got through all its work or ran out of its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// Every expired log, rollup and alert went.
    Yes,
    /// Some are left for the next round.
    No,
}

/// Counts new logs into the hourly rollups one chunk at a time, pausing
/// between chunks (on SQLite twice the chunk's time, at least
/// [`BATCH_PAUSE`]) so the recorder gets the database in between, until
/// every settled log is counted, [`ROUND_BUDGET`] is spent, or shutdown.
async fn roll_up(store: &Store, shutdown: &CancellationToken) -> Result<RollupReport, StoreError> {
    let mut total = RollupReport::default();
    let round = Instant::now();
    loop {
        let started = Instant::now();
        let mut one_chunk = true;
        let report = store
            .rollup_while(ROLLUP_CHUNK, || std::mem::take(&mut one_chunk))
            .await?;
        total.hours += report.hours;
        total.upto_log_id = report.upto_log_id;
        total.caught_up = report.caught_up;
        if report.caught_up || round.elapsed() >= ROUND_BUDGET {
            return Ok(total);
        }
        // On PostgreSQL a chunk blocks no writer, so only the short pause:
        // there, twice the chunk's time left rollups (about 25,000 logs/s
        // a statement at 1,000,000 services) a third of each round and
        // they fell behind 3,333 logs/s (BENCHMARKS.md "Rollups at a
        // million services").
        let pause = if store.rollups_block_writes() {
            BATCH_PAUSE.max(started.elapsed() * 2)
        } else {
            BATCH_PAUSE
        };
        tokio::select! {
            () = shutdown.cancelled() => return Ok(total),
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// One pass: a round of rollups, then expired logs, rollups and done alerts
/// (sent or failed, older than `alerts_retention_days`) deleted, each for at
/// most [`ROUND_BUDGET`]. Only logs already rolled up are deleted, so the
/// rollups need not have caught up for the expired ones (counted long ago)
/// to go.
pub async fn pass(
    store: &Store,
    settings: &LogsSettings,
    alerts_retention_days: u32,
    shutdown: &CancellationToken,
) -> Result<Finished, StoreError> {
    let started = Instant::now();
    let rolled = roll_up(store, shutdown).await?;
    if shutdown.is_cancelled() {
        return Ok(Finished::No);
    }
    let now = now_ms();
    let cutoff = now - i64::from(settings.retention_days) * DAY_MS;
    let (deleted, batches, logs_done) =
        paced_deletes(shutdown, || store.delete_logs_before(cutoff, DELETE_BATCH)).await?;
    let rollup_cutoff = now - i64::from(settings.rollup_retention_days) * DAY_MS;
    let (deleted_rollups, _, rollups_done) = if logs_done {
        paced_deletes(shutdown, || {
            store.delete_rollups_before(rollup_cutoff, DELETE_BATCH)
        })
        .await?
    } else {
        (0, 0, false)
    };
    let alerts_cutoff = now - i64::from(alerts_retention_days) * DAY_MS;
    let (deleted_alerts, _, alerts_done) = if rollups_done {
        paced_deletes(shutdown, || {
            store.delete_alerts_before(alerts_cutoff, DELETE_BATCH)
        })
        .await?
    } else {
        (0, 0, false)
    };
    let finished = if logs_done && rollups_done && alerts_done {
        Finished::Yes
    } else {
        Finished::No
    };
    let elapsed_ms = started.elapsed().as_millis() as u64;
    if rolled.hours == 0 && deleted == 0 && deleted_rollups == 0 && deleted_alerts == 0 {
        tracing::debug!(elapsed_ms, "log maintenance: nothing to do");
        return Ok(finished);
    }
    tracing::info!(
        rollup_rows = rolled.hours,
        rolled_up_to_log_id = rolled.upto_log_id,
        deleted_logs = deleted,
        delete_batches = batches,
        deleted_rollups,
        deleted_alerts,
        retention_days = settings.retention_days,
        alerts_retention_days,
        rollup_retention_days = settings.rollup_retention_days,
        elapsed_ms,
        finished = finished == Finished::Yes,
        "log maintenance done"
    );
    Ok(finished)
}

/// One day in milliseconds.
const DAY_MS: i64 = 86_400_000;

/// Runs `delete` (one batch of at most [`DELETE_BATCH`]) until a batch comes
/// back short, [`ROUND_BUDGET`] is spent, or shutdown, pausing between
/// batches; returns what went, in how many batches, and whether nothing is
/// left.
async fn paced_deletes<F, Fut>(
    shutdown: &CancellationToken,
    mut delete: F,
) -> Result<(usize, u64, bool), StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<usize, StoreError>>,
{
    let round = Instant::now();
    let mut deleted = 0usize;
    let mut batches = 0u64;
    while !shutdown.is_cancelled() && round.elapsed() < ROUND_BUDGET {
        let batch_started = Instant::now();
        let n = delete().await?;
        let pause = BATCH_PAUSE.max(batch_started.elapsed() * 2);
        deleted += n;
        batches += 1;
        if (n as i64) < DELETE_BATCH {
            return Ok((deleted, batches, true));
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(pause) => {}
        }
    }
    Ok((deleted, batches, false))
}
