//! Test harness: the real `healthmon` binary on port 0 with a temporary
//! SQLite file, and real HTTP targets on 127.0.0.1.
#![allow(dead_code)]

pub mod broker;
pub mod ca;
pub mod dns;
pub mod fleet;
pub mod maintenance;
pub mod measure;
pub mod promtool;
pub mod receiver;
pub mod regions;
pub mod skip;
pub mod smtp;
pub mod stores;
pub mod target;
pub mod tls_target;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long any wait in a test may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Lines the monitor wrote to stderr.
pub type Logs = Arc<Mutex<Vec<String>>>;

/// A running monitor process.
pub struct Monitor {
    pub child: Child,
    pub addr: String,
    pub dir: Arc<TempDir>,
    pub logs: Arc<Mutex<Vec<String>>>,
    pub http: reqwest::Client,
    env: Vec<(String, String)>,
}

impl Monitor {
    /// Starts a fresh monitor with an empty store.
    pub fn start() -> Monitor {
        Self::start_in(Arc::new(tempfile::tempdir().expect("tempdir")), &[])
    }

    /// Starts a fresh monitor with extra environment variables.
    pub fn start_with(env: &[(&str, &str)]) -> Monitor {
        Self::start_in(Arc::new(tempfile::tempdir().expect("tempdir")), env)
    }

    /// Starts a monitor on the store in `dir` (kept across restarts).
    pub fn start_in(dir: Arc<TempDir>, env: &[(&str, &str)]) -> Monitor {
        Self::start_args(dir, env, &[])
    }

    /// Starts a monitor with command-line arguments (e.g. `--role worker`).
    pub fn start_args(dir: Arc<TempDir>, env: &[(&str, &str)], args: &[&str]) -> Monitor {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        // reqwest is built without a default TLS provider (see app.rs).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (child, logs, addr) =
            spawn(&dir, &env, &args).unwrap_or_else(|e| panic!("monitor did not start: {e}"));
        Monitor {
            child,
            addr,
            dir,
            logs,
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("client"),
            env,
        }
    }

