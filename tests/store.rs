//! The store's promises, driven directly: idempotent logs, transitions that
//! only move forward, nothing left behind by a deleted service, and
//! keyset pagination. One suite, run against SQLite and PostgreSQL.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "test code: a panic is a failed test, and output is for the person running it"
)]

mod common;
#[path = "store/regional_votes.rs"]
mod regional_votes;

use common::stores::on_every_backend;
use healthmon::domain::time::Seconds;
use healthmon::domain::uptime::HourlyRollup;
use healthmon::domain::{CheckResult, Event, ServiceId, ServiceSpec, Status};
use healthmon::store::{HOUR_MS, LogCursor, Store, Updated};

on_every_backend!(
    a_repeated_result_is_a_no_op,
    a_late_result_is_logged_but_never_reorders_the_status,
    a_result_for_a_deleted_service_leaves_nothing,
    pages_of_logs_are_newest_first_without_gaps_or_overlap,
    a_stale_version_is_a_conflict_not_a_lost_update,
    ids_are_never_reused_after_the_newest_row_is_deleted,
    only_one_process_leads_the_schedule_at_a_time,
    concurrent_recorders_leave_the_newest_status_and_one_transition_each,
    rollups_match_hand_computed_aggregates_and_rolling_up_twice_changes_nothing,
    a_late_log_for_a_rolled_up_hour_is_added_on_the_next_run,
    retention_deletes_only_old_rolled_up_logs_at_most_a_batch_at_a_time,
    old_rollups_go_oldest_first_at_most_a_batch_at_a_time,
    deleting_a_service_removes_its_rollups,
    rollups_count_down_as_failures_and_degraded_apart,
    check_options_and_certificate_expiry_are_kept,
    regions_quorum_and_one_log_per_region_and_round,
);

fn spec(name: &str) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        url: "http://127.0.0.1:9/".into(),
        interval: Seconds(10),
        timeout: Seconds(5),
        timeout_follows_interval: false,
        paused: false,
        expected_statuses: None,
        failure_threshold: 1,
        success_threshold: 1,
        retry_interval: None,
        channels: Vec::new(),
        check: Default::default(),
        tags: Vec::new(),
        regions: Vec::new(),
        quorum: None,
    }
}

fn result(id: ServiceId, scheduled_at: i64, status: Status) -> CheckResult {
    CheckResult {
        service_id: id,
        scheduled_at,
        status,
        latency_ms: 7,
        status_code: (status == Status::Up).then_some(200),
        error: (status == Status::Down).then(|| "connection refused".into()),
        checked_at: scheduled_at + 7,
        cert_expires_at: None,
        region: None,
    }
}

fn changes(events: &[Event]) -> Vec<(Status, Status)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::StatusChange {
                old_status,
                new_status,
                ..
            } => Some((*old_status, *new_status)),
            _ => None,
        })
        .collect()
}

fn checks(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::Check { .. }))
        .count()
}

async fn a_repeated_result_is_a_no_op(store: Store) {
    let id = store
        .create_service(&spec("a"), 0)
        .await
        .expect("create")
        .id;
    let first = store
        .record(&[result(id, 1000, Status::Up)])
        .await
        .expect("record");
    assert_eq!(
        (checks(&first), changes(&first)),
        (1, vec![(Status::Pending, Status::Up)])
    );
    let again = store
        .record(&[result(id, 1000, Status::Up)])
        .await
        .expect("record");
    assert!(again.is_empty(), "a redelivered result produced {again:?}");
    // Even within one batch.
    let batch = store
        .record(&[
            result(id, 2000, Status::Down),
            result(id, 2000, Status::Down),
        ])
        .await
        .expect("record");
    assert_eq!(
        (checks(&batch), changes(&batch)),
        (1, vec![(Status::Up, Status::Down)])
    );
    assert_eq!(store.list_logs(id, 100, None).await.expect("logs").len(), 2);
}

async fn a_late_result_is_logged_but_never_reorders_the_status(store: Store) {
    let id = store
        .create_service(&spec("a"), 0)
        .await
        .expect("create")
        .id;
    store
        .record(&[result(id, 1000, Status::Up)])
        .await
        .expect("record");
    store
        .record(&[result(id, 3000, Status::Down)])
        .await
        .expect("record");
    // The check due at 2000 arrives last (a slow worker, a redelivery).
    let late = store
        .record(&[result(id, 2000, Status::Up)])
        .await
        .expect("record");
    assert_eq!(checks(&late), 1, "the late check is still history");
    assert!(
        changes(&late).is_empty(),
        "a late result flipped the status: {late:?}"
    );
    let svc = store.get_service(id).await.expect("get").expect("exists");
    assert_eq!(svc.last_status, Status::Down);
    assert_eq!(svc.last_scheduled_at, Some(3000));
    assert_eq!(store.list_logs(id, 100, None).await.expect("logs").len(), 3);
}

async fn a_result_for_a_deleted_service_leaves_nothing(store: Store) {
    let keep = store
        .create_service(&spec("keep"), 0)
        .await
        .expect("create")
        .id;
    let gone = store
        .create_service(&spec("gone"), 0)
        .await
        .expect("create")
        .id;
    store
        .record(&[result(gone, 1000, Status::Up)])
        .await
        .expect("record");
    assert!(store.delete_service(gone).await.expect("delete"));
    let events = store
        .record(&[
            result(gone, 2000, Status::Up),
            result(keep, 2000, Status::Up),
        ])
        .await
        .expect("the rest of the batch still commits");
    assert!(
        events
            .iter()
            .all(|e| !matches!(e, Event::Check { service_id, .. } if *service_id == gone))
    );
    assert_eq!(checks(&events), 1);
    assert!(
        store
            .list_logs(gone, 100, None)
            .await
            .expect("logs")
            .is_empty()
    );
    assert!(
        !store.delete_service(gone).await.expect("delete"),
        "deleted twice"
    );
}

async fn pages_of_logs_are_newest_first_without_gaps_or_overlap(store: Store) {
    let id = store
        .create_service(&spec("a"), 0)
        .await
        .expect("create")
        .id;
    let batch: Vec<_> = (1..=25).map(|i| result(id, i * 1000, Status::Up)).collect();
    store.record(&batch).await.expect("record");
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.list_logs(id, 10, cursor).await.expect("page");
        if page.is_empty() {
            break;
        }
        cursor = page.last().map(|l| LogCursor::BeforeId(l.id));
        seen.extend(page.into_iter().map(|l| l.checked_at));
    }
    let expected: Vec<i64> = (1..=25).rev().map(|i| i * 1000 + 7).collect();
    assert_eq!(seen, expected);
    let before_time = store
        .list_logs(id, 100, Some(LogCursor::BeforeTime(5007)))
        .await
        .expect("page");
    assert_eq!(before_time.len(), 4);
}

