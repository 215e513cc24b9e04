//! A service's target URL, for every check kind (DESIGN.md "Check kinds"):
//! `http(s)://` as the URL parser reads it, and the other kinds' small
//! grammars read by hand, because the URL parser treats the host of a
//! scheme it does not know as opaque text (no IDNA, `1.2.3.4` is a name, not
//! an address), which would let an address past the registration check
//! written in a form the resolver later reads as a blocked one.

use super::{MAX_URL_LEN, check_url};
use crate::domain::check_kind::CheckKind;
use std::net::IpAddr;

/// The record types a `dns://` check may ask for.
pub const DNS_TYPES: [&str; 6] = ["A", "AAAA", "CNAME", "MX", "TXT", "NS"];

/// The DNS port a `dns://` resolver is asked on when the URL names none.
pub const DNS_PORT: u16 = 53;

/// Checks a service's target URL and returns the normalised form that is
/// stored: `http(s)://` as [`check_url`] reads it, `tcp://host:port`,
/// `tls://host:port`, `dns://[resolver[:port]]/name?type=T` (the type
/// always written out, upper case) or `push://`. Hosts are lower case, names
/// in their ASCII (IDNA) form, addresses in their usual notation. A URL
/// refused for want of a scheme (`localhost:8080`, `example.com/health`)
/// says which `http://` URL was probably meant.
pub fn check_target_url(raw: &str) -> Result<String, String> {
    read_target_url(raw).map_err(|e| match missing_scheme(raw) {
        Some(meant) => {
            format!("must start with a scheme such as http:// or https://; did you mean {meant:?}?")
        }
        None => e,
    })
}

/// `http://` and `raw`, when `raw` is a host with an optional port, path,
/// query or fragment but no scheme, and that makes a good URL. The URL
/// standard reads `localhost:8080` as the scheme `localhost`, so the form
/// is recognised by hand: the text before the first `/`, `?` or `#` must be
/// a host (a DNS name or an address, IPv6 in brackets) and, after a `:`, a
/// port. Not when the text before a `:` is one of our schemes, whose own
/// errors say more.
fn missing_scheme(raw: &str) -> Option<String> {
    let raw = raw.trim();
    if raw.contains("://") {
        return None;
    }
    if let Some((scheme, _)) = raw.split_once(':')
        && CheckKind::of_scheme(scheme).is_some()
    {
        return None;
    }
    let authority = raw.split(['/', '?', '#']).next().unwrap_or(raw);
    let port = if let Some(inner) = authority.strip_prefix('[') {
        let (v6, after) = inner.split_once(']')?;
        v6.parse::<std::net::Ipv6Addr>().ok()?;
        match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        }
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        host_name(host).ok()?;
        port
    };
    if let Some(p) = port {
        parse_port(p).ok()?;
    }
    let meant = format!("http://{raw}");
    check_url(&meant).ok()?;
    Some(meant)
}

fn read_target_url(raw: &str) -> Result<String, String> {
    let Some((scheme, rest)) = raw.trim().split_once(':') else {
        // No scheme at all: the URL parser says so in its own words.
        return check_url(raw);
    };
    let kind = CheckKind::of_scheme(scheme);
    if matches!(kind, None | Some(CheckKind::Http)) {
        return check_url(raw).map_err(|e| {
            if kind.is_none() && e.starts_with("scheme") {
                format!(
                    "scheme must be one of http, https, tcp, tls, dns or push, not {:?}",
                    scheme.to_ascii_lowercase()
                )
            } else {
                e
            }
        });
    }
    // The same rules as http(s) for what surrounds the URL itself.
    precheck(raw)?;
    let scheme = scheme.to_ascii_lowercase();
    let Some(rest) = rest.trim_end().strip_prefix("//") else {
        return Err(format!("must be written {}", form(&scheme)));
    };
    let normalised = match kind {
        Some(CheckKind::Tcp | CheckKind::Tls) => {
            let authority = rest.strip_suffix('/').unwrap_or(rest);
            if authority.contains('/') {
                return Err(format!("must have no path: {}", form(&scheme)));
            }
            let (host, port) = host_port(authority, None, &scheme)?;
            format!("{scheme}://{host}:{port}")
        }
        Some(CheckKind::Dns) => dns(rest)?,
        _ if rest.is_empty() => "push://".to_owned(),
        _ => {
            return Err(
                "must be just push:// (the address a job pings is made for the service and \
                 shown once as push_url)"
                    .to_owned(),
            );
        }
    };
    if normalised.len() > MAX_URL_LEN {
        return Err(format!(
            "must be at most {MAX_URL_LEN} bytes once normalised"
        ));
    }
    Ok(normalised)
}