    /// Stops this process with SIGTERM and starts a new one on the same store.
    pub fn restart(mut self) -> Monitor {
        let status = self.terminate();
        assert!(status.success(), "exit status {status:?}");
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Self::start_in(Arc::clone(&self.dir), &env)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn db_path(&self) -> std::path::PathBuf {
        self.dir.path().join("hm.db")
    }

    /// Registers a service, asserting 201.
    pub async fn register(&self, body: Value) -> Value {
        let resp = self
            .http
            .post(self.url("/services"))
            .json(&body)
            .send()
            .await
            .expect("POST");
        let status = resp.status();
        let json: Value = resp.json().await.expect("json");
        assert_eq!(status, 201, "register failed: {json}");
        json
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self.http.get(self.url(path)).send().await.expect("GET");
        let status = resp.status().as_u16();
        let body = resp.text().await.expect("body");
        (
            status,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        )
    }

    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> (u16, Value) {
        let resp = self
            .http
            .request(method, self.url(path))
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// The service's logs (newest first).
    pub async fn logs(&self, id: i64, query: &str) -> Vec<Value> {
        let (status, body) = self.get(&format!("/services/{id}/logs?{query}")).await;
        assert_eq!(status, 200, "{body}");
        body.as_array().cloned().unwrap_or_default()
    }

    /// SIGTERM, then wait for exit (fails the test after the deadline).
    pub fn terminate(&mut self) -> ExitStatus {
        signal(&self.child, "TERM");
        wait_exit(&mut self.child, DEADLINE).expect("process did not exit after SIGTERM")
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(&mut self) {
        signal(&self.child, "KILL");
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        self.logs.lock().map(|l| l.join("\n")).unwrap_or_default()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        // A failing test shows how its monitor ended and what it logged
        // last (libtest prints a failed test's captured output), so a
        // failure in CI can be read without running it again.
        if std::thread::panicking() {
            let status = self.child.try_wait();
            let lines = self.logs.lock().map(|l| l.clone()).unwrap_or_default();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!(
                "--- monitor {} ({}): last {} of {} log lines ---\n{}",
                self.addr,
                match status {
                    Ok(Some(s)) => format!("exited: {s}"),
                    Ok(None) => "still running".to_owned(),
                    Err(e) => format!("status unknown: {e}"),
                },
                tail.len(),
                lines.len(),
                tail.join("\n")
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{sig} failed");
}

pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// The binary's command with a clean environment for a store in `dir`.
pub fn command(dir: &TempDir, env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_healthmon"));
    cmd.current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("RABBITMQ_URL")
        .env_remove("DB_HOST")
        .env_remove("DB_USER")
        .env_remove("DB_NAME")
        .env_remove("DB_PASSWORD")
        .env_remove("DB_PORT")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("HEALTHMON__") {
            cmd.env_remove(k);
        }
    }
    cmd.env("HEALTHMON__SERVER__BIND", "127.0.0.1:0").env(
        "HEALTHMON__DATABASE__URL",
        format!("sqlite://{}", dir.path().join("hm.db").display()),
    );
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn spawn(
    dir: &TempDir,
    env: &[(String, String)],
    args: &[String],
) -> Result<(Child, Logs, String), String> {
    let mut child = command(dir, env)
        .args(args)
        .spawn()
        .map_err(|e| e.to_string())?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let logs = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = Arc::clone(&logs);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening addr=").nth(1) {
                let _ = tx.send(
                    rest.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
            if std::env::var_os("HEALTHMON_TEST_ECHO").is_some() {
                eprintln!("[monitor] {line}");
            }
            if let Ok(mut l) = sink.lock() {
                l.push(line);
            }
        }
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(addr) => Ok((child, logs, addr)),
        Err(_) => {
            let _ = child.kill();
            let text = logs.lock().map(|l| l.join("\n")).unwrap_or_default();
            Err(format!(
                "no 'listening' line within {DEADLINE:?}; output:\n{text}"
            ))
        }
    }
}

/// Runs the binary to completion with extra env and args; returns (status, stderr).
pub fn run_to_exit(env: &[(&str, &str)], args: &[&str]) -> (ExitStatus, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let mut cmd = command(&dir, &env);
    cmd.args(args);
    let mut child = cmd.spawn().expect("spawn");
    let status = wait_exit(&mut child, DEADLINE).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("process did not exit")
    });
    let mut err = String::new();
    if let Some(mut s) = child.stderr.take() {
        use std::io::Read;
        let _ = s.read_to_string(&mut err);
    }
    (status, err)
}

/// Polls `check` until it returns `Some`, failing the test at the deadline.
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    within(DEADLINE, what, check).await
}

/// Polls `check` until it returns `Some`, failing the test after `limit`
/// (for waits that span a server outage, longer than [`DEADLINE`]).
pub async fn within<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A service body for `url` checked every `interval` seconds.
pub fn service(name: &str, url: &str, interval: i64) -> Value {
    serde_json::json!({"name": name, "url": url, "interval": interval, "timeout": 1})
}

/// A WebSocket client for `/ws`.
pub struct WsClient {
    pub stream: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl WsClient {
    pub async fn connect(m: &Monitor) -> WsClient {
        let (stream, _) = tokio_tungstenite::connect_async(m.ws_url())
            .await
            .expect("ws connect");
        WsClient { stream }
    }

    /// The next JSON text message, or `None` when the server closed.
    pub async fn next_json(&mut self) -> Option<Value> {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        loop {
            let msg = tokio::time::timeout(DEADLINE, self.stream.next())
                .await
                .expect("no WebSocket message within the deadline")?;
            match msg {
                Ok(Message::Text(t)) => {
                    return Some(serde_json::from_str(&t).expect("json message"));
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Reads messages until one satisfies `pred`; returns it and all read.
    pub async fn until(
        &mut self,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> (Value, Vec<Value>) {
        let start = Instant::now();
        let mut seen = Vec::new();
        loop {
            assert!(
                start.elapsed() < DEADLINE,
                "timed out waiting for WebSocket message: {what}"
            );
            let msg = self
                .next_json()
                .await
                .unwrap_or_else(|| panic!("closed while waiting for {what}"));
            if pred(&msg) {
                return (msg, seen);
            }
            seen.push(msg);
        }
    }
}

impl WsClient {
    /// Connects with a 4 KiB receive buffer, so a client that does not read
    /// pushes back on the server quickly.
    pub async fn connect_with_small_buffer(m: &Monitor) -> WsClient {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("rcvbuf");
        let addr: std::net::SocketAddr = m.addr.parse().expect("addr");
        let tcp = socket.connect(addr).await.expect("connect");
        let (stream, _) = tokio_tungstenite::client_async(
            m.ws_url(),
            tokio_tungstenite::MaybeTlsStream::Plain(tcp),
        )
        .await
        .expect("ws handshake");
        WsClient { stream }
    }

    /// Reads until the server closes; true if it did within the deadline.
    pub async fn until_closed(&mut self) -> bool {
        use futures_util::StreamExt;
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            match tokio::time::timeout(DEADLINE, self.stream.next()).await {
                Ok(None) | Ok(Some(Err(_))) => return true,
                Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_)))) => return true,
                Ok(Some(Ok(_))) => {}
                Err(_) => return false,
            }
        }
        false
    }
}

/// Runs the binary with `args` on the store in `dir`; returns its output.
pub fn run_in(dir: &TempDir, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let mut cmd = command(dir, &env);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn");
    child.wait_with_output().expect("output")
}

/// Creates an API key with the CLI on the store in `dir`; returns the token.
pub fn create_key(dir: &TempDir, name: &str, scope: &str) -> String {
    let out = run_in(
        dir,
        &[],
        &["keys", "create", "--name", name, "--scope", scope],
    );
    assert!(
        out.status.success(),
        "keys create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Runs `cleanup` to its end from a `Drop`, on a thread of its own with a
/// runtime of its own (the test's runtime may be the one dropping), giving
/// up after 15 s so a missing server cannot hang the test. On a
/// multi-threaded test runtime the dropping worker hands its other tasks
/// on first, so tasks the cleanup waits for keep running.
pub fn clean_up_now<F: Future<Output = ()> + Send>(cleanup: F) {
    let on_thread = || {
        std::thread::scope(|s| {
            let _ = s
                .spawn(|| {
                    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    else {
                        return;
                    };
                    rt.block_on(async {
                        let _ = tokio::time::timeout(Duration::from_secs(15), cleanup).await;
                    });
                })
                .join();
        });
    };
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(on_thread);
        }
        _ => on_thread(),
    }
}

/// A throwaway PostgreSQL database for one test, dropped (with any
/// connection still using it) when this guard is.
pub struct PgDb {
    pub url: String,
    admin_url: String,
    name: String,
}

/// The server the PostgreSQL tests use (`HEALTHMON_TEST_PG`, by default the
/// local one). Under CI it must be reachable; elsewhere the test is
/// skipped through [`skip::skip`].
pub async fn pg_db() -> Option<PgDb> {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    let admin_url = std::env::var("HEALTHMON_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let mut admin = match tokio::time::timeout(
        Duration::from_secs(5),
        AsyncPgConnection::establish(&admin_url),
    )
    .await
    {
        Ok(Ok(c)) => c,
        other => {
            let why = match other {
                Ok(Err(e)) => e.to_string(),
                _ => "timed out".to_owned(),
            };
            skip::skip(&format!("PostgreSQL at {admin_url}"), &why);
            return None;
        }
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name = format!(
        "t_healthmon_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000_000
    );
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create database");
    let mut url = url::Url::parse(&admin_url).expect("admin url");
    url.set_path(&name);
    Some(PgDb {
        url: url.to_string(),
        admin_url,
        name,
    })
}

impl Drop for PgDb {
    fn drop(&mut self) {
        clean_up_now(self.drop_db());
    }
}

impl PgDb {
    /// Drops the database (and any connection still using it). Dropping
    /// the guard does it; calling this first does no harm.
    pub async fn drop_db(&self) {
        use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
        if let Ok(mut admin) = AsyncPgConnection::establish(&self.admin_url).await {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin)
            .await;
        }
    }
}
