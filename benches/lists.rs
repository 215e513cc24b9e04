//! Lists at a million services (issue 17.2): the real `healthmon` binary
//! on a fresh SQLite store (or PostgreSQL with `--pg`), N paused services
//! registered through `POST /services/bulk`, then K clients paging through
//! all of them at once with `GET /services?limit=1000`, following each
//! page's `Link: rel="next"`. Prints page latency (p50, p99, max) and the
//! process's RSS before, during (highest sample, every 50 ms) and after.
//!
//! ```sh
//! cargo bench --bench lists -- [--services 1000000] [--clients 10]
//!     [--limit 1000] [--query 'status=PENDING' | 'tag=t3'] [--pg URL]
//! ```
//!
//! Goals (issue 17.2): p99 of one page < 20 ms, RSS < 400 MB. Service i
//! has the tag `t{i % 10}`, so `--query tag=t3` pages through a tenth.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "a benchmark binary: a panic is a failed run, and output is its result"
)]

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

struct Opts {
    services: usize,
    clients: usize,
    limit: usize,
    queries: Vec<String>,
    pg: Option<String>,
}

fn opts() -> Opts {
    let mut o = Opts {
        services: 1_000_000,
        clients: 10,
        limit: 1000,
        queries: Vec::new(),
        pg: None,
    };
    let mut benchmark = false;
    let mut sized = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--services" => {
                o.services = value().parse().expect("--services N");
                sized = true;
            }
            "--clients" => o.clients = value().parse().expect("--clients K"),
            "--limit" => o.limit = value().parse().expect("--limit L"),
            "--query" => o.queries.push(value()),
            "--pg" => o.pg = Some(value()),
            // cargo bench passes --bench to every bench binary.
            "--bench" => benchmark = true,
            other => panic!("unknown option {other}"),
        }
    }
    // `cargo test --all-targets` (the CI command) runs bench binaries too,
    // without --bench, in a debug build: a smoke run there shows the
    // benchmark still works without filling a million services.
    if !benchmark && !sized {
        o.services = 2_000;
        o.clients = 2;
    }
    o
}

/// The running monitor: its process, address and store directory.
struct Monitor {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(db_url: Option<&str>) -> Monitor {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = std::env::var_os("HEALTHMON_BIN")
        .unwrap_or_else(|| std::ffi::OsString::from(env!("CARGO_BIN_EXE_healthmon")));
    let mut cmd = Command::new(bin);
    for (k, _) in std::env::vars() {
        if k.starts_with("HEALTHMON__") || k == "DATABASE_URL" || k == "RABBITMQ_URL" {
            cmd.env_remove(k);
        }
    }
    let db = db_url.map_or_else(
        || format!("sqlite://{}", dir.path().join("hm.db").display()),
        str::to_owned,
    );
    let mut child = cmd
        .current_dir(dir.path())
        .env("RUST_LOG", "info")
        .env("HEALTHMON__SERVER__BIND", "127.0.0.1:0")
        .env("HEALTHMON__DATABASE__URL", db)
        .env("HEALTHMON__API__MAX_SERVICES", "10000000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn healthmon");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening addr=").nth(1) {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("healthmon printed no 'listening addr=' line within 60 s");
    Monitor {
        child,
        addr,
        _dir: dir,
    }
}

/// Resident set of `pid`, MB (VmRSS).
fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU seconds `pid` has used (user + system), from /proc.
fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
        .sum();
    // USER_HZ is 100 on Linux.
    ticks / 100.0
}

/// Registers `n` paused services, 1,000 a request, four requests at once.
async fn fill(http: &reqwest::Client, api: &str, n: usize) {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (http, next, api) = (http.clone(), Arc::clone(&next), api.to_owned());
        tasks.push(tokio::spawn(async move {
            loop {
                let from = next.fetch_add(1000, Ordering::Relaxed) as usize;
                if from >= n {
                    return;
                }
                let items: Vec<Value> = (from..(from + 1000).min(n))
                    .map(|i| {
                        json!({"name": format!("svc-{i}"), "url": "http://127.0.0.1:9/",
                               "interval": 300, "paused": true, "tags": [format!("t{}", i % 10)]})
                    })
                    .collect();
                let resp = http
                    .post(format!("http://{api}/services/bulk"))
                    .json(&items)
                    .send()
                    .await
                    .expect("POST /services/bulk");
                assert_eq!(
                    resp.status(),
                    201,
                    "{}",
                    resp.text().await.unwrap_or_default()
                );
            }
        }));
    }
    for t in tasks {
        t.await.expect("fill task");
    }
}

/// The `rel="next"` target of a Link header.
fn next_link(resp: &reqwest::Response) -> Option<String> {
    let link = resp.headers().get("link")?.to_str().ok()?;
    let start = link.find('<')? + 1;
    let end = link[start..].find('>')? + start;
    Some(link[start..end].to_owned())
}

