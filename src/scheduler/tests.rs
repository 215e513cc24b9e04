//! Unit tests of `scheduler`.

use super::*;
use crate::domain::time::Seconds;

fn spec(interval: i64) -> ServiceSpec {
    ServiceSpec {
        name: "s".into(),
        url: "http://127.0.0.1:1/".into(),
        interval: Seconds(interval),
        timeout: Seconds(1),
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

/// A service as the store returns it, every 10 s.
fn stored(id: i64, url: &str, last_scheduled_at: Option<i64>) -> Service {
    Service {
        id: ServiceId(id),
        name: "s".into(),
        url: url.into(),
        interval: Seconds(10),
        timeout: Seconds(1),
        timeout_follows_interval: false,
        expected_statuses: None,
        failure_threshold: 1,
        success_threshold: 1,
        retry_interval: Seconds(10),
        retry_interval_set: None,
        channels: Vec::new(),
        tags: Vec::new(),
        check: Default::default(),
        last_status: crate::domain::Status::Up,
        last_check: None,
        last_latency_ms: None,
        paused: false,
        created_at: 0,
        updated_at: 0,
        last_scheduled_at,
        version: 0,
        regions: Vec::new(),
        quorum: None,
    }
}

fn ids(jobs: &[CheckJob]) -> Vec<i64> {
    jobs.iter().map(|j| j.service_id.get()).collect()
}

#[test]
fn jobs_come_out_in_due_order() {
    let mut s = Schedule::new();
    s.upsert(ServiceId(1), spec(10), 3_000);
    s.upsert(ServiceId(2), spec(10), 1_000);
    s.upsert(ServiceId(3), spec(10), 2_000);
    assert_eq!(s.next_due(), Some(1_000));
    assert_eq!(ids(&s.take_due(2_500)), [2, 3]);
    assert_eq!(ids(&s.take_due(3_000)), [1]);
}

#[test]
fn next_run_is_previous_scheduled_time_plus_interval_without_drift() {
    let mut s = Schedule::new();
    s.upsert(ServiceId(1), spec(5), 0);
    let mut scheduled = Vec::new();
    // Wake-ups arrive late by varying amounts; the slots do not move.
    for late in [0, 130, 20, 999, 7] {
        let due = s.next_due().unwrap();
        let jobs = s.take_due(due + late);
        scheduled.push(jobs[0].scheduled_at);
    }
    assert_eq!(scheduled, [0, 5_000, 10_000, 15_000, 20_000]);
}

#[test]
fn a_stall_yields_one_job_per_service_not_a_burst() {
    let mut s = Schedule::new();
    s.upsert(ServiceId(1), spec(1), 0);
    s.upsert(ServiceId(2), spec(2), 0);
    let jobs = s.take_due(10_500);
    assert_eq!(ids(&jobs), [1, 2]);
    assert_eq!(
        jobs[0].scheduled_at, 10_000,
        "latest missed slot, phase kept"
    );
    assert_eq!(jobs[1].scheduled_at, 10_000);
    assert_eq!(s.next_due(), Some(11_000));
    assert!(s.take_due(10_999).is_empty());
    // Service 1 missed the slots 0..=9 s but 10 s, service 2 those at
    // 0, 2, 4, 6 and 8 s: each skipped slot is a dropped check.
    assert_eq!(s.take_skipped(), 10 + 5);
    assert_eq!(s.take_skipped(), 0, "taken once");
}

#[test]
fn on_time_wake_ups_skip_nothing() {
    let mut s = Schedule::new();
    s.upsert(ServiceId(1), spec(1), 0);
    for now in [0, 1_000, 2_400, 3_999] {
        s.take_due(now);
    }
    assert_eq!(s.take_skipped(), 0);
    // A wake-up 1.5 intervals late misses one slot.
    s.take_due(5_500);
    assert_eq!(s.take_skipped(), 1);
}

#[test]
fn delete_and_pause_take_effect_at_once() {
    let mut s = Schedule::new();
    s.upsert(ServiceId(1), spec(1), 0);
    s.upsert(ServiceId(2), spec(1), 0);
    s.remove(ServiceId(1));
    let mut paused = spec(1);
    paused.paused = true;
    s.upsert(ServiceId(2), paused, 0);
    assert!(s.take_due(5_000).is_empty());
    assert_eq!(s.next_due(), None);
    assert!(s.is_empty());
}

#[test]
fn changing_what_is_checked_makes_it_due_now_but_a_rename_does_not() {
    let mut s = Schedule::new();
    s.upsert(ServiceId(1), spec(60), 0);
    assert_eq!(s.take_due(0).len(), 1);
    let mut renamed = spec(60);
    renamed.name = "new".into();
    s.upsert(ServiceId(1), renamed, 1_000);
    assert_eq!(s.next_due(), Some(60_000));
    let mut moved = spec(60);
    moved.url = "http://127.0.0.1:2/".into();
    s.upsert(ServiceId(1), moved, 2_000);
    let jobs = s.take_due(2_000);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].url, "http://127.0.0.1:2/");
    assert!(s.take_due(61_000).is_empty(), "the old slot is gone");
}

