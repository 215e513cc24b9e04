//! `GET /metrics`: the Prometheus series move with what the monitor does
//! (checks by result, their duration, the scheduler's lag, services by
//! status, WebSocket clients, alert deliveries), need a key once keys
//! exist, and are text `promtool check metrics` accepts.
use crate::common::promtool::{accepts as promtool_accepts, samples};
use crate::common::receiver::Receiver;
use crate::helpers::*;

use reqwest::Method;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

async fn scrape(m: &Monitor) -> Reply {
    let r = get(m, "/metrics").await;
    assert_eq!(r.status, 200, "{}", r.text);
    r
}

/// The value of `key` in `s`, 0 when the series is not there yet.
fn value(s: &HashMap<String, f64>, key: &str) -> f64 {
    s.get(key).copied().unwrap_or(0.0)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_process_queues_show_their_fill_consumers_and_bounds() {
    let m = Monitor::start();
    // The worker pool and the recorder take their queues shortly after
    // the start; the depths are read at most once a second.
    let (text, s) = eventually("both queues with their consumer in /metrics", || async {
        let r = scrape(&m).await;
        let s = samples(&r.text);
        ["jobs", "results"]
            .iter()
            .all(|q| value(&s, &format!("healthmon_queue_consumers{{queue=\"{q}\"}}")) == 1.0)
            .then_some((r.text, s))
    })
    .await;
    for q in ["jobs", "results"] {
        let messages = format!("healthmon_queue_messages{{queue=\"{q}\"}}");
        assert!(s.contains_key(&messages), "{messages}\n{text}");
        let capacity = value(&s, &format!("healthmon_queue_capacity{{queue=\"{q}\"}}"));
        assert!(capacity >= 1.0, "{q}\n{text}");
        assert!(value(&s, &messages) <= capacity, "{q}\n{text}");
    }
    assert!(
        !text.contains("queue=\"dead\""),
        "no dead-letter queue without a broker\n{text}"
    );
    promtool_accepts(&text);
}

/// The `healthmon_*` names in backticks in README.md's "Metrics" section.
fn readme_series() -> std::collections::BTreeSet<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let start = readme.find("\n## Metrics\n").expect("a Metrics section");
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    section
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            s.starts_with("healthmon_")
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_lists_every_series_served_and_nothing_else() {
    let m = Monitor::start();
    // The queue series appear once the worker and recorder took their queues.
    let text = eventually("the queue series in /metrics", || async {
        let r = scrape(&m).await;
        r.text
            .contains("healthmon_queue_consumers{")
            .then_some(r.text)
    })
    .await;
    let served: std::collections::BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    assert!(served.len() >= 10, "{text}");
    let listed = readme_series();
    let missing: Vec<_> = served.difference(&listed).collect();
    let extra: Vec<_> = listed.difference(&served).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "README.md's Metrics section is out of date: served but not listed {missing:?}, \
         listed but not served {extra:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grafana_dashboard_asks_only_for_series_the_monitor_serves() {
    let m = Monitor::start();
    let text = scrape(&m).await.text;
    let served: std::collections::BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/healthmon.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("the dashboard")).expect("JSON");
    let mut asked = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("an expr");
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("healthmon_") {
                    asked.push((panel["title"].to_string(), word.to_owned()));
                }
            }
        }
    }
    assert!(asked.iter().any(|(_, w)| w == "healthmon_queue_messages"));
    for (title, word) in asked {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| word.strip_suffix(s).filter(|f| served.contains(f)))
            .unwrap_or(&word);
        assert!(
            served.contains(family),
            "panel {title} asks for {word}, which /metrics does not serve"
        );
    }
}
