//! Unit tests of the kind-specific fields: their rules, which kinds take
//! them, and header values kept across a round trip.

use super::super::*;
use super::{body, fields_of, refused};
use crate::domain::check_kind::{HIDDEN, JsonAssertion};
use serde_json::{Value, json};

#[test]
fn http_fields_are_read_and_the_method_upper_cased() {
    let spec = full_spec(&body(
        "https://example.com/api",
        json!({
            "method": "post",
            "headers": {"Authorization": "Bearer s3cret", "X-Empty": ""},
            "body": "{\"q\": 1}",
            "follow_redirects": false,
            "body_contains": "ok",
            "body_not_contains": "error",
            "json": [{"pointer": "/data/0/status", "equals": "up"}, {"pointer": "", "equals": null}],
            "degraded_latency_ms": 500,
            "cert_expiry_days": 30,
            "expected_statuses": [200, 204],
            "timeout": 5,
        }),
    ))
    .unwrap();
    let c = &spec.check;
    assert_eq!(c.method.as_deref(), Some("POST"));
    assert_eq!(
        c.headers.as_ref().unwrap()["Authorization"],
        "Bearer s3cret"
    );
    assert_eq!(c.headers.as_ref().unwrap()["X-Empty"], "");
    assert_eq!(c.body.as_deref(), Some("{\"q\": 1}"));
    assert_eq!(c.follow_redirects, Some(false));
    assert_eq!(c.body_contains.as_deref(), Some("ok"));
    assert_eq!(c.body_not_contains.as_deref(), Some("error"));
    assert_eq!(
        c.json.as_deref(),
        Some(
            &[
                JsonAssertion {
                    pointer: "/data/0/status".into(),
                    equals: json!("up")
                },
                JsonAssertion {
                    pointer: String::new(),
                    equals: Value::Null
                },
            ][..]
        )
    );
    assert_eq!(c.degraded_latency_ms, Some(500));
    assert_eq!(c.cert_expiry_days, Some(30));
    assert_eq!(spec.expected_statuses, Some(vec![200, 204]));
}

#[test]
fn each_kind_reads_its_own_fields() {
    let tcp = full_spec(&body("tcp://db:5432", json!({"degraded_latency_ms": 200}))).unwrap();
    assert_eq!(tcp.check.degraded_latency_ms, Some(200));
    let tls = full_spec(&body("tls://db:443", json!({"cert_expiry_days": 7}))).unwrap();
    assert_eq!(tls.check.cert_expiry_days, Some(7));
    let dns = full_spec(&body("dns:///example.com", json!({"expect": ["1.2.3.4"]}))).unwrap();
    assert_eq!(dns.check.expect, Some(vec!["1.2.3.4".to_owned()]));
    let push = full_spec(&body("push://", json!({"grace": 0}))).unwrap();
    assert_eq!(push.check.grace, Some(Seconds(0)));
    let push = full_spec(&body("push://", json!({"grace": 86_400, "timeout": 5}))).unwrap();
    assert_eq!(push.check.grace, Some(Seconds(86_400)));
    // null is unset, on every kind.
    let http = full_spec(&body(
        "http://x/",
        json!({"method": null, "headers": null, "json": null, "cert_expiry_days": null,
               "grace": null, "expect": null}),
    ))
    .unwrap();
    assert!(http.check.is_empty(), "{:?}", http.check);
}

