//! A service's health logs (`GET /services/{id}/logs`): order, fields,
//! paging and limits.

use crate::helpers::*;
use reqwest::Method;
use reqwest::header::LINK;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};

/// The fields of a health log, as the contract lists them.
const LOG_FIELDS: [&str; 7] = [
    "id",
    "service_id",
    "status",
    "latency_ms",
    "status_code",
    "error",
    "checked_at",
];

/// The target of a `Link: <...>; rel="next"` header.
#[track_caller]
fn next_link(r: &Reply) -> String {
    let link = r
        .header(LINK)
        .unwrap_or_else(|| panic!("no Link header on a full page: {:?}", r.headers));
    let (target, rel) = link
        .strip_prefix('<')
        .and_then(|rest| rest.split_once('>'))
        .unwrap_or_else(|| panic!("malformed Link header {link:?}"));
    assert_eq!(rel.trim(), "; rel=\"next\"", "Link header {link:?}");
    target.to_owned()
}

fn log_ids(logs: &[Value]) -> Vec<i64> {
    logs.iter().map(id_of).collect()
}

/// Asserts the logs are newest first: `checked_at` descending, ties by id.
#[track_caller]
fn assert_newest_first(logs: &[Value]) {
    for pair in logs.windows(2) {
        let (a, b) = (
            parse_time(&pair[0]["checked_at"]),
            parse_time(&pair[1]["checked_at"]),
        );
        assert!(
            a > b || (a == b && id_of(&pair[0]) > id_of(&pair[1])),
            "logs out of order: {} then {}",
            pair[0],
            pair[1]
        );
    }
}

/// Asserts `page` is exactly the run of `full` that starts at the page's
/// first log (newer logs may have arrived in front of it meanwhile).
#[track_caller]
fn assert_run_of(full: &[Value], page: &[Value]) {
    let first = id_of(&page[0]);
    let pos = full
        .iter()
        .position(|l| id_of(l) == first)
        .unwrap_or_else(|| panic!("log {first} is not in the full list"));
    assert_eq!(
        log_ids(&full[pos..(pos + page.len()).min(full.len())]),
        log_ids(page),
        "pages do not match the full history"
    );
}

