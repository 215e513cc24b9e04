//! Regions and quorum in a fleet (issue 16, DESIGN.md "Regions and
//! quorum"): the real binary on the PostgreSQL and RabbitMQ servers on
//! 127.0.0.1, one `api,scheduler` process and a worker-only process in each
//! of the regions a, b and c, against a target that fails only for checks
//! from the regions a test picks (`X-Healthmon-Region`), and a region whose
//! worker blocks private addresses (`checks.block_private`), so every check
//! it makes of 127.0.0.1 fails: its own network is broken.
//!
//! What a user would notice is asserted: a service's status and its logs
//! per region, webhook deliveries, `GET /regions`, `/readyz` and the
//! WebSocket's region events.
//!
//! Each test has its own database and queue prefix ([`Fleet`]) and runs in
//! parallel with the others. Under CI the servers must be there; elsewhere
//! the tests are skipped through [`common::skip::skip`], which no one can
//! miss.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "test code: a panic is a failed test, and output is for the person running it"
)]

mod common;

use common::fleet::Fleet;
use common::receiver::Receiver;
use common::regions::*;
use common::*;
use std::time::{Duration, Instant};

/// Waits that span a process start and a few rounds of checks (every
/// 2 s, 2 s timeout) on a machine busy with other tests.
const LONG: Duration = Duration::from_secs(60);

const ABC: [&str; 3] = ["a", "b", "c"];

fn now_ms() -> i64 {
    healthmon::domain::time::now_ms()
}

