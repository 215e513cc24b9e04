use super::*;
use serde_json::json;

fn named(r: Result<ChannelSpec, Vec<FieldError>>) -> Vec<String> {
    let mut f: Vec<String> = r
        .err()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.field)
        .collect();
    f.sort();
    f
}

fn webhook() -> ChannelSpec {
    full_spec(
        &json!({"name": "ops", "kind": "webhook",
                "config": {"url": "https://u:pw@hooks.example/x", "secret": "s3cret"}}),
        None,
    )
    .unwrap()
}

#[test]
fn a_whole_channel_reads_with_its_defaults() {
    let spec = webhook();
    assert_eq!(spec.name, "ops");
    assert!(!spec.all_services);
    assert_eq!(spec.remind_every_s, 0);
    assert_eq!(spec.config["secret"], "s3cret");
    let shown = spec.shown_config().to_string();
    assert!(
        !shown.contains("s3cret") && !shown.contains("pw"),
        "{shown}"
    );
    // A webhook URL is write-only past its host: tokens ride in paths.
    assert!(
        shown.contains(r#""url":"https://hooks.example/***""#),
        "{shown}"
    );
}

#[test]
fn bad_fields_are_each_named() {
    assert_eq!(
        named(full_spec(&json!({"kind": "sms", "config": {}}), None)),
        ["kind", "name"]
    );
    assert_eq!(
        named(full_spec(
            &json!({"name": "a", "kind": "webhook", "config": {}, "remind_every_s": 5,
                    "all_services": "yes", "id": 3, "colour": 1}),
            None
        )),
        [
            "all_services",
            "colour",
            "config.url",
            "id",
            "remind_every_s"
        ]
    );
    assert_eq!(
        named(full_spec(
            &json!({"name": "a", "kind": "slack", "config": []}),
            None
        )),
        ["config"]
    );
    assert_eq!(named(full_spec(&json!([1]), None)), [""]);
    for remind in [json!(-1), json!(59), json!(MAX_REMIND_S + 1), json!(1.5)] {
        assert_eq!(
            named(full_spec(
                &json!({"name": "a", "kind": "ntfy", "config": {"topic": "t"},
                        "remind_every_s": remind}),
                None
            )),
            ["remind_every_s"],
            "{remind}"
        );
    }
}

#[test]
fn stars_are_never_stored_as_a_secret() {
    assert_eq!(
        named(full_spec(
            &json!({"name": "a", "kind": "pagerduty", "config": {"routing_key": "***"}}),
            None
        )),
        ["config.routing_key"]
    );
}

#[test]
fn a_secret_sent_back_as_shown_keeps_the_stored_value() {
    let stored = webhook();
    let shown = stored.shown_config();
    let again = full_spec(
        &json!({"name": "ops", "kind": "webhook", "config": shown}),
        Some(&stored),
    )
    .unwrap();
    assert_eq!(again.config, stored.config);
    // A new value replaces it.
    let changed = patch_spec(&stored, &json!({"config": {"secret": "new"}})).unwrap();
    assert_eq!(changed.config["secret"], "new");
    assert_eq!(changed.config["url"], stored.config["url"]);
    // Another kind's stars are not this channel's secret.
    let other = patch_spec(
        &stored,
        &json!({"kind": "pagerduty", "config": {"routing_key": "***"}}),
    );
    assert_eq!(named(other), ["config.routing_key"]);
}

#[test]
fn a_patch_merges_settings_and_a_kind_change_needs_new_ones() {
    let stored = webhook();
    let p = patch_spec(
        &stored,
        &json!({"config": {"secret": null}, "remind_every_s": 600}),
    )
    .unwrap();
    assert!(!p.config.contains_key("secret"));
    assert_eq!(p.remind_every_s, 600);
    assert_eq!(
        named(patch_spec(&stored, &json!({"kind": "ntfy"}))),
        ["config"]
    );
    let ntfy = patch_spec(
        &stored,
        &json!({"kind": "ntfy", "config": {"topic": "ops"}}),
    )
    .unwrap();
    assert_eq!(ntfy.config.len(), 1);
}

#[test]
fn literal_destinations_are_found_for_the_policy() {
    let spec = full_spec(
        &json!({"name": "a", "kind": "webhook",
                "config": {"url": "http://169.254.169.254/x", "api_base": "http://[::1]:9"}}),
        None,
    )
    .unwrap();
    let found: Vec<String> = spec
        .literal_addresses()
        .into_iter()
        .map(|(f, ip)| format!("{f}={ip}"))
        .collect();
    assert_eq!(found, ["config.url=169.254.169.254", "config.api_base=::1"]);
    let mail = full_spec(
        &json!({"name": "m", "kind": "email", "config": {"host": "0.0.0.0",
                "from": "a@example.org", "to": "b@example.org"}}),
        None,
    )
    .unwrap();
    assert_eq!(mail.literal_addresses().len(), 1);
}

#[test]
fn debug_never_prints_the_settings() {
    assert!(!format!("{:?}", webhook()).contains("s3cret"));
}

#[test]
fn a_kept_secret_does_not_follow_a_changed_destination() {
    let pd = full_spec(
        &json!({"name": "pd", "kind": "pagerduty",
                "config": {"routing_key": "RK", "api_base": "https://pd.example"}}),
        None,
    )
    .unwrap();
    // Left out of a PATCH or sent back as shown: refused, naming the secret.
    assert_eq!(
        named(patch_spec(
            &pd,
            &json!({"config": {"api_base": "https://evil.example"}})
        )),
        ["config.routing_key"]
    );
    assert_eq!(
        named(patch_spec(
            &pd,
            &json!({"config": {"api_base": "https://evil.example", "routing_key": "***"}})
        )),
        ["config.routing_key"]
    );
    assert_eq!(
        named(full_spec(
            &json!({"name": "pd", "kind": "pagerduty",
                    "config": {"routing_key": "***", "api_base": "https://evil.example"}}),
            Some(&pd)
        )),
        ["config.routing_key"]
    );
    // Sent again, it goes; the same destination keeps it.
    let moved = patch_spec(
        &pd,
        &json!({"config": {"api_base": "https://new.example", "routing_key": "RK"}}),
    )
    .unwrap();
    assert_eq!(moved.config["api_base"], "https://new.example");
    assert!(patch_spec(&pd, &json!({"config": {"api_base": "https://pd.example/"}})).is_ok());

    // Each kind's destination fields count.
    let cases = [
        (
            "email",
            json!({"host": "smtp.example.org", "username": "u", "password": "PW",
                   "from": "a@example.org", "to": "b@example.org"}),
            vec![
                json!({"host": "evil.example"}),
                json!({"port": 2525}),
                json!({"tls": "none"}),
            ],
            "config.password",
        ),
        (
            "telegram",
            json!({"bot_token": "1:T", "chat_id": "5"}),
            vec![
                json!({"chat_id": "6"}),
                json!({"api_base": "https://evil.example"}),
            ],
            "config.bot_token",
        ),
        (
            "ntfy",
            json!({"topic": "ops", "token": "tk"}),
            vec![
                json!({"topic": "other"}),
                json!({"api_base": "https://evil.example"}),
            ],
            "config.token",
        ),
        (
            "slack",
            json!({"url": "https://hooks.slack.com/services/T/B/X"}),
            vec![json!({"api_base": "https://evil.example"})],
            "config.url",
        ),
        (
            "webhook",
            json!({"url": "https://hooks.example/T0K", "secret": "S"}),
            vec![json!({"api_base": "https://evil.example"})],
            "config.secret",
        ),
    ];
    for (kind, config, changes, secret) in cases {
        let stored =
            full_spec(&json!({"name": "c", "kind": kind, "config": config}), None).unwrap();
        for change in changes {
            let errors = patch_spec(&stored, &json!({"config": change}))
                .err()
                .unwrap_or_default();
            assert!(
                errors
                    .iter()
                    .any(|e| e.field == secret && e.message.contains("send the secret again")),
                "{kind} {change}: {errors:?}"
            );
        }
        // A change elsewhere keeps the secret.
        assert!(
            patch_spec(&stored, &json!({"name": "renamed"})).is_ok(),
            "{kind}"
        );
    }
    // A new webhook URL with the signing secret kept is refused too, and
    // the webhook URL itself kept while api_base moves.
    let hook = full_spec(
        &json!({"name": "h", "kind": "webhook",
                "config": {"url": "https://hooks.example/T0K", "secret": "S"}}),
        None,
    )
    .unwrap();
    assert_eq!(
        named(patch_spec(
            &hook,
            &json!({"config": {"url": "https://evil.example/x"}})
        )),
        ["config.secret"]
    );
    assert_eq!(
        named(patch_spec(
            &hook,
            &json!({"config": {"api_base": "https://evil.example"}})
        )),
        ["config.secret", "config.url"]
    );
}
