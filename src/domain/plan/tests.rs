//! Unit and property tests of `plan`.

use super::*;

fn result(id: i64, at: i64, status: Status) -> CheckResult {
    CheckResult {
        service_id: ServiceId(id),
        scheduled_at: at,
        status,
        latency_ms: 5,
        status_code: None,
        error: None,
        checked_at: at + 5,
        cert_expires_at: None,
        region: None,
    }
}

fn rows(status: Status, at: Option<i64>) -> HashMap<ServiceId, Current> {
    HashMap::from([(ServiceId(1), Current::new("api", status, at))])
}

fn logged(batch: &[CheckResult]) -> impl Iterator<Item = Logged<'_>> {
    batch.iter().map(|result| Logged {
        result,
        log_id: None,
    })
}

#[test]
fn results_of_one_service_are_judged_one_after_another() {
    let batch = [
        result(1, 1000, Status::Down),
        result(1, 2000, Status::Up),
        result(1, 3000, Status::Up),
    ];
    let p = plan(rows(Status::Up, Some(0)), logged(&batch), &History::new());
    let flips: Vec<_> = p.transitions.iter().map(|t| (t.old, t.new)).collect();
    assert_eq!(
        flips,
        [(Status::Up, Status::Down), (Status::Down, Status::Up)]
    );
    assert_eq!(p.updates.len(), 1, "one final status per service");
    assert_eq!(p.updates[0].scheduled_at, 3000);
    assert_eq!(p.events.len(), 5, "three checks and two changes");
}

#[test]
fn a_late_result_is_history_only() {
    let batch = [result(1, 1000, Status::Down)];
    let p = plan(
        rows(Status::Up, Some(5000)),
        logged(&batch),
        &History::new(),
    );
    assert!(p.updates.is_empty() && p.transitions.is_empty());
    assert_eq!(p.events.len(), 1, "its check event still goes out");
}

#[test]
fn a_result_for_a_deleted_service_leaves_nothing() {
    let batch = [result(2, 1000, Status::Down)];
    let p = plan(rows(Status::Up, None), logged(&batch), &History::new());
    assert!(p.updates.is_empty() && p.transitions.is_empty() && p.events.is_empty());
}

#[test]
fn repeats_in_a_batch_are_dropped_first_kept() {
    let mut again = result(1, 1000, Status::Up);
    again.latency_ms = 99;
    let batch = [
        result(1, 1000, Status::Down),
        again,
        result(1, 2000, Status::Up),
    ];
    let kept = distinct(&batch);
    assert_eq!(kept.len(), 2);
    assert_eq!(kept[0].status, Status::Down);
    assert_eq!(service_ids(&batch), [ServiceId(1)]);
}

fn noisy(failure: u32, success: u32, status: Status, at: Option<i64>) -> Current {
    let mut c = Current::new("api", status, at);
    c.thresholds = Thresholds { failure, success };
    c.retry_ms = Some(5_000);
    c.channels = vec![ChannelId(7)];
    c
}

/// The rounds `history_wanted` would have the store read, from `log`
/// (due time -> outcome).
fn history_of(
    current: &HashMap<ServiceId, Current>,
    logged: &[&CheckResult],
    log: &std::collections::BTreeMap<i64, Status>,
) -> History {
    history_wanted(current, logged.iter().copied())
        .into_iter()
        .map(|(id, n)| {
            let rounds = log
                .iter()
                .rev()
                .take(n as usize)
                .map(|(at, s)| (*at, *s))
                .collect();
            (id, rounds)
        })
        .collect()
}

#[test]
fn the_default_thresholds_read_no_history() {
    let batch = [result(1, 1000, Status::Down)];
    assert!(history_wanted(&rows(Status::Up, Some(0)), &batch).is_empty());
    let noisy_rows = HashMap::from([(ServiceId(1), noisy(3, 1, Status::Up, Some(0)))]);
    assert_eq!(
        history_wanted(&noisy_rows, &batch),
        [(ServiceId(1), 4)],
        "the window and this batch's one log"
    );
    let late = HashMap::from([(ServiceId(1), noisy(3, 1, Status::Up, Some(5000)))]);
    assert!(
        history_wanted(&late, &batch).is_empty(),
        "a late result is history only"
    );
}