/// 1 of 3 regions failing, with quorum 2, keeps a service UP and alerts
/// nobody, though the failing region's own logs say DOWN; 2 of 3 make it
/// DOWN with one alert, and fixing it makes it UP with one more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_region_failing_stays_up_two_failing_go_down_and_alert_once() {
    let Some(fleet) = Fleet::new().await else {
        return;
    };
    let receiver = Receiver::start().await;
    let target = RegionTarget::start().await;
    target.fail_in("one", &["b"]);
    target.fail_in("two", &[]);
    let api = spawn_api(&fleet);
    let _workers: Vec<Monitor> = ABC.iter().map(|r| spawn_worker(&fleet, r, false)).collect();
    all_live(&api, &ABC, LONG).await;
    webhook(&api, &receiver).await;

    let one = register_regional(&api, "one", &target.url("one"), &ABC, 2).await;
    let two = register_regional(&api, "two", &target.url("two"), &ABC, 2).await;

    // 1 of 3: b's own logs say DOWN, round after round, and the verdict
    // stays UP.
    status_becomes(&api, one, "UP", LONG).await;
    let b_logs = logs_until(
        &api,
        one,
        "region=b&limit=200",
        LONG,
        "5 DOWN votes of b",
        |l| l.iter().filter(|l| l["status"] == "DOWN").count() >= 5,
    )
    .await;
    assert!(
        b_logs.iter().all(|l| l["region"] == "b"),
        "?region=b holds b's results only: {b_logs:?}"
    );
    for r in ["a", "c"] {
        let logs = region_logs(&api, one, r).await;
        assert!(
            !logs.is_empty() && logs.iter().all(|l| l["status"] == "UP" && l["region"] == r),
            "{r} sees service one UP: {logs:?}"
        );
    }
    let v = verdicts(&api, one).await;
    assert!(
        v.len() >= 3 && v.iter().all(|l| l["status"] == "UP"),
        "every verdict of service one is UP: {v:?}"
    );
    assert_eq!(status(&api, one).await, "UP");
    assert_eq!(changes(&fleet, one).await, vec!["PENDING>UP"]);
    assert!(
        target.hits("one", "b") >= 5 && target.hits("one", "") == 0,
        "every check carried its region"
    );
    // GET /regions shows each region's one worker, when it was last heard
    // from and how fast it checks (the regions are listed by services).
    let body = regions_until(&api, LONG, "every region checking", |b| {
        ABC.iter().all(|n| {
            region(b, n).is_some_and(|r| {
                r["checks_per_second"].as_f64().is_some_and(|c| c > 0.0)
                    && r["listed"] == true
                    && r["impaired"] == false
            })
        })
    })
    .await;
    for n in ABC {
        let r = region(&body, n).expect("the region");
        let workers = r["workers"].as_array().expect("workers");
        assert_eq!(workers.len(), 1, "one worker in {n}: {body}");
        let w = &workers[0];
        assert!(
            w["live"] == true
                && w["id"].as_str().is_some_and(|id| !id.is_empty())
                && w["last_seen"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .is_some_and(|t| (now_ms() - t.timestamp_millis()).abs() < 30_000),
            "{n}'s worker: {body}"
        );
    }
    assert!(
        body["missing"].as_array().is_some_and(|m| m.is_empty()),
        "{body}"
    );
    // /metrics counts each region's jobs queue with its one consumer, and
    // the votes queue.
    within(LONG, "region queues on /metrics", || async {
        let text = reqwest::get(api.url("/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let consumers = |queue: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("healthmon_queue_consumers{{queue=\"{queue}\"}}")))
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        };
        (ABC.iter()
            .all(|r| consumers(&format!("jobs.{r}")) == Some(1.0))
            && consumers("votes").is_some_and(|n| n >= 1.0))
        .then_some(())
    })
    .await;

    // 2 of 3: DOWN, one alert.
    status_becomes(&api, two, "UP", LONG).await;
    target.fail_in("two", &["b", "c"]);
    status_becomes(&api, two, "DOWN", LONG).await;
    let down = within(LONG, "the down alert of service two", || async {
        let d = deliveries_for(&receiver, two);
        (!d.is_empty()).then_some(d)
    })
    .await;
    // Rounds go on failing; none alerts again (wait for a few more of
    // them, then count).
    let since = now_ms();
    logs_until(&api, two, "limit=200", LONG, "3 more DOWN verdicts", |l| {
        l.iter()
            .filter(|l| l["region"].is_null() && l["status"] == "DOWN")
            .filter(|l| checked_at_ms(l) > since)
            .count()
            >= 3
    })
    .await;
    // And fixed: UP, one alert.
    target.fail_in("two", &[]);
    status_becomes(&api, two, "UP", LONG).await;
    within(LONG, "the up alert of service two", || async {
        let d = deliveries_for(&receiver, two);
        d.iter().any(|(e, _)| e == "up").then_some(())
    })
    .await;
    let since = now_ms();
    logs_until(&api, two, "limit=200", LONG, "3 more UP verdicts", |l| {
        l.iter()
            .filter(|l| l["region"].is_null() && l["status"] == "UP")
            .filter(|l| checked_at_ms(l) > since)
            .count()
            >= 3
    })
    .await;
    let d = deliveries_for(&receiver, two);
    let ids: std::collections::BTreeSet<&str> = d.iter().map(|(_, id)| id.as_str()).collect();
    let events: Vec<&str> = d.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(down.first().map(|(e, _)| e.as_str()), Some("down"));
    assert_eq!(
        (events.as_slice(), ids.len()),
        (["down", "up"].as_slice(), 2),
        "one down and one up delivery for service two: {:?}",
        hook_bodies(&receiver)
    );
    assert_eq!(
        changes(&fleet, two).await,
        vec!["PENDING>UP", "UP>DOWN", "DOWN>UP"]
    );
    // Service one, failing in b all along, never alerted.
    assert!(
        deliveries_for(&receiver, one).is_empty(),
        "no alert for a 1-of-3 failure: {:?}",
        hook_bodies(&receiver)
    );
    assert_eq!(changes(&fleet, one).await, vec!["PENDING>UP"]);
}

/// Services that a and b see UP.
const MANY: usize = 25;

