//! The regions fixture (DESIGN.md "Regions and quorum", issue 16): a fleet
//! whose workers stand in regions, a target on 127.0.0.1 whose answer
//! depends on the region a check comes from (`X-Healthmon-Region`), and
//! what a user looks at to see a verdict: `GET /regions`, a service's
//! status and its logs per region, the WebSocket and a webhook receiver.

use super::broker::remember_region;
use super::fleet::Fleet;
use super::receiver::Receiver;
use super::{Monitor, WsClient};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The header a worker names its region in.
pub const REGION_HEADER: &str = "x-healthmon-region";

/// A target whose paths `/s/NAME` answer 500 to checks from the regions
/// told to fail for NAME ([`RegionTarget::fail_in`]) and 200 to any other
/// (a check without the header too).
#[derive(Clone)]
pub struct RegionTarget {
    pub addr: std::net::SocketAddr,
    failing: Arc<Mutex<HashMap<String, BTreeSet<String>>>>,
    /// Requests per (name, region) (`""` without the header).
    hits: Arc<Mutex<HashMap<(String, String), usize>>>,
}

impl RegionTarget {
    /// Starts the target on a free port of 127.0.0.1; it serves until the
    /// test's runtime ends.
    pub async fn start() -> RegionTarget {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind target");
        let t = RegionTarget {
            addr: listener.local_addr().expect("addr"),
            failing: Arc::default(),
            hits: Arc::default(),
        };
        let server = t.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let s = server.clone();
                tokio::spawn(async move {
                    let _ = s.serve(sock).await;
                });
            }
        });
        t
    }

    /// The URL of `/s/NAME`.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/s/{name}", self.addr)
    }

    /// Makes `/s/NAME` fail (500) for checks from `regions`, and only those.
    pub fn fail_in(&self, name: &str, regions: &[&str]) {
        if let Ok(mut f) = self.failing.lock() {
            f.insert(
                name.to_owned(),
                regions.iter().map(|r| (*r).to_owned()).collect(),
            );
        }
    }

    /// How many checks of `/s/NAME` came from `region`.
    pub fn hits(&self, name: &str, region: &str) -> usize {
        self.hits
            .lock()
            .map(|h| {
                h.get(&(name.to_owned(), region.to_owned()))
                    .copied()
                    .unwrap_or(0)
            })
            .unwrap_or(0)
    }

    async fn serve(&self, mut sock: tokio::net::TcpStream) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 1024];
        loop {
            if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
            let n = sock.read(&mut chunk).await?;
            if n == 0 || buf.len() > 16 * 1024 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let head = String::from_utf8_lossy(&buf).into_owned();
        let mut lines = head.split("\r\n");
        let path = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("/")
            .to_owned();
        let region = lines
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(REGION_HEADER))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default();
        let status = match path.strip_prefix("/s/") {
            Some(name) => {
                if let Ok(mut h) = self.hits.lock() {
                    *h.entry((name.to_owned(), region.clone())).or_default() += 1;
                }
                let fails = self
                    .failing
                    .lock()
                    .map(|f| f.get(name).is_some_and(|set| set.contains(&region)))
                    .unwrap_or(false);
                if fails { "500 Failing" } else { "200 OK" }
            }
            None => "404 Not Found",
        };
        let answer =
            format!("HTTP/1.1 {status}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        sock.write_all(answer.as_bytes()).await?;
        let _ = sock.shutdown().await;
        Ok(())
    }
}

/// Lets a status-changing storm of a few services arrive one message per
/// alert, so deliveries can be counted.
pub const NO_STORMS: (&str, &str) = ("HEALTHMON__ALERTS__STORM_THRESHOLD", "100000");

/// The `api,scheduler` process of a regions fleet.
pub fn spawn_api(fleet: &Fleet) -> Monitor {
    fleet.spawn_with("api,scheduler", &[NO_STORMS])
}

/// A worker-only process in `region` (`--role worker --region NAME`),
/// with `checks.block_private` on when `block_private` (then every check
/// it makes of 127.0.0.1 fails: a region whose own network is broken).
pub fn spawn_worker(fleet: &Fleet, region: &str, block_private: bool) -> Monitor {
    remember_region(region);
    let mut env = fleet.env();
    let block = if block_private { "true" } else { "false" };
    env.push(("HEALTHMON__CHECKS__BLOCK_PRIVATE", block));
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let args = [
        "--role",
        "worker",
        "--region",
        region,
        "--health-bind",
        "127.0.0.1:0",
    ];
    // Not through `fleet.spawn_with`, to pass `--region` as a flag; the
    // Monitor's drop kills it, before the fleet's guard cleans up.
    Monitor::start_args(dir, &env, &args)
}

