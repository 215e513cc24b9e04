//! The pipeline benchmark: a farm of HTTP targets on 127.0.0.1, the real
//! `healthmon` binary as child process(es) with a fresh store, N services
//! registered through the public API, K WebSocket clients, and figures for a
//! measured window after a warm-up.
//!
//! ```sh
//! cargo bench --bench pipeline -- --services 10000 --interval 1 --duration 30
//! cargo bench --bench pipeline -- --smoke
//! cargo bench --bench pipeline -- --mode distributed \
//!     --pg postgres://postgres@127.0.0.1:5432/postgres \
//!     --amqp amqp://guest:guest@127.0.0.1:5672/%2f
//! ```
//!
//! Options: `--services N` (1000), `--interval S` (1), `--duration D` (30),
//! `--warmup W` (5), `--ws-clients K` (0), `--targets T` ports (4),
//! `--target-latency-ms L` (0), `--mode embedded|distributed`, `--pg URL`
//! (a server to create a fresh database on, dropped at the end), `--amqp
//! URL`, `--smoke` (50 services, 1 s interval, 3 s window, 1 s warm-up, 2
//! WebSocket clients; without `--kind`, one such run per kind, https with
//! `--assert`, and a last line made of the http run's object plus `smoke`,
//! the array of all the runs).
//! `--kind http|https|tcp|push` (http): what the services check (kinds.rs):
//! HTTP, HTTPS with a full TLS handshake per check against a farm whose CA
//! healthmon trusts through `checks.ca_file`, a TCP connect (the farm
//! accepts and closes), or push services pinged at their interval by the
//! benchmark (push.rs; the `push` object). `--assert` (http, https): every
//! service has a `body_contains` and a `json` assertion, and the farm
//! answers a small JSON document that meets both.
//! `--compare` (bench/compare.sh; 5,000 services unless `--services`): first
//! Prometheus blackbox_exporter against the same farm at its best rate
//! (`--bb-clients K` drivers, 64), then healthmon, side by side (blackbox.rs):
//! successes with successes (UP checks stored, probes with `probe_success 1`).
//! `--prefill-days D` (with `--prefill-per-day R`, 1, and `--retention-days
//! K`, 7): after registering, stop healthmon, fill the store with D days of
//! synthetic logs for every service in bulk, start it again with
//! `logs.retention_days` = K and measure the window while its maintenance
//! pass deletes the expired rows (prefill.rs; the `retention` object).
//! `--flap-every S` (with `--flap-share F`, 0.10, and `--storm-threshold N`):
//! every S seconds of the window a share F of the targets flips between
//! answering 200 and 500, a webhook channel on every service points at a
//! receiver in the benchmark, and the `alerting` object reports the status
//! changes, the alerts delivered and their latency (flap.rs).
//!
//! Registrations are spread over one interval (or take longer, if the API
//! is slower than N/S a second): a service is first checked when it is
//! created and keeps that phase, so this is what makes the load the steady
//! N/S checks a second the run is named for.
//!
//! Every target answers `Connection: close`, so each check is a fresh
//! connection, as checks of distinct hosts would be (with `--kind https`, a
//! full TLS handshake: the farm keeps no sessions and sends no tickets). healthmon runs with
//! `checks.send_schedule_header` on, so each request says when its check was
//! due. Measured for the window (checks whose `scheduled_at` falls in it):
//! - checks stored: rows counted in `health_logs`, not a counter, split
//!   into `checks_up` and `checks_down` (a run out of ports or descriptors
//!   stores DOWN rows: they are not throughput);
//! - `requests_at_targets`: requests the targets received for the window's
//!   checks. The run fails its own sanity check (non-zero exit, `sanity`
//!   says why) when they and the stored UP checks differ by more than 0.1 %;
//! - `checks_due`: each service's slots in the window, found from the phase
//!   of its stored checks (a service with none counts at the average rate);
//! - `checks_dropped`: `due_not_stored` (checks due minus checks stored),
//!   and how many healthmon reported dropping, by cause, from its INFO lines
//!   "due checks dropped without running" logged from the window's start
//!   until its last job could have gone stale (`stale_at_worker`,
//!   `scheduler_late`, `bus_unavailable`, `shutdown`); the rest is `unknown`
//!   (e.g. jobs that expired on RabbitMQ, which healthmon never sees);
//! - schedule lag as the target saw it: arrival − `x-healthmon-scheduled-at`;
//!   `lag_slowest_seconds`: the window's 10 seconds (by due time) with the
//!   worst p99, as [second, checks, p99 ms, max ms], to tell stalls from a
//!   spread tail
//!   (tcp: the check's start, `checked_at - latency_ms`, − `scheduled_at`
//!   from the store, and the connections accepted in the window against the
//!   UP checks started in it; push: no lag, pings answered 2xx in the
//!   window against the logs written in it).
//!   After the window the run waits until neither the stored checks nor the
//!   requests grow for a second (`settle_s`, at most 60 s more; `settled`),
//!   so a late check stays in the tail; `late_arrivals` counts the requests
//!   that came after the fixed timeout + 2 s the benchmark used to wait;
//! - CPU seconds of the healthmon process(es) from /proc per 1,000 checks, and
//!   their RSS (summed in distributed mode: 1 `api,scheduler` + 2 `worker`);
//! - distributed: the CPU of every PostgreSQL and RabbitMQ server process
//!   over the window (`postgres_cpu_s`, `rabbitmq_cpu_s`; servers.rs), and
//!   `system_cpu_s_per_1k_checks` for healthmon + both servers;
//! - WebSocket delivery latency (receive time − the event's `checked_at`) and
//!   whether every client got every `check` event of the window.
//!
//! After the window, with healthmon stopped: the store's size `db_mb`, all
//! its `health_logs` rows `logs_total`, and `db_bytes_per_million_logs`
//! (SQLite: the db file plus its WAL, checkpointed first; PostgreSQL:
//! `health_logs` with its indexes, while `db_mb` is the whole database).
//! `--sweep 1000,10000,...` runs once per service count (a fresh healthmon and
//! store each, the other options as given) and draws `--plot PATH`
//! (bench/pipeline.svg); `--plot PATH --from FILE` only redraws it from saved
//! JSON lines (plot.rs). A sweep's last line is its last run's object plus
//! `sweep`, the array of all its runs.
//!
//! `--raw` (http): before healthmon starts, a bare reqwest loop against the
//! same farm at the run's rate, in a child process (raw.rs): the `raw`
//! object, its CPU-s per 1,000 requests, and `healthmon_over_raw`.
//! `--ws-filter QUERY` (with `--ws-clients N`): those N clients connect to
//! `/ws?QUERY` (e.g. `events=status_change`), and `--ws-full-clients M` adds
//! M on the full feed; the filtered ones are judged against the status
//! changes in the stored logs (wsmix.rs; the `ws_filtered` object). The
//! benchmark raises its soft open-files limit to the hard one (healthmon
//! inherits it). `--bulk N` (http) registers through `POST /services/bulk`,
//! N services a request, the requests spread over one interval.
//! `--regions N` (with `--quorum Q`; distributed, http or https): every
//! service lists the regions `r1` .. `rN` (and `quorum` Q), and the fleet is
//! 1 `api,scheduler` + one `--role worker --region rK` per region instead of
//! the 2 plain workers; `checks` are the regions' votes, and the `regions`
//! object has rounds/s, the verdict latency (last vote to verdict) and CPU
//! per 1,000 rounds (regions.rs).
//! `--restart` (embedded): after the window, healthmon restarted on the same
//! store and timed to its first check (large.rs; the `restart` object).
//! Every run also times the dashboard's first page (`GET
//! /services?limit=100`, `GET /`) and reads how far the hourly rollups are
//! behind (the `dashboard` and `rollups` objects).
//!
//! `HEALTHMON_BIN=PATH` runs that healthmon binary instead of the one cargo
//! built (an earlier commit's, say), for a before-and-after under the same
//! benchmark on the same machine.
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it only checks
//! its WebSocket clients' time parser against chrono.
//!
//! The last line printed is one JSON object. The bench exits non-zero when
//! nothing was stored or the sanity check failed. The bench process itself (targets, WebSocket clients)
//! shares the machine's cores with healthmon; its CPU is not counted.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "test code: a panic is a failed test, and output is for the person running it"
)]

// A bench's root is benches/pipeline.rs: without `path`, `mod` looks in benches/.
#[path = "pipeline/blackbox.rs"]
mod blackbox;
#[path = "pipeline/bulk.rs"]
mod bulk;
// The CA the integration tests use, for the `--kind https` farm; the bench
// uses only part of it.
#[path = "../tests/common/ca.rs"]
#[allow(dead_code, reason = "shared with the tests, which use the rest")]
mod ca;
#[path = "pipeline/flap.rs"]
mod flap;
#[path = "pipeline/kinds.rs"]
mod kinds;
#[path = "pipeline/large.rs"]
mod large;
#[path = "../tests/common/measure.rs"]
mod measure;
// The crate root is benches/pipeline.rs, so a bare `mod plot;` would look in
// benches/; cargo does not take benches/pipeline/*.rs as bench targets.
#[path = "pipeline/plot.rs"]
mod plot;
#[path = "pipeline/prefill.rs"]
mod prefill;
#[path = "pipeline/push.rs"]
mod push;
#[path = "pipeline/raw.rs"]
mod raw;
#[path = "pipeline/regions.rs"]
mod regions;
#[path = "pipeline/servers.rs"]
mod servers;
#[path = "pipeline/wsmix.rs"]
mod wsmix;

use measure::{cpu_seconds, percentile, rss_mb};
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Clone, Debug)]
struct Opts {
    services: usize,
    interval: u64,
    duration: u64,
    warmup: u64,
    ws_clients: usize,
    targets: usize,
    target_latency_ms: u64,
    mode: String,
    pg: Option<String>,
    amqp: Option<String>,
    smoke: bool,
    compare: bool,
    bb_clients: usize,
    /// `--sweep`: one run per service count, then the plot.
    sweep: Vec<usize>,
    plot: Option<String>,
    from: Option<String>,
    /// `--prefill-days`: days of synthetic logs to pre-fill (0: none).
    prefill_days: u64,
    /// `--prefill-per-day`: synthetic rows per service and day.
    prefill_per_day: u64,
    /// `--retention-days`: `logs.retention_days` when pre-filling.
    retention_days: u64,
    /// `--flap-every`: seconds between flips (0: no flapping, no alerting).
    flap_every: u64,
    /// `--flap-share`: the share of the targets each flip turns over.
    flap_share: f64,
    /// `--storm-threshold`: `alerts.storm_threshold` (healthmon's default
    /// when `None`).
    storm_threshold: Option<u64>,
    /// `--kind`: what the services check (kinds.rs).
    kind: kinds::Kind,
    /// Whether `--kind` was given (a plain `--smoke` runs every kind).
    kind_given: bool,
    /// `--assert`: a `body_contains` and a `json` assertion on every check.
    assert: bool,
    /// `--raw`: the bare reqwest loop first (raw.rs).
    raw: bool,
    /// `--ws-filter QUERY`: the `--ws-clients` connect to `/ws?QUERY`.
    ws_filter: Option<String>,
    /// `--ws-full-clients M`: M more clients on the full feed.
    ws_full: usize,
    /// `--restart`: after the window, restart healthmon on the same store
    /// and time it to its first check (large.rs).
    restart: bool,
    /// `--bulk N`: register through `POST /services/bulk`, N at a time.
    bulk: usize,
    /// `--regions N`: services checked from N regions, a worker process
    /// each (regions.rs; 0: none).
    regions: usize,
    /// `--quorum Q`: the services' quorum (their default when `None`).
    quorum: Option<u32>,
}

