//! Alert channels (`/channels`): CRUD per kind with secrets write-only, the
//! `***` round trip, bad input named field by field and storing nothing,
//! target safety on literal addresses, unique names, 404s, deletion.

use crate::helpers::*;
use healthmon::config::DatabaseUrl;
use healthmon::domain::ChannelId;
use healthmon::store::Store;
use reqwest::Method;
use reqwest::header::{LINK, LOCATION};
use serde_json::{Value, json};

/// The fields of a channel, as the API shows it.
const CHANNEL_FIELDS: [&str; 8] = [
    "id",
    "name",
    "kind",
    "config",
    "all_services",
    "remind_every_s",
    "created_at",
    "updated_at",
];

/// One channel per kind: its config, the setting that is secret, and the
/// secret's value (unique, so finding it anywhere in a response is a leak).
fn every_kind() -> Vec<(&'static str, Value, &'static str, &'static str)> {
    vec![
        (
            "webhook",
            json!({"url": "http://127.0.0.1:9/hook", "secret": "whsec-LEAK-1"}),
            "secret",
            "whsec-LEAK-1",
        ),
        (
            "slack",
            json!({"url": "https://hooks.slack.com/services/T0/B0/LEAK2", "api_base": "http://127.0.0.1:9"}),
            "url",
            "LEAK2",
        ),
        (
            "discord",
            json!({"url": "https://discord.com/api/webhooks/1/LEAK3"}),
            "url",
            "LEAK3",
        ),
        (
            "teams",
            json!({"url": "https://example.webhook.office.com/webhookb2/LEAK4"}),
            "url",
            "LEAK4",
        ),
        (
            "email",
            json!({"host": "127.0.0.1", "port": 2525, "tls": "none", "username": "hm",
                   "password": "pw-LEAK-5", "from": "hm@example.org", "to": ["ops@example.org"]}),
            "password",
            "pw-LEAK-5",
        ),
        (
            "ntfy",
            json!({"api_base": "http://127.0.0.1:9", "topic": "ops", "token": "tk_LEAK6"}),
            "token",
            "tk_LEAK6",
        ),
        (
            "telegram",
            json!({"bot_token": "123:LEAK7", "chat_id": "-100"}),
            "bot_token",
            "123:LEAK7",
        ),
        (
            "pagerduty",
            json!({"routing_key": "R0UTLEAK8"}),
            "routing_key",
            "R0UTLEAK8",
        ),
    ]
}

/// Creates a channel, asserting 201, and returns it.
pub async fn create_channel(m: &Monitor, body: Value) -> Value {
    let r = send(m, Method::POST, "/channels", &body).await;
    assert_eq!(r.status, 201, "create {body}: {}", r.text);
    r.json
}

/// A webhook channel named `name` posting to `url`.
pub fn webhook(name: &str, url: &str) -> Value {
    json!({"name": name, "kind": "webhook", "config": {"url": url}})
}

/// The writable fields of a channel as read, for sending back.
fn writable(v: &Value) -> Value {
    json!({"name": v["name"], "kind": v["kind"], "config": v["config"],
           "all_services": v["all_services"], "remind_every_s": v["remind_every_s"]})
}

/// The settings as stored (secrets included), read beside the running
/// monitor: SQLite in WAL mode lets a second reader in.
async fn stored_config(m: &Monitor, id: i64) -> serde_json::Map<String, Value> {
    let store = Store::open(&DatabaseUrl::Sqlite(m.db_path()), 1)
        .await
        .expect("open the store");
    store
        .get_channel(ChannelId(id))
        .await
        .expect("read")
        .expect("channel stored")
        .spec
        .config
}

