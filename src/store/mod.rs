//! The store: services, health logs and state changes.
//!
//! [`Store`] is the one interface the rest of the program uses. Behind it is
//! an enum of connection pools, one variant per backend, and every query is
//! written once: `with_conn!` takes a connection from whichever pool is in
//! use and expands the same diesel expression for it. Adding PostgreSQL is a
//! new variant, a pool constructor and a migrations folder.

mod models;
pub mod pg_connect;
pub mod postgres;
mod schema;
pub mod sqlite;

pub use crate::domain::time::HOUR_MS;

use crate::config::DatabaseUrl;
use crate::domain::api_key::{ApiKey, NewApiKey};
use crate::domain::health_log::HealthLog;
use crate::domain::time::Millis;
use crate::domain::uptime::HourlyRollup;
use crate::domain::{CheckResult, Event, Service, ServiceSpec};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use models::{
    ApiKeyRow, HealthLogRow, HourlyRollupRow, NewApiKeyRow, NewServiceRow, ServiceChanges,
    ServiceRow,
};
use schema::{api_keys, health_logs, hourly_rollups, rollup_progress, services, state_changes};
use std::sync::Arc;

/// What can go wrong talking to the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or created.
    #[error("cannot open the database: {0}")]
    Open(String),
    /// Migrations failed.
    #[error("database migration failed: {0}")]
    Migration(String),
    /// No connection could be had from the pool.
    #[error("no database connection: {0}")]
    Pool(String),
    /// A query failed.
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    /// The backend is configured but not part of this build.
    #[error("{0}")]
    Unsupported(String),
}

impl StoreError {
    /// Whether the database is out of reach (as opposed to a query being
    /// wrong): the API answers 503 for these, and they pass by themselves.
    pub fn is_unavailable(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        matches!(
            self,
            StoreError::Pool(_)
                | StoreError::Open(_)
                | StoreError::Query(Error::BrokenTransactionManager)
                | StoreError::Query(Error::DatabaseError(
                    DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                    _,
                ))
        )
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for StoreError {
    fn from(e: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        StoreError::Pool(e.to_string())
    }
}

enum Backend {
    Sqlite(sqlite::SqlitePools),
    Postgres {
        pool: postgres::PgPool,
        connector: pg_connect::Connector,
    },
}

/// Takes a connection from whichever pool backs the store and runs the same
/// diesel code on it. Each arm is type-checked for its own backend.
/// `with_conn!` is for reads; `with_writer!` for anything that writes, which
/// on SQLite queues for the one writer connection (see
/// [`sqlite::SqlitePools`]).
macro_rules! with_conn {
    ($store:expr, |$conn:ident| $body:expr) => {
        with_conn!(@ $store, readers, |$conn| $body)
    };
    (@ $store:expr, $sqlite:ident, |$conn:ident| $body:expr) => {
        match &*$store.backend {
            Backend::Sqlite(pools) => {
                let mut pooled = pools.$sqlite.get().await?;
                let $conn = &mut *pooled;
                $body
            }
            Backend::Postgres { pool, .. } => {
                let mut pooled = pool.get().await?;
                let $conn = &mut *pooled;
                $body
            }
        }
    };
}

/// [`with_conn!`] for writes.
macro_rules! with_writer {
    ($store:expr, |$conn:ident| $body:expr) => {
        with_conn!(@ $store, writer, |$conn| $body)
    };
}

/// Where a page of logs starts (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogCursor {
    /// Logs older than this log id (the `id` of the last log of a page).
    BeforeId(i64),
    /// Logs checked strictly before this time.
    BeforeTime(Millis),
}

/// The right to run the (one active) scheduler, or the (one) log
/// maintenance: see [`Store::try_lead`] and [`Store::try_maintain_logs`].
pub enum Leadership {
    /// SQLite: only one process uses the file, so it always leads.
    Sole,
    /// PostgreSQL: a session advisory lock held on this dedicated connection;
    /// it ends with the connection, so a killed leader frees it at once.
    Postgres(Box<diesel_async::AsyncPgConnection>),
}

#[derive(diesel::QueryableByName)]
struct Locked {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    locked: bool,
}

impl Leadership {
    /// Whether the lock is still ours (its connection still answers).
    pub async fn still_held(&mut self) -> bool {
        match self {
            Leadership::Sole => true,
            Leadership::Postgres(conn) => matches!(
                tokio::time::timeout(
                    postgres::CONNECT_TIMEOUT,
                    diesel::sql_query("SELECT 1").execute(conn)
                )
                .await,
                Ok(Ok(_))
            ),
        }
    }
}

/// The outcome of [`Store::update_service`].
#[derive(Debug)]
pub enum Updated {
    /// Written; the service as it is now.
    Saved(Service),
    /// No such service.
    NotFound,
    /// The service changed since the version the caller read.
    Conflict,
}

/// The store interface, cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Arc<Backend>,
}

