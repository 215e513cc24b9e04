//! `tcp://`, `tls://` and `dns://` checks (issue 14) against real servers on
//! 127.0.0.1: plain listeners, TLS listeners with certificates made here
//! (trusted through `checks.ca_file`, expiring, expired, for another host,
//! from an unknown CA), and Debian's dnsmasq. The checker is run directly,
//! as a worker runs it.

use crate::common::ca::{TestCa, days_from_now};
use crate::common::dns::Dnsmasq;
use crate::common::tls_target::TlsTarget;
use crate::helpers::*;
use healthmon::domain::check_kind::CheckFields;
use healthmon::domain::time::now_ms;
use healthmon::domain::{CheckJob, CheckResult, ServiceId, Status};
use healthmon::worker::Checker;
use healthmon::worker::check::CheckerSettings;
use healthmon::worker::guard::AddressPolicy;
use std::path::Path;

const DAY_MS: i64 = 86_400_000;

/// A checker as the worker builds one.
fn checker(ca_file: Option<&Path>, block_private: bool) -> Checker {
    Checker::with_settings(CheckerSettings {
        max_body_bytes: 64 * 1024,
        policy: AddressPolicy::new(block_private, &[]),
        ca_file: ca_file.map(Path::to_owned),
        schedule_header: false,
    })
    .expect("a checker")
}

/// Runs one check of `url` with `check` options within `timeout_ms`.
async fn run(checker: &Checker, url: &str, check: CheckFields, timeout_ms: i64) -> CheckResult {
    checker
        .run(&CheckJob {
            service_id: ServiceId(1),
            url: url.to_owned(),
            timeout_ms,
            interval_ms: 60_000,
            expected_statuses: None,
            scheduled_at: now_ms(),
            check: check.into(),
            region: None,
        })
        .await
}

/// Asserts a DOWN or DEGRADED result's error starts with `prefix`.
#[track_caller]
fn assert_failed(r: &CheckResult, status: Status, prefix: &str) {
    let error = r.error.as_deref().unwrap_or_default();
    assert!(
        r.status == status && error.starts_with(prefix),
        "expected {status} with an error starting {prefix:?}, got {r:?}"
    );
}

/// Asserts `at` is within a minute of `expected` (certificate times have
/// whole seconds and were made a moment before the check).
#[track_caller]
fn assert_expires_near(r: &CheckResult, expected: i64) {
    let at = r
        .cert_expires_at
        .unwrap_or_else(|| panic!("no cert_expires_at in {r:?}"));
    assert!(
        (at - expected).abs() < 60_000,
        "{at} is not near {expected}"
    );
}

// ---- tcp:// ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_is_up_when_the_port_accepts_and_down_when_it_refuses() {
    let open = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = open.local_addr().unwrap().port();
    let c = checker(None, false);
    for host in ["127.0.0.1", "localhost"] {
        let r = run(
            &c,
            &format!("tcp://{host}:{port}"),
            CheckFields::default(),
            2000,
        )
        .await;
        assert_eq!(
            (r.status, r.error.as_deref()),
            (Status::Up, None),
            "{host}: {r:?}"
        );
        assert!(r.latency_ms < 2000, "{r:?}");
    }
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let r = run(
        &c,
        &format!("tcp://127.0.0.1:{closed}"),
        CheckFields::default(),
        2000,
    )
    .await;
    assert_failed(&r, Status::Down, "connect: connection refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_and_tls_to_a_blocked_address_never_connect() {
    let open = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = open.local_addr().unwrap().port();
    let c = checker(None, true);
    for url in [
        format!("tcp://127.0.0.1:{port}"),
        format!("tcp://localhost:{port}"),
        format!("tcp://[::ffff:127.0.0.1]:{port}"),
        format!("tls://localhost:{port}"),
    ] {
        let r = run(&c, &url, CheckFields::default(), 2000).await;
        assert_failed(&r, Status::Down, "blocked: blocked address ");
    }
    let r = run(
        &c,
        &format!("tcp://localhost:{port}"),
        CheckFields::default(),
        2000,
    )
    .await;
    assert!(r.error.unwrap_or_default().contains("for localhost"));
    // The listener saw nothing: no connection is waiting to be accepted.
    let waiting = tokio::time::timeout(std::time::Duration::from_millis(200), open.accept()).await;
    assert!(waiting.is_err(), "a blocked check connected");
}

// ---- tls:// ----------------------------------------------------------------

