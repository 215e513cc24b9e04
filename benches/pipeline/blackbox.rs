//! `--compare`: Prometheus blackbox_exporter driven at its best rate against
//! the same target farm, for a side-by-side with healthmon (issue 6, point 3).
//!
//! The exporter (Debian package `prometheus-blackbox-exporter`) runs as a
//! child process on a free loopback port with a generated config: one module
//! `http_2xx` (prober `http`, `preferred_ip_protocol: ip4`, no fallback, the
//! same timeout healthmon's services get). Its HTTP prober builds a new client
//! with keep-alives disabled for every probe, so each probe is a fresh
//! connection, as each healthmon check is (the farm also answers
//! `Connection: close`). There is no config option for that: it is how 0.23
//! probes.
//!
//! `--bb-clients K` drivers loop on `GET /probe?module=http_2xx&target=...`
//! over the same URLs healthmon's services get, on keep-alive connections to
//! the exporter. A probe counts when its answer says `probe_success 1`. After
//! a warm-up, the window measures probes completed, and the exporter's CPU
//! seconds and RSS from /proc (its pid alone: the drivers and the farm run
//! in the bench process and are not counted, as for healthmon).
//!
//! blackbox_exporter stores nothing: it answers the scrape and forgets.
//! healthmon's checks are rows stored in `health_logs`.
//!
//! Successes are compared with successes: healthmon's UP checks stored
//! (`checks_up`) per CPU-second against the exporter's probes answered
//! `probe_success 1` per CPU-second. A DOWN check (a refused connection, a
//! timeout) costs less than a successful one and would flatter either side.

use super::Opts;
use super::measure::{cpu_seconds, rss_mb};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub const PACKAGE: &str = "prometheus-blackbox-exporter";
/// The goal of issue 6: healthmon's checks per CPU-second at least this
/// many times blackbox_exporter's.
pub const GOAL_RATIO: f64 = 1.7;

/// `$BLACKBOX_EXPORTER`, else `prometheus-blackbox-exporter` on `PATH` (the
/// Debian package installs /usr/bin/prometheus-blackbox-exporter).
pub fn binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("BLACKBOX_EXPORTER") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("BLACKBOX_EXPORTER={} is not a file", p.display()))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join(PACKAGE))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "--compare needs blackbox_exporter: binary `{PACKAGE}` not found on PATH. \
                 Install the Debian package `{PACKAGE}` (apt-get install {PACKAGE}), \
                 or run bench/compare.sh, which installs it"
            )
        })
}

struct Exporter {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Exporter {
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// The exporter's version line (`blackbox_exporter, version 0.23.0 ...`).
async fn version(bin: &Path) -> String {
    let mut cmd = Command::new(bin);
    cmd.arg("--version").stdin(Stdio::null());
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::task::spawn_blocking(move || cmd.output()),
    )
    .await;
    let Ok(Ok(Ok(out))) = out else {
        return "unknown".to_owned();
    };
    // kingpin prints the version on stderr or stdout, depending on version.
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    text.split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .unwrap_or("unknown")
        .to_owned()
}

/// The exporter's configuration: one module `http_2xx`; for `--kind https`
/// its `tls_config.ca_file` is the farm's CA (the same file healthmon gets
/// as `checks.ca_file`); with `--assert` it also fails a probe whose body
/// lacks what healthmon's `body_contains` looks for (the exporter has no
/// JSON pointer assertion, so that one is healthmon's alone).
fn config(timeout_s: u64, ca_file: Option<&Path>, assert: bool) -> String {
    let mut yml = format!(
        "modules:\n  http_2xx:\n    prober: http\n    timeout: {timeout_s}s\n    http:\n      \
         preferred_ip_protocol: ip4\n      ip_protocol_fallback: false\n      \
         follow_redirects: false\n      enable_http2: false\n"
    );
    if let Some(ca) = ca_file {
        yml.push_str(&format!(
            "      tls_config:\n        ca_file: {:?}\n",
            ca.display().to_string()
        ));
    }
    if assert {
        yml.push_str(&format!(
            "      fail_if_body_not_matches_regexp:\n        - {:?}\n",
            super::kinds::ASSERT_CONTAINS
        ));
    }
    yml
}

async fn start(
    bin: &Path,
    yml: &str,
    http: &reqwest::Client,
) -> Result<(Exporter, String), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let config = dir.path().join("blackbox.yml");
    std::fs::write(&config, yml).map_err(|e| format!("writing {}: {e}", config.display()))?;
    let stderr = std::fs::File::create(dir.path().join("stderr.log")).map_err(|e| e.to_string())?;
    let addr = format!("127.0.0.1:{}", free_port()?);
    let child = Command::new(bin)
        .current_dir(dir.path())
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address={addr}"))
        // Probes log at debug level only; warn keeps the exporter quiet.
        .arg("--log.level=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", bin.display()))?;
    let mut ex = Exporter { child, dir };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = ex.child.try_wait() {
            return Err(format!(
                "blackbox_exporter exited ({status}) at start:\n{}",
                ex.log_tail()
            ));
        }
        let ready = http
            .get(format!("http://{addr}/-/healthy"))
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        if matches!(&ready, Ok(r) if r.status().is_success()) {
            return Ok((ex, addr));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "blackbox_exporter did not answer /-/healthy on {addr} within 20 s:\n{}",
                ex.log_tail()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
    errors: AtomicU64,
}