async fn a_stale_version_is_a_conflict_not_a_lost_update(store: Store) {
    let svc = store.create_service(&spec("a"), 0).await.expect("create");
    let first = store
        .update_service(svc.id, &spec("b"), 1, Some(svc.version))
        .await
        .expect("update");
    assert!(matches!(first, Updated::Saved(ref s) if s.name == "b"));
    let second = store
        .update_service(svc.id, &spec("c"), 2, Some(svc.version))
        .await
        .expect("update");
    assert!(matches!(second, Updated::Conflict), "{second:?}");
    let missing = store
        .update_service(ServiceId(9999), &spec("c"), 2, Some(0))
        .await
        .expect("update");
    assert!(matches!(missing, Updated::NotFound));
}

async fn ids_are_never_reused_after_the_newest_row_is_deleted(store: Store) {
    let a = store
        .create_service(&spec("a"), 0)
        .await
        .expect("create")
        .id;
    assert!(store.delete_service(a).await.expect("delete"));
    let b = store
        .create_service(&spec("b"), 0)
        .await
        .expect("create")
        .id;
    assert!(b > a);
}

async fn only_one_process_leads_the_schedule_at_a_time(store: Store) {
    let mut first = store
        .try_lead()
        .await
        .expect("try")
        .expect("the first takes the lead");
    assert!(first.still_held().await);
    match store.try_lead().await.expect("try") {
        // SQLite serves one process: it always leads.
        Some(healthmon::store::Leadership::Sole) => {}
        Some(_) => panic!("two leaders at once"),
        None => {
            drop(first);
            // The lock goes with the leader's connection.
            common::eventually("a standby to take over", || async {
                store.try_lead().await.ok().flatten().map(|_| ())
            })
            .await;
        }
    }
}

