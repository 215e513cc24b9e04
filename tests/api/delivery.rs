//! Alert delivery (DESIGN.md "Alerting"), end to end: a service changes
//! status, the recorder writes the outbox, the sender delivers to a real
//! receiver on 127.0.0.1, and `GET /alerts` says what became of it.
//!
//! What is promised: each change is one alert per channel; its delivery is
//! at least once (a sender killed after the receiver answered but before
//! the outcome was written sends it again), with the same
//! `X-Healthmon-Delivery` id each time, so a receiver can drop a repeat.
use crate::helpers::*;

use crate::common::receiver::{Received, Receiver, free_port};
use healthmon::alert::sign::verify;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

/// Creates a channel, asserting 201; its id.
async fn channel(m: &Monitor, name: &str, kind: &str, config: Value) -> i64 {
    let r = send(
        m,
        Method::POST,
        "/channels",
        &json!({"name": name, "kind": kind, "config": config}),
    )
    .await;
    assert_eq!(r.status, 201, "create channel {name}: {}", r.text);
    id_of(&r.json)
}

/// Registers a service checked every second at `url`, alerting `channels`.
async fn watched(m: &Monitor, name: &str, url: &str, channels: &[i64]) -> i64 {
    let svc = create(
        m,
        json!({"name": name, "url": url, "interval": 1, "timeout": 1, "channels": channels}),
    )
    .await;
    id_of(&svc)
}