#[test]
fn a_failure_waits_for_its_threshold_and_asks_for_a_retry() {
    let mut log = std::collections::BTreeMap::from([(0, Status::Up)]);
    let mut status = Status::Up;
    let mut at = Some(0);
    let mut seen = Vec::new();
    for due in [60_000, 65_000, 70_000] {
        let r = result(1, due, Status::Down);
        log.insert(due, Status::Down);
        let current = HashMap::from([(ServiceId(1), noisy(3, 1, status, at))]);
        let history = history_of(&current, &[&r], &log);
        let batch = [r];
        let p = plan(current, logged(&batch), &history);
        status = p.updates[0].status;
        at = Some(p.updates[0].scheduled_at);
        seen.push((
            p.events.len(),
            p.transitions.len(),
            p.retries.clone(),
            p.alerts.len(),
        ));
    }
    let retry = |at| {
        vec![Retry {
            service_id: ServiceId(1),
            at,
        }]
    };
    assert_eq!(
        seen,
        [
            (1, 0, retry(65_000), 0),
            (1, 0, retry(70_000), 0),
            (2, 1, vec![], 1),
        ],
        "a check event each; the change, its event and its alert only on the third"
    );
    assert_eq!(status, Status::Down);
}

#[test]
fn a_change_alerts_with_its_deciding_check_and_an_up_says_since_when() {
    // DOWN then UP in one batch: the `up` knows its DOWN from the batch.
    let batch = [result(1, 1000, Status::Down), result(1, 2000, Status::Up)];
    let current = HashMap::from([(ServiceId(1), noisy(1, 1, Status::Up, Some(0)))]);
    let kept: Vec<Logged> = batch
        .iter()
        .zip([11, 12])
        .map(|(result, id)| Logged {
            result,
            log_id: Some(id),
        })
        .collect();
    let p = plan(current, kept, &History::new());
    let events: Vec<AlertEvent> = p.alerts.iter().map(|a| a.event).collect();
    assert_eq!(events, [AlertEvent::Down, AlertEvent::Up]);
    let down = &p.alerts[0];
    assert_eq!(down.payload.service_name, "api");
    assert_eq!(down.payload.since, Some(1005));
    let check = down.payload.check.as_ref().unwrap();
    assert_eq!((check.id, check.scheduled_at), (Some(11), 1000));
    assert_eq!(p.alerts[1].payload.since, Some(1005), "down since the DOWN");
    assert!(p.since_wanted().is_empty());
    assert_eq!(p.listed_channels(), [ChannelId(7)]);

    // An UP after a DOWN recorded before: the store is asked.
    let batch = [result(1, 3000, Status::Up)];
    let current = HashMap::from([(ServiceId(1), noisy(1, 1, Status::Down, Some(2000)))]);
    let p = plan(current, logged(&batch), &History::new());
    assert_eq!(p.since_wanted(), [ServiceId(1)]);
    let rows = outbox_rows(
        &p.alerts,
        &HashSet::from([ChannelId(7)]),
        &[],
        &HashMap::from([
            ((ServiceId(1), Status::Degraded), 300),
            ((ServiceId(1), Status::Down), 500),
        ]),
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].payload.since, Some(500));
}

#[test]
fn degraded_changes_at_once_and_its_end_is_an_up_since_it_began() {
    // UP -> DEGRADED -> UP -> DOWN -> DEGRADED in one batch, thresholds
    // 2 and 2: the shades of up change at once, DOWN waits for its two
    // rounds and coming back for two passing ones of either shade.
    let batch = [
        result(1, 1000, Status::Degraded),
        result(1, 2000, Status::Up),
        result(1, 3000, Status::Down),
        result(1, 4000, Status::Down),
        result(1, 5000, Status::Up),
        result(1, 6000, Status::Degraded),
    ];
    let current = HashMap::from([(ServiceId(1), noisy(2, 2, Status::Up, Some(0)))]);
    let log = batch.iter().map(|r| (r.scheduled_at, r.status)).collect();
    let kept: Vec<&CheckResult> = batch.iter().collect();
    let history = history_of(&current, &kept, &log);
    let p = plan(current, logged(&batch), &history);
    let flips: Vec<_> = p
        .transitions
        .iter()
        .map(|t| (t.scheduled_at, t.old, t.new))
        .collect();
    assert_eq!(
        flips,
        [
            (1000, Status::Up, Status::Degraded),
            (2000, Status::Degraded, Status::Up),
            (4000, Status::Up, Status::Down),
            (6000, Status::Down, Status::Degraded),
        ]
    );
    let alerts: Vec<_> = p
        .alerts
        .iter()
        .map(|a| (a.event, a.old, a.payload.since))
        .collect();
    assert_eq!(
        alerts,
        [
            (AlertEvent::Degraded, Status::Up, Some(1005)),
            (AlertEvent::Up, Status::Degraded, Some(1005)),
            (AlertEvent::Down, Status::Up, Some(4005)),
            (AlertEvent::Up, Status::Down, Some(4005)),
        ],
        "an up says since when the status it ends began"
    );
    let changes = p
        .events
        .iter()
        .filter(|e| matches!(e, Event::StatusChange { .. }))
        .count();
    assert_eq!(changes, 4, "each change is a status_change event");
    assert_eq!(p.updates[0].status, Status::Degraded);

    // A DEGRADED -> UP after a DEGRADED recorded before: the store is
    // asked when it began, not when the service was last DOWN.
    let batch = [result(1, 7000, Status::Up)];
    let current = HashMap::from([(ServiceId(1), noisy(1, 1, Status::Degraded, Some(6000)))]);
    let p = plan(current, logged(&batch), &History::new());
    assert_eq!(p.since_wanted(), [ServiceId(1)]);
    let rows = outbox_rows(
        &p.alerts,
        &HashSet::from([ChannelId(7)]),
        &[],
        &HashMap::from([
            ((ServiceId(1), Status::Degraded), 6005),
            ((ServiceId(1), Status::Down), 500),
        ]),
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].event, rows[0].old),
        (AlertEvent::Up, Status::Degraded)
    );
    assert_eq!(rows[0].payload.since, Some(6005));
}

