//! Noise control: a status changes only once enough rounds in a row agree
//! (DESIGN.md, "Statuses and noise control").
//!
//! `failure_threshold` consecutive failing rounds turn a service DOWN and
//! `success_threshold` passing rounds bring it back. Rounds are counted in
//! the order they were due, read from the service's newest logs, never in
//! the order results arrived: a late or repeated result changes the logs
//! (or, repeated, does not), and the verdict is a function of the logs
//! alone, so no arrival order can make a change happen twice or skip one.
//! With both thresholds at 1 (the defaults) the newest round decides, as a
//! single check always did.

use super::status::Status;

/// How many rounds in a row confirm a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Failing rounds in a row that make a service DOWN (at least 1).
    pub failure: u32,
    /// Passing rounds in a row that make it UP again (at least 1).
    pub success: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            failure: 1,
            success: 1,
        }
    }
}

impl Thresholds {
    /// How many of the newest rounds a verdict needs to look at.
    pub fn window(self) -> usize {
        self.failure.max(self.success).max(1) as usize
    }
}

/// The status the newest rounds support, given the status shown now.
///
/// `newest_first` holds the outcomes (UP, DEGRADED or DOWN) of the
/// service's most recent rounds, newest first, as logged (one per due
/// time). DEGRADED is a passing round ([`Status::is_up`]): the thresholds
/// count failing and passing rounds, not the two shades of up. The status
/// moves to DOWN when the newest `failure` rounds all failed; to the newest
/// round's shade (UP or DEGRADED) when the newest `success` rounds all
/// passed, or at once when the service already passes (UP <-> DEGRADED
/// needs no confirming: nothing failed); and otherwise stays: a failure not
/// yet confirmed leaves an UP service UP (and a PENDING one PENDING).
pub fn verdict(current: Status, thresholds: Thresholds, newest_first: &[Status]) -> Status {
    let Some(&newest) = newest_first.first() else {
        return current;
    };
    let run = |passing: bool| {
        newest_first
            .iter()
            .take_while(|s| s.is_up() == passing)
            .count()
    };
    if newest.is_up() {
        if current.is_up() || run(true) >= thresholds.success.max(1) as usize {
            return newest;
        }
    } else if newest == Status::Down && run(false) >= thresholds.failure.max(1) as usize {
        return Status::Down;
    }
    current
}