fn parse_opts() -> Result<Opts, String> {
    let mut o = Opts {
        services: 1000,
        interval: 1,
        duration: 30,
        warmup: 5,
        ws_clients: 0,
        targets: 4,
        target_latency_ms: 0,
        mode: "embedded".to_owned(),
        pg: None,
        amqp: None,
        smoke: false,
        compare: false,
        bb_clients: 64,
        sweep: Vec::new(),
        plot: None,
        from: None,
        prefill_days: 0,
        prefill_per_day: 1,
        retention_days: 7,
        flap_every: 0,
        flap_share: 0.10,
        storm_threshold: None,
        kind: kinds::Kind::Http,
        kind_given: false,
        assert: false,
        raw: false,
        ws_filter: None,
        ws_full: 0,
        restart: false,
        bulk: 0,
        regions: 0,
        quorum: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    let num = |v: Option<&String>, name: &str| -> Result<u64, String> {
        v.ok_or(format!("{name} needs a value"))?
            .parse::<u64>()
            .map_err(|e| format!("{name}: {e}"))
    };
    while i < args.len() {
        let a = args[i].as_str();
        let v = args.get(i + 1);
        let mut takes = true;
        match a {
            "--services" => o.services = num(v, a)? as usize,
            "--interval" => o.interval = num(v, a)?,
            "--duration" => o.duration = num(v, a)?,
            "--warmup" => o.warmup = num(v, a)?,
            "--ws-clients" => o.ws_clients = num(v, a)? as usize,
            "--targets" => o.targets = num(v, a)? as usize,
            "--target-latency-ms" => o.target_latency_ms = num(v, a)?,
            "--mode" => o.mode = v.ok_or("--mode needs a value")?.clone(),
            "--pg" => o.pg = Some(v.ok_or("--pg needs a value")?.clone()),
            "--amqp" => o.amqp = Some(v.ok_or("--amqp needs a value")?.clone()),
            "--smoke" => {
                o.smoke = true;
                takes = false;
            }
            "--compare" => {
                o.compare = true;
                takes = false;
            }
            "--bb-clients" => o.bb_clients = num(v, a)? as usize,
            "--sweep" => {
                o.sweep = (v.ok_or("--sweep needs a value")?.split(','))
                    .map(|n| n.trim().parse().map_err(|e| format!("--sweep {n}: {e}")))
                    .collect::<Result<_, String>>()?;
            }
            "--plot" => o.plot = Some(v.ok_or("--plot needs a value")?.clone()),
            "--from" => o.from = Some(v.ok_or("--from needs a value")?.clone()),
            "--prefill-days" => o.prefill_days = num(v, a)?,
            "--prefill-per-day" => o.prefill_per_day = num(v, a)?,
            "--retention-days" => o.retention_days = num(v, a)?,
            "--flap-every" => o.flap_every = num(v, a)?,
            "--flap-share" => {
                o.flap_share = (v.ok_or("--flap-share needs a value")?)
                    .parse::<f64>()
                    .map_err(|e| format!("--flap-share: {e}"))?;
            }
            "--storm-threshold" => o.storm_threshold = Some(num(v, a)?),
            "--kind" => {
                o.kind = kinds::Kind::parse(v.ok_or("--kind needs a value")?)?;
                o.kind_given = true;
            }
            "--assert" => {
                o.assert = true;
                takes = false;
            }
            "--raw" => {
                o.raw = true;
                takes = false;
            }
            "--restart" => {
                o.restart = true;
                takes = false;
            }
            "--ws-filter" => o.ws_filter = Some(v.ok_or("--ws-filter needs a value")?.clone()),
            "--ws-full-clients" => o.ws_full = num(v, a)? as usize,
            "--bulk" => o.bulk = num(v, a)? as usize,
            "--regions" => o.regions = num(v, a)? as usize,
            "--quorum" => {
                o.quorum = Some(num(v, a)?.try_into().map_err(|_| "--quorum: too large")?)
            }
            // cargo passes `--bench` to harness = false targets.
            _ => takes = false,
        }
        i += if takes { 2 } else { 1 };
    }
    if o.compare && !args.iter().any(|a| a == "--services") {
        o.services = 5000;
    }
    if o.smoke {
        (o.services, o.interval, o.duration, o.warmup, o.ws_clients) = (50, 1, 3, 1, 2);
    }
    if o.services == 0 || o.interval == 0 || o.duration == 0 || o.targets == 0 {
        return Err("--services, --interval, --duration and --targets must be > 0".into());
    }
    if o.sweep.contains(&0) {
        return Err("--sweep: every service count must be > 0".into());
    }
    if o.plot.is_some() && o.sweep.is_empty() && o.from.is_none() {
        return Err("--plot needs --sweep N,N,... or --from FILE (one run: --sweep N)".into());
    }
    if o.compare && o.bb_clients == 0 {
        return Err("--bb-clients must be > 0".into());
    }
    if o.prefill_days > 0
        && (o.prefill_per_day == 0 || o.retention_days == 0 || o.retention_days > 3650)
    {
        return Err(
            "--prefill-per-day must be > 0 and --retention-days in 1..=3650 with --prefill-days"
                .into(),
        );
    }
    if o.prefill_days > 0 && (o.compare || !o.sweep.is_empty()) {
        return Err("--prefill-days is one run: not with --compare or --sweep".into());
    }
    if !(o.flap_share > 0.0 && o.flap_share <= 1.0) {
        return Err("--flap-share must be in (0, 1]".into());
    }
    if o.flap_every > 0 && (o.compare || o.prefill_days > 0) {
        return Err("--flap-every is not for --compare or --prefill-days runs".into());
    }
    if o.compare && (!o.sweep.is_empty() || o.from.is_some()) {
        return Err("--compare is one run: not with --sweep or --from".into());
    }
    if (o.raw || o.bulk > 0) && o.kind != kinds::Kind::Http {
        return Err("--raw and --bulk are for --kind http".into());
    }
    if o.bulk > 1000 {
        return Err("--bulk: at most 1000 services a request".into());
    }
    if o.ws_filter.is_some() && o.ws_clients == 0 {
        return Err("--ws-filter needs --ws-clients N".into());
    }
    if o.assert && !o.kind.is_http() {
        return Err("--assert is for --kind http or https".into());
    }
    if !o.kind.is_http() && (o.compare || o.flap_every > 0) {
        return Err("--compare and --flap-every are for --kind http or https".into());
    }
    match o.mode.as_str() {
        "embedded" => {}
        "distributed" if o.pg.is_some() && o.amqp.is_some() => {}
        "distributed" => return Err("--mode distributed needs --pg URL and --amqp URL".into()),
        m => return Err(format!("unknown --mode {m} (embedded|distributed)")),
    }
    regions::validate(&o)?;
    Ok(o)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

// ---------------------------------------------------------------- targets

/// Per request: (scheduled_at, lag ms as the target saw it).
type Arrivals = Arc<Mutex<Vec<(i64, i64)>>>;

/// What reached the targets, by kind: HTTP(S) requests by due time (the
/// schedule header), tcp connections by accept time, push pings by send time.
#[derive(Default)]
struct Traffic {
    arrivals: Arrivals,
    accepts: kinds::Accepts,
    /// `--kind push`: started once the services are registered.
    pinger: Option<push::Pinger>,
}

impl Traffic {
    /// What reached the targets for the window [from, to) so far: requests
    /// due in it, connections accepted in it, pings sent in it and answered.
    fn seen(&self, kind: kinds::Kind, from: i64, to: i64) -> i64 {
        match kind {
            kinds::Kind::Http | kinds::Kind::Https => {
                window_arrivals(&self.arrivals, from, to).len() as i64
            }
            kinds::Kind::Tcp => kinds::accepts_in(&self.accepts, from, to),
            kinds::Kind::Push => self.pinger.as_ref().map_or(0, |p| p.pings.ok_in(from, to)),
        }
    }
}

/// How the HTTP farm answers: the 200 answer's bytes (kinds::ok_answer),
/// TLS or not, and the flapping targets.
#[derive(Clone)]
struct Answers {
    ok: Arc<[u8]>,
    tls: Option<Arc<kinds::Tls>>,
    flapping: Arc<flap::Targets>,
}

async fn start_farm(n: usize, latency: Duration, arrivals: Arrivals, answers: Answers) -> Vec<u16> {
    let mut ports = Vec::new();
    for _ in 0..n {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind target");
        ports.push(listener.local_addr().expect("addr").port());
        let arrivals = Arc::clone(&arrivals);
        let answers = answers.clone();
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    // Out of descriptors, most likely: back off briefly.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let (arrivals, answers) = (Arc::clone(&arrivals), answers.clone());
                tokio::spawn(async move {
                    let Some(tls) = answers.tls.clone() else {
                        let _ = serve(sock, latency, arrivals, &answers).await;
                        return;
                    };
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(10), tls.acceptor.accept(sock));
                    if let Ok(Ok(sock)) = handshake.await {
                        tls.handshakes.note(sock.get_ref().1.handshake_kind());
                        let _ = serve(sock, latency, arrivals, &answers).await;
                    }
                });
            }
        });
    }
    ports
}

const HEADER: &str = "x-healthmon-scheduled-at:";

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut sock: S,
    latency: Duration,
    arrivals: Arrivals,
    answers: &Answers,
) -> std::io::Result<()> {
    let flapping = &answers.flapping;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut chunk))
            .await
            .map_err(|_| std::io::ErrorKind::TimedOut)??;
        if n == 0 || buf.len() > 16 * 1024 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let arrived = now_ms();
    let head = String::from_utf8_lossy(&buf);
    let scheduled = head.lines().find_map(|l| {
        let (k, v) = l.split_at_checked(HEADER.len())?;
        k.eq_ignore_ascii_case(HEADER)
            .then(|| v.trim().parse::<i64>().ok())
            .flatten()
    });
    // A flapped target answers 500 (`--flap-every`); its requests are kept
    // apart, so `requests_at_targets` still counts what should be UP.
    let fails = flapping.fails(&head);
    if fails {
        flapping.refused(scheduled, scheduled.map_or(0, |s| arrived - s));
    } else if let Some(s) = scheduled
        && let Ok(mut a) = arrivals.lock()
    {
        a.push((s, arrived - s));
    }
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let answer: &[u8] = if fails {
        b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\ncontent-length: 4\r\nconnection: close\r\n\r\ndown"
    } else {
        &answers.ok
    };
    sock.write_all(answer).await?;
    let _ = sock.shutdown().await;
    Ok(())
}

// ---------------------------------------------------------------- healthmon

struct Proc {
    child: Child,
    addr: String,
    dir: Arc<tempfile::TempDir>,
    tail: Arc<Mutex<Vec<String>>>,
    /// Lines the run reads figures from (see [`NOTED`]), with the time
    /// they were read.
    notes: Notes,
}

/// (time read, line) of the lines the run reads figures from.
type Notes = Arc<Mutex<Vec<(i64, String)>>>;