// -------------------------------------------------------------------- logs

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_newest_first_with_every_field_and_page_by_before() {
    let t = Target::start().await;
    let mon = Monitor::start();
    let m = &mon;
    let svc = create(m, service("paged", &t.url("/ok"), 1)).await;
    let id = id_of(&svc);
    let logs = wait_logs(m, id, 5).await;
    assert_newest_first(&logs);
    for log in &logs {
        for key in LOG_FIELDS {
            assert!(log.get(key).is_some(), "log lacks {key}: {log}");
        }
        assert!(log["id"].as_i64().is_some(), "{log}");
        assert_eq!(log["service_id"], json!(id));
        assert_eq!(log["status"], "UP");
        assert_eq!(log["status_code"], 200);
        assert!(log["error"].is_null(), "{log}");
        assert!(
            log["latency_ms"]
                .as_i64()
                .is_some_and(|l| (0..1000).contains(&l)),
            "{log}"
        );
        parse_time(&log["checked_at"]);
    }

    // Page 1: full, so it links to the next page.
    let r1 = get(m, &format!("/services/{id}/logs?limit=2")).await;
    assert_eq!(r1.status, 200, "{}", r1.text);
    assert!(r1.content_type().starts_with("application/json"));
    let page1 = r1.json.as_array().cloned().expect("array");
    assert_eq!(page1.len(), 2);
    let last = id_of(&page1[1]);
    let link = next_link(&r1);
    assert_eq!(link, format!("/services/{id}/logs?limit=2&before={last}"));

    // Page 2, from the Link and from before= by hand: the next older logs.
    let r2 = get(m, &link).await;
    assert_eq!(r2.status, 200, "{}", r2.text);
    let page2 = r2.json.as_array().cloned().expect("array");
    assert_eq!(page2.len(), 2);
    assert_eq!(
        m.logs(id, &format!("before={last}&limit=2")).await,
        page2,
        "the Link and before= agree"
    );
    let ids1: BTreeSet<i64> = log_ids(&page1).into_iter().collect();
    assert!(
        page2.iter().all(|l| !ids1.contains(&id_of(l))),
        "pages overlap: {page1:?} / {page2:?}"
    );
    let mut both = page1.clone();
    both.extend(page2.iter().cloned());
    assert_newest_first(&both);
    let full = m.logs(id, "limit=1000").await;
    assert_run_of(&full, &both);

    // A page that is not full has no next link; past the oldest is empty.
    let r = get(m, &format!("/services/{id}/logs?limit=1000")).await;
    assert!(
        r.header(LINK).is_none(),
        "Link on a partial page: {:?}",
        r.headers
    );
    let oldest = id_of(full.last().expect("logs"));
    let r = get(m, &format!("/services/{id}/logs?before={oldest}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json, json!([]));
    assert!(r.header(LINK).is_none());

    // before= also takes an RFC 3339 time: logs strictly older than it.
    let cut = page1[1]["checked_at"].as_str().expect("time").to_owned();
    let older = m.logs(id, &format!("before={cut}&limit=1000")).await;
    let cut_t = parse_time(&json!(cut));
    let expected: Vec<Value> = m
        .logs(id, "limit=1000")
        .await
        .into_iter()
        .filter(|l| parse_time(&l["checked_at"]) < cut_t)
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(older, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_fields_describe_each_kind_of_check() {
    let t = Target::start().await;
    let mon = Monitor::start();
    let m = &mon;
    let up = id_of(
        &create(
            m,
            json!({"name": "up", "url": t.url("/ok"), "interval": 3600}),
        )
        .await,
    );
    let fail = id_of(
        &create(
            m,
            json!({"name": "fail", "url": t.url("/fail"), "interval": 3600}),
        )
        .await,
    );
    let refused_url = format!("http://127.0.0.1:{}/", closed_port());
    let refused = id_of(
        &create(
            m,
            json!({"name": "refused", "url": refused_url, "interval": 3600, "timeout": 2}),
        )
        .await,
    );
    for (id, status, code, error) in [
        (up, "UP", json!(200), None),
        (fail, "DOWN", json!(500), Some("500")),
        (refused, "DOWN", Value::Null, Some("refused")),
    ] {
        let logs = wait_logs(m, id, 1).await;
        assert_eq!(logs.len(), 1, "one check an hour: {logs:?}");
        let log = &logs[0];
        assert_eq!(log["service_id"], json!(id));
        assert_eq!(log["status"], status, "{log}");
        assert_eq!(log["status_code"], code, "{log}");
        match error {
            None => assert!(log["error"].is_null(), "{log}"),
            Some(word) => assert!(
                log["error"].as_str().is_some_and(|e| e.contains(word)),
                "error should mention {word:?}: {log}"
            ),
        }
        assert!(log["latency_ms"].as_i64().is_some_and(|l| l >= 0), "{log}");
        // The service shows the same check as its current status.
        let svc = eventually("the service to show its check", move || async move {
            let svc = one_service(m, id).await;
            (svc["last_status"] != "PENDING").then_some(svc)
        })
        .await;
        assert_eq!(svc["last_status"], log["status"]);
        assert_eq!(svc["last_check"], log["checked_at"]);
        assert_eq!(svc["last_latency_ms"], log["latency_ms"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_default_to_pages_of_50() {
    let t = Target::start().await;
    let mon = Monitor::start();
    let m = &mon;
    // An hour between checks, but every change to what is checked makes
    // the service due at once: toggling the timeout yields a check per PATCH.
    let svc = create(
        m,
        json!({"name": "busy", "url": t.url("/ok"), "interval": 3600, "timeout": 1}),
    )
    .await;
    let id = id_of(&svc);
    let path = format!("/services/{id}");
    let path = &path;
    let toggles = AtomicI64::new(0);
    let toggles = &toggles;
    let full = eventually("51 logs", move || async move {
        let logs = m.logs(id, "limit=1000").await;
        if logs.len() >= 51 {
            return Some(logs);
        }
        // 2, 1, 2, ...: always different from the current timeout.
        let timeout = 2 - toggles.fetch_add(1, Ordering::SeqCst) % 2;
        let r = send(m, Method::PATCH, path, &json!({"timeout": timeout})).await;
        assert_eq!(r.status, 200, "{}", r.text);
        None
    })
    .await;
    assert!(full.len() >= 51);

    let r = get(m, &format!("{path}/logs")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let page1 = r.json.as_array().cloned().expect("array");
    assert_eq!(page1.len(), 50, "default page size");
    assert_newest_first(&page1);
    let link = next_link(&r);
    assert_eq!(
        link,
        format!("{path}/logs?limit=50&before={}", id_of(&page1[49]))
    );
    let r2 = get(m, &link).await;
    assert_eq!(r2.status, 200, "{}", r2.text);
    let page2 = r2.json.as_array().cloned().expect("array");
    assert!(!page2.is_empty());
    let mut both = page1.clone();
    both.extend(page2);
    assert_newest_first(&both);
    let full = m.logs(id, "limit=1000").await;
    assert_run_of(&full, &both);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_limit_is_capped() {
    let t = Target::start().await;
    // With the default cap (1000), a huge limit is no error.
    let mon = Monitor::start();
    let m = &mon;
    let id = id_of(&create(m, service("capped", &t.url("/ok"), 1)).await);
    let logs = wait_logs(m, id, 2).await;
    let r = get(m, &format!("/services/{id}/logs?limit=100000")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let got = r.json.as_array().expect("array");
    assert!(
        got.len() >= logs.len() && got.len() <= 1000,
        "{}",
        got.len()
    );
    drop(mon);

    // With a cap of 3, a limit over it returns exactly 3 and says so.
    let mon = Monitor::start_with(&[("HEALTHMON__API__MAX_LOGS_LIMIT", "3")]);
    let m = &mon;
    let id = id_of(&create(m, service("capped", &t.url("/ok"), 1)).await);
    eventually("more than 3 logs", move || async move {
        let page = m.logs(id, "").await;
        let last = page.last().map(id_of)?;
        (page.len() == 3 && !m.logs(id, &format!("before={last}")).await.is_empty()).then_some(())
    })
    .await;
    for query in ["limit=100000", "limit=4", ""] {
        let r = get(m, &format!("/services/{id}/logs?{query}")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let page = r.json.as_array().cloned().expect("array");
        assert_eq!(page.len(), 3, "{query:?}: the cap applies");
        assert_eq!(
            next_link(&r),
            format!("/services/{id}/logs?limit=3&before={}", id_of(&page[2])),
            "{query:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_logs_query_is_400_naming_the_parameter() {
    let mon = Monitor::start();
    let m = &mon;
    let id = id_of(&create(m, body_with(json!({"paused": true}))).await);
    for (query, fields) in [
        ("limit=0", vec!["limit"]),
        ("limit=abc", vec!["limit"]),
        ("limit=-3", vec!["limit"]),
        ("limit=1.5", vec!["limit"]),
        ("limit=", vec!["limit"]),
        ("before=soon", vec!["before"]),
        ("before=", vec!["before"]),
        ("limit=0&before=soon", vec!["limit", "before"]),
    ] {
        let what = format!("logs?{query}");
        let r = get(m, &format!("/services/{id}/logs?{query}")).await;
        assert_problem(&r, 400, &what);
        let expected: BTreeSet<String> = fields.iter().map(|f| (*f).to_owned()).collect();
        assert_eq!(error_fields(&r, &what), expected, "{what}: {}", r.text);
    }
    // Good queries on a service without logs.
    assert_eq!(m.logs(id, "limit=1").await, Vec::<Value>::new());
    let r = get(m, "/services/999999/logs?limit=5").await;
    assert_problem(&r, 404, "logs of an unknown service");
}
