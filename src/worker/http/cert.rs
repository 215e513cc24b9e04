//! The server's certificate: its expiry date (kept in the log and judged
//! against `cert_expiry_days`), and the handshake failures that are about
//! the certificate rather than TLS at large.

use super::find_tls_error;
use crate::domain::time::{Millis, to_rfc3339};
use crate::worker::check::Outcome;
use rustls::CertificateError;
use x509_cert::der::Decode;

const HOUR_MS: Millis = 3_600_000;
const DAY_MS: Millis = 24 * HOUR_MS;

/// When the DER certificate expires (its notAfter, epoch milliseconds);
/// `None` when it cannot be read.
pub(crate) fn not_after_ms(der: &[u8]) -> Option<Millis> {
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    let after = cert.tbs_certificate.validity.not_after.to_unix_duration();
    Millis::try_from(after.as_millis()).ok()
}

/// A handshake that failed over the certificate itself, as a DOWN outcome:
/// an expired certificate is `cert_expiry` (with its date when rustls gives
/// it), one for another host is `tls` saying so. `None` for any other
/// failure, which [`super::describe`] words.
pub(super) fn failed_handshake(e: &reqwest::Error, latency_ms: i64) -> Option<Outcome> {
    let rustls::Error::InvalidCertificate(cert) = find_tls_error(e)? else {
        return None;
    };
    match cert {
        CertificateError::Expired => Some(Outcome::down(
            latency_ms,
            "cert_expiry: the certificate has expired",
        )),
        CertificateError::ExpiredContext { not_after, .. } => {
            let at = Millis::try_from(not_after.as_secs())
                .ok()?
                .saturating_mul(1000);
            let mut down = Outcome::down(
                latency_ms,
                format!(
                    "cert_expiry: the certificate has expired ({})",
                    to_rfc3339(at)
                ),
            );
            down.cert_expires_at = Some(at);
            Some(down)
        }
        CertificateError::NotValidForName => Some(Outcome::down(
            latency_ms,
            "tls: the certificate is not valid for the host name",
        )),
        CertificateError::NotValidForNameContext { .. } => Some(Outcome::down(
            latency_ms,
            format!("tls: the certificate is not valid for the host name ({cert})"),
        )),
        _ => None,
    }
}

/// Why a certificate expiring at `not_after` makes a passing check
/// DEGRADED at `now` with a threshold of `days`, if it does.
pub(crate) fn expiry_reason(not_after: Millis, days: u32, now: Millis) -> Option<String> {
    let left = not_after - now;
    if left > Millis::from(days) * DAY_MS {
        return None;
    }
    let date = to_rfc3339(not_after);
    // Rounded, not floored: a certificate made to last three days reads
    // "3 days" a second later; the exact date follows anyway.
    let hours = (left + HOUR_MS / 2) / HOUR_MS;
    let when = match hours {
        _ if left <= 0 => {
            return Some(format!("cert_expiry: the certificate has expired ({date})"));
        }
        0 => "in less than an hour".to_owned(),
        1 => "in 1 hour".to_owned(),
        2..48 => format!("in {hours} hours"),
        _ => format!("in {} days", (left + DAY_MS / 2) / DAY_MS),
    };
    Some(format!(
        "cert_expiry: the certificate expires {when} ({date})"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = 1_800_000_000_000;

    #[test]
    fn expiry_within_the_threshold_says_when() {
        let reason = |left| expiry_reason(NOW + left, 14, NOW);
        assert_eq!(reason(15 * DAY_MS), None);
        assert_eq!(reason(14 * DAY_MS + 1), None);
        let three = reason(3 * DAY_MS - 1000).unwrap();
        assert!(
            three.starts_with("cert_expiry: the certificate expires in 3 days ("),
            "{three}"
        );
        assert!(three.ends_with(&format!("({})", to_rfc3339(NOW + 3 * DAY_MS - 1000))));
        assert!(reason(30 * HOUR_MS).unwrap().contains("in 30 hours"));
        assert!(reason(HOUR_MS).unwrap().contains("in 1 hour ("));
        assert!(reason(10_000).unwrap().contains("in less than an hour"));
        assert!(reason(0).unwrap().contains("has expired"));
        assert_eq!(expiry_reason(NOW + DAY_MS, 0, NOW), None);
    }

    #[test]
    fn a_certificate_that_is_not_der_has_no_date() {
        assert_eq!(not_after_ms(b"not a certificate"), None);
    }
}
