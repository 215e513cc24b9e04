//! A quick load measurement, not a pass/fail test: 1,000 services at a 1 s
//! interval against a local target, then figures for a measured window.
//!
//! Run it with a release build for meaningful numbers:
//!
//! ```sh
//! cargo test --release --test load -- --ignored --nocapture
//! ```
//!
//! The embedded monitor (SQLite, in-process bus) and a fleet (1
//! `api,scheduler` + 2 `worker` processes on PostgreSQL and RabbitMQ at
//! 127.0.0.1; CPU and RSS summed over the three) are measured alike.
//!
//! It prints checks stored per second (counted in the database, not from a
//! counter), schedule lag (check start minus due time) p50/p99/max, CPU
//! seconds per 1,000 checks and the RSS of the monitor process.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "test code: a panic is a failed test, and output is for the person running it"
)]

mod common;

use common::measure::{cpu_seconds, percentile, rss_mb};
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

const SERVICES: usize = 1000;
const WARMUP: Duration = Duration::from_secs(5);
const WINDOW: Duration = Duration::from_secs(30);
const LAG_SQL: &str = "SELECT checked_at - latency_ms - scheduled_at AS lag FROM health_logs \
     WHERE scheduled_at >= $1 AND scheduled_at < $2";

async fn register(api: &Monitor, url: &str) {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for chunk in 0..10 {
        let (http, endpoint) = (api.http.clone(), api.url("/services"));
        let body = service("load", url, 1);
        tasks.push(tokio::spawn(async move {
            for _ in 0..SERVICES / 10 {
                let r = http.post(&endpoint).json(&body).send().await.expect("POST");
                assert_eq!(r.status(), 201, "chunk {chunk}");
            }
        }));
    }
    for t in tasks {
        t.await.expect("register");
    }
    println!("registered {SERVICES} services in {:?}", started.elapsed());
}

/// Runs the window and returns (from, to, cpu seconds, rss MB) over `pids`.
async fn window(pids: &[u32]) -> (i64, i64, f64, f64) {
    tokio::time::sleep(WARMUP).await;
    let from = chrono::Utc::now().timestamp_millis();
    let cpu0: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
    tokio::time::sleep(WINDOW).await;
    let to = chrono::Utc::now().timestamp_millis();
    let cpu1: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
    let rss = pids.iter().map(|p| rss_mb(*p)).sum();
    // Let the recorder flush the window's last batch.
    tokio::time::sleep(Duration::from_secs(1)).await;
    (from, to, cpu1 - cpu0, rss)
}

fn report(mode: &str, mut lags: Vec<i64>, from: i64, to: i64, cpu: f64, rss: f64) {
    lags.sort_unstable();
    let checks = lags.len();
    let secs = (to - from) as f64 / 1000.0;
    let expected = SERVICES as f64 * secs;
    println!(
        "[{mode}] window {secs:.1} s: {checks} checks stored ({:.0}/s, {:.1}% of the {expected:.0} due)",
        checks as f64 / secs,
        100.0 * checks as f64 / expected
    );
    println!(
        "[{mode}] schedule lag (check start - due): p50 {} ms, p99 {} ms, max {} ms",
        percentile(&lags, 0.50),
        percentile(&lags, 0.99),
        lags.last().copied().unwrap_or(0)
    );
    println!(
        "[{mode}] cpu {cpu:.2} s = {:.3} CPU-s per 1,000 checks; rss {rss:.1} MB",
        cpu / (checks.max(1) as f64 / 1000.0)
    );
    assert!(checks > 0, "nothing was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run with --ignored --nocapture"]
async fn one_thousand_services_at_one_second() {
    let target = Target::start().await;
    // Registration as fast as the API takes it: no write rate limit.
    let m = Monitor::start_with(&[("HEALTHMON__API__WRITE_RATE_PER_S", "0")]);
    register(&m, &target.url("/ok")).await;
    let (from, to, cpu, rss) = window(&[m.child.id()]).await;
    let db = m.db_path();
    let mut conn = SqliteConnection::establish(db.to_str().expect("path")).expect("open db");
    let lags: Vec<i64> = diesel::sql_query(LAG_SQL.replace("$1", "?").replace("$2", "?"))
        .bind::<BigInt, _>(from)
        .bind::<BigInt, _>(to)
        .load::<Row>(&mut conn)
        .expect("query")
        .into_iter()
        .map(|r| r.lag)
        .collect();
    report("embedded", lags, from, to, cpu, rss);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run with --ignored --nocapture"]
async fn one_thousand_services_at_one_second_on_a_fleet() {
    use diesel_async::{AsyncConnection, AsyncPgConnection};
    let Some(db) = pg_db().await else { return };
    let target = Target::start().await;
    let prefix = format!("load{}", std::process::id());
    let env = [
        ("HEALTHMON__DATABASE__URL", db.url.as_str()),
        (
            "HEALTHMON__QUEUE__URL",
            "amqp://guest:guest@127.0.0.1:5672/%2f",
        ),
        ("HEALTHMON__QUEUE__PREFIX", prefix.as_str()),
        ("HEALTHMON__API__WRITE_RATE_PER_S", "0"),
    ];
    let spawn = |args: &[&str]| {
        Monitor::start_args(
            std::sync::Arc::new(tempfile::tempdir().expect("tempdir")),
            &env,
            args,
        )
    };
    let api = spawn(&["--role", "api,scheduler"]);
    let w1 = spawn(&["--role", "worker", "--health-bind", "127.0.0.1:0"]);
    let w2 = spawn(&["--role", "worker", "--health-bind", "127.0.0.1:0"]);
    register(&api, &target.url("/ok")).await;
    let (from, to, cpu, rss) = window(&[api.child.id(), w1.child.id(), w2.child.id()]).await;
    let mut conn = AsyncPgConnection::establish(&db.url)
        .await
        .expect("connect");
    let query = diesel::sql_query(LAG_SQL)
        .bind::<BigInt, _>(from)
        .bind::<BigInt, _>(to);
    let lags: Vec<i64> = diesel_async::RunQueryDsl::load::<Row>(query, &mut conn)
        .await
        .expect("query")
        .into_iter()
        .map(|r| r.lag)
        .collect();
    report("fleet", lags, from, to, cpu, rss);
}
