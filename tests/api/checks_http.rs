//! HTTP checks with options and assertions (issue 14): the method, headers
//! and body the target sees; body and JSON assertions; soft limits that
//! make a passing check DEGRADED; redirects left unfollowed; HTTPS trust
//! through `checks.ca_file` and certificate expiry. Most run the checker
//! itself against targets on 127.0.0.1.

use crate::common::ca::{TestCa, days_from_now};
use crate::common::target::{JSON_DOC, TAIL};
use crate::helpers::*;
use healthmon::domain::check_kind::{CheckFields, JsonAssertion};
use healthmon::domain::time::{now_ms, parse_rfc3339};
use healthmon::domain::{CheckJob, CheckResult, ServiceId, Status};
use healthmon::worker::Checker;
use healthmon::worker::check::CheckerSettings;
use healthmon::worker::guard::AddressPolicy;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;

/// The body cap of most checkers here (the default `worker.max_body_bytes`
/// is larger; the limit itself is what is tested).
const MAX_BODY: usize = 64 * 1024;

const DAY_MS: i64 = 86_400_000;

/// A checker as the worker builds one, for 127.0.0.1 targets.
fn checker_with(ca_file: Option<&Path>, max_body_bytes: usize) -> Checker {
    Checker::with_settings(CheckerSettings {
        max_body_bytes,
        policy: AddressPolicy::default(),
        ca_file: ca_file.map(Path::to_owned),
        schedule_header: false,
    })
    .expect("a checker")
}

fn checker() -> Checker {
    checker_with(None, MAX_BODY)
}

/// A job for `url` with `check` options and a 5 s timeout.
fn job(url: &str, check: CheckFields) -> CheckJob {
    CheckJob {
        service_id: ServiceId(1),
        url: url.to_owned(),
        timeout_ms: 5000,
        interval_ms: 60_000,
        expected_statuses: None,
        scheduled_at: now_ms(),
        check: check.into(),
        region: None,
    }
}

async fn check(checker: &Checker, url: &str, check: CheckFields) -> CheckResult {
    checker.run(&job(url, check)).await
}

fn error(r: &CheckResult) -> &str {
    r.error.as_deref().unwrap_or_default()
}

fn contains(text: &str) -> CheckFields {
    CheckFields {
        body_contains: Some(text.to_owned()),
        ..CheckFields::default()
    }
}

fn json_at(pairs: &[(&str, Value)]) -> CheckFields {
    CheckFields {
        json: Some(
            pairs
                .iter()
                .map(|(pointer, equals)| JsonAssertion {
                    pointer: (*pointer).to_owned(),
                    equals: equals.clone(),
                })
                .collect(),
        ),
        ..CheckFields::default()
    }
}

