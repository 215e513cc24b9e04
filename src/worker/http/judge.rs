//! The verdict on a response (DESIGN.md "Check kinds"): the status code,
//! then the body's text, then its JSON, DOWN on the first that fails; then,
//! on a passing check, the soft limits (certificate expiry, latency) that
//! make it DEGRADED. Each error starts with its reason code.

use super::cert;
use crate::domain::check::status_is_up;
use crate::domain::check_kind::JsonAssertion;
use crate::domain::time::Millis;
use crate::domain::{CheckJob, CheckKind, CheckOptions, Status};
use crate::worker::check::Outcome;
use serde_json::Value;

/// At most this many characters of a user's text or a JSON value are
/// quoted in an error.
const QUOTE_CHARS: usize = 100;

/// What a request brought back.
pub(super) struct Fetched {
    /// The HTTP status.
    pub(super) code: u16,
    /// The body, when an assertion reads it and the status passed.
    pub(super) body: Option<Body>,
    /// The server certificate's notAfter (https).
    pub(super) cert_expires_at: Option<Millis>,
}

/// A response body read into memory, up to `worker.max_body_bytes`.
pub(super) struct Body {
    /// The bytes read.
    pub(super) bytes: Vec<u8>,
    /// `Some(limit)` when the body went on past `limit` bytes and was cut.
    pub(super) cut: Option<usize>,
}

/// Judges a response that took `latency_ms`, at `now`.
pub(super) fn verdict(job: &CheckJob, fetched: &Fetched, latency_ms: i64, now: Millis) -> Outcome {
    let opts = &job.check;
    let judged = |status, error| Outcome {
        status,
        latency_ms,
        status_code: Some(fetched.code),
        error,
        cert_expires_at: fetched.cert_expires_at,
    };
    let failure = status_failure(fetched.code, job.expected_statuses.as_deref()).or_else(|| {
        let body = fetched.body.as_ref()?;
        body_failure(opts, body).or_else(|| json_failure(opts, body))
    });
    if let Some(error) = failure {
        return judged(Status::Down, Some(error));
    }
    let mut soft = Vec::new();
    if let (Some(days), Some(at)) = (
        opts.effective_cert_expiry_days(CheckKind::Http),
        fetched.cert_expires_at,
    ) && let Some(reason) = cert::expiry_reason(at, days, now)
    {
        soft.push(reason);
    }
    if let Some(limit) = opts.degraded_latency_ms
        && latency_ms > limit
    {
        soft.push(format!("latency: {latency_ms} ms, slower than {limit} ms"));
    }
    if soft.is_empty() {
        judged(Status::Up, None)
    } else {
        judged(Status::Degraded, Some(soft.join("; ")))
    }
}

/// Why `code` fails the service's expected statuses, if it does.
fn status_failure(code: u16, expected: Option<&[u16]>) -> Option<String> {
    if status_is_up(code, expected) {
        return None;
    }
    let expected = match expected {
        Some(list) => format!("{list:?}"),
        None => "200-399".to_owned(),
    };
    Some(format!(
        "status: unexpected status {code} (expected {expected})"
    ))
}

/// Why the body's text fails `body_contains` or `body_not_contains`.
fn body_failure(opts: &CheckOptions, body: &Body) -> Option<String> {
    if opts.body_contains.is_none() && opts.body_not_contains.is_none() {
        return None;
    }
    // Borrowed when the body is UTF-8; a body cut inside a character, or in
    // another encoding, is searched with the broken bytes replaced.
    let text = String::from_utf8_lossy(&body.bytes);
    if let Some(wanted) = &opts.body_contains
        && !text.contains(wanted.as_str())
    {
        return Some(format!(
            "body: {} not found in the response{}",
            quoted(wanted),
            cut_note(body)
        ));
    }
    if let Some(unwanted) = &opts.body_not_contains
        && text.contains(unwanted.as_str())
    {
        return Some(format!("body: {} found in the response", quoted(unwanted)));
    }
    None
}

