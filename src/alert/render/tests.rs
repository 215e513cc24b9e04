//! The formats, checked as each service would read them.

use super::*;
use crate::alert::channel::{ChannelConfig, Secret};
use crate::alert::sign::verify;
use crate::alert::tests::down_alert;

fn http(d: Delivery) -> (String, Vec<(String, String)>, Value) {
    match d {
        Delivery::Http(r) => {
            let body = serde_json::from_slice(&r.body).expect("JSON body");
            (r.url, r.headers, body)
        }
        Delivery::Mail(m) => panic!("a mail: {m:?}"),
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn a_webhook_gets_the_contract_body_a_stable_id_and_a_valid_signature() {
    let config = ChannelConfig::Webhook {
        url: "https://hooks.example/in".into(),
        secret: Some(Secret::new("s3")),
        api_base: Some("http://127.0.0.1:9".into()),
    };
    let alert = down_alert();
    let Delivery::Http(first) = render(&config, &alert, 1_700_000_700) else {
        panic!("not http")
    };
    assert_eq!(first.url, "http://127.0.0.1:9/in");
    let body: Value = serde_json::from_slice(&first.body).unwrap();
    for key in [
        "id",
        "event",
        "service",
        "old_status",
        "new_status",
        "at",
        "check",
    ] {
        assert!(body.get(key).is_some(), "{key} missing: {body}");
    }
    assert_eq!(body["event"], "down");
    assert_eq!(
        (body["old_status"].as_str(), body["new_status"].as_str()),
        (Some("UP"), Some("DOWN"))
    );
    let sig = header(&first.headers, "X-Healthmon-Signature").unwrap();
    assert!(verify(b"s3", 1_700_000_700, &first.body, sig));
    // A retry later: same delivery id, new timestamp, still valid.
    let Delivery::Http(retry) = render(&config, &alert, 1_700_000_760) else {
        panic!("not http")
    };
    assert_eq!(header(&retry.headers, "X-Healthmon-Delivery"), Some("42"));
    assert_eq!(
        header(&retry.headers, "X-Healthmon-Timestamp"),
        Some("1700000760")
    );
    let sig = header(&retry.headers, "X-Healthmon-Signature").unwrap();
    assert!(verify(b"s3", 1_700_000_760, &retry.body, sig));
    assert!(!format!("{retry:?}").contains("/in"), "Debug shows the URL");
}

#[test]
fn chat_messages_name_service_change_since_reason_and_error() {
    let alert = down_alert();
    let kinds = [
        ChannelConfig::Slack {
            url: Secret::new("https://hooks.slack.com/services/T/B/X"),
            api_base: None,
        },
        ChannelConfig::Discord {
            url: Secret::new("https://discord.com/api/webhooks/1/t"),
            api_base: None,
        },
        ChannelConfig::Teams {
            url: Secret::new("https://x.webhook.office.com/w"),
            api_base: None,
        },
        ChannelConfig::Ntfy {
            api_base: "https://ntfy.sh".into(),
            topic: "ops".into(),
            token: None,
        },
        ChannelConfig::Telegram {
            api_base: "https://api.telegram.org".into(),
            bot_token: Secret::new("1:A"),
            chat_id: "5".into(),
        },
        ChannelConfig::Pagerduty {
            api_base: "https://events.pagerduty.com".into(),
            routing_key: Secret::new("R"),
        },
    ];
    for config in kinds {
        let (_, _, body) = http(render(&config, &alert, 0));
        let text = body.to_string();
        for needle in [
            "api",
            "UP",
            "DOWN",
            "timeout",
            "no complete response",
            "2023-11-14T22:23:20",
        ] {
            assert!(
                text.contains(needle),
                "{config:?}: {needle} missing in {text}"
            );
        }
    }
    let Delivery::Mail(m) = render(
        &ChannelConfig::parse(
            "email",
            &json!({"host": "h", "from": "a@b.cd", "to": "c@d.ef"}),
        )
        .unwrap(),
        &alert,
        0,
    ) else {
        panic!("not a mail")
    };
    assert_eq!(m.subject, "[healthmon] api is DOWN (timeout)");
    assert!(m.body.contains("Reason: timeout") && m.body.contains("Since: 2023-11-14T22:23:20"));
}

#[test]
fn each_format_is_the_one_its_service_reads() {
    let alert = down_alert();
    let (url, _, slack) = http(render(
        &ChannelConfig::Slack {
            url: Secret::new("https://hooks.slack.com/services/T/B/X"),
            api_base: Some("http://127.0.0.1:1".into()),
        },
        &alert,
        0,
    ));
    assert_eq!(url, "http://127.0.0.1:1/services/T/B/X");
    assert_eq!(slack["blocks"][0]["type"], "header");
    let (_, _, discord) = http(render(
        &ChannelConfig::Discord {
            url: Secret::new("https://d/api/webhooks/1/t"),
            api_base: None,
        },
        &alert,
        0,
    ));
    assert_eq!(discord["embeds"][0]["color"], 0xD7_3A_49);
    assert_eq!(discord["allowed_mentions"]["parse"], json!([]));
    let (url, _, tg) = http(render(
        &ChannelConfig::Telegram {
            api_base: "http://127.0.0.1:2".into(),
            bot_token: Secret::new("9:Z"),
            chat_id: "-1".into(),
        },
        &alert,
        0,
    ));
    assert_eq!(url, "http://127.0.0.1:2/bot9:Z/sendMessage");
    assert_eq!(
        (tg["chat_id"].as_str(), tg["parse_mode"].as_str()),
        (Some("-1"), Some("HTML"))
    );
    let (url, headers, ntfy) = http(render(
        &ChannelConfig::Ntfy {
            api_base: "http://127.0.0.1:3".into(),
            topic: "ops".into(),
            token: Some(Secret::new("tk")),
        },
        &alert,
        0,
    ));
    assert_eq!(url, "http://127.0.0.1:3/");
    assert_eq!(
        (ntfy["topic"].as_str(), ntfy["priority"].as_i64()),
        (Some("ops"), Some(5))
    );
    assert_eq!(header(&headers, "Authorization"), Some("Bearer tk"));
}

#[test]
fn pagerduty_triggers_on_down_and_resolves_on_up_with_one_key_per_service() {
    let config = ChannelConfig::Pagerduty {
        api_base: "http://127.0.0.1:4".into(),
        routing_key: Secret::new("RK"),
    };
    let mut alert = down_alert();
    let (url, _, trigger) = http(render(&config, &alert, 0));
    assert_eq!(url, "http://127.0.0.1:4/v2/enqueue");
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["routing_key"], "RK");
    assert_eq!(trigger["payload"]["severity"], "critical");
    alert.event = AlertEvent::Up;
    let (_, _, resolve) = http(render(&config, &alert, 0));
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(resolve["dedup_key"], trigger["dedup_key"]);
    assert_eq!(resolve["dedup_key"], "healthmon-service-8");
    alert.event = AlertEvent::Test;
    let (_, _, test) = http(render(&config, &alert, 0));
    assert_ne!(
        test["dedup_key"], trigger["dedup_key"],
        "a test would touch the incident"
    );
}

#[test]
fn user_text_cannot_break_out_of_its_format() {
    let mut alert = down_alert();
    alert.service_name = "<!channel> & @everyone\r\nBcc: x@y.z".into();
    alert.error = Some(format!("status: {}", "x".repeat(5000)));
    let (_, _, slack) = http(render(
        &ChannelConfig::Slack {
            url: Secret::new("https://h/s"),
            api_base: None,
        },
        &alert,
        0,
    ));
    // mrkdwn (the fallback text, the fields) is escaped; the header is
    // plain_text, which Slack shows as it is and never parses.
    let mut mrkdwn = vec![slack["text"].clone()];
    mrkdwn.extend(
        slack["blocks"][1]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["text"].clone()),
    );
    for text in &mrkdwn {
        assert!(!text.to_string().contains("<!channel>"), "{text}");
    }
    assert!(
        mrkdwn[0]
            .as_str()
            .unwrap()
            .starts_with("&lt;!channel&gt; &amp;")
    );
    assert_eq!(slack["blocks"][0]["text"]["type"], "plain_text");
    let (_, _, tg) = http(render(
        &ChannelConfig::Telegram {
            api_base: "https://t".into(),
            bot_token: Secret::new("1:A"),
            chat_id: "5".into(),
        },
        &alert,
        0,
    ));
    assert!(tg["text"].as_str().unwrap().contains("&lt;!channel&gt;"));
    let Delivery::Mail(m) = render(
        &ChannelConfig::parse(
            "email",
            &json!({"host": "h", "from": "a@b.cd", "to": "c@d.ef"}),
        )
        .unwrap(),
        &alert,
        0,
    ) else {
        panic!("not a mail")
    };
    assert!(
        !m.subject.contains('\n') && !m.subject.contains('\r'),
        "{:?}",
        m.subject
    );
    // Long errors are cut, with a mark that they were.
    assert!(m.body.len() < 2000 && m.body.contains('…'));
}

