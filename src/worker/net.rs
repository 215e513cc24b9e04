//! Checks below HTTP: `tcp://` connects ([`super::tcp`]), `tls://`
//! handshakes ([`super::tls`]) and `dns://` queries ([`super::dns`]),
//! through the same target safety as HTTP.
//!
//! Every address a check connects to, a `dns://` resolver's included, is
//! judged by the [`AddressPolicy`] after resolution, so a DNS answer cannot
//! route around it. The job's timeout bounds the whole check, resolution
//! included.

use crate::domain::{CheckJob, CheckKind, CheckResult};
use crate::worker::check::{CheckerSettings, Outcome};
use crate::worker::dns::DnsCheck;
use crate::worker::guard::{AddressPolicy, Blocked};
use crate::worker::http::ClientError;
use crate::worker::tls::TlsCheck;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Runs `tcp://`, `tls://` and `dns://` checks.
#[derive(Clone)]
pub struct NetChecker {
    policy: Arc<AddressPolicy>,
    tls: TlsCheck,
    dns: DnsCheck,
}

impl NetChecker {
    /// A checker for `settings`: the TLS client configuration (system roots
    /// plus `checks.ca_file`) is built here, once.
    pub fn new(settings: &CheckerSettings) -> Result<Self, ClientError> {
        Ok(Self {
            policy: Arc::new(settings.policy.clone()),
            tls: TlsCheck::new(settings.ca_file.as_deref())?,
            dns: DnsCheck::new(),
        })
    }

    /// Runs one check of a `tcp://`, `tls://` or `dns://` URL. The job's
    /// timeout bounds it all; a timed-out check is DOWN with its latency
    /// equal to the timeout.
    pub async fn run(&self, job: &CheckJob) -> CheckResult {
        let kind = CheckKind::of_url(&job.url);
        let start = Instant::now();
        let check = async {
            match kind {
                CheckKind::Tcp => super::tcp::check(&self.policy, job, start).await,
                CheckKind::Tls => self.tls.check(&self.policy, job, start).await,
                CheckKind::Dns => self.dns.check(&self.policy, job, start).await,
                CheckKind::Http | CheckKind::Push => Outcome::down(
                    0,
                    format!("connect: a {kind} URL is not checked as tcp, tls or dns"),
                ),
            }
        };
        let limit = Duration::from_millis(job.timeout_ms.max(1) as u64);
        let outcome = match tokio::time::timeout(limit, check).await {
            Ok(outcome) => outcome,
            Err(_) => {
                let what = match kind {
                    CheckKind::Tls => "no TLS handshake",
                    CheckKind::Dns => "no DNS answer",
                    _ => "no connection",
                };
                Outcome::down(
                    job.timeout_ms,
                    format!("timeout: {what} within {} ms", job.timeout_ms),
                )
            }
        };
        outcome.into_result(job)
    }
}

/// Milliseconds since `start`.
pub(crate) fn elapsed_ms(start: Instant) -> i64 {
    i64::try_from(start.elapsed().as_millis()).unwrap_or(i64::MAX)
}

/// Why a connection to a `host:port` target was not made. Its text is the
/// check's error, reason code first.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// The URL names no host or no port.
    #[error("connect: the URL needs a host and a port (scheme://host:port)")]
    NoHostPort,
    /// The name did not resolve.
    #[error("dns: cannot resolve {host}: {source}")]
    Resolve {
        /// The name.
        host: String,
        /// What the system resolver said.
        source: std::io::Error,
    },
    /// The name resolved to no address.
    #[error("dns: no addresses found for {0}")]
    NoAddress(String),
    /// Every address is blocked by the policy.
    #[error("blocked: {0}")]
    Blocked(Blocked),
    /// No address accepted the connection.
    #[error("connect: {}", describe_io(.0))]
    Connect(std::io::Error),
}

/// An I/O error in words, the common ones without the OS's error number.
pub(crate) fn describe_io(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::ConnectionRefused => "connection refused".into(),
        ErrorKind::ConnectionReset => "connection reset by peer".into(),
        ErrorKind::HostUnreachable => "host unreachable".into(),
        ErrorKind::NetworkUnreachable => "network unreachable".into(),
        _ => e.to_string(),
    }
}

/// The host (an IPv6 literal without its brackets) and port of a
/// `tcp://host:port` or `tls://host:port` URL.
pub(crate) fn host_port(url: &str) -> Result<(String, u16), ConnectError> {
    let url = url::Url::parse(url).map_err(|_| ConnectError::NoHostPort)?;
    let host = url_host(&url).ok_or(ConnectError::NoHostPort)?;
    let port = url.port().ok_or(ConnectError::NoHostPort)?;
    Ok((host, port))
}

/// A URL's host as an HTTP URL's is read (IDNA, the numeric IPv4 forms),
/// which the URL parser does not do for schemes it does not know; an IPv6
/// address without its brackets. `None` when there is none.
pub(crate) fn url_host(url: &url::Url) -> Option<String> {
    match url::Host::parse(url.host_str()?).ok()? {
        url::Host::Domain(d) if !d.is_empty() => Some(d),
        url::Host::Domain(_) => None,
        url::Host::Ipv4(v4) => Some(v4.to_string()),
        url::Host::Ipv6(v6) => Some(v6.to_string()),
    }
}

/// The addresses of `host` a check may connect to: resolved by the system
/// resolver (a literal address as itself), those the policy blocks left
/// out. None left is an error naming the first blocked one.
pub(crate) async fn resolve(
    policy: &AddressPolicy,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, ConnectError> {
    let literal = host.parse::<IpAddr>().ok();
    let resolved: Vec<SocketAddr> = match literal {
        Some(ip) => vec![SocketAddr::new(ip, port)],
        None => tokio::net::lookup_host((host, port))
            .await
            .map_err(|source| ConnectError::Resolve {
                host: host.to_owned(),
                source,
            })?
            .collect(),
    };
    let name = literal.is_none().then_some(host);
    policy
        .allowed(resolved, name)
        .map_err(|blocked| match blocked {
            Some(b) => ConnectError::Blocked(b),
            None => ConnectError::NoAddress(host.to_owned()),
        })
}

/// A TCP connection to `host:port`: its allowed addresses are tried in
/// the resolver's order until one accepts (a name with an IPv6 and an IPv4
/// address whose server listens on one only still connects). The caller's
/// timeout bounds the tries.
pub(crate) async fn connect(
    policy: &AddressPolicy,
    host: &str,
    port: u16,
) -> Result<TcpStream, ConnectError> {
    let mut last = None;
    for addr in resolve(policy, host, port).await? {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(ConnectError::Connect(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no address to connect to")
    })))
}