/// Why the body fails a `json` assertion: it is not JSON, or a value is
/// missing or another.
fn json_failure(opts: &CheckOptions, body: &Body) -> Option<String> {
    let assertions: &[JsonAssertion] = opts.json.as_deref().unwrap_or_default();
    if assertions.is_empty() {
        return None;
    }
    let doc: Value = match serde_json::from_slice(&body.bytes) {
        Ok(doc) => doc,
        Err(e) => {
            return Some(format!(
                "json: the response is not JSON ({e}){}",
                cut_note(body)
            ));
        }
    };
    assertions.iter().find_map(|a| {
        let at = if a.pointer.is_empty() {
            "the document"
        } else {
            a.pointer.as_str()
        };
        match doc.pointer(&a.pointer) {
            None => Some(format!("json: {at} is missing{}", cut_note(body))),
            Some(found) if !same(found, &a.equals) => Some(format!(
                "json: {at} is {}, expected {}{}",
                compact(found),
                compact(&a.equals),
                cut_note(body)
            )),
            Some(_) => None,
        }
    })
}

/// JSON equality where numbers compare by value: `1` equals `1.0`, as a
/// person writing `"equals": 1.0` means.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
                (Some(x), Some(y), _, _) => x == y,
                (_, _, Some(x), Some(y)) => x == y,
                _ => x.as_f64() == y.as_f64(),
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|other| same(v, other)))
        }
        _ => a == b,
    }
}

/// What an error adds when the body was cut at the limit.
fn cut_note(body: &Body) -> String {
    match body.cut {
        Some(limit) => {
            format!(" (only the first {limit} bytes were read: worker.max_body_bytes)")
        }
        None => String::new(),
    }
}

/// A user's text in quotes, escaped, at most [`QUOTE_CHARS`] characters.
fn quoted(text: &str) -> String {
    format!("{:?}", shortened(text))
}

/// A JSON value in its compact form, at most [`QUOTE_CHARS`] characters.
fn compact(value: &Value) -> String {
    shortened(&value.to_string()).into_owned()
}