/// A `degraded` alert for the same service: slow, 2.3 s over a 1 s limit.
fn degraded_alert() -> crate::alert::Alert {
    let mut alert = down_alert();
    alert.event = AlertEvent::Degraded;
    alert.new_status = Status::Degraded;
    let error = "latency: 2300 ms, over degraded_latency_ms 1000";
    alert.error = Some(error.into());
    alert.check = Some(json!({"status": "DEGRADED", "latency_ms": 2300, "error": error}));
    alert
}

#[test]
fn every_kind_shows_degraded_with_its_reason() {
    let alert = degraded_alert();
    let kinds = [
        ChannelConfig::Webhook {
            url: "https://hooks.example/in".into(),
            secret: None,
            api_base: None,
        },
        ChannelConfig::Slack {
            url: Secret::new("https://hooks.slack.com/services/T/B/X"),
            api_base: None,
        },
        ChannelConfig::Discord {
            url: Secret::new("https://discord.com/api/webhooks/1/t"),
            api_base: None,
        },
        ChannelConfig::Teams {
            url: Secret::new("https://x.webhook.office.com/w"),
            api_base: None,
        },
        ChannelConfig::Ntfy {
            api_base: "https://ntfy.sh".into(),
            topic: "ops".into(),
            token: None,
        },
        ChannelConfig::Telegram {
            api_base: "https://api.telegram.org".into(),
            bot_token: Secret::new("1:A"),
            chat_id: "5".into(),
        },
        ChannelConfig::Pagerduty {
            api_base: "https://events.pagerduty.com".into(),
            routing_key: Secret::new("R"),
        },
    ];
    for config in kinds {
        let (_, _, body) = http(render(&config, &alert, 0));
        let text = body.to_string();
        for needle in ["api", "DEGRADED", "latency", "2300 ms"] {
            assert!(
                text.contains(needle),
                "{config:?}: {needle} missing in {text}"
            );
        }
    }
    let (_, _, webhook) = http(render(
        &ChannelConfig::Webhook {
            url: "https://hooks.example/in".into(),
            secret: None,
            api_base: None,
        },
        &alert,
        0,
    ));
    assert_eq!(
        (&webhook["event"], &webhook["new_status"]),
        (&json!("degraded"), &json!("DEGRADED"))
    );
    let Delivery::Mail(m) = render(
        &ChannelConfig::parse(
            "email",
            &json!({"host": "h", "from": "a@b.cd", "to": "c@d.ef"}),
        )
        .unwrap(),
        &alert,
        0,
    ) else {
        panic!("not a mail")
    };
    assert_eq!(m.subject, "[healthmon] api is DEGRADED (latency)");
    assert!(m.body.contains("Reason: latency") && m.body.contains("UP → DEGRADED"));
}

