//! Email alerts over real SMTP: `alert::mail::send` against Debian's
//! aiosmtpd on 127.0.0.1 (tests/common/smtp.rs), with STARTTLS, implicit
//! TLS, a login, and plain; and the ways it fails (wrong password, untrusted
//! certificate, no STARTTLS, nobody listening, a server that never speaks, a
//! blocked address), each with an error a person can act on that never
//! contains the password. Without aiosmtpd the server tests skip loudly, and
//! under CI they fail.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "test code: a panic is a failed test, and output is for the person running it"
)]

mod common;

use common::smtp::{SmtpServer, SmtpTls, TestSmtpCa};
use healthmon::alert::channel::ChannelConfig;
use healthmon::alert::mail::{MailError, MailSettings, send};
use healthmon::alert::render::{Delivery, Mail, render};
use healthmon::alert::{Alert, AlertEvent};
use healthmon::domain::{ServiceId, Status};
use healthmon::worker::guard::AddressPolicy;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

const USER: &str = "healthmon";
const PASSWORD: &str = "c0rrect-h0rse!";

/// A DOWN alert for "api", as the sender would build it.
fn down_alert() -> Alert {
    Alert {
        id: 4242,
        event: AlertEvent::Down,
        service_id: ServiceId(8),
        service_name: "api".into(),
        service: json!({"id": 8, "name": "api", "url": "https://api.example/health"}),
        old_status: Status::Up,
        new_status: Status::Down,
        at: 1_700_000_600_000,
        since: 1_700_000_600_000,
        check: Some(json!({"status": "DOWN", "latency_ms": 5000})),
        error: Some("timeout: no complete response within 5000 ms".into()),
        region: None,
    }
}

/// An `email` channel as the API would accept it, to `localhost`.
fn channel(port: u16, tls: &str, login: Option<(&str, &str)>) -> ChannelConfig {
    channel_to("localhost", port, tls, login)
}

fn channel_to(host: &str, port: u16, tls: &str, login: Option<(&str, &str)>) -> ChannelConfig {
    let mut config = json!({
        "host": host,
        "port": port,
        "tls": tls,
        "from": "healthmon@example.org",
        "to": ["ops@example.org", "oncall@example.org"],
    });
    if let Some((user, password)) = login {
        config["username"] = json!(user);
        config["password"] = json!(password);
    }
    ChannelConfig::parse("email", &config).expect("a valid email channel")
}

fn rendered(config: &ChannelConfig) -> Mail {
    match render(config, &down_alert(), 1_700_000_601) {
        Delivery::Mail(mail) => mail,
        other => panic!("an email channel renders a mail, not {other:?}"),
    }
}

fn trusting(ca_file: Option<&Path>) -> MailSettings {
    MailSettings::new(AddressPolicy::default(), ca_file.map(Path::to_owned)).expect("mail settings")
}

fn assert_is_the_down_alert(got: &Value) {
    assert_eq!(got["subject"], "[healthmon] api is DOWN (timeout)", "{got}");
    assert_eq!(got["from"], "healthmon@example.org", "{got}");
    assert_eq!(got["to"], "ops@example.org, oncall@example.org", "{got}");
    assert_eq!(got["mail_from"], "healthmon@example.org", "{got}");
    assert_eq!(
        got["rcpt_tos"],
        json!(["ops@example.org", "oncall@example.org"]),
        "{got}"
    );
    let body = got["body"].as_str().unwrap_or_default();
    for line in [
        "Service: api",
        "URL: https://api.example/health",
        "Change: UP → DOWN",
        "Reason: timeout",
        "Error: timeout: no complete response within 5000 ms",
        "Delivery 4242 from healthmon.",
    ] {
        assert!(
            body.contains(line),
            "{line:?} missing from the body:\n{body}"
        );
    }
}

