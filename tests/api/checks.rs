//! What a check finds, seen through the API: UP/DOWN rules, latency,
//! timeouts, redirects, body limits, and the error text.
use crate::helpers::*;

use crate::common::target::TestCa;
use serde_json::{Value, json};

/// Registers `url` (interval 2 s, timeout 1 s unless given) and returns its
/// first log.
async fn first_log(m: &Monitor, url: &str, extra: Value) -> Value {
    let mut body = json!({"name": "t", "url": url, "interval": 2, "timeout": 1});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    let svc = m.register(body).await;
    let id = svc["id"].as_i64().expect("id");
    eventually("a first log", || async {
        m.logs(id, "limit=1").await.into_iter().next()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_is_up_with_its_status_code_and_a_500_is_down() {
    let target = Target::start().await;
    let m = Monitor::start();
    let ok = first_log(&m, &target.url("/ok"), json!({})).await;
    assert_eq!(ok["status"], "UP");
    assert_eq!(ok["status_code"], 200);
    assert!(ok["error"].is_null());
    assert!(
        ok["latency_ms"]
            .as_i64()
            .is_some_and(|l| (0..1000).contains(&l))
    );

    let fail = first_log(&m, &target.url("/fail"), json!({})).await;
    assert_eq!(fail["status"], "DOWN");
    assert_eq!(fail["status_code"], 500);
    let err = fail["error"].as_str().unwrap_or_default();
    assert!(err.starts_with("status: unexpected status 500"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_target_is_down_with_latency_equal_to_the_timeout() {
    let target = Target::start().await;
    let m = Monitor::start();
    let log = first_log(&m, &target.url("/hang"), json!({})).await;
    assert_eq!(log["status"], "DOWN");
    assert_eq!(log["latency_ms"], 1000);
    assert!(log["status_code"].is_null());
    assert!(
        log["error"]
            .as_str()
            .unwrap_or_default()
            .contains("timeout"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_redirects_are_followed_and_a_sixth_is_down() {
    let target = Target::start().await;
    let m = Monitor::start();
    let five = first_log(&m, &target.url("/redirect/5"), json!({})).await;
    assert_eq!(five["status"], "UP", "{five}");
    let six = first_log(&m, &target.url("/redirect/6"), json!({})).await;
    assert_eq!(six["status"], "DOWN");
    assert!(
        six["error"]
            .as_str()
            .unwrap_or_default()
            .contains("redirect"),
        "{six}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_and_endless_bodies_are_cut_off_not_read() {
    let target = Target::start().await;
    let m = Monitor::start();
    let big = first_log(&m, &target.url("/big"), json!({})).await;
    assert_eq!(big["status"], "UP", "{big}");
    assert!(
        big["latency_ms"].as_i64().is_some_and(|l| l < 1000),
        "{big}"
    );
    // The monitor hung up after its 64 KiB: the target could not send 20 MB
    // (far more than the sockets' buffers hold).
    assert_eq!(
        target
            .big_sent_in_full
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    let endless = first_log(&m, &target.url("/endless"), json!({})).await;
    assert_eq!(endless["status"], "UP", "{endless}");
    assert!(
        endless["latency_ms"].as_i64().is_some_and(|l| l < 1000),
        "{endless}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_and_dns_failures_say_so() {
    let m = Monitor::start();
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let refused = first_log(&m, &format!("http://127.0.0.1:{closed_port}/"), json!({})).await;
    assert_eq!(refused["status"], "DOWN");
    // The reason code first (DESIGN.md), then the words.
    assert_eq!(refused["error"], "connect: connection refused");

    let dns = first_log(&m, "http://no-such-host.invalid/", json!({})).await;
    assert_eq!(dns["status"], "DOWN");
    let err = dns["error"].as_str().unwrap_or_default();
    assert!(
        err.starts_with("dns: DNS lookup failed") || err.starts_with("timeout: "),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expected_statuses_replace_the_default_range() {
    let target = Target::start().await;
    let m = Monitor::start();
    let log = first_log(
        &m,
        &target.url("/status/503"),
        json!({"expected_statuses": [503]}),
    )
    .await;
    assert_eq!(log["status"], "UP", "{log}");
    let log = first_log(&m, &target.url("/ok"), json!({"expected_statuses": [204]})).await;
    assert_eq!(log["status"], "DOWN", "{log}");
    assert!(log["error"].as_str().unwrap_or_default().contains("200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_shows_its_latest_check() {
    let target = Target::start().await;
    let m = Monitor::start();
    let svc = m.register(service("api", &target.url("/ok"), 1)).await;
    let id = svc["id"].as_i64().expect("id");
    let shown = eventually("last_status UP", || async {
        let (_, s) = m.get(&format!("/services/{id}")).await;
        (s["last_status"] == "UP").then_some(s)
    })
    .await;
    assert!(
        shown["last_check"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert!(shown["last_latency_ms"].as_i64().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_failure_says_so() {
    let target = Target::start().await;
    let m = Monitor::start();
    // https:// against a plain-HTTP server: the TLS handshake fails.
    let url = format!("https://{}/ok", target.addr);
    let log = first_log(&m, &url, json!({})).await;
    assert_eq!(log["status"], "DOWN");
    let err = log["error"].as_str().unwrap_or_default();
    assert!(err.starts_with("tls: TLS error"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_certificate_from_a_trusted_ca_is_up_and_from_an_unknown_ca_is_down_with_a_tls_error()
 {
    // Two CAs made here: the monitor trusts the first one only, through
    // the standard SSL_CERT_FILE (it replaces the system roots).
    let trusted = TestCa::new("healthmon test CA");
    let unknown = TestCa::new("a CA nobody trusts");
    let certs = tempfile::tempdir().expect("tempdir");
    let ca_file = trusted.write_pem(certs.path(), "ca");
    let good = Target::start_tls(&trusted).await;
    let bad = Target::start_tls(&unknown).await;
    let m = Monitor::start_with(&[("SSL_CERT_FILE", ca_file.to_str().expect("utf-8 path"))]);

    let url = good.url("/ok");
    assert!(url.starts_with("https://localhost:"), "{url}");
    let ok = first_log(&m, &url, json!({})).await;
    assert_eq!(ok["status"], "UP", "{ok}");
    assert_eq!(ok["status_code"], 200, "{ok}");
    assert!(ok["error"].is_null(), "{ok}");
    // The request arrived through the TLS handshake, at this target.
    assert!(good.answered("/ok") >= 1);

    let down = first_log(&m, &bad.url("/ok"), json!({})).await;
    assert_eq!(down["status"], "DOWN", "{down}");
    assert!(down["status_code"].is_null(), "{down}");
    let err = down["error"].as_str().unwrap_or_default();
    assert!(err.to_ascii_lowercase().starts_with("tls"), "{err}");
    assert!(err.contains("UnknownIssuer"), "{err}");
    // The handshake failed, so no request reached the target.
    assert_eq!(bad.hits("/ok"), 0);
}