#[test]
fn load_keeps_the_phase_of_the_last_check() {
    let svc = |last: Option<i64>| stored(1, "http://x/", last);
    let mut s = Schedule::new();
    s.load(&svc(Some(95_000)), 100_000);
    assert_eq!(s.next_due(), Some(105_000));
    let mut s = Schedule::new();
    s.load(&svc(Some(3_000)), 100_000);
    assert_eq!(s.next_due(), Some(103_000), "next slot of the old phase");
    let mut s = Schedule::new();
    s.load(&svc(None), 100_000);
    assert_eq!(s.next_due(), Some(100_000));
}

#[test]
fn a_reload_keeps_the_phase_of_services_registered_but_not_yet_checked() {
    // Registered 4 s and 7 s before a reload (10 s interval), never
    // checked: each is due when it was created, not both at the reload,
    // and keeps that phase.
    let created = |id: i64, at: i64| Service {
        created_at: at,
        ..stored(id, "http://x/", None)
    };
    let mut s = Schedule::new();
    s.load(&created(1, 96_000), 100_000);
    s.load(&created(2, 93_000), 100_000);
    let jobs = s.take_due(100_000);
    let mut at: Vec<i64> = jobs.iter().map(|j| j.scheduled_at).collect();
    at.sort_unstable();
    assert_eq!(at, [93_000, 96_000], "checked at once, in their phases");
    assert_eq!(s.next_due(), Some(103_000));
    assert_eq!(s.take_due(103_000).len(), 1);
    assert_eq!(s.next_due(), Some(106_000));
}

#[test]
fn a_reload_keeps_slots_adds_new_drops_gone_and_moves_changed() {
    // Checked one slot ago, its result not yet recorded.
    let svc = |id: i64, url: &str| stored(id, url, Some(90_000));
    let mut s = Schedule::new();
    s.upsert(ServiceId(1), svc(1, "http://a/").spec(), 100_000);
    s.upsert(ServiceId(2), svc(2, "http://b/").spec(), 100_000);
    s.upsert(ServiceId(3), svc(3, "http://c/").spec(), 100_000);
    // The reload runs 50 ms after all three fell due, before any was taken.
    // In two pages.
    let mut present = HashSet::new();
    let page = [svc(1, "http://a/"), svc(2, "http://b2/")];
    s.reconcile(&page, 100_050, &mut present);
    s.reconcile(&[svc(4, "http://d/")], 100_050, &mut present);
    s.reconcile_end(&present);
    let jobs = s.take_due(100_050);
    let mut got: Vec<(i64, i64)> = jobs
        .iter()
        .map(|j| (j.service_id.get(), j.scheduled_at))
        .collect();
    got.sort_unstable();
    assert_eq!(
        got,
        [(1, 100_000), (2, 100_050)],
        "1 keeps its due slot, 2 changed and is due now, 3 is gone, 4 keeps its phase"
    );
    assert_eq!(s.len(), 3);
    assert_eq!(ids(&s.take_due(110_000)), [1, 4]);
}

#[test]
fn jobs_carry_everything_a_worker_needs() {
    let mut s = Schedule::new();
    let mut sp = spec(30);
    sp.timeout = Seconds(20);
    sp.expected_statuses = Some(vec![204]);
    s.upsert(ServiceId(9), sp, 500);
    let job = &s.take_due(500)[0];
    assert_eq!(
        (
            job.service_id,
            job.timeout_ms,
            job.interval_ms,
            job.scheduled_at
        ),
        (ServiceId(9), 20_000, 30_000, 500)
    );
    assert_eq!(job.expected_statuses, Some(vec![204]));
}

