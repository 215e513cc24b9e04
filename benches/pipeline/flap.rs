//! `--flap-every S` (issue 13, "Benchmark"): alerting under load.
//!
//! Every S seconds of the measured window (the first flip at its start) a
//! share of the targets (`--flap-share`, 0.10) flips: a target that answered
//! 200 answers 500 from then on, and one that answered 500 answers 200
//! again. Each target is one service (`/s/{i}`), so each flip is one status
//! change at that service's next check. One webhook channel with
//! `all_services: true` points at a receiver inside the benchmark on
//! 127.0.0.1 (keep-alive HTTP/1.1, answering 200 at once). With
//! `--ws-clients K` the benchmark's WebSocket clients also note when they
//! first saw each `status_change` event. (At 100,000 services and 5,000
//! checks/s a client that connects is closed "too slow: events were missed"
//! while it reads the snapshot, `ws.send_queue` being 4,096 events, so the
//! goal runs use none and time from `changed_at`.)
//!
//! After the window (flips stop at its end) the run waits until every
//! status change seen has reached the receiver and the outbox has nothing
//! pending, at least the interval + timeout + 2 s after the last flip and at
//! most [`DRAIN_LIMIT`], then reports (the `alerting` object):
//! - `flips`, and the targets' answers in the window: `requests_answered_down`
//!   (500s; the run's `requests_at_targets` and lag are the 200s, so the
//!   sanity check still compares them with the UP checks stored);
//! - `changes_expected` (flips not undone before a check could see them),
//!   `status_changes_logged`: the changes in the stored checks of the
//!   flipped services (each log whose status differs from the one before;
//!   every service is UP until the first flip), and `status_changes_seen`:
//!   distinct (service, `changed_at`) of the `status_change` events the
//!   WebSocket clients got;
//! - the outbox (`alerts` rows of `down`/`up` events, by state), what the
//!   receiver got: `requests` (HTTP deliveries), `storm_messages` and
//!   `alerts_in_storms` (a storm body is `{"event":"storm","alerts":[...]}`;
//!   its members count one by one), `distinct_alert_ids`, `repeats` (alert
//!   ids received more than once), `changes_not_alerted` (changes in the
//!   logs with no alert at the receiver naming that service and time;
//!   `changes_seen_not_alerted`: the same for the WebSocket's) and
//!   `outbox_not_received`;
//! - `alerts_per_s`: distinct alerts received over the time from the
//!   window's start to the last one received, and the busiest second;
//! - latency to the receiver's first copy of each alert, from the moment
//!   the WebSocket client saw the change (`seen_to_delivery_*`) and from the
//!   change's `changed_at` (the deciding check's end, `change_to_delivery_*`).
//!
//! `--storm-threshold N` sets `alerts.storm_threshold` (20 unless given): the
//! default groups nearly every change once more than 20 a minute reach the
//! one channel; 100000 (the most allowed) turns grouping off, so each alert
//! is its own delivery.

use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Longest the run waits after the window for the alerts to arrive.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(180);

/// Which targets fail now: one flag per service index, read by the farm.
/// Empty (nothing ever fails, no path parsed) when not flapping.
#[derive(Default)]
pub struct Targets {
    down: Vec<AtomicBool>,
    /// (scheduled_at, lag ms) of the requests answered 500.
    refused: Mutex<Vec<(i64, i64)>>,
}

impl Targets {
    /// `n` targets, all answering 200.
    pub fn new(n: usize) -> Self {
        Self {
            down: (0..n).map(|_| AtomicBool::new(false)).collect(),
            refused: Mutex::default(),
        }
    }

    /// Whether the request whose head is `head` (`GET /s/{i} HTTP/1.1...`)
    /// is for a target that is down now.
    pub fn fails(&self, head: &str) -> bool {
        if self.down.is_empty() {
            return false;
        }
        head.split_whitespace()
            .nth(1)
            .and_then(|p| p.strip_prefix("/s/"))
            .and_then(|i| i.parse::<usize>().ok())
            .and_then(|i| self.down.get(i))
            .is_some_and(|d| d.load(Ordering::Relaxed))
    }

