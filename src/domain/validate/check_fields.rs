//! The kind-specific fields of a service body (DESIGN.md "Check kinds"),
//! read into [`CheckOptions`]: each field's own rules first, then whether
//! the URL's kind takes it.
//!
//! Header values are write-only: answers show `***`, so a body that sends
//! `***` back keeps the stored value (a read-edit-write round trip keeps the
//! secret). A kept value goes only where it went before: when the URL's
//! origin changes, every header must be sent again, or a write key could
//! point a stored token at a host of its choosing and read it there.

use super::{FieldError, Fields, MAX_INTERVAL_S, check_whole};
use crate::domain::check_kind::{CheckKind, CheckOptions, HIDDEN, JsonAssertion};
use crate::domain::time::Seconds;
use serde_json::Value;
use std::collections::BTreeMap;

/// The kind-specific field names a body may carry.
pub(super) const NAMES: [&str; 11] = [
    "method",
    "headers",
    "body",
    "follow_redirects",
    "body_contains",
    "body_not_contains",
    "json",
    "degraded_latency_ms",
    "cert_expiry_days",
    "expect",
    "grace",
];

/// HTTP methods a check may use.
pub const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
/// Most request headers.
pub const MAX_HEADERS: usize = 32;
/// Longest header name, bytes.
pub const MAX_HEADER_NAME_LEN: usize = 256;
/// Longest header value, bytes.
pub const MAX_HEADER_VALUE_LEN: usize = 8 * 1024;
/// Largest request body, bytes: half of the API's own 64 KiB limit on a
/// whole service body, so one that JSON escaping grows still fits.
pub const MAX_REQUEST_BODY: usize = 32 * 1024;
/// Longest `body_contains` / `body_not_contains` / `expect` entry, bytes.
pub const MAX_MATCH_LEN: usize = 1024;
/// Most `json` assertions.
pub const MAX_JSON_ASSERTIONS: usize = 32;
/// Longest JSON pointer, bytes.
pub const MAX_POINTER_LEN: usize = 1024;
/// Largest `equals` value, bytes of compact JSON.
pub const MAX_EQUALS_LEN: usize = 4 * 1024;
/// Most `expect` entries.
pub const MAX_EXPECT: usize = 32;
/// Largest `cert_expiry_days`.
pub const MAX_CERT_EXPIRY_DAYS: u32 = 365;
/// Largest `grace`, seconds (one day).
pub const MAX_GRACE_S: i64 = 86_400;

/// Headers the client itself must set: framing, the connection, proxies.
/// A user's value would desynchronise the request or aim it elsewhere.
const FORBIDDEN_HEADERS: [&str; 8] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
];

/// The options a body gives, and which headers kept their stored value.
pub(super) struct Read {
    pub(super) options: CheckOptions,
    /// Header names whose stored value is kept (sent back as `***`, or not
    /// sent by a PATCH that leaves `headers` alone).
    pub(super) kept: Vec<String>,
    /// Fields whose value was bad (and said so); they keep base's value.
    pub(super) bad: Vec<&'static str>,
}