/// How a kind's URL is written, for error messages.
fn form(scheme: &str) -> String {
    match scheme {
        "dns" => "dns://[resolver[:port]]/name?type=A".to_owned(),
        "push" => "push://".to_owned(),
        other => format!("{other}://host:port"),
    }
}

/// What every target URL must be: no control characters (CR, LF and NUL
/// included), not empty, not too long.
pub(super) fn precheck(raw: &str) -> Result<(), String> {
    // The URL parser silently drops tabs and newlines and would store a URL
    // other than the one given: refuse them, with NUL and the rest.
    if let Some(c) = raw.chars().find(|c| c.is_control()) {
        return Err(format!(
            "must not contain control characters (found U+{:04X})",
            u32::from(c)
        ));
    }
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("must not be empty".into());
    }
    if raw.len() > MAX_URL_LEN {
        return Err(format!(
            "must be at most {MAX_URL_LEN} bytes (got {})",
            raw.len()
        ));
    }
    Ok(())
}

/// Reads `host[:port]` (an IPv6 address in brackets), with `default` as the
/// port when none is given (`None`: a port is required). Returns the host
/// as it is stored and the port.
fn host_port(authority: &str, default: Option<u16>, scheme: &str) -> Result<(String, u16), String> {
    if authority.contains('@') {
        return Err("must not contain user info (user@ or user:password@)".into());
    }
    if authority.contains(['?', '#']) {
        return Err(format!("must have no query or fragment: {}", form(scheme)));
    }
    let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
        let Some((v6, after)) = inner.split_once(']') else {
            return Err("has an IPv6 address without its closing ]".into());
        };
        match after {
            "" => (&authority[..v6.len() + 2], None),
            _ => match after.strip_prefix(':') {
                Some(port) => (&authority[..v6.len() + 2], Some(port)),
                None => return Err(format!("must be written {}", form(scheme))),
            },
        }
    } else {
        match authority.split_once(':') {
            Some((_, p)) if p.contains(':') => {
                return Err("an IPv6 address must be written in brackets, e.g. [::1]".into());
            }
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!("must have a host: {}", form(scheme)));
    }
    let port = match (port, default) {
        (Some(p), _) => parse_port(p)?,
        (None, Some(d)) => d,
        (None, None) => return Err(format!("must give a port: {}", form(scheme))),
    };
    Ok((host_name(host)?, port))
}

fn parse_port(p: &str) -> Result<u16, String> {
    let bad = || format!("port must be between 1 and 65535 (got {p:?})");
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 5 {
        return Err(bad());
    }
    match p.parse::<u32>() {
        Ok(0) => Err("port must be between 1 and 65535 (got 0)".into()),
        Ok(n) => u16::try_from(n).map_err(|_| bad()),
        Err(_) => Err(bad()),
    }
}

/// A host as an HTTP URL's would be read (IDNA, the numeric IPv4 forms,
/// lower case), which must then be an address or a DNS name.
fn host_name(raw: &str) -> Result<String, String> {
    match url::Host::parse(raw) {
        Ok(url::Host::Domain(d)) => {
            dns_name(&d).map_err(|e| format!("has an invalid host {raw:?}: {e}"))?;
            Ok(d)
        }
        Ok(host) => Ok(host.to_string()),
        Err(e) => Err(format!("has an invalid host {raw:?}: {e}")),
    }
}