impl Store {
    /// Opens the configured database, running migrations.
    pub async fn open(url: &DatabaseUrl, pool_size: usize) -> Result<Self, StoreError> {
        let backend = match url {
            DatabaseUrl::Sqlite(path) => Backend::Sqlite(sqlite::open(path, pool_size).await?),
            DatabaseUrl::Postgres(url) => {
                let connector = pg_connect::Connector::new(url)
                    .map_err(|e| StoreError::Open(format!("PostgreSQL: {e}")))?;
                Backend::Postgres {
                    pool: postgres::open(&connector, pool_size).await?,
                    connector,
                }
            }
        };
        Ok(Self {
            backend: Arc::new(backend),
        })
    }

    /// Tries to become the active scheduler; `None` while another process is.
    pub async fn try_lead(&self) -> Result<Option<Leadership>, StoreError> {
        self.try_lock(postgres::SCHEDULER_LOCK).await
    }

    /// Tries to become the one process that runs log maintenance (hourly
    /// rollups and retention); `None` while another process does.
    pub async fn try_maintain_logs(&self) -> Result<Option<Leadership>, StoreError> {
        self.try_lock(postgres::LOG_MAINTENANCE_LOCK).await
    }

    async fn try_lock(&self, key: i64) -> Result<Option<Leadership>, StoreError> {
        match &*self.backend {
            Backend::Sqlite(_) => Ok(Some(Leadership::Sole)),
            Backend::Postgres { connector, .. } => {
                let mut conn = postgres::connect(connector).await?;
                let got: Locked = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS locked")
                    .bind::<diesel::sql_types::BigInt, _>(key)
                    .get_result(&mut conn)
                    .await?;
                Ok(got.locked.then(|| Leadership::Postgres(Box::new(conn))))
            }
        }
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_conn!(self, |conn| {
            diesel::sql_query("SELECT 1").execute(conn).await?;
            Ok(())
        })
    }

    /// Registers a service; it starts PENDING.
    pub async fn create_service(
        &self,
        spec: &ServiceSpec,
        now: Millis,
    ) -> Result<Service, StoreError> {
        let row = NewServiceRow::new(spec, now);
        with_writer!(self, |conn| {
            let created: ServiceRow = diesel::insert_into(services::table)
                .values(&row)
                .returning(ServiceRow::as_returning())
                .get_result(conn)
                .await?;
            Ok(created.into_service())
        })
    }

    /// Every service, by id.
    pub async fn list_services(&self) -> Result<Vec<Service>, StoreError> {
        with_conn!(self, |conn| {
            let rows: Vec<ServiceRow> = services::table
                .select(ServiceRow::as_select())
                .order(services::id.asc())
                .load(conn)
                .await?;
            Ok(rows.into_iter().map(ServiceRow::into_service).collect())
        })
    }

    /// At most `limit` services with ids above `after`, by id: for reading
    /// every service a page at a time, in bounded memory.
    pub async fn services_after(&self, after: i64, limit: i64) -> Result<Vec<Service>, StoreError> {
        with_conn!(self, |conn| {
            let rows: Vec<ServiceRow> = services::table
                .filter(services::id.gt(after))
                .select(ServiceRow::as_select())
                .order(services::id.asc())
                .limit(limit.max(1))
                .load(conn)
                .await?;
            Ok(rows.into_iter().map(ServiceRow::into_service).collect())
        })
    }

    /// One service.
    pub async fn get_service(&self, id: i64) -> Result<Option<Service>, StoreError> {
        with_conn!(self, |conn| {
            let row: Option<ServiceRow> = services::table
                .find(id)
                .select(ServiceRow::as_select())
                .first(conn)
                .await
                .optional()?;
            Ok(row.map(ServiceRow::into_service))
        })
    }

