//! Noise control through the API: `failure_threshold`, `success_threshold`,
//! `retry_interval` and `channels` on services. Every check is logged and
//! sent as a `check` event; only the status (its `status_change` and
//! alerts) waits for the threshold, and retries make a confirmed DOWN a
//! matter of seconds, not of intervals.
use crate::helpers::*;

use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Reads WebSocket messages about service `id` until its next
/// `status_change`, and returns that and the `check`s before it (the
/// deciding check's event comes just before its change's).
async fn checks_until_change(ws: &mut WsClient, id: i64) -> (Value, Vec<Value>) {
    let (change, seen) = ws
        .until("a status_change", |m| {
            m["type"] == "status_change" && m["service_id"] == id
        })
        .await;
    let checks = seen
        .into_iter()
        .filter(|m| m["type"] == "check" && m["service_id"] == id)
        .collect();
    (change, checks)
}

fn statuses(checks: &[Value]) -> Vec<&str> {
    checks
        .iter()
        .map(|c| c["status"].as_str().unwrap_or_default())
        .collect()
}

async fn webhook_channel(m: &Monitor, name: &str) -> i64 {
    let r = send(
        m,
        Method::POST,
        "/channels",
        &json!({"name": name, "kind": "webhook", "config": {"url": "http://127.0.0.1:9/hook"}}),
    )
    .await;
    assert_eq!(r.status, 201, "create channel: {}", r.text);
    id_of(&r.json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_is_confirmed_after_its_threshold_of_retries_in_seconds() {
    let target = Target::start().await;
    let m = Monitor::start();
    let channel = webhook_channel(&m, "ops").await;
    let mut ws = WsClient::connect(&m).await;
    let started = Instant::now();
    let svc = create(
        &m,
        json!({
            "name": "flaky", "url": target.url("/fail"), "interval": 60, "timeout": 1,
            "failure_threshold": 3, "retry_interval": 1, "channels": [channel],
        }),
    )
    .await;
    assert_eq!(svc["failure_threshold"], 3);
    assert_eq!(svc["retry_interval"], 1);
    assert_eq!(svc["channels"], json!([channel]));
    let id = id_of(&svc);

    let (change, checks) = checks_until_change(&mut ws, id).await;
    let took = started.elapsed();
    assert_eq!(
        statuses(&checks),
        ["DOWN", "DOWN", "DOWN"],
        "every failing check shown, the change only with the third"
    );
    assert_eq!(change["old_status"], "PENDING");
    assert_eq!(change["new_status"], "DOWN");
    // Three rounds at a 60 s interval would take two minutes; retried
    // every second they take about two.
    assert!(took < Duration::from_secs(15), "DOWN known after {took:?}");
    let logs = m.logs(id, "limit=10").await;
    assert_eq!(logs.len(), 3, "the deciding check is the third: {logs:?}");
    assert_eq!(one_service(&m, id).await["last_status"], "DOWN");

    // One alert for the one change, to the service's channel.
    let alerts = eventually("the change's alert", || async {
        let r = get(&m, &format!("/alerts?service_id={id}")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.json.as_array().filter(|a| !a.is_empty()).cloned()
    })
    .await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["event"], "down");
    assert_eq!(alerts[0]["channel_id"], channel);

    // Confirmed DOWN: no more retries, the next round is a minute away.
    let before = target.hits("/fail");
    let quiet_since = Instant::now();
    eventually("two seconds without a retry", || async {
        (quiet_since.elapsed() > Duration::from_secs(2)).then_some(())
    })
    .await;
    assert_eq!(target.hits("/fail"), before, "checked again while DOWN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_waits_for_its_success_threshold() {
    let target = Target::start().await;
    target.set_up(false);
    let m = Monitor::start();
    let mut ws = WsClient::connect(&m).await;
    let id = id_of(
        &create(
            &m,
            json!({
                "name": "switch", "url": target.url("/switch"), "interval": 1, "timeout": 1,
                "success_threshold": 2,
            }),
        )
        .await,
    );
    let (down, before) = checks_until_change(&mut ws, id).await;
    assert_eq!(
        down["new_status"], "DOWN",
        "one failure is enough by default"
    );
    assert_eq!(statuses(&before), ["DOWN"], "its own check decided");

    target.set_up(true);
    let (up, checks) = checks_until_change(&mut ws, id).await;
    assert_eq!(
        (&up["old_status"], &up["new_status"]),
        (&json!("DOWN"), &json!("UP"))
    );
    let ups: Vec<&str> = statuses(&checks)
        .into_iter()
        .skip_while(|s| *s == "DOWN")
        .collect();
    assert_eq!(
        ups,
        ["UP", "UP"],
        "the first passing check shown, the second decides: {checks:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_defaults_keep_one_check_deciding() {
    let target = Target::start().await;
    let m = Monitor::start();
    let mut ws = WsClient::connect(&m).await;
    let svc = create(&m, service("plain", &target.url("/fail"), 30)).await;
    assert_eq!(svc["failure_threshold"], 1);
    assert_eq!(svc["success_threshold"], 1);
    assert_eq!(svc["retry_interval"], 30, "the interval when none is set");
    assert_eq!(svc["channels"], json!([]));
    let id = id_of(&svc);
    let (change, before) = checks_until_change(&mut ws, id).await;
    assert_eq!(change["new_status"], "DOWN");
    assert_eq!(statuses(&before), ["DOWN"], "flipped on its first check");
    assert_eq!(m.logs(id, "limit=10").await.len(), 1);
    // No channels, so no alert.
    let r = get(&m, &format!("/alerts?service_id={id}")).await;
    assert_eq!(r.json, json!([]), "{}", r.text);

    // An unset retry interval follows the interval.
    let r = send(
        &m,
        Method::PATCH,
        &format!("/services/{id}"),
        &json!({"interval": 20}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["retry_interval"], 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_noise_control_values_are_422_naming_the_field_and_change_nothing() {
    let m = Monitor::start();
    let channel = webhook_channel(&m, "ops").await;
    let cases = [
        ("failure_threshold", json!(0)),
        ("failure_threshold", json!(101)),
        ("failure_threshold", json!("3")),
        ("success_threshold", json!(0)),
        ("success_threshold", json!(2.5)),
        ("retry_interval", json!(0)),
        ("retry_interval", json!(31)),
        ("channels", json!([channel + 100])),
        ("channels", json!([channel, -1])),
        ("channels", json!("ops")),
    ];
    for (field, bad) in &cases {
        let body = body_with(json!({ *field: bad.clone() }));
        let r = send(&m, Method::POST, "/services", &body).await;
        assert_invalid(&r, &[field], &format!("POST {field}: {bad}"));
    }
    assert_eq!(all_services(&m).await, json!([]), "nothing stored");

    let svc = create(
        &m,
        body_with(json!({"paused": true, "failure_threshold": 2, "channels": [channel]})),
    )
    .await;
    let id = id_of(&svc);
    for (field, bad) in &cases {
        let patch = json!({ *field: bad.clone() });
        let r = send(&m, Method::PATCH, &format!("/services/{id}"), &patch).await;
        assert_invalid(&r, &[field], &format!("PATCH {field}: {bad}"));
        let mut put = body_with(json!({"paused": true}));
        put[*field] = bad.clone();
        let r = send(&m, Method::PUT, &format!("/services/{id}"), &put).await;
        assert_invalid(&r, &[field], &format!("PUT {field}: {bad}"));
    }
    assert_eq!(one_service(&m, id).await, svc, "unchanged");
    // Lowering the interval under a set retry interval is refused too.
    let r = send(
        &m,
        Method::PATCH,
        &format!("/services/{id}"),
        &json!({"retry_interval": 10}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = send(
        &m,
        Method::PATCH,
        &format!("/services/{id}"),
        &json!({"interval": 5, "timeout": 5}),
    )
    .await;
    assert_invalid(&r, &["retry_interval"], "interval under the retry interval");
}
