//! The broker URL: `amqp://user:pass@host:port/vhost?heartbeat=N` read into
//! amqprs connection arguments. Logs show it through the crate's one URL
//! redactor, [`redact_url`].

use crate::bus::BusError;
use crate::domain::service::redact_url;
use amqprs::connection::OpenConnectionArguments;

/// Connection arguments from an `amqp://` URL, and `host:port/vhost` for logs
/// (never the password).
pub(super) fn connection_args(
    url: &str,
    heartbeat_s: u16,
) -> Result<(OpenConnectionArguments, String), BusError> {
    let bad = |why: String| BusError::InvalidUrl(why);
    let u = url::Url::parse(url).map_err(|e| bad(format!("{}: {e}", redact_url(url))))?;
    match u.scheme() {
        "amqp" => {}
        "amqps" => {
            return Err(bad(
                "amqps:// (TLS) is not supported by this build; use amqp:// (for example \
                 through a local TLS tunnel)"
                    .into(),
            ));
        }
        other => return Err(bad(format!("unknown scheme {other:?}; use amqp://"))),
    }
    let host = u
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("no host".into()))?;
    let port = u.port().unwrap_or(5672);
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
    for (k, v) in u.query_pairs() {
        if k == "heartbeat" {
            heartbeat = v
                .parse()
                .map_err(|_| bad(format!("heartbeat={v} is not a number of seconds")))?;
        }
    }
    let mut args = OpenConnectionArguments::new(host, port, &user, &password);
    args.virtual_host(&vhost).heartbeat(heartbeat);
    Ok((args, format!("{host}:{port}/{vhost}")))
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
        assert_eq!(shown, "10.0.0.1:5673//");
        assert_eq!(a.get_virtual_host(), "/");
        assert_eq!(a.get_heartbeat(), 10);
        let (a, _) = connection_args("amqp://h/prod?heartbeat=3", 10).unwrap();
        assert_eq!(a.get_virtual_host(), "prod");
        assert_eq!(a.get_port(), 5672);
        assert_eq!(a.get_heartbeat(), 3);
        let (a, _) = connection_args("amqp://h", 10).unwrap();
        assert_eq!(a.get_virtual_host(), "/");
        assert!(matches!(
            connection_args("amqps://h/", 10),
            Err(BusError::InvalidUrl(_))
        ));
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
