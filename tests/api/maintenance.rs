//! Log maintenance in the embedded deployment (one process, a SQLite file):
//! on a store pre-filled with logs beyond `logs.retention_days`, the real
//! binary deletes the expired ones, keeps the recent ones, and serves the
//! hourly rollups of both. The fleet's version, with its lock, is in
//! tests/fleet.rs.
use crate::helpers::*;

use crate::common::maintenance::*;

/// Runs `sql` on the monitor's SQLite file from outside, as another writer
/// would (waiting for the monitor's write lock).
async fn write(m: &Monitor, sql: String) {
    let path = m.db_path().to_string_lossy().into_owned();
    tokio::task::spawn_blocking(move || {
        use diesel::Connection;
        use diesel::connection::SimpleConnection;
        let mut conn = diesel::SqliteConnection::establish(&path).expect("open the store");
        conn.batch_execute("PRAGMA busy_timeout = 10000;")
            .expect("busy timeout");
        conn.batch_execute(&sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    })
    .await
    .expect("writer task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_maintenance_deletes_expired_logs_keeps_recent_ones_and_rolls_both_up() {
    let target = Target::start().await;
    let m = Monitor::start_with(&MAINTAIN_OFTEN);
    let history = History::new(register_history(&m).await);
    let live = m.register(service("live", &target.url("/ok"), 1)).await["id"]
        .as_i64()
        .expect("id");
    for sql in history.sql() {
        write(&m, sql).await;
    }
    history.assert_maintained(&m).await;
    assert_live_checks_rolled_up(&m, live).await;
}