#[test]
fn a_changed_assertion_is_checked_at_once_a_rename_keeps_the_slot() {
    let mut s = Schedule::new();
    s.upsert(ServiceId(1), spec(60), 0);
    assert_eq!(s.take_due(0).len(), 1);
    let mut renamed = spec(60);
    renamed.name = "renamed".into();
    s.upsert(ServiceId(1), renamed.clone(), 1_000);
    assert_eq!(s.next_due(), Some(60_000), "a rename keeps the slot");
    let mut asserted = renamed;
    asserted.check.body_contains = Some("ok".into());
    s.upsert(ServiceId(1), asserted, 2_000);
    let jobs = s.take_due(2_000);
    assert_eq!(jobs.len(), 1, "a changed check is due now");
    assert_eq!(jobs[0].check.body_contains.as_deref(), Some("ok"));
}

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

/// A push service every `interval` s with `grace` s.
fn push_spec(interval: i64, grace: i64) -> ServiceSpec {
    let mut s = spec(interval);
    s.url = "push://".into();
    s.check.grace = Some(Seconds(grace));
    s
}

/// Where a deadline's DOWN is published: after its settling time.
fn settled(deadline: Millis) -> Millis {
    deadline + PING_SETTLE_MS
}

fn missed_at(results: &[CheckResult]) -> Vec<(i64, Millis)> {
    results
        .iter()
        .map(|r| (r.service_id.get(), r.scheduled_at))
        .collect()
}

#[test]
fn a_push_service_never_makes_a_job_and_is_down_at_interval_plus_grace() {
    let mut s = Schedule::new();
    s.upsert(ServiceId(1), push_spec(30, 60), 1_000);
    assert_eq!(s.len(), 1);
    assert_eq!(s.next_due(), Some(settled(91_000)));
    assert!(s.take_due(1_000_000).is_empty(), "no jobs, ever");
    assert!(s.take_missed(settled(91_000) - 1).is_empty());
    let missed = s.take_missed(settled(91_000));
    assert_eq!(
        missed_at(&missed),
        [(1, 91_000)],
        "scheduled at the deadline"
    );
    let r = &missed[0];
    assert_eq!(r.status, crate::domain::Status::Down);
    assert_eq!(r.latency_ms, 0);
    assert_eq!(
        r.error.as_deref(),
        Some("missed_ping: no ping for 90 s (interval 30 s + grace 60 s)")
    );
    // Still silent: DOWN again once per interval, not interval + grace.
    assert_eq!(s.next_due(), Some(settled(121_000)));
    assert_eq!(missed_at(&s.take_missed(settled(121_000))), [(1, 121_000)]);
    assert_eq!(
        s.take_missed(settled(151_000))[0].error.as_deref(),
        Some("missed_ping: no ping for 150 s (interval 30 s + grace 60 s)")
    );
}

#[test]
fn pings_move_the_deadline_without_a_heap_entry_each() {
    let mut s = Schedule::new();
    s.upsert(ServiceId(1), push_spec(10, 5), 0);
    for at in (1_000..=100_000).step_by(1_000) {
        s.apply(
            ScheduleUpdate::Pinged {
                id: ServiceId(1),
                at,
            },
            at,
        );
    }
    assert!(s.pushes.heap_len() <= 2, "{}", s.pushes.heap_len());
    // The old wake-up finds the new deadline and reports nothing.
    assert!(s.take_missed(settled(15_000)).is_empty());
    assert_eq!(s.next_due(), Some(settled(115_000)));
    assert!(s.take_missed(settled(115_000) - 1).is_empty());
    assert_eq!(missed_at(&s.take_missed(settled(115_000))), [(1, 115_000)]);
}

#[test]
fn a_ping_after_the_deadline_reports_the_miss_before_itself() {
    let mut s = Schedule::new();
    s.upsert(ServiceId(1), push_spec(10, 5), 0);
    // Deadline 15 s; the ping comes at 16 s, inside the settling time,
    // before the scheduler would have reported it.
    s.ping(ServiceId(1), 16_000);
    assert_eq!(s.next_due(), Some(Millis::MIN), "due at once");
    let missed = s.take_missed(16_001);
    assert_eq!(
        missed_at(&missed),
        [(1, 15_000)],
        "the miss, before the ping"
    );
    assert!(s.take_missed(settled(30_999)).is_empty());
    assert_eq!(missed_at(&s.take_missed(settled(31_000))), [(1, 31_000)]);
}

#[test]
fn a_ping_before_the_deadline_that_arrives_within_the_settling_time_stops_the_down() {
    let mut s = Schedule::new();
    s.upsert(ServiceId(1), push_spec(10, 5), 0);
    // Pinged at 14.9 s, the news reaches the scheduler at 16 s.
    assert!(s.take_missed(16_000).is_empty(), "still settling");
    s.ping(ServiceId(1), 14_900);
    assert!(s.take_missed(settled(15_000)).is_empty());
    assert!(s.take_missed(settled(29_899)).is_empty());
    assert_eq!(missed_at(&s.take_missed(settled(29_900))), [(1, 29_900)]);
}

