//! Alerting in the distributed deployment: the real binary as a fleet on
//! the PostgreSQL and RabbitMQ servers on 127.0.0.1 (1 api,scheduler, 1
//! scheduler standing by, 2 workers), a webhook receiver on 127.0.0.1, and
//! the process that schedules and sends alerts killed with SIGKILL while
//! 50 services flip.
//!
//! What is promised, and asserted: every status change makes exactly one
//! alert (one outbox row per change and channel, whatever the failover),
//! and every alert reaches the receiver. Delivery is at least once: an
//! alert the killed sender had sent but not yet marked may arrive again,
//! with the same `X-Healthmon-Delivery` id, so the receiver counts distinct
//! ids per change, and exactly one per change is what must hold.
//!
//! Under CI the servers must be there; elsewhere the test is skipped
//! through [`common::skip::skip`], which no one can miss.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "test code: a panic is a failed test, and output is for the person running it"
)]

mod common;

use common::fleet::Fleet;
use common::receiver::{Received, Receiver};
use common::target::Target;
use common::*;
use diesel::sql_types::{BigInt, Text};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Waits that span a failover and several rounds of checks.
const LONG: Duration = Duration::from_secs(90);

const SERVICES: usize = 50;

#[derive(diesel::QueryableByName, Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Change {
    #[diesel(sql_type = BigInt)]
    service_id: i64,
    #[diesel(sql_type = Text)]
    new_status: String,
    #[diesel(sql_type = BigInt)]
    scheduled_at: i64,
}

#[derive(diesel::QueryableByName, Debug, Clone)]
struct OutboxRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    service_id: i64,
    #[diesel(sql_type = Text)]
    event: String,
    #[diesel(sql_type = BigInt)]
    scheduled_at: i64,
    #[diesel(sql_type = Text)]
    state: String,
}

/// The status changes that alert (to DOWN, and back to UP from DOWN).
async fn alerting_changes(fleet: &Fleet) -> Vec<Change> {
    use diesel_async::RunQueryDsl;
    let mut conn = fleet.sql().await;
    diesel::sql_query(
        "SELECT service_id, new_status, scheduled_at FROM state_changes \
         WHERE new_status = 'DOWN' OR (new_status = 'UP' AND old_status = 'DOWN') \
         ORDER BY service_id, scheduled_at",
    )
    .load(&mut conn)
    .await
    .expect("read state_changes")
}

async fn outbox(fleet: &Fleet) -> Vec<OutboxRow> {
    use diesel_async::RunQueryDsl;
    let mut conn = fleet.sql().await;
    diesel::sql_query(
        "SELECT id, service_id, event, scheduled_at, state FROM alerts \
         WHERE service_id IS NOT NULL ORDER BY id",
    )
    .load(&mut conn)
    .await
    .expect("read alerts")
}

/// Waits until every service's stored status is `status`.
async fn all_are(fleet: &Fleet, status: &str) {
    within(
        LONG,
        &format!("all {SERVICES} services {status}"),
        || async {
            let n = fleet
                .count(&format!(
                    "SELECT count(*) AS n FROM services WHERE last_status = '{status}'"
                ))
                .await;
            (n == SERVICES as i64).then_some(())
        },
    )
    .await;
}