/// Pages through every service; each page's latency (request to last
/// byte) and the services seen.
async fn page_through(http: reqwest::Client, api: String, first: String) -> (Vec<f64>, usize) {
    let mut path = Some(first);
    let mut latencies = Vec::new();
    let mut seen = 0;
    while let Some(p) = path {
        let t = Instant::now();
        let resp = http
            .get(format!("http://{api}{p}"))
            .send()
            .await
            .expect("GET /services");
        assert_eq!(resp.status(), 200);
        path = next_link(&resp);
        let body = resp.bytes().await.expect("body");
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
        // Count without parsing the page: one `"id":` per service at the
        // top level, and none inside (no nested object has an id).
        seen += body.windows(5).filter(|w| w == b"\"id\":").count();
    }
    (latencies, seen)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// One paging pass of every client through `query`; its figures.
async fn pass(o: &Opts, query: &str, http: &reqwest::Client, api: &str, pid: u32) -> Value {
    let sampling = Arc::new(AtomicBool::new(true));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (sampling, peak) = (Arc::clone(&sampling), Arc::clone(&peak));
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                let kb = (rss_mb(pid) * 1024.0) as u64;
                peak.fetch_max(kb, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let sep = if query.is_empty() { "" } else { "&" };
    let first = format!("/services?limit={}{sep}{}", o.limit, query);
    let t = Instant::now();
    let cpu0 = cpu_s(pid);
    let clients: Vec<_> = (0..o.clients)
        .map(|_| tokio::spawn(page_through(http.clone(), api.to_owned(), first.clone())))
        .collect();
    let mut latencies = Vec::new();
    let mut seen = Vec::new();
    for c in clients {
        let (l, s) = c.await.expect("client");
        latencies.extend(l);
        seen.push(s);
    }
    let paging_s = t.elapsed().as_secs_f64();
    let paging_cpu_s = cpu_s(pid) - cpu0;
    sampling.store(false, Ordering::Relaxed);
    sampler.join().expect("sampler");
    let rss_during = peak.load(Ordering::Relaxed) as f64 / 1024.0;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = rss_mb(pid);
    latencies.sort_by(f64::total_cmp);
    let cpu_ms_per_page = paging_cpu_s * 1000.0 / latencies.len().max(1) as f64;
    // The machine's load over the pass: other processes' share of the cores.
    let load_avg: Vec<String> = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .map(str::to_owned)
        .collect();
    json!({
        "clients": o.clients,
        "limit": o.limit,
        "query": query,
        "pages": latencies.len(),
        "cpu_ms_per_page": (cpu_ms_per_page * 100.0).round() / 100.0,
        "load_avg": load_avg,
        "services_seen_per_client": seen,
        "paging_s": (paging_s * 10.0).round() / 10.0,
        "page_ms": {
            "p50": (percentile(&latencies, 0.50) * 100.0).round() / 100.0,
            "p99": (percentile(&latencies, 0.99) * 100.0).round() / 100.0,
            "max": (percentile(&latencies, 1.0) * 100.0).round() / 100.0,
        },
        "rss_mb": {
            "during_peak": (rss_during * 10.0).round() / 10.0,
            "after": (rss_after * 10.0).round() / 10.0,
        },
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut o = opts();
    let pg_db = o.pg.as_deref().map(pg::fresh);
    let m = start(pg_db.as_ref().map(|d| d.url.as_str()));
    let pid = m.child.id();
    let api = m.addr.clone();
    // reqwest is built without a TLS provider of its own (src/app.rs).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(300))
        .build()
        .expect("client");

    let t = Instant::now();
    let cpu0 = cpu_s(pid);
    fill(&http, &api, o.services).await;
    let fill_s = t.elapsed().as_secs_f64();
    let fill_cpu_s = cpu_s(pid) - cpu0;
    // Let the registration's garbage go before the baseline.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_before = rss_mb(pid);

    if o.queries.is_empty() {
        o.queries.push(String::new());
    }
    for query in &o.queries {
        let result = pass(&o, query, &http, &api, pid).await;
        println!(
            "{}",
            json!({
                "services": o.services,
                "store": if o.pg.is_some() { "postgres" } else { "sqlite" },
                "fill_s": (fill_s * 10.0).round() / 10.0,
                "fill_per_s": (o.services as f64 / fill_s).round(),
                "fill_cpu_s": (fill_cpu_s * 10.0).round() / 10.0,
                "rss_mb_before": (rss_before * 10.0).round() / 10.0,
                "pass": result,
            })
        );
    }
    drop(m);
    if let Some(db) = pg_db {
        db.drop_now();
    }
}

/// A fresh PostgreSQL database for `--pg`, dropped at the end.
mod pg {
    use std::process::Command;

    pub struct Db {
        pub url: String,
        server: String,
        name: String,
    }

    /// `server` is a URL such as `postgres://postgres@127.0.0.1:5432/postgres`.
    pub fn fresh(server: &str) -> Db {
        let name = format!("bench_lists_{}", std::process::id());
        psql(server, &format!("CREATE DATABASE {name}"));
        let base = server.rsplit_once('/').map_or(server, |(b, _)| b);
        Db {
            url: format!("{base}/{name}"),
            server: server.to_owned(),
            name,
        }
    }

    fn psql(server: &str, sql: &str) {
        let ok = Command::new("psql")
            .args([server, "-qAtc", sql])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "psql {sql} failed");
    }

    impl Db {
        pub fn drop_now(self) {
            psql(
                &self.server,
                &format!("DROP DATABASE {} WITH (FORCE)", self.name),
            );
        }
    }
}
