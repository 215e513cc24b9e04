//! Unit tests of the check kinds' URLs.

use super::super::*;
use super::{body, fields_of, refused};
use serde_json::json;
use std::net::IpAddr;

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