    /// Notes a request answered 500 (scheduled_at, lag ms).
    pub fn refused(&self, scheduled: Option<i64>, lag: i64) {
        if let (Some(s), Ok(mut r)) = (scheduled, self.refused.lock()) {
            r.push((s, lag));
        }
    }

    /// Requests answered 500 whose check was due in [from, to).
    pub fn refused_in(&self, from: i64, to: i64) -> usize {
        self.refused
            .lock()
            .map(|r| r.iter().filter(|(s, _)| (from..to).contains(s)).count())
            .unwrap_or(0)
    }
}

/// One flip: when, which target, and whether it now fails.
#[derive(Debug, Clone, Copy)]
pub struct Flip {
    pub at: i64,
    pub index: usize,
    pub down: bool,
}

/// Flips `share` of the targets now and every `every` until `until`; the
/// flips made.
pub fn spawn_flipper(
    targets: Arc<Targets>,
    share: f64,
    every: Duration,
    until: tokio::time::Instant,
) -> tokio::task::JoinHandle<Vec<Flip>> {
    tokio::spawn(async move {
        let n = targets.down.len();
        let k = ((share * n as f64).round() as usize).clamp(1, n.max(1));
        let mut flips = Vec::new();
        let mut next = tokio::time::Instant::now();
        while next < until && n > 0 {
            tokio::time::sleep_until(next).await;
            let at = crate::now_ms();
            for index in fastrand::choose_multiple(0..n, k) {
                let down = !targets.down[index].fetch_xor(true, Ordering::Relaxed);
                flips.push(Flip { at, index, down });
            }
            next += every;
        }
        flips
    })
}

/// (service id, `changed_at` ms) → when a WebSocket client first saw it.
pub type Changes = Arc<Mutex<HashMap<(i64, i64), i64>>>;

/// Notes a `status_change` event seen at `seen` (the message's text), if
/// it is one a flip makes: a new service's first result (from `PENDING`)
/// alerts only when DOWN, and none is DOWN here.
pub fn note_change(changes: &Changes, text: &str, seen: i64) -> bool {
    const TAG: &str = "{\"type\":\"status_change\"";
    if !text.starts_with(TAG) {
        return false;
    }
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return false;
    };
    if v["old_status"] == "PENDING" {
        return false;
    }
    let (Some(service), Some(at)) = (
        v["service_id"].as_i64(),
        v["changed_at"].as_str().and_then(rfc3339_ms),
    ) else {
        return false;
    };
    if let Ok(mut c) = changes.lock() {
        let first = c.entry((service, at)).or_insert(seen);
        *first = (*first).min(seen);
    }
    true
}

/// A `status_change` event's (service id, `changed_at` ms).
pub fn change_key(text: &str) -> Option<(i64, i64)> {
    let v = serde_json::from_str::<Value>(text).ok()?;
    Some((
        v["service_id"].as_i64()?,
        v["changed_at"].as_str().and_then(rfc3339_ms)?,
    ))
}

fn rfc3339_ms(at: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(at)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// One alert named in a delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub id: i64,
    pub service_id: i64,
    /// The change's time (`at`, the deciding check's `checked_at`).
    pub at: i64,
}

/// One HTTP request at the receiver.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: i64,
    pub storm: bool,
    pub items: Vec<Item>,
}

/// The alerts a webhook body names: itself, or a storm's members.
pub fn items_of(body: &[u8]) -> (bool, Vec<Item>) {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return (false, Vec::new());
    };
    let item = |a: &Value| {
        Some(Item {
            id: a["id"].as_i64()?,
            service_id: a["service"]["id"].as_i64()?,
            at: a["at"].as_str().and_then(rfc3339_ms)?,
        })
    };
    if v["event"] == "storm" {
        let members = v["alerts"].as_array().map_or(&[][..], Vec::as_slice);
        (true, members.iter().filter_map(item).collect())
    } else {
        (false, item(&v).into_iter().collect())
    }
}