/// Records like the recorder does: retry until it commits.
async fn record_retrying(store: &Store, results: &[CheckResult]) -> Vec<Event> {
    for _ in 0..50 {
        if let Ok(events) = store.record(results).await {
            return events;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("record kept failing");
}

async fn concurrent_recorders_leave_the_newest_status_and_one_transition_each(store: Store) {
    for round in 0..20 {
        let id = store
            .create_service(&spec("race"), 0)
            .await
            .expect("create")
            .id;
        record_retrying(&store, &[result(id, 1000, Status::Up)]).await;
        // Two recorders (separate connections) with newer results at once,
        // each also seeing a redelivery of the other's.
        let (a, b) = (store.clone(), store.clone());
        let older = [result(id, 2000, Status::Down)];
        let newer = [result(id, 3000, Status::Up)];
        let (ea, eb) = tokio::join!(async { record_retrying(&a, &older).await }, async {
            record_retrying(&b, &newer).await
        });
        let (ec, ed) = tokio::join!(async { record_retrying(&a, &newer).await }, async {
            record_retrying(&b, &older).await
        });
        assert!(
            ec.is_empty() && ed.is_empty(),
            "round {round}: redeliveries produced events"
        );
        let svc = store.get_service(id).await.expect("get").expect("exists");
        assert_eq!(
            svc.last_scheduled_at,
            Some(3000),
            "round {round}: the newest result lost"
        );
        assert_eq!(svc.last_status, Status::Up);
        let mut all = changes(&ea);
        all.extend(changes(&eb));
        // Either order is valid history; each transition is announced once
        // and the last one ends in UP.
        let unique: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(
            unique.len(),
            all.len(),
            "round {round}: duplicate transition {all:?}"
        );
        assert!(all.len() <= 2, "round {round}: {all:?}");
    }
}

/// A result checked at `at` (also its due time) with this latency.
fn log_at(id: ServiceId, at: i64, status: Status, latency_ms: i64) -> CheckResult {
    CheckResult {
        latency_ms,
        checked_at: at,
        cert_expires_at: None,
        ..result(id, at, status)
    }
}

fn hour(service_id: ServiceId, hour_start: i64, latencies: &[(Status, i64)]) -> HourlyRollup {
    HourlyRollup {
        service_id,
        hour_start,
        checks: latencies.len() as i64,
        failures: latencies.iter().filter(|(s, _)| *s == Status::Down).count() as i64,
        degraded: latencies
            .iter()
            .filter(|(s, _)| *s == Status::Degraded)
            .count() as i64,
        latency_sum_ms: latencies.iter().map(|(_, l)| l).sum(),
        latency_max_ms: latencies.iter().map(|(_, l)| *l).max().unwrap_or(0),
    }
}

/// An hour well in the past, as epoch ms.
const H0: i64 = 490_000 * HOUR_MS;

async fn rollups_match_hand_computed_aggregates_and_rolling_up_twice_changes_nothing(store: Store) {
    use Status::{Down, Up};
    let a = store
        .create_service(&spec("a"), 0)
        .await
        .expect("create")
        .id;
    let b = store
        .create_service(&spec("b"), 0)
        .await
        .expect("create")
        .id;
    let h1 = H0 + HOUR_MS;
    let h2 = H0 + 2 * HOUR_MS;
    store
        .record(&[
            log_at(a, H0, Up, 10),
            log_at(a, H0 + 1_000, Up, 20),
            log_at(a, h1 - 1, Down, 30),
            log_at(a, h1, Up, 5),
            log_at(a, h2 + 10, Down, 100),
            log_at(a, h2 + 20, Down, 50),
            log_at(b, h1 + 5, Up, 1),
        ])
        .await
        .expect("record");
    // Small chunks: the same result as one pass.
    let report = store.rollup(2).await.expect("rollup");
    assert_eq!(report.hours, 5, "{report:?}");
    let expected_a = vec![
        hour(a, H0, &[(Up, 10), (Up, 20), (Down, 30)]),
        hour(a, h1, &[(Up, 5)]),
        hour(a, h2, &[(Down, 100), (Down, 50)]),
    ];
    assert_eq!(
        store.rollups(a, H0, h2 + HOUR_MS).await.expect("rollups"),
        expected_a
    );
    assert_eq!(
        store.rollups(b, H0, h2 + HOUR_MS).await.expect("rollups"),
        vec![hour(b, h1, &[(Up, 1)])]
    );
    assert_eq!(
        store.rollups(a, h1, h2).await.expect("rollups"),
        vec![expected_a[1]],
        "from is inclusive, to exclusive"
    );
    let again = store.rollup(1000).await.expect("rollup");
    assert_eq!(again.hours, 0, "{again:?}");
    assert_eq!(again.upto_log_id, report.upto_log_id);
    assert_eq!(
        store.rollups(a, H0, h2 + HOUR_MS).await.expect("rollups"),
        expected_a,
        "rolling up twice changed the counts"
    );
}

async fn rollups_count_down_as_failures_and_degraded_apart(store: Store) {
    use Status::{Degraded, Down, Up};
    let a = store
        .create_service(&spec("a"), 0)
        .await
        .expect("create")
        .id;
    store
        .record(&[
            log_at(a, H0, Up, 10),
            log_at(a, H0 + 1_000, Degraded, 900),
            log_at(a, H0 + 2_000, Degraded, 800),
            log_at(a, H0 + 3_000, Down, 30),
        ])
        .await
        .expect("record");
    store.rollup(1000).await.expect("rollup");
    let rows = store.rollups(a, H0, H0 + HOUR_MS).await.expect("rollups");
    assert_eq!(
        rows,
        [hour(
            a,
            H0,
            &[(Up, 10), (Degraded, 900), (Degraded, 800), (Down, 30)]
        )]
    );
    assert_eq!(
        (rows[0].checks, rows[0].failures, rows[0].degraded),
        (4, 1, 2),
        "DEGRADED passed: not a failure, counted apart"
    );
}

async fn a_late_log_for_a_rolled_up_hour_is_added_on_the_next_run(store: Store) {
    use Status::{Down, Up};
    let a = store
        .create_service(&spec("a"), 0)
        .await
        .expect("create")
        .id;
    store
        .record(&[log_at(a, H0, Up, 10), log_at(a, H0 + HOUR_MS, Up, 10)])
        .await
        .expect("record");
    store.rollup(1000).await.expect("rollup");
    // The check due early in the first hour arrives after it was rolled up.
    store
        .record(&[log_at(a, H0 + 60_000, Down, 400)])
        .await
        .expect("record");
    let report = store.rollup(1000).await.expect("rollup");
    assert_eq!(report.hours, 1, "{report:?}");
    assert_eq!(
        store
            .rollups(a, H0, H0 + 2 * HOUR_MS)
            .await
            .expect("rollups"),
        vec![
            hour(a, H0, &[(Up, 10), (Down, 400)]),
            hour(a, H0 + HOUR_MS, &[(Up, 10)]),
        ]
    );
}

async fn retention_deletes_only_old_rolled_up_logs_at_most_a_batch_at_a_time(store: Store) {
    use Status::Up;
    let a = store
        .create_service(&spec("a"), 0)
        .await
        .expect("create")
        .id;
    let old: Vec<_> = (0..5).map(|i| log_at(a, H0 + i * 1_000, Up, 3)).collect();
    let cutoff = H0 + 2 * HOUR_MS;
    let recent: Vec<_> = (0..3)
        .map(|i| log_at(a, cutoff + i * 1_000, Up, 3))
        .collect();
    store.record(&old).await.expect("record");
    store.record(&recent).await.expect("record");
    assert_eq!(
        store.delete_logs_before(cutoff, 100).await.expect("delete"),
        0,
        "logs not yet rolled up are kept"
    );
    store.rollup(1000).await.expect("rollup");
    let rollups_before = store.rollups(a, 0, i64::MAX).await.expect("rollups");
    assert_eq!(
        store.delete_logs_before(cutoff, 2).await.expect("delete"),
        2
    );
    assert_eq!(
        store.delete_logs_before(cutoff, 2).await.expect("delete"),
        2
    );
    assert_eq!(
        store.delete_logs_before(cutoff, 2).await.expect("delete"),
        1
    );
    assert_eq!(
        store.delete_logs_before(cutoff, 2).await.expect("delete"),
        0
    );
    let left: Vec<i64> = store
        .list_logs(a, 100, None)
        .await
        .expect("logs")
        .into_iter()
        .map(|l| l.checked_at)
        .collect();
    assert_eq!(left, [cutoff + 2_000, cutoff + 1_000, cutoff]);
    assert_eq!(
        store.rollups(a, 0, i64::MAX).await.expect("rollups"),
        rollups_before,
        "retention touched the rollups"
    );
    // Rolling up after deletion counts nothing twice and loses nothing.
    store.rollup(1000).await.expect("rollup");
    assert_eq!(
        store.rollups(a, 0, i64::MAX).await.expect("rollups"),
        rollups_before
    );
}

async fn deleting_a_service_removes_its_rollups(store: Store) {
    use Status::Up;
    let a = store
        .create_service(&spec("a"), 0)
        .await
        .expect("create")
        .id;
    let b = store
        .create_service(&spec("b"), 0)
        .await
        .expect("create")
        .id;
    store
        .record(&[log_at(a, H0, Up, 1), log_at(b, H0, Up, 2)])
        .await
        .expect("record");
    store.rollup(1000).await.expect("rollup");
    assert_eq!(
        store.rollups(a, 0, i64::MAX).await.expect("rollups").len(),
        1
    );
    assert!(store.delete_service(a).await.expect("delete"));
    assert!(
        store
            .rollups(a, 0, i64::MAX)
            .await
            .expect("rollups")
            .is_empty()
    );
    assert_eq!(
        store.rollups(b, 0, i64::MAX).await.expect("rollups"),
        vec![hour(b, H0, &[(Up, 2)])]
    );
    // Logs recorded for a service deleted before they are rolled up leave
    // no rollup behind (and do not fail the run).
    store
        .record(&[log_at(b, H0 + 1, Up, 2)])
        .await
        .expect("record");
    assert!(store.delete_service(b).await.expect("delete"));
    store.rollup(1000).await.expect("rollup");
    assert!(
        store
            .rollups(b, 0, i64::MAX)
            .await
            .expect("rollups")
            .is_empty()
    );
}

async fn old_rollups_go_oldest_first_at_most_a_batch_at_a_time(store: Store) {
    use Status::Up;
    let mut ids = Vec::new();
    for name in ["a", "b"] {
        ids.push(
            store
                .create_service(&spec(name), 0)
                .await
                .expect("create")
                .id,
        );
    }
    // Four hours of checks for each service.
    let logs: Vec<_> = ids
        .iter()
        .flat_map(|&id| (0..4).map(move |h| log_at(id, H0 + h * HOUR_MS + 1_000, Up, 3)))
        .collect();
    store.record(&logs).await.expect("record");
    store.rollup(1000).await.expect("rollup");
    let hours =
        |rows: Vec<HourlyRollup>| rows.into_iter().map(|r| r.hour_start).collect::<Vec<_>>();
    let cutoff = H0 + 2 * HOUR_MS;
    // Hours 0 and 1 of both services (four rows) are older than the cutoff:
    // they go three, then one, then none.
    assert_eq!(
        store
            .delete_rollups_before(cutoff, 3)
            .await
            .expect("delete"),
        3
    );
    assert_eq!(
        store
            .delete_rollups_before(cutoff, 3)
            .await
            .expect("delete"),
        1
    );
    assert_eq!(
        store
            .delete_rollups_before(cutoff, 3)
            .await
            .expect("delete"),
        0
    );
    for &id in &ids {
        assert_eq!(
            hours(store.rollups(id, 0, i64::MAX).await.expect("rollups")),
            [H0 + 2 * HOUR_MS, H0 + 3 * HOUR_MS],
            "service {id} keeps exactly its hours from the cutoff on"
        );
    }
    // The logs themselves are untouched.
    assert_eq!(
        store
            .list_logs(ids[0], 100, None)
            .await
            .expect("logs")
            .len(),
        4
    );
}

/// Maintenance windows on both backends: `Store::maintenance_until` answers
/// from the windows as stored at the moment asked, one-off and recurring
/// (in their time zone), the latest end when several overlap.
mod maintenance_windows {
    use super::*;
    use healthmon::domain::window::{self, WindowSpec};

    fn window(body: serde_json::Value) -> WindowSpec {
        window::full_spec(&body).expect("a valid window")
    }

    fn at(rfc3339: &str) -> i64 {
        healthmon::domain::time::parse_rfc3339(rfc3339).expect("a time")
    }

    async fn maintenance_until_follows_the_stored_windows(store: Store) {
        let a = store.create_service(&spec("a"), 0).await.expect("a").id;
        let b = store.create_service(&spec("b"), 0).await.expect("b").id;
        let (t, h) = (at("2026-06-01T08:00:00Z"), HOUR_MS);
        store
            .create_window(
                &window(serde_json::json!({"name": "a only", "services": [a],
                    "start": "2026-06-01T08:00:00Z", "end": "2026-06-01T09:00:00Z"})),
                0,
            )
            .await
            .expect("create");
        let overlap = store
            .create_window(
                &window(serde_json::json!({"name": "everyone", "services": "all",
                    "start": "2026-06-01T08:30:00Z", "end": "2026-06-01T11:00:00Z"})),
                0,
            )
            .await
            .expect("create");
        store
            .create_window(
                &window(serde_json::json!({"name": "noon", "services": "all",
                    "cron": "0 12 * * *", "duration_s": 7200})),
                0,
            )
            .await
            .expect("create");
        store
            .create_window(
                &window(
                    serde_json::json!({"name": "berlin sundays", "services": [b],
                    "cron": "0 2 * * SUN", "duration_s": 3600, "timezone": "Europe/Berlin"}),
                ),
                0,
            )
            .await
            .expect("create");
        let until = async |svc, now| store.maintenance_until(svc, now).await.expect("ask");

        assert_eq!(until(a, t - 1).await, None, "before any window");
        assert_eq!(until(a, t).await, Some(t + h));
        assert_eq!(until(b, t).await, None, "the first window is a's only");
        assert_eq!(
            until(a, t + 40 * 60_000).await,
            Some(t + 3 * h),
            "latest end"
        );
        assert_eq!(until(b, t + 40 * 60_000).await, Some(t + 3 * h));
        assert_eq!(
            until(b, at("2026-06-01T12:30:00Z")).await,
            Some(at("2026-06-01T14:00:00Z"))
        );
        assert_eq!(
            until(a, at("2026-06-01T14:00:00Z")).await,
            None,
            "its end is outside"
        );
        // Berlin's spring-forward Sunday: 02:00 does not exist, the window
        // opens at 03:00 CEST (01:00 UTC) for its hour.
        assert_eq!(until(b, at("2026-03-29T00:30:00Z")).await, None);
        assert_eq!(
            until(b, at("2026-03-29T01:30:00Z")).await,
            Some(at("2026-03-29T02:00:00Z"))
        );
        assert_eq!(until(a, at("2026-03-29T01:30:00Z")).await, None);
        // A deleted window stops counting at once: nothing is cached.
        assert!(store.delete_window(overlap.id).await.expect("delete"));
        assert_eq!(until(a, t + 40 * 60_000).await, Some(t + h));
        assert_eq!(until(b, t + 40 * 60_000).await, None);
        let open = store.open_windows(t + 10 * 60_000).await.expect("open");
        assert!(open.covers(a) && !open.covers(b));
    }

    /// A window by tag covers whoever carries the tag when asked: a
    /// service tagged after the window was stored, not one untagged since;
    /// the tag and the ids add up, and both read back as stored.
    async fn a_window_by_tag_follows_the_tags_as_they_are_now(store: Store) {
        let tagged = |name: &str, tags: &[&str]| {
            let mut s = spec(name);
            s.tags = tags.iter().map(|t| (*t).to_owned()).collect();
            s
        };
        let a = store
            .create_service(&tagged("a", &["db"]), 0)
            .await
            .expect("a");
        let b = store
            .create_service(&tagged("b", &["web"]), 0)
            .await
            .expect("b");
        let c = store.create_service(&spec("c"), 0).await.expect("c");
        let t = at("2026-06-01T08:00:00Z");
        let by_tag = store
            .create_window(
                &window(serde_json::json!({"name": "db", "tag": "db",
                    "start": "2026-06-01T08:00:00Z", "end": "2026-06-01T09:00:00Z"})),
                0,
            )
            .await
            .expect("create");
        assert_eq!(by_tag.spec.tag.as_deref(), Some("db"));
        let read = store.get_window(by_tag.id).await.expect("get");
        assert_eq!(read.as_ref().map(|w| &w.spec), Some(&by_tag.spec));
        let covered = async || {
            let open = store.open_windows(t).await.expect("open");
            [a.id, b.id, c.id]
                .into_iter()
                .filter(|id| open.covers(*id))
                .collect::<Vec<ServiceId>>()
        };
        assert_eq!(covered().await, [a.id]);
        assert_eq!(
            store.maintenance_until(a.id, t).await.expect("ask"),
            Some(t + HOUR_MS)
        );
        assert_eq!(
            store.maintenance_until(a.id, t - 1).await.expect("ask"),
            None
        );

        // b is tagged after the window was made, a untagged.
        for (svc, name, tags) in [(&b, "b", vec!["web", "db"]), (&a, "a", vec![])] {
            let Updated::Saved(_) = store
                .update_service(svc.id, &tagged(name, &tags), 1, None)
                .await
                .expect("update")
            else {
                panic!("not saved");
            };
        }
        assert_eq!(covered().await, [b.id]);

        // Ids and the tag together.
        let both = window(
            serde_json::json!({"name": "db", "tag": "db", "services": [c.id.get()],
            "start": "2026-06-01T08:00:00Z", "end": "2026-06-01T09:00:00Z"}),
        );
        let saved = store
            .update_window(by_tag.id, &both, 2, by_tag.updated_at)
            .await
            .expect("update");
        assert!(matches!(saved, healthmon::store::WindowUpdate::Saved(ref w) if w.spec == both));
        assert_eq!(covered().await, [b.id, c.id]);
        // A deleted service leaves the tag, and so the window.
        assert!(store.delete_service(b.id).await.expect("delete"));
        let open = store.open_windows(t).await.expect("open");
        assert!(!open.covers(b.id) && open.covers(c.id));
    }

    on_every_backend!(
        maintenance_until_follows_the_stored_windows,
        a_window_by_tag_follows_the_tags_as_they_are_now,
    );
}

/// Noise control and the alert outbox, as the recorder writes them.
mod alerting {
    use super::*;
    use healthmon::domain::ChannelId;
    use healthmon::domain::channel_spec;
    use healthmon::domain::outbox::AlertPayload;
    use healthmon::store::{ChannelSaved, OutboxRow};

    async fn channel(store: &Store, name: &str, all_services: bool) -> ChannelId {
        let body = serde_json::json!({
            "name": name,
            "kind": "webhook",
            "config": {"url": "http://127.0.0.1:9/hook"},
            "all_services": all_services,
        });
        let spec = channel_spec::full_spec(&body, None).expect("channel spec");
        match store
            .create_channel(&spec, 0)
            .await
            .expect("create channel")
        {
            ChannelSaved::Saved(c) => c.id,
            _ => panic!("channel {name} not created"),
        }
    }

    async fn outbox(store: &Store) -> Vec<OutboxRow> {
        let mut rows = store.due_alerts(i64::MAX, 1000).await.expect("outbox");
        rows.sort_by_key(|r| (r.scheduled_at, r.channel_id));
        rows
    }

    fn payload(row: &OutboxRow) -> AlertPayload {
        serde_json::from_str(&row.payload).expect("payload is an AlertPayload")
    }

    pub(super) async fn a_change_writes_one_outbox_row_per_channel_once(store: Store) {
        let own = channel(&store, "own", false).await;
        let everyone = channel(&store, "everyone", true).await;
        let _other = channel(&store, "other", false).await;
        let gone = channel(&store, "gone", false).await;
        let mut s = spec("api");
        s.channels = vec![own, gone, everyone];
        let id = store.create_service(&s, 0).await.expect("create").id;
        assert!(store.delete_channel(gone, 0).await.expect("delete channel"));

        let first = store
            .record_batch(&[result(id, 1000, Status::Up)])
            .await
            .expect("record");
        assert_eq!(changes(&first.events), [(Status::Pending, Status::Up)]);
        assert_eq!(first.alerts, 0);
        assert!(outbox(&store).await.is_empty(), "a first UP alerts no one");

        let down = [result(id, 2000, Status::Down)];
        let once = store.record_batch(&down).await.expect("record");
        let twice = store.record_batch(&down).await.expect("record again");
        assert_eq!((once.alerts, twice.alerts), (2, 0));
        let rows = outbox(&store).await;
        let to: Vec<(i64, &str, i64)> = rows
            .iter()
            .map(|r| (r.channel_id, r.event.as_str(), r.scheduled_at))
            .collect();
        assert_eq!(
            to,
            [(own.get(), "down", 2000), (everyone.get(), "down", 2000)],
            "the service's existing channel and the all-services one, once each"
        );
        for row in &rows {
            assert_eq!(row.service_id, Some(id.get()));
            assert_eq!(
                (row.old_status.as_str(), row.new_status.as_str()),
                ("UP", "DOWN")
            );
            assert_eq!(row.attempts, 0);
            let p = payload(row);
            assert_eq!(p.service_name, "api");
            let check = p.check.expect("the deciding check");
            assert_eq!((check.status, check.scheduled_at), (Status::Down, 2000));
            assert_eq!(check.error.as_deref(), Some("connection refused"));
            let log = store.list_logs(id, 1, None).await.expect("logs");
            assert_eq!(check.id, Some(log[0].id), "the deciding check's log");
        }

        store
            .record_batch(&[result(id, 3000, Status::Up)])
            .await
            .expect("record");
        let ups: Vec<AlertPayload> = outbox(&store)
            .await
            .iter()
            .filter(|r| r.event == "up")
            .map(payload)
            .collect();
        assert_eq!(ups.len(), 2);
        assert!(
            ups.iter().all(|p| p.since == Some(2007)),
            "down since the DOWN's check: {ups:?}"
        );

        // Deleting the service leaves its alerts: they are history.
        assert!(store.delete_service(id).await.expect("delete"));
        assert_eq!(outbox(&store).await.len(), 4);
    }

    pub(super) async fn thresholds_hold_the_status_until_enough_rounds_agree(store: Store) {
        let mut s = spec("api");
        s.failure_threshold = 3;
        s.success_threshold = 2;
        s.retry_interval = Some(Seconds(2));
        let svc = store.create_service(&s, 0).await.expect("create");
        assert_eq!((svc.failure_threshold, svc.retry_interval), (3, Seconds(2)));
        let id = svc.id;
        channel(&store, "everyone", true).await;
        let mut seen = Vec::new();
        for (at, st) in [
            (10_000, Status::Up),
            (20_000, Status::Down),
            (22_000, Status::Down),
            (24_000, Status::Down),
            (34_000, Status::Up),
            (44_000, Status::Up),
        ] {
            let r = store
                .record_batch(&[result(id, at, st)])
                .await
                .expect("record");
            let status = store.get_service(id).await.unwrap().unwrap().last_status;
            let retries: Vec<i64> = r.retries.iter().map(|r| r.at).collect();
            seen.push((checks(&r.events), changes(&r.events), status, retries));
        }
        use Status::{Down, Pending, Up};
        assert_eq!(
            seen,
            [
                (1, vec![], Pending, vec![]),
                (1, vec![], Pending, vec![22_000]),
                (1, vec![], Pending, vec![24_000]),
                (1, vec![(Pending, Down)], Down, vec![]),
                (1, vec![], Down, vec![]),
                (1, vec![(Down, Up)], Up, vec![]),
            ],
            "every check counted and shown, the status only on its threshold"
        );
        let events: Vec<(String, i64)> = outbox(&store)
            .await
            .iter()
            .map(|r| (r.event.clone(), r.scheduled_at))
            .collect();
        assert_eq!(
            events,
            [("down".to_owned(), 24_000), ("up".to_owned(), 44_000)]
        );
        // A whole run in one batch, out of order and repeated, decides the
        // same by due time: three failures in a row make it DOWN once.
        let id2 = store.create_service(&s, 0).await.expect("create").id;
        let batch = [
            result(id2, 3000, Down),
            result(id2, 1000, Up),
            result(id2, 2000, Down),
            result(id2, 3000, Down),
            result(id2, 2500, Down),
        ];
        let r = store.record_batch(&batch).await.expect("record");
        assert_eq!(changes(&r.events), [(Pending, Down)]);
        let again = store.record_batch(&batch).await.expect("record");
        assert!(again.events.is_empty() && again.alerts == 0);
    }

    /// A DEGRADED (slow) result: passed, with its reason.
    fn slow(id: ServiceId, scheduled_at: i64) -> CheckResult {
        CheckResult {
            status_code: Some(200),
            error: Some("latency: 2300 ms, over degraded_latency_ms 1000".into()),
            ..result(id, scheduled_at, Status::Degraded)
        }
    }

    pub(super) async fn degraded_is_shown_changed_to_and_alerted_like_a_status(store: Store) {
        use Status::{Degraded, Down, Pending, Up};
        channel(&store, "everyone", true).await;
        let id = store
            .create_service(&spec("api"), 0)
            .await
            .expect("create")
            .id;
        let mut seen = Vec::new();
        for r in [
            result(id, 1000, Up),
            slow(id, 2000),
            slow(id, 3000),
            result(id, 4000, Up),
            result(id, 5000, Down),
            slow(id, 6000),
            result(id, 7000, Up),
        ] {
            // One batch each: an `up` reads since when from the changes
            // recorded before it.
            let got = store.record_batch(&[r]).await.expect("record");
            let shown = store.get_service(id).await.unwrap().unwrap().last_status;
            seen.push((changes(&got.events), shown, got.alerts));
        }
        assert_eq!(
            seen,
            [
                (vec![(Pending, Up)], Up, 0),
                (vec![(Up, Degraded)], Degraded, 1),
                (vec![], Degraded, 0),
                (vec![(Degraded, Up)], Up, 1),
                (vec![(Up, Down)], Down, 1),
                (vec![(Down, Degraded)], Degraded, 1),
                (vec![(Degraded, Up)], Up, 1),
            ]
        );
        let rows = outbox(&store).await;
        let alerts: Vec<(&str, &str, &str, i64, Option<i64>)> = rows
            .iter()
            .map(|r| {
                (
                    r.event.as_str(),
                    r.old_status.as_str(),
                    r.new_status.as_str(),
                    r.scheduled_at,
                    payload(r).since,
                )
            })
            .collect();
        assert_eq!(
            alerts,
            [
                ("degraded", "UP", "DEGRADED", 2000, Some(2007)),
                ("up", "DEGRADED", "UP", 4000, Some(2007)),
                ("down", "UP", "DOWN", 5000, Some(5007)),
                ("up", "DOWN", "DEGRADED", 6000, Some(5007)),
                ("up", "DEGRADED", "UP", 7000, Some(6007)),
            ],
            "each up since the newest change into the status it ends"
        );
        let check = payload(&rows[0]).check.expect("the deciding check");
        assert_eq!(check.status, Degraded);
        assert!(check.error.is_some_and(|e| e.starts_with("latency: ")));
        // Logs and the service show DEGRADED as the status string.
        let logs = store.list_logs(id, 100, None).await.expect("logs");
        let statuses: Vec<&str> = logs.iter().map(|l| l.status.as_str()).collect();
        assert_eq!(
            statuses,
            ["UP", "DEGRADED", "DOWN", "UP", "DEGRADED", "DEGRADED", "UP"]
        );
        let svc = store.get_service(id).await.unwrap().unwrap();
        let v = serde_json::to_value(&svc).expect("json");
        assert_eq!(v["last_status"], "UP");
        // Redelivered, nothing changes twice.
        let again = store
            .record_batch(&[slow(id, 6000), result(id, 7000, Up)])
            .await
            .expect("record");
        assert!(again.events.is_empty() && again.alerts == 0);
    }

    pub(super) async fn thresholds_count_degraded_as_passing(store: Store) {
        use Status::{Degraded, Down, Pending, Up};
        let mut s = spec("api");
        s.failure_threshold = 2;
        s.success_threshold = 2;
        let id = store.create_service(&s, 0).await.expect("create").id;
        let r = store
            .record_batch(&[
                result(id, 1000, Up),
                result(id, 2000, Down),
                slow(id, 3000),
                result(id, 4000, Down),
                result(id, 5000, Down),
                slow(id, 6000),
                result(id, 7000, Up),
                slow(id, 8000),
            ])
            .await
            .expect("record");
        assert_eq!(
            changes(&r.events),
            [(Pending, Down), (Down, Up), (Up, Degraded)],
            "a DEGRADED round breaks a failing run and counts as passing; \
             once passing, the newest shade shows at once"
        );
        let shown = store.get_service(id).await.unwrap().unwrap().last_status;
        assert_eq!(shown, Degraded);
    }

    on_every_backend!(
        a_change_writes_one_outbox_row_per_channel_once,
        thresholds_hold_the_status_until_enough_rounds_agree,
        degraded_is_shown_changed_to_and_alerted_like_a_status,
        thresholds_count_degraded_as_passing,
    );
}

/// A service's kind-specific settings come back as stored, and a log keeps
/// the certificate expiry its check saw (https and tls checks).
async fn check_options_and_certificate_expiry_are_kept(store: Store) {
    let mut with_options = spec("tls");
    with_options.url = "tls://127.0.0.1:8443".into();
    with_options.check = healthmon::domain::CheckOptions::from(healthmon::domain::CheckFields {
        cert_expiry_days: Some(21),
        ..Default::default()
    });
    let created = store
        .create_service(&with_options, 0)
        .await
        .expect("create");
    assert_eq!(created.check, with_options.check);
    let read = store
        .get_service(created.id)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(read.spec(), with_options);

    let expires = 1_900_000_000_000;
    let mut checked = result(created.id, 1000, Status::Degraded);
    checked.cert_expires_at = Some(expires);
    checked.error = Some("cert_expiry: the certificate expires in 3 days".into());
    store
        .record(&[checked, result(created.id, 2000, Status::Down)])
        .await
        .expect("record");
    let logs = store.list_logs(created.id, 10, None).await.expect("logs");
    let by_status: Vec<(String, Option<i64>)> = logs
        .iter()
        .map(|l| (l.status.clone(), l.cert_expires_at))
        .collect();
    assert_eq!(
        by_status,
        [
            ("DOWN".to_owned(), None),
            ("DEGRADED".to_owned(), Some(expires))
        ]
    );
}

async fn regions_quorum_and_one_log_per_region_and_round(store: Store) {
    let mut regional = spec("regional");
    regional.regions = vec!["eu".into(), "us".into(), "ap".into()];
    regional.quorum = Some(2);
    let created = store.create_service(&regional, 0).await.expect("create");
    let id = created.id;
    let read = store.get_service(id).await.expect("get").expect("stored");
    assert_eq!(read.spec(), regional);
    assert_eq!((read.regions.len(), read.quorum), (3, Some(2)));

    // Each region's result of a round is a log; the round's verdict (no
    // region) is one more; a repeat of any of them is a no-op.
    let vote = |at: i64, region: Option<&str>, status: Status| CheckResult {
        region: region.map(str::to_owned),
        ..result(id, at, status)
    };
    let round = [
        vote(1000, Some("eu"), Status::Up),
        vote(1000, Some("us"), Status::Down),
        vote(1000, Some("ap"), Status::Up),
        vote(1000, None, Status::Up),
    ];
    store.record(&round).await.expect("record");
    store.record(&round[1..2]).await.expect("record a repeat");
    let logs = store.list_logs(id, 10, None).await.expect("logs");
    let mut regions: Vec<Option<String>> = logs.iter().map(|l| l.region.clone()).collect();
    regions.sort();
    assert_eq!(
        regions,
        [
            None,
            Some("ap".into()),
            Some("eu".into()),
            Some("us".into())
        ]
    );
    let us = store
        .list_logs_in(id, 10, None, Some("us"))
        .await
        .expect("logs");
    assert_eq!(us.len(), 1);
    assert_eq!(
        (us[0].status.as_str(), us[0].region.as_deref()),
        ("DOWN", Some("us"))
    );

    // A service without regions logs a round once, whichever region's
    // worker ran it (a redelivery may reach another region).
    let plain = store
        .create_service(&spec("plain"), 0)
        .await
        .expect("create");
    let from = |region: &str| CheckResult {
        region: Some(region.into()),
        ..result(plain.id, 1000, Status::Up)
    };
    store
        .record(&[from("eu"), from("us")])
        .await
        .expect("record");
    store.record(&[from("ap")]).await.expect("record");
    let logs = store.list_logs(plain.id, 10, None).await.expect("logs");
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].region, None);

    // Regions and quorum change and go back to none.
    let mut changed = regional.clone();
    changed.regions = vec!["us".into()];
    changed.quorum = None;
    let Updated::Saved(saved) = store
        .update_service(id, &changed, 1, None)
        .await
        .expect("update")
    else {
        panic!("not saved");
    };
    assert_eq!(saved.spec(), changed);
    changed.regions.clear();
    let Updated::Saved(saved) = store
        .update_service(id, &changed, 2, None)
        .await
        .expect("update")
    else {
        panic!("not saved");
    };
    assert_eq!((saved.regions.len(), saved.quorum), (0, None));
}