/// Reads the check fields of a body over `base` (the current options for
/// a PATCH, none for a POST or PUT): a field given replaces base's, `null`
/// unsets it. `stored` holds the header values a `***` keeps.
pub(super) fn read(
    fields: &Fields<'_>,
    base: CheckOptions,
    stored: Option<&CheckOptions>,
    errors: &mut Vec<FieldError>,
) -> Read {
    let mut o = base;
    let mut bad = Vec::new();
    let mut set = |name: &'static str, slot: &mut dyn FnMut(Option<&str>, &Value) -> bool| {
        if let Some((f, v)) = fields.get(name)
            && !slot(if v.is_null() { None } else { Some(f) }, v)
        {
            bad.push(name);
        }
    };
    // Each closure stores the field (None for null) and says whether it
    // was good; errors are collected in `errs` and appended at the end.
    let mut errs = Vec::new();
    set("method", &mut |f, v| {
        assign(&mut o.method, f.map(|f| method(f, v, &mut errs)))
    });
    set("body", &mut |f, v| {
        assign(
            &mut o.body,
            f.map(|f| text(f, v, 0, MAX_REQUEST_BODY, &mut errs)),
        )
    });
    set("follow_redirects", &mut |f, v| {
        assign(&mut o.follow_redirects, f.map(|f| boolean(f, v, &mut errs)))
    });
    set("body_contains", &mut |f, v| {
        assign(
            &mut o.body_contains,
            f.map(|f| text(f, v, 1, MAX_MATCH_LEN, &mut errs)),
        )
    });
    set("body_not_contains", &mut |f, v| {
        assign(
            &mut o.body_not_contains,
            f.map(|f| text(f, v, 1, MAX_MATCH_LEN, &mut errs)),
        )
    });
    set("json", &mut |f, v| {
        assign(&mut o.json, f.map(|f| json_assertions(f, v, &mut errs)))
    });
    set("degraded_latency_ms", &mut |f, v| {
        assign(
            &mut o.degraded_latency_ms,
            f.map(|f| check_whole(f, v, (1, MAX_INTERVAL_S * 1000), "milliseconds", &mut errs)),
        )
    });
    set("cert_expiry_days", &mut |f, v| {
        let days = f.map(|f| {
            check_whole(
                f,
                v,
                (1, i64::from(MAX_CERT_EXPIRY_DAYS)),
                "days",
                &mut errs,
            )
            .and_then(|d| u32::try_from(d).ok())
        });
        assign(&mut o.cert_expiry_days, days)
    });
    set("expect", &mut |f, v| {
        assign(&mut o.expect, f.map(|f| expect(f, v, &mut errs)))
    });
    set("grace", &mut |f, v| {
        let grace =
            f.map(|f| check_whole(f, v, (0, MAX_GRACE_S), "seconds", &mut errs).map(Seconds));
        assign(&mut o.grace, grace)
    });
    let mut kept = Vec::new();
    match fields.get("headers") {
        Some((_, Value::Null)) => o.headers = None,
        Some((f, v)) => {
            let stored = stored.and_then(|s| s.headers.as_ref());
            match headers(f, v, stored, &mut kept, &mut errs) {
                Some(h) => o.headers = Some(h),
                None => bad.push("headers"),
            }
        }
        // Left alone (a PATCH): every stored header is kept as it is.
        None => kept.extend(o.headers.iter().flat_map(|h| h.keys().cloned())),
    }
    errors.append(&mut errs);
    Read {
        options: o,
        kept,
        bad,
    }
}

/// Stores a parsed field: `None` (null) unsets, `Some(None)` was bad.
fn assign<T>(slot: &mut Option<T>, parsed: Option<Option<T>>) -> bool {
    match parsed {
        None => {
            *slot = None;
            true
        }
        Some(Some(value)) => {
            *slot = Some(value);
            true
        }
        Some(None) => false,
    }
}

fn method(f: &str, v: &Value, errors: &mut Vec<FieldError>) -> Option<String> {
    let found = v
        .as_str()
        .and_then(|s| METHODS.iter().find(|m| m.eq_ignore_ascii_case(s.trim())));
    if found.is_none() {
        errors.push(FieldError::new(
            f,
            format!("must be one of {}", METHODS.join(", ")),
        ));
    }
    found.map(|m| (*m).to_owned())
}

fn text(
    f: &str,
    v: &Value,
    min: usize,
    max: usize,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    let Some(s) = v.as_str() else {
        errors.push(FieldError::new(f, "must be a string"));
        return None;
    };
    if s.len() < min {
        errors.push(FieldError::new(f, "must not be empty (null unsets it)"));
        None
    } else if s.len() > max {
        errors.push(FieldError::new(
            f,
            format!("must be at most {max} bytes (got {})", s.len()),
        ));
        None
    } else {
        Some(s.to_owned())
    }
}

fn boolean(f: &str, v: &Value, errors: &mut Vec<FieldError>) -> Option<bool> {
    let b = v.as_bool();
    if b.is_none() {
        errors.push(FieldError::new(f, "must be true, false or null"));
    }
    b
}

