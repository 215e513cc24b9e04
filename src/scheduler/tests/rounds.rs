//! Rounds: due order without drift, stalls, pauses and changes, loads and
//! reloads, and what a job carries.

use super::*;

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