#[test]
fn degraded_reads_as_a_warning_and_its_end_as_good_news() {
    let discord = ChannelConfig::Discord {
        url: Secret::new("https://d/api/webhooks/1/t"),
        api_base: None,
    };
    let ntfy = ChannelConfig::Ntfy {
        api_base: "http://127.0.0.1:3".into(),
        topic: "ops".into(),
        token: None,
    };
    let mut alert = degraded_alert();
    assert_eq!(
        http(render(&discord, &alert, 0)).2["embeds"][0]["color"],
        0xD2_99_22
    );
    let (_, _, n) = http(render(&ntfy, &alert, 0));
    assert_eq!(
        (n["priority"].as_i64(), &n["tags"][0]),
        (Some(3), &json!("warning"))
    );
    // Back from DOWN but DEGRADED: still amber.
    alert.event = AlertEvent::Up;
    alert.old_status = Status::Down;
    assert_eq!(
        http(render(&discord, &alert, 0)).2["embeds"][0]["color"],
        0xD2_99_22
    );
    // DEGRADED -> UP: green, and it says what ended.
    alert.old_status = Status::Degraded;
    alert.new_status = Status::Up;
    alert.error = None;
    alert.since = alert.at - 12 * 60_000;
    let (_, _, d) = http(render(&discord, &alert, 0));
    assert_eq!(d["embeds"][0]["color"], 0x2E_A0_43);
    assert_eq!(
        d["embeds"][0]["title"],
        "api is UP again (was DEGRADED for 12 min)"
    );
    let (_, _, n) = http(render(&ntfy, &alert, 0));
    assert_eq!(n["tags"][0], "white_check_mark");
}

