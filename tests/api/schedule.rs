//! Changes through the API reach the schedule at once: PATCH, PUT, pause and
//! DELETE, observed as requests arriving (or not) at real targets.
use crate::helpers::*;

use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};

/// Waits until `path` on `target` has seen `n` more requests than `from`.
async fn hits_grow(target: &Target, path: &str, from: usize, n: usize) {
    eventually(&format!("{n} more hits on {path}"), || async {
        (target.hits(path) >= from + n).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_repeat_at_the_interval_neither_faster_nor_slower() {
    let target = Target::start().await;
    let m = Monitor::start();
    m.register(service("a", &target.url("/ok?a"), 1)).await;
    hits_grow(&target, "/ok?a", 0, 7).await;
    let t = target.arrivals("/ok?a");
    // Checks are due on fixed slots a second apart, so one late check (a
    // busy machine) shortens the next gap as much as it stretched its own:
    // the mean over several gaps is what the schedule promises, not each.
    let span = t[t.len() - 1] - t[0];
    let mean = span / (t.len() - 1) as u32;
    assert!(
        mean > Duration::from_millis(800) && mean < Duration::from_millis(1500),
        "checks of a 1 s service arrived {mean:?} apart on average: {t:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patching_the_url_moves_checks_to_it_at_once() {
    let target = Target::start().await;
    let m = Monitor::start();
    let svc = m.register(service("a", &target.url("/ok?old"), 60)).await;
    let id = svc["id"].as_i64().expect("id");
    hits_grow(&target, "/ok?old", 0, 1).await;
    let patched = Instant::now();
    let (status, _) = m
        .send_json(
            Method::PATCH,
            &format!("/services/{id}"),
            json!({"url": target.url("/ok?new")}),
        )
        .await;
    assert_eq!(status, 200);
    hits_grow(&target, "/ok?new", 0, 1).await;
    // At once, not at the old schedule's next slot a minute later; the
    // bound is loose so a loaded machine cannot fail it.
    assert!(
        patched.elapsed() < Duration::from_secs(15),
        "took {:?}",
        patched.elapsed()
    );
    assert_eq!(
        target.hits("/ok?old"),
        1,
        "the old URL is no longer checked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_replaces_what_is_checked() {
    let target = Target::start().await;
    let m = Monitor::start();
    let svc = m
        .register(service("a", &target.url("/ok?before"), 60))
        .await;
    let id = svc["id"].as_i64().expect("id");
    hits_grow(&target, "/ok?before", 0, 1).await;
    let (status, body) = m
        .send_json(
            Method::PUT,
            &format!("/services/{id}"),
            json!({"name": "b", "url": target.url("/ok?after"), "interval": 1, "timeout": 1}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    hits_grow(&target, "/ok?after", 0, 3).await;
    assert_eq!(target.hits("/ok?before"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_stops_checks_and_unpausing_resumes_them() {
    let target = Target::start().await;
    let m = Monitor::start();
    let svc = m.register(service("p", &target.url("/ok?p"), 1)).await;
    let id = svc["id"].as_i64().expect("id");
    m.register(service("clock", &target.url("/ok?clock"), 1))
        .await;
    hits_grow(&target, "/ok?p", 0, 1).await;
    let (status, _) = m
        .send_json(
            Method::PATCH,
            &format!("/services/{id}"),
            json!({"paused": true}),
        )
        .await;
    assert_eq!(status, 200);
    let at_pause = target.hits("/ok?p");
    // Three more checks of another service: time for several of the paused one.
    let clock = target.hits("/ok?clock");
    hits_grow(&target, "/ok?clock", clock, 3).await;
    assert!(
        target.hits("/ok?p") <= at_pause + 1,
        "a paused service is still checked"
    );
    let (status, _) = m
        .send_json(
            Method::PATCH,
            &format!("/services/{id}"),
            json!({"paused": false}),
        )
        .await;
    assert_eq!(status, 200);
    let resumed_from = target.hits("/ok?p");
    hits_grow(&target, "/ok?p", resumed_from, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_service_is_no_longer_checked() {
    let target = Target::start().await;
    let m = Monitor::start();
    let svc = m.register(service("d", &target.url("/ok?d"), 1)).await;
    let id = svc["id"].as_i64().expect("id");
    m.register(service("clock", &target.url("/ok?clock"), 1))
        .await;
    hits_grow(&target, "/ok?d", 0, 2).await;
    let resp = m
        .http
        .delete(m.url(&format!("/services/{id}")))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(resp.status(), 204);
    let at_delete = target.hits("/ok?d");
    let clock = target.hits("/ok?clock");
    hits_grow(&target, "/ok?clock", clock, 3).await;
    assert!(
        target.hits("/ok?d") <= at_delete + 1,
        "a deleted service is still checked"
    );
    let (status, _) = m.get(&format!("/services/{id}/logs")).await;
    assert_eq!(status, 404);
}
