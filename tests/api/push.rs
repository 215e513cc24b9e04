//! Push monitors (`push://`): a job pings `/push/{token}` (GET, HEAD or
//! POST, no API key); each ping is a log, `?status=down&msg=` a DOWN one,
//! and a service with no ping for `interval + grace` goes DOWN with reason
//! `missed_ping`, reported by the scheduler at the deadline and once per
//! interval after it. Tokens are shown once, rotatable and rate-limited.
use crate::helpers::*;

use reqwest::Method;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Registers a push service, asserting its one-time `push_url`; returns
/// its id and that URL.
async fn register_push(m: &Monitor, name: &str, interval: i64, grace: i64) -> (i64, String) {
    let created = create(
        m,
        json!({"name": name, "url": "push://", "interval": interval, "timeout": 1, "grace": grace}),
    )
    .await;
    let url = created["push_url"]
        .as_str()
        .unwrap_or_else(|| panic!("no push_url in {created}"))
        .to_owned();
    let token = url.strip_prefix("/push/").expect("a /push/ path");
    assert!(
        token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit()),
        "128 bits in hex: {token}"
    );
    (id_of(&created), url)
}

/// A ping by `method`, without any API key.
async fn ping(m: &Monitor, method: Method, path: &str) -> Reply {
    request(m, method, path, None, None).await
}

#[track_caller]
fn assert_recorded(r: &Reply, what: &str) {
    assert_eq!(r.status, 200, "{what}: {}", r.text);
    assert_eq!(r.json, json!({"ok": true}), "{what}");
}

/// Reads WebSocket messages until a `check` of service `id` whose error is
/// a missed ping; returns it and what came before it.
async fn until_missed(ws: &mut WsClient, id: i64) -> (Value, Vec<Value>) {
    ws.until("a missed_ping check", |e| {
        e["type"] == "check"
            && e["service_id"] == id
            && e["error"]
                .as_str()
                .is_some_and(|s| s.starts_with("missed_ping: "))
    })
    .await
}