#[tokio::test]
async fn a_down_alert_sent_with_starttls_and_a_login_arrives_with_its_subject_body_and_addresses() {
    let Some(server) = SmtpServer::start(SmtpTls::Starttls, Some((USER, PASSWORD))) else {
        return;
    };
    let config = channel(server.port, "starttls", Some((USER, PASSWORD)));
    let settings = trusting(server.ca_file.as_deref());
    send(&config, &rendered(&config), &settings)
        .await
        .unwrap_or_else(|e| panic!("{e}; server log:\n{}", server.log()));
    let got = server.wait_for(1);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_is_the_down_alert(&got[0]);
    // It travelled encrypted, after logging in as the channel's user.
    assert_eq!(got[0]["tls"], true, "{}", got[0]);
    assert_eq!(got[0]["login"], USER, "{}", got[0]);
    // The non-ASCII arrow went encoded, not as raw 8-bit text.
    let raw = got[0]["raw"].as_str().unwrap_or_default();
    assert!(raw.is_ascii(), "{raw}");
    // Marked as machine-made, so no vacation responder answers it.
    assert!(
        raw.contains("\r\nAuto-Submitted: auto-generated\r\n"),
        "{raw}"
    );
}

#[tokio::test]
async fn implicit_tls_to_a_literal_address_delivers_too() {
    let Some(server) = SmtpServer::start(SmtpTls::Implicit, Some((USER, PASSWORD))) else {
        return;
    };
    // An address, not a name: the certificate is checked against it.
    let config = channel_to("127.0.0.1", server.port, "implicit", Some((USER, PASSWORD)));
    let settings = trusting(server.ca_file.as_deref());
    send(&config, &rendered(&config), &settings)
        .await
        .unwrap_or_else(|e| panic!("{e}; server log:\n{}", server.log()));
    let got = server.wait_for(1);
    assert_is_the_down_alert(&got[0]);
    assert_eq!(got[0]["tls"], true, "{}", got[0]);
    assert_eq!(got[0]["login"], USER, "{}", got[0]);
}