#[test]
fn news_of_a_ping_later_than_the_settling_time_moves_the_next_deadline() {
    let mut s = Schedule::new();
    s.upsert(ServiceId(1), push_spec(10, 5), 0);
    assert_eq!(missed_at(&s.take_missed(settled(15_000))), [(1, 15_000)]);
    // A ping made at 14.9 s, heard of only now: no second report, and the
    // clock runs from it (not one interval after the report).
    s.ping(ServiceId(1), 14_900);
    assert!(s.take_missed(settled(25_000)).is_empty());
    assert!(s.take_missed(settled(29_899)).is_empty());
    assert_eq!(missed_at(&s.take_missed(settled(29_900))), [(1, 29_900)]);
}

#[test]
fn old_or_foreign_pings_change_nothing() {
    let mut s = Schedule::new();
    s.upsert(ServiceId(1), push_spec(10, 5), 0);
    s.upsert(ServiceId(2), spec(10), 0);
    s.ping(ServiceId(1), 8_000);
    s.ping(ServiceId(1), 3_000);
    s.ping(ServiceId(2), 3_000);
    s.ping(ServiceId(9), 3_000);
    assert_eq!(ids(&s.take_due(0)), [2]);
    assert!(s.take_missed(settled(22_999)).is_empty());
    assert_eq!(missed_at(&s.take_missed(settled(23_000))), [(1, 23_000)]);
}

#[test]
fn a_late_wake_up_reports_one_miss_for_the_latest_slot() {
    let mut s = Schedule::new();
    s.upsert(ServiceId(1), push_spec(10, 5), 0);
    let missed = s.take_missed(settled(47_000));
    assert_eq!(missed_at(&missed), [(1, 45_000)]);
    assert_eq!(s.take_skipped(), 3, "15, 25 and 35 s passed over");
}

#[test]
fn paused_push_services_have_no_deadline_and_resume_with_a_full_one() {
    let mut s = Schedule::new();
    s.upsert(ServiceId(1), push_spec(10, 5), 0);
    let mut paused = push_spec(10, 5);
    paused.paused = true;
    s.upsert(ServiceId(1), paused, 1_000);
    assert!(s.is_empty());
    assert_eq!(s.next_due(), None);
    assert!(s.take_missed(1_000_000).is_empty());
    s.upsert(ServiceId(1), push_spec(10, 5), 500_000);
    assert_eq!(s.next_due(), Some(settled(515_000)));
}

#[test]
fn a_changed_interval_or_grace_moves_the_deadline_a_rename_does_not() {
    let mut s = Schedule::new();
    s.upsert(ServiceId(1), push_spec(30, 60), 0);
    s.ping(ServiceId(1), 10_000);
    let mut renamed = push_spec(30, 60);
    renamed.name = "new".into();
    s.upsert(ServiceId(1), renamed.clone(), 20_000);
    let mut kept = Schedule::new();
    kept.upsert(ServiceId(1), push_spec(30, 60), 0);
    kept.ping(ServiceId(1), 10_000);
    kept.upsert(ServiceId(1), renamed, 20_000);
    assert!(kept.take_missed(settled(99_999)).is_empty());
    assert_eq!(
        missed_at(&kept.take_missed(settled(100_000))),
        [(1, 100_000)]
    );
    // Shorter: from the last ping.
    s.upsert(ServiceId(1), push_spec(10, 5), 20_000);
    assert_eq!(s.next_due(), Some(settled(25_000)));
    assert_eq!(missed_at(&s.take_missed(settled(25_000))), [(1, 25_000)]);
    // Longer again while silent: from the last ping, but never sooner than
    // one interval after the miss already reported.
    s.upsert(ServiceId(1), push_spec(20, 0), 30_000);
    assert!(s.take_missed(settled(44_999)).is_empty());
    assert_eq!(missed_at(&s.take_missed(settled(45_000))), [(1, 45_000)]);
}

#[test]
fn a_service_changing_kind_moves_between_rounds_and_deadlines() {
    let mut s = Schedule::new();
    s.upsert(ServiceId(1), spec(10), 0);
    s.retry(ServiceId(1), 5_000);
    s.upsert(ServiceId(1), push_spec(10, 5), 1_000);
    assert_eq!(s.retries_pending(), 0);
    assert!(s.take_due(100_000).is_empty());
    assert_eq!(s.len(), 1);
    s.upsert(ServiceId(1), spec(10), 2_000);
    assert!(s.take_missed(1_000_000).is_empty());
    assert_eq!(ids(&s.take_due(2_000)), [1]);
    s.remove(ServiceId(1));
    assert!(s.is_empty());
}