/// Registers a service on `url` checked from `regions` with `quorum`,
/// every 2 s with a 2 s timeout (a check starved of CPU for a second
/// on a busy machine must not cast a false failing vote); returns its id.
pub async fn register_regional(
    api: &Monitor,
    name: &str,
    url: &str,
    regions: &[&str],
    quorum: u32,
) -> i64 {
    let svc = api
        .register(
            json!({"name": name, "url": url, "interval": 2, "timeout": 2,
                         "regions": regions, "quorum": quorum}),
        )
        .await;
    assert_eq!(svc["regions"], json!(regions), "{svc}");
    assert_eq!(svc["quorum"], json!(quorum), "{svc}");
    svc["id"].as_i64().expect("an id")
}

/// A webhook channel for every service, delivering to `receiver`'s `/hook`.
pub async fn webhook(api: &Monitor, receiver: &Receiver) {
    let (status, ch) = api
        .send_json(
            reqwest::Method::POST,
            "/channels",
            json!({"name": "hook", "kind": "webhook", "all_services": true,
                   "config": {"url": receiver.url("/hook")}}),
        )
        .await;
    assert_eq!(status, 201, "{ch}");
}

/// Webhook deliveries about service `id`, as (event, delivery id).
pub fn deliveries_for(receiver: &Receiver, id: i64) -> Vec<(String, String)> {
    receiver
        .received_at("/hook")
        .iter()
        .map(|r| {
            (
                r.json(),
                r.header("x-healthmon-delivery").map(str::to_owned),
            )
        })
        .filter(|(b, _)| b["service"]["id"].as_i64() == Some(id))
        .map(|(b, d)| {
            (
                b["event"].as_str().unwrap_or_default().to_owned(),
                d.unwrap_or_default(),
            )
        })
        .collect()
}

/// Webhook deliveries about a service (any but a region's or a test's),
/// as their bodies.
pub fn service_alerts(receiver: &Receiver) -> Vec<String> {
    receiver
        .received_at("/hook")
        .iter()
        .filter(|r| {
            let event = r.json()["event"].as_str().unwrap_or_default().to_owned();
            !event.starts_with("region_") && event != "test"
        })
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect()
}

/// Webhook deliveries of `event` about `region`, as (delivery id, body).
pub fn region_alerts(receiver: &Receiver, event: &str, region: &str) -> Vec<(String, Value)> {
    receiver
        .received_at("/hook")
        .iter()
        .map(|r| {
            (
                r.header("x-healthmon-delivery")
                    .unwrap_or_default()
                    .to_owned(),
                r.json(),
            )
        })
        // `region` names it, alone or with its figures.
        .filter(|(_, b)| {
            b["event"] == event && (b["region"] == region || b["region"]["name"] == region)
        })
        .collect()
}

/// Every webhook body the receiver got, as text (for failure messages).
pub fn hook_bodies(receiver: &Receiver) -> Vec<String> {
    receiver
        .received_at("/hook")
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect()
}

/// `GET /regions`, asserting 200.
pub async fn regions(api: &Monitor) -> Value {
    let (status, body) = api.get("/regions").await;
    assert_eq!(status, 200, "GET /regions: {body}");
    body
}

/// One region of a `GET /regions` body.
pub fn region<'a>(body: &'a Value, name: &str) -> Option<&'a Value> {
    body["regions"]
        .as_array()?
        .iter()
        .find(|r| r["name"] == name)
}

/// Whether `name` is in the body's `missing` list.
pub fn is_missing(body: &Value, name: &str) -> bool {
    body["missing"]
        .as_array()
        .is_some_and(|m| m.iter().any(|r| r == name))
}

