//! A real DNS server for `dns://` checks: Debian's `dnsmasq`, started by the
//! test on 127.0.0.1 and a free high port, answering only from what the test
//! gives it (a hosts file and record options), killed when dropped.
//!
//! Under CI a missing dnsmasq fails the test (`.ci/run` installs it);
//! elsewhere the test is skipped loudly through [`super::skip::skip`].

use super::DEADLINE;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The zone every name of a test server lives in: names under it that the
/// server was not given are NXDOMAIN, never asked upstream.
pub const ZONE: &str = "test";

/// A running dnsmasq.
pub struct Dnsmasq {
    child: Child,
    /// Where it answers (UDP and TCP).
    pub addr: SocketAddr,
    hosts_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Dnsmasq {
    /// Starts dnsmasq answering for [`ZONE`] from `hosts` (hosts-file
    /// lines, `10.1.2.3 app.test`) and `records` (dnsmasq options such as
    /// `--mx-host=test,mail.test,10`, `--txt-record=test,v=spf1 -all`,
    /// `--cname=www.test,app.test`). `None` when dnsmasq is not installed
    /// (the test is then skipped, or failed under CI).
    pub fn start(hosts: &str, records: &[&str]) -> Option<Dnsmasq> {
        let Some(binary) = binary() else {
            super::skip::skip(
                "dnsmasq (Debian's dnsmasq-base)",
                "not found on PATH or in /usr/sbin",
            );
            return None;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        // Readable by the unprivileged user dnsmasq may switch to.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let hosts_file = dir.path().join("hosts");
        std::fs::write(&hosts_file, hosts).expect("write hosts");
        // A port just free may be taken before dnsmasq binds it: try again.
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let log_path = dir.path().join(format!("dnsmasq-{port}.log"));
            let log = std::fs::File::create(&log_path).expect("dnsmasq log");
            let mut child = Command::new(&binary)
                .args([
                    "--no-daemon",
                    "--no-resolv",
                    "--no-hosts",
                    "--conf-file=/dev/null",
                    &format!("--port={port}"),
                    "--listen-address=127.0.0.1",
                    "--bind-interfaces",
                    &format!("--local=/{ZONE}/"),
                    &format!("--addn-hosts={}", hosts_file.display()),
                    &format!("--pid-file={}", dir.path().join("pid").display()),
                ])
                .args(records)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn dnsmasq");
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            match wait_listening(&mut child, addr, &log_path) {
                Ok(()) => {
                    return Some(Dnsmasq {
                        child,
                        addr,
                        hosts_file,
                        _dir: dir,
                    });
                }
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = why;
                }
            }
        }
        panic!("dnsmasq did not start: {last}");
    }

    /// Replaces the hosts file and tells dnsmasq to read it again (SIGHUP,
    /// which also empties its cache). It takes effect a moment later.
    pub fn set_hosts(&self, hosts: &str) {
        std::fs::write(&self.hosts_file, hosts).expect("write hosts");
        super::signal(&self.child, "HUP");
    }

    /// `dns://127.0.0.1:PORT/name?type=T`: a check of `name` through this
    /// server.
    pub fn url(&self, name: &str, record_type: &str) -> String {
        format!("dns://{}/{name}?type={record_type}", self.addr)
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// dnsmasq on PATH, or where Debian puts it (/usr/sbin is not on every
/// user's PATH).
fn binary() -> Option<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("dnsmasq"))
        .find(|path| path.is_file())
}

/// A port free for UDP and TCP on 127.0.0.1 a moment ago.
fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = udp.local_addr().expect("addr").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Waits until dnsmasq accepts TCP on `addr` (it binds UDP and TCP
/// together), or says why it did not (its log, written to `log`).
fn wait_listening(child: &mut Child, addr: SocketAddr, log: &Path) -> Result<(), String> {
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        if let Ok(Some(status)) = child.try_wait() {
            let said = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("exited with {status}: {said}"));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("not listening on {addr} within {DEADLINE:?}"))
}