#[test]
fn a_first_up_alerts_no_one() {
    let batch = [result(1, 1000, Status::Up)];
    let current = HashMap::from([(ServiceId(1), noisy(1, 1, Status::Pending, None))]);
    let p = plan(current, logged(&batch), &History::new());
    assert_eq!(p.transitions.len(), 1);
    assert!(p.alerts.is_empty());
}

#[test]
fn outbox_rows_go_to_existing_own_channels_and_every_all_services_one_once() {
    let draft = AlertDraft {
        service_id: ServiceId(1),
        event: AlertEvent::Down,
        old: Status::Up,
        new: Status::Down,
        scheduled_at: 1000,
        channels: vec![ChannelId(3), ChannelId(9), ChannelId(5)],
        payload: AlertPayload::default(),
    };
    // 9 was deleted; 5 is also an all-services channel; 8 is one only.
    let existing = HashSet::from([ChannelId(3), ChannelId(5), ChannelId(8)]);
    let rows = outbox_rows(
        &[draft],
        &existing,
        &[ChannelId(5), ChannelId(8)],
        &HashMap::new(),
    );
    let to: Vec<i64> = rows.iter().map(|r| r.channel_id.get()).collect();
    assert_eq!(to, [3, 5, 8]);
    assert!(rows.iter().all(|r| r.scheduled_at == 1000));
    assert!(outbox_rows(&[], &existing, &[ChannelId(5)], &HashMap::new()).is_empty());
}

mod properties {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// The store as a model: a log unique on due time, the service row,
    /// and every transition with the log as it stood when it was decided.
    struct Model {
        log: BTreeMap<i64, Status>,
        row: Current,
        transitions: Vec<(Transition, BTreeMap<i64, Status>)>,
        alerts: usize,
    }

    impl Model {
        fn new(failure: u32, success: u32) -> Self {
            let mut row = noisy(failure, success, Status::Pending, None);
            row.retry_ms = Some(1);
            Model {
                log: BTreeMap::new(),
                row,
                transitions: Vec::new(),
                alerts: 0,
            }
        }

        fn record(&mut self, batch: &[CheckResult]) -> Plan {
            let mut kept = Vec::new();
            for r in distinct(batch) {
                if let std::collections::btree_map::Entry::Vacant(e) =
                    self.log.entry(r.scheduled_at)
                {
                    e.insert(r.status);
                    kept.push(r);
                }
            }
            let current = HashMap::from([(ServiceId(1), self.row.clone())]);
            let history = history_of(&current, &kept, &self.log);
            let p = plan(
                current,
                kept.into_iter().map(|result| Logged {
                    result,
                    log_id: None,
                }),
                &history,
            );
            if let Some(u) = p.updates.first() {
                self.row.status = u.status;
                self.row.scheduled_at = Some(u.scheduled_at);
            }
            for t in &p.transitions {
                self.transitions.push((t.clone(), self.log.clone()));
            }
            self.alerts += p.alerts.len();
            p
        }
    }

    fn outcome() -> impl Strategy<Value = Status> {
        prop_oneof![Just(Status::Up), Just(Status::Degraded), Just(Status::Down)]
    }