/// Whether the service is in an unconfirmed failure: its newest round
/// failed but not yet enough in a row. The scheduler checks such a service
/// again after `retry_interval` instead of its interval, so a DOWN is
/// confirmed in seconds, not in `failure_threshold` whole intervals.
pub fn failure_unconfirmed(
    current: Status,
    thresholds: Thresholds,
    newest_first: &[Status],
) -> bool {
    current != Status::Down
        && newest_first.first() == Some(&Status::Down)
        && verdict(current, thresholds, newest_first) != Status::Down
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const UP: Status = Status::Up;
    const DEG: Status = Status::Degraded;
    const DOWN: Status = Status::Down;

    fn t(failure: u32, success: u32) -> Thresholds {
        Thresholds { failure, success }
    }

    #[test]
    fn with_the_default_thresholds_the_newest_round_decides() {
        let one = Thresholds::default();
        assert_eq!(verdict(Status::Pending, one, &[DOWN]), DOWN);
        assert_eq!(verdict(UP, one, &[DOWN, UP, UP]), DOWN);
        assert_eq!(verdict(DOWN, one, &[UP, DOWN]), UP);
        assert_eq!(verdict(Status::Pending, one, &[]), Status::Pending);
    }

    #[test]
    fn a_change_waits_for_its_threshold_of_rounds_in_a_row() {
        let three = t(3, 2);
        assert_eq!(verdict(UP, three, &[DOWN, DOWN, UP]), UP);
        assert!(failure_unconfirmed(UP, three, &[DOWN, DOWN, UP]));
        assert_eq!(verdict(UP, three, &[DOWN, DOWN, DOWN]), DOWN);
        assert!(!failure_unconfirmed(DOWN, three, &[DOWN, DOWN, DOWN]));
        // Back up needs two passing rounds.
        assert_eq!(verdict(DOWN, three, &[UP, DOWN, DOWN]), DOWN);
        assert_eq!(verdict(DOWN, three, &[UP, UP, DOWN]), UP);
        // A first failure of a new service does not make it DOWN either.
        assert_eq!(verdict(Status::Pending, three, &[DOWN]), Status::Pending);
        assert_eq!(verdict(Status::Pending, three, &[UP]), Status::Pending);
        assert_eq!(verdict(Status::Pending, t(3, 1), &[UP]), UP);
        assert_eq!(three.window(), 3);
    }

    #[test]
    fn degraded_is_a_passing_round_and_its_shade_shows_at_once() {
        let three = t(3, 2);
        // DEGRADED rounds bring a DOWN service back like UP ones, and the
        // newest round's shade is what shows.
        assert_eq!(verdict(DOWN, three, &[DEG, DOWN]), DOWN);
        assert_eq!(verdict(DOWN, three, &[DEG, UP, DOWN]), DEG);
        assert_eq!(verdict(DOWN, three, &[UP, DEG, DOWN]), UP);
        // They do not count towards DOWN, and they break a failing run.
        assert_eq!(verdict(UP, three, &[DOWN, DEG, DOWN]), UP);
        assert!(failure_unconfirmed(DEG, three, &[DOWN, DOWN, DEG]));
        assert_eq!(verdict(DEG, three, &[DOWN, DOWN, DOWN]), DOWN);
        // Between the shades of up nothing is confirmed: no round failed.
        assert_eq!(verdict(UP, three, &[DEG]), DEG);
        assert_eq!(verdict(DEG, three, &[UP, DOWN, DOWN]), UP);
        assert_eq!(verdict(DEG, three, &[DOWN, UP]), DEG);
        // A new service waits for its passing rounds whatever their shade.
        assert_eq!(verdict(Status::Pending, three, &[DEG]), Status::Pending);
        assert_eq!(verdict(Status::Pending, three, &[DEG, UP]), DEG);
        assert_eq!(verdict(Status::Pending, Thresholds::default(), &[DEG]), DEG);
    }

    /// The recorder as a model: results arrive in any order, some twice;
    /// the log keeps one per due time; after each arrival the verdict is
    /// taken over the newest rounds and a change is recorded when it
    /// differs from the status shown. Each change comes with the window it
    /// was decided on.
    fn replay(thresholds: Thresholds, arrivals: &[(u32, Status)]) -> Replayed {
        let mut log: BTreeMap<u32, Status> = BTreeMap::new();
        let mut status = Status::Pending;
        let mut changes = Vec::new();
        for &(due, outcome) in arrivals {
            log.entry(due).or_insert(outcome);
            let newest: Vec<Status> = log
                .values()
                .rev()
                .take(thresholds.window())
                .copied()
                .collect();
            let next = verdict(status, thresholds, &newest);
            if status.changes_to(next) {
                changes.push((status, next, newest));
                status = next;
            }
        }
        let newest = log
            .values()
            .rev()
            .take(thresholds.window())
            .copied()
            .collect();
        (status, changes, newest)
    }

    /// The final status, each change (from, to, the window it was decided
    /// on), and the final newest rounds.
    type Replayed = (Status, Vec<(Status, Status, Vec<Status>)>, Vec<Status>);

    /// `rounds` as arrivals: shuffled by `seed` (or in order), every third
    /// one repeated at the end.
    fn arrivals(rounds: &[Status], seed: Option<u64>) -> Vec<(u32, Status)> {
        let mut out: Vec<(u32, Status)> = rounds
            .iter()
            .enumerate()
            .map(|(i, s)| (i as u32, *s))
            .collect();
        if let Some(seed) = seed {
            let mut x = seed | 1;
            for i in (1..out.len()).rev() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                out.swap(i, (x % (i as u64 + 1)) as usize);
            }
        }
        let repeats: Vec<(u32, Status)> = out.iter().step_by(3).copied().collect();
        out.extend(repeats);
        out
    }

    fn rounds() -> impl Strategy<Value = Vec<Status>> {
        prop::collection::vec(prop_oneof![Just(UP), Just(DEG), Just(DOWN)], 1..40)
    }

    proptest! {
        /// In any arrival order, with repeats: changes alternate (none
        /// happens twice), each is backed by its threshold of rounds in a
        /// row by due time, and when the newest rounds are decisive the
        /// final status is theirs.
        #[test]
        fn changes_happen_once_and_only_on_rounds_in_a_row_by_due_time(
            rounds in rounds(),
            failure in 1u32..5,
            success in 1u32..4,
            seed in any::<u64>(),
        ) {
            let th = t(failure, success);
            let (status, changes, newest) = replay(th, &arrivals(&rounds, Some(seed)));
            for pair in changes.windows(2) {
                prop_assert_eq!(pair[0].1, pair[1].0);
            }
            for (from, to, window) in &changes {
                prop_assert_eq!(window.first(), Some(to), "a change shows the newest round");
                if *to == DOWN {
                    let need = failure as usize;
                    prop_assert!(window.len() >= need);
                    prop_assert!(window[..need].iter().all(|s| *s == DOWN), "DOWN on {:?}", window);
                } else if !from.is_up() {
                    // Back from DOWN or PENDING: confirmed passing rounds,
                    // of either shade. UP <-> DEGRADED needs none.
                    let need = success as usize;
                    prop_assert!(window.len() >= need);
                    prop_assert!(window[..need].iter().all(|s| s.is_up()), "{:?} on {:?}", to, window);
                }
            }
            let decisive = verdict(Status::Pending, th, &newest);
            if decisive != Status::Pending {
                prop_assert_eq!(status, decisive);
            }
        }

        /// Repeated results change nothing: in due order with repeats, the
        /// changes are those of each round once.
        #[test]
        fn repeats_do_not_count_twice(
            rounds in rounds(),
            failure in 1u32..5,
            success in 1u32..4,
        ) {
            let th = t(failure, success);
            let once: Vec<(u32, Status)> =
                rounds.iter().enumerate().map(|(i, s)| (i as u32, *s)).collect();
            let (a, changes_a, _) = replay(th, &once);
            let (b, changes_b, _) = replay(th, &arrivals(&rounds, None));
            prop_assert_eq!(a, b);
            prop_assert_eq!(changes_a, changes_b);
        }

        /// In due order, a service goes DOWN exactly when `failure` failing
        /// rounds in a row end, and never on fewer; while it passes, it
        /// shows the newest round's shade.
        #[test]
        fn in_due_order_down_needs_the_threshold(
            rounds in rounds(),
            failure in 1u32..5,
        ) {
            let th = t(failure, 1);
            let mut status = Status::Pending;
            let mut streak = 0u32;
            for (i, s) in rounds.iter().enumerate() {
                streak = if *s == DOWN { streak + 1 } else { 0 };
                let log: Vec<Status> = rounds[..=i].iter().rev().copied().collect();
                let next = verdict(status, th, &log);
                if next == DOWN && status != DOWN {
                    prop_assert!(streak >= failure, "DOWN after {} of {}", streak, failure);
                }
                if streak >= failure {
                    prop_assert_eq!(next, DOWN);
                }
                // Once up, the shown shade is the newest passing round's.
                if s.is_up() && (status.is_up() || next.is_up()) {
                    prop_assert_eq!(next, *s);
                }
                status = next;
            }
        }
    }
}
