//! HTTP targets for checks: a tiny server on 127.0.0.1 whose answer depends
//! on the path. It counts requests per path and records when each arrived.
//! The same server also speaks HTTPS with a certificate from a [`TestCa`]
//! made in the test.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

pub use super::ca::TestCa;

/// What `/json` serves.
pub const JSON_DOC: &str =
    r#"{"status": "ok", "version": 3, "checks": [{"name": "db", "ok": true}], "ratio": 0.5}"#;

/// What `/page` serves.
pub const PAGE: &str = "<!doctype html><html><body><h1>Welcome to the shop</h1><p>All systems normal</p></body></html>";

/// What `/tail/N` ends with, after N bytes of `x`.
pub const TAIL: &str = "THE END";

/// A 200 answer with `body` of `content_type`.
fn with_body(content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A running target server.
#[derive(Clone)]
pub struct Target {
    pub addr: std::net::SocketAddr,
    /// `/switch` answers 200 while true, 503 while false.
    pub switch_up: Arc<AtomicBool>,
    hits: Arc<Mutex<HashMap<String, Vec<Instant>>>>,
    /// Request heads per path, in arrival order.
    heads: Arc<Mutex<HashMap<String, Vec<String>>>>,
    /// Request bodies per path, in arrival order.
    bodies: Arc<Mutex<HashMap<String, Vec<String>>>>,
    /// How many times `/big` was sent in full (the client read it all).
    pub big_sent_in_full: Arc<std::sync::atomic::AtomicUsize>,
    /// Answers written in full, per path.
    answered: Arc<Mutex<HashMap<String, usize>>>,
    /// Connections served (for TLS: handshakes completed).
    connections: Arc<std::sync::atomic::AtomicUsize>,
    /// Serves HTTPS (`url` gives `https://localhost:PORT`).
    tls: bool,
}

impl Target {
    /// Starts the server on the current tokio runtime.
    ///
    /// Paths: `/ok` 200; `/fail` 500; `/hang` never answers; `/redirect/N`
    /// redirects N times then 200; `/redirect-to?URL` answers 302 with
    /// `location: URL` (taken as it is); `/big` 200 with a 20 MB body;
    /// `/endless` 200 with a body that never ends; `/switch` 200 or 503;
    /// `/status/N` answers N; `/slow` answers after 500 ms, `/slow?ms=N`
    /// after N ms; `/json` 200 with [`JSON_DOC`]; `/page` 200 with
    /// [`PAGE`]; `/tail/N` 200 with N bytes of `x` then [`TAIL`]; `/keep` 200
    /// keeping the connection open for more; `/echo`
    /// 200 (what was sent is in [`Target::methods`], [`Target::bodies`],
    /// [`Target::header_values`]); anything else 404.
    pub async fn start() -> Target {
        let (listener, target) = Self::bind(false).await;
        let t = target.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let t = t.clone();
                tokio::spawn(async move {
                    let _ = t.serve(sock).await;
                });
            }
        });
        target
    }

    /// Starts the same server speaking HTTPS only, with a certificate for
    /// `localhost` and `127.0.0.1` issued by `ca`. A connection whose
    /// handshake fails (the client does not trust `ca`) never reaches the
    /// request handling, so it counts no hit.
    pub async fn start_tls(ca: &TestCa) -> Target {
        Self::start_tls_with(ca.server_config()).await
    }

    /// Starts the same server speaking HTTPS only with `config` (e.g.
    /// [`TestCa::server_config_with`]: a certificate that expires soon, has
    /// expired, or names another host).
    pub async fn start_tls_with(config: Arc<rustls::ServerConfig>) -> Target {
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let (listener, target) = Self::bind(true).await;
        let t = target.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (t, acceptor) = (t.clone(), acceptor.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(sock).await {
                        let _ = t.serve(tls).await;
                    }
                });
            }
        });
        target
    }

    async fn bind(tls: bool) -> (TcpListener, Target) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind target");
        let target = Target {
            addr: listener.local_addr().expect("addr"),
            switch_up: Arc::new(AtomicBool::new(true)),
            hits: Arc::new(Mutex::new(HashMap::new())),
            heads: Arc::new(Mutex::new(HashMap::new())),
            bodies: Arc::new(Mutex::new(HashMap::new())),
            big_sent_in_full: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            answered: Arc::new(Mutex::new(HashMap::new())),
            connections: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            tls,
        };
        (listener, target)
    }

    /// `http://127.0.0.1:PORT/path`, or for a TLS target
    /// `https://localhost:PORT/path` (a name, checked against the
    /// certificate's DNS name).
    pub fn url(&self, path: &str) -> String {
        if self.tls {
            format!("https://localhost:{}{}", self.addr.port(), path)
        } else {
            format!("http://{}{}", self.addr, path)
        }
    }

    /// Requests seen for `path` so far.
    pub fn hits(&self, path: &str) -> usize {
        self.hits
            .lock()
            .map(|h| h.get(path).map_or(0, Vec::len))
            .unwrap_or(0)
    }

    /// Connections served so far (for TLS: handshakes completed); `/keep`
    /// answers leave theirs open for the next request.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Requests for `path` whose answer was written in full (a `/hang`
    /// request is a hit but never answered).
    pub fn answered(&self, path: &str) -> usize {
        self.answered
            .lock()
            .map(|a| a.get(path).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Arrival times of requests for `path`.
    pub fn arrivals(&self, path: &str) -> Vec<Instant> {
        self.hits
            .lock()
            .map(|h| h.get(path).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    /// The methods of the requests for `path`, in arrival order.
    pub fn methods(&self, path: &str) -> Vec<String> {
        self.heads
            .lock()
            .map(|h| h.get(path).cloned().unwrap_or_default())
            .unwrap_or_default()
            .iter()
            .filter_map(|head| head.split_whitespace().next().map(str::to_owned))
            .collect()
    }

    /// The bodies of the requests for `path` (by their content-length;
    /// empty without one), in arrival order.
    pub fn bodies(&self, path: &str) -> Vec<String> {
        self.bodies
            .lock()
            .map(|b| b.get(path).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    /// The values of header `name` in the requests for `path`, in arrival
    /// order (requests without it are skipped).
    pub fn header_values(&self, path: &str, name: &str) -> Vec<String> {
        let heads = self
            .heads
            .lock()
            .map(|h| h.get(path).cloned().unwrap_or_default())
            .unwrap_or_default();
        heads
            .iter()
            .filter_map(|head| {
                head.lines().find_map(|line| {
                    let (k, v) = line.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case(name)
                        .then(|| v.trim().to_owned())
                })
            })
            .collect()
    }

    pub fn set_up(&self, up: bool) {
        self.switch_up.store(up, Ordering::SeqCst);
    }

    /// Serves one connection: one request, or several in a row while they
    /// are for `/keep`.
    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(&self, mut sock: S) -> std::io::Result<()> {
        self.connections.fetch_add(1, Ordering::SeqCst);
        while self.serve_one(&mut sock).await? {}
        Ok(())
    }

    /// Answers one request; whether the connection stays open for another.
    async fn serve_one<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        sock: &mut S,
    ) -> std::io::Result<bool> {
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = sock.read(&mut chunk).await?;
            if n == 0 || buf.len() > 16 * 1024 {
                return Ok(false);
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf[0] == 0x16 {
                // A TLS ClientHello: this server speaks only plain HTTP.
                sock.write_all(b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n")
                    .await?;
                return Ok(false);
            }
        }
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0) + 4;
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
        if let Ok(mut h) = self.hits.lock() {
            h.entry(path.clone()).or_default().push(Instant::now());
        }
        let length = head
            .lines()
            .find_map(|line| {
                let (k, v) = line.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0)
            .min(1024 * 1024);
        let mut body = buf[end..].to_vec();
        while body.len() < length {
            let n = sock.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        if let Ok(mut b) = self.bodies.lock() {
            b.entry(path.clone())
                .or_default()
                .push(String::from_utf8_lossy(&body).into_owned());
        }
        if let Ok(mut h) = self.heads.lock() {
            h.entry(path.clone()).or_default().push(head);
        }
        let simple = |code: u16, reason: &str| {
            format!("HTTP/1.1 {code} {reason}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        };
        let keep = path == "/keep";
        match path.as_str() {
            "/ok" => sock.write_all(simple(200, "OK").as_bytes()).await?,
            "/keep" => {
                sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await?
            }
            "/fail" => {
                sock.write_all(simple(500, "Internal Server Error").as_bytes())
                    .await?
            }
            "/switch" => {
                let resp = if self.switch_up.load(Ordering::SeqCst) {
                    simple(200, "OK")
                } else {
                    simple(503, "Service Unavailable")
                };
                sock.write_all(resp.as_bytes()).await?
            }
            p if p.starts_with("/slow") => {
                // Answers after 500 ms (long enough to kill a worker
                // mid-check), or as long as `?ms=N` says.
                let ms = p
                    .split_once("?ms=")
                    .and_then(|(_, ms)| ms.parse().ok())
                    .unwrap_or(500);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                sock.write_all(simple(200, "OK").as_bytes()).await?
            }
            "/json" => {
                sock.write_all(with_body("application/json", JSON_DOC).as_bytes())
                    .await?
            }
            "/page" => {
                sock.write_all(with_body("text/html; charset=utf-8", PAGE).as_bytes())
                    .await?
            }
            "/echo" => sock.write_all(simple(200, "OK").as_bytes()).await?,
            p if p.starts_with("/tail/") => {
                let n: usize = p.trim_start_matches("/tail/").parse().unwrap_or(0);
                let text = format!("{}{TAIL}", "x".repeat(n));
                sock.write_all(with_body("text/plain", &text).as_bytes())
                    .await?
            }
            "/hang" => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            "/big" => {
                let total = 20 * 1024 * 1024;
                sock.write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {total}\r\nconnection: close\r\n\r\n"
                    )
                    .as_bytes(),
                )
                .await?;
                let block = vec![b'x'; 64 * 1024];
                let mut sent = 0;
                while sent < total {
                    sock.write_all(&block).await?;
                    sent += block.len();
                }
                self.big_sent_in_full.fetch_add(1, Ordering::SeqCst);
            }
            "/endless" => {
                sock.write_all(
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
                )
                .await?;
                loop {
                    sock.write_all(b"400\r\n").await?;
                    sock.write_all(&[b'y'; 1024]).await?;
                    sock.write_all(b"\r\n").await?;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            p if p.starts_with("/redirect-to?") => {
                let resp = format!(
                    "HTTP/1.1 302 Found\r\nlocation: {}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    p.trim_start_matches("/redirect-to?")
                );
                sock.write_all(resp.as_bytes()).await?
            }
            p if p.starts_with("/redirect/") => {
                let n: u32 = p.trim_start_matches("/redirect/").parse().unwrap_or(0);
                if n == 0 {
                    sock.write_all(simple(200, "OK").as_bytes()).await?
                } else {
                    let resp = format!(
                        "HTTP/1.1 302 Found\r\nlocation: /redirect/{}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        n - 1
                    );
                    sock.write_all(resp.as_bytes()).await?
                }
            }
            p if p.starts_with("/status/") => {
                let code: u16 = p.trim_start_matches("/status/").parse().unwrap_or(500);
                sock.write_all(simple(code, "Whatever").as_bytes()).await?
            }
            _ => sock.write_all(simple(404, "Not Found").as_bytes()).await?,
        }
        sock.flush().await?;
        if let Ok(mut a) = self.answered.lock() {
            *a.entry(path).or_default() += 1;
        }
        if !keep {
            let _ = sock.shutdown().await;
        }
        Ok(keep)
    }
}