/// Whether `name` is a DNS name: labels of letters, digits, `-` and `_`
/// (service labels such as `_dmarc`), at most 63 bytes each and 253 in all,
/// an optional final dot.
fn dns_name(name: &str) -> Result<(), String> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    if bare.is_empty() {
        return Err("a DNS name must not be empty".into());
    }
    if bare.len() > 253 {
        return Err("a DNS name must be at most 253 bytes".into());
    }
    for label in bare.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("each label of a DNS name must be 1 to 63 bytes".into());
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "label {label:?} may hold only letters, digits, - and _"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {label:?} must not start or end with -"));
        }
    }
    Ok(())
}

/// Reads what follows `dns://`.
fn dns(rest: &str) -> Result<String, String> {
    if rest.contains('#') {
        return Err("must have no fragment: dns://[resolver[:port]]/name?type=A".into());
    }
    let Some((authority, path)) = rest.split_once('/') else {
        return Err("must name what to look up: dns://[resolver[:port]]/name?type=A".into());
    };
    let resolver = if authority.is_empty() {
        String::new()
    } else {
        let port_given = authority.rsplit_once(']').map_or(authority, |(_, p)| p);
        let (host, port) =
            host_port(authority, Some(DNS_PORT), "dns").map_err(|e| format!("resolver: {e}"))?;
        if port_given.contains(':') {
            format!("{host}:{port}")
        } else {
            host
        }
    };
    let (name, query) = path.split_once('?').unwrap_or((path, ""));
    if name.is_empty() {
        return Err("must name what to look up: dns://[resolver[:port]]/name?type=A".into());
    }
    if name.contains('/') {
        return Err("the name to look up must not contain /".into());
    }
    let name = match url::Host::parse(name) {
        Ok(url::Host::Domain(d)) => {
            dns_name(&d).map_err(|e| format!("the name to look up is invalid: {e}"))?;
            d
        }
        Ok(_) => {
            return Err("the name to look up must be a DNS name, not an address".into());
        }
        Err(e) => return Err(format!("the name to look up is invalid: {e}")),
    };
    let record = record_type(query)?;
    Ok(format!("dns://{resolver}/{name}?type={record}"))
}

/// The `type` of a `dns://` query string (A when none), the only parameter.
fn record_type(query: &str) -> Result<&'static str, String> {
    let mut found: Option<&'static str> = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !key.eq_ignore_ascii_case("type") {
            return Err(format!(
                "unknown query parameter {key:?}: a dns URL takes only type"
            ));
        }
        if found.is_some() {
            return Err("type is given twice".into());
        }
        let Some(t) = DNS_TYPES.iter().find(|t| t.eq_ignore_ascii_case(value)) else {
            return Err(format!(
                "type must be one of {} (got {value:?})",
                DNS_TYPES.join(", ")
            ));
        };
        found = Some(t);
    }
    Ok(found.unwrap_or("A"))
}

/// The literal address a stored `tcp://`, `tls://` or `dns://` URL connects
/// to (a dns resolver's), checked against target safety at registration.
/// Names are judged when resolved, at check time; so are `http(s)://` URLs,
/// whose blocked literals are DOWN `blocked:` as before (DESIGN.md allows
/// either, and their logs say why).
pub fn literal_target(url: &str) -> Option<IpAddr> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = match CheckKind::of_scheme(scheme)? {
        CheckKind::Tcp | CheckKind::Tls => rest,
        CheckKind::Dns => rest.split_once('/').map_or(rest, |(a, _)| a),
        CheckKind::Http | CheckKind::Push => return None,
    };
    let host = match authority.strip_prefix('[') {
        Some(inner) => inner.split_once(']').map_or(inner, |(h, _)| h),
        None => authority.split_once(':').map_or(authority, |(h, _)| h),
    };
    host.parse().ok()
}
