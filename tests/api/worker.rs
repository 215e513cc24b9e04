//! What a worker sends to a target, and what it reports about checks it
//! drops: the real binary against real targets on 127.0.0.1.
use crate::helpers::*;

use serde_json::json;

const HEADER: &str = "x-healthmon-scheduled-at";

/// Registers `/ok` every second and waits until the target has seen two
/// requests for it; returns their `x-healthmon-scheduled-at` values.
async fn schedule_headers_seen(m: &Monitor, target: &Target) -> Vec<String> {
    m.register(service("ok", &target.url("/ok"), 1)).await;
    eventually("two requests at the target", || async {
        (target.hits("/ok") >= 2).then_some(())
    })
    .await;
    target.header_values("/ok", HEADER)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_get_no_schedule_header_unless_it_is_turned_on() {
    let target = Target::start().await;
    let m = Monitor::start();
    let seen = schedule_headers_seen(&m, &target).await;
    assert!(
        seen.is_empty(),
        "by default a target is not told the check's due time: {seen:?}"
    );

    let target = Target::start().await;
    let m = Monitor::start_with(&[("HEALTHMON__CHECKS__SEND_SCHEDULE_HEADER", "true")]);
    let seen = schedule_headers_seen(&m, &target).await;
    let requests = target.hits("/ok");
    let arrived = chrono::Utc::now().timestamp_millis();
    assert_eq!(seen.len(), requests, "every request carries it: {seen:?}");
    for value in &seen {
        let at: i64 = value.parse().expect("epoch ms");
        assert!(
            (arrived - 60_000..=arrived).contains(&at),
            "{value} is not a recent due time (now {arrived})"
        );
    }
}

/// The numbers of the "due checks dropped without running" INFO lines for
/// `cause`, in order.
fn drop_lines(m: &Monitor, cause: &str) -> Vec<u64> {
    let logs = m.logs.lock().map(|l| l.clone()).unwrap_or_default();
    logs.iter()
        .filter(|l| l.contains("INFO") && l.contains("due checks dropped without running"))
        .filter(|l| l.contains(&format!("cause={cause}")))
        .filter_map(|l| {
            let rest = l.split("dropped=").nth(1)?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_gone_stale_in_the_queue_are_counted_in_an_info_line() {
    let target = Target::start().await;
    // One worker slot: while a check of /hang holds it for its 4 s timeout,
    // the jobs of the 1 s service queue up and are stale (older than their
    // interval) by the time the slot is free.
    let m = Monitor::start_with(&[("HEALTHMON__WORKER__CONCURRENCY", "1")]);
    m.register(json!({"name": "hang", "url": target.url("/hang"), "interval": 4, "timeout": 4}))
        .await;
    m.register(service("ok", &target.url("/ok"), 1)).await;
    let dropped = eventually("an INFO line counting stale drops", || async {
        let lines = drop_lines(&m, "stale_at_worker");
        (!lines.is_empty()).then_some(lines)
    })
    .await;
    assert!(
        dropped.iter().all(|&n| n > 0),
        "each line counts the drops since the last: {dropped:?}"
    );
    // Aggregated: the three jobs that pile up behind each hang go stale
    // within milliseconds of each other and share one line.
    let dropped = eventually("a line summing several drops", || async {
        let lines = drop_lines(&m, "stale_at_worker");
        lines.iter().any(|&n| n > 1).then_some(lines)
    })
    .await;
    assert!(dropped.iter().all(|&n| n > 0), "{dropped:?}");
}