#[test]
fn a_field_of_another_kind_is_refused_naming_who_takes_it() {
    for (url, extra, field, who) in [
        (
            "tcp://db:5432",
            json!({"method": "GET"}),
            "method",
            "only http(s) checks take method",
        ),
        (
            "tls://db:443",
            json!({"headers": {"A": "b"}}),
            "headers",
            "only http(s)",
        ),
        (
            "dns:///x.example",
            json!({"body_contains": "x"}),
            "body_contains",
            "only http(s)",
        ),
        (
            "push://",
            json!({"json": [{"pointer": "", "equals": 1}]}),
            "json",
            "only http(s)",
        ),
        (
            "tcp://db:1",
            json!({"expected_statuses": [200]}),
            "expected_statuses",
            "only http(s)",
        ),
        (
            "tcp://db:1",
            json!({"follow_redirects": true}),
            "follow_redirects",
            "only http(s)",
        ),
        (
            "tls://db:1",
            json!({"degraded_latency_ms": 5}),
            "degraded_latency_ms",
            "http(s) and tcp",
        ),
        (
            "http://x/",
            json!({"cert_expiry_days": 5}),
            "cert_expiry_days",
            "https and tls",
        ),
        (
            "tcp://db:1",
            json!({"cert_expiry_days": 5}),
            "cert_expiry_days",
            "https and tls",
        ),
        (
            "http://x/",
            json!({"expect": ["a"]}),
            "expect",
            "only dns checks take expect",
        ),
        (
            "tcp://db:1",
            json!({"grace": 5}),
            "grace",
            "only push checks take grace",
        ),
        (
            "dns:///x.example",
            json!({"Grace": 5}),
            "Grace",
            "only push checks",
        ),
    ] {
        let errs = refused(url, extra);
        assert_eq!(fields_of(&errs), [field], "{url}: {errs:?}");
        assert!(errs[0].message.contains(who), "{url}: {errs:?}");
    }
    // Every wrong field is named at once.
    let errs = refused(
        "tcp://db:1",
        json!({"method": "GET", "grace": 1, "expect": ["a"]}),
    );
    let mut named = fields_of(&errs);
    named.sort_unstable();
    assert_eq!(named, ["expect", "grace", "method"]);
    // A bad value is reported for itself, beside the others' kind errors.
    let errs = refused(
        "tcp://db:1",
        json!({"method": "GET", "grace": 1, "expect": []}),
    );
    let mut named = fields_of(&errs);
    named.sort_unstable();
    assert_eq!(named, ["expect", "grace", "method"]);
    assert!(
        errs.iter().any(|e| e.message.contains("list of 1 to")),
        "{errs:?}"
    );
}

#[test]
fn bad_values_are_refused_naming_the_field() {
    for (extra, field) in [
        (json!({"method": "TRACE"}), "method"),
        (json!({"method": 1}), "method"),
        (json!({"headers": ["a"]}), "headers"),
        (json!({"headers": {"X-Count": 3}}), "headers.X-Count"),
        (json!({"headers": {"X-A": null}}), "headers.X-A"),
        (json!({"headers": {"Host": "evil"}}), "headers.Host"),
        (
            json!({"headers": {"content-length": "1"}}),
            "headers.content-length",
        ),
        (
            json!({"headers": {"Transfer-Encoding": "chunked"}}),
            "headers.Transfer-Encoding",
        ),
        (
            json!({"headers": {"CONNECTION": "close"}}),
            "headers.CONNECTION",
        ),
        (json!({"headers": {"Upgrade": "h2c"}}), "headers.Upgrade"),
        (json!({"headers": {"TE": "trailers"}}), "headers.TE"),
        (json!({"headers": {"Trailer": "x"}}), "headers.Trailer"),
        (
            json!({"headers": {"Keep-Alive": "1"}}),
            "headers.Keep-Alive",
        ),
        (
            json!({"headers": {"Proxy-Authorization": "x"}}),
            "headers.Proxy-Authorization",
        ),
        (json!({"headers": {"Bad Name": "x"}}), "headers.Bad Name"),
        (json!({"headers": {"": "x"}}), "headers."),
        (
            json!({"headers": {"X-A": "a\r\nHost: evil"}}),
            "headers.X-A",
        ),
        (json!({"headers": {"X-A": "a\nb"}}), "headers.X-A"),
        (json!({"headers": {"X-A": "a\u{0}b"}}), "headers.X-A"),
        (json!({"headers": {"X-A": "é"}}), "headers.X-A"),
        (
            json!({"headers": {"X-A": "x".repeat(MAX_HEADER_VALUE_LEN + 1)}}),
            "headers.X-A",
        ),
        (json!({"headers": {"X-A": "***"}}), "headers.X-A"),
        (json!({"body": 5}), "body"),
        (json!({"body": "x".repeat(MAX_REQUEST_BODY + 1)}), "body"),
        (json!({"body_contains": ""}), "body_contains"),
        (json!({"body_contains": ["a"]}), "body_contains"),
        (
            json!({"body_not_contains": "x".repeat(MAX_MATCH_LEN + 1)}),
            "body_not_contains",
        ),
        (json!({"follow_redirects": "yes"}), "follow_redirects"),
        (json!({"json": {"pointer": "/a"}}), "json"),
        (json!({"json": []}), "json"),
        (json!({"json": ["x"]}), "json[0]"),
        (
            json!({"json": [{"pointer": "a", "equals": 1}]}),
            "json[0].pointer",
        ),
        (
            json!({"json": [{"pointer": "/a~2", "equals": 1}]}),
            "json[0].pointer",
        ),
        (
            json!({"json": [{"pointer": "/a~", "equals": 1}]}),
            "json[0].pointer",
        ),
        (
            json!({"json": [{"pointer": 3, "equals": 1}]}),
            "json[0].pointer",
        ),
        (json!({"json": [{"equals": 1}]}), "json[0].pointer"),
        (json!({"json": [{"pointer": "/a"}]}), "json[0].equals"),
        (
            json!({"json": [{"pointer": "/a", "equals": 1, "op": "lt"}]}),
            "json[0].op",
        ),
        (
            json!({"json": [{"pointer": "/a", "equals": "x".repeat(MAX_EQUALS_LEN)}]}),
            "json[0].equals",
        ),
        (json!({"degraded_latency_ms": 0}), "degraded_latency_ms"),
        (json!({"degraded_latency_ms": 1.5}), "degraded_latency_ms"),
        (
            json!({"degraded_latency_ms": 10_001}),
            "degraded_latency_ms",
        ),
        (json!({"cert_expiry_days": 0}), "cert_expiry_days"),
        (json!({"cert_expiry_days": 366}), "cert_expiry_days"),
        (json!({"cert_expiry_days": "14"}), "cert_expiry_days"),
    ] {
        let errs = refused("https://x/", extra.clone());
        assert_eq!(fields_of(&errs), [field], "{extra}: {errs:?}");
    }
    let many: serde_json::Map<String, Value> = (0..=MAX_HEADERS)
        .map(|i| (format!("X-{i}"), json!("v")))
        .collect();
    assert_eq!(
        fields_of(&refused("https://x/", json!({"headers": many}))),
        ["headers"]
    );
    let many: Vec<Value> = (0..=MAX_JSON_ASSERTIONS)
        .map(|_| json!({"pointer": "", "equals": 1}))
        .collect();
    assert_eq!(
        fields_of(&refused("https://x/", json!({"json": many}))),
        ["json"]
    );
    for (url, extra, field) in [
        ("push://", json!({"grace": -1}), "grace"),
        ("push://", json!({"grace": 86_401}), "grace"),
        ("push://", json!({"grace": "60"}), "grace"),
        ("dns:///x.example", json!({"expect": []}), "expect"),
        ("dns:///x.example", json!({"expect": "a"}), "expect"),
        (
            "dns:///x.example",
            json!({"expect": ["a", ""]}),
            "expect[1]",
        ),
        ("dns:///x.example", json!({"expect": [1]}), "expect[0]"),
        (
            "tcp://db:1",
            json!({"degraded_latency_ms": 0}),
            "degraded_latency_ms",
        ),
    ] {
        let errs = refused(url, extra.clone());
        assert_eq!(fields_of(&errs), [field], "{url} {extra}: {errs:?}");
    }
    let many: Vec<String> = (0..=MAX_EXPECT).map(|i| i.to_string()).collect();
    assert_eq!(
        fields_of(&refused("dns:///x.example", json!({"expect": many}))),
        ["expect"]
    );
}