/// Each alert the receiver got, by id, from single and grouped bodies.
fn received_ids(got: &[Received]) -> BTreeMap<i64, usize> {
    let mut ids = BTreeMap::new();
    for r in got {
        let body = r.json();
        let items: Vec<Value> = if body["event"] == "storm" {
            body["alerts"].as_array().cloned().unwrap_or_default()
        } else {
            vec![body]
        };
        for item in items {
            *ids.entry(item["id"].as_i64().expect("an alert id"))
                .or_default() += 1;
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_is_alerted_once_across_a_kill_9_of_the_active_sender() {
    flips_across_a_kill_9(false).await;
}

/// The same with storms on (50 services flipping together is a storm at
/// the default threshold of 20): every change still arrives, inside
/// grouped messages, and a grouped message sent again (by the sender that
/// took over, or on a retry) lists the same alerts under the same id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_across_a_kill_9_resends_each_group_as_it_was() {
    flips_across_a_kill_9(true).await;
}

async fn flips_across_a_kill_9(storms: bool) {
    let Some(fleet) = Fleet::new().await else {
        return;
    };
    let receiver = Receiver::start().await;
    // Slow answers keep deliveries in flight when the sender is killed (a
    // grouped message surely so).
    receiver.set_delay(Duration::from_millis(if storms { 1_000 } else { 150 }));
    let target = Target::start().await;
    // Without storms, one message per alert: deliveries are counted.
    let threshold = if storms { "20" } else { "100000" };
    let one_each = [("HEALTHMON__ALERTS__STORM_THRESHOLD", threshold)];
    let mut a = fleet.spawn_with("api,scheduler", &one_each);
    let leads = |m: &Monitor| {
        let logs = m.log_text();
        logs.contains("this process is the active scheduler")
            && logs.contains("this process is the alert sender")
    };
    eventually("the first process to schedule and send alerts", || async {
        leads(&a).then_some(())
    })
    .await;
    let b = fleet.spawn_with("scheduler", &one_each);
    let _w1 = fleet.spawn("worker");
    let _w2 = fleet.spawn("worker");
    eventually("the second process to stand by", || async {
        b.log_text()
            .contains("another process sends alerts; standing by")
            .then_some(())
    })
    .await;

    let (status, ch) = a
        .send_json(
            reqwest::Method::POST,
            "/channels",
            json!({"name": "hook", "kind": "webhook", "all_services": true,
                   "config": {"url": receiver.url("/hook")}}),
        )
        .await;
    assert_eq!(status, 201, "{ch}");
    for i in 0..SERVICES {
        a.register(
            json!({"name": format!("svc{i}"), "url": target.url("/switch"),
                          "interval": 1, "timeout": 1}),
        )
        .await;
    }
    all_are(&fleet, "UP").await;

    // Flip 1: DOWN, and the sender killed while it delivers.
    target.set_up(false);
    if storms {
        within(LONG, "a grouped message on its way", || async {
            receiver
                .received_at("/hook")
                .iter()
                .any(|r| r.json()["event"] == "storm")
                .then_some(())
        })
        .await;
    } else {
        receiver.wait_for("/hook", 1, LONG).await;
    }
    a.kill9();
    let killed_with = receiver.received_at("/hook").len();
    eventually("the standby to send alerts", || async {
        b.log_text()
            .contains("this process is the alert sender")
            .then_some(())
    })
    .await;
    all_are(&fleet, "DOWN").await;
    // Flips 2 and 3, on the process that took over.
    target.set_up(true);
    all_are(&fleet, "UP").await;
    target.set_up(false);
    all_are(&fleet, "DOWN").await;

    let changes = alerting_changes(&fleet).await;
    assert_eq!(
        changes.len(),
        3 * SERVICES,
        "each service went DOWN, UP, DOWN once: {changes:?}"
    );
    let rows = within(LONG, "every alert delivered", || async {
        let rows = outbox(&fleet).await;
        (rows.len() >= changes.len() && rows.iter().all(|r| r.state == "sent")).then_some(rows)
    })
    .await;

    // One alert per change: the outbox rows are exactly the changes.
    let alerted: BTreeSet<(i64, String, i64)> = rows
        .iter()
        .map(|r| {
            let status = if r.event == "down" { "DOWN" } else { "UP" };
            (r.service_id, status.to_owned(), r.scheduled_at)
        })
        .collect();
    let changed: BTreeSet<(i64, String, i64)> = changes
        .iter()
        .map(|c| (c.service_id, c.new_status.clone(), c.scheduled_at))
        .collect();
    assert_eq!(rows.len(), changes.len(), "one alert row per change");
    assert_eq!(alerted, changed, "the alerts are the changes");

    // And the receiver heard of each, under its one delivery id.
    let got = receiver.received_at("/hook");
    let ids = received_ids(&got);
    let expected: BTreeSet<i64> = rows.iter().map(|r| r.id).collect();
    assert_eq!(
        ids.keys().copied().collect::<BTreeSet<_>>(),
        expected,
        "every alert arrived, and nothing else"
    );
    let mut groups: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    let mut messages: BTreeMap<String, usize> = BTreeMap::new();
    for r in &got {
        let body = r.json();
        let id = match &body["id"] {
            Value::String(id) => id.clone(),
            other => other.to_string(),
        };
        assert_eq!(
            r.header("x-healthmon-delivery").map(str::to_owned),
            Some(id.clone()),
            "{body}"
        );
        *messages.entry(id.clone()).or_default() += 1;
        if body["event"] == "storm" {
            let members: BTreeSet<i64> = body["alerts"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x["id"].as_i64()).collect())
                .unwrap_or_default();
            assert_eq!(body["count"].as_u64(), Some(members.len() as u64), "{body}");
            let seen = groups.entry(id.clone()).or_insert_with(|| members.clone());
            assert_eq!(*seen, members, "{id} sent again with other alerts");
        }
    }
    if storms {
        assert!(!groups.is_empty(), "a storm was grouped");
        assert!(
            groups
                .keys()
                .any(|id| messages.get(id).is_some_and(|n| *n > 1)),
            "the group in flight at the kill was sent again: {messages:?}"
        );
    }
    // Messages sent again (the same delivery id), as counted by message.
    let resent: usize = messages.values().map(|n| n - 1).sum();
    let repeats: usize = if storms {
        resent
    } else {
        ids.values().map(|n| n - 1).sum()
    };
    // Change (the deciding check's end) to first arrival, for the record.
    let mut first: BTreeMap<i64, i64> = BTreeMap::new();
    for r in &got {
        let body = r.json();
        let at = body["at"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_millis());
        if let (Some(id), Some(at)) = (body["id"].as_i64(), at) {
            first.entry(id).or_insert(r.at_ms - at);
        }
    }
    let mut lags: Vec<i64> = first.into_values().collect();
    lags.sort_unstable();
    let pct = |p: usize| lags.get((lags.len() * p / 100).min(lags.len().saturating_sub(1)));
    eprintln!(
        "change to delivery: p50 {:?} ms, p99 {:?} ms, max {:?} ms (the kill and takeover included)",
        pct(50),
        pct(99),
        lags.last()
    );
    eprintln!(
        "{} alerts for {} changes in {} messages ({} grouped); {killed_with} had reached the \
         receiver when the sender was killed; {repeats} delivered again after the takeover \
         (same delivery id)",
        rows.len(),
        changes.len(),
        got.len(),
        groups.len()
    );
    // A repeat is only ever an alert that was in flight at the kill.
    assert!(
        repeats <= 16,
        "{repeats} repeats: more than one batch in flight"
    );
}
