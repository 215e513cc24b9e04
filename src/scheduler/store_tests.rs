//! The scheduler against a real (SQLite) store: loading in pages with due
//! jobs published in between, and the changes pass.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

use super::active::Active;
use super::load::{LOAD_PAGE, Load};
use super::*;
use crate::bus::{Capacities, Consumer};
use crate::config::DatabaseUrl;
use crate::domain::time::{Seconds, now_ms};
use crate::store::NewService;

fn spec(n: i64) -> ServiceSpec {
    ServiceSpec {
        name: format!("s{n}"),
        url: format!("http://127.0.0.1:1/{n}"),
        interval: Seconds(300),
        timeout: Seconds(10),
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

/// A store in `dir` holding `n` services never checked (so all due at
/// once), registered at `at`.
async fn store_with(dir: &tempfile::TempDir, n: i64, at: Millis) -> Store {
    let url = DatabaseUrl::Sqlite(dir.path().join("h.db"));
    let store = Store::open(&url, 2).await.unwrap();
    let specs: Vec<ServiceSpec> = (1..=n).map(spec).collect();
    for chunk in specs.chunks(1000) {
        let batch: Vec<NewService<'_>> = chunk
            .iter()
            .map(|spec| NewService {
                spec,
                push_token_hash: None,
            })
            .collect();
        store.create_services(&batch, at).await.unwrap();
    }
    store
}

fn bus() -> Bus {
    Bus::in_process(Capacities {
        jobs: 100_000,
        results: 16,
        events: 16,
        schedule: 16,
    })
}

/// Every job already published.
fn drain(jobs: &mut Consumer<CheckJob>) -> Vec<CheckJob> {
    std::iter::from_fn(|| jobs.try_next().map(|d| d.msg)).collect()
}

#[tokio::test]
async fn after_a_restart_the_first_page_is_checked_before_the_rest_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let total = 5 * LOAD_PAGE + 1;
    let store = store_with(&dir, total, now_ms()).await;
    let bus = bus();
    let mut jobs = bus.consume_jobs().unwrap();
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let mut active = Active::new(&store, &bus, &metrics);

    // What the loop does first: one page, then what is due.
    active.step_load().await.unwrap();
    assert!(active.loading(), "more pages to read");
    active.publish_due(&shutdown).await.unwrap();
    let first = drain(&mut jobs);
    assert_eq!(first.len() as i64, LOAD_PAGE, "the first page's services");
    assert!(first.iter().all(|j| j.service_id.get() <= LOAD_PAGE));

    let mut pages = 1;
    while active.loading() {
        active.step_load().await.unwrap();
        active.publish_due(&shutdown).await.unwrap();
        pages += 1;
        assert!(pages <= 10, "the load ends");
    }
    let rest = drain(&mut jobs);
    assert_eq!(
        first.len() + rest.len(),
        total as usize,
        "each service once"
    );
    assert_eq!(active.schedule.len() as i64, total);
}

#[tokio::test]
async fn the_loop_checks_every_service_of_a_large_store_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let total = 3 * LOAD_PAGE + 7;
    let store = store_with(&dir, total, now_ms()).await;
    let bus = bus();
    let mut jobs = bus.consume_jobs().unwrap();
    let shutdown = CancellationToken::new();
    let scheduler = tokio::spawn(run(store.clone(), bus.clone(), shutdown.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut seen = HashSet::new();
    while (seen.len() as i64) < total {
        let job = tokio::time::timeout_at(deadline, jobs.next())
            .await
            .expect("every service checked within 30 s")
            .expect("bus open");
        assert!(seen.insert(job.msg.service_id), "one job each");
    }
    shutdown.cancel();
    scheduler.await.unwrap().unwrap();
}

/// Steps a pass to its end.
async fn finish(mut load: Load, store: &Store, schedule: &mut Schedule) -> Load {
    for _ in 0..1000 {
        if load.step(store, schedule).await.unwrap() {
            return load;
        }
    }
    panic!("the pass never ended");
}

#[tokio::test]
async fn a_changes_pass_finds_what_changed_behind_the_bus() {
    let dir = tempfile::tempdir().unwrap();
    let registered = now_ms() - 3_600_000;
    let total = 2 * LOAD_PAGE + 5;
    let store = store_with(&dir, total, registered).await;
    let mut schedule = Schedule::new();
    let full = finish(Load::full(&schedule), &store, &mut schedule).await;
    assert_eq!(schedule.len() as i64, total);
    // Checked once, so that a service made due now stands out.
    let now = now_ms();
    assert_eq!(schedule.take_due(now).len() as i64, total);

    // Behind the bus's back: more than a page of services get a new URL,
    // one is paused, two are deleted (one in the middle, the last), one
    // is registered.
    let later = now_ms();
    let changed: Vec<i64> = (1..=LOAD_PAGE + 10).collect();
    for id in &changed {
        let mut s = spec(*id);
        s.url = format!("http://127.0.0.1:2/{id}");
        store
            .update_service(ServiceId(*id), &s, later, None)
            .await
            .unwrap();
    }
    let mut paused = spec(LOAD_PAGE + 20);
    paused.paused = true;
    store
        .update_service(ServiceId(LOAD_PAGE + 20), &paused, later, None)
        .await
        .unwrap();
    assert!(
        store
            .delete_service(ServiceId(LOAD_PAGE + 30))
            .await
            .unwrap()
    );
    assert!(store.delete_service(ServiceId(total)).await.unwrap());
    let new = spec(total + 1);
    store
        .create_services(
            &[NewService {
                spec: &new,
                push_token_hash: None,
            }],
            later,
        )
        .await
        .unwrap();

    finish(Load::changes(full.next_since()), &store, &mut schedule).await;
    let due = schedule.take_due(now_ms());
    let mut got: Vec<(i64, String)> = due
        .iter()
        .map(|j| (j.service_id.get(), j.url.clone()))
        .collect();
    got.sort_unstable();
    let mut want: Vec<(i64, String)> = changed
        .iter()
        .map(|id| (*id, format!("http://127.0.0.1:2/{id}")))
        .collect();
    want.push((total + 1, new.url.clone()));
    assert_eq!(
        got, want,
        "changed ones due now with their new URL, the new one too"
    );
    for gone in [LOAD_PAGE + 20, LOAD_PAGE + 30, total] {
        assert!(!schedule.contains(ServiceId(gone)), "{gone} dropped");
    }
    assert_eq!(schedule.len() as i64, total - 3 + 1);
}

#[tokio::test]
async fn a_changes_pass_reads_only_recent_changes() {
    let dir = tempfile::tempdir().unwrap();
    let registered = now_ms() - 3_600_000;
    let store = store_with(&dir, 10, registered).await;
    let since = registered + 60_000;
    let first = store
        .services_changed_after(crate::store::changed::ChangedCursor::since(since), 100)
        .await
        .unwrap();
    assert!(first.is_empty(), "nothing changed since");
    let mut s = spec(4);
    s.name = "renamed".into();
    store
        .update_service(ServiceId(4), &s, since + 1, None)
        .await
        .unwrap();
    store
        .update_service(ServiceId(2), &spec(2), since + 1, None)
        .await
        .unwrap();
    let cursor = crate::store::changed::ChangedCursor::since(since);
    let one = store.services_changed_after(cursor, 1).await.unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].id, ServiceId(2));
    let next = crate::store::changed::ChangedCursor::after(&one[0]);
    let two = store.services_changed_after(next, 1).await.unwrap();
    assert_eq!(two.len(), 1);
    assert_eq!(two[0].id, ServiceId(4), "the walk goes on past the cursor");
    let end = crate::store::changed::ChangedCursor::after(&two[0]);
    assert!(
        store
            .services_changed_after(end, 1)
            .await
            .unwrap()
            .is_empty()
    );
}
