//! `GET /metrics`: the Prometheus series move with what the monitor does
//! (checks by result, their duration, the scheduler's lag, services by
//! status, WebSocket clients, alert deliveries), need a key once keys
//! exist, and are text `promtool check metrics` accepts.
use crate::common::receiver::Receiver;
use crate::helpers::*;

use reqwest::Method;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

/// Every sample of a scrape, by its name and labels as written
/// (`healthmon_checks_total{result="up"}`).
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

async fn scrape(m: &Monitor) -> Reply {
    let r = get(m, "/metrics").await;
    assert_eq!(r.status, 200, "{}", r.text);
    r
}

/// The value of `key` in `s`, 0 when the series is not there yet.
fn value(s: &HashMap<String, f64>, key: &str) -> f64 {
    s.get(key).copied().unwrap_or(0.0)
}

/// Runs `promtool check metrics` on `text`: under CI a missing promtool
/// fails the test, elsewhere it skips loudly (Debian's `prometheus`
/// package has it; `.ci/run` installs it).
fn promtool_accepts(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return skip::skip("promtool", &e.to_string()),
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics refused the scrape:\n{}{}\n---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_services_and_websocket_clients_show_by_label_and_promtool_accepts_them() {
    let m = Monitor::start();
    let target = Target::start().await;
    let first = scrape(&m).await;
    assert!(
        first
            .content_type()
            .starts_with("text/plain; version=0.0.4"),
        "{}",
        first.content_type()
    );
    let before = samples(&first.text);
    assert_eq!(value(&before, "healthmon_checks_total{result=\"up\"}"), 0.0);
    assert_eq!(value(&before, "healthmon_ws_clients"), 0.0);

    m.register(service("up", &target.url("/ok"), 1)).await;
    m.register(service("down", &target.url("/fail"), 1)).await;
    let mut slow = service("slow", &target.url("/slow?ms=300"), 1);
    slow["degraded_latency_ms"] = json!(100);
    m.register(slow).await;
    let paused = m.register(service("paused", NOWHERE, 60)).await;
    let r = send(
        &m,
        Method::PATCH,
        &format!("/services/{}", id_of(&paused)),
        &json!({"paused": true}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let ws = WsClient::connect(&m).await;

    let (text, s) = eventually(
        "two checks of each result and every status in /metrics",
        || async {
            let r = scrape(&m).await;
            let s = samples(&r.text);
            let enough = ["up", "down", "degraded"]
                .iter()
                .all(|r| value(&s, &format!("healthmon_checks_total{{result=\"{r}\"}}")) >= 2.0);
            let statuses = ["up", "down", "degraded"]
                .iter()
                .all(|st| value(&s, &format!("healthmon_services{{status=\"{st}\"}}")) == 1.0);
            (enough && statuses).then_some((r.text, s))
        },
    )
    .await;
    assert_eq!(
        value(&s, "healthmon_services{status=\"pending\"}"),
        0.0,
        "{text}"
    );
    assert_eq!(value(&s, "healthmon_services_paused"), 1.0, "{text}");
    assert_eq!(value(&s, "healthmon_ws_clients"), 1.0, "{text}");
    // Every check counted is in the duration histogram, and the slow ones
    // (300 ms each) are in its sum and above its 0.25 s bucket.
    let checks: f64 = ["up", "down", "degraded"]
        .iter()
        .map(|r| value(&s, &format!("healthmon_checks_total{{result=\"{r}\"}}")))
        .sum();
    let timed = value(&s, "healthmon_check_duration_seconds_count");
    assert!(timed >= checks, "{timed} timed, {checks} counted\n{text}");
    let degraded = value(&s, "healthmon_checks_total{result=\"degraded\"}");
    assert!(
        value(&s, "healthmon_check_duration_seconds_sum") >= 0.3 * degraded,
        "{text}"
    );
    let quick = value(&s, "healthmon_check_duration_seconds_bucket{le=\"0.25\"}");
    assert!(timed - quick >= degraded, "{text}");
    // Each check's job went through the scheduler, which noted its lag.
    assert!(
        value(&s, "healthmon_schedule_lag_seconds_count") >= checks,
        "{text}"
    );
    assert!(s.contains_key("healthmon_checks_in_flight"), "{text}");
    assert!(
        s.contains_key("healthmon_checks_dropped_total{cause=\"stale_at_worker\"}"),
        "{text}"
    );
    promtool_accepts(&text);

    drop(ws);
    eventually("the WebSocket client to leave the gauge", || async {
        let s = samples(&scrape(&m).await.text);
        (value(&s, "healthmon_ws_clients") == 0.0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_deliveries_count_by_kind_and_state() {
    let m = Monitor::start();
    let receiver = Receiver::start().await;
    receiver.script("/refuses", &[400]);
    for (name, path) in [("ok", "/hook"), ("refusing", "/refuses")] {
        let r = send(
            &m,
            Method::POST,
            "/channels",
            &json!({"name": name, "kind": "webhook", "config": {"url": receiver.url(path)}}),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let test = send(
            &m,
            Method::POST,
            &format!("/channels/{}/test", id_of(&r.json)),
            &json!({}),
        )
        .await;
        assert_eq!(test.status, 202, "{}", test.text);
    }
    let text = eventually("a sent and a failed test alert in /metrics", || async {
        let r = scrape(&m).await;
        let s = samples(&r.text);
        (value(&s, "healthmon_alerts_total{kind=\"test\",state=\"sent\"}") == 1.0
            && value(&s, "healthmon_alerts_total{kind=\"test\",state=\"failed\"}") == 1.0)
            .then_some(r.text)
    })
    .await;
    promtool_accepts(&text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_a_key_once_keys_exist() {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let viewer = create_key(&dir, "viewer", "read");
    let m = Monitor::start_in(Arc::clone(&dir), &[]);
    let none = get(&m, "/metrics").await;
    assert_problem(&none, 401, "no key");
    let wrong = m
        .http
        .get(m.url("/metrics"))
        .bearer_auth("hm_0000")
        .send()
        .await
        .expect("request");
    assert_eq!(wrong.status(), 401);
    let read = m
        .http
        .get(m.url("/metrics"))
        .bearer_auth(&viewer)
        .send()
        .await
        .expect("request");
    assert_eq!(read.status(), 200);
    let text = read.text().await.expect("body");
    assert!(
        text.contains("# TYPE healthmon_checks_total counter"),
        "{text}"
    );
}
