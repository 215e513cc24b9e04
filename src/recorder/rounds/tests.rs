use super::*;
use proptest::prelude::*;

fn rule(regions: &[&str], quorum: u32) -> Rule {
    Rule {
        regions: regions.iter().map(|r| (*r).to_owned()).collect(),
        quorum,
        timeout_ms: 1_000,
    }
}

fn vote(region: &str, status: Status) -> CheckResult {
    CheckResult {
        service_id: ServiceId(1),
        scheduled_at: 10_000,
        status,
        latency_ms: 5,
        status_code: Some(if status == Status::Down { 503 } else { 200 }),
        error: (status == Status::Down).then(|| format!("http_status: 503 from {region}")),
        checked_at: 10_005,
        cert_expires_at: None,
        region: Some(region.to_owned()),
    }
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

#[test]
fn one_failing_region_of_three_is_not_a_down_round() {
    let r = rule(&["a", "b", "c"], 2);
    let votes = [
        vote("a", Status::Up),
        vote("b", Status::Down),
        vote("c", Status::Up),
    ];
    let v = verdict(&r, &votes, &set(&[]), 20_000).unwrap();
    assert_eq!(v.status, Status::Up);
    assert_eq!(v.region, None);
}

#[test]
fn two_failing_regions_of_three_make_it_down_and_say_which() {
    let r = rule(&["a", "b", "c"], 2);
    let votes = [
        vote("a", Status::Down),
        vote("b", Status::Down),
        vote("c", Status::Up),
    ];
    let v = verdict(&r, &votes, &set(&[]), 20_000).unwrap();
    assert_eq!(v.status, Status::Down);
    let error = v.error.unwrap();
    assert!(error.starts_with("http_status: "), "{error}");
    assert!(error.contains("2 of 3 regions failed: a, b"), "{error}");
}

#[test]
fn an_impaired_regions_votes_are_set_aside() {
    let r = rule(&["a", "b", "c"], 2);
    let votes = [
        vote("a", Status::Down),
        vote("b", Status::Down),
        vote("c", Status::Up),
    ];
    let v = verdict(&r, &votes, &set(&["b"]), 20_000).unwrap();
    assert_eq!(v.status, Status::Up);
}

#[test]
fn fewer_answers_than_the_quorum_keep_the_status() {
    let r = rule(&["a", "b", "c"], 2);
    assert_eq!(
        verdict(&r, &[vote("a", Status::Down)], &set(&[]), 20_000),
        None
    );
}

#[test]
fn a_round_closes_when_every_live_region_voted_and_a_dead_one_is_not_awaited() {
    let r = rule(&["a", "b", "c"], 2);
    let mut rounds = Rounds::default();
    let live = set(&["a", "b"]);
    rounds.vote(vote("a", Status::Up), &r, 1);
    assert!(rounds.close(2, &live, &set(&[]), false).is_empty());
    rounds.vote(vote("b", Status::Down), &r, 3);
    let closed = rounds.close(4, &live, &set(&[]), false);
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].verdict.as_ref().unwrap().status, Status::Up);
    assert_eq!(closed[0].last_vote_at, 3);
    // A late vote is logged by the store, and changes nothing here.
    rounds.vote(vote("c", Status::Down), &r, 5);
    assert!(rounds.is_empty());
}

#[test]
fn a_round_missing_a_region_closes_at_timeout_plus_grace() {
    let r = rule(&["a", "b", "c"], 2);
    let mut rounds = Rounds::default();
    let live = set(&["a", "b", "c"]);
    rounds.vote(vote("a", Status::Down), &r, 1);
    rounds.vote(vote("b", Status::Down), &r, 2);
    let deadline = 10_000 + 1_000 + GRACE_MS;
    assert_eq!(rounds.next_deadline(), Some(deadline));
    assert!(
        rounds
            .close(deadline - 1, &live, &set(&[]), false)
            .is_empty()
    );
    let closed = rounds.close(deadline, &live, &set(&[]), false);
    assert_eq!(closed[0].verdict.as_ref().unwrap().status, Status::Down);
    assert_eq!(rounds.next_deadline(), None);
}

#[test]
fn a_repeated_vote_counts_once() {
    let r = rule(&["a", "b", "c"], 2);
    let mut rounds = Rounds::default();
    rounds.vote(vote("b", Status::Down), &r, 1);
    rounds.vote(vote("b", Status::Down), &r, 2);
    let closed = rounds.close(0, &set(&[]), &set(&[]), true);
    assert_eq!(closed[0].votes.len(), 1);
    assert_eq!(closed[0].verdict, None);
}