/// A region whose worker fails every check (its own network broken) is
/// marked impaired, on `GET /regions` and the WebSocket, and its votes
/// are set aside: a service failing in b too stays UP, and no service
/// alerts. Replaced by a worker that works, it recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_failing_everything_is_impaired_set_aside_and_recovers() {
    let Some(fleet) = Fleet::new().await else {
        return;
    };
    let receiver = Receiver::start().await;
    let target = RegionTarget::start().await;
    target.fail_in("b-fails", &["b"]);
    let api = spawn_api(&fleet);
    let _a = spawn_worker(&fleet, "a", false);
    let _b = spawn_worker(&fleet, "b", false);
    let mut broken_c = spawn_worker(&fleet, "c", true);
    all_live(&api, &ABC, LONG).await;
    webhook(&api, &receiver).await;
    let ws = WsLog::connect(&api).await;

    let started = Instant::now();
    let mut ids = Vec::new();
    for i in 0..MANY {
        let name = format!("svc{i}");
        ids.push(register_regional(&api, &name, &target.url(&name), &ABC, 2).await);
    }
    let event = ws
        .until(LONG, "region_impaired for c", |m| {
            m["type"] == "region_impaired" && m["region"] == "c"
        })
        .await;
    eprintln!(
        "c impaired {:.1} s after the first of {MANY} services was registered: {event}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        event["failed"].as_u64().unwrap_or(0) * 2 > event["services"].as_u64().unwrap_or(0)
            && event["services"].as_u64().unwrap_or(0) >= 20,
        "{event}"
    );
    let body = regions_until(&api, LONG, "c impaired", |b| {
        region(b, "c").is_some_and(|r| r["impaired"] == true)
    })
    .await;
    for r in ["a", "b"] {
        assert_eq!(
            region(&body, r).map(|r| &r["impaired"]),
            Some(&serde_json::json!(false)),
            "{body}"
        );
    }
    assert!(
        region(&body, "c").is_some_and(|r| r["impaired_since"].is_string()),
        "{body}"
    );

    // Its votes are set aside: failing in b and (blocked) in c would be 2
    // of 3, yet the service is UP.
    let b_fails = register_regional(&api, "b-fails", &target.url("b-fails"), &ABC, 2).await;
    status_becomes(&api, b_fails, "UP", LONG).await;
    logs_until(
        &api,
        b_fails,
        "limit=200",
        LONG,
        "3 UP verdicts, b and c failing",
        |l| {
            let votes = |r: &str| {
                l.iter()
                    .filter(|l| l["region"] == r && l["status"] == "DOWN")
                    .count()
            };
            let up = l
                .iter()
                .filter(|l| l["region"].is_null() && l["status"] == "UP")
                .count();
            votes("b") >= 3 && votes("c") >= 3 && up >= 3
        },
    )
    .await;
    assert_eq!(changes(&fleet, b_fails).await, vec!["PENDING>UP"]);
    for &id in &ids {
        assert_eq!(status(&api, id).await, "UP", "service {id}");
        assert_eq!(
            changes(&fleet, id).await,
            vec!["PENDING>UP"],
            "service {id}"
        );
    }
    let per_service = service_alerts(&receiver);
    assert!(
        per_service.is_empty(),
        "no service alerted: {per_service:?}"
    );
    // One alert about the region instead, to the channels for all
    // services (the webhook body's `region`: issue 16.3, the recorder's
    // region alerts).
    let impaired = within(LONG, "a region_impaired alert for c", || async {
        let got = region_alerts(&receiver, "region_impaired", "c");
        (!got.is_empty()).then_some(got)
    })
    .await;

    // The broken worker replaced by one that works: c recovers.
    broken_c.kill9();
    let _c = spawn_worker(&fleet, "c", false);
    let replaced = Instant::now();
    let event = ws
        .until(LONG, "region_recovered for c", |m| {
            m["type"] == "region_recovered" && m["region"] == "c"
        })
        .await;
    eprintln!(
        "c recovered {:.1} s after its worker was replaced: {event}",
        replaced.elapsed().as_secs_f64()
    );
    regions_until(&api, LONG, "c no longer impaired", |b| {
        region(b, "c").is_some_and(|r| r["impaired"] == false && r["live"] == true)
    })
    .await;
    assert_eq!(changes(&fleet, b_fails).await, vec!["PENDING>UP"]);
    let per_service = service_alerts(&receiver);
    assert!(
        per_service.is_empty(),
        "no service alerted: {per_service:?}"
    );
    within(LONG, "a region_recovered alert for c", || async {
        (!region_alerts(&receiver, "region_recovered", "c").is_empty()).then_some(())
    })
    .await;
    let impaired_ids: std::collections::BTreeSet<String> =
        region_alerts(&receiver, "region_impaired", "c")
            .into_iter()
            .map(|(id, _)| id)
            .collect();
    assert_eq!(
        ws.matching(|m| m["type"] == "region_impaired").len(),
        1,
        "c was impaired once, without flapping: {:?}",
        ws.matching(|m| m["type"].as_str().is_some_and(|t| t.starts_with("region_")))
    );
    assert_eq!(
        impaired_ids.len(),
        1,
        "c was impaired once, and alerted once: {impaired:?} then {:?}",
        hook_bodies(&receiver)
    );
}

