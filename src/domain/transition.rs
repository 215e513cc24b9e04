//! The state-transition rule: what one newly logged check result does to
//! its service's status.
//!
//! Results can arrive late (a slow worker) or twice (a redelivery). A
//! repeated result is dropped before this rule by the log's uniqueness on
//! (service, scheduled_at). A result older than the one behind the current
//! status is history only. A newer one becomes the status, and is a
//! transition when the status differs. So transitions follow scheduled time
//! and each happens once, whatever the arrival order.

use super::status::Status;
use super::time::Millis;

/// What recording a new result does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Logged, but older than the status shown: the status stays.
    HistoryOnly,
    /// The result becomes the service's status; `change` is the transition
    /// it makes, if any.
    Advance {
        /// `(old, new)` when the status flips.
        change: Option<(Status, Status)>,
    },
}

/// Whether a result due at `scheduled_at` is newer than the one behind the
/// status shown (due at `current_at`), so it becomes the service's last
/// check; an older one is history only.
pub fn advances(current_at: Option<Millis>, scheduled_at: Millis) -> bool {
    current_at.is_none_or(|t| t < scheduled_at)
}

/// Judges a result due at `scheduled_at` with `status` against the service's
/// status `current`, which came from the result due at `current_at`: the
/// rule with both thresholds at 1 (see [`super::confirm`] for the general
/// one, which the recorder applies).
pub fn judge(
    current: Status,
    current_at: Option<Millis>,
    scheduled_at: Millis,
    status: Status,
) -> Effect {
    if !advances(current_at, scheduled_at) {
        return Effect::HistoryOnly;
    }
    Effect::Advance {
        change: current.changes_to(status).then_some((current, status)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::collections::HashSet;

    #[test]
    fn newer_results_advance_and_older_ones_do_not() {
        assert_eq!(
            judge(Status::Pending, None, 10, Status::Up),
            Effect::Advance {
                change: Some((Status::Pending, Status::Up))
            }
        );
        assert_eq!(
            judge(Status::Up, Some(10), 20, Status::Up),
            Effect::Advance { change: None }
        );
        assert_eq!(
            judge(Status::Up, Some(20), 10, Status::Down),
            Effect::HistoryOnly
        );
        assert_eq!(
            judge(Status::Up, Some(20), 20, Status::Down),
            Effect::HistoryOnly
        );
    }

    /// The store's recording loop, as a model: unique log, then `judge`.
    fn replay(arrivals: &[(Millis, Status)]) -> (Status, Vec<(Millis, Status, Status)>) {
        let mut logged = HashSet::new();
        let (mut status, mut at) = (Status::Pending, None);
        let mut changes = Vec::new();
        for &(t, s) in arrivals {
            if !logged.insert(t) {
                continue;
            }
            if let Effect::Advance { change } = judge(status, at, t, s) {
                if let Some((old, new)) = change {
                    changes.push((t, old, new));
                }
                status = s;
                at = Some(t);
            }
        }
        (status, changes)
    }

    fn arrivals() -> impl Strategy<Value = Vec<(Millis, Status)>> {
        // A run of checks (one status per slot: UP, DEGRADED or DOWN), then
        // delivered with duplicates and in any order.
        let outcome = prop_oneof![Just(Status::Up), Just(Status::Degraded), Just(Status::Down)];
        (
            prop::collection::vec(outcome, 1..40),
            prop::collection::vec(any::<prop::sample::Index>(), 0..80),
        )
            .prop_flat_map(|(outcomes, dup_picks)| {
                let run: Vec<(Millis, Status)> = outcomes
                    .iter()
                    .enumerate()
                    .map(|(i, s)| ((i as Millis + 1) * 1000, *s))
                    .collect();
                let mut all = run.clone();
                all.extend(dup_picks.iter().map(|ix| run[ix.index(run.len())]));
                Just(all).prop_shuffle()
            })
    }

    proptest! {
        #[test]
        fn no_order_or_duplication_yields_a_duplicate_or_backward_transition(arr in arrivals()) {
            let (_, changes) = replay(&arr);
            // Each transition happens at most once per check...
            let mut seen = HashSet::new();
            for (t, _, _) in &changes {
                prop_assert!(seen.insert(*t), "two transitions for the check due at {}", t);
            }
            // ...in scheduled order, each a real flip that starts where the
            // previous one ended.
            for pair in changes.windows(2) {
                prop_assert!(pair[0].0 < pair[1].0);
                prop_assert_eq!(pair[0].2, pair[1].1);
            }
            for (_, old, new) in &changes {
                prop_assert_ne!(old, new);
            }
        }

        #[test]
        fn in_order_delivery_reports_every_flip_and_ends_on_the_latest(arr in arrivals()) {
            let mut unique: BTreeMap<Millis, Status> = BTreeMap::new();
            for &(t, s) in &arr {
                unique.insert(t, s);
            }
            let in_order: Vec<(Millis, Status)> = unique.into_iter().collect();
            let (status, changes) = replay(&in_order);
            prop_assert_eq!(status, in_order.last().map(|x| x.1).unwrap_or(Status::Pending));
            let flips = in_order.windows(2).filter(|w| w[0].1 != w[1].1).count() + 1;
            prop_assert_eq!(changes.len(), flips);
            // Out of order, the shown status is still the newest check's.
            let (shuffled_status, _) = replay(&arr);
            prop_assert_eq!(shuffled_status, status);
        }
    }
}