/// The INFO line that reports checks dropped without running (src/drops.rs).
const DROPPED_LINE: &str = "due checks dropped without running";
/// The INFO line that ends a maintenance pass (src/maintenance.rs).
const MAINTENANCE_LINE: &str = "log maintenance done";
/// Lines kept in [`Proc::notes`].
const NOTED: [&str; 2] = [DROPPED_LINE, MAINTENANCE_LINE];

/// The value of `key=` in a log line, up to the next space.
fn log_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    line[at..].split_whitespace().next()
}

impl Proc {
    /// Stops the process with SIGTERM (so its store is left clean), waiting
    /// up to 30 s before killing it.
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The noted lines containing `what`.
    fn noted(&self, what: &str) -> Vec<(i64, String)> {
        self.notes
            .lock()
            .map(|n| {
                n.iter()
                    .filter(|(_, l)| l.contains(what))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts healthmon with a store in `dir` (a fresh one if `None`).
fn spawn_healthmon(
    env: &[(String, String)],
    args: &[&str],
    dir: Option<Arc<tempfile::TempDir>>,
) -> Result<Proc, String> {
    let dir = match dir {
        Some(d) => d,
        None => Arc::new(tempfile::tempdir().map_err(|e| e.to_string())?),
    };
    // `HEALTHMON_BIN`: another build (an earlier commit's) under the same
    // benchmark, for a before-and-after on one machine.
    let bin = std::env::var_os("HEALTHMON_BIN")
        .unwrap_or_else(|| std::ffi::OsString::from(env!("CARGO_BIN_EXE_healthmon")));
    let mut cmd = Command::new(bin);
    cmd.current_dir(dir.path())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("HEALTHMON__") || k == "DATABASE_URL" || k == "RABBITMQ_URL" {
            cmd.env_remove(k);
        }
    }
    cmd.env("HEALTHMON__SERVER__BIND", "127.0.0.1:0")
        .env(
            "HEALTHMON__DATABASE__URL",
            format!("sqlite://{}", dir.path().join("hm.db").display()),
        )
        .env("HEALTHMON__API__WRITE_RATE_PER_S", "0")
        .env("HEALTHMON__API__MAX_SERVICES", "10000000")
        // The targets read each check's due time from it to measure lag,
        // and count the requests that carry it.
        .env("HEALTHMON__CHECKS__SEND_SCHEDULE_HEADER", "true");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.args(args).spawn().map_err(|e| e.to_string())?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let tail = Arc::new(Mutex::new(Vec::new()));
    let notes: Notes = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let (sink, noted) = (Arc::clone(&tail), Arc::clone(&notes));
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening addr=").nth(1) {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
            }
            if NOTED.iter().any(|n| line.contains(n))
                && let Ok(mut n) = noted.lock()
            {
                n.push((now_ms(), line.clone()));
            }
            if let Ok(mut t) = sink.lock() {
                if t.len() >= 50 {
                    t.remove(0);
                }
                t.push(line);
            }
        }
    });
    let mut p = Proc {
        child,
        addr: String::new(),
        dir,
        tail,
        notes,
    };
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(addr) => {
            p.addr = addr;
            Ok(p)
        }
        Err(_) => Err(format!(
            "healthmon {args:?} printed no 'listening addr=' line within 60 s:\n{}",
            p.tail.lock().map(|t| t.join("\n")).unwrap_or_default()
        )),
    }
}

/// Registers the services; for `--kind push`, returns each one's ping URL
/// (`push_url` of the 201 answer) by index.
async fn register(api: &str, ports: &[u16], o: &Opts) -> Result<Vec<String>, String> {
    if o.bulk > 0 {
        bulk::register(api, ports, o).await?;
        return Ok(Vec::new());
    }
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let timeout = o.interval.min(5);
    // A new service is checked at once and keeps that phase, so services
    // registered in one burst are checked in one burst every interval. Spread
    // over one interval they are checked at the steady rate the run is named
    // for (1,000 services at 1 s: 1,000 checks and events every second, not
    // 2,500 a second for 0.4 s of it). Registration slower than that is not
    // held back further.
    let start = tokio::time::Instant::now();
    let spacing = Duration::from_secs(o.interval).div_f64(o.services.max(1) as f64);
    let push_urls = Arc::new(Mutex::new(vec![String::new(); o.services]));
    let mut extra = if o.assert {
        kinds::assert_fields()
    } else {
        serde_json::Map::new()
    };
    extra.extend(regions::fields(o));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (http, next, ports) = (http.clone(), Arc::clone(&next), ports.to_vec());
        let (push_urls, extra) = (Arc::clone(&push_urls), extra.clone());
        let endpoint = format!("http://{api}/services");
        let api_addr = api.to_owned();
        let (n, interval, kind) = (o.services, o.interval, o.kind);
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return Ok::<(), String>(());
                }
                tokio::time::sleep_until(start + spacing.mul_f64(i as f64)).await;
                // A push service has no farm port; any index will do.
                let port = ports.get(i % ports.len().max(1)).copied().unwrap_or(0);
                let mut body = json!({
                    "name": format!("bench-{i}"),
                    "url": kind.url(port, i),
                    "interval": interval,
                    "timeout": timeout,
                });
                if let Some(m) = body.as_object_mut() {
                    m.extend(extra.clone());
                }
                let mut tries = 0;
                loop {
                    tries += 1;
                    match http.post(&endpoint).json(&body).send().await {
                        Ok(r) if r.status().as_u16() == 201 && kind == kinds::Kind::Push => {
                            let created: serde_json::Value =
                                r.json().await.map_err(|e| format!("POST /services: {e}"))?;
                            let url = push::ping_url(&api_addr, &created)?;
                            if let Ok(mut urls) = push_urls.lock() {
                                urls[i] = url;
                            }
                            break;
                        }
                        Ok(r) if r.status().as_u16() == 201 => break,
                        Ok(r)
                            if tries < 5 && (r.status().is_server_error() || r.status() == 429) =>
                        {
                            eprintln!("POST /services: {}; retrying", r.status());
                        }
                        Err(e) if tries < 5 => eprintln!("POST /services: {e}; retrying"),
                        Ok(r) => {
                            let status = r.status();
                            let text = r.text().await.unwrap_or_default();
                            return Err(format!("POST /services: {status}: {text}"));
                        }
                        Err(e) => return Err(format!("POST /services: {e}")),
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok(push_urls.lock().map(|u| u.clone()).unwrap_or_default())
}

// ---------------------------------------------------------------- websocket

#[derive(Default)]
struct WsRecord {
    /// Per `check` event: (checked_at ms, delivery latency ms).
    events: Vec<(i64, i64)>,
    closed_early: bool,
    /// How the connection ended early (a close frame's reason, an error),
    /// and how many text messages had come.
    closed_why: String,
    messages: u64,
    /// Per `status_change` event from a flip (not from `PENDING`):
    /// (service id, `changed_at` ms, delivery latency ms).
    changes: Vec<(i64, i64, i64)>,
}

/// `"key":"value"` → value, without parsing the whole message.
fn json_str<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let start = text.find(key)? + key.len();
    let rest = &text[start..];
    Some(&rest[..rest.find('"')?])
}