/// The webhook receiver on 127.0.0.1.
#[derive(Clone, Default)]
pub struct Receiver {
    pub port: u16,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    /// Starts it on a free port (its tasks end with the run's runtime).
    pub async fn start() -> Result<Receiver, String> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("bind the webhook receiver: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let r = Receiver {
            port,
            got: Arc::default(),
        };
        let got = Arc::clone(&r.got);
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let got = Arc::clone(&got);
                tokio::spawn(async move {
                    let _ = serve_hook(sock, got).await;
                });
            }
        });
        Ok(r)
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.got.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

/// Keep-alive HTTP/1.1 with `content-length` bodies (as reqwest sends), each
/// answered 200 once read.
async fn serve_hook(mut sock: TcpStream, got: Arc<Mutex<Vec<Received>>>) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = sock.read(&mut chunk).await?;
            if n == 0 || buf.len() > 64 * 1024 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if length > 64 * 1024 * 1024 {
            return Ok(());
        }
        while buf.len() < head_end + length {
            let n = sock.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let at = crate::now_ms();
        let (storm, items) = items_of(&buf[head_end..head_end + length]);
        if let Ok(mut g) = got.lock() {
            g.push(Received { at, storm, items });
        }
        buf.drain(..head_end + length);
        sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await?;
    }
}

/// Creates the webhook channel for every service; its id.
pub async fn create_channel(api: &str, receiver: &Receiver) -> Result<i64, String> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?;
    let r = http
        .post(format!("http://{api}/channels"))
        .json(&json!({
            "name": "bench webhook",
            "kind": "webhook",
            "config": {"url": format!("http://127.0.0.1:{}/hook", receiver.port)},
            "all_services": true,
        }))
        .send()
        .await
        .map_err(|e| format!("POST /channels: {e}"))?;
    let status = r.status();
    let body: Value = r.json().await.map_err(|e| e.to_string())?;
    match body["id"].as_i64() {
        Some(id) if status.as_u16() == 201 => Ok(id),
        _ => Err(format!("POST /channels: {status} {body}")),
    }
}

/// What the receiver got against the changes seen and the outbox.
pub struct Tally {
    pub changes: usize,
    pub not_alerted: usize,
    pub distinct: usize,
}

/// Matches what arrived with the changes seen.
pub fn tally(changes: &Changes, receiver: &Receiver) -> Tally {
    let got = receiver.received();
    let named: std::collections::HashSet<(i64, i64)> = got
        .iter()
        .flat_map(|r| r.items.iter().map(|i| (i.service_id, i.at)))
        .collect();
    let distinct: std::collections::HashSet<i64> = got
        .iter()
        .flat_map(|r| r.items.iter().map(|i| i.id))
        .collect();
    let changes = changes.lock().map(|c| c.clone()).unwrap_or_default();
    Tally {
        changes: changes.len(),
        not_alerted: changes.keys().filter(|k| !named.contains(k)).count(),
        distinct: distinct.len(),
    }
}

/// Everything the `alerting` object reports.
pub struct Inputs<'a> {
    pub every_s: u64,
    /// The services' interval, seconds.
    pub interval_s: u64,
    pub share: f64,
    pub storm_threshold: Option<u64>,
    pub flips: &'a [Flip],
    pub changes: &'a Changes,
    /// Status changes found in the logs: (service, `checked_at`).
    pub logged: &'a [(i64, i64)],
    pub receiver: &'a Receiver,
    /// Outbox rows of `down`/`up` alerts by state.
    pub outbox: &'a [(String, i64)],
    pub refused: usize,
    pub from: i64,
    pub drain_s: f64,
    pub drained: bool,
}