fn expect(f: &str, v: &Value, errors: &mut Vec<FieldError>) -> Option<Vec<String>> {
    let items = match v.as_array() {
        Some(items) if (1..=MAX_EXPECT).contains(&items.len()) => items,
        _ => {
            errors.push(FieldError::new(
                f,
                format!("must be a list of 1 to {MAX_EXPECT} strings, or null"),
            ));
            return None;
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        out.push(text(&format!("{f}[{i}]"), item, 1, MAX_MATCH_LEN, errors)?);
    }
    Some(out)
}

fn json_assertions(f: &str, v: &Value, errors: &mut Vec<FieldError>) -> Option<Vec<JsonAssertion>> {
    let items = match v.as_array() {
        Some(items) if (1..=MAX_JSON_ASSERTIONS).contains(&items.len()) => items,
        _ => {
            errors.push(FieldError::new(
                f,
                format!(
                    "must be a list of 1 to {MAX_JSON_ASSERTIONS} {{\"pointer\", \"equals\"}} \
                     objects, or null"
                ),
            ));
            return None;
        }
    };
    let before = errors.len();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("{f}[{i}]");
        let Some(map) = item.as_object() else {
            errors.push(FieldError::new(
                &at,
                "must be an object {\"pointer\": \"/a/0\", \"equals\": <json>}",
            ));
            continue;
        };
        for key in map
            .keys()
            .filter(|k| !matches!(k.as_str(), "pointer" | "equals"))
        {
            errors.push(FieldError::new(
                &format!("{at}.{key}"),
                "unknown field; an assertion has pointer and equals",
            ));
        }
        let pointer = match map.get("pointer") {
            Some(Value::String(p)) => match check_pointer(p) {
                Ok(()) => Some(p.clone()),
                Err(e) => {
                    errors.push(FieldError::new(&format!("{at}.pointer"), e));
                    None
                }
            },
            _ => {
                errors.push(FieldError::new(
                    &format!("{at}.pointer"),
                    "is required: a JSON pointer (RFC 6901) such as \"/data/0/status\"",
                ));
                None
            }
        };
        let equals = match map.get("equals") {
            Some(e) if e.to_string().len() > MAX_EQUALS_LEN => {
                errors.push(FieldError::new(
                    &format!("{at}.equals"),
                    format!("must be at most {MAX_EQUALS_LEN} bytes of JSON"),
                ));
                None
            }
            Some(e) => Some(e.clone()),
            None => {
                errors.push(FieldError::new(
                    &format!("{at}.equals"),
                    "is required: the JSON value expected at the pointer",
                ));
                None
            }
        };
        if let (Some(pointer), Some(equals)) = (pointer, equals) {
            out.push(JsonAssertion { pointer, equals });
        }
    }
    (errors.len() == before).then_some(out)
}

/// An RFC 6901 pointer: empty (the whole document) or `/`-separated
/// tokens in which `~` is only ever `~0` or `~1`.
fn check_pointer(p: &str) -> Result<(), String> {
    if p.len() > MAX_POINTER_LEN {
        return Err(format!("must be at most {MAX_POINTER_LEN} bytes"));
    }
    if !p.is_empty() && !p.starts_with('/') {
        return Err(format!(
            "must be empty or start with / (RFC 6901), e.g. \"/{p}\""
        ));
    }
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err("~ must be written ~0, and / inside a key ~1 (RFC 6901)".into());
        }
    }
    Ok(())
}

/// Whether `name` is an HTTP field name (RFC 9110 token).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn headers(
    f: &str,
    v: &Value,
    stored: Option<&BTreeMap<String, String>>,
    kept: &mut Vec<String>,
    errors: &mut Vec<FieldError>,
) -> Option<BTreeMap<String, String>> {
    let Some(map) = v.as_object() else {
        errors.push(FieldError::new(
            f,
            "must be an object of header names to string values, or null",
        ));
        return None;
    };
    if map.len() > MAX_HEADERS {
        errors.push(FieldError::new(
            f,
            format!(
                "must have at most {MAX_HEADERS} headers (got {})",
                map.len()
            ),
        ));
        return None;
    }
    let before = errors.len();
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in map {
        let at = format!("{f}.{name}");
        let lower = name.to_ascii_lowercase();
        if name.len() > MAX_HEADER_NAME_LEN || !is_token(name) {
            errors.push(FieldError::new(
                &at,
                format!(
                    "is not a header name: at most {MAX_HEADER_NAME_LEN} letters, digits \
                     and !#$%&'*+-.^_`|~"
                ),
            ));
            continue;
        }
        if FORBIDDEN_HEADERS.contains(&lower.as_str()) || lower.starts_with("proxy-") {
            errors.push(FieldError::new(
                &at,
                "may not be set: the HTTP client sets it (Host, Content-Length, \
                 Transfer-Encoding, Connection, Upgrade, TE, Trailer, Keep-Alive and Proxy-* \
                 are refused)",
            ));
            continue;
        }
        if out.keys().any(|k| k.eq_ignore_ascii_case(name)) {
            errors.push(FieldError::new(
                &at,
                "given twice (header names are case-insensitive)",
            ));
            continue;
        }
        let Some(value) = value.as_str() else {
            errors.push(FieldError::new(&at, "must be a string"));
            continue;
        };
        if value == HIDDEN {
            // Answers show every value as ***: sending it back keeps the
            // stored one.
            let stored = stored.and_then(|s| {
                s.get(name).or_else(|| {
                    s.iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v)
                })
            });
            match stored {
                Some(real) => {
                    kept.push(name.clone());
                    out.insert(name.clone(), real.clone());
                }
                None => errors.push(FieldError::new(
                    &at,
                    "is *** (what answers show instead of a value) and there is no stored \
                     value to keep: send the value itself",
                )),
            }
            continue;
        }
        if value.contains(['\r', '\n']) {
            errors.push(FieldError::new(&at, "must not contain CR or LF"));
        } else if value.len() > MAX_HEADER_VALUE_LEN {
            errors.push(FieldError::new(
                &at,
                format!("must be at most {MAX_HEADER_VALUE_LEN} bytes"),
            ));
        } else if !value
            .bytes()
            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
        {
            errors.push(FieldError::new(
                &at,
                "must be printable ASCII (a header value is sent as it is)",
            ));
        } else {
            out.insert(name.clone(), value.to_owned());
        }
    }
    (errors.len() == before).then_some(out)
}