#[test]
fn pointers_follow_rfc_6901() {
    for pointer in ["", "/", "/a/0", "/a~1b/~0c", "/ü/ "] {
        let spec = full_spec(&body(
            "http://x/",
            json!({"json": [{"pointer": pointer, "equals": true}]}),
        ));
        assert!(spec.is_ok(), "{pointer:?}: {spec:?}");
    }
}

#[test]
fn degraded_latency_may_not_exceed_the_timeout() {
    let ok = full_spec(&body(
        "tcp://db:1",
        json!({"timeout": 2, "degraded_latency_ms": 2000}),
    ));
    assert!(ok.is_ok(), "{ok:?}");
    let errs = refused(
        "tcp://db:1",
        json!({"timeout": 2, "degraded_latency_ms": 2001}),
    );
    assert_eq!(fields_of(&errs), ["degraded_latency_ms"]);
    assert!(errs[0].message.contains("timeout"), "{errs:?}");
    // Lowering the timeout under it later is refused too.
    let current = ok.unwrap();
    let errs = patch_spec(&current, &json!({"timeout": 1})).unwrap_err();
    assert_eq!(fields_of(&errs), ["degraded_latency_ms"]);
}

#[test]
fn header_names_are_case_insensitive_and_their_case_kept() {
    let errs = refused("http://x/", json!({"headers": {"X-A": "1", "x-a": "2"}}));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].field.eq_ignore_ascii_case("headers.x-a"),
        "{errs:?}"
    );
    let spec = full_spec(&body("http://x/", json!({"headers": {"X-Api-Key": "k"}}))).unwrap();
    assert!(
        spec.check
            .headers
            .clone()
            .unwrap()
            .contains_key("X-Api-Key")
    );
}

fn secret_service() -> ServiceSpec {
    full_spec(&body(
        "https://api.example.com/health",
        json!({"headers": {"Authorization": "Bearer s3cret", "X-Env": "prod"}, "method": "POST"}),
    ))
    .unwrap()
}