#[track_caller]
fn assert_no_secret(r: &Reply, secret: &str, what: &str) {
    assert!(
        !r.text.contains(secret),
        "{what}: the secret {secret:?} is in a response: {}",
        r.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_round_trips_and_its_secret_is_never_shown() {
    let m = Monitor::start();
    let m = &m;
    for (kind, config, key, secret) in every_kind() {
        let body = json!({"name": format!("{kind} ops"), "kind": kind, "config": config,
                          "remind_every_s": 3600});
        let r = send(m, Method::POST, "/channels", &body).await;
        assert_eq!(r.status, 201, "{kind}: {}", r.text);
        assert_no_secret(&r, secret, kind);
        let id = id_of(&r.json);
        assert_eq!(r.header(LOCATION), Some(format!("/channels/{id}").as_str()));
        let keys: Vec<&str> = r
            .json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = CHANNEL_FIELDS.to_vec();
        expected.sort_unstable();
        assert_eq!(keys, expected, "{kind}: fields");
        assert_eq!(r.json["kind"], kind);
        assert_eq!(r.json["all_services"], false);
        assert_eq!(r.json["remind_every_s"], 3600);
        assert_eq!(r.json["config"][key], "***", "{kind}: {}", r.text);
        parse_time(&r.json["created_at"]);
        parse_time(&r.json["updated_at"]);

        let read = get(m, &format!("/channels/{id}")).await;
        assert_eq!(read.status, 200, "{}", read.text);
        assert_no_secret(&read, secret, kind);
        assert_eq!(
            read.json, r.json,
            "{kind}: GET differs from the POST's answer"
        );

        // What was read goes back as it is: the secret stays.
        wait_past(&read.json["updated_at"]).await;
        let mut again = writable(&read.json);
        again["all_services"] = json!(true);
        let put = send(m, Method::PUT, &format!("/channels/{id}"), &again).await;
        assert_eq!(
            put.status, 200,
            "{kind}: PUT of what was read: {}",
            put.text
        );
        assert_no_secret(&put, secret, kind);
        assert_eq!(put.json["all_services"], true);
        assert_eq!(put.json["config"], read.json["config"]);
        assert!(parse_time(&put.json["updated_at"]) > parse_time(&read.json["updated_at"]));
        assert_eq!(
            stored_config(m, id).await.get(key),
            config.get(key),
            "{kind}: the stored {key} was replaced by what was shown"
        );

        let patched = send(
            m,
            Method::PATCH,
            &format!("/channels/{id}"),
            &json!({"name": format!("{kind} renamed"), "config": {key: config[key]}}),
        )
        .await;
        assert_eq!(patched.status, 200, "{kind}: {}", patched.text);
        assert_no_secret(&patched, secret, kind);
        assert_eq!(patched.json["name"], format!("{kind} renamed"));
    }

    let all = get(m, "/channels").await;
    assert_eq!(all.status, 200);
    for (kind, _, _, secret) in every_kind() {
        assert_no_secret(&all, secret, "GET /channels");
        assert!(
            all.text.contains(&format!("{kind} renamed")),
            "{}",
            all.text
        );
    }
    let listed = all.json.as_array().unwrap();
    assert_eq!(listed.len(), 8);
    let ids: Vec<i64> = listed.iter().map(id_of).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "not by id: {ids:?}");

    for id in ids {
        let r = request(m, Method::DELETE, &format!("/channels/{id}"), None, None).await;
        assert_eq!(r.status, 204, "{}", r.text);
        assert_problem(&get(m, &format!("/channels/{id}")).await, 404, "deleted");
    }
    assert_eq!(get(m, "/channels").await.json, json!([]));
    // Nothing logged a secret either.
    let logs = m.log_text();
    for (_, _, _, secret) in every_kind() {
        assert!(!logs.contains(secret), "the log holds {secret:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_secret_replaces_the_old_and_stars_alone_are_refused() {
    let m = Monitor::start();
    let m = &m;
    let c = create_channel(
        m,
        json!({"name": "pd", "kind": "pagerduty", "config": {"routing_key": "first-key"}}),
    )
    .await;
    let id = id_of(&c);
    let path = format!("/channels/{id}");
    let r = send(
        m,
        Method::PATCH,
        &path,
        &json!({"config": {"routing_key": "second-key"}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(stored_config(m, id).await["routing_key"], "second-key");

    // Stars where there is no stored secret of this kind are not a secret.
    let refused = send(
        m,
        Method::POST,
        "/channels",
        &json!({"name": "x", "kind": "telegram", "config": {"bot_token": "***", "chat_id": "1"}}),
    )
    .await;
    assert_invalid(&refused, &["config.bot_token"], "*** as a new secret");
    let other_kind = send(
        m,
        Method::PATCH,
        &path,
        &json!({"kind": "ntfy", "config": {"topic": "t", "token": "***"}}),
    )
    .await;
    assert_invalid(&other_kind, &["config.token"], "*** across kinds");
    assert_eq!(stored_config(m, id).await["routing_key"], "second-key");
    assert_eq!(get(m, &path).await.json["kind"], "pagerduty");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_anywhere_in_a_url_are_never_shown() {
    let m = Monitor::start();
    let m = &m;
    let tokens = [
        "PASSW0RD-LEAK",
        "USER-LEAK",
        "PATH-LEAK",
        "QUERY-LEAK",
        "BARE-LEAK",
        "FRAG-LEAK",
        "BASE-LEAK",
    ];
    let hook_url = "http://USER-LEAK:PASSW0RD-LEAK@127.0.0.1:9/in/PATH-LEAK?token=QUERY-LEAK&BARE-LEAK#FRAG-LEAK";
    let hook = send(m, Method::POST, "/channels", &webhook("hook", hook_url)).await;
    assert_eq!(hook.status, 201, "{}", hook.text);
    // A generic webhook's URL shows only where it goes.
    assert_eq!(hook.json["config"]["url"], "http://127.0.0.1:9/***");
    let relay = send(
        m,
        Method::POST,
        "/channels",
        &json!({"name": "relay", "kind": "ntfy", "config": {"topic": "ops",
                "api_base": "http://127.0.0.1:9/ntfy?auth=BASE-LEAK"}}),
    )
    .await;
    assert_eq!(relay.status, 201, "{}", relay.text);
    // An api_base names a server: its path stays, its query values do not.
    assert_eq!(
        relay.json["config"]["api_base"],
        "http://127.0.0.1:9/ntfy?auth=***"
    );
    let mut replies = vec![hook, relay];
    for id in [id_of(&replies[0].json), id_of(&replies[1].json)] {
        let path = format!("/channels/{id}");
        let read = get(m, &path).await;
        wait_past(&read.json["updated_at"]).await;
        // What was read goes back as it is, renamed: nothing stored changes.
        let before = stored_config(m, id).await;
        let mut again = writable(&read.json);
        again["name"] = json!(format!("{} again", read.json["name"].as_str().unwrap()));
        let put = send(m, Method::PUT, &path, &again).await;
        assert_eq!(put.status, 200, "{}", put.text);
        assert_eq!(stored_config(m, id).await, before, "PUT of what was read");
        let patch = send(m, Method::PATCH, &path, &json!({"remind_every_s": 600})).await;
        assert_eq!(patch.status, 200, "{}", patch.text);
        assert_eq!(stored_config(m, id).await, before, "PATCH of another field");
        replies.extend([read, put, patch]);
    }
    assert_eq!(
        stored_config(m, id_of(&replies[0].json)).await["url"],
        hook_url
    );
    replies.push(get(m, "/channels").await);
    for r in &replies {
        for token in tokens {
            assert_no_secret(r, token, "a channel response");
        }
    }
    let logs = m.log_text();
    for token in tokens {
        assert!(!logs.contains(token), "the log holds {token:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_secret_is_refused_when_the_destination_changes() {
    let m = Monitor::start();
    let m = &m;
    let cases = [
        (
            json!({"name": "pd", "kind": "pagerduty",
                   "config": {"api_base": "http://127.0.0.1:9", "routing_key": "RK-LEAK"}}),
            json!({"api_base": "http://127.0.0.1:10"}),
            "config.routing_key",
            json!({"routing_key": "RK-NEW"}),
        ),
        (
            json!({"name": "mail", "kind": "email",
                   "config": {"host": "127.0.0.1", "port": 2525, "tls": "none", "username": "hm",
                              "password": "PW-LEAK", "from": "hm@example.org",
                              "to": ["ops@example.org"]}}),
            json!({"host": "127.0.0.2"}),
            "config.password",
            json!({"password": "PW-NEW"}),
        ),
        (
            json!({"name": "tg", "kind": "telegram",
                   "config": {"api_base": "http://127.0.0.1:9", "bot_token": "1:TG-LEAK",
                              "chat_id": "-100"}}),
            json!({"chat_id": "-200"}),
            "config.bot_token",
            json!({"bot_token": "1:TG-NEW"}),
        ),
        (
            webhook("hook", "http://127.0.0.1:9/in/URL-LEAK"),
            json!({"api_base": "http://127.0.0.1:10"}),
            "config.url",
            json!({"url": "http://127.0.0.1:9/in/URL-NEW"}),
        ),
    ];
    for (body, moved, secret, again) in cases {
        let created = create_channel(m, body.clone()).await;
        let id = id_of(&created);
        let path = format!("/channels/{id}");
        let before = stored_config(m, id).await;
        // PATCH leaving the secret alone, PATCH sending it back as shown,
        // PUT of what was read with the destination changed: all refused.
        let key = secret.trim_start_matches("config.");
        let mut shown_back = moved.clone();
        shown_back[key] = created["config"][key].clone();
        let mut put = writable(&created);
        for (k, v) in moved.as_object().unwrap() {
            put["config"][k] = v.clone();
        }
        for (method, body) in [
            (Method::PATCH, json!({"config": moved})),
            (Method::PATCH, json!({"config": shown_back})),
            (Method::PUT, put),
        ] {
            let r = send(m, method.clone(), &path, &body).await;
            assert_invalid(&r, &[secret], &format!("{method} {body}"));
            assert!(
                r.text
                    .contains("send the secret again when the destination changes"),
                "{}",
                r.text
            );
            assert_eq!(
                stored_config(m, id).await,
                before,
                "{method} {body} changed it"
            );
            assert_eq!(get(m, &path).await.json, created, "{method} {body}");
        }
        // Sent again with the new destination, it goes.
        let mut with_secret = moved.clone();
        for (k, v) in again.as_object().unwrap() {
            with_secret[k] = v.clone();
        }
        let r = send(m, Method::PATCH, &path, &json!({"config": with_secret})).await;
        assert_eq!(r.status, 200, "{}: {}", body["kind"], r.text);
        let stored = stored_config(m, id).await;
        for (k, v) in with_secret.as_object().unwrap() {
            assert_eq!(stored.get(k), Some(v), "{}: {k}", body["kind"]);
        }
        for (_, v) in again.as_object().unwrap() {
            assert_no_secret(&r, v.as_str().unwrap(), "the new secret");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_naming_the_field_and_stores_nothing() {
    let m = Monitor::start();
    let m = &m;
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        (
            "unknown kind",
            json!({"name": "a", "kind": "sms", "config": {}}),
            vec!["kind"],
        ),
        (
            "kind not a string",
            json!({"name": "a", "kind": 3, "config": {}}),
            vec!["kind"],
        ),
        (
            "missing config key",
            json!({"name": "a", "kind": "webhook", "config": {}}),
            vec!["config.url"],
        ),
        (
            "missing keys",
            json!({"name": "a", "kind": "telegram", "config": {"api_base": "http://127.0.0.1:9"}}),
            vec!["config.bot_token", "config.chat_id"],
        ),
        (
            "unknown config key",
            json!({"name": "a", "kind": "ntfy", "config": {"topic": "t", "priority": 5}}),
            vec!["config.priority"],
        ),
        (
            "metadata address",
            webhook("a", "http://169.254.169.254/latest/meta-data/"),
            vec!["config.url"],
        ),
        (
            "this-network address in api_base",
            json!({"name": "a", "kind": "slack",
                   "config": {"url": "https://hooks.slack.com/services/x", "api_base": "http://0.0.0.0:80"}}),
            vec!["config.api_base"],
        ),
        (
            "link-local in an IPv6 literal",
            webhook("a", "http://[::ffff:169.254.169.254]/"),
            vec!["config.url"],
        ),
        (
            "link-local SMTP host",
            json!({"name": "a", "kind": "email",
                   "config": {"host": "169.254.1.1", "from": "a@example.org", "to": "b@example.org"}}),
            vec!["config.host"],
        ),
        (
            "not an http URL",
            webhook("a", "file:///etc/passwd"),
            vec!["config.url"],
        ),
        (
            "negative reminder",
            json!({"name": "a", "kind": "ntfy", "config": {"topic": "t"}, "remind_every_s": -1}),
            vec!["remind_every_s"],
        ),
        (
            "reminder every second",
            json!({"name": "a", "kind": "ntfy", "config": {"topic": "t"}, "remind_every_s": 1}),
            vec!["remind_every_s"],
        ),
        (
            "reminder as text",
            json!({"name": "a", "kind": "ntfy", "config": {"topic": "t"}, "remind_every_s": "1h"}),
            vec!["remind_every_s"],
        ),
        (
            "all_services not a boolean",
            json!({"name": "a", "kind": "ntfy", "config": {"topic": "t"}, "all_services": 1}),
            vec!["all_services"],
        ),
        ("nothing", json!({}), vec!["name", "kind", "config"]),
        (
            "config not an object",
            json!({"name": "a", "kind": "webhook", "config": "http://x/"}),
            vec!["config"],
        ),
        (
            "empty name",
            json!({"name": " ", "kind": "ntfy", "config": {"topic": "t"}}),
            vec!["name"],
        ),
        (
            "read-only and unknown fields",
            json!({"id": 5, "name": "a", "kind": "ntfy", "config": {"topic": "t"}, "colour": "red"}),
            vec!["id", "colour"],
        ),
    ];
    for (what, body, fields) in &cases {
        let r = send(m, Method::POST, "/channels", body).await;
        assert_invalid(&r, fields, what);
    }
    let blocked = send(m, Method::POST, "/channels", &cases[5].1).await;
    assert!(
        blocked.text.contains("link-local") && blocked.text.contains("checks.allow_cidrs"),
        "the refusal says why: {}",
        blocked.text
    );
    let malformed = send_raw(m, Method::POST, "/channels", "{\"name\": ").await;
    assert_problem(&malformed, 400, "malformed JSON");
    let untyped = request(
        m,
        Method::POST,
        "/channels",
        Some("text/plain"),
        Some(b"{}".to_vec()),
    )
    .await;
    assert_problem(&untyped, 415, "not JSON");
    assert_eq!(
        get(m, "/channels").await.json,
        json!([]),
        "something was stored"
    );

    // The same rules on a change, which then changes nothing.
    let c = create_channel(m, webhook("kept", "http://127.0.0.1:9/hook")).await;
    let path = format!("/channels/{}", id_of(&c));
    for (what, method, body, fields) in [
        (
            "blocked",
            Method::PATCH,
            json!({"config": {"url": "http://169.254.169.254/"}}),
            vec!["config.url"],
        ),
        (
            "missing key",
            Method::PUT,
            json!({"name": "kept", "kind": "webhook", "config": {}}),
            vec!["config.url"],
        ),
        (
            "unknown kind",
            Method::PATCH,
            json!({"kind": "pager", "config": {}}),
            vec!["kind"],
        ),
        (
            "kind without config",
            Method::PATCH,
            json!({"kind": "ntfy"}),
            vec!["config"],
        ),
        (
            "bad reminder",
            Method::PATCH,
            json!({"remind_every_s": -5}),
            vec!["remind_every_s"],
        ),
        (
            "read-only",
            Method::PATCH,
            json!({"created_at": "2020-01-01T00:00:00Z"}),
            vec!["created_at"],
        ),
    ] {
        let r = send(m, method, &path, &body).await;
        assert_invalid(&r, &fields, what);
    }
    assert_eq!(
        get(m, &path).await.json,
        c,
        "a refused change changed the channel"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_literal_addresses_are_refused_when_checks_block_them() {
    let m = Monitor::start_with(&[("HEALTHMON__CHECKS__BLOCK_PRIVATE", "true")]);
    let r = send(
        &m,
        Method::POST,
        "/channels",
        &webhook("lan", "http://10.1.2.3/hook"),
    )
    .await;
    assert_invalid(&r, &["config.url"], "private address with block_private");
    assert!(r.text.contains("checks.block_private"), "{}", r.text);
    // A name is judged when it is resolved, at delivery.
    create_channel(&m, webhook("named", "http://hooks.internal.example/x")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_unique() {
    let m = Monitor::start();
    let m = &m;
    let a = create_channel(m, webhook("ops", "http://127.0.0.1:9/a")).await;
    let dup = send(
        m,
        Method::POST,
        "/channels",
        &webhook("ops", "http://127.0.0.1:9/b"),
    )
    .await;
    assert_invalid(&dup, &["name"], "a taken name");
    let b = create_channel(m, webhook("dev", "http://127.0.0.1:9/b")).await;
    let path = format!("/channels/{}", id_of(&b));
    let renamed = send(m, Method::PATCH, &path, &json!({"name": "ops"})).await;
    assert_invalid(&renamed, &["name"], "renamed to a taken name");
    let replaced = send(
        m,
        Method::PUT,
        &path,
        &webhook("ops", "http://127.0.0.1:9/b"),
    )
    .await;
    assert_invalid(&replaced, &["name"], "replaced with a taken name");
    assert_eq!(get(m, &path).await.json, b);
    assert_eq!(get(m, &format!("/channels/{}", id_of(&a))).await.json, a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_channels_are_404_and_other_methods_405() {
    let m = Monitor::start();
    let m = &m;
    create_channel(m, webhook("one", "http://127.0.0.1:9/a")).await;
    for path in [
        "/channels/999",
        "/channels/abc",
        "/channels/01",
        "/channels/%31",
        "/channels/-1",
    ] {
        assert_problem(&get(m, path).await, 404, path);
        let body = webhook("x", "http://127.0.0.1:9/x");
        assert_problem(&send(m, Method::PUT, path, &body).await, 404, path);
        assert_problem(
            &send(m, Method::PATCH, path, &json!({"name": "y"})).await,
            404,
            path,
        );
        assert_problem(
            &request(m, Method::DELETE, path, None, None).await,
            404,
            path,
        );
        let test = request(m, Method::POST, &format!("{path}/test"), None, None).await;
        assert_problem(&test, 404, "test of an unknown channel");
    }
    let r = request(m, Method::DELETE, "/channels", None, None).await;
    assert_problem(&r, 405, "DELETE /channels");
    assert!(
        r.header(reqwest::header::ALLOW)
            .is_some_and(|a| a.contains("POST"))
    );
    assert_problem(&get(m, "/channels/1/test").await, 405, "GET of a test");
    assert_eq!(get(m, "/channels").await.json.as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listing_is_paged_by_id_and_bounded() {
    let m = Monitor::start();
    let m = &m;
    for i in 0..5 {
        create_channel(m, webhook(&format!("c{i}"), "http://127.0.0.1:9/a")).await;
    }
    let mut seen = Vec::new();
    let mut next = "/channels?limit=2".to_owned();
    loop {
        let r = get(m, &next).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let page = r.json.as_array().unwrap().clone();
        assert!(page.len() <= 2);
        seen.extend(page.iter().map(|c| c["name"].as_str().unwrap().to_owned()));
        match r.header(LINK) {
            Some(link) => {
                next = link
                    .trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap()
                    .to_owned();
            }
            None => break,
        }
    }
    assert_eq!(seen, ["c0", "c1", "c2", "c3", "c4"]);
    for (query, field) in [
        ("limit=0", "limit"),
        ("after=x", "after"),
        ("kind=slack", "kind"),
    ] {
        let r = get(m, &format!("/channels?{query}")).await;
        assert_problem(&r, 400, query);
        assert!(error_fields(&r, query).contains(field), "{}", r.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_key_may_list_channels_but_not_change_them() {
    let dir = std::sync::Arc::new(tempfile::tempdir().expect("tempdir"));
    let admin = create_key(&dir, "admin", "write");
    let viewer = create_key(&dir, "viewer", "read");
    let m = Monitor::start_in(std::sync::Arc::clone(&dir), &[]);
    let body = webhook("ops", "http://127.0.0.1:9/a");
    let as_viewer = m
        .http
        .post(m.url("/channels"))
        .bearer_auth(&viewer)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(as_viewer.status(), 403);
    let anonymous = m.http.get(m.url("/channels")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let created = m
        .http
        .post(m.url("/channels"))
        .bearer_auth(&admin)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let listed: Value = m
        .http
        .get(m.url("/channels"))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
}

/// The store's channel and alert operations, the same on either backend:
/// unique names, the write compare-and-set, a test alert, deletion failing
/// pending alerts and unlisting the channel from services.
async fn store_keeps_channels(store: &Store) {
    use healthmon::domain::ServiceSpec;
    use healthmon::domain::alert_view::{AlertFilter, AlertState};
    use healthmon::domain::channel_spec::full_spec;
    use healthmon::store::ChannelSaved;

    let spec = full_spec(&webhook("ops", "http://127.0.0.1:9/a"), None).unwrap();
    let ChannelSaved::Saved(ops) = store.create_channel(&spec, 1_000).await.unwrap() else {
        panic!("not created");
    };
    assert!(matches!(
        store.create_channel(&spec, 1_000).await.unwrap(),
        ChannelSaved::NameTaken
    ));
    let other = full_spec(&webhook("dev", "http://127.0.0.1:9/b"), None).unwrap();
    let ChannelSaved::Saved(dev) = store.create_channel(&other, 1_000).await.unwrap() else {
        panic!("not created");
    };
    // A write from a stale read loses; a rename onto a taken name is told.
    let mut renamed = ops.spec.clone();
    renamed.name = "ops2".into();
    assert!(matches!(
        store
            .update_channel(ops.id, &renamed, 999, 2_000)
            .await
            .unwrap(),
        ChannelSaved::Conflict
    ));
    let ChannelSaved::Saved(ops) = store
        .update_channel(ops.id, &renamed, ops.updated_at, 1_000)
        .await
        .unwrap()
    else {
        panic!("not updated");
    };
    assert!(ops.updated_at > 1_000, "the version must move forward");
    renamed.name = "dev".into();
    assert!(matches!(
        store
            .update_channel(ops.id, &renamed, ops.updated_at, 3_000)
            .await
            .unwrap(),
        ChannelSaved::NameTaken
    ));

    let body = json!({"name": "svc", "url": NOWHERE, "interval": 30, "paused": true,
                      "channels": [ops.id.get(), dev.id.get()]});
    let spec: ServiceSpec = healthmon::domain::validate::full_spec(&body).unwrap();
    let svc = store.create_service(&spec, 1_000).await.unwrap();
    let pending = store
        .create_test_alert(ops.id, 5_000)
        .await
        .unwrap()
        .unwrap();
    let kept = store
        .create_test_alert(dev.id, 5_001)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pending.state, "pending");

    assert!(store.delete_channel(ops.id, 6_000).await.unwrap());
    assert!(!store.delete_channel(ops.id, 6_000).await.unwrap());
    assert!(
        store
            .create_test_alert(ops.id, 7_000)
            .await
            .unwrap()
            .is_none()
    );
    let failed = store.get_alert(pending.id).await.unwrap().unwrap();
    assert_eq!(
        (failed.state.as_str(), failed.last_error.as_deref()),
        ("failed", Some("channel deleted"))
    );
    assert_eq!(
        store.get_alert(kept.id).await.unwrap().unwrap().state,
        "pending"
    );
    let listed = store
        .list_alerts(
            AlertFilter {
                state: Some(AlertState::Failed),
                ..AlertFilter::default()
            },
            10,
            None,
        )
        .await
        .unwrap();
    assert_eq!(listed, [failed]);
    let svc = store.get_service(svc.id).await.unwrap().unwrap();
    assert_eq!(
        svc.channels,
        [dev.id],
        "the deleted channel is still listed"
    );
}

/// Deleting a channel unlists it from every service wherever it stands in
/// the list, and leaves alone a channel whose id merely contains its digits.
async fn deletion_unlists_exactly_the_channel(store: &Store) {
    use healthmon::domain::ServiceSpec;
    use healthmon::domain::channel_spec::full_spec;
    use healthmon::store::ChannelSaved;

    // Channels until one's id holds the first one's digits (the tenth, in
    // a fresh store).
    let mut ids: Vec<ChannelId> = Vec::new();
    let alike = loop {
        let spec = full_spec(
            &webhook(&format!("c{}", ids.len()), "http://127.0.0.1:9/"),
            None,
        )
        .unwrap();
        let ChannelSaved::Saved(c) = store.create_channel(&spec, 1_000).await.unwrap() else {
            panic!("not created");
        };
        ids.push(c.id);
        let first = ids[0].get().to_string();
        if ids.len() > 3 && c.id.get().to_string().contains(&first) {
            break c.id;
        }
        assert!(ids.len() < 1_000, "no id like {first}");
    };
    let doomed = ids[0];
    let (a, b) = (ids[1], ids[2]);
    let lists = [
        (vec![doomed], vec![]),
        (vec![doomed, a], vec![a]),
        (vec![a, doomed, b], vec![a, b]),
        (vec![a, doomed], vec![a]),
        (vec![alike], vec![alike]),
        (vec![alike, a], vec![alike, a]),
        (vec![], vec![]),
    ];
    let mut services = Vec::new();
    for (i, (list, _)) in lists.iter().enumerate() {
        let channels: Vec<i64> = list.iter().map(|c| c.get()).collect();
        let body = json!({"name": format!("svc{i}"), "url": NOWHERE, "interval": 30,
                          "paused": true, "channels": channels});
        let spec: ServiceSpec = healthmon::domain::validate::full_spec(&body).unwrap();
        services.push(store.create_service(&spec, 1_000).await.unwrap().id);
    }
    assert!(store.delete_channel(doomed, 2_000).await.unwrap());
    for (svc, (before, after)) in services.into_iter().zip(lists) {
        let read = store.get_service(svc).await.unwrap().unwrap();
        assert_eq!(read.channels, after, "listed {before:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_channel_unlists_exactly_it_on_sqlite_and_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::open(&DatabaseUrl::Sqlite(dir.path().join("t.db")), 2)
        .await
        .unwrap();
    deletion_unlists_exactly_the_channel(&sqlite).await;
    let Some(db) = pg_db().await else {
        return;
    };
    let pg = Store::open(&DatabaseUrl::Postgres(db.url.clone()), 2)
        .await
        .unwrap();
    deletion_unlists_exactly_the_channel(&pg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_keeps_channels_alike_on_sqlite_and_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::open(&DatabaseUrl::Sqlite(dir.path().join("t.db")), 2)
        .await
        .unwrap();
    store_keeps_channels(&sqlite).await;
    let Some(db) = pg_db().await else {
        return;
    };
    let pg = Store::open(&DatabaseUrl::Postgres(db.url.clone()), 2)
        .await
        .unwrap();
    store_keeps_channels(&pg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_a_thousand_channels_exist() {
    use futures_util::StreamExt;
    let m = Monitor::start_with(&[("HEALTHMON__API__WRITE_RATE_PER_S", "0")]);
    let m = &m;
    let created: Vec<u16> = futures_util::stream::iter(0..1000)
        .map(|i| async move {
            send(
                m,
                Method::POST,
                "/channels",
                &webhook(&format!("c{i}"), "http://127.0.0.1:9/"),
            )
            .await
            .status
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(created.iter().all(|s| *s == 201), "{created:?}");
    let over = send(
        m,
        Method::POST,
        "/channels",
        &webhook("one too many", "http://127.0.0.1:9/"),
    )
    .await;
    assert_problem(&over, 409, "the 1001st channel");
    assert!(over.text.contains("1000"), "{}", over.text);
    let first = get(m, "/channels?limit=1").await;
    assert_eq!(first.json.as_array().map(Vec::len), Some(1));
    let r = request(
        m,
        Method::DELETE,
        &format!("/channels/{}", id_of(&first.json[0])),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 204);
    create_channel(m, webhook("one too many", "http://127.0.0.1:9/")).await;
}