    /// Rounds due every second, then delivered: in some order, some twice,
    /// in batches of 1 to 4.
    fn deliveries() -> impl Strategy<Value = (Vec<Status>, Vec<CheckResult>, Vec<usize>)> {
        (
            prop::collection::vec(outcome(), 1..30),
            prop::collection::vec(any::<prop::sample::Index>(), 0..20),
            prop::collection::vec(1usize..5, 1..40),
        )
            .prop_flat_map(|(outcomes, dups, sizes)| {
                let rounds: Vec<CheckResult> = outcomes
                    .iter()
                    .enumerate()
                    .map(|(i, s)| result(1, (i as i64 + 1) * 1000, *s))
                    .collect();
                let mut all = rounds.clone();
                all.extend(dups.iter().map(|ix| rounds[ix.index(rounds.len())].clone()));
                (Just(outcomes), Just(all).prop_shuffle(), Just(sizes))
            })
    }

    fn in_batches(model: &mut Model, arrivals: &[CheckResult], sizes: &[usize]) -> Vec<Retry> {
        let mut rest = arrivals;
        let mut retries = Vec::new();
        for size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (batch, tail) = rest.split_at((*size).min(rest.len()));
            retries.extend(model.record(batch).retries);
            rest = tail;
        }
        retries
    }

    /// The changes one round at a time in due order makes: the reference.
    fn reference(th: Thresholds, rounds: &[Status]) -> Vec<(i64, Status, Status)> {
        let mut current = Status::Pending;
        let mut out = Vec::new();
        for i in 0..rounds.len() {
            let window: Vec<Status> = rounds[..=i]
                .iter()
                .rev()
                .take(th.window())
                .copied()
                .collect();
            let next = confirm::verdict(current, th, &window);
            if current.changes_to(next) {
                out.push(((i as i64 + 1) * 1000, current, next));
                current = next;
            }
        }
        out
    }

    proptest! {
        /// In any order, with repeats, in any batches: no change happens
        /// twice (each starts where the last ended, at a later round), each
        /// rests on its threshold of rounds in a row by due time as logged
        /// when it was decided, every alert belongs to a change, and a
        /// redelivery of everything changes nothing.
        #[test]
        fn no_change_twice_and_thresholds_count_rounds_by_due_time(
            (_, arrivals, sizes) in deliveries(),
            failure in 1u32..5,
            success in 1u32..4,
        ) {
            let mut m = Model::new(failure, success);
            let retries = in_batches(&mut m, &arrivals, &sizes);
            let mut from = Status::Pending;
            let mut last_at = i64::MIN;
            for (t, log) in &m.transitions {
                prop_assert_eq!(t.old, from);
                prop_assert!(t.scheduled_at > last_at);
                from = t.new;
                last_at = t.scheduled_at;
                // A change shows its deciding round; DOWN rests on
                // `failure` failing rounds, coming back from DOWN or
                // PENDING on `success` passing ones of either shade, and
                // UP <-> DEGRADED on its round alone.
                prop_assert_eq!(log.get(&t.scheduled_at), Some(&t.new));
                let need = match (t.old.is_up(), t.new) {
                    (_, Status::Down) => failure,
                    (false, _) => success,
                    (true, _) => 1,
                } as usize;
                let by_due: Vec<Status> =
                    log.range(..=t.scheduled_at).rev().take(need).map(|(_, s)| *s).collect();
                prop_assert_eq!(by_due.len(), need);
                prop_assert!(
                    by_due.iter().all(|s| s.is_up() == t.new.is_up()),
                    "{:?} on {:?}", t.new, by_due
                );
            }
            let alerting = m
                .transitions
                .iter()
                .filter(|(t, _)| outbox::event_for(t.old, t.new).is_some())
                .count();
            prop_assert_eq!(m.alerts, alerting);
            for r in &retries {
                prop_assert!(m.log.contains_key(&(r.at - 1)), "a retry follows a logged round");
            }
            let again = m.record(&arrivals);
            prop_assert!(again.transitions.is_empty() && again.events.is_empty());
            prop_assert!(again.alerts.is_empty() && again.retries.is_empty());
        }

        /// Delivered in due order, however batched and repeated, the
        /// changes are exactly those of judging one round at a time.
        #[test]
        fn batching_and_repeats_do_not_change_what_changes(
            (rounds, arrivals, sizes) in deliveries(),
            failure in 1u32..5,
            success in 1u32..4,
        ) {
            let mut sorted = arrivals.clone();
            sorted.sort_by_key(|r| r.scheduled_at);
            let mut m = Model::new(failure, success);
            in_batches(&mut m, &sorted, &sizes);
            let got: Vec<(i64, Status, Status)> = m
                .transitions
                .iter()
                .map(|(t, _)| (t.scheduled_at, t.old, t.new))
                .collect();
            let th = Thresholds { failure, success };
            prop_assert_eq!(got, reference(th, &rounds));
        }
    }
}