/// Whether a check of a kind (and URL scheme) takes a field.
type Takes = fn(CheckKind, &str) -> bool;

/// Which kinds take a field, as error messages say it; `None` for a field
/// every kind takes.
fn takers(field: &str) -> Option<(&'static str, Takes)> {
    let http = |k: CheckKind, _: &str| k == CheckKind::Http;
    match field {
        "method" | "headers" | "body" | "follow_redirects" | "body_contains"
        | "body_not_contains" | "json" | "expected_statuses" => Some(("http(s) checks", http)),
        "degraded_latency_ms" => Some(("http(s) and tcp checks", |k, _| {
            matches!(k, CheckKind::Http | CheckKind::Tcp)
        })),
        "cert_expiry_days" => Some(("https and tls checks", |k, scheme| {
            k == CheckKind::Tls || scheme == "https"
        })),
        "expect" => Some(("dns checks", |k, _| k == CheckKind::Dns)),
        "grace" => Some(("push checks", |k, _| k == CheckKind::Push)),
        _ => None,
    }
}

/// The fields set in `o` (and `expected_statuses`), by canonical name.
fn set_fields(o: &CheckOptions, expected: bool) -> Vec<&'static str> {
    let set = [
        o.method.is_some(),
        o.headers.is_some(),
        o.body.is_some(),
        o.follow_redirects.is_some(),
        o.body_contains.is_some(),
        o.body_not_contains.is_some(),
        o.json.is_some(),
        o.degraded_latency_ms.is_some(),
        o.cert_expiry_days.is_some(),
        o.expect.is_some(),
        o.grace.is_some(),
    ];
    let mut names: Vec<&'static str> = NAMES
        .iter()
        .zip(set)
        .filter_map(|(n, s)| s.then_some(*n))
        .collect();
    if expected {
        names.push("expected_statuses");
    }
    names
}

/// Judges the options against the service they end up on: each field set
/// must be one the URL's kind takes (a PATCH that changes the kind must
/// null the old kind's fields in the same body), `degraded_latency_ms`
/// within the timeout, and kept header values only for the same origin.
pub(super) fn judge(
    read: &Read,
    url: &str,
    timeout_s: Option<i64>,
    expected: bool,
    previous_url: Option<&str>,
    fields: &Fields<'_>,
    errors: &mut Vec<FieldError>,
) {
    let o = &read.options;
    let kind = CheckKind::of_url(url);
    let scheme = url.split_once("://").map_or("", |(s, _)| s);
    let spelled = |name: &'static str| fields.get(name).map_or(name, |(f, _)| f);
    // A field whose value was bad is reported for that alone.
    for name in set_fields(o, expected)
        .into_iter()
        .filter(|n| !read.bad.contains(n))
    {
        if let Some((who, takes)) = takers(name)
            && !takes(kind, scheme)
        {
            let also = if fields.get(name).is_none() {
                " (set it to null to change the URL to this kind)"
            } else {
                ""
            };
            errors.push(FieldError::new(
                spelled(name),
                format!("only {who} take {name}; this is a {scheme}:// check{also}"),
            ));
        }
    }
    if let (Some(ms), Some(timeout_s)) = (o.degraded_latency_ms, timeout_s)
        && !read.bad.contains(&"degraded_latency_ms")
        && ms > timeout_s.saturating_mul(1000)
    {
        errors.push(FieldError::new(
            spelled("degraded_latency_ms"),
            format!("must not exceed the timeout ({ms} ms > {timeout_s} s)"),
        ));
    }
    // Off http(s), headers are refused above whatever their origin.
    if let Some(previous) = previous_url
        && kind == CheckKind::Http
        && !read.kept.is_empty()
        && !same_origin(previous, url)
    {
        let f = spelled("headers");
        for name in &read.kept {
            errors.push(FieldError::new(
                &format!("{f}.{name}"),
                "send the value again: the URL now points at another host, and a stored \
                 header value goes only where it went before",
            ));
        }
    }
}

/// Whether two stored URLs have the same scheme, host and port.
fn same_origin(a: &str, b: &str) -> bool {
    match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin() && a.origin().is_tuple(),
        _ => false,
    }
}