    /// Replaces a service's settings. With `if_version`, only if the row is
    /// still at that version (a compare-and-set for read-modify-write).
    pub async fn update_service(
        &self,
        id: i64,
        spec: &ServiceSpec,
        now: Millis,
        if_version: Option<i64>,
    ) -> Result<Updated, StoreError> {
        let changes = ServiceChanges::new(spec, now);
        let bump = services::version.eq(services::version + 1);
        with_writer!(self, |conn| {
            let row: Option<ServiceRow> = match if_version {
                Some(v) => diesel::update(services::table.find(id).filter(services::version.eq(v)))
                    .set((&changes, bump))
                    .returning(ServiceRow::as_returning())
                    .get_result(conn)
                    .await
                    .optional()?,
                None => diesel::update(services::table.find(id))
                    .set((&changes, bump))
                    .returning(ServiceRow::as_returning())
                    .get_result(conn)
                    .await
                    .optional()?,
            };
            if let Some(row) = row {
                return Ok(Updated::Saved(row.into_service()));
            }
            if if_version.is_none() {
                return Ok(Updated::NotFound);
            }
            let exists: Option<i64> = services::table
                .find(id)
                .select(services::id)
                .first(conn)
                .await
                .optional()?;
            Ok(if exists.is_some() {
                Updated::Conflict
            } else {
                Updated::NotFound
            })
        })
    }

    /// Deletes a service with its logs, transitions and hourly rollups;
    /// false if it did not exist.
    pub async fn delete_service(&self, id: i64) -> Result<bool, StoreError> {
        with_writer!(self, |conn| {
            let deleted = conn
                .transaction::<_, diesel::result::Error, _>(async |conn| {
                    diesel::delete(health_logs::table.filter(health_logs::service_id.eq(id)))
                        .execute(conn)
                        .await?;
                    diesel::delete(state_changes::table.filter(state_changes::service_id.eq(id)))
                        .execute(conn)
                        .await?;
                    diesel::delete(hourly_rollups::table.filter(hourly_rollups::service_id.eq(id)))
                        .execute(conn)
                        .await?;
                    diesel::delete(services::table.find(id)).execute(conn).await
                })
                .await?;
            Ok(deleted > 0)
        })
    }

    /// Number of services registered.
    pub async fn count_services(&self) -> Result<i64, StoreError> {
        with_conn!(self, |conn| {
            Ok(services::table.count().get_result(conn).await?)
        })
    }

    /// Stores a new API key; `false` if the name is taken.
    pub async fn create_key(&self, key: &NewApiKey<'_>) -> Result<bool, StoreError> {
        with_writer!(self, |conn| {
            let inserted = diesel::insert_into(api_keys::table)
                .values(NewApiKeyRow::from(key))
                .on_conflict_do_nothing()
                .execute(conn)
                .await?;
            Ok(inserted == 1)
        })
    }