/// A CA whose certificate is written to a `ca_file` in `dir`.
fn ca_in(dir: &Path) -> (TestCa, std::path::PathBuf) {
    let ca = TestCa::new("healthmon test CA");
    let file = ca.write_pem(dir, "ca");
    (ca, file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_trusted_through_ca_file_is_up_and_keeps_the_expiry_date() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, ca_file) = ca_in(dir.path());
    let target = TlsTarget::start(ca.server_config_with(
        &["localhost", "127.0.0.1"],
        days_from_now(-1),
        days_from_now(90),
    ))
    .await;
    let c = checker(Some(&ca_file), false);
    for host in ["localhost", "127.0.0.1"] {
        let r = run(&c, &target.url(host), CheckFields::default(), 5000).await;
        assert_eq!(
            (r.status, r.error.as_deref()),
            (Status::Up, None),
            "{host}: {r:?}"
        );
        assert_expires_near(&r, now_ms() + 90 * DAY_MS);
    }
    // The server finishes its side a moment after the client.
    eventually("both handshakes done at the target", || async {
        (target.handshakes() == 2).then_some(())
    })
    .await;
    // A longer threshold than the default 14 days takes this one in.
    let wary = CheckFields {
        cert_expiry_days: Some(120),
        ..CheckFields::default()
    };
    let r = run(&c, &target.url("localhost"), wary, 5000).await;
    assert_failed(
        &r,
        Status::Degraded,
        "cert_expiry: the certificate expires in 90 days (",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_expiring_in_3_days_is_degraded_and_expired_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, ca_file) = ca_in(dir.path());
    let c = checker(Some(&ca_file), false);

    let soon = TlsTarget::start(ca.server_config_with(
        &["localhost"],
        days_from_now(-1),
        days_from_now(3),
    ))
    .await;
    let r = run(&c, &soon.url("localhost"), CheckFields::default(), 5000).await;
    assert_failed(
        &r,
        Status::Degraded,
        "cert_expiry: the certificate expires in 3 days (",
    );
    assert_expires_near(&r, now_ms() + 3 * DAY_MS);

    let expired = TlsTarget::start(ca.server_config_with(
        &["localhost"],
        days_from_now(-30),
        days_from_now(-1),
    ))
    .await;
    let r = run(&c, &expired.url("localhost"), CheckFields::default(), 5000).await;
    assert_failed(
        &r,
        Status::Down,
        "cert_expiry: the certificate has expired (",
    );
    assert_expires_near(&r, now_ms() - DAY_MS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_for_another_host_or_from_an_unknown_ca_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, ca_file) = ca_in(dir.path());
    let other_host = TlsTarget::start(ca.server_config_with(
        &["other.example"],
        days_from_now(-1),
        days_from_now(90),
    ))
    .await;
    let r = run(
        &checker(Some(&ca_file), false),
        &other_host.url("localhost"),
        CheckFields::default(),
        5000,
    )
    .await;
    assert_failed(
        &r,
        Status::Down,
        "tls: the certificate is not valid for localhost",
    );
    assert!(r.error.unwrap_or_default().contains("other.example"));

    // The same kind of certificate, but the checker does not trust its CA.
    let trusted = TlsTarget::start(ca.server_config()).await;
    let r = run(
        &checker(None, false),
        &trusted.url("localhost"),
        CheckFields::default(),
        5000,
    )
    .await;
    assert_failed(&r, Status::Down, "tls: the certificate is not trusted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_without_a_handshake_times_out_at_the_timeout() {
    // Accepts TCP (the kernel does) but never answers the ClientHello.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("tls://localhost:{}", silent.local_addr().unwrap().port());
    let r = run(&checker(None, false), &url, CheckFields::default(), 300).await;
    assert_failed(&r, Status::Down, "timeout: no TLS handshake within 300 ms");
    assert_eq!(r.latency_ms, 300);
}

// ---- dns:// ----------------------------------------------------------------

/// The test zone: an address of each family, a CNAME, MX and TXT records
/// (one under an underscore name, as DMARC's are), and its NS.
fn zone() -> Option<Dnsmasq> {
    Dnsmasq::start(
        "10.1.2.3 app.test\nfd00::5 app.test\n",
        &[
            "--mx-host=test,mail.test,10",
            "--txt-record=test,v=spf1 -all",
            "--txt-record=_dmarc.test,v=DMARC1; p=reject",
            "--cname=www.test,app.test",
            // Authoritative for the zone on 127.0.0.1, so it has an NS.
            "--auth-server=ns1.test,127.0.0.1",
            "--auth-zone=test",
        ],
    )
}

fn expect(strings: &[&str]) -> CheckFields {
    CheckFields {
        expect: Some(strings.iter().map(|s| (*s).to_owned()).collect()),
        ..CheckFields::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_answers_of_every_type_meet_their_expectations() {
    let Some(dns) = zone() else { return };
    let c = checker(None, false);
    for (name, rtype, wanted) in [
        ("app.test", "A", "10.1.2.3"),
        ("app.test", "AAAA", "fd00::5"),
        ("www.test", "CNAME", "app.test"),
        ("test", "MX", "10 mail.test"),
        ("test", "TXT", "v=spf1 -all"),
        ("_dmarc.test", "txt", "v=DMARC1; p=reject"),
        ("test", "NS", "ns1.test"),
    ] {
        let r = run(&c, &dns.url(name, rtype), expect(&[wanted]), 5000).await;
        assert_eq!(
            (r.status, r.error.as_deref()),
            (Status::Up, None),
            "{name} {rtype}: {r:?}"
        );
    }
    // No `expect`: any answer of the type will do; the type defaults to A.
    let r = run(
        &c,
        &format!("dns://{}/app.test", dns.addr),
        CheckFields::default(),
        5000,
    )
    .await;
    assert_eq!(r.status, Status::Up, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_without_the_expected_answer_or_the_name_is_down() {
    let Some(dns) = zone() else { return };
    let c = checker(None, false);
    let r = run(
        &c,
        &dns.url("app.test", "A"),
        expect(&["10.1.2.3", "10.9.9.9"]),
        5000,
    )
    .await;
    assert_failed(
        &r,
        Status::Down,
        r#"dns: expected "10.9.9.9" not in the answer [10.1.2.3]"#,
    );
    let r = run(&c, &dns.url("nope.test", "A"), CheckFields::default(), 5000).await;
    assert_failed(&r, Status::Down, "dns: nope.test does not exist (NXDOMAIN)");
    // The name exists, without records of the type.
    let r = run(&c, &dns.url("app.test", "MX"), CheckFields::default(), 5000).await;
    assert_failed(&r, Status::Down, "dns: no MX records for app.test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_resolver_named_by_host_name_is_resolved_and_guarded() {
    let Some(dns) = zone() else { return };
    let url = format!("dns://localhost:{}/app.test?type=A", dns.addr.port());
    let r = run(&checker(None, false), &url, expect(&["10.1.2.3"]), 5000).await;
    assert_eq!(r.status, Status::Up, "{r:?}");

    let strict = checker(None, true);
    let r = run(&strict, &url, CheckFields::default(), 5000).await;
    assert_failed(&r, Status::Down, "blocked: blocked address ");
    assert!(r.error.unwrap_or_default().contains("for localhost"));
    let r = run(
        &strict,
        &dns.url("app.test", "A"),
        CheckFields::default(),
        5000,
    )
    .await;
    assert_failed(&r, Status::Down, "blocked: blocked address 127.0.0.1 ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_asks_the_server_on_every_check() {
    // Answers live 5 minutes, so a check that kept one would miss the change.
    let Some(dns) = Dnsmasq::start("10.1.2.3 app.test\n", &["--local-ttl=300"]) else {
        return;
    };
    let c = checker(None, false);
    let url = dns.url("app.test", "A");
    let r = run(&c, &url, expect(&["10.1.2.3"]), 5000).await;
    assert_eq!(r.status, Status::Up, "{r:?}");
    dns.set_hosts("10.4.5.6 app.test\n");
    eventually("a check sees the new address", || async {
        let r = run(&c, &url, expect(&["10.4.5.6"]), 5000).await;
        (r.status == Status::Up).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_without_an_answer_times_out_at_the_timeout() {
    // A UDP port that reads queries and never answers.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let url = format!("dns://{}/app.test", silent.local_addr().unwrap());
    let r = run(&checker(None, false), &url, CheckFields::default(), 300).await;
    assert_failed(&r, Status::Down, "timeout: no DNS answer within 300 ms");
    assert_eq!(r.latency_ms, 300);
}

// ---- through the API ---------------------------------------------------------

/// Registers `body` (a service with its kind's fields) and returns its
/// first log.
async fn first_log(m: &Monitor, body: serde_json::Value) -> serde_json::Value {
    let id = m.register(body).await["id"].as_i64().expect("id");
    eventually("a first log", || async {
        m.logs(id, "limit=1").await.into_iter().next()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_a_tcp_service_is_checked_and_logged() {
    let open = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("tcp://127.0.0.1:{}", open.local_addr().unwrap().port());
    let m = Monitor::start();
    let log = first_log(&m, service("db", &url, 2)).await;
    assert_eq!(log["status"], "UP", "{log}");
    assert!(log["error"].is_null(), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_a_tls_service_logs_its_certificate_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, ca_file) = ca_in(dir.path());
    let target = TlsTarget::start(ca.server_config_with(
        &["localhost"],
        days_from_now(-1),
        days_from_now(3),
    ))
    .await;
    let m = Monitor::start_with(&[("HEALTHMON__CHECKS__CA_FILE", &ca_file.to_string_lossy())]);
    let mut body = service("edge", &target.url("localhost"), 2);
    body["cert_expiry_days"] = 7.into();
    let log = first_log(&m, body).await;
    assert_eq!(log["status"], "DEGRADED", "{log}");
    let error = log["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("cert_expiry: the certificate expires in 3 days ("),
        "{log}"
    );
    let at = log["cert_expires_at"].as_str().unwrap_or_default();
    let at = healthmon::domain::time::parse_rfc3339(at).unwrap_or_else(|| panic!("{log}"));
    assert!((at - (now_ms() + 3 * DAY_MS)).abs() < 60_000, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_a_dns_service_logs_a_missing_expectation() {
    let Some(dns) = zone() else { return };
    let m = Monitor::start();
    let mut body = service("mx", &dns.url("test", "MX"), 2);
    body["expect"] = serde_json::json!(["10 mail.test", "20 backup.test"]);
    let log = first_log(&m, body).await;
    assert_eq!(log["status"], "DOWN", "{log}");
    assert_eq!(
        log["error"], r#"dns: expected "20 backup.test" not in the answer [10 mail.test]"#,
        "{log}"
    );
}