/// The whole life of a push monitor on `m`'s store.
async fn pings_are_logs_and_silence_is_down(m: &Monitor) {
    let mut ws = WsClient::connect(m).await;
    let (id, url) = register_push(m, "nightly backup", 2, 1).await;
    let token = url.trim_start_matches("/push/").to_owned();
    let shown = one_service(m, id).await;
    assert!(shown.get("push_url").is_none(), "shown once: {shown}");
    assert_eq!(
        (shown["url"].clone(), shown["grace"].clone()),
        (json!("push://"), json!(1))
    );
    let listed = get(m, "/services").await;
    assert!(
        !listed.text.contains(&token),
        "the token is never read back"
    );

    assert_recorded(&ping(m, Method::GET, &url).await, "GET ping");
    let posted = request(
        m,
        Method::POST,
        &url,
        Some("text/plain"),
        Some(b"42 files".to_vec()),
    )
    .await;
    assert_recorded(&posted, "POST ping with a body");
    let logs = wait_logs(m, id, 2).await;
    assert!(
        logs.iter()
            .all(|l| l["status"] == "UP" && l["error"].is_null()),
        "{logs:?}"
    );

    let down = ping(
        m,
        Method::GET,
        &format!("{url}?status=down&msg=disk%20full"),
    )
    .await;
    assert_recorded(&down, "a DOWN report");
    let logs = wait_logs(m, id, 3).await;
    assert_eq!(logs[0]["status"], "DOWN");
    assert_eq!(
        logs[0]["error"],
        "status: reported down by the job: disk full"
    );
    assert_eq!(logs[0]["latency_ms"], 0);

    let last_ping = Instant::now();
    assert_recorded(&ping(m, Method::GET, &url).await, "UP again");
    wait_logs(m, id, 4).await;
    eventually("the service UP again", || async {
        (one_service(m, id).await["last_status"] == "UP").then_some(())
    })
    .await;

    // Silence: DOWN at the deadline (2 s + 1 s after the last ping),
    // reported within the scheduler's settling time and a recorder flush.
    let (missed, _) = until_missed(&mut ws, id).await;
    let after = last_ping.elapsed();
    assert!(
        after >= Duration::from_secs(3) && after < Duration::from_secs(9),
        "missed after {after:?}"
    );
    assert_eq!(missed["status"], "DOWN");
    assert_eq!(missed["latency"], 0);
    assert_eq!(
        missed["error"],
        "missed_ping: no ping for 3 s (interval 2 s + grace 1 s)"
    );
    let (change, _) = ws
        .until("the status_change", |e| {
            e["type"] == "status_change" && e["service_id"] == id
        })
        .await;
    assert_eq!(
        (change["old_status"].clone(), change["new_status"].clone()),
        (json!("UP"), json!("DOWN"))
    );
    // Still silent: logged DOWN again one interval later, with no new change.
    let (again, between) = until_missed(&mut ws, id).await;
    assert_eq!(
        again["error"],
        "missed_ping: no ping for 5 s (interval 2 s + grace 1 s)"
    );
    assert!(
        !between
            .iter()
            .any(|e| e["type"] == "status_change" && e["service_id"] == id),
        "one status_change while silent: {between:?}"
    );
    assert_eq!(one_service(m, id).await["last_status"], "DOWN");

    let head = ping(m, Method::HEAD, &url).await;
    assert_eq!((head.status, head.text.as_str()), (200, ""), "a HEAD ping");
    let (back, _) = ws
        .until("UP after the ping", |e| {
            e["type"] == "status_change" && e["service_id"] == id
        })
        .await;
    assert_eq!(back["new_status"], "UP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_are_logs_and_a_silent_job_goes_down_at_its_deadline() {
    let m = Monitor::start();
    pings_are_logs_and_silence_is_down(&m).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_monitor_misses_its_deadline_on_postgresql_too() {
    let Some(db) = pg_db().await else { return };
    let m = Monitor::start_with(&[("HEALTHMON__DATABASE__URL", db.url.as_str())]);
    pings_are_logs_and_silence_is_down(&m).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_stops_working_at_once() {
    let m = Monitor::start();
    let (id, old) = register_push(&m, "job", 60, 60).await;
    assert_recorded(&ping(&m, Method::GET, &old).await, "the first token");

    let rotated = send(
        &m,
        Method::POST,
        &format!("/services/{id}/push-token"),
        &json!({}),
    )
    .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    assert_eq!(rotated.json["id"], id);
    assert_eq!(rotated.json["url"], "push://");
    let new = rotated.json["push_url"]
        .as_str()
        .expect("push_url")
        .to_owned();
    assert_ne!(new, old);
    assert_problem(&ping(&m, Method::GET, &old).await, 404, "the old token");
    assert_recorded(&ping(&m, Method::POST, &new).await, "the new token");
    assert!(one_service(&m, id).await.get("push_url").is_none());

    // A rotation of what is not a push service.
    let http = create(&m, service("site", NOWHERE, 60)).await;
    let refused = request(
        &m,
        Method::POST,
        &format!("/services/{}/push-token", id_of(&http)),
        None,
        None,
    )
    .await;
    assert_invalid(&refused, &["url"], "rotating an http service's token");
    assert!(refused.json.get("push_url").is_none());
    let none = request(&m, Method::POST, "/services/999999/push-token", None, None).await;
    assert_problem(&none, 404, "rotating an unknown service's token");
    let read = get(&m, &format!("/services/{id}/push-token")).await;
    assert_problem(&read, 405, "reading a token");

    // Unknown tokens, well-formed or not, get the same 404.
    for path in [format!("/push/{}", "0".repeat(32)), "/push/nope".to_owned()] {
        let r = ping(&m, Method::GET, &path).await;
        assert_problem(&r, 404, &path);
        assert_eq!(r.json["detail"], "no push monitor has this token", "{path}");
    }
    // The rotated service's logs: the two accepted pings only.
    let logs = wait_logs(&m, id, 2).await;
    assert_eq!(logs.len(), 2, "{logs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_need_no_api_key_but_rotating_needs_a_write_key() {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let admin = create_key(&dir, "admin", "write");
    let viewer = create_key(&dir, "viewer", "read");
    let m = Monitor::start_in(Arc::clone(&dir), &[]);
    let created = m
        .http
        .post(m.url("/services"))
        .bearer_auth(&admin)
        .json(&json!({"name": "job", "url": "push://", "interval": 60, "timeout": 1}))
        .send()
        .await
        .expect("register");
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.expect("json");
    let (id, url) = (
        id_of(&created),
        created["push_url"].as_str().expect("push_url").to_owned(),
    );

    for method in [Method::GET, Method::POST, Method::HEAD] {
        let r = ping(&m, method.clone(), &url).await;
        assert_eq!(r.status, 200, "{method} ping without a key: {}", r.text);
    }
    let rotate = |token: Option<&'static str>| {
        let req = m.http.post(m.url(&format!("/services/{id}/push-token")));
        let token = token.map(|t| {
            if t == "admin" {
                admin.clone()
            } else {
                viewer.clone()
            }
        });
        async move {
            match token {
                Some(t) => req.bearer_auth(t),
                None => req,
            }
            .send()
            .await
            .expect("rotate")
            .status()
            .as_u16()
        }
    };
    assert_eq!(rotate(None).await, 401);
    assert_eq!(rotate(Some("viewer")).await, 403);
    assert_eq!(rotate(Some("admin")).await, 200);
    assert_eq!(
        ping(&m, Method::GET, &url).await.status,
        404,
        "rotated away"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_are_limited_per_token() {
    let m = Monitor::start();
    let (_, busy) = register_push(&m, "busy", 60, 60).await;
    let (_, calm) = register_push(&m, "calm", 60, 60).await;
    let mut answers = Vec::new();
    for _ in 0..15 {
        answers.push(ping(&m, Method::GET, &busy).await);
    }
    let ok = answers.iter().filter(|r| r.status == 200).count();
    assert!(
        (10..15).contains(&ok),
        "a burst of 10 (and a refill), then 429: {ok} accepted"
    );
    let limited = answers.last().expect("answers");
    assert_problem(limited, 429, "over the limit");
    assert!(limited.header(reqwest::header::RETRY_AFTER).is_some());
    assert_recorded(
        &ping(&m, Method::GET, &calm).await,
        "another token keeps its own",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_pings_are_refused_and_a_paused_service_records_none() {
    let m = Monitor::start();
    let (id, url) = register_push(&m, "job", 60, 60).await;
    let big = request(
        &m,
        Method::POST,
        &url,
        Some("text/plain"),
        Some(vec![b'x'; 20_000]),
    )
    .await;
    assert_problem(&big, 413, "a large body");
    let bad = ping(&m, Method::GET, &format!("{url}?status=sideways")).await;
    assert_problem(&bad, 400, "an unknown status");
    assert_eq!(
        error_fields(&bad, "an unknown status"),
        ["status".to_owned()].into()
    );

    let paused = send(
        &m,
        Method::PATCH,
        &format!("/services/{id}"),
        &json!({"paused": true}),
    )
    .await;
    assert_eq!(paused.status, 200, "{}", paused.text);
    let r = ping(
        &m,
        Method::GET,
        &format!("{url}?status=down&msg=while%20paused"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json, json!({"ok": true, "paused": true}));
    let resumed = send(
        &m,
        Method::PATCH,
        &format!("/services/{id}"),
        &json!({"paused": false}),
    )
    .await;
    assert_eq!(resumed.status, 200, "{}", resumed.text);
    assert_recorded(&ping(&m, Method::GET, &url).await, "a ping once resumed");
    // Results are recorded in the order they were published: once the
    // later ping is logged, a log of the paused one would be too.
    let logs = wait_logs(&m, id, 1).await;
    assert_eq!(logs.len(), 1, "only the ping after resuming: {logs:?}");
    assert_eq!(logs[0]["status"], "UP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_turned_into_push_gets_its_token_in_that_answer_only() {
    let m = Monitor::start();
    let http = create(&m, service("cron job", NOWHERE, 60)).await;
    let id = id_of(&http);
    let patched = send(
        &m,
        Method::PATCH,
        &format!("/services/{id}"),
        &json!({"url": "push://", "grace": 30}),
    )
    .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    let url = patched.json["push_url"]
        .as_str()
        .unwrap_or_else(|| panic!("no push_url when it became push: {}", patched.text))
        .to_owned();
    assert_recorded(&ping(&m, Method::GET, &url).await, "the new push service");

    // A later change keeps the token, and does not show it again.
    let renamed = send(
        &m,
        Method::PATCH,
        &format!("/services/{id}"),
        &json!({"name": "nightly cron"}),
    )
    .await;
    assert_eq!(renamed.status, 200, "{}", renamed.text);
    assert!(renamed.json.get("push_url").is_none(), "{}", renamed.text);
    assert_recorded(&ping(&m, Method::GET, &url).await, "the token kept");
}
