//! `/metrics` of a fleet (PostgreSQL + RabbitMQ, the real binary): the
//! broker's queue depths. Jobs published with no worker to take them pile
//! up in the jobs queue and the API's scrape shows it; a worker that starts
//! drains them and shows as the queue's consumer; promtool accepts the
//! scrape throughout. Under CI a missing server fails the test; elsewhere
//! it is skipped loudly (tests/common/skip.rs).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "test code: a panic is a failed test, and output is for the person running it"
)]

mod common;

use common::fleet::Fleet;
use common::promtool::{accepts as promtool_accepts, samples};
use common::*;
use std::collections::HashMap;

async fn scrape(api: &Monitor) -> (String, HashMap<String, f64>) {
    let r = api
        .http
        .get(api.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("body");
    let s = samples(&text);
    (text, s)
}

fn series(queue: &str, family: &str) -> String {
    format!("healthmon_queue_{family}{{queue=\"{queue}\"}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_nobody_takes_show_in_the_queue_depth_until_a_worker_drains_them() {
    let Some(fleet) = Fleet::new().await else {
        return;
    };
    let api = fleet.spawn("api,scheduler");
    // Connected: the broker's counts are there, with nothing queued and
    // nobody consuming jobs (this fleet has no worker yet).
    let (text, s) = eventually("the broker's queue depths in /metrics", || async {
        let (text, s) = scrape(&api).await;
        s.contains_key(&series("jobs", "messages"))
            .then_some((text, s))
    })
    .await;
    for queue in ["jobs", "results", "dead"] {
        assert!(
            s.contains_key(&series(queue, "messages")),
            "{queue}\n{text}"
        );
        assert!(
            s.contains_key(&series(queue, "consumers")),
            "{queue}\n{text}"
        );
    }
    assert_eq!(s[&series("jobs", "messages")], 0.0, "{text}");
    assert_eq!(s[&series("jobs", "consumers")], 0.0, "{text}");
    assert!(s[&series("results", "capacity")] >= 1.0, "{text}");
    promtool_accepts(&text);

    // Each registration is checked at once: a job message each, as long as
    // they are registered apart (one scheduler tick would batch them). A
    // long interval keeps them from expiring on the bus meanwhile.
    for n in 1..=3 {
        api.register(service(&format!("s{n}"), "http://127.0.0.1:9/", 300))
            .await;
        let want = f64::from(n);
        eventually(&format!("{n} job messages waiting"), || async {
            let (_, s) = scrape(&api).await;
            (s.get(&series("jobs", "messages")).copied() >= Some(want)).then_some(())
        })
        .await;
    }
    let (text, s) = scrape(&api).await;
    assert!(s[&series("jobs", "messages")] >= 3.0, "{text}");
    promtool_accepts(&text);

    // A worker takes them: the depth falls to 0 and it shows as a consumer.
    let _worker = fleet.spawn("worker");
    let (text, _) = eventually("the worker to drain the jobs queue", || async {
        let (text, s) = scrape(&api).await;
        (s.get(&series("jobs", "messages")) == Some(&0.0)
            && s.get(&series("jobs", "consumers")).copied() >= Some(1.0))
        .then_some((text, s))
    })
    .await;
    promtool_accepts(&text);
}