    /// Every API key, by name.
    pub async fn list_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        with_conn!(self, |conn| {
            let rows: Vec<ApiKeyRow> = api_keys::table
                .select(ApiKeyRow::as_select())
                .order(api_keys::name.asc())
                .load(conn)
                .await?;
            Ok(rows.into_iter().map(ApiKey::from).collect())
        })
    }

    /// Deletes the key with this name; `false` if there was none.
    pub async fn revoke_key(&self, name: &str) -> Result<bool, StoreError> {
        with_writer!(self, |conn| {
            let n = diesel::delete(api_keys::table.filter(api_keys::name.eq(name)))
                .execute(conn)
                .await?;
            Ok(n > 0)
        })
    }

    /// Records that a key was used at `at`.
    pub async fn touch_key(&self, id: i64, at: Millis) -> Result<(), StoreError> {
        with_writer!(self, |conn| {
            diesel::update(api_keys::table.find(id))
                .set(api_keys::last_used_at.eq(Some(at)))
                .execute(conn)
                .await?;
            Ok(())
        })
    }

    /// A page of a service's logs, newest first.
    pub async fn list_logs(
        &self,
        service_id: i64,
        limit: i64,
        cursor: Option<LogCursor>,
    ) -> Result<Vec<HealthLog>, StoreError> {
        with_conn!(self, |conn| {
            let mut query = health_logs::table
                .filter(health_logs::service_id.eq(service_id))
                .select(HealthLogRow::as_select())
                .into_boxed();
            match cursor {
                Some(LogCursor::BeforeTime(t)) => {
                    query = query.filter(health_logs::checked_at.lt(t));
                }
                Some(LogCursor::BeforeId(before)) => {
                    // Keyset on (checked_at, id), the order pages are sorted in.
                    let at: Option<i64> = health_logs::table
                        .filter(health_logs::id.eq(before))
                        .filter(health_logs::service_id.eq(service_id))
                        .select(health_logs::checked_at)
                        .first(conn)
                        .await
                        .optional()?;
                    query = match at {
                        Some(at) => query.filter(
                            health_logs::checked_at.lt(at).or(health_logs::checked_at
                                .eq(at)
                                .and(health_logs::id.lt(before))),
                        ),
                        None => query.filter(health_logs::id.lt(before)),
                    };
                }
                None => {}
            }
            let rows: Vec<HealthLogRow> = query
                .order((health_logs::checked_at.desc(), health_logs::id.desc()))
                .limit(limit)
                .load(conn)
                .await?;
            Ok(rows.into_iter().map(HealthLog::from).collect())
        })
    }

    /// Records a batch of results in one transaction and returns the events
    /// they produce, in order, to publish once this has committed.
    ///
    /// Idempotent: a result whose (service, scheduled_at) is already logged is
    /// skipped whole. A result for a deleted service leaves nothing. The
    /// service's status moves only forward in scheduled time, by a
    /// compare-and-set on `last_scheduled_at`, so a late result is logged but
    /// never reorders transitions, and each transition is recorded once.
    pub async fn record(&self, results: &[CheckResult]) -> Result<Vec<Event>, StoreError> {
        if results.is_empty() {
            return Ok(Vec::new());
        }
        match &*self.backend {
            Backend::Sqlite(pools) => {
                let mut writer = pools.writer.get().await?;
                let results = results.to_vec();
                Ok(writer
                    .spawn_blocking(move |conn| sqlite::record(conn, &results))
                    .await?)
            }
            Backend::Postgres { pool, .. } => {
                let mut conn = pool.get().await?;
                Ok(postgres::record(&mut conn, results).await?)
            }
        }
    }

    /// Counts every log recorded so far into the hourly rollups, at most
    /// `chunk` logs per transaction, and returns what it did.
    ///
    /// Incremental and idempotent: `rollup_progress` holds the id of the
    /// newest log already counted, and each chunk moves it forward in the
    /// same transaction that adds the chunk's counts (a compare-and-set, so
    /// two runs at once cannot count a log twice). A log recorded late, for
    /// an hour already rolled up, has a newer id and is added to that hour
    /// by the next run. Only ids no open transaction can still commit below
    /// are read (see [`Store::settled_log_id`]), so no log is skipped.
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
            // Aggregated and added in the database, one portable statement
            // (PostgreSQL, SQLite >= 3.24); integers only go into its text.
            // The WHERE clause also settles SQLite's INSERT ... SELECT ...
            // ON CONFLICT parsing ambiguity.
            let sql = format!(
                "INSERT INTO hourly_rollups \
                 (service_id, hour_start, checks, failures, latency_sum_ms, latency_max_ms) \
                 SELECT service_id, checked_at - checked_at % {HOUR_MS}, \
                 CAST(COUNT(*) AS BIGINT), \
                 CAST(SUM(CASE WHEN status = 'UP' THEN 0 ELSE 1 END) AS BIGINT), \
                 CAST(SUM(latency_ms) AS BIGINT), CAST(MAX(latency_ms) AS BIGINT) \
                 FROM health_logs WHERE id > {done} AND id <= {upto} \
                 AND service_id IN (SELECT id FROM services) \
                 GROUP BY service_id, checked_at - checked_at % {HOUR_MS} \
                 ON CONFLICT (service_id, hour_start) DO UPDATE SET \
                 checks = hourly_rollups.checks + excluded.checks, \
                 failures = hourly_rollups.failures + excluded.failures, \
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
        service_id: i64,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<HourlyRollup>, StoreError> {
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