/// `text` cut to [`QUOTE_CHARS`] characters, with `…` when cut.
fn shortened(text: &str) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(QUOTE_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]).into(),
        None => text.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CheckFields, ServiceId};
    use serde_json::json;

    fn job(check: CheckFields) -> CheckJob {
        CheckJob {
            service_id: ServiceId(1),
            url: "https://example.test/".into(),
            timeout_ms: 1000,
            interval_ms: 10_000,
            expected_statuses: None,
            scheduled_at: 0,
            check: check.into(),
            region: None,
        }
    }

    fn fetched(code: u16, body: &str, cut: Option<usize>) -> Fetched {
        Fetched {
            code,
            body: Some(Body {
                bytes: body.as_bytes().to_vec(),
                cut,
            }),
            cert_expires_at: None,
        }
    }

    fn error(o: &Outcome) -> &str {
        o.error.as_deref().unwrap_or_default()
    }

    #[test]
    fn the_status_is_judged_before_the_body_and_the_body_before_json() {
        let opts = CheckFields {
            body_contains: Some("absent".into()),
            json: Some(vec![JsonAssertion {
                pointer: "/a".into(),
                equals: json!(1),
            }]),
            ..CheckFields::default()
        };
        let o = verdict(&job(opts.clone()), &fetched(500, "{}", None), 5, 0);
        assert_eq!(o.status, Status::Down);
        assert!(
            error(&o).starts_with("status: unexpected status 500"),
            "{o:?}"
        );
        let o = verdict(&job(opts.clone()), &fetched(200, "{}", None), 5, 0);
        assert_eq!(error(&o), r#"body: "absent" not found in the response"#);
        let with_text = CheckFields {
            body_contains: Some("{".into()),
            ..opts
        };
        let o = verdict(&job(with_text), &fetched(200, "{}", None), 5, 0);
        assert_eq!(error(&o), "json: /a is missing");
        assert_eq!(o.status_code, Some(200));
    }

    #[test]
    fn json_values_compare_by_value_and_show_compactly() {
        let assert = |pointer: &str, equals| CheckFields {
            json: Some(vec![JsonAssertion {
                pointer: pointer.into(),
                equals,
            }]),
            ..CheckFields::default()
        };
        let doc = r#"{"a": [3, {"b": 1.0}], "s": "x"}"#;
        let run = |opts| verdict(&job(opts), &fetched(200, doc, None), 5, 0);
        assert_eq!(run(assert("/a/1/b", json!(1))).status, Status::Up);
        assert_eq!(run(assert("/a/1", json!({"b": 1}))).status, Status::Up);
        assert_eq!(
            error(&run(assert("/a/0", json!(4)))),
            "json: /a/0 is 3, expected 4"
        );
        assert_eq!(
            error(&run(assert("", json!(null)))),
            r#"json: the document is {"a":[3,{"b":1.0}],"s":"x"}, expected null"#
        );
        let long = "y".repeat(500);
        let e = run(assert("/s", json!(long))).error.unwrap_or_default();
        assert!(e.starts_with(r#"json: /s is "x", expected "yyy"#), "{e}");
        assert!(e.ends_with('…') && e.chars().count() < 140, "{e}");
    }

    #[test]
    fn a_cut_body_says_so_in_its_error() {
        let opts = CheckFields {
            body_contains: Some("end".into()),
            ..CheckFields::default()
        };
        let o = verdict(&job(opts), &fetched(200, "start", Some(5)), 5, 0);
        assert_eq!(
            error(&o),
            r#"body: "end" not found in the response (only the first 5 bytes were read: worker.max_body_bytes)"#
        );
        let opts = CheckFields {
            json: Some(vec![JsonAssertion {
                pointer: "/a".into(),
                equals: json!(1),
            }]),
            ..CheckFields::default()
        };
        let e = verdict(&job(opts), &fetched(200, r#"{"a": 1, "b"#, Some(10)), 5, 0)
            .error
            .unwrap_or_default();
        assert!(e.starts_with("json: the response is not JSON ("), "{e}");
        assert!(e.ends_with("(only the first 10 bytes were read: worker.max_body_bytes)"));
    }

    #[test]
    fn soft_limits_make_a_passing_check_degraded_certificate_first() {
        let opts = CheckFields {
            degraded_latency_ms: Some(500),
            cert_expiry_days: Some(14),
            ..CheckFields::default()
        };
        let now = 1_800_000_000_000;
        let mut f = fetched(200, "", None);
        f.cert_expires_at = Some(now + 2 * 86_400_000);
        let o = verdict(&job(opts.clone()), &f, 812, now);
        assert_eq!(o.status, Status::Degraded);
        assert_eq!(o.status_code, Some(200));
        assert_eq!(o.cert_expires_at, f.cert_expires_at);
        let e = error(&o);
        assert!(
            e.starts_with("cert_expiry: the certificate expires in 2 days ("),
            "{e}"
        );
        assert!(e.ends_with("; latency: 812 ms, slower than 500 ms"), "{e}");
        // Within both limits: UP, no error.
        f.cert_expires_at = Some(now + 30 * 86_400_000);
        let o = verdict(&job(opts), &f, 500, now);
        assert_eq!((o.status, o.error), (Status::Up, None));
    }

    #[test]
    fn body_not_contains_and_long_texts() {
        let long = format!("{}\"", "z".repeat(300));
        let opts = CheckFields {
            body_not_contains: Some(long.clone()),
            ..CheckFields::default()
        };
        let o = verdict(
            &job(opts),
            &fetched(200, &format!("a{long}b"), Some(1)),
            5,
            0,
        );
        let e = error(&o);
        assert!(e.starts_with(r#"body: "zzz"#), "{e}");
        assert!(e.ends_with(r#"…" found in the response"#), "{e}");
        assert!(e.len() < 150, "{e}");
    }
}
