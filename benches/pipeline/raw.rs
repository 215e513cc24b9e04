//! `--raw`: the floor a check's price is set against. Before healthmon
//! starts, the benchmark runs a bare reqwest loop against the same farm at
//! the run's rate (services / interval requests a second, for up to 30 s)
//! in a child process of its own (this binary again, `--raw-child`), so its
//! CPU is read from /proc as healthmon's is, without the farm's.
//!
//! The loop is what a worker does with nothing around it: one shared
//! `reqwest::Client` built as the workers build theirs (no proxy,
//! `TCP_NODELAY`, 30 s idle pool; the targets close every connection, so
//! each request is a fresh connection), the same `GET /s/{i}` URLs, at most
//! `worker.concurrency` (256) requests at once, each a task of its own that
//! reads the body to its end, on a two-thread tokio runtime. No schedule
//! header is sent, so the farm does not count these requests as checks.

use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Requests in flight at once: healthmon's default `worker.concurrency`.
pub const CONCURRENCY: usize = 256;
/// The longest the loop runs.
pub const MAX_SECS: u64 = 30;

/// Runs the loop in a child process against `ports` at `rate` requests a
/// second for `secs`, and returns the `raw` object: requests sent and
/// answered, the child's CPU, and CPU-s per 1,000 requests.
pub fn measure(ports: &[u16], rate: f64, secs: u64) -> Result<serde_json::Value, String> {
    let exe = std::env::current_exe().map_err(|e| format!("--raw: {e}"))?;
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    let out = std::process::Command::new(exe)
        .args([
            "--raw-child",
            &rate.to_string(),
            &secs.to_string(),
            &ports.join(","),
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("--raw: cannot start the loop: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or_default();
    let raw: serde_json::Value = serde_json::from_str(last).map_err(|e| {
        format!(
            "--raw: the loop printed no result ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    if !out.status.success() {
        return Err(format!("--raw: the loop failed: {raw}"));
    }
    Ok(raw)
}

/// The child's side (`--raw-child RATE SECS PORTS`): prints the `raw`
/// object as its last line; exits 1 on bad arguments.
pub fn child(args: &[String]) -> i32 {
    let Some((rate, secs, ports)) = child_args(args) else {
        eprintln!("--raw-child RATE SECS PORTS");
        return 1;
    };
    // reqwest is built with `rustls-no-provider`: a client needs one, even
    // for plain HTTP (healthmon's carries a TLS configuration too).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let figures = rt.block_on(run_loop(rate, secs, ports));
    println!("{figures}");
    0
}

/// RATE SECS PORTS (comma-separated), if they read.
fn child_args(args: &[String]) -> Option<(f64, u64, Vec<u16>)> {
    let rate: f64 = args.first()?.parse().ok()?;
    let secs: u64 = args.get(1)?.parse().ok()?;
    let ports: Vec<u16> = (args.get(2)?.split(','))
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    (rate > 0.0 && !ports.is_empty()).then_some((rate, secs, ports))
}

async fn run_loop(rate: f64, secs: u64, ports: Vec<u16>) -> serde_json::Value {
    let client = reqwest::Client::builder()
        .user_agent("healthmon-bench-raw")
        .no_proxy()
        .pool_idle_timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .build()
        .expect("client");
    let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let ok = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let pid = std::process::id();
    let cpu0 = crate::measure::cpu_seconds(pid);
    let start = Instant::now();
    let total = (rate * secs as f64).round() as u64;
    // Sent in ticks of 10 ms, as a scheduler releasing due jobs would.
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut tasks = tokio::task::JoinSet::new();
    let mut sent = 0u64;
    while sent < total {
        tick.tick().await;
        let due = ((start.elapsed().as_secs_f64() * rate) as u64).min(total);
        while sent < due {
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                break;
            };
            let port = ports[sent as usize % ports.len()];
            let url = format!("http://127.0.0.1:{port}/s/{sent}");
            let (client, ok) = (client.clone(), Arc::clone(&ok));
            tasks.spawn(async move {
                let answered = tokio::time::timeout(Duration::from_secs(5), async {
                    let r = client.get(&url).send().await.ok()?;
                    let good = r.status().is_success();
                    r.bytes().await.ok()?;
                    Some(good)
                })
                .await;
                if let Ok(Some(true)) = answered {
                    ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                drop(permit);
            });
            sent += 1;
        }
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = crate::measure::cpu_seconds(pid) - cpu0;
    let answered = ok.load(std::sync::atomic::Ordering::Relaxed);
    let round = |x: f64, d: i32| (x * 10f64.powi(d)).round() / 10f64.powi(d);
    json!({
        "requests": sent,
        "answered_ok": answered,
        "secs": round(elapsed, 2),
        "requests_per_s": round(sent as f64 / elapsed, 1),
        "cpu_s": round(cpu, 2),
        "cpu_s_per_1k_requests": round(cpu / (sent.max(1) as f64 / 1000.0), 4),
        "concurrency": CONCURRENCY,
    })
}

/// Adds `raw` to a run's summary, with healthmon's price over the loop's
/// (`healthmon_over_raw`), and prints them side by side.
pub fn compare(summary: &mut serde_json::Value, raw: serde_json::Value) {
    let hm = summary["cpu_s_per_1k_checks"].as_f64().unwrap_or(0.0);
    let floor = raw["cpu_s_per_1k_requests"].as_f64().unwrap_or(0.0);
    let ratio = (floor > 0.0).then(|| (hm / floor * 100.0).round() / 100.0);
    println!(
        "price: healthmon {hm:.3} CPU-s per 1,000 checks, bare reqwest loop {floor:.3} per 1,000 \
         requests: {}x",
        ratio.map_or("-".to_owned(), |r| format!("{r:.2}"))
    );
    if let Some(m) = summary.as_object_mut() {
        m.insert("raw".into(), raw);
        m.insert("healthmon_over_raw".into(), json!(ratio));
    }
}
