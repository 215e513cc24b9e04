//! An alert receiver on 127.0.0.1: a tiny HTTP/1.1 server that records
//! every request (method, path, headers, body) and answers with a scripted
//! status (200 unless told otherwise), for webhook- and chat-shaped
//! deliveries alike. One request per connection.

use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request as the receiver got it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
    /// Arrival as epoch milliseconds (to compare with times in bodies).
    pub at_ms: i64,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`null` if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// A running receiver.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    /// Statuses to answer next, per path, before falling back to 200.
    script: Arc<Mutex<HashMap<String, VecDeque<u16>>>>,
    /// How long each answer waits (after the request is recorded).
    delay: Arc<Mutex<Duration>>,
    /// Requests being answered now, and the most there ever were at once.
    in_flight: Arc<Mutex<(usize, usize)>>,
    /// When set, answers send their status line and headers, then stall
    /// in the middle of the body until the receiver stops.
    stall_body: Arc<std::sync::atomic::AtomicBool>,
    stop: tokio_util::sync::CancellationToken,
}

/// A port nothing listens on now (bound, then released): a receiver that
/// is down, which [`Receiver::start_on`] can bring up later.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

impl Receiver {
    /// Starts a receiver on a free port.
    pub async fn start() -> Receiver {
        Self::start_on(0).await
    }

    /// Starts a receiver on `port` (0: any).
    pub async fn start_on(port: u16) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind receiver");
        let receiver = Receiver {
            addr: listener.local_addr().expect("addr"),
            received: Arc::default(),
            script: Arc::default(),
            delay: Arc::default(),
            in_flight: Arc::default(),
            stall_body: Arc::default(),
            stop: tokio_util::sync::CancellationToken::new(),
        };
        let r = receiver.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = r.stop.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((sock, _)) = accepted else { return };
                let r = r.clone();
                tokio::spawn(async move {
                    let _ = r.serve(sock).await;
                });
            }
        });
        receiver
    }

    /// `http://127.0.0.1:PORT` (an `api_base`).
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Answers the next requests for `path` with these statuses, in order.
    pub fn script(&self, path: &str, statuses: &[u16]) {
        if let Ok(mut s) = self.script.lock() {
            s.entry(path.to_owned())
                .or_default()
                .extend(statuses.iter().copied());
        }
    }

    /// Makes every answer wait `delay` after its request was recorded (a
    /// slow receiver, so deliveries are in flight for a while).
    pub fn set_delay(&self, delay: Duration) {
        if let Ok(mut d) = self.delay.lock() {
            *d = delay;
        }
    }

    /// Makes answers stall after their headers, the body never finished.
    pub fn stall_body(&self, stall: bool) {
        self.stall_body
            .store(stall, std::sync::atomic::Ordering::SeqCst);
    }

    /// The most requests that were being answered at once.
    pub fn max_in_flight(&self) -> usize {
        self.in_flight.lock().map(|f| f.1).unwrap_or(0)
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Requests for `path` so far.
    pub fn received_at(&self, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Waits until at least `n` requests for `path` arrived; returns them.
    pub async fn wait_for(&self, path: &str, n: usize, limit: Duration) -> Vec<Received> {
        let start = Instant::now();
        loop {
            let got = self.received_at(path);
            if got.len() >= n {
                return got;
            }
            assert!(
                start.elapsed() < limit,
                "the receiver got {} of {n} requests for {path} within {limit:?}: {:?}",
                got.len(),
                got.iter()
                    .map(|r| String::from_utf8_lossy(&r.body).into_owned())
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Stops accepting connections.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    async fn serve(&self, mut sock: tokio::net::TcpStream) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(4096);
        let mut chunk = [0u8; 4096];
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
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or_default().split_whitespace();
        let method = first.next().unwrap_or_default().to_owned();
        let path = first.next().unwrap_or("/").to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = buf[head_end..].to_vec();
        while body.len() < length {
            let n = sock.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            body.extend_from_slice(&chunk[..n]);
        }
        body.truncate(length);
        let status = self
            .script
            .lock()
            .ok()
            .and_then(|mut s| s.get_mut(&path).and_then(VecDeque::pop_front))
            .unwrap_or(200);
        if let Ok(mut r) = self.received.lock() {
            r.push(Received {
                method,
                path,
                headers,
                body,
                at: Instant::now(),
                at_ms: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64),
            });
        }
        if let Ok(mut f) = self.in_flight.lock() {
            f.0 += 1;
            f.1 = f.1.max(f.0);
        }
        let delay = self.delay.lock().map(|d| *d).unwrap_or_default();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if let Ok(mut f) = self.in_flight.lock() {
            f.0 -= 1;
        }
        if self.stall_body.load(std::sync::atomic::Ordering::SeqCst) {
            let head = format!(
                "HTTP/1.1 {status} Scripted\r\ncontent-length: 1000\r\nconnection: close\r\n\r\nok"
            );
            sock.write_all(head.as_bytes()).await?;
            sock.flush().await?;
            self.stop.cancelled().await;
            return Ok(());
        }
        let answer = format!(
            "HTTP/1.1 {status} Scripted\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
        );
        sock.write_all(answer.as_bytes()).await?;
        sock.flush().await?;
        let _ = sock.shutdown().await;
        Ok(())
    }
}
