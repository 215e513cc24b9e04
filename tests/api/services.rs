//! Services, the REST API's main resource, as a user sees it: every
//! `/services` endpoint of the public contract (DESIGN.md, "REST API"), its
//! bodies and headers, and every error it promises, hostile input included,
//! against the real binary and real HTTP targets on 127.0.0.1.

use crate::helpers::*;
use reqwest::Method;
use reqwest::header::{ALLOW, LOCATION};
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// The fields of a service, as the contract lists them.
const SERVICE_FIELDS: [&str; 11] = [
    "id",
    "name",
    "url",
    "interval",
    "timeout",
    "last_status",
    "last_check",
    "last_latency_ms",
    "paused",
    "created_at",
    "updated_at",
];

// ------------------------------------------------------------- POST /services

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_answers_201_with_location_and_every_contract_field() {
    let t = Target::start().await;
    let mon = Monitor::start();
    let m = &mon;
    let started = chrono::Utc::now() - chrono::TimeDelta::seconds(1);
    let url = t.url("/ok");
    let r = send(
        m,
        Method::POST,
        "/services",
        &json!({"name": "api", "url": url, "interval": 30, "timeout": 5}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(
        r.content_type().starts_with("application/json"),
        "content-type {:?}",
        r.content_type()
    );
    let svc = &r.json;
    for key in SERVICE_FIELDS {
        assert!(svc.get(key).is_some(), "POST response lacks {key}: {svc}");
    }
    let id = id_of(svc);
    assert!(id > 0);
    assert_eq!(
        r.header(LOCATION),
        Some(format!("/services/{id}").as_str()),
        "Location header"
    );
    assert_eq!(svc["name"], "api");
    assert_eq!(svc["url"], json!(url));
    assert_eq!(svc["interval"], 30);
    assert_eq!(svc["timeout"], 5);
    assert_eq!(svc["last_status"], "PENDING");
    assert!(svc["last_check"].is_null(), "{svc}");
    assert!(svc["last_latency_ms"].is_null(), "{svc}");
    assert_eq!(svc["paused"], false);
    let created = parse_time(&svc["created_at"]);
    let updated = parse_time(&svc["updated_at"]);
    assert_eq!(created, updated, "a new service was never updated");
    let now = chrono::Utc::now() + chrono::TimeDelta::seconds(1);
    assert!(
        started <= created && created <= now,
        "created_at {created} is not now"
    );

    // The Location leads to the same service.
    let location = r.header(LOCATION).expect("location").to_owned();
    let got = get(m, &location).await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(settings(&got.json), settings(svc));

    // A second one gets another id and its own Location.
    let r2 = send(
        m,
        Method::POST,
        "/services",
        &json!({"name": "api 2", "url": url, "interval": 30}),
    )
    .await;
    assert_eq!(r2.status, 201, "{}", r2.text);
    let id2 = id_of(&r2.json);
    assert_ne!(id2, id);
    assert_eq!(
        r2.header(LOCATION),
        Some(format!("/services/{id2}").as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn original_notes_body_is_accepted_as_it_is() {
    let t = Target::start().await;
    let mon = Monitor::start();
    let m = &mon;
    // The notes' exact body and spelling ("Timeout"), with a local target
    // instead of www.google.com: the network is closed.
    let raw = format!(
        r#"{{"name": "test register", "url": "{}", "interval": 30, "Timeout": 20}}"#,
        t.url("/ok")
    );
    let r = send_raw(m, Method::POST, "/services", &raw).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["name"], "test register");
    assert_eq!(r.json["url"], json!(t.url("/ok")));
    assert_eq!(r.json["interval"], 30);
    assert_eq!(r.json["timeout"], 20);
    assert_eq!(r.json["last_status"], "PENDING");
    let id = id_of(&r.json);

    // And it is monitored: the first check comes without waiting an interval.
    let svc = eventually("the registered service to be UP", move || async move {
        let svc = one_service(m, id).await;
        (svc["last_status"] == "UP").then_some(svc)
    })
    .await;
    assert!(t.hits("/ok") >= 1);
    parse_time(&svc["last_check"]);
    assert!(
        svc["last_latency_ms"].as_i64().is_some_and(|l| l >= 0),
        "{svc}"
    );
    assert_eq!(svc["timeout"], 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_defaults_to_ten_seconds_or_the_interval_if_smaller() {
    let mon = Monitor::start();
    let m = &mon;
    for (body, expected) in [
        (json!({"interval": 60}), 10),
        (json!({"interval": 10}), 10),
        (json!({"interval": 3}), 3),
        (json!({"interval": 1}), 1),
        (json!({"interval": 60, "timeout": null}), 10),
        (json!({"interval": 60, "timeout": 59}), 59),
    ] {
        let svc = create(m, body_with(json!({"paused": true})).merge(&body)).await;
        assert_eq!(svc["timeout"], expected, "{body} -> {svc}");
        assert_eq!(one_service(m, id_of(&svc)).await["timeout"], expected);
    }
}

/// `Value` merge for building bodies.
trait Merge {
    fn merge(self, over: &Value) -> Value;
}

impl Merge for Value {
    fn merge(mut self, over: &Value) -> Value {
        for (k, v) in over.as_object().expect("object") {
            self[k] = v.clone();
        }
        self
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_bodies_are_422_naming_every_bad_field_and_store_nothing() {
    let mon = Monitor::start();
    let m = &mon;
    let baseline = create(m, body_with(json!({"name": "baseline", "paused": true}))).await;
    let before = all_services(m).await;

    let long_url = {
        let prefix = "http://127.0.0.1:9/";
        format!("{prefix}{}", "a".repeat(2049 - prefix.len()))
    };
    assert_eq!(long_url.len(), 2049);
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        ("empty name", body_with(json!({"name": ""})), vec!["name"]),
        (
            "blank name",
            body_with(json!({"name": "   "})),
            vec!["name"],
        ),
        (
            "201-character name",
            body_with(json!({"name": "n".repeat(201)})),
            vec!["name"],
        ),
        ("numeric name", body_with(json!({"name": 42})), vec!["name"]),
        ("null name", body_with(json!({"name": null})), vec!["name"]),
        (
            "name with a control character",
            body_with(json!({"name": "a\u{7}b"})),
            vec!["name"],
        ),
        (
            "ftp URL",
            body_with(json!({"url": "ftp://127.0.0.1/file"})),
            vec!["url"],
        ),
        (
            "javascript: URL",
            body_with(json!({"url": "javascript:alert(1)"})),
            vec!["url"],
        ),
        (
            "file URL",
            body_with(json!({"url": "file:///etc/passwd"})),
            vec!["url"],
        ),
        (
            "relative URL",
            body_with(json!({"url": "/health"})),
            vec!["url"],
        ),
        (
            "URL without a scheme",
            body_with(json!({"url": "example.com/health"})),
            vec!["url"],
        ),
        (
            "URL without a host",
            body_with(json!({"url": "http://"})),
            vec!["url"],
        ),
        ("empty URL", body_with(json!({"url": ""})), vec!["url"]),
        (
            "URL over 2048 bytes",
            body_with(json!({"url": long_url})),
            vec!["url"],
        ),
        ("numeric URL", body_with(json!({"url": 7})), vec!["url"]),
        (
            "interval 0",
            body_with(json!({"interval": 0})),
            vec!["interval"],
        ),
        (
            "interval 86401",
            body_with(json!({"interval": 86_401})),
            vec!["interval"],
        ),
        (
            "negative interval",
            body_with(json!({"interval": -5})),
            vec!["interval"],
        ),
        (
            "interval as a string",
            body_with(json!({"interval": "30"})),
            vec!["interval"],
        ),
        (
            "fractional interval",
            body_with(json!({"interval": 1.5})),
            vec!["interval"],
        ),
        (
            "huge interval",
            body_with(json!({"interval": 1e30})),
            vec!["interval"],
        ),
        (
            "timeout above the interval",
            body_with(json!({"interval": 5, "timeout": 6})),
            vec!["timeout"],
        ),
        (
            "timeout 0",
            body_with(json!({"timeout": 0})),
            vec!["timeout"],
        ),
        (
            "timeout as a string",
            body_with(json!({"timeout": "5"})),
            vec!["timeout"],
        ),
        (
            "fractional timeout",
            body_with(json!({"timeout": 2.5})),
            vec!["timeout"],
        ),
        (
            "paused not a boolean",
            body_with(json!({"paused": "yes"})),
            vec!["paused"],
        ),
        (
            "unknown field",
            body_with(json!({"colour": "red"})),
            vec!["colour"],
        ),
        ("read-only id", body_with(json!({"id": 7})), vec!["id"]),
        (
            "read-only last_status",
            body_with(json!({"last_status": "UP"})),
            vec!["last_status"],
        ),
        (
            "read-only created_at",
            body_with(json!({"created_at": "2020-01-01T00:00:00Z"})),
            vec!["created_at"],
        ),
        ("missing name", body_without("name"), vec!["name"]),
        ("missing url", body_without("url"), vec!["url"]),
        (
            "missing interval",
            body_without("interval"),
            vec!["interval"],
        ),
        ("empty object", json!({}), vec!["name", "url", "interval"]),
        (
            "several bad fields at once",
            json!({"name": "", "url": "ftp://x", "interval": 0, "colour": 1}),
            vec!["name", "url", "interval", "colour"],
        ),
    ];
    for (what, body, fields) in &cases {
        let r = send(m, Method::POST, "/services", body).await;
        assert_invalid(&r, fields, what);
        assert_eq!(
            all_services(m).await,
            before,
            "{what}: something was stored"
        );
    }

    // A body that is JSON but not an object.
    for body in [json!([1, 2]), json!("text"), json!(42), json!(null)] {
        let what = format!("non-object body {body}");
        let r = send(m, Method::POST, "/services", &body).await;
        assert_problem(&r, 422, &what);
        assert!(
            r.json["errors"].as_array().is_some_and(|e| !e.is_empty()),
            "{what}: no errors list: {}",
            r.text
        );
        assert_eq!(
            all_services(m).await,
            before,
            "{what}: something was stored"
        );
    }

    // No row was even created and rolled back: the next id follows on.
    let next = create(m, body_with(json!({"paused": true}))).await;
    assert_eq!(id_of(&next), id_of(&baseline) + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_inclusive() {
    let mon = Monitor::start();
    let m = &mon;
    let name = "n".repeat(200);
    let svc = create(m, body_with(json!({"name": name, "paused": true}))).await;
    assert_eq!(svc["name"], json!(name));

    let prefix = "http://127.0.0.1:9/";
    let url = format!("{prefix}{}", "a".repeat(2048 - prefix.len()));
    let svc = create(m, body_with(json!({"url": url, "paused": true}))).await;
    assert_eq!(svc["url"], json!(url), "a 2048-byte URL is kept as given");

    let svc = create(m, body_with(json!({"interval": 86_400, "paused": true}))).await;
    assert_eq!(
        (svc["interval"].clone(), svc["timeout"].clone()),
        (json!(86_400), json!(10))
    );
    let svc = create(
        m,
        body_with(json!({"interval": 1, "timeout": 1, "paused": true})),
    )
    .await;
    assert_eq!(
        (svc["interval"].clone(), svc["timeout"].clone()),
        (json!(1), json!(1))
    );
    let svc = create(
        m,
        body_with(json!({"interval": 45, "timeout": 45, "paused": true})),
    )
    .await;
    assert_eq!(svc["timeout"], 45);
    assert_eq!(all_services(m).await.as_array().map(Vec::len), Some(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_400_and_stores_nothing() {
    let mon = Monitor::start();
    let m = &mon;
    create(m, body_with(json!({"paused": true}))).await;
    let before = all_services(m).await;
    for raw in [
        r#"{"name": "a","#,
        r#"{"name": "a", "url": "http://127.0.0.1:9/", "interval": 30} trailing"#,
        "",
        "{'name': 'a'}",
        "not json",
        r#"{"name": "a" "url": "b"}"#,
    ] {
        let what = format!("body {raw:?}");
        let r = send_raw(m, Method::POST, "/services", raw).await;
        assert_problem(&r, 400, &what);
        assert_eq!(
            all_services(m).await,
            before,
            "{what}: something was stored"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_not_declared_as_json_is_415_and_stores_nothing() {
    let mon = Monitor::start();
    let m = &mon;
    let body = serde_json::to_vec(&body_with(json!({"paused": true}))).expect("json");
    for ct in [
        Some("text/plain"),
        None,
        Some("application/x-www-form-urlencoded"),
        Some("text/json"),
    ] {
        let what = format!("content-type {ct:?}");
        let r = request(m, Method::POST, "/services", ct, Some(body.clone())).await;
        assert_problem(&r, 415, &what);
        assert_eq!(
            all_services(m).await,
            json!([]),
            "{what}: something was stored"
        );
    }
    // The same body declared as JSON (with a charset) is fine.
    let r = request(
        m,
        Method::POST,
        "/services",
        Some("application/json; charset=utf-8"),
        Some(body),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
}

/// A POST body of exactly `size` bytes whose name fills the space.
fn body_of_size(size: usize) -> String {
    let head = r#"{"name":""#;
    let tail = r#"","url":"http://127.0.0.1:9/","interval":30,"paused":true}"#;
    let body = format!("{head}{}{tail}", "x".repeat(size - head.len() - tail.len()));
    assert_eq!(body.len(), size);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_64_kib_is_413_and_stores_nothing() {
    let mon = Monitor::start();
    let m = &mon;
    let svc = create(m, body_with(json!({"name": "kept", "paused": true}))).await;
    let id = id_of(&svc);
    let before = all_services(m).await;

    let huge = body_with(json!({"name": "x".repeat(70 * 1024)}));
    let r = send(m, Method::POST, "/services", &huge).await;
    assert_problem(&r, 413, "70 KiB POST");
    assert_eq!(
        all_services(m).await,
        before,
        "70 KiB POST stored something"
    );

    // 64 KiB is the limit: one byte more is too large, exactly 64 KiB is
    // read (and then refused for its far too long name).
    let r = send_raw(m, Method::POST, "/services", &body_of_size(64 * 1024 + 1)).await;
    assert_problem(&r, 413, "64 KiB + 1 POST");
    let r = send_raw(m, Method::POST, "/services", &body_of_size(64 * 1024)).await;
    assert_invalid(&r, &["name"], "exactly 64 KiB POST");

    for method in [Method::PUT, Method::PATCH] {
        let r = send(m, method.clone(), &format!("/services/{id}"), &huge).await;
        assert_problem(&r, 413, &format!("70 KiB {method}"));
    }
    assert_eq!(
        all_services(m).await,
        before,
        "oversized bodies changed state"
    );
}

// ------------------------------------------------------- GET /services(/{id})

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shows_every_service_with_its_current_status() {
    let t = Target::start().await;
    let mon = Monitor::start();
    let m = &mon;
    let r = get(m, "/services").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.content_type().starts_with("application/json"));
    assert_eq!(r.json, json!([]), "a fresh monitor has no services");

    let paused = create(
        m,
        json!({"name": "paused", "url": t.url("/status/204"), "interval": 3600, "paused": true}),
    )
    .await;
    let up = create(
        m,
        json!({"name": "up", "url": t.url("/ok"), "interval": 3600}),
    )
    .await;
    let down = create(
        m,
        json!({"name": "down", "url": t.url("/fail"), "interval": 3600}),
    )
    .await;
    let (paused_id, up_id, down_id) = (id_of(&paused), id_of(&up), id_of(&down));

    let list = eventually("the list to show UP and DOWN", move || async move {
        let list = all_services(m).await;
        let status = |id: i64| {
            list.as_array()
                .and_then(|l| l.iter().find(|s| id_of(s) == id))
                .map(|s| s["last_status"].clone())
        };
        (status(up_id) == Some(json!("UP")) && status(down_id) == Some(json!("DOWN")))
            .then_some(list)
    })
    .await;
    let list = list.as_array().expect("array");
    assert_eq!(list.len(), 3, "{list:?}");
    for svc in list {
        for key in SERVICE_FIELDS {
            assert!(svc.get(key).is_some(), "list entry lacks {key}: {svc}");
        }
        // Each entry is what GET /services/{id} says (nothing moves now: the
        // next checks are an hour away and one is paused).
        assert_eq!(&one_service(m, id_of(svc)).await, svc);
        let id = id_of(svc);
        if id == paused_id {
            assert_eq!(svc["last_status"], "PENDING");
            assert!(svc["last_check"].is_null());
            assert_eq!(svc["paused"], true);
            assert_eq!(t.hits("/status/204"), 0, "a paused service was checked");
        } else {
            parse_time(&svc["last_check"]);
            assert!(
                svc["last_latency_ms"].as_i64().is_some_and(|l| l >= 0),
                "{svc}"
            );
        }
    }
    let ids: Vec<i64> = list.iter().map(id_of).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted, "services are listed by id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_service_and_404_problems_for_what_does_not_exist() {
    let mon = Monitor::start();
    let m = &mon;
    let created = create(m, body_with(json!({"name": "one", "paused": true}))).await;
    let id = id_of(&created);
    let r = get(m, &format!("/services/{id}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.content_type().starts_with("application/json"));
    assert_eq!(r.json, created, "GET shows what POST returned");

    for bad in [
        "999999",
        "abc",
        "0",
        "-1",
        "1.5",
        "99999999999999999999999",
        "%20",
    ] {
        for path in [format!("/services/{bad}"), format!("/services/{bad}/logs")] {
            let r = get(m, &path).await;
            assert_problem(&r, 404, &format!("GET {path}"));
        }
    }
    for path in [
        "/nope",
        "/services/1/nothing",
        "/ui/nope.js",
        "/service",
        "/services/1/logs/2",
    ] {
        let r = get(m, path).await;
        assert_problem(&r, 404, &format!("GET {path}"));
    }
    assert_eq!(one_service(m, id).await, created);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_method_is_405_problem_and_changes_nothing() {
    let mon = Monitor::start();
    let m = &mon;
    let svc = create(m, body_with(json!({"paused": true}))).await;
    let id = id_of(&svc);
    let before = all_services(m).await;
    let body = body_with(json!({"paused": true}));
    for (method, path) in [
        (Method::DELETE, "/services".to_owned()),
        (Method::PUT, "/services".to_owned()),
        (Method::PATCH, "/services".to_owned()),
        (Method::POST, format!("/services/{id}")),
        (Method::POST, format!("/services/{id}/logs")),
        (Method::DELETE, format!("/services/{id}/logs")),
        (Method::POST, "/healthz".to_owned()),
        (Method::DELETE, "/readyz".to_owned()),
    ] {
        let r = send(m, method.clone(), &path, &body).await;
        assert_problem(&r, 405, &format!("{method} {path}"));
    }
    assert_eq!(all_services(m).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_405_says_which_methods_are_allowed() {
    let mon = Monitor::start();
    let m = &mon;
    let r = request(m, Method::DELETE, "/services", None, None).await;
    assert_problem(&r, 405, "DELETE /services");
    let allow = r
        .header(ALLOW)
        .unwrap_or_else(|| panic!("no Allow header: {:?}", r.headers));
    let methods: BTreeSet<String> = allow
        .split(',')
        .map(|s| s.trim().to_ascii_uppercase())
        .collect();
    assert!(
        methods.contains("GET") && methods.contains("POST"),
        "Allow: {allow}"
    );
}

// ------------------------------------------------------------ PUT and PATCH

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_replaces_every_field_and_resets_omitted_ones() {
    let t = Target::start().await;
    let mon = Monitor::start();
    let m = &mon;
    let old = create(
        m,
        json!({
            "name": "before", "url": NOWHERE, "interval": 30, "timeout": 5,
            "paused": true, "expected_statuses": [200, 204],
        }),
    )
    .await;
    let id = id_of(&old);
    let path = format!("/services/{id}");
    assert_eq!(old["expected_statuses"], json!([200, 204]));
    wait_past(&old["updated_at"]).await;

    let r = send(
        m,
        Method::PUT,
        &path,
        &json!({"name": "after", "url": t.url("/ok"), "interval": 60}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let new = r.json.clone();
    assert_eq!(id_of(&new), id);
    assert_eq!(new["name"], "after");
    assert_eq!(new["url"], json!(t.url("/ok")));
    assert_eq!(new["interval"], 60);
    assert_eq!(
        new["timeout"], 10,
        "omitted timeout is reset to its default"
    );
    assert_eq!(new["paused"], false, "omitted paused is reset to false");
    assert!(
        new["expected_statuses"].is_null(),
        "omitted expected_statuses reset: {new}"
    );
    assert_eq!(new["created_at"], old["created_at"]);
    assert!(parse_time(&new["updated_at"]) > parse_time(&old["updated_at"]));
    assert_eq!(settings(&one_service(m, id).await), settings(&new));

    // Unpaused by the PUT, it is checked at once, not an interval later.
    eventually("the replaced service to be checked", move || async move {
        (one_service(m, id).await["last_status"] == "UP").then_some(())
    })
    .await;
    let current = one_service(m, id).await;

    // Bad replacements are refused and change nothing.
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        (
            "missing url",
            json!({"name": "x", "interval": 60}),
            vec!["url"],
        ),
        (
            "timeout above interval",
            json!({"name": "x", "url": NOWHERE, "interval": 5, "timeout": 9}),
            vec!["timeout"],
        ),
        (
            "unknown field",
            json!({"name": "x", "url": NOWHERE, "interval": 5, "colour": 1}),
            vec!["colour"],
        ),
        (
            "read-only field",
            json!({"name": "x", "url": NOWHERE, "interval": 5, "updated_at": "2020-01-01T00:00:00Z"}),
            vec!["updated_at"],
        ),
        (
            "javascript URL",
            json!({"name": "x", "url": "javascript:alert(1)", "interval": 5}),
            vec!["url"],
        ),
    ];
    for (what, body, fields) in &cases {
        let r = send(m, Method::PUT, &path, body).await;
        assert_invalid(&r, fields, &format!("PUT {what}"));
        assert_eq!(
            settings(&one_service(m, id).await),
            settings(&current),
            "PUT {what}"
        );
    }
    let r = send_raw(m, Method::PUT, &path, r#"{"name": "x""#).await;
    assert_problem(&r, 400, "PUT malformed JSON");
    let r = request(
        m,
        Method::PUT,
        &path,
        Some("text/plain"),
        Some(b"{}".to_vec()),
    )
    .await;
    assert_problem(&r, 415, "PUT text/plain");
    assert_eq!(settings(&one_service(m, id).await), settings(&current));

    // PUT on what does not exist.
    let valid = json!({"name": "x", "url": NOWHERE, "interval": 5});
    for p in ["/services/999999", "/services/abc"] {
        let r = send(m, Method::PUT, p, &valid).await;
        assert_problem(&r, 404, &format!("PUT {p}"));
    }
    assert_eq!(all_services(m).await.as_array().map(Vec::len), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_changes_only_the_given_fields() {
    let mon = Monitor::start();
    let m = &mon;
    let old = create(
        m,
        json!({
            "name": "a", "url": NOWHERE, "interval": 30, "timeout": 20,
            "paused": true, "expected_statuses": [200],
        }),
    )
    .await;
    let id = id_of(&old);
    let path = format!("/services/{id}");
    wait_past(&old["updated_at"]).await;

    let r = send(m, Method::PATCH, &path, &json!({"name": "renamed"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let new = r.json.clone();
    let mut expected = old.clone();
    expected["name"] = json!("renamed");
    expected["updated_at"] = new["updated_at"].clone();
    assert_eq!(new, expected, "only name (and updated_at) changed");
    assert_eq!(new["created_at"], old["created_at"]);
    assert!(
        parse_time(&new["updated_at"]) > parse_time(&old["updated_at"]),
        "updated_at did not advance: {} -> {}",
        old["updated_at"],
        new["updated_at"]
    );
    assert_eq!(one_service(m, id).await, new);

    // Field names match case-insensitively, as for POST.
    let r = send(m, Method::PATCH, &path, &json!({"Timeout": 25})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["timeout"], 25);
    assert_eq!(r.json["name"], "renamed");
    assert_eq!(r.json["interval"], 30);
    let current = one_service(m, id).await;

    // Refused patches change nothing, not even updated_at.
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        (
            "timeout above interval",
            json!({"timeout": 31}),
            vec!["timeout"],
        ),
        ("ftp URL", json!({"url": "ftp://127.0.0.1/"}), vec!["url"]),
        ("null name", json!({"name": null}), vec!["name"]),
        ("empty name", json!({"name": ""}), vec!["name"]),
        ("interval 0", json!({"interval": 0}), vec!["interval"]),
        (
            "interval as a string",
            json!({"interval": "60"}),
            vec!["interval"],
        ),
        ("read-only id", json!({"id": 9}), vec!["id"]),
        ("unknown field", json!({"colour": 1}), vec!["colour"]),
        (
            "valid name with an invalid timeout",
            json!({"name": "ignored", "timeout": 0}),
            vec!["timeout"],
        ),
    ];
    for (what, body, fields) in &cases {
        let r = send(m, Method::PATCH, &path, body).await;
        assert_invalid(&r, fields, &format!("PATCH {what}"));
        assert_eq!(
            one_service(m, id).await,
            current,
            "PATCH {what} changed state"
        );
    }
    // Lowering the interval below the current timeout breaks the whole.
    let r = send(m, Method::PATCH, &path, &json!({"interval": 10})).await;
    assert_problem(&r, 422, "PATCH interval below timeout");
    let fields = error_fields(&r, "PATCH interval below timeout");
    assert!(
        fields.contains("timeout") || fields.contains("interval"),
        "{fields:?}"
    );
    assert_eq!(one_service(m, id).await, current);

    let r = send(m, Method::PATCH, &path, &json!([1])).await;
    assert_problem(&r, 422, "PATCH with an array");
    let r = send_raw(m, Method::PATCH, &path, "{").await;
    assert_problem(&r, 400, "PATCH malformed JSON");
    let r = request(
        m,
        Method::PATCH,
        &path,
        Some("text/plain"),
        Some(br#"{"name": "x"}"#.to_vec()),
    )
    .await;
    assert_problem(&r, 415, "PATCH text/plain");
    assert_eq!(one_service(m, id).await, current);

    for p in ["/services/999999", "/services/abc"] {
        let r = send(m, Method::PATCH, p, &json!({"name": "x"})).await;
        assert_problem(&r, 404, &format!("PATCH {p}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_take_effect_at_once() {
    let t = Target::start().await;
    let mon = Monitor::start();
    let m = &mon;
    // An hour between checks: anything faster is the change itself.
    let svc = create(
        m,
        json!({"name": "moving", "url": t.url("/fail"), "interval": 3600, "timeout": 2}),
    )
    .await;
    let id = id_of(&svc);
    eventually("the service to be DOWN", move || async move {
        (one_service(m, id).await["last_status"] == "DOWN").then_some(())
    })
    .await;
    let r = send(
        m,
        Method::PATCH,
        &format!("/services/{id}"),
        &json!({"url": t.url("/ok")}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    eventually("the new URL to be checked and UP", move || async move {
        (one_service(m, id).await["last_status"] == "UP").then_some(())
    })
    .await;
    assert!(t.hits("/ok") >= 1);
}

// ------------------------------------------------------------------ DELETE

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_the_service_and_its_logs() {
    let t = Target::start().await;
    let mon = Monitor::start();
    let m = &mon;
    let svc = create(m, service("doomed", &t.url("/ok"), 1)).await;
    let id = id_of(&svc);
    let path = format!("/services/{id}");
    wait_logs(m, id, 2).await;

    let r = request(m, Method::DELETE, &path, None, None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert!(r.text.is_empty(), "204 with a body: {:?}", r.text);
    let hits_at_delete = t.hits("/ok");

    assert_problem(&get(m, &path).await, 404, "GET after DELETE");
    assert_problem(
        &get(m, &format!("{path}/logs")).await,
        404,
        "logs after DELETE",
    );
    assert_problem(
        &request(m, Method::DELETE, &path, None, None).await,
        404,
        "second DELETE",
    );
    assert_problem(
        &send(m, Method::PATCH, &path, &json!({"name": "x"})).await,
        404,
        "PATCH after DELETE",
    );
    assert_problem(
        &send(m, Method::PUT, &path, &service("x", NOWHERE, 5)).await,
        404,
        "PUT after DELETE",
    );
    assert_eq!(all_services(m).await, json!([]));
    for p in ["/services/999999", "/services/abc"] {
        let r = request(m, Method::DELETE, p, None, None).await;
        assert_problem(&r, 404, &format!("DELETE {p}"));
    }

    // A new service gets a new id and no history: nothing of the old one
    // survives under any id.
    let fresh = create(m, service("witness", &t.url("/status/200"), 1)).await;
    let fresh_id = id_of(&fresh);
    assert_ne!(fresh_id, id, "ids are not reused");
    let logs = wait_logs(m, fresh_id, 4).await;
    assert!(
        logs.iter().all(|l| l["service_id"] == json!(fresh_id)),
        "{logs:?}"
    );
    // While the witness was checked 4 times (3+ s), the deleted service was
    // not checked again (one check may have been under way at the DELETE).
    assert!(
        t.hits("/ok") <= hits_at_delete + 1,
        "deleted service still checked: {} hits at delete, {} now",
        hits_at_delete,
        t.hits("/ok")
    );
    assert_problem(
        &get(m, &format!("{path}/logs")).await,
        404,
        "logs after DELETE, later",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patches_of_different_fields_keep_both_changes() {
    let mon = Monitor::start();
    let m = &mon;
    let id = id_of(&create(m, body_with(json!({"paused": true, "interval": 60}))).await);
    let path = format!("/services/{id}");
    let mut lost = Vec::new();
    for round in 0..40i64 {
        let name = format!("round {round}");
        let timeout = 1 + round % 50;
        let (by_name, by_timeout) = (json!({"name": name}), json!({"timeout": timeout}));
        let (ra, rb) = tokio::join!(
            send(m, Method::PATCH, &path, &by_name),
            send(m, Method::PATCH, &path, &by_timeout)
        );
        assert_eq!(
            (ra.status, rb.status),
            (200, 200),
            "{} / {}",
            ra.text,
            rb.text
        );
        let svc = one_service(m, id).await;
        if svc["name"] != json!(name) || svc["timeout"] != json!(timeout) {
            lost.push(format!(
                "round {round}: {} / {}",
                svc["name"], svc["timeout"]
            ));
        }
    }
    assert!(lost.is_empty(), "a PATCH undid another: {lost:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_is_answered_like_get() {
    let mon = Monitor::start();
    let m = &mon;
    for path in ["/healthz", "/readyz", "/services"] {
        let r = request(m, Method::HEAD, path, None, None).await;
        assert_eq!(r.status, 200, "HEAD {path}: {:?}", r.headers);
        assert!(r.text.is_empty(), "HEAD {path} has a body");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_over_64_kib_is_413_too() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mon = Monitor::start();
    let m = &mon;
    // No Content-Length to refuse up front: the limit holds while reading.
    let body =
        serde_json::to_vec(&body_with(json!({"name": "x".repeat(70 * 1024)}))).expect("json");
    let mut wire = format!(
        "POST /services HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        m.addr
    )
    .into_bytes();
    for chunk in body.chunks(8 * 1024) {
        wire.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        wire.extend_from_slice(chunk);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    let mut sock = tokio::net::TcpStream::connect(&m.addr)
        .await
        .expect("connect");
    let exchange = async {
        // The server may answer and close before it has read everything.
        let _ = sock.write_all(&wire).await;
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = sock.read(&mut buf).await {
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&answer).into_owned()
    };
    let answer = tokio::time::timeout(DEADLINE, exchange)
        .await
        .expect("no answer to a chunked POST");
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "chunked 70 KiB POST: {}",
        answer.chars().take(300).collect::<String>()
    );
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("application/problem+json"),
        "{answer}"
    );
    assert_eq!(all_services(m).await, json!([]), "something was stored");
}

// ------------------------------------------------------------------ secrets

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_in_the_url_is_never_shown() {
    let t = Target::start().await;
    let mon = Monitor::start();
    let m = &mon;
    let url = format!("http://user:secret@{}/ok", t.addr);
    let shown = format!("http://user:***@{}/ok", t.addr);

    let r = send(
        m,
        Method::POST,
        "/services",
        &json!({"name": "private", "url": url, "interval": 1, "timeout": 1}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(
        !r.text.contains("secret"),
        "POST shows the password: {}",
        r.text
    );
    assert_eq!(r.json["url"], json!(shown));
    let id = id_of(&r.json);

    let one = get(m, &format!("/services/{id}")).await;
    assert!(!one.text.contains("secret"), "GET shows it: {}", one.text);
    assert_eq!(one.json["url"], json!(shown));
    let list = get(m, "/services").await;
    assert!(
        !list.text.contains("secret"),
        "list shows it: {}",
        list.text
    );

    // The check uses the real URL (it is UP) and its logs show nothing.
    eventually("the private service to be UP", move || async move {
        (one_service(m, id).await["last_status"] == "UP").then_some(())
    })
    .await;
    let logs = get(m, &format!("/services/{id}/logs")).await;
    assert!(!logs.text.contains("secret"), "logs show it: {}", logs.text);

    // A PATCH that keeps the URL keeps it hidden; a PUT with a new one too.
    let r = send(
        m,
        Method::PATCH,
        &format!("/services/{id}"),
        &json!({"name": "renamed"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(!r.text.contains("secret"), "PATCH shows it: {}", r.text);
    assert_eq!(r.json["url"], json!(shown));
    let refused = format!("http://admin:secret@127.0.0.1:{}/", closed_port());
    let r = send(
        m,
        Method::PUT,
        &format!("/services/{id}"),
        &json!({"name": "refused", "url": refused, "interval": 3600, "timeout": 1}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(!r.text.contains("secret"), "PUT shows it: {}", r.text);
    // A failing check's error does not quote the URL either.
    let logs = eventually("a DOWN log", move || async move {
        let logs = get(m, &format!("/services/{id}/logs")).await;
        logs.json
            .as_array()
            .is_some_and(|l| l.iter().any(|l| l["status"] == "DOWN"))
            .then_some(logs)
    })
    .await;
    assert!(
        !logs.text.contains("secret"),
        "error shows it: {}",
        logs.text
    );

    // Nor does a validation error for a URL with a password.
    let r = send(
        m,
        Method::POST,
        "/services",
        &json!({"name": "x", "url": "ftp://user:secret@127.0.0.1/", "interval": 5}),
    )
    .await;
    assert_invalid(&r, &["url"], "ftp URL with a password");
    assert!(!r.text.contains("secret"), "422 shows it: {}", r.text);

    // Nor the monitor's own log output.
    let own = mon.log_text();
    assert!(
        !own.contains("secret"),
        "the monitor logged the password:\n{own}"
    );
}

/// `/services/{id}` spelled with the id percent-encoded, digit by digit.
fn percent_encoded_id(id: i64) -> String {
    id.to_string()
        .bytes()
        .map(|b| format!("%{b:02X}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_other_than_canonical_decimal_name_no_service() {
    let mon = Monitor::start();
    let m = &mon;
    // Paused, so no check changes its status while the test compares.
    let id = id_of(&create(m, body_with(json!({"name": "kept", "paused": true}))).await);
    let before = all_services(m).await;
    for spelled in [
        format!("0{id}"),
        format!("00{id}"),
        format!("+{id}"),
        percent_encoded_id(id),
        format!(" {id}").replace(' ', "%20"),
    ] {
        for path in [
            format!("/services/{spelled}"),
            format!("/services/{spelled}/logs"),
        ] {
            assert_problem(&get(m, &path).await, 404, &path);
        }
        let path = format!("/services/{spelled}");
        let r = send(m, Method::PATCH, &path, &json!({"name": "changed"})).await;
        assert_problem(&r, 404, &format!("PATCH {path}"));
        let r = request(m, Method::DELETE, &path, None, None).await;
        assert_problem(&r, 404, &format!("DELETE {path}"));
    }
    assert_eq!(
        all_services(m).await,
        before,
        "a non-canonical id changed something"
    );
    assert_eq!(get(m, &format!("/services/{id}")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_keys_invisible_names_and_control_characters_in_urls_are_422() {
    let mon = Monitor::start();
    let m = &mon;
    let id = id_of(&create(m, body_with(json!({"name": "kept", "paused": true}))).await);
    let before = all_services(m).await;
    let cases: Vec<(Method, String, String, &str)> = vec![
        (
            Method::POST,
            "/services".into(),
            format!(r#"{{"name":"a","url":"{NOWHERE}","interval":30,"name":"b"}}"#),
            "name",
        ),
        (
            Method::PATCH,
            format!("/services/{id}"),
            r#"{"paused":true,"paused":false}"#.into(),
            "paused",
        ),
    ];
    for (method, path, raw, field) in cases {
        let what = format!("{method} {path} {raw}");
        let r = send_raw(m, method, &path, &raw).await;
        assert_problem(&r, 422, &what);
        assert_eq!(error_fields(&r, &what), BTreeSet::from([field.to_owned()]));
    }
    for (name, url) in [
        ("\u{200B}", NOWHERE.to_owned()),
        ("\u{200B}\u{FEFF}\u{2060}", NOWHERE.to_owned()),
        ("\u{3164}", NOWHERE.to_owned()),
        ("invoice\u{202E}gnp.exe", NOWHERE.to_owned()),
        ("ok", format!("{NOWHERE}a\nb")),
        ("ok", format!("{NOWHERE}\r\n")),
        ("ok", format!("{NOWHERE}\u{0}")),
        ("ok", "http://127.0.0.1:0/".to_owned()),
    ] {
        let body = body_with(json!({"name": name, "url": url}));
        let what = format!("{body}");
        let r = send(m, Method::POST, "/services", &body).await;
        assert_problem(&r, 422, &what);
        let field = if name == "ok" { "url" } else { "name" };
        assert_eq!(error_fields(&r, &what), BTreeSet::from([field.to_owned()]));
        let r = send(
            m,
            Method::PATCH,
            &format!("/services/{id}"),
            &json!({"name": name, "url": url}),
        )
        .await;
        assert_problem(&r, 422, &format!("PATCH {what}"));
    }
    assert_eq!(
        all_services(m).await,
        before,
        "refused input changed something"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_authorization_headers_are_400() {
    let m = Monitor::start();
    let r = m
        .http
        .get(m.url("/services"))
        .header("authorization", "Bearer hm_one")
        .header("authorization", "Bearer hm_two")
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 400);
    let text = r.text().await.expect("body");
    assert!(text.contains("one Authorization header"), "{text}");
}

// ------------------------------------------------- a timeout that follows

/// PATCHes service `id` with `body`, asserting 200, and returns what GET
/// then shows (the stored state, not just the answer).
async fn patched(m: &Monitor, id: i64, body: Value) -> Value {
    let r = send(m, Method::PATCH, &format!("/services/{id}"), &body).await;
    assert_eq!(r.status, 200, "PATCH {body}: {}", r.text);
    let shown = one_service(m, id).await;
    assert_eq!(r.json, shown, "PATCH {body} answered other than GET shows");
    shown
}

/// The timeout the user never set follows the interval, one set stays and
/// bounds the interval, `null` makes it follow again; on the monitor `m`
/// (any backend), across a restart when `restart` is given.
async fn a_timeout_follows_until_set(m: Monitor, restart: bool) {
    let svc = create(&m, body_with(json!({"interval": 2, "paused": true}))).await;
    let id = id_of(&svc);
    assert_eq!(svc["timeout"], 2);
    let svc = patched(&m, id, json!({"interval": 1})).await;
    assert_eq!((&svc["interval"], &svc["timeout"]), (&json!(1), &json!(1)));
    let svc = patched(&m, id, json!({"interval": 60})).await;
    assert_eq!(svc["timeout"], 10, "capped at 10 s: {svc}");

    let svc = patched(&m, id, json!({"timeout": 5})).await;
    assert_eq!(svc["timeout"], 5);
    let m = if restart { m.restart() } else { m };
    let svc = patched(&m, id, json!({"interval": 120})).await;
    assert_eq!(svc["timeout"], 5, "a set timeout stays: {svc}");
    let r = send(
        &m,
        Method::PATCH,
        &format!("/services/{id}"),
        &json!({"interval": 4}),
    )
    .await;
    assert_invalid(&r, &["timeout"], "PATCH interval below a set timeout");
    assert_eq!(
        one_service(&m, id).await,
        svc,
        "a refused PATCH changes nothing"
    );

    let svc = patched(&m, id, json!({"timeout": null})).await;
    assert_eq!(svc["timeout"], 10, "null: the default again: {svc}");
    let m = if restart { m.restart() } else { m };
    let svc = patched(&m, id, json!({"interval": 3})).await;
    assert_eq!((&svc["interval"], &svc["timeout"]), (&json!(3), &json!(3)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_never_set_follows_the_interval_and_a_set_one_stays() {
    a_timeout_follows_until_set(Monitor::start(), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_never_set_follows_the_interval_on_postgresql_too() {
    let Some(db) = pg_db().await else { return };
    let m = Monitor::start_with(&[("HEALTHMON__DATABASE__URL", db.url.as_str())]);
    a_timeout_follows_until_set(m, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_take_the_timeout_that_followed_the_interval() {
    let t = Target::start().await;
    let mon = Monitor::start();
    let m = &mon;
    let svc = create(
        m,
        json!({"name": "hangs", "url": t.url("/hang"), "interval": 60, "paused": true}),
    )
    .await;
    assert_eq!(svc["timeout"], 10);
    let id = id_of(&svc);
    let svc = patched(m, id, json!({"interval": 1, "paused": false})).await;
    assert_eq!(svc["timeout"], 1);
    let logs = wait_logs(m, id, 1).await;
    let log = &logs[0];
    assert_eq!(log["status"], "DOWN", "{log}");
    assert_eq!(
        log["latency_ms"], 1000,
        "the check waited 1 s, not 10: {log}"
    );
    let error = log["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("timeout: ") && error.contains("1000 ms"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_without_a_scheme_is_422_with_the_http_url_meant() {
    let mon = Monitor::start();
    let m = &mon;
    for (url, meant) in [
        ("localhost:18999", "http://localhost:18999"),
        ("example.com/health", "http://example.com/health"),
        ("127.0.0.1:8080", "http://127.0.0.1:8080"),
    ] {
        let r = send(
            m,
            Method::POST,
            "/services",
            &body_with(json!({"url": url})),
        )
        .await;
        assert_invalid(&r, &["url"], &format!("POST {url}"));
        let message = r.json["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("did you mean \"{meant}\"?")),
            "{url}: {}",
            r.text
        );
    }
    assert_eq!(all_services(m).await, json!([]), "nothing stored");
    let svc = create(m, body_with(json!({"paused": true}))).await;
    let path = format!("/services/{}", id_of(&svc));
    let r = send(m, Method::PATCH, &path, &json!({"url": "localhost:18999"})).await;
    assert_invalid(&r, &["url"], "PATCH localhost:18999");
    assert!(r.text.contains("did you mean"), "{}", r.text);
    assert_eq!(one_service(m, id_of(&svc)).await, svc, "nothing changed");
}
