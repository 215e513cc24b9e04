//! The process as an operator sees it: start-up errors, graceful stop,
//! restarts, and `kill -9` at a bad moment.
use crate::helpers::*;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn bad_configuration_stops_start_up_with_one_line_naming_the_key() {
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a str);
    let cases: [Case; 5] = [
        (
            &[("HEALTHMON__SERVER__BIND", "not-an-address")],
            &[],
            "server.bind",
        ),
        (
            &[("HEALTHMON__DATABASE__URL", "mysql://x/y")],
            &[],
            "database.url",
        ),
        (
            &[("HEALTHMON__WORKER__CONCURRENCY", "zero")],
            &[],
            "worker.concurrency",
        ),
        (&[], &["--role", "worker"], "--role"),
        (&[], &["--role", "cook"], "--role"),
    ];
    for (env, args, key) in cases {
        let (status, stderr) = run_to_exit(env, args);
        assert!(!status.success(), "{env:?} {args:?} started anyway");
        assert!(
            stderr.contains(key),
            "{env:?} {args:?}: stderr does not name {key}:\n{stderr}"
        );
        assert!(
            !stderr.contains("listening"),
            "it started serving before failing:\n{stderr}"
        );
    }
}

#[test]
fn a_config_file_given_with_dash_dash_config_is_used() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[worker]\nconcurrency = 0\n").expect("write");
    let (status, stderr) = run_to_exit(&[], &["--config", path.to_str().expect("utf-8 path")]);
    assert!(!status.success());
    assert!(stderr.contains("worker.concurrency"), "{stderr}");
    let (status, stderr) = run_to_exit(&[], &["--config", "/no/such/file.toml"]);
    assert!(!status.success());
    assert!(stderr.contains("--config"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_check_in_flight_exits_cleanly_within_ten_seconds() {
    let target = Target::start().await;
    let mut m = Monitor::start();
    // Timeout 20 s: the check would outlive the shutdown deadline.
    m.register(serde_json::json!({"name": "slow", "url": target.url("/hang"), "interval": 30, "timeout": 20}))
        .await;
    let mut ws = WsClient::connect(&m).await;
    ws.next_json().await.expect("snapshot");
    eventually("the hanging check to start", || async {
        (target.hits("/hang") > 0).then_some(())
    })
    .await;
    let start = Instant::now();
    let status = m.terminate();
    assert!(status.success(), "exit status {status:?}\n{}", m.log_text());
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    assert!(ws.until_closed().await, "the WebSocket was not closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_status_and_logs_survive_a_restart_and_checks_resume() {
    let target = Target::start().await;
    let m = Monitor::start();
    let svc = m.register(service("keep", &target.url("/ok"), 1)).await;
    let id = svc["id"].as_i64().expect("id");
    eventually("two logs", || async {
        (m.logs(id, "").await.len() >= 2).then_some(())
    })
    .await;
    let m = m.restart();
    let (status, shown) = m.get(&format!("/services/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(shown["name"], "keep");
    assert_eq!(shown["last_status"], "UP", "status survives the restart");
    let before = m.logs(id, "limit=1000").await.len();
    assert!(before >= 2);
    eventually("checks to resume", || async {
        (m.logs(id, "limit=1000").await.len() > before + 1).then_some(())
    })
    .await;
    let next = m.register(service("next", &target.url("/ok"), 60)).await;
    assert!(next["id"].as_i64() > Some(id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_registration_and_reuses_no_id() {
    let target = Target::start().await;
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let mut m = Monitor::start_in(Arc::clone(&dir), &[]);
    // Registrations and check logging in full swing when the process dies.
    let url = m.url("/services");
    let body = service("k", &target.url("/ok"), 1);
    let mut writers = Vec::new();
    for _ in 0..4 {
        let (http, url, body) = (m.http.clone(), url.clone(), body.clone());
        writers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for _ in 0..200 {
                match http.post(&url).json(&body).send().await {
                    Ok(r) if r.status() == 201 => {
                        if let Ok(v) = r.json::<serde_json::Value>().await
                            && let Some(id) = v["id"].as_i64()
                        {
                            acknowledged.push(id);
                        }
                    }
                    _ => break,
                }
            }
            acknowledged
        }));
    }
    eventually("some registrations", || async {
        let (_, list) = m.get("/services").await;
        (list.as_array().map_or(0, Vec::len) >= 50).then_some(())
    })
    .await;
    m.kill9();
    let mut acknowledged = BTreeSet::new();
    for w in writers {
        acknowledged.extend(w.await.expect("writer"));
    }
    assert!(!acknowledged.is_empty());

    let m = Monitor::start_in(Arc::clone(&dir), &[]);
    let (status, list) = m.get("/services").await;
    assert_eq!(status, 200);
    let present: BTreeSet<i64> = list
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|s| s["id"].as_i64())
        .collect();
    let missing: Vec<_> = acknowledged.difference(&present).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    let max_seen = present
        .iter()
        .chain(acknowledged.iter())
        .max()
        .copied()
        .unwrap_or(0);
    let new = m.register(service("after", &target.url("/ok"), 60)).await;
    assert!(
        new["id"].as_i64().is_some_and(|id| id > max_seen),
        "id reused: {new}"
    );
    // Checks resume for the services that were there.
    let some = *acknowledged.iter().next().expect("one");
    let before = m.logs(some, "limit=1000").await.len();
    eventually("checks to resume after kill -9", || async {
        (m.logs(some, "limit=1000").await.len() > before).then_some(())
    })
    .await;
}

/// Pauses service `id` so no new check starts.
async fn pause(m: &Monitor, id: i64) {
    let (status, body) = m
        .send_json(
            reqwest::Method::PATCH,
            &format!("/services/{id}"),
            serde_json::json!({"paused": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// Waits until the stored logs of `id` are exactly the checks `target`
/// answered on `path`, each once; returns them.
async fn every_answered_check_stored_once(
    m: &Monitor,
    id: i64,
    target: &Target,
    path: &str,
) -> Vec<serde_json::Value> {
    let logs = eventually("a stored log for every answered check", || async {
        let logs = m.logs(id, "limit=1000").await;
        (logs.len() == target.answered(path)).then_some(logs)
    })
    .await;
    let checked_at: BTreeSet<&str> = logs
        .iter()
        .filter_map(|l| l["checked_at"].as_str())
        .collect();
    assert_eq!(
        checked_at.len(),
        logs.len(),
        "a check stored twice: {logs:?}"
    );
    logs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_finished_while_the_database_is_locked_are_stored_once_it_is_free_none_lost_or_doubled()
 {
    let target = Target::start().await;
    let m = Monitor::start();
    let id = m.register(service("locked", &target.url("/ok"), 1)).await["id"]
        .as_i64()
        .expect("id");
    eventually("a first stored log", || async {
        (!m.logs(id, "").await.is_empty()).then_some(())
    })
    .await;

    // Another connection holds SQLite's write lock longer than the
    // monitor's busy_timeout; the API still answers reads.
    let lock = WriteLock::take(&m);
    let stored_at_lock = m.logs(id, "limit=1000").await.len();
    let answered_at_lock = target.answered("/ok");
    recorder_write_failed(&m).await;
    eventually("two more checks answered during the outage", || async {
        (target.answered("/ok") >= answered_at_lock + 2).then_some(())
    })
    .await;
    assert_eq!(
        m.logs(id, "limit=1000").await.len(),
        stored_at_lock,
        "a log was written through the lock"
    );
    lock.release();

    pause(&m, id).await;
    let logs = every_answered_check_stored_once(&m, id, &target, "/ok").await;
    assert!(logs.len() >= stored_at_lock + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stores_every_check_a_target_answered_before_the_process_exited() {
    let target = Target::start().await;
    let mut m = Monitor::start();
    // Twenty services every second against a target that answers after
    // 500 ms: about half of them have a check in flight at any moment.
    let mut ids = Vec::new();
    for i in 0..20 {
        let svc = m
            .register(service(&format!("s{i}"), &target.url("/slow"), 1))
            .await;
        ids.push(svc["id"].as_i64().expect("id"));
    }
    eventually("two rounds of checks", || async {
        (target.answered("/slow") >= 40).then_some(())
    })
    .await;
    eventually("a check in flight", || async {
        (target.hits("/slow") > target.answered("/slow")).then_some(())
    })
    .await;
    let status = m.terminate();
    let exited_at = chrono::Utc::now();
    assert!(status.success(), "exit status {status:?}\n{}", m.log_text());
    // The checks in flight at SIGTERM ran to their answer (the target
    // answers every request after 500 ms unless the client hung up).
    eventually("every request that reached the target answered", || async {
        (target.hits("/slow") == target.answered("/slow")).then_some(())
    })
    .await;
    let answered = target.answered("/slow");

    // Read them back as a user would: restarted on the same store.
    let m = Monitor::start_in(Arc::clone(&m.dir), &[]);
    let stored = logs_checked_until(&m, &ids, exited_at).await;
    assert_eq!(
        stored, answered,
        "the target answered {answered} checks, {stored} were stored"
    );
}

/// The logs of `ids` checked at or before `until` (the previous process's,
/// after a restart), asserting each is UP and stored once; returns how many.
async fn logs_checked_until(
    m: &Monitor,
    ids: &[i64],
    until: chrono::DateTime<chrono::Utc>,
) -> usize {
    let mut stored = 0;
    for id in ids {
        let logs = m.logs(*id, "limit=1000").await;
        let before: Vec<&serde_json::Value> = logs
            .iter()
            .filter(|l| {
                l["checked_at"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .is_some_and(|t| t <= until)
            })
            .collect();
        assert!(before.iter().all(|l| l["status"] == "UP"), "{before:?}");
        let distinct: BTreeSet<&str> = before
            .iter()
            .filter_map(|l| l["checked_at"].as_str())
            .collect();
        assert_eq!(distinct.len(), before.len(), "stored twice: {before:?}");
        stored += before.len();
    }
    stored
}

/// Another connection takes SQLite's write lock on `m`'s store and holds
/// it until dropped: the monitor's writes wait out their busy_timeout
/// (5 s) and fail with "database is locked". Readers go on (WAL).
struct WriteLock(diesel::sqlite::SqliteConnection);

impl WriteLock {
    fn take(m: &Monitor) -> WriteLock {
        use diesel::Connection;
        use diesel::connection::SimpleConnection;
        let mut conn =
            diesel::sqlite::SqliteConnection::establish(m.db_path().to_str().expect("utf-8 path"))
                .expect("open the store");
        conn.batch_execute("PRAGMA busy_timeout = 10000; BEGIN EXCLUSIVE;")
            .expect("take the write lock");
        WriteLock(conn)
    }

    fn release(mut self) {
        use diesel::connection::SimpleConnection;
        self.0.batch_execute("ROLLBACK").expect("release the lock");
    }
}

/// Waits until `m`'s recorder has logged a failed write.
async fn recorder_write_failed(m: &Monitor) {
    eventually("the recorder to report a failed write", || async {
        m.log_text()
            .contains("cannot record results; retrying")
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_the_database_is_locked_stores_the_waiting_checks_when_it_frees_before_exit()
{
    let target = Target::start().await;
    let mut m = Monitor::start();
    let mut ids = Vec::new();
    for i in 0..5 {
        let svc = m
            .register(service(&format!("s{i}"), &target.url("/ok"), 1))
            .await;
        ids.push(svc["id"].as_i64().expect("id"));
    }
    eventually("a round of checks", || async {
        (target.answered("/ok") >= 5).then_some(())
    })
    .await;
    let lock = WriteLock::take(&m);
    let answered_at_lock = target.answered("/ok");
    recorder_write_failed(&m).await;
    eventually(
        "more checks answered while nothing can be stored",
        || async { (target.answered("/ok") >= answered_at_lock + 5).then_some(()) },
    )
    .await;
    // Finished checks wait for the store when SIGTERM arrives; the store
    // frees once shutdown has begun.
    signal(&m.child, "TERM");
    eventually("shutdown to begin", || async {
        m.log_text().contains("shutting down").then_some(())
    })
    .await;
    lock.release();
    let status = wait_exit(&mut m.child, DEADLINE).expect("exit after SIGTERM");
    let exited_at = chrono::Utc::now();
    assert!(status.success(), "exit status {status:?}\n{}", m.log_text());
    eventually("every request that reached the target answered", || async {
        (target.hits("/ok") == target.answered("/ok")).then_some(())
    })
    .await;
    let answered = target.answered("/ok");

    let m = Monitor::start_in(Arc::clone(&m.dir), &[]);
    let stored = logs_checked_until(&m, &ids, exited_at).await;
    assert_eq!(
        stored, answered,
        "the target answered {answered} checks, {stored} were stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_write_errors_are_retried_and_every_answered_check_is_stored_once() {
    use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
    let Some(db) = pg_db().await else { return };
    let target = Target::start().await;
    let m = Monitor::start_with(&[("HEALTHMON__DATABASE__URL", db.url.as_str())]);
    let id = m.register(service("refused", &target.url("/ok"), 1)).await["id"]
        .as_i64()
        .expect("id");
    eventually("a first stored log", || async {
        (!m.logs(id, "").await.is_empty()).then_some(())
    })
    .await;

    // The database starts refusing the recorder's inserts with an error
    // (everything else, reads included, goes on).
    let mut admin = AsyncPgConnection::establish(&db.url)
        .await
        .expect("connect");
    admin
        .batch_execute(
            "CREATE FUNCTION refuse_writes() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'the test refuses this write'; END $$; \
             CREATE TRIGGER refuse_writes BEFORE INSERT ON health_logs \
             FOR EACH STATEMENT EXECUTE FUNCTION refuse_writes();",
        )
        .await
        .expect("refuse writes");
    let stored_at_fault = m.logs(id, "limit=1000").await.len();
    let answered_at_fault = target.answered("/ok");
    recorder_write_failed(&m).await;
    eventually("two more checks answered during the fault", || async {
        (target.answered("/ok") >= answered_at_fault + 2).then_some(())
    })
    .await;
    assert_eq!(
        m.logs(id, "limit=1000").await.len(),
        stored_at_fault,
        "a log was written through the fault"
    );
    assert!(
        m.log_text().contains("the test refuses this write"),
        "the recorder's warning names the database's error"
    );
    admin
        .batch_execute("DROP TRIGGER refuse_writes ON health_logs;")
        .await
        .expect("accept writes again");

    pause(&m, id).await;
    let logs = every_answered_check_stored_once(&m, id, &target, "/ok").await;
    assert!(logs.len() >= stored_at_fault + 2);
}
