//! Figures for a large installation (issue 17 point 3), taken after the
//! window of every run:
//! - `dashboard`: what a dashboard opening waits for: the first page of
//!   `GET /services?limit=100` (the first request, then 20 more: p50, max)
//!   and `GET /` (its status and time; 404 while no page is served there);
//! - `rollups`: logs not yet counted into the hourly rollups at the
//!   window's end (`rollup_progress` against the newest log), so a store
//!   whose rollups fall behind at this size shows it;
//! - with `--restart` (embedded): healthmon stopped with SIGTERM and started
//!   again on the same store; `stop_s`, `listening_s` (start to its
//!   "listening" line), `first_check_s` (start to the first check request
//!   at the farm), the first page's time right after, the log maintenance
//!   pass it runs at start (`maintenance_ms`, its `elapsed_ms`), and the
//!   RSS at the first check.

use crate::{Arrivals, Opts, Proc, Store, now_ms, spawn_fleet};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Requests timed after the first one.
const PAGE_REQUESTS: usize = 20;
/// Longest the restart waits for healthmon's first check.
const FIRST_CHECK_LIMIT: Duration = Duration::from_secs(120);

/// The `dashboard` object: the first page of services and `GET /`, timed.
pub async fn dashboard(api: &str) -> Value {
    let http = match reqwest::Client::builder().no_proxy().build() {
        Ok(c) => c,
        Err(e) => return json!({ "error": e.to_string() }),
    };
    let page = format!("http://{api}/services?limit=100");
    let first = timed_get(&http, &page).await;
    let mut times = Vec::new();
    for _ in 0..PAGE_REQUESTS {
        times.push(timed_get(&http, &page).await.1);
    }
    times.sort_by(f64::total_cmp);
    let root = timed_get(&http, &format!("http://{api}/")).await;
    let figures = json!({
        "first_page_status": first.0,
        "first_page_ms": first.1,
        "page_p50_ms": times[times.len() / 2],
        "page_max_ms": times.last().copied().unwrap_or(0.0),
        "root_status": root.0,
        "root_ms": root.1,
    });
    println!("dashboard: {figures}");
    figures
}

/// (status, ms, one decimal) of a GET whose whole body is read; status 0
/// when it failed.
async fn timed_get(http: &reqwest::Client, url: &str) -> (u16, f64) {
    let t = Instant::now();
    let status = match http.get(url).send().await {
        Ok(r) => {
            let s = r.status().as_u16();
            match r.bytes().await {
                Ok(_) => s,
                Err(_) => 0,
            }
        }
        Err(_) => 0,
    };
    let ms = (t.elapsed().as_secs_f64() * 10_000.0).round() / 10.0;
    (status, ms)
}

/// The `rollups` object: logs recorded but not yet rolled up.
pub async fn rollups(store: &Store) -> Value {
    let newest = store
        .scalar("SELECT COALESCE(MAX(id), 0) AS n FROM health_logs")
        .await;
    let done = store
        .scalar("SELECT last_log_id AS n FROM rollup_progress")
        .await;
    match (newest, done) {
        (Ok(newest), Ok(done)) => {
            let figures = json!({
                "newest_log_id": newest,
                "rolled_up_to": done,
                "behind_logs": (newest - done).max(0),
            });
            println!("rollups: {figures}");
            figures
        }
        (Err(e), _) | (_, Err(e)) => json!({ "error": e }),
    }
}

/// `--restart`: stops healthmon (embedded), starts it again on the same
/// store, and times it to its first check; `procs` holds the new process.
pub async fn restart(
    o: &Opts,
    env: &[(String, String)],
    procs: &mut Vec<Proc>,
    arrivals: &Arrivals,
) -> Result<Value, String> {
    let dir = Arc::clone(&procs[0].dir);
    let seen = arrivals.lock().map(|a| a.len()).unwrap_or(0);
    let t = Instant::now();
    for p in procs.iter_mut() {
        p.stop();
    }
    let stop_s = t.elapsed().as_secs_f64();
    procs.clear();
    let started = now_ms();
    let t = Instant::now();
    *procs = spawn_fleet(o, env, Some(dir))?;
    let listening_s = t.elapsed().as_secs_f64();
    let give_up = Instant::now() + FIRST_CHECK_LIMIT;
    let mut from = seen;
    let first = loop {
        let found = arrivals.lock().ok().and_then(|a| {
            let hit = a[from.min(a.len())..]
                .iter()
                .map(|(s, lag)| s + lag)
                .filter(|&at| at >= started)
                .min();
            from = a.len();
            hit
        });
        if let Some(at) = found {
            break Some(at);
        }
        if Instant::now() >= give_up {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let rss = crate::measure::rss_mb(procs[0].child.id());
    let page = dashboard(&procs[0].addr).await;
    // The pass it runs at start: wait a little for its line.
    let mut maintenance_ms = None;
    for _ in 0..100 {
        maintenance_ms = procs[0]
            .noted(crate::MAINTENANCE_LINE)
            .iter()
            .find_map(|(_, l)| crate::log_field(l, "elapsed_ms")?.parse::<i64>().ok());
        if maintenance_ms.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    let figures = json!({
        "stop_s": round(stop_s),
        "listening_s": round(listening_s),
        "first_check_s": first.map(|at| round((at - started) as f64 / 1000.0)),
        "rss_mb_at_first_check": (rss * 10.0).round() / 10.0,
        "first_page_ms": page["first_page_ms"],
        "page_p50_ms": page["page_p50_ms"],
        "maintenance_ms": maintenance_ms,
    });
    println!("restart: {figures}");
    Ok(figures)
}
