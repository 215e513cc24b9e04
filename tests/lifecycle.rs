//! The process as an operator sees it: start-up errors, graceful stop,
//! restarts, and `kill -9` at a bad moment.

mod common;

use common::target::Target;
use common::*;
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
