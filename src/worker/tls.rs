//! The `tls://host:port` check: a TCP connect and a full TLS handshake with
//! SNI = host, the chain verified against the system's roots plus
//! `checks.ca_file` and the host name against the certificate. The leaf's
//! notAfter is kept in the log; one within `cert_expiry_days` (default 14)
//! makes the check DEGRADED, an expired one DOWN.

use crate::domain::time::{Millis, now_ms, to_rfc3339};
use crate::domain::{CheckJob, CheckKind, Status};
use crate::worker::check::Outcome;
use crate::worker::guard::AddressPolicy;
use crate::worker::http::ClientError;
use crate::worker::http::cert::{expiry_reason, not_after_ms};
use crate::worker::net::{connect, describe_io, elapsed_ms, host_port};
use rustls::CertificateError;
use rustls::pki_types::ServerName;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tokio_rustls::TlsConnector;

/// Runs `tls://` checks with one client configuration, built once.
#[derive(Clone)]
pub(crate) struct TlsCheck {
    connector: TlsConnector,
}

impl TlsCheck {
    /// A checker trusting the system's roots and the CAs in `ca_file`.
    pub(crate) fn new(ca_file: Option<&Path>) -> Result<Self, ClientError> {
        let config = crate::tls::verifying_client(ca_file).map_err(|e| ClientError::CaFile {
            path: ca_file.map(|p| p.display().to_string()).unwrap_or_default(),
            reason: match e {
                crate::tls::TlsError::CaFile { why, .. } => why,
                crate::tls::TlsError::Rustls(e) => e.to_string(),
            },
        })?;
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// Connects and shakes hands with the job's `host:port`; UP when the
    /// certificate is trusted, for the host and not near its expiry.
    pub(crate) async fn check(
        &self,
        policy: &AddressPolicy,
        job: &CheckJob,
        start: Instant,
    ) -> Outcome {
        let down = |error: String| Outcome::down(elapsed_ms(start), error);
        let (host, port) = match host_port(&job.url) {
            Ok(target) => target,
            Err(e) => return down(e.to_string()),
        };
        let Ok(server_name) = ServerName::try_from(host.clone()) else {
            return down(format!("tls: {host:?} is not a valid server name"));
        };
        let tcp = match connect(policy, &host, port).await {
            Ok(tcp) => tcp,
            Err(e) => return down(e.to_string()),
        };
        let stream = match self.connector.connect(server_name, tcp).await {
            Ok(stream) => stream,
            Err(e) => return failed_handshake(&e, &host, elapsed_ms(start)),
        };
        let latency = elapsed_ms(start);
        let not_after = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| not_after_ms(leaf));
        drop(stream);
        judge(
            latency,
            not_after,
            job.check.effective_cert_expiry_days(CheckKind::Tls),
            now_ms(),
        )
    }
}

/// A completed handshake's verdict: UP, DEGRADED when the certificate
/// expires within `days`, DOWN when it has expired (a clock that rustls
/// and we read a moment apart).
fn judge(latency_ms: i64, not_after: Option<Millis>, days: Option<u32>, now: Millis) -> Outcome {
    let mut outcome = Outcome::up(latency_ms);
    outcome.cert_expires_at = not_after;
    let (Some(at), Some(days)) = (not_after, days) else {
        return outcome;
    };
    if at <= now {
        outcome.status = Status::Down;
        outcome.error = Some(expired(at));
    } else if let Some(reason) = expiry_reason(at, days, now) {
        outcome.status = Status::Degraded;
        outcome.error = Some(reason);
    }
    outcome
}

/// The error of a certificate that expired at `at`.
fn expired(at: Millis) -> String {
    format!(
        "cert_expiry: the certificate has expired ({})",
        to_rfc3339(at)
    )
}

