use super::*;
use proptest::prelude::*;

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|r| (*r).to_owned()).collect()
}

fn set(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|r| (*r).to_owned()).collect()
}

fn results(list: &[(&str, Status)]) -> BTreeMap<String, Status> {
    list.iter().map(|(r, s)| ((*r).to_owned(), *s)).collect()
}

/// The verdict of three regions eu, us, ap with `quorum`, nothing impaired
/// or absent, previously UP.
fn three(quorum: Option<u32>, answers: &[(&str, Status)]) -> Verdict {
    verdict(&Round {
        regions: &names(&["eu", "us", "ap"]),
        quorum,
        results: &results(answers),
        impaired: &BTreeSet::new(),
        absent: &BTreeSet::new(),
        previous: Status::Up,
    })
}

use Status::{Degraded, Down, Up};

#[test]
fn the_default_quorum_is_a_majority_and_never_more_than_the_regions() {
    assert_eq!(effective(0, None), 0);
    assert_eq!(effective(1, None), 1);
    assert_eq!(effective(2, None), 2);
    assert_eq!(effective(3, None), 2);
    assert_eq!(effective(4, None), 3);
    assert_eq!(effective(3, Some(1)), 1);
    assert_eq!(effective(2, Some(5)), 2, "a stale quorum is capped");
}

#[test]
fn one_region_of_three_failing_is_not_down_with_quorum_two() {
    let v = three(Some(2), &[("eu", Up), ("us", Down), ("ap", Up)]);
    assert_eq!(v.status, Up);
    assert!(v.complete && v.settled && !v.kept_previous);
    assert_eq!((v.counted, v.failed, v.quorum), (3, 1, 2));
}

#[test]
fn two_regions_of_three_failing_are_down_as_soon_as_they_answer() {
    let v = three(None, &[("us", Down), ("ap", Down)]);
    assert_eq!(v.status, Down);
    assert!(!v.complete, "eu has not answered");
    assert!(v.settled, "eu's answer cannot undo a failed quorum");
}

#[test]
fn degraded_needs_a_quorum_of_regions_that_are_not_up() {
    assert_eq!(
        three(None, &[("eu", Degraded), ("us", Up), ("ap", Up)]).status,
        Up
    );
    assert_eq!(
        three(None, &[("eu", Degraded), ("us", Down), ("ap", Up)]).status,
        Degraded
    );
    assert_eq!(
        three(None, &[("eu", Degraded), ("us", Degraded), ("ap", Up)]).status,
        Degraded
    );
}

#[test]
fn fewer_answers_than_the_quorum_keep_the_previous_status() {
    let v = verdict(&Round {
        regions: &names(&["eu", "us", "ap"]),
        quorum: Some(2),
        results: &results(&[("eu", Down)]),
        impaired: &BTreeSet::new(),
        absent: &set(&["us", "ap"]),
        previous: Up,
    });
    assert_eq!(v.status, Up);
    assert!(v.kept_previous, "one vote is fewer than the quorum");
    assert!(
        v.complete,
        "nothing is awaited from a region with no worker"
    );
    assert!(!v.settled, "its worker may come back in time");
}

#[test]
fn an_impaired_regions_vote_is_set_aside_and_not_awaited() {
    let v = verdict(&Round {
        regions: &names(&["eu", "us", "ap"]),
        quorum: Some(2),
        results: &results(&[("eu", Down), ("us", Down), ("ap", Up)]),
        impaired: &set(&["us"]),
        absent: &BTreeSet::new(),
        previous: Up,
    });
    assert_eq!(v.status, Up, "eu alone is not a quorum");
    assert_eq!(v.counted, 2);
    let v = verdict(&Round {
        regions: &names(&["eu", "us"]),
        quorum: None,
        results: &results(&[("eu", Up)]),
        impaired: &set(&["us"]),
        absent: &BTreeSet::new(),
        previous: Down,
    });
    assert!(v.complete, "nothing is awaited from an impaired region");
    assert_eq!(
        v.status, Down,
        "one counted vote is fewer than the quorum of 2"
    );
}

#[test]
fn an_unlisted_region_and_a_pending_entry_do_not_vote() {
    let v = three(Some(1), &[("mars", Down), ("eu", Status::Pending)]);
    assert_eq!(v.counted, 0);
    assert!(!v.complete);
    assert_eq!(v.status, Up, "kept");
}