#[tokio::test]
async fn a_wrong_password_fails_with_an_auth_error_that_does_not_contain_it() {
    let Some(server) = SmtpServer::start(SmtpTls::Starttls, Some((USER, PASSWORD))) else {
        return;
    };
    let wrong = "wr0ng-pa55word";
    let config = channel(server.port, "starttls", Some((USER, wrong)));
    let settings = trusting(server.ca_file.as_deref());
    let err = send(&config, &rendered(&config), &settings)
        .await
        .expect_err("a wrong password must not deliver");
    let text = err.to_string();
    assert!(matches!(err, MailError::Auth { .. }), "{text}");
    // The server's own verdict, as it said it.
    assert_eq!(
        text,
        "auth: permanent error (535): 5.7.8 Authentication credentials invalid"
    );
    assert!(err.is_permanent(), "{text}");
    assert!(!text.contains(wrong), "the password leaked: {text}");
    assert!(
        !format!("{err:?}").contains(wrong),
        "the password leaked: {err:?}"
    );
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn a_certificate_from_an_untrusted_ca_stops_the_mail_before_the_login() {
    let Some(server) = SmtpServer::start(SmtpTls::Starttls, Some((USER, PASSWORD))) else {
        return;
    };
    // Trust another CA than the one that issued the server's certificate.
    let dir = tempfile::tempdir().unwrap();
    let other = TestSmtpCa::new("a CA nobody asked for").write_pem(dir.path());
    let config = channel(server.port, "starttls", Some((USER, PASSWORD)));
    let err = send(&config, &rendered(&config), &trusting(Some(&other)))
        .await
        .expect_err("an untrusted certificate must not deliver");
    let text = err.to_string();
    assert_eq!(text, "tls: invalid peer certificate: UnknownIssuer");
    assert!(!text.contains(PASSWORD), "{text}");
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn starttls_is_not_silently_skipped_when_the_server_does_not_offer_it() {
    let Some(server) = SmtpServer::start(SmtpTls::None, None) else {
        return;
    };
    let config = channel(server.port, "starttls", Some((USER, PASSWORD)));
    let err = send(&config, &rendered(&config), &trusting(None))
        .await
        .expect_err("no STARTTLS, no mail");
    let text = err.to_string();
    assert!(text.starts_with("tls: "), "{text}");
    assert!(text.contains("does not offer STARTTLS"), "{text}");
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn plain_mode_against_a_plain_server_delivers_when_asked_for() {
    let Some(server) = SmtpServer::start(SmtpTls::None, None) else {
        return;
    };
    let config = channel(server.port, "none", None);
    send(&config, &rendered(&config), &trusting(None))
        .await
        .unwrap_or_else(|e| panic!("{e}; server log:\n{}", server.log()));
    let got = server.wait_for(1);
    assert_is_the_down_alert(&got[0]);
    assert_eq!(got[0]["tls"], false, "{}", got[0]);
}

#[tokio::test]
async fn a_server_that_is_not_there_fails_quickly_with_a_connect_error() {
    // A port that was just free: nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = channel(port, "starttls", Some((USER, PASSWORD)));
    let start = Instant::now();
    let err = send(&config, &rendered(&config), &trusting(None))
        .await
        .expect_err("nobody to send to");
    let text = err.to_string();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(text.starts_with("connect: "), "{text}");
    assert!(text.contains(&format!("localhost:{port}")), "{text}");
    assert!(!err.is_permanent(), "{text}");
}

#[tokio::test]
async fn a_server_that_never_answers_is_given_up_on_at_the_send_timeout() {
    // Accepts the connection, then says nothing (no 220 greeting).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let config = channel(port, "starttls", None);
    let settings = trusting(None).with_timeouts(Duration::from_secs(1), Duration::from_millis(800));
    let start = Instant::now();
    let err = send(&config, &rendered(&config), &settings)
        .await
        .expect_err("a silent server gets nothing");
    let took = start.elapsed();
    held.abort();
    let _ = held.await;
    assert!(
        err.to_string() == "timeout: the whole send took longer than 800 ms",
        "{err}"
    );
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[tokio::test]
async fn an_smtp_host_in_a_blocked_range_is_never_contacted() {
    let Some(server) = SmtpServer::start(SmtpTls::None, None) else {
        return;
    };
    // checks.block_private = true: loopback is blocked, by name or literal.
    let strict = MailSettings::new(AddressPolicy::new(true, &[]), None).unwrap();
    let config = channel(server.port, "none", None);
    let err = send(&config, &rendered(&config), &strict)
        .await
        .expect_err("a blocked host gets nothing");
    let text = err.to_string();
    assert!(text.starts_with("blocked: blocked address "), "{text}");
    assert!(text.contains("for localhost"), "{text}");
    assert!(text.contains("checks.block_private is on"), "{text}");
    assert!(server.received().is_empty());
    // Allowing the range lets the same mail through.
    let allowed = MailSettings::new(
        AddressPolicy::new(
            true,
            &["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
        ),
        None,
    )
    .unwrap();
    send(&config, &rendered(&config), &allowed).await.unwrap();
    assert_eq!(server.wait_for(1).len(), 1);
}

/// A server that accepts the message and then never answers QUIT: the mail
/// counts as sent (a retry would be a second mail), and the send returns
/// within the goodbye's own short timeout, though the whole-send timeout
/// has run out by then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_hanging_on_quit_after_accepting_is_a_sent_mail() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let Ok((sock, _)) = listener.accept().await else {
            return;
        };
        let (read, mut write) = sock.into_split();
        let mut lines = BufReader::new(read).lines();
        if write.write_all(b"220 fake ESMTP\r\n").await.is_err() {
            return;
        }
        let mut in_data = false;
        while let Ok(Some(line)) = lines.next_line().await {
            let verb = line.to_ascii_uppercase();
            let answer: &[u8] = if in_data {
                if line == "." {
                    in_data = false;
                    b"250 queued\r\n"
                } else {
                    continue;
                }
            } else if verb.starts_with("EHLO") {
                b"250 fake\r\n"
            } else if verb.starts_with("DATA") {
                in_data = true;
                b"354 go on\r\n"
            } else if verb.starts_with("QUIT") {
                // Never answers.
                tokio::time::sleep(Duration::from_secs(30)).await;
                break;
            } else {
                b"250 ok\r\n"
            };
            if write.write_all(answer).await.is_err() {
                break;
            }
        }
    });
    let config = channel_to("127.0.0.1", port, "none", None);
    // The whole send may take 1.5 s: the message is in by then, the goodbye
    // is still waited for past it (2 s at most).
    let settings =
        trusting(None).with_timeouts(Duration::from_secs(1), Duration::from_millis(1_500));
    let started = Instant::now();
    let sent = send(&config, &rendered(&config), &settings).await;
    assert!(sent.is_ok(), "accepted is sent: {sent:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    server.abort();
}
