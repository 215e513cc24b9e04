//! What the tests of this binary share. The harness every test binary
//! uses (the real binary as a [`Monitor`], HTTP targets, PostgreSQL, the
//! broker, skips) lives in `tests/common/` and is re-exported here; below it
//! are the REST helpers: a request and its [`Reply`], bodies, problem
//! assertions, waits. A test file needs only `use crate::helpers::*;`.

pub use crate::common::target::Target;
pub use crate::common::*;
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// A URL nothing is ever checked at in the tests that use it (the request is
/// rejected, or the service is paused).
pub const NOWHERE: &str = "http://127.0.0.1:9/health";

/// One HTTP answer: status, headers, raw text and the text parsed as JSON
/// (`null` when it is not JSON).
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Reply {
    pub fn header(&self, name: reqwest::header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn content_type(&self) -> &str {
        self.header(CONTENT_TYPE).unwrap_or_default()
    }
}

pub async fn request(
    m: &Monitor,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: Option<Vec<u8>>,
) -> Reply {
    let mut req = m.http.request(method, m.url(path));
    if let Some(ct) = content_type {
        req = req.header(CONTENT_TYPE, ct);
    }
    if let Some(body) = body {
        req = req.body(body);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        text,
        json,
    }
}

/// Sends `body` as `application/json`.
pub async fn send(m: &Monitor, method: Method, path: &str, body: &Value) -> Reply {
    let bytes = serde_json::to_vec(body).expect("serialize");
    request(m, method, path, Some("application/json"), Some(bytes)).await
}

/// Sends raw bytes declared as `application/json`.
pub async fn send_raw(m: &Monitor, method: Method, path: &str, body: &str) -> Reply {
    request(
        m,
        method,
        path,
        Some("application/json"),
        Some(body.as_bytes().to_vec()),
    )
    .await
}

pub async fn get(m: &Monitor, path: &str) -> Reply {
    request(m, Method::GET, path, None, None).await
}

/// `GET /services`, asserting 200 and a JSON array.
pub async fn all_services(m: &Monitor) -> Value {
    let r = get(m, "/services").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.json.is_array(),
        "GET /services is not an array: {}",
        r.text
    );
    r.json
}

/// `GET /services/{id}`, asserting 200.
pub async fn one_service(m: &Monitor, id: i64) -> Value {
    let r = get(m, &format!("/services/{id}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json
}

/// Registers `body`, asserting 201, and returns the service.
pub async fn create(m: &Monitor, body: Value) -> Value {
    let r = send(m, Method::POST, "/services", &body).await;
    assert_eq!(r.status, 201, "register {body} failed: {}", r.text);
    r.json
}

pub fn id_of(v: &Value) -> i64 {
    v["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no integer id in {v}"))
}

/// The fields a user sets, plus identity: what must not change when only
/// the status moves.
pub fn settings(v: &Value) -> Value {
    json!({
        "id": v["id"], "name": v["name"], "url": v["url"], "interval": v["interval"],
        "timeout": v["timeout"], "paused": v["paused"], "expected_statuses": v["expected_statuses"],
        "created_at": v["created_at"], "updated_at": v["updated_at"],
    })
}

/// A valid service body with `over` merged in.
pub fn body_with(over: Value) -> Value {
    let mut body = json!({"name": "svc", "url": NOWHERE, "interval": 30});
    for (k, v) in over.as_object().expect("object") {
        body[k] = v.clone();
    }
    body
}

/// A valid service body without `key`.
pub fn body_without(key: &str) -> Value {
    let mut body = json!({"name": "svc", "url": NOWHERE, "interval": 30});
    body.as_object_mut().expect("object").remove(key);
    body
}

/// Asserts an RFC 9457 problem with `status`.
#[track_caller]
pub fn assert_problem(r: &Reply, status: u16, what: &str) {
    assert_eq!(r.status, status, "{what}: wrong status; body: {}", r.text);
    assert!(
        r.content_type().starts_with("application/problem+json"),
        "{what}: content-type {:?}, body {}",
        r.content_type(),
        r.text
    );
    for key in ["type", "title", "detail"] {
        assert!(
            r.json[key].as_str().is_some_and(|s| !s.trim().is_empty()),
            "{what}: problem lacks a {key}: {}",
            r.text
        );
    }
    assert_eq!(
        r.json["status"],
        json!(status),
        "{what}: problem status member: {}",
        r.text
    );
}

/// The `field` of every entry of the problem's `errors`, each of which must
/// also say what is wrong.
#[track_caller]
pub fn error_fields(r: &Reply, what: &str) -> BTreeSet<String> {
    let errors = r.json["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no errors list: {}", r.text));
    errors
        .iter()
        .map(|e| {
            assert!(
                e["message"].as_str().is_some_and(|s| !s.is_empty()),
                "{what}: error without a message: {e}"
            );
            e["field"]
                .as_str()
                .unwrap_or_else(|| panic!("{what}: error without a field: {e}"))
                .to_owned()
        })
        .collect()
}

/// Asserts a 422 validation problem naming exactly `fields`.
#[track_caller]
pub fn assert_invalid(r: &Reply, fields: &[&str], what: &str) {
    assert_problem(r, 422, what);
    let expected: BTreeSet<String> = fields.iter().map(|f| (*f).to_owned()).collect();
    assert_eq!(
        error_fields(r, what),
        expected,
        "{what}: wrong fields named: {}",
        r.text
    );
}

/// Parses an RFC 3339 time that must be in UTC.
#[track_caller]
pub fn parse_time(v: &Value) -> chrono::DateTime<chrono::Utc> {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("not a time string: {v}"));
    let t = chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s:?} is not RFC 3339: {e}"));
    assert_eq!(t.offset().local_minus_utc(), 0, "{s} is not UTC");
    assert!(s.ends_with('Z'), "{s} does not say it is UTC with Z");
    t.with_timezone(&chrono::Utc)
}

/// Waits until the wall clock is past `time`, so a later write gets a later
/// timestamp.
pub async fn wait_past(time: &Value) {
    let t = parse_time(time) + chrono::TimeDelta::milliseconds(2);
    eventually("the clock to move past a timestamp", move || async move {
        (chrono::Utc::now() > t).then_some(())
    })
    .await;
}

/// Waits until service `id` has at least `n` logs (asked with `limit=1000`).
pub async fn wait_logs(m: &Monitor, id: i64, n: usize) -> Vec<Value> {
    eventually(
        &format!("service {id} to have {n} logs"),
        move || async move {
            let logs = m.logs(id, "limit=1000").await;
            (logs.len() >= n).then_some(logs)
        },
    )
    .await
}

/// A 127.0.0.1 port nothing listens on.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}
