//! A quick load measurement, not a pass/fail test: 1,000 services at a 1 s
//! interval against a local target, then figures for a measured window.
//!
//! Run it with a release build for meaningful numbers:
//!
//! ```sh
//! cargo test --release --test load -- --ignored --nocapture
//! ```
//!
//! It prints checks stored per second (counted in the database, not from a
//! counter), schedule lag (check start minus due time) p50/p99/max, CPU
//! seconds per 1,000 checks and the RSS of the monitor process.

mod common;

use common::target::Target;
use common::*;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use std::time::{Duration, Instant};

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = BigInt)]
    lag: i64,
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at ") ".
    let after = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run with --ignored --nocapture"]
async fn one_thousand_services_at_one_second() {
    const SERVICES: usize = 1000;
    const WARMUP: Duration = Duration::from_secs(5);
    const WINDOW: Duration = Duration::from_secs(30);
    let target = Target::start().await;
    // Registration as fast as the API takes it: no write rate limit.
    let m = Monitor::start_with(&[("HEALTHMON__API__WRITE_RATE_PER_S", "0")]);
    let pid = m.child.id();

    let started = Instant::now();
    let mut tasks = Vec::new();
    for chunk in 0..10 {
        let (http, url) = (m.http.clone(), m.url("/services"));
        let body = service("load", &target.url("/ok"), 1);
        tasks.push(tokio::spawn(async move {
            for _ in 0..SERVICES / 10 {
                let r = http.post(&url).json(&body).send().await.expect("POST");
                assert_eq!(r.status(), 201, "chunk {chunk}");
            }
        }));
    }
    for t in tasks {
        t.await.expect("register");
    }
    println!("registered {SERVICES} services in {:?}", started.elapsed());

    tokio::time::sleep(WARMUP).await;
    let from = chrono::Utc::now().timestamp_millis();
    let cpu0 = cpu_seconds(pid);
    tokio::time::sleep(WINDOW).await;
    let to = chrono::Utc::now().timestamp_millis();
    let cpu1 = cpu_seconds(pid);
    let rss = rss_mb(pid);
    // Let the recorder flush the window's last batch.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let db = m.db_path();
    let mut conn = SqliteConnection::establish(db.to_str().expect("path")).expect("open db");
    let mut lags: Vec<i64> = diesel::sql_query(
        "SELECT checked_at - latency_ms - scheduled_at AS lag FROM health_logs \
         WHERE scheduled_at >= ? AND scheduled_at < ?",
    )
    .bind::<BigInt, _>(from)
    .bind::<BigInt, _>(to)
    .load::<Row>(&mut conn)
    .expect("query")
    .into_iter()
    .map(|r| r.lag)
    .collect();
    lags.sort_unstable();
    let checks = lags.len();
    let secs = (to - from) as f64 / 1000.0;
    let expected = SERVICES as f64 * secs;
    let cpu = cpu1 - cpu0;
    println!(
        "window {secs:.1} s: {checks} checks stored ({:.0}/s, {:.1}% of the {expected:.0} due)",
        checks as f64 / secs,
        100.0 * checks as f64 / expected
    );
    println!(
        "schedule lag (check start - due): p50 {} ms, p99 {} ms, max {} ms",
        percentile(&lags, 0.50),
        percentile(&lags, 0.99),
        lags.last().copied().unwrap_or(0)
    );
    println!(
        "cpu {cpu:.2} s = {:.3} CPU-s per 1,000 checks; rss {rss:.1} MB",
        cpu / (checks.max(1) as f64 / 1000.0)
    );
    assert!(checks > 0, "nothing was stored");
}
