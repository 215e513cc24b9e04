//! The broker URL: `amqp://user:pass@host:port/vhost?heartbeat=N` read into
//! amqprs connection arguments; `amqps://` (port 5671 by default) connects
//! over TLS, the certificate verified against the system's roots and, with
//! `?cacertfile=PATH` (the parameter's name in RabbitMQ's own URI spec), an
//! internal CA. Logs show the URL through the crate's one URL redactor,
//! [`redact_url`].

use crate::bus::BusError;
use crate::domain::service::redact_url;
use amqprs::connection::OpenConnectionArguments;

/// Connection arguments from an `amqp://` or `amqps://` URL, and
/// `scheme://host:port/vhost` for logs (never the password).
pub(super) fn connection_args(
    url: &str,
    heartbeat_s: u16,
) -> Result<(OpenConnectionArguments, String), BusError> {
    let bad = |why: String| BusError::InvalidUrl(why);
    let u = url::Url::parse(url).map_err(|e| bad(format!("{}: {e}", redact_url(url))))?;
    let tls = match u.scheme() {
        "amqp" => false,
        "amqps" => true,
        other => {
            return Err(bad(format!(
                "unknown scheme {other:?}; use amqp:// or amqps://"
            )));
        }
    };
    let host = u
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("no host".into()))?;
    let port = u.port().unwrap_or(if tls { 5671 } else { 5672 });
    let user = match percent_decode(u.username()) {
        s if s.is_empty() => "guest".to_owned(),
        s => s,
    };
    let password = u
        .password()
        .map(percent_decode)
        .unwrap_or_else(|| "guest".to_owned());
    let vhost = match u.path() {
        "" | "/" => "/".to_owned(),
        p => percent_decode(&p[1..]),
    };
    let mut heartbeat = heartbeat_s;
    let mut ca_file = None;
    for (k, v) in u.query_pairs() {
        match &*k {
            "heartbeat" => {
                heartbeat = v
                    .parse()
                    .map_err(|_| bad(format!("heartbeat={v} is not a number of seconds")))?;
            }
            "cacertfile" if tls => ca_file = Some(std::path::PathBuf::from(&*v)),
            "cacertfile" => return Err(bad("cacertfile needs amqps://".into())),
            _ => {}
        }
    }
    let mut args = OpenConnectionArguments::new(host, port, &user, &password);
    args.virtual_host(&vhost).heartbeat(heartbeat);
    if tls {
        // Built once here, so a bad CA file stops start-up naming it.
        let config = crate::tls::verifying_client(ca_file.as_deref())
            .map_err(|e| bad(format!("cacertfile: {e}")))?;
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        args.tls_adaptor(amqprs::tls::TlsAdaptor::new(connector, host.to_owned()));
    }
    let scheme = if tls { "amqps" } else { "amqp" };
    Ok((args, format!("{scheme}://{host}:{port}/{vhost}")))
}

/// `%XX` escapes decoded; a user name, password or vhost may hold `@`, `:`
/// or `/` only escaped.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_port_vhost_and_credentials() {
        let (a, shown) = connection_args("amqp://u%40x:p%2Fw@10.0.0.1:5673/%2f", 10).unwrap();
        assert_eq!(shown, "amqp://10.0.0.1:5673//");
        assert_eq!(a.get_virtual_host(), "/");
        assert_eq!(a.get_heartbeat(), 10);
        let (a, _) = connection_args("amqp://h/prod?heartbeat=3", 10).unwrap();
        assert_eq!(a.get_virtual_host(), "prod");
        assert_eq!(a.get_port(), 5672);
        assert_eq!(a.get_heartbeat(), 3);
        let (a, _) = connection_args("amqp://h", 10).unwrap();
        assert_eq!(a.get_virtual_host(), "/");
        let (a, shown) = connection_args("amqps://h/", 10).unwrap();
        assert_eq!((a.get_port(), shown.as_str()), (5671, "amqps://h:5671//"));
        assert!(a.get_tls_adaptor().is_some());
        assert!(
            connection_args("amqp://h/", 10)
                .unwrap()
                .0
                .get_tls_adaptor()
                .is_none()
        );
        for url in [
            "amqp://h/?cacertfile=/ca.pem",
            "amqps://h/?cacertfile=/nonexistent/ca.pem",
        ] {
            assert!(
                matches!(connection_args(url, 10), Err(BusError::InvalidUrl(e)) if e.contains("cacertfile")),
                "{url}"
            );
        }
        assert!(matches!(
            connection_args("http://h/", 10),
            Err(BusError::InvalidUrl(_))
        ));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb%40"), "a/b@");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