#[test]
fn a_loaded_push_service_runs_from_its_last_round_or_registration() {
    let push = |last: Option<i64>| {
        let mut svc = stored(1, "push://", last);
        svc.created_at = 1_000;
        svc.check.grace = Some(Seconds(5));
        svc
    };
    let mut s = Schedule::new();
    s.load(&push(None), 2_000);
    assert_eq!(
        s.next_due(),
        Some(settled(16_000)),
        "10 s + 5 s after registration"
    );
    let mut s = Schedule::new();
    s.load(&push(Some(50_000)), 60_000);
    assert_eq!(s.next_due(), Some(settled(65_000)));
    // Long silent while no scheduler ran: one miss for the latest slot.
    let missed = s.take_missed(settled(100_000));
    assert_eq!(missed_at(&missed), [(1, 95_000)]);
}

#[test]
fn a_reload_takes_a_logged_ping_whose_news_was_lost() {
    let mut s = Schedule::new();
    let mut svc = stored(1, "push://", None);
    svc.check.grace = Some(Seconds(5));
    s.upsert(ServiceId(1), svc.spec(), 0);
    // Reported missed at 15 s; a reload at 20 s finds the row as that
    // report left it: not a ping.
    assert_eq!(missed_at(&s.take_missed(settled(15_000))), [(1, 15_000)]);
    svc.last_scheduled_at = Some(15_000);
    let mut present = HashSet::new();
    s.reconcile(std::slice::from_ref(&svc), 20_000, &mut present);
    s.reconcile_end(&present);
    assert_eq!(s.next_due(), Some(settled(25_000)));
    // A ping at 21 s, its news lost: the next reload reads it.
    svc.last_scheduled_at = Some(21_000);
    let mut present = HashSet::new();
    s.reconcile(std::slice::from_ref(&svc), 22_000, &mut present);
    s.reconcile_end(&present);
    assert!(s.take_missed(settled(35_999)).is_empty());
    assert_eq!(missed_at(&s.take_missed(settled(36_000))), [(1, 36_000)]);
    // Deleted: gone at the next reload.
    s.reconcile_end(&HashSet::new());
    assert!(s.is_empty());
}

#[test]
fn retries_of_push_services_are_ignored() {
    let mut s = Schedule::new();
    s.upsert(ServiceId(1), push_spec(60, 0), 0);
    s.apply(
        ScheduleUpdate::Retry {
            id: ServiceId(1),
            at: 5_000,
        },
        0,
    );
    assert_eq!(s.retries_pending(), 0);
    assert!(s.take_due(10_000).is_empty());
}

#[test]
fn listed_regions_follow_services_as_they_come_change_and_go() {
    let regional = |regions: &[&str]| {
        let mut s = spec(10);
        s.regions = regions.iter().map(|r| (*r).to_owned()).collect();
        s
    };
    let mut s = Schedule::new();
    s.upsert(ServiceId(1), regional(&["eu", "us"]), 0);
    s.upsert(ServiceId(2), regional(&["us"]), 0);
    s.upsert(ServiceId(3), spec(10), 0);
    assert_eq!(s.listed_regions(), ["eu", "us"]);
    // A change of regions alone keeps the slot and moves the counts.
    s.upsert(ServiceId(1), regional(&["ap"]), 5);
    assert_eq!(s.listed_regions(), ["ap", "us"]);
    assert_eq!(s.next_due(), Some(0), "same check, same slot");
    s.remove(ServiceId(2));
    assert_eq!(s.listed_regions(), ["ap"]);
    let mut paused = regional(&["ap"]);
    paused.paused = true;
    s.upsert(ServiceId(1), paused, 5);
    assert!(s.listed_regions().is_empty());
    // A reload that no longer sees a service drops its regions too.
    s.upsert(ServiceId(4), regional(&["sa"]), 5);
    s.upsert(ServiceId(5), regional(&["sa", "af"]), 5);
    let mut present = HashSet::new();
    let mut kept = stored(4, "http://127.0.0.1:1/", None);
    kept.interval = Seconds(10);
    kept.regions = vec!["sa".into()];
    s.reconcile(&[kept], 5, &mut present);
    s.reconcile_end(&present);
    assert_eq!(s.listed_regions(), ["sa"]);
    // Turned into a push service: no rounds, no regions listed.
    s.upsert(ServiceId(4), push_spec(10, 0), 5);
    assert!(s.listed_regions().is_empty());
}
