//! The distributed deployment's fixture: the real binary spawned as a fleet
//! of processes on one fresh PostgreSQL database and one queue prefix on the
//! local RabbitMQ, and the local PostgreSQL cluster stopped for an outage.
//!
//! [`Fleet`] is a guard: when it goes out of scope (a test that ends, or one
//! that fails half-way) it kills the processes it spawned that still run,
//! drops its database and deletes its queues and exchanges. A test has no
//! tear-down to write.

use super::broker::{AMQP, delete_topology, reachable};
use super::skip::skip;
use super::{Monitor, PgDb, clean_up_now, pg_db};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use std::process::Command;
use std::sync::{Arc, Mutex};

/// A database and a queue prefix shared by the processes of one test, and
/// those processes. Declare it before them: locals drop in reverse order,
/// so the processes stop before their database and queues go.
pub struct Fleet {
    pub db: PgDb,
    pub prefix: String,
    /// Each spawned process's id and start time (so a later process that
    /// reuses the id is never killed).
    spawned: Mutex<Vec<(u32, String)>>,
}

impl Fleet {
    /// A fresh database and prefix, or `None` when a server is missing
    /// (the test was skipped, or under CI failed).
    pub async fn new() -> Option<Fleet> {
        if let Err(why) = reachable() {
            skip("RabbitMQ at 127.0.0.1:5672", &why);
            return None;
        }
        let db = pg_db().await?;
        let prefix = format!("f{}", db.url.rsplit('_').next().unwrap_or("x"));
        Some(Fleet {
            db,
            prefix,
            spawned: Mutex::new(Vec::new()),
        })
    }

    /// The environment that puts a process on this fleet's servers.
    pub fn env(&self) -> Vec<(&str, &str)> {
        vec![
            ("HEALTHMON__DATABASE__URL", self.db.url.as_str()),
            ("HEALTHMON__QUEUE__URL", AMQP),
            ("HEALTHMON__QUEUE__PREFIX", self.prefix.as_str()),
            ("RUST_LOG", "info,healthmon::worker=debug"),
        ]
    }

    /// A process of `roles` (`--role`, e.g. `api,scheduler`).
    pub fn spawn(&self, roles: &str) -> Monitor {
        self.spawn_with(roles, &[])
    }

    /// A process of `roles` with extra environment (later wins). Processes
    /// without the API answer their probes on `--health-bind`.
    pub fn spawn_with(&self, roles: &str, extra: &[(&str, &str)]) -> Monitor {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let mut args = vec!["--role", roles];
        if !roles.contains("api") && !roles.contains("all") {
            args.extend(["--health-bind", "127.0.0.1:0"]);
        }
        let mut env = self.env();
        env.extend_from_slice(extra);
        let m = Monitor::start_args(dir, &env, &args);
        let pid = m.child.id();
        if let (Some(started), Ok(mut all)) = (start_time(pid), self.spawned.lock()) {
            all.push((pid, started));
        }
        m
    }

    /// A direct connection to the test's database, to look at or pre-fill
    /// what the processes store.
    pub async fn sql(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.db.url)
            .await
            .expect("connect to the test database")
    }

    /// Runs a query that selects one `n`.
    pub async fn count(&self, sql: &str) -> i64 {
        use diesel_async::RunQueryDsl;
        let mut conn = self.sql().await;
        diesel::sql_query(sql)
            .get_result::<Count>(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .n
    }
}

/// One `n` selected by a query.
#[derive(diesel::QueryableByName)]
pub struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub n: i64,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let spawned = self.spawned.lock().map(|s| s.clone()).unwrap_or_default();
        for (pid, started) in spawned {
            if start_time(pid).as_ref() == Some(&started) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
        clean_up_now(delete_topology(AMQP, &self.prefix));
        // Then `db` drops the database.
    }
}

/// When process `pid` started (field 22 of `/proc/<pid>/stat`), if it runs.
fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; it ends at the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // A zombie has exited already; its id is not yet free, but there is
    // nothing to kill.
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19).map(|s| (*s).to_owned())
}

/// The local PostgreSQL cluster's version (its directory under
/// /etc/postgresql), if this machine has one the tests may stop.
pub fn pg_cluster_version() -> Option<String> {
    std::fs::read_dir("/etc/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
}

/// Whether a test may stop the local PostgreSQL cluster; skips (or under
/// CI, fails) when there is none.
pub fn can_stop_pg() -> bool {
    if pg_cluster_version().is_some() {
        return true;
    }
    skip(
        "a local PostgreSQL cluster (pg_ctlcluster)",
        "nothing under /etc/postgresql",
    );
    false
}

/// `pg_ctlcluster <version> main <action>` on the local cluster.
pub fn pg_cluster(action: &str) {
    let version = pg_cluster_version().expect("a PostgreSQL cluster under /etc/postgresql");
    let out = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", action])
        .output()
        .expect("pg_ctlcluster");
    // Starting a cluster that is already up fails harmlessly.
    assert!(
        out.status.success() || action == "start",
        "pg_ctlcluster {action}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Stops PostgreSQL now and starts it again when dropped, even if the test
/// fails half-way.
pub struct PgOutage;

impl PgOutage {
    pub fn begin() -> PgOutage {
        let guard = PgOutage;
        pg_cluster("stop");
        guard
    }
}

impl Drop for PgOutage {
    fn drop(&mut self) {
        pg_cluster("start");
    }
}
