//! Check kinds through the API (DESIGN.md "Check kinds"): each kind's URL
//! and fields register and read back (header values as `***`), bad input is
//! 422 naming the field with nothing stored, and header values stay
//! write-only across a read-edit-write round trip without following the URL
//! to another host.
use crate::helpers::*;

use healthmon::config::DatabaseUrl;
use healthmon::domain::ServiceId;
use healthmon::store::Store;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The request headers as stored (values included), read beside the
/// running monitor: SQLite in WAL mode lets a second reader in.
async fn stored_headers(m: &Monitor, id: i64) -> Option<BTreeMap<String, String>> {
    let store = Store::open(&DatabaseUrl::Sqlite(m.db_path()), 1)
        .await
        .expect("open the store");
    store
        .get_service(ServiceId(id))
        .await
        .expect("read")
        .expect("service stored")
        .check
        .headers
        .clone()
}

/// The fields a user sets on a service as read, for sending back (what a
/// client editing a service sends: everything but the read-only fields).
fn writable(v: &Value) -> Value {
    let read_only = [
        "id",
        "last_status",
        "last_check",
        "last_latency_ms",
        "created_at",
        "updated_at",
        "push_url",
    ];
    let mut w = v.clone();
    let map = w.as_object_mut().expect("object");
    map.retain(|k, _| !read_only.contains(&k.as_str()));
    // Not settable: what windows add to a shown service.
    map.retain(|k, _| !k.starts_with("maintenance") && k != "in_maintenance");
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_registers_and_reads_its_fields_back() {
    let m = Monitor::start();
    let port = closed_port();
    let cases = [
        json!({
            "name": "api", "url": "https://LOCALHOST:9/health", "interval": 30, "timeout": 5,
            "paused": true, "method": "post",
            "headers": {"Authorization": "Bearer s3cret-token", "X-Env": "prod"},
            "body": "{\"ping\": true}", "follow_redirects": false, "body_contains": "ok",
            "body_not_contains": "error", "expected_statuses": [200, 201],
            "json": [{"pointer": "/checks/0/ok", "equals": true}],
            "degraded_latency_ms": 800, "cert_expiry_days": 21,
        }),
        json!({"name": "db", "url": format!("tcp://127.0.0.1:{port}"), "interval": 30,
               "paused": true, "degraded_latency_ms": 250}),
        json!({"name": "tls", "url": format!("TLS://LocalHost:{port}/"), "interval": 30,
               "paused": true, "cert_expiry_days": 7}),
        json!({"name": "mx", "url": format!("dns://127.0.0.1:{port}/example.test?type=mx"),
               "interval": 30, "paused": true, "expect": ["10 mail.example.test"]}),
        json!({"name": "backup", "url": "push://", "interval": 3600, "paused": true, "grace": 0}),
    ];
    let expected = [
        json!({
            "url": "https://localhost:9/health", "method": "POST",
            "headers": {"Authorization": "***", "X-Env": "***"},
            "body": "{\"ping\": true}", "follow_redirects": false, "body_contains": "ok",
            "body_not_contains": "error", "expected_statuses": [200, 201],
            "json": [{"pointer": "/checks/0/ok", "equals": true}],
            "degraded_latency_ms": 800, "cert_expiry_days": 21,
        }),
        json!({"url": format!("tcp://127.0.0.1:{port}"), "degraded_latency_ms": 250}),
        json!({"url": format!("tls://localhost:{port}"), "cert_expiry_days": 7}),
        json!({"url": format!("dns://127.0.0.1:{port}/example.test?type=MX"),
               "expect": ["10 mail.example.test"]}),
        json!({"url": "push://", "grace": 0}),
    ];
    let mut ids = Vec::new();
    for (body, want) in cases.iter().zip(&expected) {
        let created = create(&m, body.clone()).await;
        let id = id_of(&created);
        ids.push(id);
        let read = one_service(&m, id).await;
        for shown in [&created, &read] {
            for (key, value) in want.as_object().expect("object") {
                assert_eq!(&shown[key], value, "{key} of {}", shown);
            }
            assert!(
                !shown.to_string().contains("s3cret-token"),
                "a header value is shown: {shown}"
            );
        }
    }
    // The list shows the same, header values hidden.
    let list = all_services(&m).await;
    assert_eq!(list.as_array().map(Vec::len), Some(cases.len()));
    assert!(!list.to_string().contains("s3cret-token"), "{list}");
    let http = list
        .as_array()
        .and_then(|l| l.iter().find(|s| s["id"] == ids[0]))
        .expect("listed");
    assert_eq!(
        http["headers"],
        json!({"Authorization": "***", "X-Env": "***"})
    );
    // Fields no kind set are not shown; the stored value is the real one.
    let tcp = one_service(&m, ids[1]).await;
    assert!(
        tcp.get("method").is_none() && tcp.get("headers").is_none(),
        "{tcp}"
    );
    let stored = stored_headers(&m, ids[0]).await.expect("headers stored");
    assert_eq!(stored["Authorization"], "Bearer s3cret-token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_for_any_kind_is_422_naming_the_field_and_stores_nothing() {
    let m = Monitor::start();
    let kept = create(&m, body_with(json!({"paused": true}))).await;
    let before = all_services(&m).await;
    let cases: Vec<(Value, &[&str])> = vec![
        // URLs of each kind.
        (body_with(json!({"url": "tcp://127.0.0.1"})), &["url"]),
        (body_with(json!({"url": "tcp://127.0.0.1:0"})), &["url"]),
        (
            body_with(json!({"url": "tls://localhost:443/path"})),
            &["url"],
        ),
        (
            body_with(json!({"url": "tcp://user:pw@localhost:5432"})),
            &["url"],
        ),
        (
            body_with(json!({"url": "tcp://localhost:5432\r\nX: y"})),
            &["url"],
        ),
        (
            body_with(json!({"url": "dns:///example.test?type=PTR"})),
            &["url"],
        ),
        (body_with(json!({"url": "dns://127.0.0.1/"})), &["url"]),
        (body_with(json!({"url": "push://my-job"})), &["url"]),
        (body_with(json!({"url": "ftp://localhost/"})), &["url"]),
        // Blocked literal addresses, a dns resolver's included.
        (
            body_with(json!({"url": "tcp://169.254.169.254:80"})),
            &["url"],
        ),
        (body_with(json!({"url": "tls://[fe80::1]:443"})), &["url"]),
        (body_with(json!({"url": "tcp://0.0.0.0:22"})), &["url"]),
        (
            body_with(json!({"url": "dns://169.254.169.254/example.test"})),
            &["url"],
        ),
        // HTTP fields.
        (body_with(json!({"method": "TRACE"})), &["method"]),
        (
            body_with(json!({"headers": {"X-Count": 3}})),
            &["headers.X-Count"],
        ),
        (
            body_with(json!({"headers": {"Host": "evil.test"}})),
            &["headers.Host"],
        ),
        (
            body_with(json!({"headers": {"Content-Length": "5"}})),
            &["headers.Content-Length"],
        ),
        (
            body_with(json!({"headers": {"proxy-authorization": "x"}})),
            &["headers.proxy-authorization"],
        ),
        (
            body_with(json!({"headers": {"X-A": "a\r\nHost: evil"}})),
            &["headers.X-A"],
        ),
        (
            body_with(json!({"headers": {"X-A": "***"}})),
            &["headers.X-A"],
        ),
        (
            body_with(json!({"headers": "Authorization: x"})),
            &["headers"],
        ),
        (
            body_with(json!({"body": "x".repeat(32 * 1024 + 1)})),
            &["body"],
        ),
        (body_with(json!({"body_contains": ""})), &["body_contains"]),
        (
            body_with(json!({"json": [{"pointer": "status", "equals": "ok"}]})),
            &["json[0].pointer"],
        ),
        (
            body_with(json!({"json": [{"pointer": "/a~2", "equals": 1}]})),
            &["json[0].pointer"],
        ),
        (
            body_with(json!({"json": [{"pointer": "/a", "equals": 1, "op": "gt"}]})),
            &["json[0].op"],
        ),
        (
            body_with(json!({"json": [{"pointer": "/a"}]})),
            &["json[0].equals"],
        ),
        (
            body_with(json!({"degraded_latency_ms": 0})),
            &["degraded_latency_ms"],
        ),
        (
            body_with(json!({"timeout": 2, "degraded_latency_ms": 2500})),
            &["degraded_latency_ms"],
        ),
        (
            body_with(json!({"follow_redirects": "no"})),
            &["follow_redirects"],
        ),
        // cert_expiry_days needs a certificate: https or tls.
        (
            body_with(json!({"cert_expiry_days": 14})),
            &["cert_expiry_days"],
        ),
        (
            body_with(json!({"url": "https://localhost/", "cert_expiry_days": 366})),
            &["cert_expiry_days"],
        ),
        // Other kinds' fields, and their own bad values.
        (
            body_with(json!({"url": "tcp://localhost:5432", "method": "GET"})),
            &["method"],
        ),
        (
            body_with(json!({"url": "tcp://localhost:5432", "expected_statuses": [200]})),
            &["expected_statuses"],
        ),
        (
            body_with(json!({"url": "tls://localhost:443", "degraded_latency_ms": 5})),
            &["degraded_latency_ms"],
        ),
        (
            body_with(json!({"url": "dns:///example.test", "grace": 5})),
            &["grace"],
        ),
        (body_with(json!({"expect": ["x"]})), &["expect"]),
        (
            body_with(json!({"url": "dns:///example.test", "expect": ["ok", ""]})),
            &["expect[1]"],
        ),
        (
            body_with(json!({"url": "push://", "grace": -1})),
            &["grace"],
        ),
        (
            body_with(json!({"url": "push://", "grace": 86_401})),
            &["grace"],
        ),
        (
            body_with(json!({"url": "push://", "body_contains": "x"})),
            &["body_contains"],
        ),
        // Every bad field at once.
        (
            body_with(
                json!({"url": "tcp://localhost:1", "method": "GET", "grace": 1, "expect": []}),
            ),
            &["method", "grace", "expect"],
        ),
    ];
    let id = id_of(&kept);
    for (body, fields) in &cases {
        let what = format!("POST {body}");
        let r = send(&m, Method::POST, "/services", body).await;
        assert_invalid(&r, fields, &what);
        // The same body replacing a service, and as a partial update.
        let r = send(&m, Method::PUT, &format!("/services/{id}"), body).await;
        assert_invalid(&r, fields, &format!("PUT {body}"));
        let mut patch = body.clone();
        let patch_map = patch.as_object_mut().expect("object");
        patch_map.retain(|k, _| !["name", "interval"].contains(&k.as_str()));
        if patch_map.get("url").and_then(Value::as_str) == Some(NOWHERE) {
            patch_map.remove("url");
        }
        let r = send(&m, Method::PATCH, &format!("/services/{id}"), &patch).await;
        assert_invalid(&r, fields, &format!("PATCH {patch}"));
    }
    assert_eq!(
        all_services(&m).await,
        before,
        "bad input changed something"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_private_refuses_private_literal_targets_of_every_new_kind() {
    let m = Monitor::start_with(&[("HEALTHMON__CHECKS__BLOCK_PRIVATE", "true")]);
    for url in [
        "tcp://127.0.0.1:5432",
        "tls://10.0.0.1:443",
        "dns://192.168.1.1:53/example.test",
    ] {
        let r = send(
            &m,
            Method::POST,
            "/services",
            &body_with(json!({"url": url})),
        )
        .await;
        assert_invalid(&r, &["url"], url);
        assert!(r.text.contains("checks.block_private"), "{url}: {}", r.text);
    }
    assert_eq!(all_services(&m).await, json!([]));
    // Names are judged when they are resolved, at check time.
    create(
        &m,
        body_with(json!({"url": "tcp://localhost:5432", "paused": true})),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_to_another_kind_must_null_the_old_kind_s_fields() {
    let m = Monitor::start();
    let svc = create(
        &m,
        body_with(json!({
            "url": "https://localhost:9/", "paused": true, "method": "HEAD",
            "expected_statuses": [204], "cert_expiry_days": 10,
        })),
    )
    .await;
    let path = format!("/services/{}", id_of(&svc));
    let r = send(
        &m,
        Method::PATCH,
        &path,
        &json!({"url": "tcp://localhost:9"}),
    )
    .await;
    assert_invalid(
        &r,
        &["method", "expected_statuses", "cert_expiry_days"],
        "http fields left on a tcp check",
    );
    assert!(r.text.contains("null"), "the error says how: {}", r.text);
    assert_eq!(one_service(&m, id_of(&svc)).await, svc, "nothing changed");
    // tls takes cert_expiry_days: only the http fields go.
    let r = send(
        &m,
        Method::PATCH,
        &path,
        &json!({"url": "tls://localhost:9", "method": null, "expected_statuses": null}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["url"], "tls://localhost:9");
    assert_eq!(r.json["cert_expiry_days"], 10);
    assert!(r.json.get("method").is_none(), "{}", r.json);
    assert!(r.json["expected_statuses"].is_null(), "{}", r.json);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_values_survive_a_read_edit_write_round_trip_but_not_a_new_host() {
    let m = Monitor::start();
    let svc = create(
        &m,
        body_with(json!({
            "url": "http://localhost:9/health", "paused": true,
            "headers": {"Authorization": "Bearer s3cret-token", "X-Env": "prod"},
        })),
    )
    .await;
    let id = id_of(&svc);
    let path = format!("/services/{id}");

    // PUT what GET shows, with one header edited: the *** one is kept.
    let mut edited = writable(&one_service(&m, id).await);
    edited["headers"]["X-Env"] = json!("staging");
    edited["name"] = json!("renamed");
    let r = send(&m, Method::PUT, &path, &edited).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json["headers"],
        json!({"Authorization": "***", "X-Env": "***"})
    );
    let stored = stored_headers(&m, id).await.expect("headers");
    assert_eq!(stored["Authorization"], "Bearer s3cret-token");
    assert_eq!(stored["X-Env"], "staging");

    // The same by PATCH, and a PATCH that leaves headers out.
    let r = send(
        &m,
        Method::PATCH,
        &path,
        &json!({"headers": {"Authorization": "***", "X-Env": "prod"}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = send(
        &m,
        Method::PATCH,
        &path,
        &json!({"url": "http://localhost:9/other"}),
    )
    .await;
    assert_eq!(r.status, 200, "a new path on the same host: {}", r.text);
    let stored = stored_headers(&m, id).await.expect("headers");
    assert_eq!(stored["Authorization"], "Bearer s3cret-token");
    assert_eq!(stored["X-Env"], "prod");

    // A new host with a kept value: refused, naming the header, nothing
    // changed; by PUT, by PATCH with ***, and by PATCH leaving headers out.
    let before = one_service(&m, id).await;
    let mut moved = writable(&before);
    moved["url"] = json!("http://127.0.0.2:9/collect");
    let r = send(&m, Method::PUT, &path, &moved).await;
    assert_invalid(
        &r,
        &["headers.Authorization", "headers.X-Env"],
        "PUT to a new host",
    );
    let r = send(
        &m,
        Method::PATCH,
        &path,
        &json!({"url": "http://127.0.0.2:9/", "headers": {"Authorization": "***"}}),
    )
    .await;
    assert_invalid(
        &r,
        &["headers.Authorization"],
        "PATCH to a new host with ***",
    );
    let r = send(
        &m,
        Method::PATCH,
        &path,
        &json!({"url": "http://localhost:8080/"}),
    )
    .await;
    assert_invalid(
        &r,
        &["headers.Authorization", "headers.X-Env"],
        "PATCH to a new port keeping the headers",
    );
    assert_eq!(one_service(&m, id).await, before, "nothing changed");
    assert_eq!(
        stored_headers(&m, id).await.expect("headers")["Authorization"],
        "Bearer s3cret-token"
    );

    // Sending the values again moves them with the URL.
    let r = send(
        &m,
        Method::PATCH,
        &path,
        &json!({"url": "http://127.0.0.2:9/", "headers": {"Authorization": "Bearer other"}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let stored = stored_headers(&m, id).await.expect("headers");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored["Authorization"], "Bearer other");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_gets_the_real_header_after_a_round_trip_of_stars() {
    let target = Target::start().await;
    let m = Monitor::start();
    let svc = create(
        &m,
        json!({
            "name": "echo", "url": target.url("/echo"), "interval": 1, "timeout": 1,
            "paused": true, "method": "POST", "headers": {"Authorization": "Bearer s3cret-token"},
        }),
    )
    .await;
    let id = id_of(&svc);
    // What GET shows, resumed and sent back whole: the service is checked
    // only from here on, so every request the target sees follows the PUT.
    let mut edited = writable(&one_service(&m, id).await);
    assert_eq!(edited["headers"]["Authorization"], "***");
    edited["paused"] = json!(false);
    let r = send(&m, Method::PUT, &format!("/services/{id}"), &edited).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let seen = eventually("the target to be checked", || async {
        let seen = target.header_values("/echo", "authorization");
        (!seen.is_empty()).then_some(seen)
    })
    .await;
    assert!(
        seen.iter().all(|v| v == "Bearer s3cret-token"),
        "the target saw {seen:?}"
    );
    assert_eq!(target.methods("/echo")[0], "POST");
}
