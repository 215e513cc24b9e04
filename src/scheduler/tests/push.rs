//! Push services: deadlines instead of jobs, moved by pings.

use super::*;

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
