//! The store: services, health logs and state changes.
//!
//! [`Store`] is the one interface the rest of the program uses. Behind it is
//! an enum of connection pools, one variant per backend, and every query is
//! written once: `with_conn!` takes a connection from whichever pool is in
//! use and expands the same diesel expression for it. Adding PostgreSQL is a
//! new variant, a pool constructor and a migrations folder.

mod interned;
mod models;
pub mod pg_connect;
mod postgres;
mod schema;
mod sqlite;

pub use crate::domain::time::HOUR_MS;

use crate::config::DatabaseUrl;
use crate::domain::health_log::HealthLog;
use crate::domain::time::Millis;
use crate::domain::{CheckResult, Event, Service, ServiceId, ServiceSpec};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use models::{HealthLogRow, NewServiceRow, ServiceChanges, ServiceRow};
use schema::{health_logs, hourly_rollups, services, state_changes};
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

mod alerts;
mod bulk;
pub mod changed;
mod channels;
mod keys;
mod list;
mod metrics;
mod outbox;
mod push;
mod regional;
mod rollups;
mod status_pages;
mod windows;

pub use alerts::TEST_SERVICE_NAME;
pub use bulk::NewService;
pub use channels::{CHANNEL_DELETED, ChannelSaved};
pub use list::ServiceFilter;
pub use metrics::StatusCount;
pub use outbox::{ChannelRecord, DownService, Earlier, NewOutboxRow, OutboxRow};
pub use regional::RoundRule;
pub use rollups::RollupReport;
pub use status_pages::{DaysOf, ListedService, PageSaved};
pub use windows::{MAX_WINDOWS, OpenWindows, WindowUpdate};

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
    /// Given up ([`Leadership::release`]): never held.
    Released,
}

#[derive(diesel::QueryableByName)]
struct Locked {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    locked: bool,
}

impl Leadership {
    /// Closes the lock's connection (the server frees the lock with its
    /// session). Done before taking the lock again on a new connection when
    /// the old one stopped answering: if that session were still alive, it
    /// would refuse us our own lock.
    pub fn release(&mut self) {
        if matches!(self, Leadership::Postgres(_)) {
            *self = Leadership::Released;
        }
    }

    /// Whether the lock is still ours (its connection still answers).
    pub async fn still_held(&mut self) -> bool {
        match self {
            Leadership::Sole => true,
            Leadership::Released => false,
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

/// What recording a batch did, to announce once it has committed.
#[derive(Debug, Default)]
pub struct Recorded {
    /// `check` and `status_change` events, in order.
    pub events: Vec<Event>,
    /// Services whose failure is not confirmed yet: the scheduler checks
    /// them again at these times.
    pub retries: Vec<crate::domain::plan::Retry>,
    /// Outbox rows written (the sender may start at once).
    pub alerts: usize,
}

/// The outcome of [`Store::update_service`].
#[derive(Debug)]
pub enum Updated {
    /// Written; the service as it is now (boxed: it is large beside the
    /// other outcomes).
    Saved(Box<Service>),
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

    /// Tries to become the one process that delivers alerts from the
    /// outbox; `None` while another process does.
    pub async fn try_send_alerts(&self) -> Result<Option<Leadership>, StoreError> {
        self.try_lock(postgres::ALERT_SENDER_LOCK).await
    }

    async fn try_lock(&self, key: i64) -> Result<Option<Leadership>, StoreError> {
        match &*self.backend {
            Backend::Sqlite(_) => Ok(Some(Leadership::Sole)),
            Backend::Postgres { connector, .. } => {
                let mut conn = postgres::connect(connector).await?;
                pg_connect::keep_session_alive(&mut conn).await;
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
    pub async fn get_service(&self, id: ServiceId) -> Result<Option<Service>, StoreError> {
        let id = id.get();
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
        id: ServiceId,
        spec: &ServiceSpec,
        now: Millis,
        if_version: Option<i64>,
    ) -> Result<Updated, StoreError> {
        let id = id.get();
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
                return Ok(Updated::Saved(Box::new(row.into_service())));
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
    pub async fn delete_service(&self, id: ServiceId) -> Result<bool, StoreError> {
        let id = id.get();
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

    /// A page of a service's logs, newest first.
    pub async fn list_logs(
        &self,
        service_id: ServiceId,
        limit: i64,
        cursor: Option<LogCursor>,
    ) -> Result<Vec<HealthLog>, StoreError> {
        self.list_logs_in(service_id, limit, cursor, None).await
    }

    /// A page of a service's logs, newest first, only `region`'s when one
    /// is given.
    pub async fn list_logs_in(
        &self,
        service_id: ServiceId,
        limit: i64,
        cursor: Option<LogCursor>,
        region: Option<&str>,
    ) -> Result<Vec<HealthLog>, StoreError> {
        let service_id = service_id.get();
        let region = region.map(str::to_owned);
        with_conn!(self, |conn| {
            let mut query = health_logs::table
                .filter(health_logs::service_id.eq(service_id))
                .select(HealthLogRow::as_select())
                .into_boxed();
            if let Some(region) = &region {
                query = query.filter(health_logs::region.eq(region));
            }
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
    /// [`Store::record_batch`] tells the rest.
    pub async fn record(&self, results: &[CheckResult]) -> Result<Vec<Event>, StoreError> {
        Ok(self.record_batch(results).await?.events)
    }

    /// Records a batch of results in one transaction: their logs, the
    /// services' statuses, transitions and the alerts they make (outbox
    /// rows, one per change and channel). Returns what to announce once it
    /// has committed.
    ///
    /// Idempotent: a result whose (service, scheduled_at) is already logged is
    /// skipped whole, and an alert is unique on (service, channel, event,
    /// due time). A result for a deleted service leaves nothing. The
    /// service's last check moves only forward in scheduled time, by a
    /// compare-and-set on `last_scheduled_at`, so a late result is logged but
    /// never reorders transitions, and each transition is recorded once. Its
    /// status follows the thresholds (`domain::confirm`) over the newest
    /// rounds by due time.
    pub async fn record_batch(&self, results: &[CheckResult]) -> Result<Recorded, StoreError> {
        if results.is_empty() {
            return Ok(Recorded::default());
        }
        let now = crate::domain::time::now_ms();
        match &*self.backend {
            Backend::Sqlite(pools) => {
                let mut writer = pools.writer.get().await?;
                let results = results.to_vec();
                Ok(writer
                    .spawn_blocking(move |conn| sqlite::record(conn, &results, now))
                    .await?)
            }
            Backend::Postgres { pool, .. } => {
                let mut conn = pool.get().await?;
                Ok(postgres::record(&mut conn, results, now).await?)
            }
        }
    }
}
