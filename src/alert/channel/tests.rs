//! Unit tests of `alert::channel`.

use super::*;
use serde_json::json;

fn fields(r: Result<ChannelConfig, Vec<FieldError>>) -> Vec<String> {
    let mut f: Vec<String> = r
        .err()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.field)
        .collect();
    f.sort();
    f
}

#[test]
fn every_kind_reads_its_settings_and_shows_its_secrets_as_stars() {
    let cases = [
        (
            "webhook",
            json!({"url": "http://127.0.0.1:9/h", "secret": "s3"}),
            "s3",
        ),
        (
            "slack",
            json!({"url": "https://hooks.slack.com/services/T/B/XYZ"}),
            "XYZ",
        ),
        (
            "discord",
            json!({"url": "https://discord.com/api/webhooks/1/tok"}),
            "tok",
        ),
        (
            "teams",
            json!({"url": "https://x.webhook.office.com/wh/abc"}),
            "abc",
        ),
        (
            "email",
            json!({"host": "127.0.0.1", "port": 2525, "password": "pw!", "username": "u",
                   "from": "hm@example.org", "to": ["ops@example.org"]}),
            "pw!",
        ),
        ("ntfy", json!({"topic": "ops", "token": "tk_1"}), "tk_1"),
        (
            "telegram",
            json!({"bot_token": "123:AA", "chat_id": "-100"}),
            "123:AA",
        ),
        ("pagerduty", json!({"routing_key": "R0UT1NG"}), "R0UT1NG"),
    ];
    for (kind, config, secret) in cases {
        let parsed =
            ChannelConfig::parse(kind, &config).unwrap_or_else(|e| panic!("{kind}: {e:?}"));
        let shown = parsed.shown().to_string();
        assert!(!shown.contains(secret), "{kind}: {shown}");
        assert!(shown.contains("***"), "{kind}: {shown}");
        assert!(
            !format!("{parsed:?}").contains(secret),
            "{kind}: Debug leaks"
        );
    }
}

#[test]
fn tokens_in_urls_are_not_shown_nor_debug_printed() {
    let hook = ChannelConfig::parse(
        "webhook",
        &json!({"url": "https://u:pw1@hooks.example:8443/in/PATHTOK?token=QTOK#FTOK",
                "api_base": "https://BUSER:bpw@relay.example/base?key=BTOK&BARE"}),
    )
    .unwrap();
    let shown = hook.shown();
    assert_eq!(shown["url"], "https://hooks.example:8443/***");
    assert_eq!(
        shown["api_base"],
        "https://***:***@relay.example/base?key=***&***"
    );
    let ntfy = ChannelConfig::parse(
        "ntfy",
        &json!({"topic": "ops", "api_base": "https://ntfy.example/sub#FTOK"}),
    )
    .unwrap();
    assert_eq!(ntfy.shown()["api_base"], "https://ntfy.example/sub#***");
    let debug = format!("{hook:?} {ntfy:?}");
    for token in [
        "pw1", "PATHTOK", "QTOK", "FTOK", "BUSER", "bpw", "BTOK", "BARE",
    ] {
        assert!(!debug.contains(token), "{token} in {debug}");
    }
    assert!(
        debug.contains("webhook") && debug.contains("ntfy"),
        "{debug}"
    );
    // Nothing after the host: nothing to hide.
    assert_eq!(shown_origin("http://127.0.0.1:9/"), "http://127.0.0.1:9/");
    assert_eq!(shown_origin("http://[::1]:9/x"), "http://[::1]:9/***");
    assert_eq!(shown_url("https://h.example/p"), "https://h.example/p");
}

#[test]
fn the_destination_names_where_secrets_go() {
    let names = |kind: &str, config: Value| -> Vec<&'static str> {
        ChannelConfig::parse(kind, &config)
            .unwrap()
            .destination()
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    };
    assert_eq!(
        names(
            "email",
            json!({"host": "h.example", "from": "a@b.cd", "to": "e@f.gh"})
        ),
        ["host", "port", "tls"]
    );
    assert_eq!(
        names("telegram", json!({"bot_token": "1:A", "chat_id": "5"})),
        ["api_base", "chat_id"]
    );
    let pd = |config: Value| {
        ChannelConfig::parse("pagerduty", &config)
            .unwrap()
            .destination()
    };
    // The default spelled out is the same destination.
    assert_eq!(
        pd(json!({"routing_key": "k"})),
        pd(json!({"routing_key": "k", "api_base": "https://events.pagerduty.com/"}))
    );
    assert_ne!(
        pd(json!({"routing_key": "k"})),
        pd(json!({"routing_key": "k", "api_base": "https://evil.example"}))
    );
}

#[test]
fn defaults_fill_what_is_left_out() {
    let ntfy = ChannelConfig::parse("ntfy", &json!({"topic": "ops"})).unwrap();
    assert!(
        matches!(ntfy, ChannelConfig::Ntfy { ref api_base, .. } if api_base == "https://ntfy.sh")
    );
    let mail = ChannelConfig::parse(
        "email",
        &json!({"host": "smtp.example.org", "from": "a@example.org", "to": "b@example.org"}),
    )
    .unwrap();
    assert!(matches!(
        mail,
        ChannelConfig::Email {
            port: 587,
            tls: MailTls::Starttls,
            ..
        }
    ));
    let email = |config: Value| match ChannelConfig::parse("email", &config) {
        Ok(ChannelConfig::Email { port, tls, .. }) => (port, tls),
        other => panic!("{other:?}"),
    };
    let base = json!({"host": "h.example", "from": "a@example.org", "to": "b@example.org"});
    let with = |extra: Value| {
        let mut c = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    // Port 465 means implicit TLS, and implicit TLS means port 465.
    assert_eq!(email(with(json!({"port": 465}))), (465, MailTls::Implicit));
    assert_eq!(
        email(with(json!({"tls": "implicit"}))),
        (465, MailTls::Implicit)
    );
    assert_eq!(
        email(with(json!({"tls": "none", "port": 25}))),
        (25, MailTls::None)
    );
    assert_eq!(
        email(with(json!({"tls": "starttls", "port": 2525}))),
        (2525, MailTls::Starttls)
    );
}

#[test]
fn bad_settings_name_their_field() {
    assert_eq!(fields(ChannelConfig::parse("sms", &json!({}))), ["kind"]);
    assert_eq!(
        fields(ChannelConfig::parse("webhook", &json!([]))),
        ["config"]
    );
    assert_eq!(
        fields(ChannelConfig::parse("webhook", &json!({}))),
        ["config.url"]
    );
    assert_eq!(
        fields(ChannelConfig::parse(
            "webhook",
            &json!({"url": "ftp://x/", "sekret": 1})
        )),
        ["config.sekret", "config.url"]
    );
    assert_eq!(
        fields(ChannelConfig::parse("telegram", &json!({"chat_id": 5}))),
        ["config.bot_token", "config.chat_id"]
    );
    assert_eq!(
        fields(ChannelConfig::parse(
            "email",
            &json!({"host": "h", "port": 0, "from": "nobody", "to": ["x@y.z\r\nBcc: a@b.c"]})
        )),
        ["config.from", "config.port", "config.to"]
    );
    assert_eq!(
        fields(ChannelConfig::parse(
            "email",
            &json!({"host": "h", "tls": "ssl", "username": "u",
                    "from": "a@example.org", "to": "b@example.org"})
        )),
        ["config.password", "config.tls"]
    );
    assert_eq!(
        fields(ChannelConfig::parse("ntfy", &json!({"topic": "../admin"}))),
        ["config.topic"]
    );
}