impl Counts {
    fn snapshot(&self) -> [u64; 3] {
        [&self.ok, &self.failed, &self.errors].map(|c| c.load(Ordering::Relaxed))
    }
}

/// Runs the exporter against the farm for `o.warmup` + `o.duration` seconds
/// and returns its figures as a JSON object.
pub async fn run(o: &Opts, ports: &[u16], ca_file: Option<&Path>) -> Result<Value, String> {
    let bin = binary()?;
    let version = version(&bin).await;
    // As healthmon's services get in register().
    let timeout_s = o.interval.min(5);
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(o.bb_clients)
        .build()
        .map_err(|e| e.to_string())?;
    let yml = config(timeout_s, ca_file, o.assert);
    let (mut ex, addr) = start(&bin, &yml, &http).await?;
    let pid = ex.child.id();
    println!(
        "[blackbox] {} {version} pid {pid} on {addr}; {} drivers over {} target URLs, \
         warm-up {} s, window {} s",
        bin.display(),
        o.bb_clients,
        o.services,
        o.warmup,
        o.duration
    );

    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    let mut drivers = Vec::new();
    for _ in 0..o.bb_clients {
        let (http, counts, stop, next) = (
            http.clone(),
            Arc::clone(&counts),
            Arc::clone(&stop),
            Arc::clone(&next),
        );
        let (ports, services, addr) = (ports.to_vec(), o.services as u64, addr.clone());
        let kind = o.kind;
        drivers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed) % services;
                let port = ports[i as usize % ports.len()];
                let target = kind.url(port, i as usize);
                let url = format!(
                    "http://{addr}/probe?module=http_2xx&target={}",
                    url::form_urlencoded::byte_serialize(target.as_bytes()).collect::<String>()
                );
                let res = http
                    .get(&url)
                    .timeout(Duration::from_secs(timeout_s + 5))
                    .send()
                    .await;
                let body = match res {
                    Ok(r) if r.status().is_success() => r.text().await.ok(),
                    _ => None,
                };
                let counter = match body {
                    Some(b) if b.lines().any(|l| l == "probe_success 1") => &counts.ok,
                    Some(_) => &counts.failed,
                    None => {
                        // Back off a little: the exporter may be gone.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        &counts.errors
                    }
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    tokio::time::sleep(Duration::from_secs(o.warmup)).await;
    let t0 = Instant::now();
    let c0 = counts.snapshot();
    let cpu0 = cpu_seconds(pid);
    tokio::time::sleep(Duration::from_secs(o.duration)).await;
    let c1 = counts.snapshot();
    let cpu1 = cpu_seconds(pid);
    let secs = t0.elapsed().as_secs_f64();
    let rss = rss_mb(pid);
    stop.store(true, Ordering::Relaxed);
    for d in drivers {
        // Each request is bounded by its timeout; this is the backstop.
        let _ = tokio::time::timeout(Duration::from_secs(timeout_s + 10), d).await;
    }
    let alive = matches!(ex.child.try_wait(), Ok(None));
    let tail = ex.log_tail();
    drop(ex);

    let [ok, failed, errors] = [0, 1, 2].map(|k| c1[k] - c0[k]);
    let cpu = cpu1 - cpu0;
    if ok == 0 {
        return Err(format!(
            "blackbox_exporter: no successful probe in the {secs:.1} s window \
             ({failed} failed, {errors} request errors; exporter alive: {alive}):\n{tail}"
        ));
    }
    let per_s = ok as f64 / secs;
    let per_1k = cpu / (ok as f64 / 1000.0);
    let per_cpu_s = ok as f64 / cpu.max(0.01);
    println!(
        "[blackbox] window {secs:.1} s: {ok} probes with probe_success 1 ({per_s:.0}/s), \
         {failed} failed, {errors} request errors"
    );
    println!(
        "[blackbox] exporter cpu {cpu:.2} s = {per_1k:.3} CPU-s per 1,000 probes \
         ({per_cpu_s:.0} checks per CPU-s); rss {rss:.1} MB; stores nothing"
    );
    let round = |x: f64, d: i32| (x * 10f64.powi(d)).round() / 10f64.powi(d);
    Ok(json!({
        "version": version,
        "clients": o.bb_clients,
        "kind": o.kind.as_str(),
        "assert": o.assert,
        "timeout_s": timeout_s,
        "duration_s": round(secs, 3),
        "warmup_s": o.warmup,
        "probes": ok,
        "probes_failed": failed,
        "request_errors": errors,
        "probes_per_s": round(per_s, 1),
        "cpu_s": round(cpu, 2),
        "cpu_s_per_1k_probes": round(per_1k, 4),
        "checks_per_cpu_s": round(per_cpu_s, 1),
        "rss_mb": round(rss, 1),
        "stores_results": false,
    }))
}

/// Prints healthmon and blackbox_exporter side by side and returns
/// healthmon's summary with `checks_per_cpu_s` (UP checks stored per
/// CPU-second), the `blackbox` object, `ratio_checks_per_cpu_s` and whether
/// the goal holds.
pub fn side_by_side(mut hm: Value, bb: Value) -> Value {
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    let hm_cpu = f(&hm, "cpu_s");
    let hm_secs = f(&hm, "duration_s").max(0.001);
    let hm_up = f(&hm, "checks_up");
    let hm_per_cpu_s = hm_up / hm_cpu.max(0.01);
    let bb_per_cpu_s = f(&bb, "checks_per_cpu_s");
    let ratio = hm_per_cpu_s / bb_per_cpu_s.max(0.01);
    let met = ratio >= GOAL_RATIO;
    let rows = [
        (
            "successes/s",
            format!("{:.0}", hm_up / hm_secs),
            format!("{:.0}", f(&bb, "probes_per_s")),
        ),
        (
            "successes per CPU-second",
            format!("{hm_per_cpu_s:.0}"),
            format!("{bb_per_cpu_s:.0}"),
        ),
        (
            "CPU-s per 1,000 successes",
            format!("{:.3}", hm_cpu / (hm_up.max(1.0) / 1000.0)),
            format!("{:.3}", f(&bb, "cpu_s_per_1k_probes")),
        ),
        (
            "failures in the window",
            format!("{:.0} DOWN", f(&hm, "checks_down")),
            format!(
                "{:.0} failed, {:.0} request errors",
                f(&bb, "probes_failed"),
                f(&bb, "request_errors")
            ),
        ),
        (
            "RSS MB",
            format!("{:.1}", f(&hm, "rss_mb")),
            format!("{:.1}", f(&bb, "rss_mb")),
        ),
        (
            "results stored",
            "every check, a row in health_logs".to_owned(),
            "none (answers the scrape only)".to_owned(),
        ),
    ];
    println!();
    println!(
        "side by side, same target farm, one fresh connection per check \
         (CPU of the monitor's process(es) only):"
    );
    let bb_name = format!("blackbox_exporter {}", bb["version"].as_str().unwrap_or(""));
    println!("  {:<24} {:>36} {:>36}", "", "healthmon", bb_name);
    for (name, a, b) in rows {
        println!("  {name:<24} {a:>36} {b:>36}");
    }
    println!(
        "  healthmon's successes are UP checks stored, at most services/interval (the schedule); \
         blackbox_exporter's are probes answered with probe_success 1 as fast as {} drivers \
         could ask, and it stores nothing.",
        bb["clients"]
    );
    println!(
        "  ratio healthmon / blackbox_exporter, successes per CPU-second: {ratio:.2}x \
         (goal >= {GOAL_RATIO}x: {})",
        if met { "met" } else { "NOT met" }
    );
    let round = |x: f64, d: i32| (x * 10f64.powi(d)).round() / 10f64.powi(d);
    if let Some(m) = hm.as_object_mut() {
        m.insert("checks_per_cpu_s".into(), json!(round(hm_per_cpu_s, 1)));
        m.insert("blackbox".into(), bb);
        m.insert("ratio_checks_per_cpu_s".into(), json!(round(ratio, 3)));
        m.insert("ratio_goal".into(), json!(GOAL_RATIO));
        m.insert("ratio_goal_met".into(), json!(met));
    }
    hm
}