/// Sends a test alert through `channel` and waits until the receiver has
/// it at `path`: the sender has run passes since whatever came before, so
/// a duplicate it was going to send would be in by now.
async fn after_a_later_delivery(m: &Monitor, receiver: &Receiver, path: &str, channel: i64) {
    let r = send(
        m,
        Method::POST,
        &format!("/channels/{channel}/test"),
        &json!({}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.text);
    within(DEADLINE, "the later test alert delivered", || async {
        receiver
            .received_at(path)
            .iter()
            .any(|got| got.json()["event"] == "test")
            .then_some(())
    })
    .await;
}

/// The requests at `path` for the alert `id` (not test alerts).
fn deliveries_of(receiver: &Receiver, path: &str, id: &Value) -> usize {
    receiver
        .received_at(path)
        .iter()
        .filter(|got| got.json()["id"] == *id)
        .count()
}

/// `GET /alerts?<query>`.
async fn alerts(m: &Monitor, query: &str) -> Vec<Value> {
    let r = get(m, &format!("/alerts?{query}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json.as_array().cloned().unwrap_or_default()
}

/// Waits until the service's alert of `event` is in `state`; returns it.
async fn alert_in_state(m: &Monitor, service: i64, event: &str, state: &str) -> Value {
    within(
        Duration::from_secs(30),
        &format!("service {service}'s {event} alert {state}"),
        || async {
            alerts(m, &format!("service_id={service}"))
                .await
                .into_iter()
                .find(|a| a["event"] == event && a["state"] == state)
        },
    )
    .await
}

fn delivery_id(r: &Received) -> String {
    r.header("x-healthmon-delivery")
        .expect("X-Healthmon-Delivery")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_gets_the_designed_body_signed_with_the_channels_secret() {
    let receiver = Receiver::start().await;
    let target = Target::start().await;
    let m = Monitor::start();
    let ch = channel(
        &m,
        "hook",
        "webhook",
        json!({"url": receiver.url("/hook"), "secret": "s3cret-signing-key"}),
    )
    .await;
    let svc = watched(&m, "api", &target.url("/fail"), &[ch]).await;

    let got = receiver.wait_for("/hook", 1, DEADLINE).await;
    let req = &got[0];
    assert_eq!(req.method, "POST");
    assert!(
        req.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{:?}",
        req.headers
    );
    let body = req.json();
    assert_eq!(body["event"], "down", "{body}");
    assert_eq!(body["service"]["id"], svc, "{body}");
    assert_eq!(body["service"]["name"], "api", "{body}");
    assert_eq!(body["service"]["url"], target.url("/fail"), "{body}");
    assert_eq!(body["old_status"], "PENDING", "{body}");
    assert_eq!(body["new_status"], "DOWN", "{body}");
    assert!(
        body["at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{body}"
    );
    assert_eq!(body["check"]["status"], "DOWN", "{body}");
    assert_eq!(body["check"]["status_code"], 500, "{body}");
    assert!(body["check"]["error"].is_string(), "{body}");
    assert_eq!(delivery_id(req), body["id"].to_string());

    let ts: i64 = req
        .header("x-healthmon-timestamp")
        .and_then(|t| t.parse().ok())
        .expect("a unix-seconds X-Healthmon-Timestamp");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - ts).abs() < 60, "timestamp {ts}, now {now}");
    let signature = req
        .header("x-healthmon-signature")
        .expect("X-Healthmon-Signature");
    assert!(signature.starts_with("sha256="), "{signature}");
    assert!(verify(b"s3cret-signing-key", ts, &req.body, signature));
    assert!(!verify(b"another-key", ts, &req.body, signature));

    let sent = alert_in_state(&m, svc, "down", "sent").await;
    assert_eq!(sent["attempts"], 1, "{sent}");
    assert_eq!(sent["id"], body["id"], "{sent}");
    // The secret is write-only everywhere, the logs included.
    assert!(!m.log_text().contains("s3cret-signing-key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_twice_gets_the_alert_three_times_with_one_delivery_id() {
    let receiver = Receiver::start().await;
    receiver.script("/hook", &[500, 500]);
    let target = Target::start().await;
    let m = Monitor::start();
    let ch = channel(&m, "hook", "webhook", json!({"url": receiver.url("/hook")})).await;
    let svc = watched(&m, "api", &target.url("/fail"), &[ch]).await;

    let sent = alert_in_state(&m, svc, "down", "sent").await;
    assert_eq!(sent["attempts"], 3, "{sent}");
    assert!(sent["last_error"].is_null(), "{sent}");
    // Sent is final: nothing more of it arrives, even after the sender
    // delivered something later.
    after_a_later_delivery(&m, &receiver, "/hook", ch).await;
    assert_eq!(
        deliveries_of(&receiver, "/hook", &sent["id"]),
        3,
        "three attempts, the third answered 200"
    );
    let got: Vec<Received> = receiver
        .received_at("/hook")
        .into_iter()
        .filter(|got| got.json()["id"] == sent["id"])
        .collect();
    let ids: Vec<String> = got.iter().map(delivery_id).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(ids[0], sent["id"].to_string());
    // Backoff: about 1 s, then about 2 s (±20 %), not a hammering.
    let gaps: Vec<Duration> = got.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(gaps[0] >= Duration::from_millis(750), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(1_550), "{gaps:?}");
    assert!(gaps[1] > gaps[0], "{gaps:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_receiver_fails_the_alert_at_once_and_says_why() {
    let receiver = Receiver::start().await;
    receiver.script("/hook", &[404]);
    let target = Target::start().await;
    let m = Monitor::start();
    let ch = channel(&m, "hook", "webhook", json!({"url": receiver.url("/hook")})).await;
    let svc = watched(&m, "api", &target.url("/fail"), &[ch]).await;

    let failed = alert_in_state(&m, svc, "down", "failed").await;
    assert_eq!(failed["attempts"], 1, "{failed}");
    let error = failed["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("404") && error.contains("127.0.0.1"),
        "{failed}"
    );
    assert_eq!(receiver.received_at("/hook").len(), 1);
}

/// Each chat kind's request, as its service reads it, through `api_base`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_http_kind_gets_its_own_format_through_api_base() {
    let receiver = Receiver::start().await;
    let target = Target::start().await;
    target.set_up(false);
    let m = Monitor::start();
    let base = receiver.base();
    let chans = [
        channel(
            &m,
            "slack",
            "slack",
            json!({"url": "https://hooks.slack.com/services/T0/B0/slacktoken", "api_base": base}),
        )
        .await,
        channel(
            &m,
            "discord",
            "discord",
            json!({"url": "https://discord.com/api/webhooks/1/discordtoken", "api_base": base}),
        )
        .await,
        channel(
            &m,
            "teams",
            "teams",
            json!({"url": "https://x.webhook.office.com/webhookb2/teamstoken", "api_base": base}),
        )
        .await,
        channel(
            &m,
            "telegram",
            "telegram",
            json!({"bot_token": "123:telegramtoken", "chat_id": "-10042", "api_base": base}),
        )
        .await,
        channel(
            &m,
            "ntfy",
            "ntfy",
            json!({"topic": "ops", "token": "tk_ntfytoken", "api_base": base}),
        )
        .await,
        channel(
            &m,
            "pagerduty",
            "pagerduty",
            json!({"routing_key": "R0UT1NGKEY", "api_base": base}),
        )
        .await,
    ];
    let svc = watched(&m, "checkout", &target.url("/switch"), &chans).await;

    // DOWN: every kind hears of it.
    let slack = receiver
        .wait_for("/services/T0/B0/slacktoken", 1, DEADLINE)
        .await;
    let text = slack[0].json()["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(text.contains("checkout is DOWN"), "{}", slack[0].json());
    assert!(slack[0].json()["blocks"].is_array());

    let discord = receiver
        .wait_for("/api/webhooks/1/discordtoken", 1, DEADLINE)
        .await;
    let embed = &discord[0].json()["embeds"][0];
    assert!(
        embed["title"]
            .as_str()
            .unwrap_or_default()
            .contains("checkout is DOWN"),
        "{embed}"
    );
    assert_eq!(discord[0].json()["allowed_mentions"]["parse"], json!([]));

    let teams = receiver
        .wait_for("/webhookb2/teamstoken", 1, DEADLINE)
        .await;
    let card = &teams[0].json()["attachments"][0];
    assert_eq!(
        card["contentType"], "application/vnd.microsoft.card.adaptive",
        "{card}"
    );
    assert!(card.to_string().contains("checkout is DOWN"), "{card}");

    let telegram = receiver
        .wait_for("/bot123:telegramtoken/sendMessage", 1, DEADLINE)
        .await;
    let msg = telegram[0].json();
    assert_eq!(msg["chat_id"], "-10042", "{msg}");
    assert_eq!(msg["parse_mode"], "HTML", "{msg}");
    assert!(
        msg["text"]
            .as_str()
            .unwrap_or_default()
            .contains("checkout is DOWN"),
        "{msg}"
    );

    let ntfy = receiver.wait_for("/", 1, DEADLINE).await;
    let note = ntfy[0].json();
    assert_eq!(note["topic"], "ops", "{note}");
    assert_eq!(note["priority"], 5, "{note}");
    assert!(
        note["title"]
            .as_str()
            .unwrap_or_default()
            .contains("checkout is DOWN"),
        "{note}"
    );
    assert_eq!(ntfy[0].header("authorization"), Some("Bearer tk_ntfytoken"));

    let pd = receiver.wait_for("/v2/enqueue", 1, DEADLINE).await;
    let trigger = pd[0].json();
    assert_eq!(trigger["routing_key"], "R0UT1NGKEY", "{trigger}");
    assert_eq!(trigger["event_action"], "trigger", "{trigger}");
    assert_eq!(trigger["payload"]["severity"], "critical", "{trigger}");
    let dedup = trigger["dedup_key"].clone();
    assert!(dedup.is_string(), "{trigger}");

    // UP: PagerDuty resolves the same incident; the chats hear it is back.
    target.set_up(true);
    let pd = receiver.wait_for("/v2/enqueue", 2, DEADLINE).await;
    let resolve = pd[1].json();
    assert_eq!(resolve["event_action"], "resolve", "{resolve}");
    assert_eq!(resolve["dedup_key"], dedup, "{resolve}");
    let slack = receiver
        .wait_for("/services/T0/B0/slacktoken", 2, DEADLINE)
        .await;
    assert!(
        slack[1].json()["text"]
            .as_str()
            .unwrap_or_default()
            .contains("checkout is UP again"),
        "{}",
        slack[1].json()
    );
    for event in ["down", "up"] {
        let all = alerts(&m, &format!("service_id={svc}")).await;
        let sent = all
            .iter()
            .filter(|a| a["event"] == event && a["state"] == "sent")
            .count();
        assert_eq!(sent, 6, "one {event} alert per channel, all sent: {all:?}");
    }
    // Tokens in URLs and headers never reach the logs.
    let logs = m.log_text();
    for token in [
        "slacktoken",
        "discordtoken",
        "telegramtoken",
        "tk_ntfytoken",
        "R0UT1NGKEY",
    ] {
        assert!(!logs.contains(token), "{token} in the logs");
    }
}

/// With `checks.block_private`, a receiver that resolves to loopback is
/// never sent to; the alert fails saying the address is blocked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_delivery_address_fails_the_alert_and_sends_nothing() {
    let receiver = Receiver::start().await;
    let m = Monitor::start_with(&[("HEALTHMON__CHECKS__BLOCK_PRIVATE", "true")]);
    let hook = format!("http://localhost:{}/hook", receiver.addr.port());
    let ch = channel(&m, "hook", "webhook", json!({"url": hook})).await;
    // The service's own check is blocked too, which makes it DOWN.
    let svc = watched(&m, "api", "http://localhost:9/health", &[ch]).await;

    let failed = alert_in_state(&m, svc, "down", "failed").await;
    let error = failed["last_error"].as_str().unwrap_or_default();
    assert!(error.starts_with("blocked"), "{failed}");
    assert!(
        error.contains("127.0.0.1") || error.contains("::1"),
        "{failed}"
    );
    assert!(receiver.received().is_empty(), "{:?}", receiver.received());
}

/// A process killed with SIGKILL after the alert was committed but before
/// it could be delivered (its receiver was down) delivers it after a
/// restart, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_committed_before_a_kill_9_is_delivered_after_restart_once() {
    let port = free_port();
    let target = Target::start().await;
    let mut m = Monitor::start();
    let ch = channel(
        &m,
        "hook",
        "webhook",
        json!({"url": format!("http://127.0.0.1:{port}/hook")}),
    )
    .await;
    let svc = watched(&m, "api", &target.url("/fail"), &[ch]).await;
    // Committed, tried, not delivered: the receiver is not there.
    let pending = within(
        Duration::from_secs(30),
        "a failed first attempt",
        || async {
            alerts(&m, &format!("service_id={svc}"))
                .await
                .into_iter()
                .find(|a| a["event"] == "down" && a["attempts"].as_i64() >= Some(1))
        },
    )
    .await;
    assert_eq!(pending["state"], "pending", "{pending}");
    assert!(
        pending["last_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("connect")),
        "{pending}"
    );
    m.kill9();

    let receiver = Receiver::start_on(port).await;
    let dir = std::sync::Arc::clone(&m.dir);
    drop(m);
    let m = Monitor::start_in(dir, &[]);
    let got = receiver.wait_for("/hook", 1, Duration::from_secs(30)).await;
    assert_eq!(got[0].json()["id"], pending["id"]);
    let sent = alert_in_state(&m, svc, "down", "sent").await;
    assert_eq!(sent["id"], pending["id"]);
    after_a_later_delivery(&m, &receiver, "/hook", ch).await;
    assert_eq!(
        deliveries_of(&receiver, "/hook", &pending["id"]),
        1,
        "delivered once after the restart"
    );
    let downs = alerts(&m, &format!("service_id={svc}"))
        .await
        .into_iter()
        .filter(|a| a["event"] == "down")
        .count();
    assert_eq!(downs, 1, "the restart made no second down alert");
}

/// More than `alerts.storm_threshold` changes for one channel at once
/// arrive as one grouped message listing them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_arrives_as_one_grouped_message() {
    let receiver = Receiver::start().await;
    let target = Target::start().await;
    target.set_up(true);
    let m = Monitor::start_with(&[("HEALTHMON__ALERTS__STORM_THRESHOLD", "3")]);
    let r = send(
        &m,
        Method::POST,
        "/channels",
        &json!({"name": "hook", "kind": "webhook", "all_services": true,
                "config": {"url": receiver.url("/hook")}}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(watched(&m, &format!("svc-{i}"), &target.url("/switch"), &[]).await);
    }
    // Every service UP first (no alert), then all DOWN in the same round.
    eventually("every service UP", || async {
        let all = all_services(&m).await;
        all.as_array()
            .is_some_and(|a| a.iter().all(|s| s["last_status"] == "UP"))
            .then_some(())
    })
    .await;
    target.set_up(false);
    let downs = eventually("8 down alerts sent", || async {
        let all = alerts(&m, "state=sent").await;
        let downs: Vec<Value> = all.into_iter().filter(|a| a["event"] == "down").collect();
        (downs.len() == 8).then_some(downs)
    })
    .await;
    let got = receiver.received_at("/hook");
    let storms: Vec<Value> = got
        .iter()
        .map(Received::json)
        .filter(|b| b["event"] == "storm")
        .collect();
    let singles = got.len() - storms.len();
    let listed: usize = storms
        .iter()
        .map(|s| s["alerts"].as_array().map_or(0, Vec::len))
        .sum();
    assert!(!storms.is_empty(), "no grouped message: {got:?}");
    assert_eq!(singles + listed, 8, "every alert told once");
    assert!(
        got.len() < 8,
        "grouped: {} messages for 8 changes",
        got.len()
    );
    for storm in &storms {
        assert_eq!(
            storm["count"],
            storm["alerts"].as_array().map_or(0, Vec::len)
        );
        assert!(
            storm["id"]
                .as_str()
                .is_some_and(|i| i.starts_with("storm-"))
        );
    }
    assert_eq!(downs.len(), ids.len());
}

/// An `email` channel gets its alert through a real SMTP server on
/// 127.0.0.1 (aiosmtpd; skipped loudly without it, failed under CI).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_channel_gets_the_alert_as_a_mail() {
    use crate::common::smtp::{SmtpServer, SmtpTls};
    let Some(smtp) = SmtpServer::start(SmtpTls::None, None) else {
        return;
    };
    let target = Target::start().await;
    let m = Monitor::start();
    let ch = channel(
        &m,
        "mail",
        "email",
        json!({"host": "localhost", "port": smtp.port, "tls": "none",
               "from": "healthmon@example.org", "to": ["ops@example.org"]}),
    )
    .await;
    let svc = watched(&m, "billing", &target.url("/fail"), &[ch]).await;

    let got = smtp.wait_for(1);
    let mail = &got[0];
    // The reason code follows in brackets once check errors carry one.
    assert!(
        mail["subject"]
            .as_str()
            .is_some_and(|s| s.starts_with("[healthmon] billing is DOWN")),
        "{mail}"
    );
    assert_eq!(mail["rcpt_tos"], json!(["ops@example.org"]), "{mail}");
    let body = mail["body"].as_str().unwrap_or_default();
    assert!(body.contains("Service: billing"), "{body}");
    assert!(body.contains("Change: PENDING → DOWN"), "{body}");
    let sent = alert_in_state(&m, svc, "down", "sent").await;
    assert!(
        body.contains(&format!("Delivery {} from healthmon.", sent["id"])),
        "{body}"
    );
}

/// At most `alerts.concurrency` deliveries are in flight at once, however
/// many alerts are due, one channel taking at most half of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_in_flight_are_bounded_by_alerts_concurrency() {
    let receiver = Receiver::start().await;
    // Long enough that the deliveries of services created one after the
    // other overlap.
    receiver.set_delay(Duration::from_secs(1));
    let target = Target::start().await;
    let m = Monitor::start_with(&[
        ("HEALTHMON__ALERTS__CONCURRENCY", "4"),
        ("HEALTHMON__ALERTS__STORM_THRESHOLD", "1000"),
    ]);
    let a = channel(&m, "a", "webhook", json!({"url": receiver.url("/a")})).await;
    let b = channel(&m, "b", "webhook", json!({"url": receiver.url("/b")})).await;
    let c = channel(&m, "c", "webhook", json!({"url": receiver.url("/c")})).await;
    for i in 0..12 {
        let ch = [a, b, c][i % 3];
        watched(&m, &format!("svc-{i}"), &target.url("/fail"), &[ch]).await;
    }
    for path in ["/a", "/b", "/c"] {
        let got = receiver.wait_for(path, 4, Duration::from_secs(30)).await;
        assert_eq!(got.len(), 4, "{path}");
    }
    let most = receiver.max_in_flight();
    assert!(
        (3..=4).contains(&most),
        "at most four at a time, and more than one channel's share used: {most}"
    );
}

/// A receiver that streams an endless answer is read up to
/// `alerts.max_response_bytes` and the alert counts as sent; one that never
/// answers is given up on at `alerts.http_timeout_s` and retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receivers_answer_is_read_bounded_and_a_silent_one_times_out() {
    let target = Target::start().await;
    let m = Monitor::start_with(&[("HEALTHMON__ALERTS__HTTP_TIMEOUT_S", "1")]);
    let endless = channel(
        &m,
        "endless",
        "webhook",
        json!({"url": target.url("/endless")}),
    )
    .await;
    let silent = channel(&m, "silent", "webhook", json!({"url": target.url("/hang")})).await;
    let svc = watched(&m, "api", &target.url("/fail"), &[endless, silent]).await;

    let sent = within(
        Duration::from_secs(30),
        "the endless receiver's alert sent",
        || async {
            alerts(&m, &format!("channel_id={endless}"))
                .await
                .into_iter()
                .find(|a| a["state"] == "sent")
        },
    )
    .await;
    assert_eq!(sent["attempts"], 1, "{sent}");
    let timed_out = within(
        Duration::from_secs(30),
        "the silent receiver's attempt over",
        || async {
            alerts(&m, &format!("channel_id={silent}"))
                .await
                .into_iter()
                .find(|a| a["attempts"].as_i64() >= Some(1))
        },
    )
    .await;
    assert_eq!(timed_out["state"], "pending", "retried: {timed_out}");
    let error = timed_out["last_error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("timeout:") && error.contains("1 s"),
        "{timed_out}"
    );
    let _ = svc;
}

/// SIGTERM while a delivery is in flight: the process still stops within
/// its deadline (the delivery gets a short grace), the alert stays pending,
/// and the next start delivers it under the same id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_cut_short_by_shutdown_stays_pending_and_is_sent_after_restart() {
    let receiver = Receiver::start().await;
    receiver.set_delay(Duration::from_secs(30));
    let target = Target::start().await;
    let mut m = Monitor::start_with(&[("HEALTHMON__ALERTS__HTTP_TIMEOUT_S", "60")]);
    let ch = channel(&m, "hook", "webhook", json!({"url": receiver.url("/hook")})).await;
    let svc = watched(&m, "api", &target.url("/fail"), &[ch]).await;
    let first = receiver.wait_for("/hook", 1, DEADLINE).await;

    let stopping = std::time::Instant::now();
    let status = m.terminate();
    assert!(status.success(), "{status:?}\n{}", m.log_text());
    assert!(
        stopping.elapsed() < Duration::from_secs(15),
        "stopped after {:?}",
        stopping.elapsed()
    );

    receiver.set_delay(Duration::ZERO);
    let dir = std::sync::Arc::clone(&m.dir);
    drop(m);
    let m = Monitor::start_in(dir, &[]);
    let sent = alert_in_state(&m, svc, "down", "sent").await;
    let got = receiver.received_at("/hook");
    assert_eq!(
        got.len(),
        2,
        "the cut-short attempt, then the one after restart"
    );
    assert_eq!(delivery_id(&got[1]), delivery_id(&first[0]));
    assert_eq!(delivery_id(&got[1]), sent["id"].to_string());
}

/// A receiver that never answers holds up only its own alerts: another
/// channel's alert written while that delivery hangs goes out at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_does_not_hold_up_other_channels() {
    let receiver = Receiver::start().await;
    let target = Target::start().await;
    let m = Monitor::start_with(&[("HEALTHMON__ALERTS__HTTP_TIMEOUT_S", "30")]);
    let silent = channel(&m, "silent", "webhook", json!({"url": target.url("/hang")})).await;
    let hook = channel(&m, "hook", "webhook", json!({"url": receiver.url("/hook")})).await;
    watched(&m, "first", &target.url("/fail"), &[silent, hook]).await;
    receiver.wait_for("/hook", 1, DEADLINE).await;
    eventually("the silent receiver's delivery under way", || async {
        (target.hits("/hang") >= 1).then_some(())
    })
    .await;

    let second = watched(&m, "second", &target.url("/fail"), &[hook]).await;
    let got = receiver.wait_for("/hook", 2, Duration::from_secs(10)).await;
    assert_eq!(got[1].json()["service"]["id"], second);
    let hanging = alerts(&m, &format!("channel_id={silent}")).await;
    assert_eq!(hanging.len(), 1, "{hanging:?}");
    assert_eq!(
        hanging[0]["attempts"], 0,
        "still in its first attempt: {hanging:?}"
    );
}

