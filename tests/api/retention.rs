//! Storage and retention through the real binary: rollups count recorded
//! checks into hours every few seconds, and `GET /services/{id}/uptime`
//! serves them (the store-level promises are in tests/store.rs).
use crate::helpers::*;

use serde_json::Value;

/// A monitor that rolls up every second and deletes expired logs only once
/// an hour (so rollups are shown to run on their own clock).
fn monitor() -> Monitor {
    Monitor::start_with(&[
        ("HEALTHMON__LOGS__ROLLUP_INTERVAL_S", "1"),
        ("HEALTHMON__LOGS__MAINTENANCE_INTERVAL_S", "3600"),
    ])
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

/// Figures, not a pass/fail test: how long rolling up and deleting a
/// million logs takes on each backend, and how long a recorder batch waits
/// meanwhile. `cargo test --release --test api retention::figures -- --ignored
/// --nocapture` (`HEALTHMON_FIGURES_LOGS` sets the number of logs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run by hand"]
async fn figures_rollup_and_retention_of_a_million_logs() {
    use healthmon::config::DatabaseUrl;
    use healthmon::store::Store;
    let logs: i64 = std::env::var("HEALTHMON_FIGURES_LOGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("f.db");
    let store = Store::open(&DatabaseUrl::Sqlite(path.clone()), 4)
        .await
        .expect("open");
    let url = path.to_string_lossy().into_owned();
    tokio::task::spawn_blocking(move || {
        use diesel::Connection;
        use diesel::connection::SimpleConnection;
        let mut c = diesel::SqliteConnection::establish(&url).expect("connect");
        c.batch_execute(&fill_sql(
            logs,
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {N}) ",
            "n",
        ))
        .expect("fill");
    })
    .await
    .expect("fill task");
    measure("sqlite", &store, logs).await;

    let Some(db) = pg_db().await else {
        return;
    };
    let store = Store::open(&DatabaseUrl::Postgres(db.url.clone()), 4)
        .await
        .expect("open PostgreSQL");
    {
        use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
        let mut c = AsyncPgConnection::establish(&db.url)
            .await
            .expect("connect");
        c.batch_execute(&fill_sql(logs, "", "generate_series(1, {N}) AS n(i)"))
            .await
            .expect("fill");
    }
    measure("postgres", &store, logs).await;
}

/// 1,000 services and `logs` logs, 2% DOWN, one every 10 ms from a fixed
/// hour on (about 2.8 hours per million).
fn fill_sql(logs: i64, with: &str, from: &str) -> String {
    let from = from.replace("{N}", &logs.to_string());
    let with = with.replace("{N}", &logs.to_string());
    let base = 490_000 * healthmon::store::HOUR_MS;
    let services = with.replace(&logs.to_string(), "1000");
    let services_from = from.replace(&logs.to_string(), "1000");
    format!(
        "{services}INSERT INTO services (name, url, interval_s, timeout_s, paused, last_status, \
         created_at, updated_at) SELECT 's' || i, 'http://127.0.0.1:9/', 10, 5, FALSE, 'UP', 0, 0 \
         FROM {services_from};\n\
         {with}INSERT INTO health_logs (service_id, status, latency_ms, status_code, error, \
         scheduled_at, checked_at) SELECT 1 + i % 1000, CASE WHEN i % 50 = 0 THEN 'DOWN' ELSE 'UP' \
         END, i % 300, 200, NULL, {base} + i * 10, {base} + i * 10 FROM {from};"
    )
}

async fn measure(backend: &str, store: &healthmon::store::Store, logs: i64) {
    use healthmon::domain::{CheckResult, ServiceId, Status};
    use std::time::{Duration, Instant};
    let started = Instant::now();
    let report = store.rollup(50_000).await.expect("rollup");
    let rollup_s = started.elapsed().as_secs_f64();

    // A recorder writing 100 results every 20 ms while the logs are deleted.
    let stop = tokio_util::sync::CancellationToken::new();
    let writer = {
        let (store, stop) = (store.clone(), stop.clone());
        tokio::spawn(async move {
            let mut waits = Vec::new();
            let mut at = 10_i64.pow(13);
            while !stop.is_cancelled() {
                let batch: Vec<CheckResult> = (0..100)
                    .map(|k| CheckResult {
                        service_id: ServiceId(1 + k),
                        scheduled_at: at,
                        status: Status::Up,
                        latency_ms: 1,
                        status_code: Some(200),
                        error: None,
                        checked_at: at,
                        cert_expires_at: None,
                        region: None,
                    })
                    .collect();
                at += 1;
                let t = Instant::now();
                // Retried like the recorder does.
                while let Err(e) = store.record(&batch).await {
                    println!("record failed (retrying): {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                waits.push(t.elapsed());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            waits
        })
    };
    let started = Instant::now();
    let (mut deleted, mut slowest) = (0, Duration::ZERO);
    loop {
        let t = Instant::now();
        let n = store
            .delete_logs_before(10_i64.pow(13), 1_000)
            .await
            .expect("delete");
        slowest = slowest.max(t.elapsed());
        deleted += n;
        if n < 1_000 {
            break;
        }
        // As the maintenance pass pauses.
        tokio::time::sleep(Duration::from_millis(10).max(t.elapsed() * 2)).await;
    }
    let delete_s = started.elapsed().as_secs_f64();
    stop.cancel();
    let mut waits = writer.await.expect("writer");
    waits.sort();
    let p = |q: f64| waits[((waits.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    println!(
        "{backend}: {logs} logs; rollup {rollup_s:.2} s ({} hourly rows); deleted {deleted} in \
         {delete_s:.1} s, slowest batch {:.1} ms; concurrent 100-result record batches: \
         p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} batches)",
        report.hours,
        slowest.as_secs_f64() * 1e3,
        p(0.5),
        p(0.99),
        p(1.0),
        waits.len()
    );
    assert_eq!(deleted as i64, logs);
}
