//! The PostgreSQL backend: diesel-async's `AsyncPgConnection` (tokio-postgres
//! underneath, no libpq) behind deadpool. Migrations are embedded and run at
//! start under an advisory lock, so processes starting together take turns
//! instead of failing.

use super::StoreError;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::{AsyncConnection, AsyncMigrationHarness, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use std::time::Duration;

/// The pool of PostgreSQL connections.
pub type PgPool = Pool<AsyncPgConnection>;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Advisory-lock keys; arbitrary, fixed, and distinct per purpose.
pub const MIGRATION_LOCK: i64 = 0x6865_616c_7468_0001;
/// Held by the active scheduler.
pub const SCHEDULER_LOCK: i64 = 0x6865_616c_7468_0002;
/// Held by the process that runs log maintenance (rollups, retention).
pub const MAINTENANCE_LOCK: i64 = 0x6865_616c_7468_0003;

/// Longest wait for a new connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a connection outside the pool, with a timeout.
pub async fn connect(url: &str) -> Result<AsyncPgConnection, StoreError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, AsyncPgConnection::establish(url)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(StoreError::Open(format!("PostgreSQL: {e}"))),
        Err(_) => Err(StoreError::Open(format!(
            "PostgreSQL: no connection within {CONNECT_TIMEOUT:?}"
        ))),
    }
}

/// Runs pending migrations (one process at a time) and returns a pool.
pub async fn open(url: &str, pool_size: usize) -> Result<PgPool, StoreError> {
    let mut conn = connect(url).await?;
    diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
        .execute(&mut conn)
        .await?;
    let mut harness = AsyncMigrationHarness::new(conn);
    // block_in_place inside: needs the multi-thread runtime, which main uses.
    let migrated = harness
        .run_pending_migrations(MIGRATIONS)
        .map(|_| ())
        .map_err(|e| StoreError::Migration(e.to_string()));
    let mut conn = harness.into_inner();
    diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
        .execute(&mut conn)
        .await?;
    migrated?;
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(url);
    Pool::builder(manager)
        .max_size(pool_size)
        .wait_timeout(Some(CONNECT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| StoreError::Open(e.to_string()))
}
