//! Target safety (DESIGN.md): which addresses a check may connect to, seen
//! through the API as a user would: a blocked check is DOWN with an error
//! saying the address is blocked.
//!
//! Network rule: these tests only ever send traffic to 127.0.0.0/8. A
//! non-loopback address appears only where the guard refuses it before any
//! connection is made; every case that could connect if the guard failed
//! points at loopback (0.0.0.0, ::ffff:127.0.0.1, localhost, 127.0.0.2), and
//! asserts that the target saw no request.
use crate::helpers::*;

use serde_json::{Value, json};

const BLOCK_PRIVATE: (&str, &str) = ("HEALTHMON__CHECKS__BLOCK_PRIVATE", "true");

/// Registers `url` and returns its first log.
async fn first_log(m: &Monitor, url: &str) -> Value {
    let svc = m
        .register(json!({"name": "t", "url": url, "interval": 2, "timeout": 1}))
        .await;
    let id = svc["id"].as_i64().expect("id");
    eventually("a first log", || async {
        m.logs(id, "limit=1").await.into_iter().next()
    })
    .await
}

/// Asserts the log is DOWN with a "blocked address" error that contains
/// every one of `words`.
fn assert_blocked(log: &Value, words: &[&str]) {
    assert_eq!(log["status"], "DOWN", "{log}");
    assert!(log["status_code"].is_null(), "{log}");
    let err = log["error"].as_str().unwrap_or_default();
    assert!(err.starts_with("blocked: blocked address "), "{log}");
    for w in words {
        assert!(err.contains(w), "{w:?} missing from {err:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_literal_metadata_address_is_blocked_by_default() {
    // Refused before connecting: no packet goes to 169.254.169.254.
    let m = Monitor::start();
    let log = first_log(&m, "http://169.254.169.254/latest/meta-data/").await;
    assert_blocked(
        &log,
        &["169.254.169.254", "link-local", "checks.allow_cidrs"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn this_network_0_0_0_0_is_blocked_by_default() {
    // 0.0.0.0 reaches the local host on Linux, so without the guard this
    // check would be UP against the target.
    let target = Target::start().await;
    let m = Monitor::start();
    let url = format!("http://0.0.0.0:{}/ok", target.addr.port());
    let log = first_log(&m, &url).await;
    assert_blocked(&log, &["0.0.0.0", "this-network"]);
    assert_eq!(target.hits("/ok"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv4_mapped_addresses_are_judged_by_their_ipv4_address() {
    let target = Target::start().await;
    let m = Monitor::start_with(&[BLOCK_PRIVATE]);
    // Link-local inside an IPv6 literal: refused before connecting.
    let log = first_log(&m, "http://[::ffff:169.254.169.254]/").await;
    assert_blocked(
        &log,
        &["::ffff:169.254.169.254", "link-local as 169.254.169.254"],
    );
    // ::ffff:7f00:1 is 127.0.0.1: blocked by block_private.
    let url = format!("http://[::ffff:7f00:1]:{}/ok", target.addr.port());
    let log = first_log(&m, &url).await;
    assert_blocked(&log, &["127.0.0.1", "loopback", "checks.block_private"]);
    assert_eq!(target.hits("/ok"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_resolves_to_a_blocked_address_is_blocked() {
    let target = Target::start().await;
    let m = Monitor::start_with(&[BLOCK_PRIVATE]);
    let url = format!("http://localhost:{}/ok", target.addr.port());
    let log = first_log(&m, &url).await;
    assert_blocked(&log, &["for localhost", "loopback", "checks.block_private"]);
    assert_eq!(target.hits("/ok"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_a_blocked_address_is_not_followed() {
    let target = Target::start().await;
    let m = Monitor::start();
    let blocked = format!("http://0.0.0.0:{}/ok", target.addr.port());
    let log = first_log(&m, &target.url(&format!("/redirect-to?{blocked}"))).await;
    assert_blocked(&log, &["0.0.0.0", "this-network"]);
    assert!(
        !log["error"]
            .as_str()
            .unwrap_or_default()
            .contains("too many"),
        "{log}"
    );
    assert_eq!(target.hits(&format!("/redirect-to?{blocked}")), 1);
    assert_eq!(target.hits("/ok"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_a_scheme_other_than_http_is_down_as_blocked() {
    let target = Target::start().await;
    let m = Monitor::start();
    let port = target.addr.port();
    for to in [
        "file:///etc/passwd".to_owned(),
        format!("ftp://127.0.0.1:{port}/ok"),
        format!("gopher://127.0.0.1:{port}/ok"),
        "javascript:alert(1)".to_owned(),
    ] {
        let log = first_log(&m, &target.url(&format!("/redirect-to?{to}"))).await;
        assert_eq!(log["status"], "DOWN", "{to}: {log}");
        let err = log["error"].as_str().unwrap_or_default();
        assert!(err.starts_with("blocked: "), "{to}: {log}");
        let scheme = to.split(':').next().unwrap_or_default();
        assert!(err.contains(&format!("{scheme}:")), "{to}: {err}");
    }
    assert_eq!(target.hits("/ok"), 0, "nothing followed a redirect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_cidrs_lets_a_listed_address_through_and_no_other() {
    let target = Target::start().await;
    let m = Monitor::start_with(&[
        BLOCK_PRIVATE,
        ("HEALTHMON__CHECKS__ALLOW_CIDRS", "127.0.0.1/32"),
    ]);
    let log = first_log(&m, &target.url("/ok")).await;
    assert_eq!(log["status"], "UP", "{log}");
    assert_eq!(log["status_code"], 200);

    // The allowed target redirects to 127.0.0.2, loopback and not listed.
    let other = format!("http://127.0.0.2:{}/ok", target.addr.port());
    let log = first_log(&m, &target.url(&format!("/redirect-to?{other}"))).await;
    assert_blocked(&log, &["127.0.0.2", "loopback"]);

    // localhost resolves to 127.0.0.1 (allowed) and perhaps ::1 (blocked):
    // the blocked address is dropped and the allowed one used.
    let log = first_log(&m, &format!("http://localhost:{}/ok", target.addr.port())).await;
    assert_eq!(log["status"], "UP", "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_targets_are_allowed_by_default() {
    let target = Target::start().await;
    let m = Monitor::start();
    let log = first_log(&m, &target.url("/ok")).await;
    assert_eq!(log["status"], "UP", "{log}");
    let log = first_log(&m, &format!("http://localhost:{}/ok", target.addr.port())).await;
    assert_eq!(log["status"], "UP", "{log}");
    // Redirects between allowed targets are still followed.
    let log = first_log(
        &m,
        &target.url(&format!("/redirect-to?{}", target.url("/ok"))),
    )
    .await;
    assert_eq!(log["status"], "UP", "{log}");
}

#[test]
fn an_invalid_allow_cidrs_stops_start_up_naming_the_key() {
    let (status, stderr) = run_to_exit(&[("HEALTHMON__CHECKS__ALLOW_CIDRS", "10.0.0.0/33")], &[]);
    assert!(!status.success(), "started anyway:\n{stderr}");
    assert!(stderr.contains("checks.allow_cidrs"), "{stderr}");
    assert!(!stderr.contains("listening"), "{stderr}");
}
