//! The queries of log maintenance (see `crate::maintenance`): health logs
//! counted into hourly rollups, and expired logs and rollups deleted.

use super::models::HourlyRollupRow;
use super::schema::{health_logs, hourly_rollups, rollup_progress};
use super::{Backend, HOUR_MS, Store, StoreError};
use crate::domain::ServiceId;
use crate::domain::time::Millis;
use crate::domain::uptime::HourlyRollup;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

impl Store {
    /// Counts every log recorded so far into the hourly rollups, at most
    /// `chunk` logs per transaction, and returns what it did.
    ///
    /// Incremental and idempotent: `rollup_progress` holds the id of the
    /// newest log already counted, and each chunk moves it forward in the
    /// same transaction that adds the chunk's counts (a compare-and-set, so
    /// two runs at once cannot count a log twice). A log recorded late, for
    /// an hour already rolled up, has a newer id and is added to that hour
    /// by the next run. Only ids no open transaction can still commit below
    /// are read (see `settled_log_id` below), so no log is skipped.
    pub async fn rollup(&self, chunk: i64) -> Result<RollupReport, StoreError> {
        self.rollup_while(chunk, || true).await
    }

    /// [`Store::rollup`], asking `go_on` before each chunk: a long first
    /// rollup (an existing database after upgrading) stops between two
    /// chunks at shutdown, and the next run continues from there.
    pub async fn rollup_while(
        &self,
        chunk: i64,
        mut go_on: impl FnMut() -> bool,
    ) -> Result<RollupReport, StoreError> {
        let chunk = chunk.max(1);
        let newest = self.settled_log_id().await?;
        let mut report = RollupReport::default();
        loop {
            let done: i64 = with_conn!(self, |conn| {
                rollup_progress::table
                    .select(rollup_progress::last_log_id)
                    .first(conn)
                    .await?
            });
            report.upto_log_id = done;
            report.caught_up = done >= newest;
            if report.caught_up || !go_on() {
                return Ok(report);
            }
            let upto = newest.min(done.saturating_add(chunk));
            // Failures are DOWN checks only: DEGRADED passed, it counts as
            // up and has its own count. Only rounds count (`region = ''`):
            // a regional service logs each region's vote with its region
            // and the round's verdict without one, and counting the votes
            // too made each of its rounds count once per region plus once.
            // Aggregated and added in the database, one portable statement
            // (PostgreSQL, SQLite >= 3.24); integers only go into its text.
            // A log of a service deleted meanwhile is skipped by a probe of
            // the services' key per log (`EXISTS`): with `service_id IN
            // (SELECT id FROM services)` SQLite walked every service and
            // looked each one's logs up by `health_logs_by_service_time`,
            // so at 1,000,000 services a chunk of 5,000 logs took 0.66-1.1 s
            // instead of 35-110 ms (BENCHMARKS.md "Rollups at a million
            // services"), and rollups fell behind 3,333 logs/s.
            // The WHERE clause also settles SQLite's INSERT ... SELECT ...
            // ON CONFLICT parsing ambiguity.
            let sql = format!(
                "INSERT INTO hourly_rollups \
                 (service_id, hour_start, checks, failures, degraded, latency_sum_ms, \
                 latency_max_ms) \
                 SELECT service_id, checked_at - checked_at % {HOUR_MS}, \
                 CAST(COUNT(*) AS BIGINT), \
                 CAST(SUM(CASE WHEN status = 'DOWN' THEN 1 ELSE 0 END) AS BIGINT), \
                 CAST(SUM(CASE WHEN status = 'DEGRADED' THEN 1 ELSE 0 END) AS BIGINT), \
                 CAST(SUM(latency_ms) AS BIGINT), CAST(MAX(latency_ms) AS BIGINT) \
                 FROM health_logs WHERE id > {done} AND id <= {upto} AND region = '' \
                 AND EXISTS (SELECT 1 FROM services WHERE services.id = health_logs.service_id) \
                 GROUP BY service_id, checked_at - checked_at % {HOUR_MS} \
                 ON CONFLICT (service_id, hour_start) DO UPDATE SET \
                 checks = hourly_rollups.checks + excluded.checks, \
                 failures = hourly_rollups.failures + excluded.failures, \
                 degraded = hourly_rollups.degraded + excluded.degraded, \
                 latency_sum_ms = hourly_rollups.latency_sum_ms + excluded.latency_sum_ms, \
                 latency_max_ms = CASE WHEN excluded.latency_max_ms > hourly_rollups.latency_max_ms \
                 THEN excluded.latency_max_ms ELSE hourly_rollups.latency_max_ms END"
            );
            let added = with_writer!(self, |conn| {
                conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                    // The compare-and-set comes first: it also takes the write
                    // lock at once (SQLite), before anything is read.
                    let moved = diesel::update(
                        rollup_progress::table.filter(rollup_progress::last_log_id.eq(done)),
                    )
                    .set(rollup_progress::last_log_id.eq(upto))
                    .execute(conn)
                    .await?;
                    if moved == 0 {
                        return Ok(None);
                    }
                    Ok(Some(diesel::sql_query(&sql).execute(conn).await?))
                })
                .await?
            });
            match added {
                Some(hours) => {
                    report.hours += hours;
                    report.upto_log_id = upto;
                }
                // Another run moved the progress first: it did this chunk.
                None => return Ok(report),
            }
        }
    }

    /// Whether a rollup chunk keeps every other write out while it runs:
    /// SQLite has one write lock, so log maintenance pauses between chunks
    /// for the recorder; PostgreSQL's rollups lock only the rollup rows
    /// they add to, and the recorder writes beside them.
    pub fn rollups_block_writes(&self) -> bool {
        matches!(&*self.backend, Backend::Sqlite(_))
    }

    /// The newest log id below which no log can still appear: every
    /// transaction that could insert one has ended. SQLite has one writer at
    /// a time, so the committed maximum is settled. PostgreSQL hands out ids
    /// before commit, so a newer id may commit before an older one; a brief
    /// SHARE lock waits for inserts in flight (holding new ones back for that
    /// moment only) so the maximum read is final.
    async fn settled_log_id(&self) -> Result<i64, StoreError> {
        let newest = || {
            health_logs::table
                .select(diesel::dsl::max(health_logs::id))
                .single_value()
        };
        let max: Option<i64> = match &*self.backend {
            Backend::Sqlite(_) => with_conn!(self, |conn| {
                diesel::select(newest()).get_result(conn).await?
            }),
            Backend::Postgres { pool, .. } => {
                let mut conn = pool.get().await?;
                conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                    diesel::sql_query("SET LOCAL lock_timeout = '2s'")
                        .execute(conn)
                        .await?;
                    diesel::sql_query("LOCK TABLE health_logs IN SHARE MODE")
                        .execute(conn)
                        .await?;
                    diesel::select(newest()).get_result(conn).await
                })
                .await?
            }
        };
        Ok(max.unwrap_or(0))
    }

    /// Deletes at most `batch` logs checked before `cutoff`, oldest first,
    /// and returns how many went. Only logs already counted in the hourly
    /// rollups are deleted, so retention never loses an hour's counts. Each
    /// call is one short statement: call it in a loop for a backlog.
    pub async fn delete_logs_before(
        &self,
        cutoff: Millis,
        batch: i64,
    ) -> Result<usize, StoreError> {
        with_writer!(self, |conn| {
            let counted: i64 = rollup_progress::table
                .select(rollup_progress::last_log_id)
                .first(conn)
                .await?;
            let old = diesel::alias!(health_logs as old_logs);
            let doomed = old
                .select(old.field(health_logs::id))
                .filter(old.field(health_logs::checked_at).lt(cutoff))
                .filter(old.field(health_logs::id).le(counted))
                .order(old.field(health_logs::checked_at).asc())
                .limit(batch.max(0));
            Ok(diesel::delete(health_logs::table)
                .filter(health_logs::id.eq_any(doomed))
                .execute(conn)
                .await?)
        })
    }

    /// Deletes at most `batch` hourly rollups of hours starting before
    /// `cutoff`, oldest first, and returns how many went. One short
    /// statement: call it in a loop for a backlog.
    pub async fn delete_rollups_before(
        &self,
        cutoff: Millis,
        batch: i64,
    ) -> Result<usize, StoreError> {
        // Row values in IN: PostgreSQL, SQLite >= 3.15. Only integers go
        // into the text.
        let sql = format!(
            "DELETE FROM hourly_rollups WHERE (service_id, hour_start) IN \
             (SELECT service_id, hour_start FROM hourly_rollups WHERE hour_start < {cutoff} \
             ORDER BY hour_start LIMIT {})",
            batch.max(0)
        );
        with_writer!(self, |conn| {
            Ok(diesel::sql_query(&sql).execute(conn).await?)
        })
    }

    /// A service's hourly rollups with `from <= hour_start < to`, oldest
    /// first. Hours without checks have no row.
    pub async fn rollups(
        &self,
        service_id: ServiceId,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<HourlyRollup>, StoreError> {
        let service_id = service_id.get();
        with_conn!(self, |conn| {
            let rows: Vec<HourlyRollupRow> = hourly_rollups::table
                .filter(hourly_rollups::service_id.eq(service_id))
                .filter(hourly_rollups::hour_start.ge(from))
                .filter(hourly_rollups::hour_start.lt(to))
                .select(HourlyRollupRow::as_select())
                .order(hourly_rollups::hour_start.asc())
                .load(conn)
                .await?;
            Ok(rows.into_iter().map(HourlyRollup::from).collect())
        })
    }
}

/// What one [`Store::rollup`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RollupReport {
    /// Hourly rows written (created or updated).
    pub hours: usize,
    /// Every log up to this id is counted now.
    pub upto_log_id: i64,
    /// Whether every log settled when the run began is counted (it stopped
    /// for no other reason: `go_on`, or another run moving first).
    pub caught_up: bool,
}