proptest! {
    /// Whatever order the regions answer in, the verdict is the same, and
    /// it is DOWN exactly when `quorum` counted regions failed.
    #[test]
    fn the_verdict_does_not_depend_on_the_order_of_votes(
        outcomes in proptest::collection::vec(0u8..3, 1..6),
        quorum in 1u32..6,
        impaired_mask in 0u8..64,
        seed in any::<u64>(),
    ) {
        let names: Vec<String> = (0..outcomes.len()).map(|i| format!("r{i}")).collect();
        let quorum = quorum.min(outcomes.len() as u32);
        let r = Rule { regions: names.iter().cloned().collect(), quorum, timeout_ms: 1_000 };
        let impaired: BTreeSet<String> = names
            .iter()
            .enumerate()
            .filter(|(i, _)| impaired_mask & (1 << i) != 0)
            .map(|(_, n)| n.clone())
            .collect();
        let statuses = [Status::Up, Status::Degraded, Status::Down];
        let votes: Vec<CheckResult> = names
            .iter()
            .zip(&outcomes)
            .map(|(n, o)| vote(n, statuses[*o as usize]))
            .collect();
        let mut shuffled = votes.clone();
        fastrand::Rng::with_seed(seed).shuffle(&mut shuffled);
        let mut a = Rounds::default();
        let mut b = Rounds::default();
        for v in &votes { a.vote(v.clone(), &r, 1); }
        for v in &shuffled { b.vote(v.clone(), &r, 1); }
        let va = a.close(2, &BTreeSet::new(), &impaired, true).remove(0).verdict;
        let vb = b.close(2, &BTreeSet::new(), &impaired, true).remove(0).verdict;
        prop_assert_eq!(va.as_ref().map(|v| v.status), vb.as_ref().map(|v| v.status));
        let counted: Vec<usize> = (0..names.len()).filter(|i| !impaired.contains(&names[*i])).collect();
        let down = counted.iter().filter(|i| outcomes[**i] == 2).count();
        let is_down = va.as_ref().is_some_and(|v| v.status == Status::Down);
        prop_assert_eq!(is_down, down >= quorum as usize);
        prop_assert_eq!(va.is_none(), down < quorum as usize && counted.len() < quorum as usize);
    }
}

#[test]
fn a_round_missing_votes_at_its_deadline_is_completed_from_the_store() {
    // This recorder took over the votes queue after `b` and `c` had voted
    // to the one before: it holds only `a`'s (UP) vote when the round
    // closes, so alone it would keep the status.
    let mut rounds = Rounds::default();
    let r = rule(&["a", "b", "c"], 2);
    rounds.vote(vote("a", Status::Up), &r, 1);
    let deadline = 10_000 + 1_000 + GRACE_MS;
    let mut closed = rounds.close(deadline, &set(&["a", "b", "c"]), &set(&[]), false);
    let round = &mut closed[0];
    assert!(round.lacks_votes());
    assert_eq!(round.key(), Some((ServiceId(1), 10_000)));
    assert_eq!(
        round.verdict, None,
        "one answer of quorum 2 decides nothing"
    );
    // The store has all three, `a`'s included, and a vote of a region the
    // service no longer lists, which does not count.
    let logged = vec![
        vote("a", Status::Up),
        vote("b", Status::Down),
        vote("c", Status::Down),
        vote("z", Status::Down),
    ];
    round.complete_with(logged, &set(&[]), deadline);
    assert!(!round.lacks_votes());
    assert_eq!(round.votes.len(), 3);
    let verdict = round.verdict.as_ref().unwrap();
    assert_eq!(verdict.status, Status::Down);
    assert_eq!(verdict.region, None);
}

#[test]
fn a_round_waits_for_its_deadline_on_the_votes_clock_not_the_wall_clock() {
    // The recorder is 30 s behind: the round's deadline passed on the wall
    // clock, but its other votes, checked in time, are still queued.
    let mut rounds = Rounds::default();
    let r = rule(&["a", "b", "c"], 2);
    rounds.vote(vote("a", Status::Down), &r, 1);
    let deadline = 10_000 + 1_000 + GRACE_MS;
    let wall = deadline + 30_000;
    let live = set(&["a", "b", "c"]);
    assert!(
        rounds
            .close_at(deadline - 1, wall, &live, &set(&[]), false)
            .is_empty(),
        "closed on the wall clock with two votes still queued"
    );
    rounds.vote(vote("b", Status::Down), &r, 2);
    rounds.vote(vote("c", Status::Up), &r, 3);
    let closed = rounds.close_at(deadline - 1, wall, &live, &set(&[]), false);
    assert_eq!(closed.len(), 1, "complete once every vote is in");
    let verdict = closed[0].verdict.as_ref().unwrap();
    assert_eq!(verdict.status, Status::Down);
    assert_eq!(verdict.checked_at, wall, "the verdict is timed when judged");
}
