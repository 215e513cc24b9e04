//! What a batch of results changes, worked out in memory: pure, no I/O.
//!
//! Both store backends record a batch the same way: read (and, on
//! PostgreSQL, lock) the rows of the batch's services once, insert the logs,
//! then let [`plan`] decide the status updates, transitions and events, and
//! write those in a few statements. A round trip per result was what limited the
//! recorder (three queries per result: each a thread hand-off on SQLite, a
//! network round trip on PostgreSQL).

use super::service::ServiceId;
use super::transition::{self, Effect};
use super::{CheckResult, Event, Status};
use std::collections::HashMap;

/// A service as the batch's transaction read it: what a result is judged
/// against.
#[derive(Debug, Clone)]
pub struct Current {
    /// The service's name, for events.
    pub name: String,
    /// Its status.
    pub status: Status,
    /// The `scheduled_at` of the result that set the status.
    pub scheduled_at: Option<i64>,
}

/// A service's status after the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    /// The service.
    pub service_id: ServiceId,
    /// Its new status.
    pub status: Status,
    /// When the deciding check ran.
    pub checked_at: i64,
    /// Its latency.
    pub latency_ms: i64,
    /// Its due time (the compare-and-set key of later batches).
    pub scheduled_at: i64,
}

/// A transition to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The service.
    pub service_id: ServiceId,
    /// From.
    pub old: Status,
    /// To.
    pub new: Status,
    /// The deciding check's latency.
    pub latency_ms: i64,
    /// Its due time (transitions are unique on service and due time).
    pub scheduled_at: i64,
    /// When it ran.
    pub changed_at: i64,
}

/// Everything a batch writes besides its logs, and the events to publish
/// once it has committed.
#[derive(Debug, Default)]
pub struct Plan {
    /// One final status per service whose status moved forward.
    pub updates: Vec<StatusUpdate>,
    /// Transitions, in the order they happened.
    pub transitions: Vec<Transition>,
    /// `check` and `status_change` events, in result order.
    pub events: Vec<Event>,
}

/// Plans a batch. `current` holds the rows of the batch's services as read
/// inside the transaction; `logged` are the results whose logs this
/// transaction inserted (a result already logged was counted before and is
/// skipped whole; one for a deleted service has no row and is skipped).
///
/// Results of one service are applied in the order given, each judged
/// against the status the previous one left: a late result is history
/// only, and every transition is recorded once.
pub fn plan<'a>(
    mut current: HashMap<ServiceId, Current>,
    logged: impl IntoIterator<Item = &'a CheckResult>,
) -> Plan {
    let mut plan = Plan::default();
    let mut moved: HashMap<ServiceId, StatusUpdate> = HashMap::new();
    for r in logged {
        let Some(row) = current.get_mut(&r.service_id) else {
            continue;
        };
        plan.events.push(Event::Check {
            service_id: r.service_id,
            name: row.name.clone(),
            status: r.status,
            latency: r.latency_ms,
            status_code: r.status_code,
            error: r.error.clone(),
            checked_at: r.checked_at,
        });
        let Effect::Advance { change } =
            transition::judge(row.status, row.scheduled_at, r.scheduled_at, r.status)
        else {
            continue;
        };
        row.status = r.status;
        row.scheduled_at = Some(r.scheduled_at);
        moved.insert(
            r.service_id,
            StatusUpdate {
                service_id: r.service_id,
                status: r.status,
                checked_at: r.checked_at,
                latency_ms: r.latency_ms,
                scheduled_at: r.scheduled_at,
            },
        );
        if let Some((old, new)) = change {
            plan.transitions.push(Transition {
                service_id: r.service_id,
                old,
                new,
                latency_ms: r.latency_ms,
                scheduled_at: r.scheduled_at,
                changed_at: r.checked_at,
            });
            plan.events.push(Event::StatusChange {
                service_id: r.service_id,
                name: row.name.clone(),
                old_status: old,
                new_status: new,
                latency: r.latency_ms,
                changed_at: r.checked_at,
            });
        }
    }
    plan.updates = moved.into_values().collect();
    // A fixed order: PostgreSQL takes row locks in it.
    plan.updates.sort_unstable_by_key(|u| u.service_id);
    plan
}

/// The batch without repeats of a (service, scheduled_at) pair, first one
/// kept: a redelivered result may share a batch with its first delivery.
pub fn distinct(results: &[CheckResult]) -> Vec<&CheckResult> {
    let mut seen = std::collections::HashSet::with_capacity(results.len());
    results
        .iter()
        .filter(|r| seen.insert((r.service_id, r.scheduled_at)))
        .collect()
}

/// The batch's service ids, sorted, without repeats.
pub fn service_ids(results: &[CheckResult]) -> Vec<ServiceId> {
    let mut ids: Vec<ServiceId> = results.iter().map(|r| r.service_id).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

#[cfg(test)]
mod tests {
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
        }
    }

    fn rows(status: Status, at: Option<i64>) -> HashMap<ServiceId, Current> {
        HashMap::from([(
            ServiceId(1),
            Current {
                name: "api".into(),
                status,
                scheduled_at: at,
            },
        )])
    }

    #[test]
    fn results_of_one_service_are_judged_one_after_another() {
        let batch = [
            result(1, 1000, Status::Down),
            result(1, 2000, Status::Up),
            result(1, 3000, Status::Up),
        ];
        let p = plan(rows(Status::Up, Some(0)), &batch);
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
        let p = plan(rows(Status::Up, Some(5000)), &batch);
        assert!(p.updates.is_empty() && p.transitions.is_empty());
        assert_eq!(p.events.len(), 1, "its check event still goes out");
    }

    #[test]
    fn a_result_for_a_deleted_service_leaves_nothing() {
        let batch = [result(2, 1000, Status::Down)];
        let p = plan(rows(Status::Up, None), &batch);
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
}
