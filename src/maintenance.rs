//! Log maintenance: keeps the store from growing forever.
//!
//! Every `logs.maintenance_interval_s`, one process of the fleet (the holder
//! of the maintenance lock among processes with the scheduler role; with
//! SQLite, the process) first counts new health logs into the hourly rollups,
//! then deletes logs older than `logs.retention_days` in batches of
//! [`DELETE_BATCH`], pausing between batches (see [`BATCH_PAUSE`]) so the
//! recorder's writes are never held up for long. Only logs already rolled up
//! are deleted (see [`Store::delete_logs_before`]), so no hour is lost.

use crate::config::LogsSettings;
use crate::domain::time::now_ms;
use crate::store::{Leadership, Store, StoreError};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Logs deleted per statement.
pub const DELETE_BATCH: i64 = 1_000;
/// Shortest pause between two delete batches. The pause is also at least
/// twice as long as the batch took, so deletion holds the database (SQLite's
/// one write lock) at most a third of the time while a backlog is cleared.
pub const BATCH_PAUSE: Duration = Duration::from_millis(10);
/// Logs counted per rollup transaction: small enough that SQLite's write
/// lock is held for a few milliseconds at a time. Chunks are paced like
/// delete batches. Back to back, 30 chunks of 50,000 (five minutes of logs
/// at 5,000 checks/s) kept the recorder waiting for seconds: schedule lag
/// p99 went from 0.4 s to 6.6 s in a 5-minute benchmark run.
pub const ROLLUP_CHUNK: i64 = 10_000;

/// Runs maintenance passes until `shutdown` is cancelled. A failed pass is
/// logged and tried again at the next interval.
pub async fn run(
    store: Store,
    settings: LogsSettings,
    shutdown: CancellationToken,
) -> Result<(), StoreError> {
    let mut every = tokio::time::interval(Duration::from_secs(settings.maintenance_interval_s));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
            match store.try_maintain().await {
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
                    tracing::warn!(error = %e, "cannot take the maintenance lock");
                    continue;
                }
            }
        }
        if let Err(e) = pass(&store, &settings, &shutdown).await {
            tracing::warn!(error = %e, "log maintenance failed; retrying at the next interval");
        }
    }
}

/// One pass: roll up, then delete expired logs until none are left or
/// shutdown.
pub async fn pass(
    store: &Store,
    settings: &LogsSettings,
    shutdown: &CancellationToken,
) -> Result<(), StoreError> {
    let started = Instant::now();
    let rolled = store
        .rollup_while(ROLLUP_CHUNK, || !shutdown.is_cancelled())
        .await?;
    if shutdown.is_cancelled() {
        // Logs not yet rolled up are never deleted anyway; stop here.
        return Ok(());
    }
    let cutoff = now_ms() - i64::from(settings.retention_days) * 86_400_000;
    let mut deleted = 0usize;
    let mut batches = 0u64;
    while !shutdown.is_cancelled() {
        let batch_started = Instant::now();
        let n = store.delete_logs_before(cutoff, DELETE_BATCH).await?;
        let pause = BATCH_PAUSE.max(batch_started.elapsed() * 2);
        deleted += n;
        batches += 1;
        if (n as i64) < DELETE_BATCH {
            break;
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(pause) => {}
        }
    }
    let elapsed_ms = started.elapsed().as_millis() as u64;
    if rolled.hours == 0 && deleted == 0 {
        tracing::debug!(elapsed_ms, "log maintenance: nothing to do");
        return Ok(());
    }
    tracing::info!(
        rollup_rows = rolled.hours,
        rolled_up_to_log_id = rolled.upto_log_id,
        deleted_logs = deleted,
        delete_batches = batches,
        retention_days = settings.retention_days,
        elapsed_ms,
        "log maintenance done"
    );
    Ok(())
}