/// The `alerting` object, printed as it is built.
pub fn figures(i: Inputs<'_>) -> Value {
    use crate::measure::percentile;
    let got = i.receiver.received();
    let changes = i.changes.lock().map(|c| c.clone()).unwrap_or_default();
    let requests = got.len();
    let storms: Vec<&Received> = got.iter().filter(|r| r.storm).collect();
    let in_storms: usize = storms.iter().map(|r| r.items.len()).sum();
    // First arrival of each alert id, and how many copies came.
    let mut first: HashMap<i64, (i64, &Item)> = HashMap::new();
    let mut copies = 0usize;
    for r in &got {
        for item in &r.items {
            copies += 1;
            let e = first.entry(item.id).or_insert((r.at, item));
            if r.at < e.0 {
                *e = (r.at, item);
            }
        }
    }
    let distinct = first.len();
    let repeats = copies - distinct;
    let named: std::collections::HashSet<(i64, i64)> =
        first.values().map(|(_, i)| (i.service_id, i.at)).collect();
    let not_alerted = changes.keys().filter(|k| !named.contains(k)).count();
    let logged_not_alerted = i.logged.iter().filter(|k| !named.contains(k)).count();
    let mut seen_lat = Vec::new();
    let mut change_lat = Vec::new();
    for (at, item) in first.values() {
        change_lat.push(at - item.at);
        if let Some(seen) = changes.get(&(item.service_id, item.at)) {
            seen_lat.push(at - seen);
        }
    }
    seen_lat.sort_unstable();
    change_lat.sort_unstable();
    let outbox_total: i64 = i.outbox.iter().map(|(_, n)| n).sum();
    let state = |s: &str| {
        i.outbox
            .iter()
            .filter(|(k, _)| k == s)
            .map(|(_, n)| *n)
            .sum::<i64>()
    };
    let last = first.values().map(|(at, _)| *at).max().unwrap_or(i.from);
    let span_s = ((last - i.from) as f64 / 1000.0).max(0.001);
    let mut per_second: BTreeMap<i64, usize> = BTreeMap::new();
    for (at, _) in first.values() {
        *per_second.entry(at / 1000).or_default() += 1;
    }
    let busiest = per_second.values().copied().max().unwrap_or(0);
    let to_down = i.flips.iter().filter(|f| f.down).count();
    // A flip is a status change unless its target flips back before a
    // check can see it (only when flips come faster than the interval; a
    // failing target answers at once, so the timeout plays no part).
    let unseen_within = i.interval_s as i64 * 1000 + 1000;
    let mut next_flip: HashMap<usize, i64> = HashMap::new();
    let mut expected = 0usize;
    for f in i.flips.iter().rev() {
        if next_flip
            .get(&f.index)
            .is_none_or(|n| n - f.at > unseen_within)
        {
            expected += 1;
        }
        next_flip.insert(f.index, f.at);
    }
    let round = |x: f64| (x * 10.0).round() / 10.0;
    let stat = |l: &Vec<i64>, p: f64| (!l.is_empty()).then(|| percentile(l, p));
    let threshold = i
        .storm_threshold
        .map_or("20 (default)".to_owned(), |t| t.to_string());
    println!(
        "[alerting] {} flips ({to_down} to DOWN) every {} s ({} % of the targets), storm_threshold {threshold}; \
         {expected} changes expected, {} in the logs, {} seen on the WebSocket; outbox {outbox_total} down/up alerts ({} sent, {} pending, {} failed)",
        i.flips.len(),
        i.every_s,
        i.share * 100.0,
        i.logged.len(),
        changes.len(),
        state("sent"),
        state("pending"),
        state("failed"),
    );
    println!(
        "[alerting] receiver: {requests} requests, {} storm messages carrying {in_storms} alerts; \
         {distinct} distinct alert ids, {repeats} repeats; changes with no alert: {logged_not_alerted} of the logs', {not_alerted} of the WebSocket's; \
         {} outbox alerts not received; {:.1} alerts/s (busiest second {busiest}); drained {:.1} s after the checks settled{}",
        storms.len(),
        (outbox_total - distinct as i64).max(0),
        distinct as f64 / span_s,
        i.drain_s,
        if i.drained { "" } else { " (gave up)" },
    );
    println!(
        "[alerting] seen on the WebSocket to delivery: p50 {} ms, p99 {} ms, max {} ms ({} alerts); \
         changed_at to delivery: p50 {} ms, p99 {} ms, max {} ms",
        percentile(&seen_lat, 0.50),
        percentile(&seen_lat, 0.99),
        seen_lat.last().copied().unwrap_or(0),
        seen_lat.len(),
        percentile(&change_lat, 0.50),
        percentile(&change_lat, 0.99),
        change_lat.last().copied().unwrap_or(0),
    );
    json!({
        "flap_every_s": i.every_s,
        "flap_share": i.share,
        "storm_threshold": i.storm_threshold.unwrap_or(20),
        "flips": i.flips.len(),
        "flips_to_down": to_down,
        "changes_expected": expected,
        "requests_answered_down": i.refused,
        "status_changes_logged": i.logged.len(),
        "status_changes_seen": changes.len(),
        "outbox_alerts": outbox_total,
        "outbox_sent": state("sent"),
        "outbox_pending": state("pending"),
        "outbox_failed": state("failed"),
        "requests": requests,
        "storm_messages": storms.len(),
        "alerts_in_storms": in_storms,
        "distinct_alert_ids": distinct,
        "repeats": repeats,
        "changes_not_alerted": logged_not_alerted,
        "changes_seen_not_alerted": not_alerted,
        "outbox_not_received": (outbox_total - distinct as i64).max(0),
        "alerts_per_s": round(distinct as f64 / span_s),
        "alerts_busiest_second": busiest,
        "seen_to_delivery_p50_ms": stat(&seen_lat, 0.50),
        "seen_to_delivery_p99_ms": stat(&seen_lat, 0.99),
        "seen_to_delivery_max_ms": seen_lat.last().copied(),
        "change_to_delivery_p50_ms": stat(&change_lat, 0.50),
        "change_to_delivery_p99_ms": stat(&change_lat, 0.99),
        "change_to_delivery_max_ms": change_lat.last().copied(),
        "drain_s": round(i.drain_s),
        "drained": i.drained,
    })
}