#[test]
fn pagerduty_opens_a_warning_for_degraded_that_an_up_resolves() {
    let config = ChannelConfig::Pagerduty {
        api_base: "http://127.0.0.1:4".into(),
        routing_key: Secret::new("RK"),
    };
    let mut alert = degraded_alert();
    let (_, _, trigger) = http(render(&config, &alert, 0));
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["payload"]["severity"], "warning");
    assert_eq!(trigger["payload"]["class"], "latency");
    assert_eq!(
        trigger["dedup_key"], "healthmon-service-8",
        "keyed per service like down"
    );
    alert.event = AlertEvent::Up;
    alert.old_status = Status::Degraded;
    alert.new_status = Status::Up;
    let (_, _, resolve) = http(render(&config, &alert, 0));
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(resolve["dedup_key"], trigger["dedup_key"]);
}

/// A `region_impaired` alert as the sender builds it from its outbox row.
fn region_alert(event: AlertEvent) -> crate::alert::Alert {
    crate::alert::Alert {
        event,
        service_id: ServiceId(0),
        service_name: "region b".into(),
        service: json!({"id": null, "name": "region b"}),
        check: None,
        error: None,
        region: Some(crate::alert::RegionNote {
            name: "b".into(),
            compared: 26,
            failing: 25,
        }),
        ..down_alert()
    }
}

#[test]
fn a_region_alert_names_the_region_and_what_failed_from_it() {
    let webhook = ChannelConfig::Webhook {
        url: "https://hooks.example/in".into(),
        secret: None,
        api_base: None,
    };
    let (_, _, body) = http(render(
        &webhook,
        &region_alert(AlertEvent::RegionImpaired),
        0,
    ));
    assert_eq!(body["event"], "region_impaired");
    assert_eq!(body["region"]["name"], "b");
    assert_eq!(body["region"]["failing"], 25);
    assert_eq!(body["region"]["compared"], 26);
    // A service's alert has no region key.
    let (_, _, plain) = http(render(&webhook, &down_alert(), 0));
    assert!(plain.get("region").is_none(), "{plain}");
    let slack = ChannelConfig::Slack {
        url: Secret::new("https://hooks.slack.example/T/B/x"),
        api_base: None,
    };
    let (_, _, msg) = http(render(&slack, &region_alert(AlertEvent::RegionImpaired), 0));
    let text = msg["text"].as_str().unwrap();
    assert!(
        text.contains("region b is impaired") && text.contains("25 of 26"),
        "{text}"
    );
}

#[test]
fn pagerduty_opens_one_incident_per_region_that_its_recovery_resolves() {
    let config = ChannelConfig::Pagerduty {
        api_base: "http://127.0.0.1:4".into(),
        routing_key: Secret::new("RK"),
    };
    let (_, _, trigger) = http(render(
        &config,
        &region_alert(AlertEvent::RegionImpaired),
        0,
    ));
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["dedup_key"], "healthmon-region-b");
    let (_, _, resolve) = http(render(
        &config,
        &region_alert(AlertEvent::RegionRecovered),
        0,
    ));
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(resolve["dedup_key"], trigger["dedup_key"]);
}