/// `GET /services`' pages and filters in the store, on both backends.
mod lists {
    use super::*;
    use healthmon::store::ServiceFilter;

    on_every_backend!(
        pages_filters_and_tags_are_answered_by_the_database,
        tags_follow_every_write_and_leave_with_the_service,
    );

    fn tagged(name: &str, tags: &[&str]) -> ServiceSpec {
        let mut s = spec(name);
        s.tags = tags.iter().map(|t| (*t).to_owned()).collect();
        s
    }

    async fn page(store: &Store, filter: ServiceFilter) -> Vec<i64> {
        store
            .list_services_page(&filter)
            .await
            .expect("page")
            .iter()
            .map(|s| s.id.get())
            .collect()
    }

    /// Every id `filter` selects, a page of `limit` at a time.
    async fn walk(store: &Store, filter: ServiceFilter, limit: i64) -> Vec<i64> {
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let got = page(
                store,
                ServiceFilter {
                    after,
                    limit,
                    ..filter.clone()
                },
            )
            .await;
            all.extend(&got);
            match got.last() {
                Some(last) if got.len() as i64 == limit => after = *last,
                _ => return all,
            }
        }
    }

    pub(super) async fn pages_filters_and_tags_are_answered_by_the_database(store: Store) {
        // 60 services: every third tagged prod, every fifth api; names
        // alternate case; statuses set by recorded results.
        let mut ids = Vec::new();
        for i in 0..60 {
            let mut tags = Vec::new();
            if i % 3 == 0 {
                tags.push("prod");
            }
            if i % 5 == 0 {
                tags.push("api");
            }
            let name = if i % 2 == 0 {
                format!("Web {i}")
            } else {
                format!("web_{i}%")
            };
            let s = store
                .create_service(&tagged(&name, &tags), 0)
                .await
                .expect("create");
            assert_eq!(s.tags, tags);
            ids.push(s.id);
        }
        let results: Vec<CheckResult> = ids
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 4 != 3)
            .map(|(i, id)| {
                result(
                    *id,
                    1000,
                    if i % 4 == 0 { Status::Up } else { Status::Down },
                )
            })
            .collect();
        store.record(&results).await.expect("record");
        let id = |i: usize| ids[i].get();
        let which = |pred: &dyn Fn(usize) -> bool| -> Vec<i64> {
            (0..60).filter(|i| pred(*i)).map(id).collect()
        };
        let all = ServiceFilter::default();

        assert_eq!(walk(&store, all.clone(), 7).await, which(&|_| true));
        assert_eq!(
            page(
                &store,
                ServiceFilter {
                    limit: 5,
                    ..all.clone()
                }
            )
            .await,
            which(&|i| i < 5)
        );
        assert_eq!(
            page(
                &store,
                ServiceFilter {
                    after: id(57),
                    ..all.clone()
                }
            )
            .await,
            [id(58), id(59)]
        );
        let prod = ServiceFilter {
            tag: Some("prod".into()),
            ..all.clone()
        };
        assert_eq!(walk(&store, prod.clone(), 4).await, which(&|i| i % 3 == 0));
        let up = ServiceFilter {
            statuses: vec![Status::Up],
            ..all.clone()
        };
        assert_eq!(walk(&store, up.clone(), 4).await, which(&|i| i % 4 == 0));
        let pending_or_down = ServiceFilter {
            statuses: vec![Status::Pending, Status::Down],
            ..all.clone()
        };
        assert_eq!(
            walk(&store, pending_or_down, 9).await,
            which(&|i| i % 4 != 0)
        );
        let named = |q: &str| ServiceFilter {
            name_contains: Some(q.into()),
            ..all.clone()
        };
        assert_eq!(
            walk(&store, named("WEB"), 8).await,
            which(&|_| true),
            "any case"
        );
        assert_eq!(
            walk(&store, named("b_"), 8).await,
            which(&|i| i % 2 == 1),
            "_ is itself"
        );
        assert_eq!(
            walk(&store, named("%"), 8).await,
            which(&|i| i % 2 == 1),
            "% is itself"
        );
        assert_eq!(
            walk(&store, named("web 1"), 8).await,
            which(&|i| i % 2 == 0 && (i == 1 || (10..20).contains(&i)))
        );
        let together = ServiceFilter {
            tag: Some("prod".into()),
            statuses: vec![Status::Up],
            name_contains: Some("web ".into()),
            ..all.clone()
        };
        assert_eq!(
            walk(&store, together, 2).await,
            which(&|i| i % 3 == 0 && i % 4 == 0 && i % 2 == 0)
        );
        let api_down = ServiceFilter {
            tag: Some("api".into()),
            statuses: vec![Status::Down],
            ..all.clone()
        };
        assert_eq!(
            walk(&store, api_down, 1).await,
            which(&|i| i % 5 == 0 && i % 4 != 0 && i % 4 != 3)
        );
        let none = ServiceFilter {
            tag: Some("Prod".into()),
            ..all.clone()
        };
        assert_eq!(
            page(&store, none).await,
            Vec::<i64>::new(),
            "tags are case-sensitive"
        );
    }

    pub(super) async fn tags_follow_every_write_and_leave_with_the_service(store: Store) {
        let with = |tag: &str| ServiceFilter {
            tag: Some(tag.into()),
            ..ServiceFilter::default()
        };
        let a = store
            .create_service(&tagged("a", &["prod", "api"]), 0)
            .await
            .expect("a");
        let b = store
            .create_service(&tagged("b", &["prod"]), 0)
            .await
            .expect("b");
        assert_eq!(page(&store, with("prod")).await, [a.id.get(), b.id.get()]);
        let read = store.get_service(a.id).await.expect("get").expect("a");
        assert_eq!(read.tags, ["prod", "api"], "order kept");

        let Updated::Saved(changed) = store
            .update_service(a.id, &tagged("a", &["staging", "api"]), 1, None)
            .await
            .expect("update")
        else {
            panic!("not saved");
        };
        assert_eq!(changed.tags, ["staging", "api"]);
        assert_eq!(page(&store, with("prod")).await, [b.id.get()]);
        assert_eq!(page(&store, with("staging")).await, [a.id.get()]);
        assert_eq!(page(&store, with("api")).await, [a.id.get()]);
        // A status write leaves the tags alone.
        store
            .record(&[result(a.id, 1000, Status::Up)])
            .await
            .expect("record");
        assert_eq!(page(&store, with("staging")).await, [a.id.get()]);

        assert!(store.delete_service(a.id).await.expect("delete"));
        assert_eq!(page(&store, with("staging")).await, Vec::<i64>::new());
        assert_eq!(page(&store, with("api")).await, Vec::<i64>::new());
        store
            .update_service(b.id, &tagged("b", &[]), 2, None)
            .await
            .expect("untag");
        assert_eq!(page(&store, with("prod")).await, Vec::<i64>::new());
    }
}