/// What a test run checks: webhook bodies, single and grouped, are read
/// into the alerts they name, and a status change event is noted.
pub fn self_check() -> Result<(), String> {
    let single = br#"{"id":7,"event":"down","service":{"id":3,"name":"bench-1"},"old_status":"UP","new_status":"DOWN","at":"2026-12-07T03:02:11.204Z"}"#;
    let (storm, items) = items_of(single);
    let want = Item {
        id: 7,
        service_id: 3,
        at: 1_796_612_531_204,
    };
    if storm || items != [want.clone()] {
        return Err(format!("items_of(single) = {storm} {items:?}"));
    }
    let group = format!(
        r#"{{"id":"storm-7","event":"storm","count":2,"alerts":[{},{}]}}"#,
        String::from_utf8_lossy(single),
        String::from_utf8_lossy(single).replace("\"id\":7", "\"id\":8")
    );
    let (storm, items) = items_of(group.as_bytes());
    if !storm || items.len() != 2 || items[1].id != 8 {
        return Err(format!("items_of(storm) = {storm} {items:?}"));
    }
    let changes = Changes::default();
    let event = r#"{"type":"status_change","service_id":3,"name":"bench-1","old_status":"UP","new_status":"DOWN","latency":1,"changed_at":"2026-12-07T03:02:11.204Z"}"#;
    if !note_change(&changes, event, 5) || !note_change(&changes, event, 4) {
        return Err("note_change refused a status_change event".into());
    }
    let first = event.replace("\"UP\",\"new", "\"PENDING\",\"new");
    if note_change(&changes, &first, 6) {
        return Err("note_change took a new service's first result".into());
    }
    let noted = changes.lock().map(|c| c.clone()).unwrap_or_default();
    if noted.get(&(3, want.at)) != Some(&4) || noted.len() != 1 {
        return Err(format!("note_change noted {noted:?}"));
    }
    Ok(())
}

/// A flapping run's parts: the targets' switches and the receiver.
pub struct Run {
    pub targets: Arc<Targets>,
    pub receiver: Receiver,
}