#[test]
fn a_header_sent_back_as_stars_keeps_its_stored_value() {
    let current = secret_service();
    // What a GET shows, edited and sent back whole (PUT).
    let shown = body(
        "https://api.example.com/health",
        json!({"headers": {"Authorization": HIDDEN, "X-Env": "staging"}, "method": "POST"}),
    );
    let spec = replace_spec(&current, &shown).unwrap();
    let headers = spec.check.headers.clone().unwrap();
    assert_eq!(headers["Authorization"], "Bearer s3cret");
    assert_eq!(headers["X-Env"], "staging");
    // The same by PATCH, with the name in another case.
    let spec = patch_spec(&current, &json!({"headers": {"authorization": HIDDEN}})).unwrap();
    let headers = spec.check.headers.clone().unwrap();
    assert_eq!(
        headers.get("authorization").map(String::as_str),
        Some("Bearer s3cret")
    );
    assert_eq!(headers.len(), 1, "headers given replace the stored set");
    // A PATCH that leaves headers out keeps them all, and so does a path change.
    let spec = patch_spec(&current, &json!({"url": "https://api.example.com/other"})).unwrap();
    assert_eq!(spec.check.headers, current.check.headers);
    // *** for a header that has no stored value is refused.
    let errs = patch_spec(&current, &json!({"headers": {"X-New": HIDDEN}})).unwrap_err();
    assert_eq!(fields_of(&errs), ["headers.X-New"]);
    // A new service has nothing to keep.
    let errs = full_spec(&shown).unwrap_err();
    assert_eq!(fields_of(&errs), ["headers.Authorization"]);
}

#[test]
fn a_kept_header_does_not_follow_the_url_to_another_origin() {
    let current = secret_service();
    for url in [
        "https://evil.example/health",
        "https://api.example.com:8443/health",
        "http://api.example.com/health",
    ] {
        // Sent back as *** with a new host: refused, naming the header.
        let put = body(
            url,
            json!({"headers": {"Authorization": HIDDEN, "X-Env": "prod"}, "method": "POST"}),
        );
        let errs = replace_spec(&current, &put).unwrap_err();
        assert_eq!(fields_of(&errs), ["headers.Authorization"], "{url}");
        let errs = patch_spec(
            &current,
            &json!({"url": url, "headers": {"Authorization": HIDDEN}}),
        )
        .unwrap_err();
        assert_eq!(fields_of(&errs), ["headers.Authorization"], "{url}");
        // Left out of a PATCH: every stored header is named.
        let errs = patch_spec(&current, &json!({"url": url})).unwrap_err();
        assert_eq!(
            fields_of(&errs),
            ["headers.Authorization", "headers.X-Env"],
            "{url}"
        );
        // Sent again, or dropped: fine.
        let again = json!({"url": url, "headers": {"Authorization": "Bearer other"}});
        assert!(patch_spec(&current, &again).is_ok(), "{url}");
        assert!(patch_spec(&current, &json!({"url": url, "headers": null})).is_ok());
    }
}

#[test]
fn changing_the_kind_needs_the_old_kind_s_fields_nulled() {
    let current = full_spec(&body(
        "https://x.example/",
        json!({"method": "HEAD", "expected_statuses": [200], "cert_expiry_days": 10}),
    ))
    .unwrap();
    let errs = patch_spec(&current, &json!({"url": "tcp://x.example:443"})).unwrap_err();
    let mut named = fields_of(&errs);
    named.sort_unstable();
    assert_eq!(named, ["cert_expiry_days", "expected_statuses", "method"]);
    assert!(errs.iter().all(|e| e.message.contains("null")), "{errs:?}");
    // tls takes cert_expiry_days: only the http ones need nulling.
    let spec = patch_spec(
        &current,
        &json!({"url": "tls://x.example:443", "method": null, "expected_statuses": null}),
    )
    .unwrap();
    assert_eq!(spec.url, "tls://x.example:443");
    assert_eq!(spec.check.cert_expiry_days, Some(10));
    assert!(spec.check.method.is_none());
    // And back: a null resets a field to its default.
    let spec = patch_spec(&spec, &json!({"cert_expiry_days": null})).unwrap();
    assert!(spec.check.is_empty());
}

#[test]
fn push_services_take_a_timeout_and_ignore_it() {
    let spec = full_spec(&body("push://", json!({"interval": 60, "Timeout": 20}))).unwrap();
    assert_eq!(spec.timeout, Seconds(20));
    let errs = refused("push://", json!({"interval": 60, "timeout": 61}));
    assert_eq!(fields_of(&errs), ["timeout"]);
}
