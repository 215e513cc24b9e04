//! Retries of unconfirmed failures: one extra job, the phase kept.

use super::*;

#[test]
fn a_retry_is_one_extra_job_and_the_phase_is_kept() {
    let mut s = Schedule::new();
    s.upsert(ServiceId(1), spec(60), 0);
    assert_eq!(s.take_due(0)[0].scheduled_at, 0);
    s.apply(
        ScheduleUpdate::Retry {
            id: ServiceId(1),
            at: 5_000,
        },
        100,
    );
    assert_eq!(s.next_due(), Some(5_000));
    assert!(s.take_due(4_999).is_empty());
    let jobs = s.take_due(5_000);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].scheduled_at, 5_000, "due at the retry's time");
    assert_eq!(jobs[0].interval_ms, 60_000);
    // A retry after the retry: failures confirmed in seconds.
    s.retry(ServiceId(1), 10_000);
    assert_eq!(s.take_due(10_000)[0].scheduled_at, 10_000);
    assert_eq!(s.next_due(), Some(60_000), "the round keeps its slot");
    assert_eq!(s.take_due(60_000)[0].scheduled_at, 60_000);
    assert_eq!(s.retries_pending(), 0);
}

#[test]
fn a_service_never_has_two_retries_and_a_late_one_is_the_round() {
    let mut s = Schedule::new();
    s.upsert(ServiceId(1), spec(60), 0);
    s.take_due(0);
    s.retry(ServiceId(1), 5_000);
    s.retry(ServiceId(1), 7_000);
    assert_eq!(s.retries_pending(), 1);
    s.retry(ServiceId(1), 4_000);
    assert_eq!(s.retries_pending(), 1, "the earlier replaces it");
    let jobs = s.take_due(30_000);
    assert_eq!(
        jobs.iter().map(|j| j.scheduled_at).collect::<Vec<_>>(),
        [4_000],
        "one job, however many retries were asked for"
    );
    // At or after the next round: that round is the retry.
    s.retry(ServiceId(1), 60_000);
    s.retry(ServiceId(1), 90_000);
    assert_eq!(s.retries_pending(), 0);
    assert_eq!(s.next_due(), Some(60_000));
}

#[test]
fn retries_of_paused_deleted_or_changed_services_are_dropped() {
    let mut s = Schedule::new();
    s.upsert(ServiceId(1), spec(60), 0);
    s.upsert(ServiceId(2), spec(60), 0);
    s.upsert(ServiceId(3), spec(60), 0);
    s.take_due(0);
    s.retry(ServiceId(9), 5_000);
    s.retry(ServiceId(1), 5_000);
    s.retry(ServiceId(2), 5_000);
    s.retry(ServiceId(3), 5_000);
    s.remove(ServiceId(1));
    let mut paused = spec(60);
    paused.paused = true;
    s.upsert(ServiceId(2), paused, 1_000);
    let mut moved = spec(60);
    moved.url = "http://127.0.0.1:2/".into();
    s.upsert(ServiceId(3), moved, 1_000);
    let jobs = s.take_due(5_000);
    assert_eq!(
        jobs.iter()
            .map(|j| (j.service_id.get(), j.scheduled_at))
            .collect::<Vec<_>>(),
        [(3, 1_000)],
        "only the changed service's fresh round"
    );
    assert_eq!(s.retries_pending(), 0);
}

#[test]
fn after_a_stall_the_round_stands_for_its_retry() {
    let mut s = Schedule::new();
    s.upsert(ServiceId(1), spec(60), 0);
    s.take_due(0);
    s.retry(ServiceId(1), 5_000);
    let jobs = s.take_due(61_000);
    assert_eq!(
        jobs.iter().map(|j| j.scheduled_at).collect::<Vec<_>>(),
        [60_000]
    );
    assert_eq!(s.next_due(), Some(120_000));
}

#[test]
fn a_reload_drops_retries_of_services_gone() {
    let mut s = Schedule::new();
    s.upsert(ServiceId(1), spec(10), 0);
    s.upsert(ServiceId(2), spec(10), 0);
    s.take_due(0);
    s.retry(ServiceId(1), 2_000);
    s.retry(ServiceId(2), 2_000);
    let mut present = HashSet::new();
    s.reconcile(
        &[stored(1, "http://127.0.0.1:1/", Some(0))],
        1_000,
        &mut present,
    );
    s.reconcile_end(&present);
    assert_eq!(s.retries_pending(), 1);
    assert_eq!(ids(&s.take_due(2_000)), [1]);
}
