//! The SQLite backend: a file in WAL mode behind a deadpool of
//! `SyncConnectionWrapper`s, migrations embedded and run at start.

use super::StoreError;
use diesel::Connection;
use diesel::connection::SimpleConnection;
use diesel::sqlite::SqliteConnection;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use futures_util::FutureExt;
use std::path::Path;

/// An async SQLite connection (blocking calls run on tokio's blocking pool).
pub type SqliteConn = SyncConnectionWrapper<SqliteConnection>;
/// The pool of SQLite connections.
pub type SqlitePool = Pool<SqliteConn>;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// Per-connection settings. WAL lets readers run beside the one writer;
/// `synchronous=NORMAL` is durable against a process crash (kill -9) and only
/// risks the last transactions on power loss; `busy_timeout` makes a second
/// writer wait instead of failing.
const PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
     PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;";

/// Opens (creating if needed) the database file, runs pending migrations
/// and returns a pool.
pub async fn open(path: &Path, pool_size: usize) -> Result<SqlitePool, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Open(format!("cannot create {}: {e}", dir.display())))?;
    }
    let url = path.to_string_lossy().into_owned();
    let migrate_url = url.clone();
    tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
        let mut conn = SqliteConnection::establish(&migrate_url)
            .map_err(|e| StoreError::Open(format!("{migrate_url}: {e}")))?;
        conn.batch_execute(PRAGMAS)?;
        conn.run_pending_migrations(MIGRATIONS)
            .map_err(|e| StoreError::Migration(e.to_string()))?;
        Ok(())
    })
    .await
    .map_err(|e| StoreError::Open(format!("migration task failed: {e}")))??;

    let mut config = ManagerConfig::<SqliteConn>::default();
    config.custom_setup = Box::new(|url| {
        async move {
            let mut conn = SqliteConn::establish(url).await?;
            conn.batch_execute(PRAGMAS)
                .await
                .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
            Ok(conn)
        }
        .boxed()
    });
    let manager = AsyncDieselConnectionManager::<SqliteConn>::new_with_config(url, config);
    Pool::builder(manager)
        .max_size(pool_size)
        .build()
        .map_err(|e| StoreError::Open(e.to_string()))
}
