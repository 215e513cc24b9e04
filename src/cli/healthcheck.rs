//! `healthmon healthcheck`: is a monitor ready? For a container's
//! HEALTHCHECK, which has no curl in the image.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// Most bytes of a not-ready answer quoted in the reason.
const REASON_MAX_CHARS: usize = 200;

/// The `/readyz` URL of a monitor listening on `bind`; an unspecified
/// address (`0.0.0.0`, `::`) is probed on loopback, where it also listens.
pub fn readyz_url_for_bind(bind: SocketAddr) -> String {
    let ip = match bind.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}/readyz", SocketAddr::new(ip, bind.port()))
}

/// The URL to probe for `--url`: a bare `HOST:PORT` gets `http://`, and a
/// URL without a path gets `/readyz`.
pub fn readyz_url_for(given: &str) -> Result<String, String> {
    let given = given.trim();
    let with_scheme = if given.contains("://") {
        given.to_owned()
    } else {
        format!("http://{given}")
    };
    let mut url = url::Url::parse(&with_scheme).map_err(|e| format!("--url {given:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("--url {given:?}: use http:// or https://"));
    }
    if url.path() == "/" || url.path().is_empty() {
        url.set_path("/readyz");
    }
    Ok(url.into())
}

/// Asks `url` once, within `timeout`: `Ok` on a 2xx answer, else why not,
/// in one line.
pub async fn probe(url: &str, timeout: Duration) -> Result<(), String> {
    // reqwest is built without a default TLS provider; an error only means
    // one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(timeout)
        // The monitor is local: a proxy from the environment (HTTP_PROXY in
        // a container) must not be asked instead.
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
    let answer = client.get(url).send().await.map_err(|e| {
        if e.is_timeout() {
            format!("{url}: no answer within {}s", timeout.as_secs())
        } else {
            format!("cannot reach {url}: {}", network_cause(&e))
        }
    })?;
    let status = answer.status();
    if status.is_success() {
        return Ok(());
    }
    // The body says what is not ready (store, bus); bounded by the timeout.
    let body = answer.text().await.unwrap_or_default();
    let body: String = body
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(REASON_MAX_CHARS)
        .collect();
    Err(if body.is_empty() {
        format!("{url} answered {status}")
    } else {
        format!("{url} answered {status}: {body}")
    })
}

/// "connection refused" and the like from a request error's sources (also
/// what `healthmon apply` and `export` say when the monitor is not there).
pub(crate) fn network_cause(e: &reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut last = e.to_string();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return "connection refused (is the monitor running?)".to_owned();
            }
            return io.to_string();
        }
        last = s.to_string();
        source = s.source();
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_from_the_bind_or_the_flag() {
        assert_eq!(
            readyz_url_for_bind("0.0.0.0:8088".parse().unwrap()),
            "http://127.0.0.1:8088/readyz"
        );
        assert_eq!(
            readyz_url_for_bind("[::]:9".parse().unwrap()),
            "http://[::1]:9/readyz"
        );
        assert_eq!(
            readyz_url_for_bind("10.1.2.3:80".parse().unwrap()),
            "http://10.1.2.3:80/readyz"
        );
        assert_eq!(
            readyz_url_for("127.0.0.1:8088").unwrap(),
            "http://127.0.0.1:8088/readyz"
        );
        assert_eq!(
            readyz_url_for("https://mon.example/").unwrap(),
            "https://mon.example/readyz"
        );
        assert_eq!(
            readyz_url_for("http://h:1/healthz").unwrap(),
            "http://h:1/healthz"
        );
        assert!(readyz_url_for("ftp://h/").is_err());
    }
}