/// A `check` event's `checked_at` in epoch milliseconds; `None` for other
/// messages. A thousand clients parse a million events a second on the
/// machine under test, so the usual shape (the tag first, `checked_at` last,
/// to the millisecond in UTC, as healthmon writes it) is read in place;
/// anything else goes through the general path.
fn check_event_time(text: &str) -> Option<i64> {
    const TAG: &str = "{\"type\":\"check\"";
    const KEY: &str = "\"checked_at\":\"";
    if !text.starts_with(TAG) {
        return None;
    }
    let fast = text
        .strip_suffix("\"}")
        .and_then(|t| t.len().checked_sub(24).map(|at| t.split_at(at)))
        .filter(|(head, _)| head.ends_with(KEY))
        .and_then(|(_, at)| utc_millis(at));
    fast.or_else(|| {
        let at = json_str(text, KEY)?;
        Some(
            chrono::DateTime::parse_from_rfc3339(at)
                .ok()?
                .timestamp_millis(),
        )
    })
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` to epoch milliseconds (days from the civil
/// date as in Howard Hinnant's `days_from_civil`).
fn utc_millis(at: &str) -> Option<i64> {
    let b = at.as_bytes();
    let shape = [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (23, b'Z'),
    ];
    if b.len() != 24 || shape.iter().any(|&(i, c)| b[i] != c) {
        return None;
    }
    let num = |from: usize, to: usize| {
        b[from..to].iter().try_fold(0i64, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    };
    let (y, m, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hh, mm, ss, ms) = (num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 23)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    Some((((days * 24 + hh) * 60 + mm) * 60 + ss) * 1000 + ms)
}

/// [`utc_millis`] against chrono, every 7 hours and 13 ms from 1969 to
/// 2101 (leap days and century years included), and the shapes it refuses.
fn check_time_parser() -> Result<(), String> {
    let step = 7 * 3_600_000 + 13;
    let mut at = -365 * 86_400_000_i64;
    while at < 4_134_000_000_000 {
        let text = chrono::DateTime::from_timestamp_millis(at)
            .ok_or("time out of range")?
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        if utc_millis(&text) != Some(at) {
            return Err(format!(
                "utc_millis({text}) = {:?}, not {at}",
                utc_millis(&text)
            ));
        }
        at += step;
    }
    for bad in [
        "2026-11-26T05:10:00Z",
        "2026-13-26T05:10:00.000Z",
        "2026-11-26 05:10:00.000Z",
    ] {
        if utc_millis(bad).is_some() {
            return Err(format!("utc_millis accepted {bad}"));
        }
    }
    let event = r#"{"type":"check","service_id":1,"name":"a","status":"UP","latency":1,"status_code":200,"error":null,"checked_at":"2026-11-26T05:10:00.250Z"}"#;
    if check_event_time(event) != Some(1_795_669_800_250) {
        return Err(format!(
            "check_event_time read {:?}",
            check_event_time(event)
        ));
    }
    Ok(())
}

async fn ws_client(
    url: String,
    stop: tokio::sync::watch::Receiver<bool>,
    changes: flap::Changes,
) -> Result<tokio::task::JoinHandle<WsRecord>, String> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
    // The snapshot of 100,000 services is one large message.
    let config = WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None)
        // tungstenite zeroes the free part of its read buffer before each
        // read: at the default 128 KiB that was 7 % of the clients' CPU.
        .read_buffer_size(16 * 1024);
    let (mut stream, _) = tokio::time::timeout(
        Duration::from_secs(60),
        tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), false),
    )
    .await
    .map_err(|_| "WebSocket connect timed out".to_owned())?
    .map_err(|e| format!("WebSocket connect: {e}"))?;
    let mut stop = stop;
    Ok(tokio::spawn(async move {
        let mut rec = WsRecord::default();
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                msg = stream.next() => match msg {
                    Some(Ok(Message::Text(text))) => {
                        rec.messages += 1;
                        let received = now_ms();
                        if let Some(at) = check_event_time(text.as_str()) {
                            rec.events.push((at, received - at));
                        } else if flap::note_change(&changes, text.as_str(), received)
                            && let Some((service, at)) = flap::change_key(text.as_str())
                        {
                            rec.changes.push((service, at, received - at));
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        rec.closed_early = true;
                        rec.closed_why = format!("closed by the server: {frame:?}");
                        break;
                    }
                    None => {
                        rec.closed_early = true;
                        rec.closed_why = "the stream ended".to_owned();
                        break;
                    }
                    Some(Err(e)) => {
                        rec.closed_early = true;
                        rec.closed_why = e.to_string();
                        break;
                    }
                    Some(Ok(_)) => {}
                },
            }
        }
        rec
    }))
}

// ---------------------------------------------------------------- stores

enum Store {
    Sqlite(std::path::PathBuf),
    Pg {
        url: String,
        admin: String,
        name: String,
    },
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[derive(diesel::QueryableByName)]
struct StatusCount {
    #[diesel(sql_type = diesel::sql_types::Text)]
    status: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[derive(diesel::QueryableByName)]
struct LogStatus {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    service_id: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    status: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    checked_at: i64,
}

#[derive(diesel::QueryableByName)]
struct Phase {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    first: i64,
}

#[derive(diesel::QueryableByName)]
struct PhaseLag {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    first: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[derive(diesel::QueryableByName)]
struct Id {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
}

/// Runs one read-only query (SQL text with only integers in it) on either
/// store, loading rows of `$row`.
macro_rules! load_rows {
    ($store:expr, $sql:expr, $row:ty) => {
        match $store {
            Store::Sqlite(path) => {
                use diesel::{Connection, RunQueryDsl, SqliteConnection};
                let mut conn = SqliteConnection::establish(&path.display().to_string())
                    .map_err(|e| e.to_string())?;
                diesel::sql_query($sql)
                    .load::<$row>(&mut conn)
                    .map_err(|e| e.to_string())
            }
            Store::Pg { url, .. } => {
                use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
                let mut conn = AsyncPgConnection::establish(url)
                    .await
                    .map_err(|e| e.to_string())?;
                diesel::sql_query($sql)
                    .load::<$row>(&mut conn)
                    .await
                    .map_err(|e| e.to_string())
            }
        }
    };
}

/// The store's size, read by [`Store::size`] once healthmon has stopped.
#[derive(diesel::QueryableByName)]
struct Size {
    /// The whole store: the SQLite file with its WAL, or the PostgreSQL database.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    db_bytes: i64,
    /// What the logs take: the whole SQLite file again; in PostgreSQL,
    /// `health_logs` with its indexes (and TOAST).
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    logs_bytes: i64,
    /// Every row of `health_logs`, in and out of the window.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    logs: i64,
}

/// Stored checks of a window, by status.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Stored {
    up: i64,
    down: i64,
    /// Any other status (none yet; DEGRADED once it exists).
    other: i64,
}

impl Stored {
    fn total(&self) -> i64 {
        self.up + self.down + self.other
    }
}

impl Store {
    /// Logs with `scheduled_at` in [from, to), by status. `checked_at >=
    /// from` (a check ends after it is due) lets the query use the
    /// `checked_at` index instead of reading every row of a pre-filled store.
    /// A push log is written when its ping arrives, so push services'
    /// logs are counted by `checked_at` instead.
    async fn stored(&self, from: i64, to: i64, kind: kinds::Kind) -> Result<Stored, String> {
        let by = match kind {
            kinds::Kind::Push => "checked_at",
            _ => "scheduled_at",
        };
        let sql = format!(
            "SELECT status, COUNT(*) AS n FROM health_logs WHERE checked_at >= {from} \
             AND {by} >= {from} AND {by} < {to} GROUP BY status"
        );
        let rows = load_rows!(self, sql, StatusCount)?;
        let mut stored = Stored::default();
        for r in rows {
            match r.status.as_str() {
                "UP" => stored.up += r.n,
                "DOWN" => stored.down += r.n,
                _ => stored.other += r.n,
            }
        }
        Ok(stored)
    }

    /// Checks due in [from, to): each service's slots keep one phase
    /// (registration time modulo the interval), so one stored check of the
    /// window tells where all its slots fall, dropped ones included. A
    /// service with no check stored in the window is counted at the
    /// average rate (`services * window / interval` in all).
    async fn due(
        &self,
        from: i64,
        to: i64,
        services: usize,
        interval_ms: i64,
    ) -> Result<f64, String> {
        let sql = format!(
            "SELECT MIN(scheduled_at) AS first FROM health_logs WHERE checked_at >= {from} \
             AND scheduled_at >= {from} AND scheduled_at < {to} GROUP BY service_id"
        );
        let phases = load_rows!(self, sql, Phase)?;
        let slots = |first: i64| {
            // Slots first + k * interval (any integer k) in [from, to).
            let lo = (from - first).div_euclid(interval_ms)
                + i64::from((from - first).rem_euclid(interval_ms) != 0);
            let hi = (to - 1 - first).div_euclid(interval_ms);
            (hi - lo + 1).max(0)
        };
        let seen: i64 = phases.iter().map(|p| slots(p.first)).sum();
        let unseen = services.saturating_sub(phases.len()) as f64;
        Ok(seen as f64 + unseen * (to - from) as f64 / interval_ms as f64)
    }

    /// (scheduled_at, start - scheduled_at) of every log due in [from, to),
    /// the start being `checked_at - latency_ms`: the schedule lag of checks
    /// that carry no schedule header (tcp).
    async fn start_lags(&self, from: i64, to: i64) -> Result<Vec<(i64, i64)>, String> {
        let sql = format!(
            "SELECT scheduled_at AS first, checked_at - latency_ms - scheduled_at AS n \
             FROM health_logs WHERE checked_at >= {from} AND scheduled_at >= {from} \
             AND scheduled_at < {to}"
        );
        let rows = load_rows!(self, sql, PhaseLag)?;
        Ok(rows.into_iter().map(|r| (r.first, r.n)).collect())
    }

    /// UP logs whose check started (`checked_at - latency_ms`) in [from, to).
    async fn up_started(&self, from: i64, to: i64) -> Result<i64, String> {
        self.count_logs(&format!(
            "checked_at >= {from} AND status = 'UP' AND checked_at - latency_ms >= {from} \
             AND checked_at - latency_ms < {to}"
        ))
        .await
    }

    /// Rows of `health_logs` matching `condition` (integers only).
    async fn count_logs(&self, condition: &str) -> Result<i64, String> {
        let sql = format!("SELECT COUNT(*) AS n FROM health_logs WHERE {condition}");
        Ok(load_rows!(self, sql, Count)?.first().map_or(0, |c| c.n))
    }

    /// One integer that `sql` selects as `n` (0 when it selects no row).
    async fn scalar(&self, sql: &str) -> Result<i64, String> {
        Ok(load_rows!(self, sql, Count)?.first().map_or(0, |c| c.n))
    }

    /// Every registered service's id.
    async fn service_ids(&self) -> Result<Vec<i64>, String> {
        let rows = load_rows!(self, "SELECT id FROM services ORDER BY id", Id)?;
        Ok(rows.into_iter().map(|r| r.id).collect())
    }

    /// Outbox rows of `down`/`up` alerts, by state (`--flap-every`).
    async fn alerts_by_state(&self) -> Result<Vec<(String, i64)>, String> {
        let rows = load_rows!(
            self,
            "SELECT state AS status, COUNT(*) AS n FROM alerts \
             WHERE event IN ('down', 'up') GROUP BY state",
            StatusCount
        )?;
        Ok(rows.into_iter().map(|r| (r.status, r.n)).collect())
    }

    /// Status changes in the logs from `from` on, as (service, the deciding
    /// check's `checked_at`): every service is UP before the first flip, so
    /// each log whose status differs from the one before (UP before `from`)
    /// is a change (`--flap-every`).
    async fn status_changes(&self, from: i64) -> Result<Vec<(i64, i64)>, String> {
        let sql = format!(
            "SELECT service_id, status, checked_at FROM health_logs WHERE checked_at >= {from} \
             AND service_id IN (SELECT DISTINCT service_id FROM health_logs \
             WHERE checked_at >= {from} AND status <> 'UP') ORDER BY service_id, checked_at"
        );
        let rows = load_rows!(self, sql, LogStatus)?;
        let mut changes = Vec::new();
        let mut last: Option<(i64, String)> = None;
        for r in rows {
            let before = match &last {
                Some((id, status)) if *id == r.service_id => status.as_str(),
                _ => "UP",
            };
            if r.status != before {
                changes.push((r.service_id, r.checked_at));
            }
            last = Some((r.service_id, r.status));
        }
        Ok(changes)
    }

    /// Runs each SQL text (several statements, e.g. a transaction) in turn on
    /// one connection, healthmon stopped.
    async fn execute_all(&self, batches: impl Iterator<Item = String>) -> Result<(), String> {
        match self {
            Store::Sqlite(path) => {
                use diesel::connection::SimpleConnection;
                use diesel::{Connection, SqliteConnection};
                let mut conn = SqliteConnection::establish(&path.display().to_string())
                    .map_err(|e| e.to_string())?;
                // This connection only: the bulk load need not survive a
                // power cut; healthmon's own settings are untouched.
                conn.batch_execute("PRAGMA synchronous = OFF")
                    .map_err(|e| e.to_string())?;
                for sql in batches {
                    conn.batch_execute(&sql).map_err(|e| e.to_string())?;
                }
                Ok(())
            }
            Store::Pg { url, .. } => {
                use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
                let mut conn = AsyncPgConnection::establish(url)
                    .await
                    .map_err(|e| e.to_string())?;
                for sql in batches {
                    conn.batch_execute(&sql).await.map_err(|e| e.to_string())?;
                }
                Ok(())
            }
        }
    }

    /// Logs whose `column` falls in [from, to).
    async fn count(&self, column: &str, from: i64, to: i64) -> Result<i64, String> {
        use diesel::sql_types::BigInt;
        let sql = |p1: &str, p2: &str| {
            format!(
                "SELECT COUNT(*) AS n FROM health_logs WHERE {column} >= {p1} AND {column} < {p2}"
            )
        };
        match self {
            Store::Sqlite(path) => {
                use diesel::{Connection, RunQueryDsl, SqliteConnection};
                let mut conn = SqliteConnection::establish(&path.display().to_string())
                    .map_err(|e| e.to_string())?;
                diesel::sql_query(sql("?", "?"))
                    .bind::<BigInt, _>(from)
                    .bind::<BigInt, _>(to)
                    .get_result::<Count>(&mut conn)
                    .map(|c| c.n)
                    .map_err(|e| e.to_string())
            }
            Store::Pg { url, .. } => {
                use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
                let mut conn = AsyncPgConnection::establish(url)
                    .await
                    .map_err(|e| e.to_string())?;
                diesel::sql_query(sql("$1", "$2"))
                    .bind::<BigInt, _>(from)
                    .bind::<BigInt, _>(to)
                    .get_result::<Count>(&mut conn)
                    .await
                    .map(|c| c.n)
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// The store's size and its number of logs. Call it once healthmon has
    /// stopped, so that nothing writes meanwhile and the SQLite checkpoint
    /// disturbs no one.
    async fn size(&self) -> Result<Size, String> {
        match self {
            Store::Sqlite(path) => {
                use diesel::connection::SimpleConnection;
                use diesel::{Connection, RunQueryDsl, SqliteConnection};
                let mut conn = SqliteConnection::establish(&path.display().to_string())
                    .map_err(|e| e.to_string())?;
                // Moves the WAL's pages into the db file and empties the WAL.
                // The WAL is counted anyway, in case the checkpoint could not
                // finish; the -shm index is not data and is left out.
                conn.batch_execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    .map_err(|e| format!("wal_checkpoint: {e}"))?;
                let logs = diesel::sql_query("SELECT COUNT(*) AS n FROM health_logs")
                    .get_result::<Count>(&mut conn)
                    .map_err(|e| e.to_string())?
                    .n;
                // Read while the connection is open: closing the last one
                // deletes the WAL file.
                let len = |p: std::path::PathBuf| std::fs::metadata(p).map_or(0, |m| m.len());
                let wal = std::path::PathBuf::from(format!("{}-wal", path.display()));
                let db_bytes = (len(path.clone()) + len(wal)) as i64;
                Ok(Size {
                    db_bytes,
                    logs_bytes: db_bytes,
                    logs,
                })
            }
            Store::Pg { url, .. } => {
                use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
                let mut conn = AsyncPgConnection::establish(url)
                    .await
                    .map_err(|e| e.to_string())?;
                diesel::sql_query(
                    "SELECT pg_database_size(current_database()) AS db_bytes, \
                     pg_total_relation_size('health_logs') AS logs_bytes, \
                     (SELECT COUNT(*) FROM health_logs) AS logs",
                )
                .get_result::<Size>(&mut conn)
                .await
                .map_err(|e| e.to_string())
            }
        }
    }

    async fn create_pg(admin: &str) -> Result<Store, String> {
        use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
        let mut conn = AsyncPgConnection::establish(admin)
            .await
            .map_err(|e| format!("PostgreSQL {admin}: {e}"))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!("hm_bench_{}_{}", std::process::id(), nanos % 1_000_000_000);
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        let mut url = url::Url::parse(admin).map_err(|e| e.to_string())?;
        url.set_path(&name);
        Ok(Store::Pg {
            url: url.to_string(),
            admin: admin.to_owned(),
            name,
        })
    }

    async fn drop_pg(&self) {
        use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
        if let Store::Pg { admin, name, .. } = self
            && let Ok(mut conn) = AsyncPgConnection::establish(admin).await
        {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await;
        }
    }
}

/// Deletes the run's queues and exchanges (best effort).
async fn drop_bus(amqp: &str, prefix: &str, extra_queues: &[String]) {
    use amqprs::channel::{ExchangeDeleteArguments, QueueDeleteArguments};
    use amqprs::connection::{Connection, OpenConnectionArguments};
    let Ok(u) = url::Url::parse(amqp) else { return };
    let vhost = match u.path().trim_start_matches('/') {
        "" | "%2f" | "%2F" => "/".to_owned(),
        v => v.to_owned(),
    };
    let mut args = OpenConnectionArguments::new(
        u.host_str().unwrap_or("127.0.0.1"),
        u.port().unwrap_or(5672),
        if u.username().is_empty() {
            "guest"
        } else {
            u.username()
        },
        u.password().unwrap_or("guest"),
    );
    args.virtual_host(&vhost);
    let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_secs(5), Connection::open(&args)).await
    else {
        return;
    };
    if let Ok(ch) = conn.open_channel(None).await {
        let queues = ["jobs", "results", "votes", "dead"].map(str::to_owned);
        for q in queues.iter().chain(extra_queues) {
            let _ = ch
                .queue_delete(QueueDeleteArguments::new(&format!("{prefix}.{q}")))
                .await;
        }
        for x in ["events", "schedule", "dead", "heartbeats"] {
            let _ = ch
                .exchange_delete(ExchangeDeleteArguments::new(&format!("{prefix}.{x}")))
                .await;
        }
    }
    let _ = conn.close().await;
}

// ---------------------------------------------------------------- the run

async fn run(o: Opts) -> Result<serde_json::Value, String> {
    let mut traffic = Traffic::default();
    let tls = match o.kind {
        kinds::Kind::Https => Some(Arc::new(kinds::Tls::new()?)),
        _ => None,
    };
    let alerting = if o.flap_every > 0 {
        Some(flap::Run {
            targets: Arc::new(flap::Targets::new(o.services)),
            receiver: flap::Receiver::start().await?,
        })
    } else {
        None
    };
    let answers = Answers {
        ok: kinds::ok_answer(o.assert),
        tls: tls.clone(),
        flapping: alerting
            .as_ref()
            .map_or_else(Arc::default, |a| Arc::clone(&a.targets)),
    };
    let ports = match o.kind {
        kinds::Kind::Http | kinds::Kind::Https => {
            let latency = Duration::from_millis(o.target_latency_ms);
            start_farm(o.targets, latency, Arc::clone(&traffic.arrivals), answers).await
        }
        kinds::Kind::Tcp => kinds::start_tcp_farm(o.targets, Arc::clone(&traffic.accepts)).await,
        kinds::Kind::Push => Vec::new(),
    };
    if !ports.is_empty() {
        println!(
            "target farm ({}{}): {} ports on 127.0.0.1 {ports:?}",
            o.kind.as_str(),
            if o.assert {
                ", JSON answers for --assert"
            } else {
                ""
            },
            ports.len()
        );
    }
    let ca_file = tls.as_ref().map(|t| t.ca_file.as_path());
    let bb = if o.compare {
        Some(blackbox::run(&o, &ports, ca_file).await?)
    } else {
        None
    };

    // The bare loop first, on the same farm, before healthmon shares the
    // cores with it.
    let raw = if o.raw {
        let rate = o.services as f64 / o.interval as f64;
        let secs = o.duration.min(raw::MAX_SECS);
        println!("--raw: a bare reqwest loop at {rate:.0} requests/s for {secs} s");
        let r = raw::measure(&ports, rate, secs)?;
        println!("--raw: {r}");
        Some(r)
    } else {
        None
    };
    let prefix = format!("bench{}", std::process::id());
    let mut env = Vec::new();
    if let Some(ca) = ca_file {
        env.push((
            "HEALTHMON__CHECKS__CA_FILE".to_owned(),
            ca.display().to_string(),
        ));
    }
    if o.flap_every > 0 {
        // A line per alert sent would push the warnings out of the tail
        // the run prints.
        env.push((
            "RUST_LOG".to_owned(),
            "info,healthmon::alert=warn".to_owned(),
        ));
    }
    if let Some(t) = o.storm_threshold {
        env.push((
            "HEALTHMON__ALERTS__STORM_THRESHOLD".to_owned(),
            t.to_string(),
        ));
    }
    if o.prefill_days > 0 {
        // One maintenance pass at each start (the interval outlasts the
        // run): the restart after the pre-fill starts the deletion.
        env.push((
            "HEALTHMON__LOGS__RETENTION_DAYS".to_owned(),
            o.retention_days.to_string(),
        ));
        env.push((
            "HEALTHMON__LOGS__MAINTENANCE_INTERVAL_S".to_owned(),
            "86400".to_owned(),
        ));
    }
    let store = if o.mode == "distributed" {
        let store = Store::create_pg(o.pg.as_deref().unwrap_or_default()).await?;
        let Store::Pg { url, .. } = &store else {
            unreachable!()
        };
        env.push(("HEALTHMON__DATABASE__URL".to_owned(), url.clone()));
        env.push((
            "HEALTHMON__QUEUE__URL".to_owned(),
            o.amqp.clone().unwrap_or_default(),
        ));
        env.push(("HEALTHMON__QUEUE__PREFIX".to_owned(), prefix.clone()));
        Some(store)
    } else {
        None
    };
    let spawned = spawn_fleet(&o, &env, None);
    let (store, mut procs) = match (spawned, store) {
        (Ok(p), Some(store)) => (store, p),
        (Ok(p), None) => (Store::Sqlite(p[0].dir.path().join("hm.db")), p),
        (Err(e), store) => {
            if let Some(store) = store {
                store.drop_pg().await;
            }
            return Err(e);
        }
    };
    let mut result = prepare_and_measure(
        &o,
        &ports,
        &mut traffic,
        &store,
        &env,
        &mut procs,
        alerting.as_ref(),
    )
    .await;
    if let Some(pinger) = traffic.pinger.take() {
        pinger.finish().await;
    }
    // The store's size, read with healthmon stopped (its files still there).
    for p in &mut procs {
        let _ = p.child.kill();
        let _ = p.child.wait();
    }
    if let (Ok(summary), Some(raw)) = (&mut result, raw) {
        raw::compare(summary, raw);
    }
    if let Ok(summary) = &mut result {
        add_store_size(&o, &store, summary).await;
        if let (Some(tls), Some(m)) = (&tls, summary.as_object_mut()) {
            m.insert("tls_handshakes".into(), tls.handshakes.figures());
        }
    }
    drop(procs);
    if o.mode == "distributed" {
        store.drop_pg().await;
        let queues = regions::queues(&o);
        drop_bus(o.amqp.as_deref().unwrap_or_default(), &prefix, &queues).await;
    }
    match bb {
        Some(bb) => result.map(|hm| blackbox::side_by_side(hm, bb)),
        None => result,
    }
}

/// Starts healthmon: one process (embedded, its store in `dir` or a fresh
/// one), or 1 `api,scheduler` + 2 `worker` (distributed).
fn spawn_fleet(
    o: &Opts,
    env: &[(String, String)],
    dir: Option<Arc<tempfile::TempDir>>,
) -> Result<Vec<Proc>, String> {
    if o.mode == "distributed" && o.regions > 0 {
        regions::spawn_fleet(env, o.regions)
    } else if o.mode == "distributed" {
        let worker = ["--role", "worker", "--health-bind", "127.0.0.1:0"];
        Ok(vec![
            spawn_healthmon(env, &["--role", "api,scheduler"], None)?,
            spawn_healthmon(env, &worker, None)?,
            spawn_healthmon(env, &worker, None)?,
        ])
    } else {
        Ok(vec![spawn_healthmon(env, &[], dir)?])
    }
}

/// A store pre-filled before the window (`--prefill-days`).
struct Prefilled {
    filled: prefill::Filled,
    /// When healthmon was started again on it (its deletion pass began).
    restarted_at: i64,
}

/// Registers the services, pre-fills the store if asked (restarting
/// healthmon on it, into `procs`), then measures the window.
async fn prepare_and_measure(
    o: &Opts,
    ports: &[u16],
    traffic: &mut Traffic,
    store: &Store,
    env: &[(String, String)],
    procs: &mut Vec<Proc>,
    alerting: Option<&flap::Run>,
) -> Result<serde_json::Value, String> {
    let api = procs[0].addr.clone();
    if let Some(a) = alerting {
        let id = flap::create_channel(&api, &a.receiver).await?;
        println!(
            "webhook channel {id} (all_services) -> 127.0.0.1:{}",
            a.receiver.port
        );
    }
    let pids: Vec<u32> = procs.iter().map(|p| p.child.id()).collect();
    println!(
        "healthmon ({}) pids {pids:?}, API at {api}; registering {} services at {} s",
        o.mode, o.services, o.interval
    );
    let t = Instant::now();
    let push_urls = register(&api, ports, o).await?;
    let reg_s = t.elapsed().as_secs_f64();
    println!(
        "registered {} services in {reg_s:.1} s ({:.0}/s)",
        o.services,
        o.services as f64 / reg_s
    );
    let mut prefilled = None;
    if o.prefill_days > 0 {
        for p in procs.iter_mut() {
            p.stop();
        }
        let plan = prefill::Plan {
            days: o.prefill_days,
            per_day: o.prefill_per_day,
            retention_days: o.retention_days,
        };
        println!(
            "healthmon stopped; pre-filling {} days x {} rows a day per service",
            plan.days, plan.per_day
        );
        let filled = prefill::fill(store, plan).await?;
        println!(
            "pre-filled {} rows in {:.1} s ({:.0} rows/s), {} older than {} days",
            filled.rows,
            filled.secs,
            filled.rows as f64 / filled.secs.max(0.001),
            filled.rows_due,
            o.retention_days
        );
        let dir = (o.mode != "distributed").then(|| Arc::clone(&procs[0].dir));
        procs.clear();
        let restarted_at = now_ms();
        *procs = spawn_fleet(o, env, dir)?;
        println!(
            "healthmon started again (pids {:?}); its maintenance pass deletes what is due",
            procs.iter().map(|p| p.child.id()).collect::<Vec<_>>()
        );
        prefilled = Some(Prefilled {
            filled,
            restarted_at,
        });
    }
    if o.kind == kinds::Kind::Push {
        let interval = Duration::from_secs(o.interval);
        let pinger = push::spawn_pinger(push_urls, interval, tokio::time::Instant::now())?;
        println!(
            "pinging {} push services, each every {} s ({} at a time at most)",
            o.services,
            o.interval,
            push::WORKERS
        );
        traffic.pinger = Some(pinger);
    }
    let mut summary = measure(o, traffic, store, procs, reg_s, prefilled, alerting).await?;
    if o.restart && o.mode == "embedded" {
        let r = large::restart(o, env, procs, &traffic.arrivals).await?;
        if let Some(m) = summary.as_object_mut() {
            m.insert("restart".into(), r);
        }
    }
    Ok(summary)
}

/// Adds `db_mb`, `logs_total` and `db_bytes_per_million_logs` to a run's
/// summary, and prints them (nulls and a warning if the store can't be read).
async fn add_store_size(o: &Opts, store: &Store, summary: &mut serde_json::Value) {
    const MB: f64 = 1024.0 * 1024.0;
    let (db_mb, logs, per_million) = match store.size().await {
        Ok(s) => {
            let per_million = (s.logs > 0).then(|| s.logs_bytes as f64 * 1e6 / s.logs as f64);
            let of = match store {
                Store::Sqlite(_) => "the SQLite file with its WAL, checkpointed".to_owned(),
                Store::Pg { .. } => format!(
                    "health_logs with its indexes, {:.1} MB",
                    s.logs_bytes as f64 / MB
                ),
            };
            println!(
                "[{}] store {:.1} MB, {} health_logs rows in all: {} MB per million logs ({of})",
                o.mode,
                s.db_bytes as f64 / MB,
                s.logs,
                per_million.map_or("-".to_owned(), |b| format!("{:.1}", b / MB)),
            );
            let db_mb = (s.db_bytes as f64 / MB * 10.0).round() / 10.0;
            (
                json!(db_mb),
                json!(s.logs),
                json!(per_million.map(|b| b.round() as i64)),
            )
        }
        Err(e) => {
            eprintln!("pipeline bench: the store's size: {e}");
            Default::default()
        }
    };
    if let Some(m) = summary.as_object_mut() {
        m.insert("db_mb".into(), db_mb);
        m.insert("logs_total".into(), logs);
        m.insert("db_bytes_per_million_logs".into(), per_million);
    }
}

/// The window's requests at the targets: (scheduled_at, lag ms) of each
/// request whose check was due in [from, to).
fn window_arrivals(arrivals: &Arrivals, from: i64, to: i64) -> Vec<(i64, i64)> {
    arrivals
        .lock()
        .map(|a| {
            a.iter()
                .filter(|(s, _)| (from..to).contains(s))
                .copied()
                .collect()
        })
        .unwrap_or_default()
}

fn sorted_lags(arrivals: &[(i64, i64)], keep: impl Fn(i64) -> bool) -> Vec<i64> {
    let mut lags: Vec<i64> = arrivals
        .iter()
        .filter(|(s, _)| keep(*s))
        .map(|(_, l)| *l)
        .collect();
    lags.sort_unstable();
    lags
}

/// What `requests_at_targets` counts, in words.
fn seen_what(kind: kinds::Kind) -> &'static str {
    match kind {
        kinds::Kind::Http | kinds::Kind::Https => "requests reached the targets",
        kinds::Kind::Tcp => "connections were accepted in the window",
        kinds::Kind::Push => "pings were answered 2xx in the window",
    }
}

/// The window's [`SLOWEST_SECONDS`] seconds (by due time) with the worst
/// p99 lag, as `[second from the window's start, checks due in it, p99 ms,
/// max ms]`, worst first: whether the tail comes from a few stalls (and
/// how far apart: a periodic task) or is spread over the window.
fn slow_seconds(requests: &[(i64, i64)], from: i64) -> Vec<[i64; 4]> {
    let mut by_second: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
    for (scheduled, lag) in requests {
        by_second
            .entry((scheduled - from).div_euclid(1000))
            .or_default()
            .push(*lag);
    }
    let mut seconds: Vec<[i64; 4]> = by_second
        .into_iter()
        .map(|(second, mut lags)| {
            lags.sort_unstable();
            let max = lags.last().copied().unwrap_or(0);
            [second, lags.len() as i64, percentile(&lags, 0.99), max]
        })
        .collect();
    seconds.sort_by_key(|s| std::cmp::Reverse((s[2], s[3])));
    seconds.truncate(SLOWEST_SECONDS);
    seconds
}

/// How many seconds [`slow_seconds`] reports.
const SLOWEST_SECONDS: usize = 10;

/// How long after the window the run waits at most for its checks to be
/// stored and its requests to arrive, beyond the check timeout.
const SETTLE_LIMIT: Duration = Duration::from_secs(60);

/// Most a run's UP checks and the requests its targets saw may differ by.
const SANITY_TOLERANCE: f64 = 0.001;

async fn measure(
    o: &Opts,
    traffic: &Traffic,
    store: &Store,
    procs: &[Proc],
    reg_s: f64,
    prefilled: Option<Prefilled>,
    alerting: Option<&flap::Run>,
) -> Result<serde_json::Value, String> {
    let api = procs[0].addr.clone();
    let pids: Vec<u32> = procs.iter().map(|p| p.child.id()).collect();
    let distributed = o.mode == "distributed";
    let ws_clients = o.ws_clients;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let changes = flap::Changes::default();
    let mut clients = Vec::new();
    let connecting = Instant::now();
    for i in 0..ws_clients + o.ws_full {
        let url = match &o.ws_filter {
            Some(q) if i < ws_clients => format!("ws://{api}/ws?{q}"),
            _ => format!("ws://{api}/ws"),
        };
        clients.push(ws_client(url, stop_rx.clone(), Arc::clone(&changes)).await?);
        if (i + 1) % 1000 == 0 {
            println!("{} WebSocket clients connected", i + 1);
        }
    }
    if ws_clients + o.ws_full > 1000 {
        println!(
            "open files limit: {} (soft limit raised to the hard one at start)",
            wsmix::raise_nofile()
        );
    }
    if ws_clients + o.ws_full > 0 {
        println!(
            "{} WebSocket clients connected{} in {:.1} s",
            ws_clients + o.ws_full,
            o.ws_filter
                .as_ref()
                .map_or(String::new(), |q| format!(" ({ws_clients} on ?{q})")),
            connecting.elapsed().as_secs_f64()
        );
    }

    tokio::time::sleep(Duration::from_secs(o.warmup)).await;
    let from = now_ms();
    let flipper = alerting.map(|a| {
        flap::spawn_flipper(
            Arc::clone(&a.targets),
            o.flap_share,
            Duration::from_secs(o.flap_every),
            tokio::time::Instant::now() + Duration::from_secs(o.duration),
        )
    });
    let cpu0: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
    let servers0 = distributed.then(servers::sample);
    tokio::time::sleep(Duration::from_secs(o.duration)).await;
    let to = now_ms();
    let cpu1: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
    // Before the fleet stops, so the backends serving it are still there
    // (their reaped time is counted too: see servers.rs).
    let servers1 = distributed.then(servers::sample);
    let rss: f64 = pids.iter().map(|p| rss_mb(*p)).sum();
    // The machine's load at the window's end (others may share it).
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();

    // Checks due in the window finish within their timeout; then the
    // recorder flushes its last batch and the events go out. Rather than
    // a fixed wait (a late check would fall out of the lag tail unseen),
    // wait until neither the stored checks nor the requests at the targets
    // grow for a second, within a limit.
    let timeout_s = o.interval.min(5);
    let nominal_settle_ms = (timeout_s as i64 + 2) * 1000;
    tokio::time::sleep(Duration::from_secs(timeout_s + 1)).await;
    let give_up = Instant::now() + SETTLE_LIMIT;
    let (mut last, mut steady, mut settled) = (None, 0, false);
    let mut stored = Stored::default();
    while Instant::now() < give_up {
        // A regional run's checks are its votes; verdicts are in `regions`.
        stored = if o.regions > 0 {
            regions::stored_votes(store, from, to).await?
        } else {
            store.stored(from, to, o.kind).await?
        };
        let now = (stored, traffic.seen(o.kind, from, to));
        if last == Some(now) {
            steady += 1;
            if steady >= 2 {
                settled = true;
                break;
            }
        } else {
            (last, steady) = (Some(now), 0);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let settled_at = now_ms();
    let settle_s = (settled_at - to) as f64 / 1000.0;
    if !settled {
        println!(
            "[{}] the window's checks were still being stored or requested {settle_s:.0} s after it",
            o.mode
        );
    }
    let alerting = match (alerting, flipper) {
        (Some(a), Some(flipper)) => {
            let flips = flipper.await.map_err(|e| e.to_string())?;
            Some(drain_alerts(o, store, a, &changes, flips, from, settled_at).await?)
        }
        _ => None,
    };
    let _ = stop_tx.send(true);
    let dashboard = large::dashboard(&api).await;
    let rollups = large::rollups(store).await;

    let checks = stored.total();
    let checked_in_window = store.count("checked_at", from, to).await?;
    let secs = (to - from) as f64 / 1000.0;
    let interval_ms = o.interval as i64 * 1000;
    let pings = traffic.pinger.as_ref().map(|p| &p.pings);
    let due = match pings {
        Some(p) => p.due_in(from, to, o.services, interval_ms),
        // A regional round is a check in each region.
        None => store.due(from, to, o.services, interval_ms).await? * o.regions.max(1) as f64,
    };
    let cpu = cpu1 - cpu0;

    // (scheduled_at, lag) per check of the window, and the UP checks that
    // the targets' count is compared with. HTTP(S): the requests as the
    // farm saw them (due time from the schedule header) and the UP checks
    // due in the window. tcp carries no header: the lag is the check's
    // start (checked_at - latency_ms) - scheduled_at from the store, and
    // the connections accepted in the window are set against the UP checks
    // that started in it. push: pings answered 2xx in the window against
    // the logs written in it (lag: none, the pinger is the schedule).
    let requests_at_targets = traffic.seen(o.kind, from, to);
    let (requests, up_compared) = match o.kind {
        kinds::Kind::Http | kinds::Kind::Https => {
            (window_arrivals(&traffic.arrivals, from, to), stored.up)
        }
        kinds::Kind::Tcp => (
            store.start_lags(from, to).await?,
            store.up_started(from, to).await?,
        ),
        kinds::Kind::Push => (Vec::new(), stored.up),
    };
    // Arrivals the old fixed settle time would have missed.
    let late_arrivals = requests
        .iter()
        .filter(|(s, lag)| s + lag > to + nominal_settle_ms)
        .count();
    let lags = sorted_lags(&requests, |_| true);
    let slow = slow_seconds(&requests, from);

    // Checks due in the window and never stored; the causes healthmon
    // reported (INFO lines, by when they were logged: from the window's
    // start until its last job could have gone stale and been reported),
    // and the rest as unknown (e.g. jobs that expired on RabbitMQ).
    let missing = (due.round() as i64 - checks).max(0);
    let mut by_cause = serde_json::Map::new();
    for cause in [
        "stale_at_worker",
        "scheduler_late",
        "bus_unavailable",
        "shutdown",
    ] {
        by_cause.insert(cause.into(), json!(0));
    }
    let mut attributed = 0i64;
    let until = to + (o.interval as i64 + 2) * 1000;
    for p in procs {
        for (at, line) in p.noted(DROPPED_LINE) {
            if !(from..=until).contains(&at) {
                continue;
            }
            let (Some(cause), Some(n)) = (
                log_field(&line, "cause"),
                log_field(&line, "dropped").and_then(|n| n.parse::<i64>().ok()),
            ) else {
                continue;
            };
            attributed += n;
            let entry = by_cause.entry(cause.to_owned()).or_insert(json!(0));
            *entry = json!(entry.as_i64().unwrap_or(0) + n);
        }
    }
    by_cause.insert("unknown".into(), json!((missing - attributed).max(0)));
    by_cause.insert("due_not_stored".into(), json!(missing));

    let mut ws_lat = Vec::new();
    let mut ws_complete = true;
    let mut ws_min = i64::MAX;
    let mut recs = Vec::new();
    for c in clients {
        recs.push(c.await.map_err(|e| e.to_string())?);
    }
    // `--ws-filter`: the first `--ws-clients` asked for less; judged apart.
    let filtered: Vec<WsRecord> = if o.ws_filter.is_some() {
        recs.drain(..ws_clients).collect()
    } else {
        Vec::new()
    };
    let ws_filtered = match &o.ws_filter {
        Some(q) => {
            let logged = store.status_changes(from).await?;
            Some(wsmix::figures(q, &filtered, &logged, from, to))
        }
        None => None,
    };
    let ws_feed = recs.len();
    for rec in recs {
        let got: Vec<i64> = rec
            .events
            .iter()
            .filter(|(at, _)| (from..to).contains(at))
            .map(|(_, l)| *l)
            .collect();
        ws_min = ws_min.min(got.len() as i64);
        if rec.closed_early {
            println!(
                "[{}] a WebSocket client ended early, after {} messages: {}",
                o.mode, rec.messages, rec.closed_why
            );
        }
        ws_complete &= !rec.closed_early && got.len() as i64 >= checked_in_window;
        ws_lat.extend(got);
    }
    ws_lat.sort_unstable();
    let ws_every = ws_feed == 0 || ws_complete;

    // What the processes complained about, for a run that fell behind.
    for p in procs {
        let lines: Vec<String> = p
            .tail
            .lock()
            .map(|t| {
                t.iter()
                    .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for l in lines.iter().skip(lines.len().saturating_sub(3)) {
            println!("[{}] pid {} said: {l}", o.mode, p.child.id());
        }
    }
    let checks_per_s = checks as f64 / secs;
    let per_1k = cpu / (checks.max(1) as f64 / 1000.0);
    println!(
        "[{}] window {secs:.1} s: {checks} checks stored ({checks_per_s:.0}/s, {:.1}% of the {due:.0} due): \
         {} UP, {} DOWN{}; {requests_at_targets} {}; {missing} due but not stored \
         ({attributed} dropped as reported by healthmon)",
        o.mode,
        100.0 * checks as f64 / due,
        stored.up,
        stored.down,
        if stored.other > 0 {
            format!(", {} other", stored.other)
        } else {
            String::new()
        },
        seen_what(o.kind),
    );
    if o.kind != kinds::Kind::Push {
        println!(
            "[{}] schedule lag {}: p50 {} ms, p99 {} ms, max {} ms \
             ({} checks; settled {settle_s:.1} s after the window, {late_arrivals} arrived after the \
             former fixed {} s)",
            o.mode,
            if o.kind.is_http() {
                "at the target (arrival - scheduled_at)"
            } else {
                "(the check's start, checked_at - latency_ms, - scheduled_at)"
            },
            percentile(&lags, 0.50),
            percentile(&lags, 0.99),
            lags.last().copied().unwrap_or(0),
            lags.len(),
            nominal_settle_ms / 1000,
        );
    }
    println!(
        "[{}] healthmon cpu {cpu:.2} s = {per_1k:.3} CPU-s per 1,000 checks; rss {rss:.1} MB ({} process{})",
        o.mode,
        pids.len(),
        if pids.len() == 1 { "" } else { "es" }
    );
    let round = |x: f64, d: i32| (x * 10f64.powi(d)).round() / 10f64.powi(d);
    let mut system = serde_json::Map::new();
    if let (Some(s0), Some(s1)) = (servers0, servers1) {
        let (pg, mq) = (s1.postgres - s0.postgres, s1.rabbitmq - s0.rabbitmq);
        let all = cpu + pg + mq;
        let all_per_1k = all / (checks.max(1) as f64 / 1000.0);
        println!(
            "[{}] servers over the window: PostgreSQL {pg:.2} CPU-s ({} processes), RabbitMQ {mq:.2} \
             CPU-s ({} processes); healthmon + PostgreSQL + RabbitMQ {all:.2} CPU-s = {all_per_1k:.3} \
             CPU-s per 1,000 checks",
            o.mode, s1.postgres_procs, s1.rabbitmq_procs
        );
        system.insert("postgres_cpu_s".into(), json!(round(pg, 2)));
        system.insert("rabbitmq_cpu_s".into(), json!(round(mq, 2)));
        system.insert("system_cpu_s".into(), json!(round(all, 2)));
        system.insert(
            "system_cpu_s_per_1k_checks".into(),
            json!(round(all_per_1k, 4)),
        );
    }
    if ws_feed > 0 {
        println!(
            "[{}] websocket: {} clients on the full feed, delivery p50 {} ms, p99 {} ms, max {} ms; fewest events per client {} of {} checked in the window; every client got every event: {ws_every}",
            o.mode,
            ws_feed,
            percentile(&ws_lat, 0.50),
            percentile(&ws_lat, 0.99),
            ws_lat.last().copied().unwrap_or(0),
            ws_min,
            checked_in_window
        );
    }
    // The run's own sanity check: every request a target answered (200)
    // should be a stored UP check, and no UP check without a request.
    let gap = (requests_at_targets - up_compared).abs();
    // At least one check of slack: in a short run (the smoke run has 150
    // checks) a single check that reached its target and then ran out of
    // its 1 s timeout on a loaded machine is not a counting error. tcp and
    // push match by clock, not by due time, so a check at either edge of
    // the window may fall on the other side of it on one count.
    let slack = if o.kind.is_http() { 1.0 } else { 3.0 };
    let allowed = (SANITY_TOLERANCE * requests_at_targets.max(up_compared) as f64).max(slack);
    let sanity = if requests_at_targets == 0 {
        Some("no request reached the targets in the window".to_owned())
    } else if gap as f64 > allowed {
        Some(format!(
            "{requests_at_targets} {} but {up_compared} UP checks were stored \
             (differ by {gap}, more than {:.1} %)",
            seen_what(o.kind),
            SANITY_TOLERANCE * 100.0
        ))
    } else {
        None
    };
    let retention = match &prefilled {
        Some(p) => Some(retention_figures(o, store, procs, p, &requests, from, to).await?),
        None => None,
    };
    let regional = if o.regions > 0 {
        let system_cpu = system
            .get("system_cpu_s")
            .and_then(serde_json::Value::as_f64);
        Some(regions::figures(o, store, (from, to), cpu, system_cpu).await?)
    } else {
        None
    };
    let mut summary = json!({
        "mode": o.mode,
        "kind": o.kind.as_str(),
        "assert": o.assert,
        "services": o.services,
        "interval_s": o.interval,
        "duration_s": round(secs, 3),
        "warmup_s": o.warmup,
        "targets": o.targets,
        "target_latency_ms": o.target_latency_ms,
        "processes": pids.len(),
        "checks": checks,
        "checks_up": stored.up,
        "checks_down": stored.down,
        "checks_other": stored.other,
        "requests_at_targets": requests_at_targets,
        "checks_due": due.round() as i64,
        "checks_dropped": by_cause,
        "checks_per_s": round(checks_per_s, 1),
        "lag_p50_ms": percentile(&lags, 0.50),
        "lag_p99_ms": percentile(&lags, 0.99),
        "lag_max_ms": lags.last().copied().unwrap_or(0),
        "lag_slowest_seconds": slow,
        "settle_s": round(settle_s, 1),
        "settled": settled,
        "late_arrivals": late_arrivals,
        "cpu_s": round(cpu, 2),
        "cpu_s_per_1k_checks": round(per_1k, 4),
        "rss_mb": round(rss, 1),
        "ws_clients": ws_clients + o.ws_full,
        "ws_p99_ms": percentile(&ws_lat, 0.99),
        "ws_every_event": ws_every,
        "registration_s": round(reg_s, 1),
        "loadavg": loadavg,
        "sanity_ok": sanity.is_none(),
        "sanity": sanity,
    });
    if let Some(m) = summary.as_object_mut() {
        m.extend(system);
        if let Some(r) = regional {
            m.insert("regions".into(), r);
        }
        if let Some(r) = retention {
            m.insert("retention".into(), r);
        }
        if let Some(f) = ws_filtered {
            m.insert("ws_filtered".into(), f);
        }
        m.insert("dashboard".into(), dashboard);
        m.insert("rollups".into(), rollups);
        if let Some(a) = alerting {
            m.insert("alerting".into(), a);
        }
        if o.kind == kinds::Kind::Tcp {
            m.insert("up_started_in_window".into(), json!(up_compared));
        }
        if let Some(p) = pings {
            m.insert("push".into(), p.figures(from, to, o.services, interval_ms));
        }
    }
    Ok(summary)
}

/// `--flap-every`: waits until every status change seen has reached the
/// receiver and the outbox has nothing pending (the flips' last changes
/// included: at least interval + timeout + 2 s after the last flip), at most
/// [`flap::DRAIN_LIMIT`] after the checks settled; then the `alerting`
/// object.
async fn drain_alerts(
    o: &Opts,
    store: &Store,
    a: &flap::Run,
    changes: &flap::Changes,
    flips: Vec<flap::Flip>,
    from: i64,
    settled_at: i64,
) -> Result<serde_json::Value, String> {
    let last_flip = flips.last().map_or(from, |f| f.at);
    let earliest = last_flip + (o.interval + o.interval.min(5) + 2) as i64 * 1000;
    let give_up = Instant::now() + flap::DRAIN_LIMIT;
    let mut drained = false;
    loop {
        let t = flap::tally(changes, &a.receiver);
        let pending: i64 = store
            .alerts_by_state()
            .await?
            .iter()
            .filter(|(s, _)| s == "pending")
            .map(|(_, n)| n)
            .sum();
        if now_ms() >= earliest && t.not_alerted == 0 && pending == 0 {
            drained = true;
            break;
        }
        if Instant::now() >= give_up {
            println!(
                "[alerting] gave up waiting: {} of {} changes seen not alerted, {pending} alerts pending, {} received",
                t.not_alerted, t.changes, t.distinct
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let outbox = store.alerts_by_state().await?;
    let logged = store.status_changes(from).await?;
    let window_to = from + o.duration as i64 * 1000;
    Ok(flap::figures(flap::Inputs {
        every_s: o.flap_every,
        interval_s: o.interval,
        share: o.flap_share,
        storm_threshold: o.storm_threshold,
        flips: &flips,
        changes,
        logged: &logged,
        receiver: &a.receiver,
        outbox: &outbox,
        refused: a.targets.refused_in(from, window_to),
        from,
        drain_s: (now_ms() - settled_at) as f64 / 1000.0,
        drained,
    }))
}

/// `--prefill-days`: how fast the maintenance pass deleted the pre-filled
/// rows, and the lag of checks due while it ran against those due after.
async fn retention_figures(
    o: &Opts,
    store: &Store,
    procs: &[Proc],
    p: &Prefilled,
    requests: &[(i64, i64)],
    from: i64,
    to: i64,
) -> Result<serde_json::Value, String> {
    let round = |x: f64, d: i32| (x * 10f64.powi(d)).round() / 10f64.powi(d);
    let left = store.count_logs("id < 0").await?;
    // Logs not yet counted into the hourly rollups (only rolled-up logs may
    // be deleted, so a backlog here is uptime data lagging, not lost).
    let backlog = load_rows!(
        store,
        "SELECT COALESCE((SELECT MAX(id) FROM health_logs), 0) \
         - (SELECT last_log_id FROM rollup_progress) AS n",
        Count
    )?
    .first()
    .map_or(0, |c| c.n);
    // Maintenance deletes in rounds (a few seconds each, every rollup
    // tick), so the deletion is what the store lost, and it ended at the
    // last round that deleted, if no due row is left.
    let deleted = p.filled.rows - left;
    let finished = left <= p.filled.rows - p.filled.rows_due;
    let last_round = procs
        .iter()
        .flat_map(|proc| proc.noted(MAINTENANCE_LINE))
        .filter_map(|(at, line)| {
            let n: i64 = log_field(&line, "deleted_logs")?.parse().ok()?;
            (n > 0).then_some(at)
        })
        .max();
    let pass_end = if finished { last_round } else { None };
    let deletion_ms = pass_end.unwrap_or_else(now_ms) - p.restarted_at;
    let rate = deleted as f64 / (deletion_ms.max(1) as f64 / 1000.0);
    let end = pass_end.unwrap_or(i64::MAX);
    let during = sorted_lags(requests, |s| s < end);
    let after = sorted_lags(requests, |s| s >= end);
    let p99 = |l: &Vec<i64>| (!l.is_empty()).then(|| percentile(l, 0.99));
    println!(
        "[{}] retention: {} synthetic rows ({} older than {} days); maintenance deleted {deleted} \
         in {:.1} s = {rate:.0} rows/s{}; {left} synthetic rows left; {backlog} logs not yet rolled up",
        o.mode,
        p.filled.rows,
        p.filled.rows_due,
        o.retention_days,
        deletion_ms as f64 / 1000.0,
        if pass_end.is_some() {
            ""
        } else {
            " (not finished when the run ended)"
        },
    );
    println!(
        "[{}] lag p99 of the window's checks due while deleting {} ms ({} requests), after {} ms ({} requests)",
        o.mode,
        p99(&during).map_or("-".to_owned(), |v| v.to_string()),
        during.len(),
        p99(&after).map_or("-".to_owned(), |v| v.to_string()),
        after.len(),
    );
    Ok(json!({
        "prefill_days": o.prefill_days,
        "prefill_per_day": o.prefill_per_day,
        "retention_days": o.retention_days,
        "prefill_rows": p.filled.rows,
        "prefill_rows_due": p.filled.rows_due,
        "prefill_s": round(p.filled.secs, 1),
        "deleted": deleted,
        "deletion_s": round(deletion_ms as f64 / 1000.0, 1),
        "deletion_rows_per_s": rate.round(),
        "deletion_finished": pass_end.is_some(),
        "synthetic_rows_left": left,
        "rollup_backlog_logs": backlog,
        "deletion_ended_in_window": pass_end.is_some_and(|e| (from..to).contains(&e)),
        "lag_p99_during_deletion_ms": p99(&during),
        "requests_during_deletion": during.len(),
        "lag_p99_after_deletion_ms": p99(&after),
        "requests_after_deletion": after.len(),
    }))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--raw-child") {
        std::process::exit(raw::child(&args[at + 1..]));
    }
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this
    // binary without it, and a test run should not start a benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        // What a test run can check: the clients' fast time parser agrees
        // with chrono, so the latencies it feeds are right.
        if let Err(e) = check_time_parser()
            .and_then(|()| flap::self_check())
            .and_then(|()| regions::self_check())
        {
            eprintln!("pipeline bench: {e}");
            std::process::exit(1);
        }
        println!("pipeline bench: run it with `cargo bench --bench pipeline -- [options]`");
        return;
    }
    let o = match parse_opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("pipeline bench: {e}");
            std::process::exit(2);
        }
    };
    // 10,000 WebSocket clients need more than the usual 1,024 descriptors,
    // here and in healthmon (which inherits the limit).
    wsmix::raise_nofile();
    // reqwest is built with `rustls-no-provider`: the API client needs one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if o.from.is_some() || !o.sweep.is_empty() {
        std::process::exit(sweep(o));
    }
    if o.smoke && !o.kind_given && o.regions == 0 {
        std::process::exit(smoke_every_kind(o));
    }
    match run_bounded(o) {
        Ok(summary) => {
            println!("{summary}");
            if let Some(failed) = failed_sanity(&summary) {
                eprintln!("pipeline bench: {failed}");
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("pipeline bench: {e}");
            std::process::exit(1);
        }
    }
}

/// Why a run's figures cannot be trusted, if they cannot: nothing stored,
/// or its sanity check (stored UP checks against the requests the targets
/// saw) failed.
fn failed_sanity(summary: &serde_json::Value) -> Option<String> {
    if summary["checks"].as_i64().unwrap_or(0) == 0 {
        return Some("no checks were stored in the window".to_owned());
    }
    if summary["sanity_ok"].as_bool() == Some(true) {
        return None;
    }
    Some(format!(
        "sanity check failed: {}",
        summary["sanity"].as_str().unwrap_or("no sanity verdict")
    ))
}

/// A plain `--smoke`: one smoke run per kind of [`kinds::SMOKE`] (https with
/// `--assert`, so the assertions run too), each run's JSON line as it ends,
/// then the http run's object plus `smoke`, the array of every run. Returns
/// the exit status: 1 if any run failed.
fn smoke_every_kind(o: Opts) -> i32 {
    let (mut runs, mut failed) = (Vec::new(), Vec::new());
    for kind in kinds::SMOKE {
        println!("smoke: --kind {}", kind.as_str());
        let run = Opts {
            kind,
            assert: o.assert || kind == kinds::Kind::Https,
            ..o.clone()
        };
        match run_bounded(run) {
            Ok(summary) => {
                println!("{summary}");
                if let Some(why) = failed_sanity(&summary) {
                    eprintln!("pipeline bench: --kind {}: {why}", kind.as_str());
                    failed.push(kind.as_str());
                }
                runs.push(summary);
            }
            Err(e) => {
                eprintln!("pipeline bench: --kind {}: {e}", kind.as_str());
                failed.push(kind.as_str());
            }
        }
    }
    let Some(first) = runs.first() else {
        return 1;
    };
    let mut summary = first.clone();
    if let Some(m) = summary.as_object_mut() {
        m.insert("smoke".into(), json!(runs));
        if !failed.is_empty() {
            m.insert("smoke_failed".into(), json!(failed));
        }
    }
    println!("{summary}");
    i32::from(!failed.is_empty())
}

/// One run on a runtime of its own: dropping it at the end stops the run's
/// target farm and anything else the run left running.
fn run_bounded(o: Opts) -> Result<serde_json::Value, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    // Everything is bounded; this is the backstop.
    let extra = u64::from(o.compare) * (o.warmup + o.duration + 60);
    let limit = Duration::from_secs(o.warmup + o.duration + 900 + o.services as u64 / 50 + extra);
    let outcome = rt.block_on(async { tokio::time::timeout(limit, run(o)).await });
    rt.shutdown_timeout(Duration::from_secs(5));
    outcome.unwrap_or_else(|_| Err(format!("gave up after {limit:?}")))
}

/// `--sweep`: one run per service count, each run's JSON line as it ends,
/// then the plot and the summary line. `--from FILE`: only the plot, from the
/// JSON lines in FILE. Returns the exit status.
fn sweep(o: Opts) -> i32 {
    let path = o
        .plot
        .clone()
        .unwrap_or_else(|| "bench/pipeline.svg".to_owned());
    let draw = |runs: &[serde_json::Value]| {
        plot::draw(runs, std::path::Path::new(&path), &plot::caption(runs))
            .map(|()| println!("plot: wrote {path} ({} runs)", runs.len()))
            .map_err(|e| eprintln!("pipeline bench: {e}"))
    };
    if let Some(from) = &o.from {
        let runs = match std::fs::read_to_string(from) {
            Ok(text) => plot::runs_from_lines(&text),
            Err(e) => {
                eprintln!("pipeline bench: {from}: {e}");
                return 1;
            }
        };
        return i32::from(draw(&runs).is_err());
    }
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let commit = match git(&["rev-parse", "--short", "HEAD"]) {
        Some(c)
            if git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty()) =>
        {
            format!("{c}+changes")
        }
        Some(c) => c,
        None => "unknown".to_owned(),
    };
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let (mut runs, mut failed) = (Vec::new(), Vec::new());
    for (i, &n) in o.sweep.iter().enumerate() {
        println!("sweep: run {} of {}, {n} services", i + 1, o.sweep.len());
        let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
        match run_bounded(Opts {
            services: n,
            ..o.clone()
        }) {
            Ok(mut summary) => {
                if let Some(m) = summary.as_object_mut() {
                    m.insert("date".into(), json!(date));
                    m.insert("commit".into(), json!(commit));
                    m.insert("nproc".into(), json!(nproc));
                }
                println!("{summary}");
                if let Some(why) = failed_sanity(&summary) {
                    eprintln!("pipeline bench: {n} services: {why}");
                    failed.push(n);
                }
                runs.push(summary);
            }
            Err(e) => {
                eprintln!("pipeline bench: {n} services: {e}");
                failed.push(n);
            }
        }
    }
    let Some(last) = runs.last() else {
        eprintln!("pipeline bench: no run of the sweep finished");
        return 1;
    };
    let drawn = draw(&runs);
    // The last line: the last run's keys (what CI's check reads), the runs.
    let mut summary = last.clone();
    if let Some(m) = summary.as_object_mut() {
        m.insert("sweep".into(), json!(runs));
        m.insert("plot".into(), json!(path));
        if !failed.is_empty() {
            m.insert("sweep_failed".into(), json!(failed));
        }
    }
    println!("{summary}");
    i32::from(drawn.is_err() || !failed.is_empty())
}
