//! DEGRADED everywhere a status appears: a service whose real checks pass
//! slower than its `degraded_latency_ms` shows DEGRADED over REST and the
//! WebSocket (events and snapshot), makes a `degraded` alert and, once
//! fast again, an `up`; its uptime counts DEGRADED as up and reports its
//! share.
use crate::helpers::*;

use reqwest::Method;
use serde_json::{Value, json};

/// Rollups every second, so uptime follows the checks within a test.
fn monitor() -> Monitor {
    Monitor::start_with(&[
        ("HEALTHMON__LOGS__ROLLUP_INTERVAL_S", "1"),
        ("HEALTHMON__LOGS__MAINTENANCE_INTERVAL_S", "3600"),
    ])
}

/// The next `status_change` of service `id`, and the `check`s of it read
/// before it.
async fn next_change(ws: &mut WsClient, id: i64) -> (Value, Vec<Value>) {
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

/// The events of service `id`'s alerts, oldest first.
async fn alert_events(m: &Monitor, id: i64) -> Vec<String> {
    let r = get(m, &format!("/alerts?service_id={id}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut events: Vec<String> = r
        .json
        .as_array()
        .expect("a list of alerts")
        .iter()
        .map(|a| a["event"].as_str().unwrap_or_default().to_owned())
        .collect();
    events.reverse();
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_service_is_degraded_over_rest_and_ws_alerts_and_counts_as_up() {
    let target = Target::start().await;
    let m = monitor();
    let channel = send(
        &m,
        Method::POST,
        "/channels",
        // Nothing listens there: the alerts are read from the outbox.
        &json!({"name": "ops", "kind": "webhook", "config": {"url": "http://127.0.0.1:9/hook"}}),
    )
    .await;
    assert_eq!(channel.status, 201, "{}", channel.text);
    let mut ws = WsClient::connect(&m).await;
    let mut body = service("slow", &target.url("/slow?ms=300"), 1);
    body["degraded_latency_ms"] = json!(100);
    body["channels"] = json!([id_of(&channel.json)]);
    let id = id_of(&m.register(body).await);

    let (change, checks) = next_change(&mut ws, id).await;
    assert_eq!(
        (&change["old_status"], &change["new_status"]),
        (&json!("PENDING"), &json!("DEGRADED")),
        "{change}"
    );
    let last = checks.last().expect("the deciding check's event");
    assert_eq!(last["status"], "DEGRADED", "{last}");
    assert!(
        last["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("latency: ")),
        "{last}"
    );

    // REST: the service, the list and the logs.
    assert_eq!(one_service(&m, id).await["last_status"], "DEGRADED");
    let listed = all_services(&m).await;
    let mine = listed
        .as_array()
        .and_then(|all| all.iter().find(|s| s["id"] == id))
        .cloned()
        .unwrap_or_else(|| panic!("service {id} not listed: {listed}"));
    assert_eq!(mine["last_status"], "DEGRADED", "{mine}");
    let logs = m.logs(id, "limit=5").await;
    assert!(
        logs.iter().all(|l| l["status"] == "DEGRADED"),
        "every check slow: {logs:?}"
    );
    // A dashboard connecting now sees it in its snapshot.
    let mut late = WsClient::connect(&m).await;
    let (snapshot, _) = late
        .until("the snapshot", |m| m["type"] == "snapshot")
        .await;
    let shown = snapshot["services"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["id"] == id))
        .cloned()
        .unwrap_or_else(|| panic!("service {id} not in {snapshot}"));
    assert_eq!(shown["last_status"], "DEGRADED", "{shown}");
    assert_eq!(alert_events(&m, id).await, ["degraded"]);

    // Uptime: DEGRADED checks are up, and their share is reported.
    let uptime = eventually("two checks rolled up", || async {
        let (_, u) = m.get(&format!("/services/{id}/uptime")).await;
        (u["totals"]["checks"].as_i64() >= Some(2)).then_some(u)
    })
    .await;
    let totals = &uptime["totals"];
    assert_eq!(totals["failures"], 0, "{uptime}");
    assert_eq!(totals["degraded"], totals["checks"], "{uptime}");
    assert_eq!(totals["uptime_ratio"], 1.0, "{uptime}");
    assert_eq!(totals["degraded_ratio"], 1.0, "{uptime}");
    for hour in uptime["hourly"].as_array().expect("hourly") {
        assert!(hour.get("degraded_ratio").is_some(), "{hour}");
    }

    // Fast enough again (the limit raised to 900 ms, just under the 1 s
    // timeout, for answers of 300 ms): UP at once (no threshold between the shades of
    // up), a status_change and an `up` alert saying it ended.
    let r = send(
        &m,
        Method::PATCH,
        &format!("/services/{id}"),
        &json!({"degraded_latency_ms": 900}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (change, _) = next_change(&mut ws, id).await;
    assert_eq!(
        (&change["old_status"], &change["new_status"]),
        (&json!("DEGRADED"), &json!("UP")),
        "{change}"
    );
    assert_eq!(one_service(&m, id).await["last_status"], "UP");
    assert_eq!(alert_events(&m, id).await, ["degraded", "up"]);
    let uptime = eventually("an UP check rolled up", || async {
        let (_, u) = m.get(&format!("/services/{id}/uptime")).await;
        let t = &u["totals"];
        (t["degraded"].as_i64() < t["checks"].as_i64()).then_some(u)
    })
    .await;
    let share = uptime["totals"]["degraded_ratio"].as_f64().unwrap_or(-1.0);
    assert!(share > 0.0 && share < 1.0, "{uptime}");
    assert_eq!(uptime["totals"]["uptime_ratio"], 1.0, "{uptime}");
}