/// Polls `GET /regions` until `pred` holds of it (failing after `limit`);
/// returns that body.
pub async fn regions_until(
    api: &Monitor,
    limit: Duration,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let body = regions(api).await;
        if pred(&body) {
            return body;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for GET /regions: {what}; last: {body}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until each of `names` has a live worker.
pub async fn all_live(api: &Monitor, names: &[&str], limit: Duration) {
    regions_until(api, limit, &format!("{names:?} live"), |b| {
        names
            .iter()
            .all(|n| region(b, n).is_some_and(|r| r["live"] == true))
    })
    .await;
}

/// A service's stored status (`last_status`).
pub async fn status(api: &Monitor, id: i64) -> String {
    let (code, svc) = api.get(&format!("/services/{id}")).await;
    assert_eq!(code, 200, "{svc}");
    svc["last_status"].as_str().unwrap_or_default().to_owned()
}

/// Polls until service `id`'s status is `want` (failing after `limit`).
pub async fn status_becomes(api: &Monitor, id: i64, want: &str, limit: Duration) {
    let start = Instant::now();
    loop {
        let now = status(api, id).await;
        if now == want {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "service {id} still {now}, not {want}, after {limit:?}; newest logs: {}",
            Value::Array(api.logs(id, "limit=12").await)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Service `id`'s newest logs of `region` (up to 200).
pub async fn region_logs(api: &Monitor, id: i64, region: &str) -> Vec<Value> {
    api.logs(id, &format!("region={region}&limit=200")).await
}

/// Service `id`'s newest round verdicts (logs without a region, up to
/// 200 logs looked at).
pub async fn verdicts(api: &Monitor, id: i64) -> Vec<Value> {
    api.logs(id, "limit=200")
        .await
        .into_iter()
        .filter(|l| l["region"].is_null())
        .collect()
}

/// A log's `checked_at` as epoch milliseconds.
pub fn checked_at_ms(log: &Value) -> i64 {
    log["checked_at"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map_or(0, |t| t.timestamp_millis())
}

/// Polls until `pred` holds of service `id`'s logs (all regions, up to
/// 200), failing after `limit`; returns them.
pub async fn logs_until(
    api: &Monitor,
    id: i64,
    query: &str,
    limit: Duration,
    what: &str,
    pred: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let logs = api.logs(id, query).await;
        if pred(&logs) {
            return logs;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for service {id}'s logs ({query}): {what}; \
             newest: {}",
            Value::Array(logs.into_iter().take(12).collect())
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A `/ws` client read all along by a task of its own (so it answers the
/// server's pings while the test looks elsewhere: a client that does not
/// is disconnected), keeping every message but `check` events.
pub struct WsLog {
    kept: Arc<Mutex<Vec<Value>>>,
    closed: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

/// Messages a [`WsLog`] keeps at most (the oldest go first).
const WS_KEPT: usize = 10_000;

impl WsLog {
    /// Connects to `api`'s `/ws` and starts reading.
    pub async fn connect(api: &Monitor) -> WsLog {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let mut ws = WsClient::connect(api).await;
        let kept: Arc<Mutex<Vec<Value>>> = Arc::default();
        let closed: Arc<std::sync::atomic::AtomicBool> = Arc::default();
        let (k, c) = (Arc::clone(&kept), Arc::clone(&closed));
        let task = tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.stream.next().await {
                let Message::Text(t) = msg else { continue };
                let Ok(v) = serde_json::from_str::<Value>(&t) else {
                    continue;
                };
                if v["type"] == "check" {
                    continue;
                }
                if let Ok(mut all) = k.lock() {
                    if all.len() >= WS_KEPT {
                        all.remove(0);
                    }
                    all.push(v);
                }
            }
            c.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        WsLog { kept, closed, task }
    }

    /// The messages kept so far that satisfy `pred`.
    pub fn matching(&self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.kept
            .lock()
            .map(|all| all.iter().filter(|v| pred(v)).cloned().collect())
            .unwrap_or_default()
    }

    /// Waits until a message satisfies `pred` (failing after `limit`, or
    /// when the server closed first); returns the first such.
    pub async fn until(&self, limit: Duration, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            if let Some(v) = self.matching(&pred).into_iter().next() {
                return v;
            }
            assert!(
                !self.closed.load(std::sync::atomic::Ordering::SeqCst),
                "the WebSocket closed before {what}"
            );
            assert!(
                start.elapsed() < limit,
                "timed out after {limit:?} waiting for a WebSocket message: {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for WsLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Service `id`'s status changes as stored, oldest first (`OLD>NEW`).
pub async fn changes(fleet: &Fleet, id: i64) -> Vec<String> {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        change: String,
    }
    let mut conn = fleet.sql().await;
    let rows: Vec<Row> = diesel::sql_query(format!(
        "SELECT old_status || '>' || new_status AS change FROM state_changes \
         WHERE service_id = {id} ORDER BY scheduled_at, id"
    ))
    .load(&mut conn)
    .await
    .expect("read state_changes");
    rows.into_iter().map(|r| r.change).collect()
}