/// Rollups of a regional service: only its rounds' verdicts count.
mod regional_rollups {
    use super::*;

    on_every_backend!(a_regional_service_s_uptime_counts_each_round_once);

    /// A round's verdict is logged without a region beside each region's
    /// vote; the hourly rollups (what `GET /services/{id}/uptime` reads)
    /// count the verdicts alone, so a round counts once, not once per
    /// region plus once, and a vote's failure or latency is not the
    /// round's.
    pub(super) async fn a_regional_service_s_uptime_counts_each_round_once(store: Store) {
        use Status::{Down, Up};
        let mut regional = spec("regional");
        regional.regions = vec!["eu".into(), "us".into(), "ap".into()];
        let id = store.create_service(&regional, 0).await.expect("create").id;
        let vote = |at: i64, region: &str, status: Status| CheckResult {
            region: Some(region.into()),
            ..log_at(id, at, status, 500)
        };
        let second = H0 + 60_000;
        store
            .record(&[
                vote(H0, "eu", Up),
                vote(H0, "us", Down),
                vote(H0, "ap", Up),
                log_at(id, H0, Up, 10),
                vote(second, "eu", Down),
                vote(second, "us", Down),
                vote(second, "ap", Up),
                log_at(id, second, Down, 20),
            ])
            .await
            .expect("record");
        assert_eq!(
            store.list_logs(id, 10, None).await.expect("logs").len(),
            8,
            "every vote and verdict is logged"
        );
        // Small chunks: votes and verdicts fall into different chunks.
        store.rollup(3).await.expect("rollup");
        assert_eq!(
            store.rollups(id, H0, H0 + HOUR_MS).await.expect("rollups"),
            vec![hour(id, H0, &[(Up, 10), (Down, 20)])],
            "two rounds, one of them failed, with the verdicts' latencies"
        );
    }
}