/// Asserts `at` is within a minute of `expected` (certificate times have
/// whole seconds, and were made a moment before the check).
#[track_caller]
fn assert_near(at: Option<i64>, expected: i64) {
    let at = at.unwrap_or_else(|| panic!("no cert_expires_at, expected about {expected}"));
    assert!(
        (at - expected).abs() < 60_000,
        "{at} is not near {expected}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_method_headers_and_body_are_sent_as_given() {
    let target = Target::start().await;
    let opts = CheckFields {
        method: Some("POST".into()),
        headers: Some(BTreeMap::from([
            ("Authorization".into(), "Bearer s3cret".into()),
            ("Content-Type".into(), "application/json".into()),
        ])),
        body: Some(r#"{"ping": 1}"#.into()),
        ..CheckFields::default()
    };
    let r = check(&checker(), &target.url("/echo"), opts).await;
    assert_eq!((r.status, r.status_code), (Status::Up, Some(200)), "{r:?}");
    assert_eq!(target.methods("/echo"), ["POST"]);
    assert_eq!(
        target.header_values("/echo", "authorization"),
        ["Bearer s3cret"]
    );
    assert_eq!(
        target.header_values("/echo", "content-type"),
        ["application/json"]
    );
    assert_eq!(target.bodies("/echo"), [r#"{"ping": 1}"#]);

    // Without options: a GET with no body.
    let r = check(&checker(), &target.url("/echo"), CheckFields::default()).await;
    assert_eq!(r.status, Status::Up, "{r:?}");
    assert_eq!(target.methods("/echo"), ["POST", "GET"]);
    assert_eq!(target.bodies("/echo")[1], "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_contains_and_body_not_contains_judge_the_page_text() {
    let target = Target::start().await;
    let c = checker();
    let page = target.url("/page");
    let r = check(&c, &page, contains("Welcome to the shop")).await;
    assert_eq!((r.status, r.error.as_deref()), (Status::Up, None), "{r:?}");

    let r = check(&c, &page, contains("Out of stock")).await;
    assert_eq!(r.status, Status::Down);
    assert_eq!(r.status_code, Some(200));
    assert_eq!(
        error(&r),
        r#"body: "Out of stock" not found in the response"#
    );

    let not = |text: &str| CheckFields {
        body_not_contains: Some(text.to_owned()),
        ..CheckFields::default()
    };
    let r = check(&c, &page, not("All systems normal")).await;
    assert_eq!(r.status, Status::Down);
    assert_eq!(
        error(&r),
        r#"body: "All systems normal" found in the response"#
    );
    let r = check(&c, &page, not("Internal error")).await;
    assert_eq!(r.status, Status::Up, "{r:?}");

    // A long text is quoted only in part.
    let long = "Out of stock ".repeat(40);
    let r = check(&c, &page, contains(&long)).await;
    assert!(error(&r).starts_with(r#"body: "Out of stock Out"#), "{r:?}");
    assert!(error(&r).len() < 200, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assertion_on_a_body_cut_at_the_limit_says_so() {
    let target = Target::start().await;
    let c = checker_with(None, 1024);
    // The text within the first 1024 bytes: found.
    let r = check(&c, &target.url("/tail/100"), contains(TAIL)).await;
    assert_eq!(r.status, Status::Up, "{r:?}");
    // Past them: not found, and the error says why it may be there anyway.
    let r = check(&c, &target.url("/tail/4096"), contains(TAIL)).await;
    assert_eq!(r.status, Status::Down);
    assert_eq!(
        error(&r),
        r#"body: "THE END" not found in the response (only the first 1024 bytes were read: worker.max_body_bytes)"#
    );
    let r = check(&c, &target.url("/tail/4096"), json_at(&[("/a", json!(1))])).await;
    assert!(
        error(&r).starts_with("json: the response is not JSON ("),
        "{r:?}"
    );
    assert!(
        error(&r).ends_with("(only the first 1024 bytes were read: worker.max_body_bytes)"),
        "{r:?}"
    );

    // A 20 MB body is read up to the cap and no further, assertion or not.
    let r = check(&checker(), &target.url("/big"), contains("needle")).await;
    assert_eq!(r.status, Status::Down);
    assert!(error(&r).contains("only the first 65536 bytes"), "{r:?}");
    assert!(r.latency_ms < 2000, "{r:?}");
    assert_eq!(target.big_sent_in_full.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_assertions_pass_and_fail_saying_what_was_found() {
    let target = Target::start().await;
    let c = checker();
    let url = target.url("/json");
    let doc: Value = serde_json::from_str(JSON_DOC).expect("JSON_DOC is JSON");
    let r = check(
        &c,
        &url,
        json_at(&[
            ("/status", json!("ok")),
            ("/checks/0/ok", json!(true)),
            ("/version", doc["version"].clone()),
            ("/ratio", json!(0.5)),
        ]),
    )
    .await;
    assert_eq!((r.status, r.error.as_deref()), (Status::Up, None), "{r:?}");

    let r = check(
        &c,
        &url,
        json_at(&[("/status", json!("ok")), ("/version", json!(4))]),
    )
    .await;
    assert_eq!(r.status, Status::Down);
    assert_eq!(r.status_code, Some(200));
    assert_eq!(error(&r), "json: /version is 3, expected 4");

    let r = check(&c, &url, json_at(&[("/checks/1/name", json!("cache"))])).await;
    assert_eq!(error(&r), "json: /checks/1/name is missing");

    let r = check(&c, &url, json_at(&[("/checks/0", json!({"name": "db"}))])).await;
    assert_eq!(
        error(&r),
        r#"json: /checks/0 is {"name":"db","ok":true}, expected {"name":"db"}"#
    );

    let r = check(
        &c,
        &target.url("/page"),
        json_at(&[("/status", json!("ok"))]),
    )
    .await;
    assert_eq!(r.status, Status::Down);
    assert!(
        error(&r).starts_with("json: the response is not JSON (expected value at line 1"),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_is_judged_first_then_the_body_then_the_json() {
    let target = Target::start().await;
    let c = checker();
    let both = CheckFields {
        body_contains: Some("no such text".into()),
        ..json_at(&[("/version", json!(4))])
    };
    let r = check(&c, &target.url("/status/503"), both.clone()).await;
    assert_eq!(
        error(&r),
        "status: unexpected status 503 (expected 200-399)",
        "{r:?}"
    );
    let r = check(&c, &target.url("/json"), both).await;
    assert_eq!(
        error(&r),
        r#"body: "no such text" not found in the response"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_passing_check_is_degraded_and_a_failing_one_stays_down() {
    let target = Target::start().await;
    let c = checker();
    let slow = CheckFields {
        degraded_latency_ms: Some(100),
        ..CheckFields::default()
    };
    let r = check(&c, &target.url("/slow?ms=300"), slow.clone()).await;
    assert_eq!(r.status, Status::Degraded, "{r:?}");
    assert_eq!(r.status_code, Some(200));
    assert!(r.latency_ms >= 300, "{r:?}");
    assert_eq!(
        error(&r),
        format!("latency: {} ms, slower than 100 ms", r.latency_ms)
    );

    let r = check(
        &c,
        &target.url("/ok"),
        CheckFields {
            degraded_latency_ms: Some(2000),
            ..CheckFields::default()
        },
    )
    .await;
    assert_eq!((r.status, r.error.as_deref()), (Status::Up, None), "{r:?}");

    // Slow and failing: DOWN for the failure, not DEGRADED.
    let mut failing = job(&target.url("/slow?ms=300"), slow);
    failing.expected_statuses = Some(vec![204]);
    let r = c.run(&failing).await;
    assert_eq!(r.status, Status::Down);
    assert!(
        error(&r).starts_with("status: unexpected status 200"),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_follow_redirects_false_the_redirect_is_the_answer() {
    let target = Target::start().await;
    let c = checker();
    let no_follow = CheckFields {
        follow_redirects: Some(false),
        ..CheckFields::default()
    };
    let r = check(&c, &target.url("/redirect/1"), no_follow.clone()).await;
    assert_eq!((r.status, r.status_code), (Status::Up, Some(302)), "{r:?}");
    assert_eq!(target.hits("/redirect/0"), 0, "the redirect was followed");

    let mut strict = job(&target.url("/redirect/1"), no_follow.clone());
    strict.expected_statuses = Some(vec![200]);
    let r = c.run(&strict).await;
    assert_eq!(r.status, Status::Down);
    assert_eq!(error(&r), "status: unexpected status 302 (expected [200])");

    // Not followed, so not judged by where it points either.
    let r = check(
        &c,
        &target.url("/redirect-to?file:///etc/passwd"),
        no_follow,
    )
    .await;
    assert_eq!((r.status, r.status_code), (Status::Up, Some(302)), "{r:?}");

    // By default the redirect is followed.
    let r = check(&c, &target.url("/redirect/1"), CheckFields::default()).await;
    assert_eq!((r.status, r.status_code), (Status::Up, Some(200)), "{r:?}");
    assert_eq!(target.hits("/redirect/0"), 1);
}

/// A CA made for the test, its certificate in a `ca_file`, and HTTPS
/// targets with certificates it issues.
struct Https {
    ca: TestCa,
    ca_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Https {
    fn new() -> Https {
        let ca = TestCa::new("healthmon HTTPS checks CA");
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_file = ca.write_pem(dir.path(), "ca");
        Https {
            ca,
            ca_file,
            _dir: dir,
        }
    }

    /// A checker trusting the CA through its `ca_file`.
    fn checker(&self) -> Checker {
        checker_with(Some(&self.ca_file), MAX_BODY)
    }

    /// An HTTPS target whose certificate names `names` and is valid from
    /// `from` to `to` days from now.
    async fn target(&self, names: &[&str], from: i64, to: i64) -> Target {
        let config = self
            .ca
            .server_config_with(names, days_from_now(from), days_from_now(to));
        Target::start_tls_with(config).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_trusts_the_ca_file_and_records_when_the_certificate_expires() {
    let https = Https::new();
    let target = https.target(&["localhost"], -1, 90).await;
    let trusting = https.checker();

    let r = check(&trusting, &target.url("/ok"), CheckFields::default()).await;
    assert_eq!((r.status, r.status_code), (Status::Up, Some(200)), "{r:?}");
    assert_near(r.cert_expires_at, now_ms() + 90 * DAY_MS);

    // A pooled connection still reports its certificate. (The client puts
    // a connection back in its pool a moment after the answer, so one of
    // three checks may open another; two reusing none would fail.)
    for _ in 0..3 {
        let r = check(&trusting, &target.url("/keep"), CheckFields::default()).await;
        assert_eq!(r.status, Status::Up, "{r:?}");
        assert_near(r.cert_expires_at, now_ms() + 90 * DAY_MS);
    }
    assert_eq!(target.answered("/keep"), 3);
    let keep_connections = target.connections() - 1;
    assert!(keep_connections <= 2, "/keep's connection was not reused");

    // Without the CA file the certificate is not trusted.
    let r = check(&checker(), &target.url("/ok"), CheckFields::default()).await;
    assert_eq!(r.status, Status::Down);
    assert!(error(&r).starts_with("tls: "), "{r:?}");
    assert!(error(&r).contains("UnknownIssuer"), "{r:?}");
    assert_eq!(r.cert_expires_at, None);
    assert_eq!(target.answered("/ok"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_expiring_soon_is_degraded_and_an_expired_one_is_down() {
    let https = Https::new();
    let c = https.checker();
    let soon = https.target(&["localhost"], -1, 3).await;
    let within = |days| CheckFields {
        cert_expiry_days: Some(days),
        ..CheckFields::default()
    };
    let r = check(&c, &soon.url("/ok"), within(14)).await;
    assert_eq!(
        (r.status, r.status_code),
        (Status::Degraded, Some(200)),
        "{r:?}"
    );
    assert!(
        error(&r).starts_with("cert_expiry: the certificate expires in 3 days (20"),
        "{r:?}"
    );
    assert_near(r.cert_expires_at, now_ms() + 3 * DAY_MS);
    let r = check(&c, &soon.url("/ok"), within(2)).await;
    assert_eq!((r.status, r.error.as_deref()), (Status::Up, None), "{r:?}");
    // Both soft limits: both reasons, the certificate's first.
    let both = CheckFields {
        degraded_latency_ms: Some(100),
        ..within(14)
    };
    let r = check(&c, &soon.url("/slow?ms=300"), both).await;
    assert_eq!(r.status, Status::Degraded, "{r:?}");
    assert!(error(&r).starts_with("cert_expiry: "), "{r:?}");
    assert!(error(&r).contains("; latency: "), "{r:?}");

    let expired = https.target(&["localhost"], -30, -1).await;
    let r = check(&c, &expired.url("/ok"), CheckFields::default()).await;
    assert_eq!((r.status, r.status_code), (Status::Down, None), "{r:?}");
    assert!(
        error(&r).starts_with("cert_expiry: the certificate has expired"),
        "{r:?}"
    );
    assert_near(r.cert_expires_at, now_ms() - DAY_MS);
    assert_eq!(expired.hits("/ok"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_host_is_a_tls_failure_saying_so() {
    let https = Https::new();
    let other = https.target(&["other.example"], -1, 90).await;
    let r = check(&https.checker(), &other.url("/ok"), CheckFields::default()).await;
    assert_eq!(r.status, Status::Down, "{r:?}");
    assert!(
        error(&r).starts_with("tls: the certificate is not valid for the host name"),
        "{r:?}"
    );
    assert!(error(&r).contains("other.example"), "{r:?}");
    assert_eq!(other.hits("/ok"), 0);
}

#[test]
fn a_ca_file_that_cannot_be_read_stops_the_checker_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.pem");
    let err = Checker::with_settings(CheckerSettings {
        max_body_bytes: MAX_BODY,
        policy: AddressPolicy::default(),
        ca_file: Some(missing.clone()),
        schedule_header: false,
    })
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(err.starts_with("checks.ca_file "), "{err}");
    assert!(err.contains(&*missing.to_string_lossy()), "{err}");
}

// Through the API: the fields as a user sends them, the logs as a user
// reads them.

/// Registers `body` and waits for its first log; returns the service's id
/// and the log.
async fn register_and_check(m: &Monitor, body: Value) -> (i64, Value) {
    let id = id_of(&m.register(body).await);
    let log = eventually("the service's first log", || async {
        m.logs(id, "limit=1").await.into_iter().next()
    })
    .await;
    (id, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_a_post_with_a_secret_header_and_assertions_is_up_and_the_secret_stays_hidden() {
    let target = Target::start().await;
    let m = Monitor::start();
    let mut body = service("api", &target.url("/json"), 2);
    body["method"] = json!("POST");
    body["headers"] = json!({"Authorization": "Bearer t0p-s3cret-value"});
    body["body"] = json!("{\"probe\": true}");
    body["body_contains"] = json!("\"status\"");
    body["json"] = json!([{"pointer": "/version", "equals": 3}]);
    let (id, log) = register_and_check(&m, body).await;
    assert_eq!(log["status"], "UP", "{log}");
    assert_eq!(log["status_code"], 200, "{log}");
    assert_eq!(target.methods("/json")[0], "POST");
    assert_eq!(
        target.header_values("/json", "authorization")[0],
        "Bearer t0p-s3cret-value"
    );
    assert_eq!(target.bodies("/json")[0], "{\"probe\": true}");
    let shown = one_service(&m, id).await;
    assert_eq!(shown["headers"], json!({"Authorization": "***"}), "{shown}");
    assert!(!m.log_text().contains("t0p-s3cret-value"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_failed_assertions_are_down_and_a_slow_answer_degraded_with_their_reasons() {
    let target = Target::start().await;
    let m = Monitor::start();
    let mut wrong = service("wrong", &target.url("/json"), 2);
    wrong["json"] = json!([{"pointer": "/version", "equals": 4}]);
    let (_, log) = register_and_check(&m, wrong).await;
    assert_eq!(log["status"], "DOWN", "{log}");
    assert_eq!(log["error"], "json: /version is 3, expected 4", "{log}");

    let mut missing = service("missing", &target.url("/page"), 2);
    missing["body_contains"] = json!("Out of stock");
    let (_, log) = register_and_check(&m, missing).await;
    assert_eq!(log["status"], "DOWN", "{log}");
    assert_eq!(
        log["error"], "body: \"Out of stock\" not found in the response",
        "{log}"
    );

    let mut slow = service("slow", &target.url("/slow?ms=300"), 2);
    slow["degraded_latency_ms"] = json!(100);
    let (id, log) = register_and_check(&m, slow).await;
    assert_eq!(log["status"], "DEGRADED", "{log}");
    assert_eq!(log["status_code"], 200, "{log}");
    let error = log["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("latency: ") && error.ends_with(" ms, slower than 100 ms"),
        "{log}"
    );
    let shown = one_service(&m, id).await;
    assert_eq!(shown["last_status"], "DEGRADED", "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_https_services_trusted_through_checks_ca_file_log_their_certificates_expiry() {
    let https = Https::new();
    let good = https.target(&["localhost"], -1, 90).await;
    let expired = https.target(&["localhost"], -30, -1).await;
    let m = Monitor::start_with(&[(
        "HEALTHMON__CHECKS__CA_FILE",
        &https.ca_file.to_string_lossy(),
    )]);
    let expiry = |log: &Value| parse_rfc3339(log["cert_expires_at"].as_str().unwrap_or_default());

    let (_, up) = register_and_check(&m, service("shop", &good.url("/ok"), 2)).await;
    assert_eq!(
        (&up["status"], &up["error"]),
        (&json!("UP"), &Value::Null),
        "{up}"
    );
    assert_near(expiry(&up), now_ms() + 90 * DAY_MS);

    // The expired certificate fails the handshake, and the log still says
    // when it expired.
    let (_, down) = register_and_check(&m, service("old", &expired.url("/ok"), 2)).await;
    assert_eq!(down["status"], "DOWN", "{down}");
    assert!(down["status_code"].is_null(), "{down}");
    assert!(
        down["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("cert_expiry: the certificate has expired (")),
        "{down}"
    );
    assert_near(expiry(&down), now_ms() - DAY_MS);
}