/// A region whose worker is killed is missing, not failing: `GET /regions`
/// says so, `/readyz` stays 200, and with quorum 2 the two regions left
/// decide, so a service failing in b alone stays UP and nothing alerts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_region_is_missing_not_down() {
    let Some(fleet) = Fleet::new().await else {
        return;
    };
    let receiver = Receiver::start().await;
    let target = RegionTarget::start().await;
    target.fail_in("b-fails", &["b"]);
    let api = spawn_api(&fleet);
    let _a = spawn_worker(&fleet, "a", false);
    let _b = spawn_worker(&fleet, "b", false);
    let mut c = spawn_worker(&fleet, "c", false);
    all_live(&api, &ABC, LONG).await;
    webhook(&api, &receiver).await;
    let ok = register_regional(&api, "ok", &target.url("ok"), &ABC, 2).await;
    let b_fails = register_regional(&api, "b-fails", &target.url("b-fails"), &ABC, 2).await;
    status_becomes(&api, ok, "UP", LONG).await;
    status_becomes(&api, b_fails, "UP", LONG).await;
    logs_until(&api, ok, "region=c&limit=5", LONG, "a vote of c", |l| {
        !l.is_empty()
    })
    .await;

    c.kill9();
    let killed = now_ms();
    let body = regions_until(&api, LONG, "c not live and missing", |b| {
        region(b, "c").is_some_and(|r| r["live"] == false) && is_missing(b, "c")
    })
    .await;
    eprintln!(
        "c missing {:.1} s after its worker was killed",
        (now_ms() - killed) as f64 / 1000.0
    );
    for r in ["a", "b"] {
        assert!(
            region(&body, r).is_some_and(|r| r["live"] == true) && !is_missing(&body, r),
            "{body}"
        );
    }
    let (code, ready) = api.get("/readyz").await;
    assert_eq!(code, 200, "a missing region leaves the API ready: {ready}");
    // The readiness detail names it too (issue 16.4), and a missing
    // region does not make the API unready.
    assert!(
        ready["regions"]["missing"]
            .as_array()
            .is_some_and(|m| m.iter().any(|r| r == "c")),
        "/readyz names the missing region: {ready}"
    );

    // Rounds go on without c: 3 verdicts each, all UP, from rounds that
    // began after c was seen missing.
    let missing_at = now_ms();
    for id in [ok, b_fails] {
        let l = logs_until(&api, id, "limit=200", LONG, "3 verdicts without c", |l| {
            l.iter()
                .filter(|l| l["region"].is_null() && checked_at_ms(l) > missing_at)
                .count()
                >= 3
        })
        .await;
        let late: Vec<&serde_json::Value> =
            l.iter().filter(|l| checked_at_ms(l) > missing_at).collect();
        assert!(
            late.iter()
                .filter(|l| l["region"].is_null())
                .all(|l| l["status"] == "UP"),
            "service {id}'s verdicts without c are UP: {late:?}"
        );
        assert!(
            late.iter().all(|l| l["region"] != "c"),
            "no vote of c after it was gone: {late:?}"
        );
        assert_eq!(status(&api, id).await, "UP");
        assert_eq!(
            changes(&fleet, id).await,
            vec!["PENDING>UP"],
            "service {id}"
        );
    }
    let (code, ready) = api.get("/readyz").await;
    assert_eq!(code, 200, "{ready}");
    assert!(
        receiver.received_at("/hook").is_empty(),
        "nothing alerted, neither a service nor a region: {:?}",
        hook_bodies(&receiver)
    );
}