#[test]
fn a_round_that_may_still_change_is_not_settled() {
    // UP so far, but the one awaited answer could make it a failed quorum.
    let v = three(None, &[("eu", Up), ("us", Down)]);
    assert_eq!(v.status, Up);
    assert!(!v.settled && !v.complete);
    // UP whatever ap says: two regions saw it up.
    let v = three(None, &[("eu", Up), ("us", Up)]);
    assert!(v.settled && !v.complete);
}

/// A random regional round: regions r0..rn, the quorum, each region's
/// answer (or none), which are impaired and which absent, the status
/// before, and an order of arrival.
#[derive(Debug, Clone)]
struct Case {
    regions: Vec<String>,
    quorum: Option<u32>,
    answers: Vec<(String, Status)>,
    impaired: BTreeSet<String>,
    absent: BTreeSet<String>,
    previous: Status,
}

fn status() -> impl Strategy<Value = Status> {
    prop_oneof![Just(Up), Just(Degraded), Just(Down)]
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..=7).prop_flat_map(|n| {
        (
            proptest::option::of(1..=n as u32),
            proptest::collection::vec(
                (proptest::option::of(status()), any::<bool>(), any::<bool>()),
                n,
            ),
            prop_oneof![Just(Status::Pending), status()],
            // An order of arrival.
            Just((0..n).collect::<Vec<usize>>()).prop_shuffle(),
        )
            .prop_map(move |(quorum, per_region, previous, order)| {
                let regions: Vec<String> = (0..n).map(|i| format!("r{i}")).collect();
                let mut answers = Vec::new();
                let mut impaired = BTreeSet::new();
                let mut absent = BTreeSet::new();
                for i in order {
                    let (answer, is_impaired, is_absent) = per_region[i];
                    if let Some(s) = answer {
                        answers.push((regions[i].clone(), s));
                    }
                    if is_impaired {
                        impaired.insert(regions[i].clone());
                    }
                    // A region whose worker answered may still be listed
                    // absent (it died after): its answer counts anyway.
                    if is_absent {
                        absent.insert(regions[i].clone());
                    }
                }
                Case {
                    regions,
                    quorum,
                    answers,
                    impaired,
                    absent,
                    previous,
                }
            })
    })
}

fn judge(c: &Case, results: &BTreeMap<String, Status>) -> Verdict {
    verdict(&Round {
        regions: &c.regions,
        quorum: c.quorum,
        results,
        impaired: &c.impaired,
        absent: &c.absent,
        previous: c.previous,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Gathering the answers in any order gives the same verdict, and one
    /// settled on the way is the final one (so closing a round early is
    /// safe).
    #[test]
    fn the_verdict_does_not_depend_on_arrival_order(c in case()) {
        let mut sorted = c.answers.clone();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let in_order = judge(&c, &sorted.into_iter().collect());
        let mut gathered = BTreeMap::new();
        let mut settled_early = None;
        for (region, s) in &c.answers {
            gathered.insert(region.clone(), *s);
            let v = judge(&c, &gathered);
            if v.settled && settled_early.is_none() {
                settled_early = Some(v.status);
            }
        }
        let arrived = judge(&c, &gathered);
        prop_assert_eq!(arrived, in_order);
        if let Some(early) = settled_early {
            prop_assert_eq!(early, arrived.status);
        }
    }

    /// DOWN exactly when a quorum of counted regions failed; too few
    /// counted answers keep the previous status.
    #[test]
    fn never_down_with_fewer_than_quorum_failures(c in case()) {
        let v = judge(&c, &c.answers.iter().cloned().collect());
        let q = effective(c.regions.len(), c.quorum);
        let counted: Vec<Status> = c
            .answers
            .iter()
            .filter(|(r, _)| !c.impaired.contains(r))
            .map(|(_, s)| *s)
            .collect();
        let down = counted.iter().filter(|s| **s == Down).count() as u32;
        prop_assert_eq!(v.failed, down);
        if down >= q {
            prop_assert_eq!(v.status, Down);
        } else if (counted.len() as u32) < q {
            prop_assert!(v.kept_previous);
            prop_assert_eq!(v.status, c.previous);
        } else {
            prop_assert!(v.status != Down);
        }
    }

    /// Whatever an impaired region answers, the verdict is the same.
    #[test]
    fn impaired_votes_never_count(c in case(), other in status()) {
        let results: BTreeMap<String, Status> = c.answers.iter().cloned().collect();
        let mut changed = results.clone();
        for region in &c.impaired {
            changed.insert(region.clone(), other);
        }
        prop_assert_eq!(judge(&c, &results), judge(&c, &changed));
    }
}
