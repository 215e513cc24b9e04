//! `--kind http|https|tcp|push` and `--assert` (issue 14, point 8): what
//! the services check, and what the target farm serves for it.
//!
//! - `http` (the default): `http://127.0.0.1:PORT/s/{i}`, the farm as before.
//! - `https`: `https://127.0.0.1:PORT/s/{i}`. The farm serves TLS with a
//!   certificate for `localhost` and `127.0.0.1` from a CA the benchmark makes
//!   (tests/common/ca.rs), and healthmon trusts that CA through
//!   `checks.ca_file` (`HEALTHMON__CHECKS__CA_FILE`). Every check is a full
//!   handshake: the farm answers `Connection: close`, so the checker's
//!   connection pool never gets a connection back to reuse, and the farm's
//!   TLS server neither keeps sessions nor sends TLS 1.3 tickets, so no
//!   handshake can resume an earlier one (whatever the client caches).
//! - `tcp`: `tcp://127.0.0.1:PORT`; the farm accepts each connection, notes
//!   when, and closes it.
//! - `push`: `push://` services, each pinged at its interval by the
//!   benchmark's pinger (push.rs); no farm requests.
//! - `--assert` (http, https): every service also has `body_contains` and a
//!   `json` assertion, and the farm answers [`ASSERT_BODY`] (JSON) so both
//!   hold on every check.

use serde_json::{Map, Value, json};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// What the services check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Http,
    Https,
    Tcp,
    Push,
}

/// The kinds a plain `--smoke` runs, in order (the http run first: its
/// object is the base of the last line CI reads).
pub const SMOKE: [Kind; 4] = [Kind::Http, Kind::Https, Kind::Tcp, Kind::Push];

impl Kind {
    pub fn parse(s: &str) -> Result<Kind, String> {
        match s {
            "http" => Ok(Kind::Http),
            "https" => Ok(Kind::Https),
            "tcp" => Ok(Kind::Tcp),
            "push" => Ok(Kind::Push),
            k => Err(format!("unknown --kind {k} (http|https|tcp|push)")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Http => "http",
            Kind::Https => "https",
            Kind::Tcp => "tcp",
            Kind::Push => "push",
        }
    }

    /// Whether checks are HTTP requests to the farm (carrying the schedule
    /// header, so the farm measures lag and counts them by due time).
    pub fn is_http(self) -> bool {
        matches!(self, Kind::Http | Kind::Https)
    }

    /// The URL service `i` gets, on farm port `port`.
    pub fn url(self, port: u16, i: usize) -> String {
        match self {
            Kind::Http => format!("http://127.0.0.1:{port}/s/{i}"),
            Kind::Https => format!("https://127.0.0.1:{port}/s/{i}"),
            Kind::Tcp => format!("tcp://127.0.0.1:{port}"),
            Kind::Push => "push://".to_owned(),
        }
    }
}

/// What the farm answers with `--assert`: a small health document, as a
/// service's own `/health` would give.
pub const ASSERT_BODY: &str =
    r#"{"status":"ok","checks":{"db":"up","queue":"up"},"version":"1.4.2"}"#;

/// The text `body_contains` looks for in [`ASSERT_BODY`].
pub const ASSERT_CONTAINS: &str = "\"db\":\"up\"";

/// The registration fields `--assert` adds: a `body_contains` and a `json`
/// assertion, both true of [`ASSERT_BODY`].
pub fn assert_fields() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("body_contains".into(), json!(ASSERT_CONTAINS));
    m.insert(
        "json".into(),
        json!([{"pointer": "/status", "equals": "ok"}]),
    );
    m
}

/// A 200 answer, `Connection: close`: `ok` in plain text, or with
/// `--assert` [`ASSERT_BODY`] as JSON.
pub fn ok_answer(assert: bool) -> Arc<[u8]> {
    let (kind, body) = if assert {
        ("application/json", ASSERT_BODY)
    } else {
        ("text/plain", "ok")
    };
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
    .into()
}

/// The farm's TLS side (`--kind https`): an acceptor with a certificate from
/// a CA made for the run, and that CA as a PEM file for healthmon's (and
/// blackbox_exporter's) `ca_file`.
pub struct Tls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    pub ca_file: PathBuf,
    /// The farm's handshakes by kind, over the whole run.
    pub handshakes: Handshakes,
    /// Holds `ca_file` until the run ends.
    _dir: tempfile::TempDir,
}

impl Tls {
    pub fn new() -> Result<Tls, String> {
        let ca = super::ca::TestCa::new("healthmon pipeline bench CA");
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let ca_file = ca.write_pem(dir.path(), "bench-ca");
        let mut config = (*ca.server_config()).clone();
        // No session cache and no tickets: a client cannot resume, so each
        // connection is a full handshake (certificate sent and verified, a
        // fresh key exchange), as the first check of a host is.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            ca_file,
            handshakes: Handshakes::default(),
            _dir: dir,
        })
    }
}

/// The farm's TLS handshakes by kind: the proof that none resumed.
#[derive(Default)]
pub struct Handshakes {
    full: AtomicU64,
    /// Full, with a HelloRetryRequest round trip (a key share the server
    /// did not take): costlier than full.
    retried: AtomicU64,
    resumed: AtomicU64,
}

impl Handshakes {
    /// Notes one finished handshake.
    pub fn note(&self, kind: Option<rustls::HandshakeKind>) {
        let counter = match kind {
            Some(rustls::HandshakeKind::Resumed) => &self.resumed,
            Some(rustls::HandshakeKind::FullWithHelloRetryRequest) => &self.retried,
            _ => &self.full,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The `tls_handshakes` object (every monitor's, over the whole run).
    pub fn figures(&self) -> Value {
        json!({
            "full": self.full.load(Ordering::Relaxed),
            "full_with_hello_retry": self.retried.load(Ordering::Relaxed),
            "resumed": self.resumed.load(Ordering::Relaxed),
        })
    }
}

/// When each connection to the tcp farm was accepted (epoch ms).
pub type Accepts = Arc<Mutex<Vec<i64>>>;

/// `--kind tcp`'s farm: `n` listeners on 127.0.0.1 that accept each
/// connection, note when, and close it.
pub async fn start_tcp_farm(n: usize, accepts: Accepts) -> Vec<u16> {
    let mut ports = Vec::new();
    for _ in 0..n {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind target");
        ports.push(listener.local_addr().expect("addr").port());
        let accepts = Arc::clone(&accepts);
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((sock, _)) => {
                        let at = super::now_ms();
                        drop(sock);
                        if let Ok(mut a) = accepts.lock() {
                            a.push(at);
                        }
                    }
                    // Out of descriptors, most likely: back off briefly.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        });
    }
    ports
}

/// Accepts noted in [from, to).
pub fn accepts_in(accepts: &Accepts, from: i64, to: i64) -> i64 {
    accepts
        .lock()
        .map(|a| a.iter().filter(|t| (from..to).contains(*t)).count() as i64)
        .unwrap_or(0)
}
