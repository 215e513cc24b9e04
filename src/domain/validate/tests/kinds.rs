//! Unit tests of the check kinds' URLs and fields.

use super::super::*;
use super::fields_of;
use crate::domain::check_kind::{HIDDEN, JsonAssertion};
use serde_json::{Value, json};
use std::net::IpAddr;

/// A body for `url` with `extra` fields added.
fn body(url: &str, extra: Value) -> Value {
    let mut b = json!({"name": "a", "url": url, "interval": 60});
    if let (Some(b), Some(extra)) = (b.as_object_mut(), extra.as_object()) {
        b.extend(extra.clone());
    }
    b
}

/// The errors of a POST body, as (field, message) pairs.
fn refused(url: &str, extra: Value) -> Vec<FieldError> {
    full_spec(&body(url, extra.clone())).expect_err(&format!("{url} {extra}"))
}

#[test]
fn every_kind_s_url_is_accepted_and_normalised() {
    for (given, stored) in [
        ("https://Example.com/health", "https://example.com/health"),
        ("tcp://DB.internal:5432", "tcp://db.internal:5432"),
        ("TCP://127.0.0.1:9", "tcp://127.0.0.1:9"),
        ("tcp://[::1]:9/", "tcp://[::1]:9"),
        ("tls://example.com:443", "tls://example.com:443"),
        (
            "tls://bücher.example:443",
            "tls://xn--bcher-kva.example:443",
        ),
        ("dns:///example.com", "dns:///example.com?type=A"),
        ("dns:///example.com?type=mx", "dns:///example.com?type=MX"),
        (
            "dns://127.0.0.1:5353/_dmarc.example.com.?TYPE=txt",
            "dns://127.0.0.1:5353/_dmarc.example.com.?type=TXT",
        ),
        (
            "dns://1.1.1.1/example.com?type=AAAA",
            "dns://1.1.1.1/example.com?type=AAAA",
        ),
        (
            "dns://[::1]:53/example.com?type=NS",
            "dns://[::1]:53/example.com?type=NS",
        ),
        (
            "dns://resolver.lan/a.example?type=CNAME",
            "dns://resolver.lan/a.example?type=CNAME",
        ),
        ("push://", "push://"),
        ("PUSH://", "push://"),
    ] {
        assert_eq!(check_target_url(given).as_deref(), Ok(stored), "{given}");
        let spec = full_spec(&body(given, json!({}))).expect(given);
        assert_eq!(spec.url, stored);
    }
}

#[test]
fn tcp_and_tls_need_a_host_and_a_port_and_nothing_else() {
    for (url, words) in [
        ("tcp://db", "port"),
        ("tcp://db:", "port"),
        ("tcp://:5432", "host"),
        ("tcp://db:0", "port must be between 1 and 65535 (got 0)"),
        ("tcp://db:65536", "port"),
        ("tcp://db:5x", "port"),
        ("tls://db:443/path", "path"),
        ("tls://db:443?x=1", "query"),
        ("tcp://user:pw@db:5432", "user info"),
        ("tcp://user@db:5432", "user info"),
        ("tcp://::1:9", "brackets"),
        ("tcp://[::1:9", "]"),
        ("tcp:db:9", "tcp://host:port"),
        ("tcp://exa mple:9", "host"),
        ("tcp://-bad-.example:9", "host"),
        ("tcp://db:9\r\n", "control"),
        ("tcp://d\0b:9", "control"),
    ] {
        let err = check_target_url(url).expect_err(url);
        assert!(err.contains(words), "{url:?}: {err}");
        assert_eq!(fields_of(&refused(url, json!({}))), ["url"], "{url:?}");
    }
}

#[test]
fn dns_urls_need_a_name_and_a_supported_type() {
    for (url, words) in [
        ("dns://", "name what to look up"),
        ("dns:///", "name what to look up"),
        ("dns://1.1.1.1", "name what to look up"),
        ("dns:///example.com?type=PTR", "A, AAAA, CNAME, MX, TXT, NS"),
        ("dns:///example.com?type=", "A, AAAA, CNAME, MX, TXT, NS"),
        ("dns:///example.com?class=IN", "only type"),
        ("dns:///example.com?type=A&type=MX", "twice"),
        ("dns:///1.2.3.4", "not an address"),
        ("dns:///a..b", "label"),
        ("dns:///a/b", "/"),
        ("dns:///example.com#x", "fragment"),
        ("dns://1.1.1.1:0/example.com", "port"),
        ("dns://u@1.1.1.1/example.com", "user info"),
    ] {
        let err = check_target_url(url).expect_err(url);
        assert!(err.contains(words), "{url:?}: {err}");
    }
    let errs = refused("dns:///example.com?type=SRV", json!({}));
    assert_eq!(fields_of(&errs), ["url"]);
    assert!(errs[0].message.contains("MX"), "{errs:?}");
}

#[test]
fn push_takes_nothing_after_the_scheme() {
    for url in ["push://job", "push://a/b", "push:", "push:///x"] {
        let err = check_target_url(url).expect_err(url);
        assert!(err.contains("push://"), "{url:?}: {err}");
    }
}

#[test]
fn other_schemes_are_refused_naming_the_kinds() {
    let err = check_target_url("ftp://x/").unwrap_err();
    assert!(err.contains("http, https, tcp, tls, dns or push"), "{err}");
    assert!(check_target_url("javascript:alert(1)").is_err());
    assert!(check_target_url("example.com").is_err());
    // Channels' URLs stay http(s) only.
    assert!(check_url("tcp://db:5432").is_err());
}

#[test]
fn literal_targets_are_found_for_tcp_tls_and_dns_resolvers() {
    let ip = |s: &str| s.parse::<IpAddr>().ok();
    let target = |u: &str| literal_target(&check_target_url(u).unwrap());
    assert_eq!(target("tcp://169.254.169.254:80"), ip("169.254.169.254"));
    // The numeric forms a resolver reads as addresses are caught too.
    assert_eq!(target("tcp://2852039166:80"), ip("169.254.169.254"));
    assert_eq!(target("tcp://0x7f.1:80"), ip("127.0.0.1"));
    assert_eq!(target("tls://[fe80::1]:443"), ip("fe80::1"));
    assert_eq!(
        target("dns://169.254.169.254/x.example"),
        ip("169.254.169.254")
    );
    assert_eq!(
        target("dns://[::ffff:a9fe:a9fe]:53/x.example"),
        ip("::ffff:169.254.169.254")
    );
    assert_eq!(target("dns:///x.example"), None);
    assert_eq!(target("tcp://db.internal:5432"), None);
    assert_eq!(target("push://"), None);
    assert_eq!(
        target("http://169.254.169.254/"),
        None,
        "judged at check time"
    );
}

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
    let _ = HIDDEN;
}
