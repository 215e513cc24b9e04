//! Storage and retention through the real binary: the maintenance pass rolls
//! recorded checks up into hours, and `GET /services/{id}/uptime` serves
//! them (the store-level promises are in tests/store.rs).

mod common;

use common::target::Target;
use common::{Monitor, eventually, service};
use serde_json::Value;

/// A monitor that runs maintenance every second.
fn monitor() -> Monitor {
    Monitor::start_with(&[("HEALTHMON__LOGS__MAINTENANCE_INTERVAL_S", "1")])
}

fn assert_counts_shape(v: &Value, what: &str) {
    for key in [
        "checks",
        "failures",
        "uptime_ratio",
        "mean_latency_ms",
        "max_latency_ms",
    ] {
        assert!(v.get(key).is_some(), "{what} lacks {key}: {v}");
    }
    assert!(
        v["checks"].is_i64() && v["failures"].is_i64(),
        "{what}: {v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uptime_serves_hourly_rollups_of_recorded_checks_with_totals() {
    let target = Target::start().await;
    let m = monitor();
    let up = m.register(service("up", &target.url("/ok"), 1)).await["id"]
        .as_i64()
        .expect("id");
    let down = m.register(service("down", &target.url("/fail"), 1)).await["id"]
        .as_i64()
        .expect("id");

    let body = eventually("two checks of each service rolled up", || async {
        let (_, a) = m.get(&format!("/services/{up}/uptime")).await;
        let (_, b) = m.get(&format!("/services/{down}/uptime")).await;
        (a["totals"]["checks"].as_i64() >= Some(2) && b["totals"]["checks"].as_i64() >= Some(2))
            .then_some((a, b))
    })
    .await;
    let (a, b) = body;

    assert_eq!(a["service_id"], up);
    assert_eq!(a["hours"], 24);
    for key in ["from", "to"] {
        let t = a[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} is not text: {a}"));
        assert!(t.ends_with('Z'), "{key} is not RFC 3339 UTC: {t}");
    }
    assert_counts_shape(&a["totals"], "totals");
    let hourly = a["hourly"].as_array().expect("hourly is a list");
    assert!(!hourly.is_empty() && hourly.len() <= 2, "{a}");
    let mut sum = 0;
    for h in hourly {
        assert_counts_shape(h, "an hour");
        let start = h["hour_start"].as_str().expect("hour_start is text");
        assert!(
            start.ends_with(":00:00.000Z"),
            "not the start of an hour: {start}"
        );
        sum += h["checks"].as_i64().expect("checks");
    }
    assert_eq!(Some(sum), a["totals"]["checks"].as_i64(), "{a}");
    assert_eq!(a["totals"]["failures"], 0, "{a}");
    assert_eq!(a["totals"]["uptime_ratio"], 1.0, "{a}");
    assert!(a["totals"]["mean_latency_ms"].as_f64() >= Some(0.0), "{a}");
    assert!(a["totals"]["max_latency_ms"].as_i64() >= Some(0), "{a}");

    assert_eq!(b["totals"]["failures"], b["totals"]["checks"], "{b}");
    assert_eq!(b["totals"]["uptime_ratio"], 0.0, "{b}");

    // Never more than what was logged.
    let logged = m.logs(up, "limit=1000").await.len() as i64;
    assert!(
        a["totals"]["checks"].as_i64() <= Some(logged),
        "{a} vs {logged} logs"
    );

    let (status, wide) = m.get(&format!("/services/{up}/uptime?hours=2160")).await;
    assert_eq!(
        (status, &wide["hours"]),
        (200, &Value::from(2160)),
        "{wide}"
    );
    assert!(
        m.log_text().contains("log maintenance done"),
        "{}",
        m.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uptime_answers_404_for_unknown_services_and_400_for_bad_hours() {
    let m = monitor();
    let id = m
        .register(service("idle", "http://127.0.0.1:9/", 3600))
        .await["id"]
        .as_i64()
        .expect("id");

    let (status, empty) = m.get(&format!("/services/{id}/uptime?hours=1")).await;
    assert_eq!(status, 200, "{empty}");
    assert_eq!(empty["hours"], 1);

    for path in ["/services/999999/uptime", "/services/abc/uptime"] {
        let (status, body) = m.get(path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["status"], 404, "{path}: {body}");
    }
    for query in ["hours=0", "hours=2161", "hours=-3", "hours=day", "hours="] {
        let resp = m
            .http
            .get(m.url(&format!("/services/{id}/uptime?{query}")))
            .send()
            .await
            .expect("GET");
        assert_eq!(resp.status(), 400, "{query}");
        let ctype = resp.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .to_owned();
        assert_eq!(ctype, "application/problem+json", "{query}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["errors"][0]["field"], "hours", "{query}: {body}");
    }

    let resp = m
        .http
        .request(
            reqwest::Method::OPTIONS,
            m.url(&format!("/services/{id}/uptime")),
        )
        .send()
        .await
        .expect("OPTIONS");
    assert_eq!(resp.status(), 204);
    assert_eq!(resp.headers()["allow"], "GET, HEAD, OPTIONS");
    let resp = m
        .http
        .delete(m.url(&format!("/services/{id}/uptime")))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(resp.status(), 405);
    let resp = m
        .http
        .head(m.url(&format!("/services/{id}/uptime")))
        .send()
        .await
        .expect("HEAD");
    assert_eq!(resp.status(), 200);
}
