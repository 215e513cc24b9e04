//! A real SMTP server for the mail tests: Debian's `python3-aiosmtpd`
//! running `tests/support/smtp_sink.py` on 127.0.0.1, optionally with
//! STARTTLS or implicit TLS (a certificate for `localhost` and 127.0.0.1
//! from a CA made here) and a required login. Each message it accepts is
//! read back as JSON (envelope, decoded subject/From/To/body, TLS, login).
//!
//! Without aiosmtpd the test skips loudly, and under CI it fails
//! (`skip.rs`). The server stops when the handle is dropped.

use super::target::TestCa;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How the server encrypts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain only: no STARTTLS offered.
    None,
    /// STARTTLS offered, and required before any mail.
    Starttls,
    /// TLS from the first byte.
    Implicit,
}

/// A running aiosmtpd.
pub struct SmtpServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The CA that issued its certificate (PEM), when it speaks TLS.
    pub ca_file: Option<PathBuf>,
    child: Child,
    /// Closing it tells the server to stop (and a crashed test closes it).
    stdin: Option<ChildStdin>,
    dir: TempDir,
}

/// The Python with aiosmtpd: `HEALTHMON_TEST_PYTHON` if set, else Debian's
/// own first (a pyenv or venv `python3` earlier on PATH does not see
/// Debian's packages).
fn python() -> Result<PathBuf, String> {
    let chosen = std::env::var("HEALTHMON_TEST_PYTHON").ok();
    let candidates = match chosen.as_deref() {
        Some(one) => vec![one],
        None => vec!["/usr/bin/python3", "python3"],
    };
    let mut tried = Vec::new();
    for candidate in candidates {
        let ok = Command::new(candidate)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(PathBuf::from(candidate));
        }
        tried.push(candidate);
    }
    Err(format!(
        "no Python with aiosmtpd ({}); apt-get install python3-aiosmtpd",
        tried.join(", ")
    ))
}

impl SmtpServer {
    /// Starts a server; `login` makes it require that user and password.
    /// `None` when aiosmtpd is missing outside CI (the skip is reported).
    pub fn start(tls: SmtpTls, login: Option<(&str, &str)>) -> Option<SmtpServer> {
        Self::start_with_ca(tls, login, &TestSmtpCa::new("healthmon SMTP test CA"))
    }

    /// Like [`SmtpServer::start`], with a certificate from `ca`.
    pub fn start_with_ca(
        tls: SmtpTls,
        login: Option<(&str, &str)>,
        ca: &TestSmtpCa,
    ) -> Option<SmtpServer> {
        let python = match python() {
            Ok(p) => p,
            Err(why) => {
                super::skip::skip("python3-aiosmtpd (the SMTP server of the mail tests)", &why);
                return None;
            }
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let mail_dir = dir.path().join("mail");
        std::fs::create_dir(&mail_dir).expect("mail dir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_sink.py");
        let mut cmd = Command::new(python);
        cmd.arg(&script).arg("--dir").arg(&mail_dir);
        let mut ca_file = None;
        if tls != SmtpTls::None {
            let (cert, key) = ca.server_files(dir.path());
            cmd.arg("--cert").arg(cert).arg("--key").arg(key);
            if tls == SmtpTls::Implicit {
                cmd.arg("--implicit-tls");
            }
            ca_file = Some(ca.write_pem(dir.path()));
        }
        if let Some((user, password)) = login {
            cmd.args(["--user", user, "--password", password]);
        }
        let stderr = std::fs::File::create(dir.path().join("server.log")).expect("log file");
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start smtp_sink.py");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut server = SmtpServer {
            port: 0,
            ca_file,
            child,
            stdin,
            dir,
        };
        let line = rx.recv_timeout(super::DEADLINE).unwrap_or_default();
        match line.trim().strip_prefix("READY ").map(str::parse::<u16>) {
            Some(Ok(port)) => server.port = port,
            _ => panic!(
                "smtp_sink.py did not start (said {line:?}); its log:\n{}",
                server.log()
            ),
        }
        Some(server)
    }

    /// What the server wrote to stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The messages accepted so far, in order.
    pub fn received(&self) -> Vec<Value> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("mail"))
            .expect("mail dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| serde_json::from_slice(&std::fs::read(p).expect("read mail")).expect("json"))
            .collect()
    }

    /// Waits (up to the test deadline) until `n` messages arrived.
    pub fn wait_for(&self, n: usize) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                start.elapsed() < super::DEADLINE,
                "{n} mail(s) expected, {} arrived; server log:\n{}",
                got.len(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        // Closing stdin ends the server; kill makes sure.
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.flush();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA for SMTP servers: a [`TestCa`] whose certificates go to PEM
/// files, which aiosmtpd needs.
pub struct TestSmtpCa(TestCa);

impl TestSmtpCa {
    /// A new CA named `name` with a fresh key. (Two CAs of one name look
    /// like one issuer with a bad signature, not an unknown issuer.)
    pub fn new(name: &str) -> TestSmtpCa {
        TestSmtpCa(TestCa::new(name))
    }

    /// Writes the CA certificate to `dir/ca.pem`.
    pub fn write_pem(&self, dir: &Path) -> PathBuf {
        self.0.write_pem(dir, "ca")
    }

    /// A server certificate and key for `localhost` and 127.0.0.1, as
    /// `dir/server.pem` and `dir/server.key`.
    fn server_files(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let (cert, key) = self.0.server_cert();
        let (cert_path, key_path) = (dir.join("server.pem"), dir.join("server.key"));
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        (cert_path, key_path)
    }
}