/// A failed handshake as a DOWN outcome: an expired certificate is
/// `cert_expiry` (with its date, kept as `cert_expires_at`), anything else
/// `tls` saying what a person can fix.
fn failed_handshake(e: &std::io::Error, host: &str, latency_ms: i64) -> Outcome {
    let Some(tls) = rustls_error(e) else {
        let what = match e.kind() {
            std::io::ErrorKind::UnexpectedEof => "the server closed the connection".to_owned(),
            _ => describe_io(e),
        };
        return Outcome::down(latency_ms, format!("tls: handshake failed: {what}"));
    };
    let rustls::Error::InvalidCertificate(cert) = tls else {
        return Outcome::down(latency_ms, format!("tls: handshake failed: {tls}"));
    };
    let error = match cert {
        CertificateError::Expired => "cert_expiry: the certificate has expired".to_owned(),
        CertificateError::ExpiredContext { not_after, .. } => {
            let at = i64::try_from(not_after.as_secs())
                .unwrap_or(i64::MAX)
                .saturating_mul(1000);
            let mut down = Outcome::down(latency_ms, expired(at));
            down.cert_expires_at = Some(at);
            return down;
        }
        CertificateError::NotValidForName => format!("tls: the certificate is not valid for {host}"),
        CertificateError::NotValidForNameContext { presented, .. } => format!(
            "tls: the certificate is not valid for {host} (it names {})",
            presented
                .iter()
                .map(|name| presented_name(name))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        CertificateError::UnknownIssuer => {
            "tls: the certificate is not trusted (unknown issuer; an internal CA goes in checks.ca_file)"
                .to_owned()
        }
        other => format!("tls: the certificate is not accepted: {other}"),
    };
    Outcome::down(latency_ms, error)
}

/// The rustls error inside an I/O error from tokio-rustls (which wraps it,
/// and an io::Error's `source()` skips what it wraps).
fn rustls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    let mut inner = e.get_ref()?;
    // Wrapped at most a couple of times; bounded so a cycle cannot hang.
    for _ in 0..4 {
        if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        inner = inner.downcast_ref::<std::io::Error>()?.get_ref()?;
    }
    None
}

/// A name the certificate presents, as rustls words it (`DnsName("db")`,
/// `IpAddress(10.0.0.1)`), without the wrapper a reader has no use for.
fn presented_name(raw: &str) -> &str {
    raw.split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .map(|inner| inner.trim_matches('"'))
        .unwrap_or(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = 1_800_000_000_000;
    const DAY: Millis = 86_400_000;

    #[test]
    fn a_certificate_near_its_expiry_degrades_and_an_expired_one_is_down() {
        let up = judge(5, Some(NOW + 30 * DAY), Some(14), NOW);
        assert_eq!(
            (up.status, up.cert_expires_at),
            (Status::Up, Some(NOW + 30 * DAY))
        );
        let soon = judge(5, Some(NOW + 3 * DAY), Some(14), NOW);
        assert_eq!(soon.status, Status::Degraded);
        assert!(
            soon.error
                .as_deref()
                .is_some_and(|e| e.starts_with("cert_expiry: the certificate expires in 3 days (")),
            "{soon:?}"
        );
        let gone = judge(5, Some(NOW - DAY), Some(14), NOW);
        assert_eq!(gone.status, Status::Down);
        assert_eq!(gone.error, Some(expired(NOW - DAY)));
        assert_eq!(judge(5, None, Some(14), NOW).status, Status::Up);
    }

    #[test]
    fn presented_names_lose_rustls_wrappers() {
        assert_eq!(presented_name("DnsName(\"localhost\")"), "localhost");
        assert_eq!(presented_name("IpAddress(127.0.0.1)"), "127.0.0.1");
        assert_eq!(presented_name("plain"), "plain");
    }

    #[test]
    fn handshake_failures_name_their_reason() {
        let wrap = |e: rustls::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        let wrong = failed_handshake(
            &wrap(CertificateError::NotValidForName.into()),
            "db.internal",
            3,
        );
        assert_eq!(
            wrong.error.as_deref(),
            Some("tls: the certificate is not valid for db.internal")
        );
        let old = failed_handshake(&wrap(CertificateError::Expired.into()), "x", 3);
        assert!(
            old.error
                .as_deref()
                .is_some_and(|e| e.starts_with("cert_expiry: "))
        );
        let eof = failed_handshake(
            &std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "eof"),
            "x",
            3,
        );
        assert!(eof.error.as_deref().is_some_and(|e| e.starts_with("tls: ")));
    }
}
