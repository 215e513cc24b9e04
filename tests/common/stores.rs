//! One store fixture for the suites that run each case on both backends:
//! a case is an `async fn(Store)`, and [`on_every_backend!`] makes a test
//! of it on SQLite and one on PostgreSQL.

use healthmon::config::DatabaseUrl;
use healthmon::store::Store;

/// A store on a fresh SQLite file in a temporary directory, which must
/// outlive the store.
pub async fn sqlite() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = DatabaseUrl::Sqlite(dir.path().join("hm.db"));
    let store = Store::open(&url, 4).await.expect("open SQLite store");
    (dir, store)
}

/// A store on a fresh PostgreSQL database, with the guard that drops the
/// database; `None` when the test is skipped ([`super::pg_db`]).
pub async fn postgres() -> Option<(super::PgDb, Store)> {
    let db = super::pg_db().await?;
    let store = Store::open(&DatabaseUrl::Postgres(db.url.clone()), 4)
        .await
        .expect("open PostgreSQL store");
    Some((db, store))
}

/// Runs a case on SQLite and on PostgreSQL (a fresh database each): one
/// test of each name in `sqlite_backend` and `postgres_backend`.
#[allow(
    unused_macros,
    reason = "every test crate has tests/common; only some run cases on both backends"
)]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (_dir, store) = $crate::common::stores::sqlite().await;
                    super::$name(store).await;
                }
            )*
        }
        mod postgres_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some((_db, store)) = $crate::common::stores::postgres().await else {
                        return;
                    };
                    super::$name(store).await;
                }
            )*
        }
    };
}
// A path to the macro, for `use common::stores::on_every_backend`.
#[allow(
    unused_imports,
    reason = "every test crate has tests/common; only some run cases on both backends"
)]
pub(crate) use on_every_backend;