/// Many lanes hanging on one channel (twenty services down at once to a
/// receiver that never answers, storms off) take at most their channel's
/// share of `alerts.concurrency`: another channel's alert still goes out in
/// a moment, not after the hung deliveries time out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_hanging_lanes_on_one_channel_do_not_hold_up_another() {
    let receiver = Receiver::start().await;
    let target = Target::start().await;
    let m = Monitor::start_with(&[
        ("HEALTHMON__ALERTS__HTTP_TIMEOUT_S", "60"),
        ("HEALTHMON__ALERTS__CONCURRENCY", "16"),
        ("HEALTHMON__ALERTS__STORM_THRESHOLD", "1000"),
    ]);
    let silent = channel(&m, "silent", "webhook", json!({"url": target.url("/hang")})).await;
    let hook = channel(&m, "hook", "webhook", json!({"url": receiver.url("/hook")})).await;
    for i in 0..20 {
        watched(&m, &format!("svc-{i}"), &target.url("/fail"), &[silent]).await;
    }
    let hung = within(
        Duration::from_secs(20),
        "the silent receiver's deliveries under way",
        || async { (target.hits("/hang") >= 8).then(|| target.hits("/hang")) },
    )
    .await;
    assert!(hung <= 16, "{hung} deliveries to one channel at once");

    let started = std::time::Instant::now();
    let other = watched(&m, "other", &target.url("/fail"), &[hook]).await;
    let got = receiver.wait_for("/hook", 1, Duration::from_secs(15)).await;
    assert_eq!(got[0].json()["service"]["id"], other);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?} behind the hung channel",
        started.elapsed()
    );
    // The hung channel holds at most half the permits.
    assert!(
        target.hits("/hang") <= 8,
        "{} deliveries to the hung channel",
        target.hits("/hang")
    );
}

/// `POST /channels/{id}/test` reaches the receiver as a `test` alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_test_is_delivered() {
    let receiver = Receiver::start().await;
    let m = Monitor::start();
    let ch = channel(
        &m,
        "hook",
        "webhook",
        json!({"url": receiver.url("/hook"), "secret": "k"}),
    )
    .await;
    let r = send(
        &m,
        Method::POST,
        &format!("/channels/{ch}/test"),
        &json!({}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let got = receiver.wait_for("/hook", 1, DEADLINE).await;
    let body = got[0].json();
    assert_eq!(body["event"], "test", "{body}");
    assert_eq!(body["id"], r.json["id"], "{body}");
    let ts: i64 = got[0]
        .header("x-healthmon-timestamp")
        .unwrap()
        .parse()
        .unwrap();
    let sig = got[0].header("x-healthmon-signature").unwrap();
    assert!(verify(b"k", ts, &got[0].body, sig));
    let id = r.json["id"].as_i64().unwrap();
    let sent = within(Duration::from_secs(10), "the test alert sent", || async {
        let a = get(&m, &format!("/alerts/{id}")).await;
        (a.json["state"] == "sent").then_some(a.json)
    })
    .await;
    assert_eq!(sent["attempts"], 1, "{sent}");
}

/// A failing delivery to a URL that carries a token (Telegram's bot path)
/// says what failed naming the host only: the token is neither in
/// `last_error` nor in the logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delivery_never_shows_the_token_in_its_url() {
    let target = Target::start().await;
    let m = Monitor::start();
    let ch = channel(
        &m,
        "telegram",
        "telegram",
        json!({"bot_token": "999:s3cr3tb0tt0ken", "chat_id": "1",
               "api_base": format!("http://127.0.0.1:{}", free_port())}),
    )
    .await;
    let svc = watched(&m, "api", &target.url("/fail"), &[ch]).await;
    let tried = within(Duration::from_secs(30), "a failed attempt", || async {
        alerts(&m, &format!("service_id={svc}"))
            .await
            .into_iter()
            .find(|a| a["attempts"].as_i64() >= Some(1))
    })
    .await;
    let error = tried["last_error"].as_str().unwrap_or_default();
    assert!(error.starts_with("connect: 127.0.0.1"), "{tried}");
    assert!(!error.contains("s3cr3tb0tt0ken"), "{tried}");
    assert!(!m.log_text().contains("s3cr3tb0tt0ken"));
}
