//! What a batch of results changes, worked out in memory: pure, no I/O.
//!
//! Both store backends record a batch the same way: read (and, on
//! PostgreSQL, lock) the rows of the batch's services once, insert the logs,
//! read the newest rounds of the services whose thresholds need them, then
//! let [`plan`] decide the status updates, transitions, alerts and events,
//! and write those in a few statements. A round trip per result was what
//! limited the recorder (three queries per result: each a thread hand-off
//! on SQLite, a network round trip on PostgreSQL).

use super::channel::ChannelId;
use super::confirm::{self, Thresholds};
use super::outbox::{self, AlertEvent, AlertPayload, CheckSnapshot};
use super::service::ServiceId;
use super::time::Millis;
use super::transition;
use super::{CheckResult, Event, Status};
use std::collections::{HashMap, HashSet};

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
    /// Rounds in a row that change the status.
    pub thresholds: Thresholds,
    /// Milliseconds to a retry while a failure is unconfirmed; `None` when
    /// that is not sooner than the next round anyway.
    pub retry_ms: Option<i64>,
    /// Its own alert channels (some may no longer exist).
    pub channels: Vec<ChannelId>,
    /// The regions that check it each round (empty: not regional).
    pub regions: Vec<String>,
    /// Regions whose failure makes a round DOWN, as set (`None`: a
    /// majority; see [`crate::domain::quorum::effective`]).
    pub quorum: Option<u32>,
}

impl Current {
    /// A service with the default thresholds and no channels, as tests
    /// and callers without noise control need it.
    pub fn new(name: impl Into<String>, status: Status, scheduled_at: Option<i64>) -> Self {
        Current {
            name: name.into(),
            status,
            scheduled_at,
            thresholds: Thresholds::default(),
            retry_ms: None,
            channels: Vec::new(),
            regions: Vec::new(),
            quorum: None,
        }
    }

    /// The region a result of this service is logged under: its worker's
    /// for a regional service (one log per region and round), none for one
    /// without regions (one log per round, whichever region's worker ran
    /// it, so a redelivery to another region is still a repeat).
    pub fn log_region<'r>(&self, result: &'r CheckResult) -> Option<&'r str> {
        if self.regions.is_empty() {
            None
        } else {
            result.region.as_deref()
        }
    }

    /// Whether a verdict needs more than the result at hand: with both
    /// thresholds at 1 the newest round decides alone, and the store skips
    /// reading earlier rounds (the default path costs nothing more).
    pub fn needs_history(&self) -> bool {
        self.thresholds != Thresholds::default()
    }
}

/// A result whose log this transaction inserted, with the log's id when
/// the insert returned it.
#[derive(Debug, Clone, Copy)]
pub struct Logged<'a> {
    /// The result.
    pub result: &'a CheckResult,
    /// Its health log's id.
    pub log_id: Option<i64>,
}

/// Each service's newest rounds as logged, newest first by due time:
/// `(scheduled_at, status)`. Read after the batch's logs were inserted, so
/// they are among them.
pub type History = HashMap<ServiceId, Vec<(Millis, Status)>>;

/// The services whose newest rounds [`plan`] needs, with how many: the
/// threshold window plus this batch's logs of the service (a result is
/// judged on the rounds due up to it, and only this batch's logs can be
/// newer than it). Services on the default thresholds are left out.
pub fn history_wanted<'a>(
    current: &HashMap<ServiceId, Current>,
    logged: impl IntoIterator<Item = &'a CheckResult>,
) -> Vec<(ServiceId, i64)> {
    let mut wanted: HashMap<ServiceId, i64> = HashMap::new();
    for r in logged {
        let Some(row) = current.get(&r.service_id) else {
            continue;
        };
        // A region's vote is history of its region only (see `plan`).
        if row.log_region(r).is_none()
            && row.needs_history()
            && transition::advances(row.scheduled_at, r.scheduled_at)
        {
            *wanted
                .entry(r.service_id)
                .or_insert(row.thresholds.window() as i64) += 1;
        }
    }
    let mut out: Vec<(ServiceId, i64)> = wanted.into_iter().collect();
    out.sort_unstable();
    out
}

/// A service's status after the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    /// The service.
    pub service_id: ServiceId,
    /// Its new status.
    pub status: Status,
    /// When the newest check ran.
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

/// An alert a transition makes, before its channels are known: the store
/// reads the channels only for a batch that has some.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertDraft {
    /// The service.
    pub service_id: ServiceId,
    /// Why.
    pub event: AlertEvent,
    /// Status before.
    pub old: Status,
    /// Status after.
    pub new: Status,
    /// The deciding check's due time: with service, channel and event the
    /// outbox row's unique key.
    pub scheduled_at: Millis,
    /// The service's own channels, as listed (some may be gone).
    pub channels: Vec<ChannelId>,
    /// The message's frozen part. `since` is unset for an `up` whose DOWN
    /// (or DEGRADED) began before this batch: the store reads it (see
    /// [`Plan::since_wanted`]).
    pub payload: AlertPayload,
}

/// A service to check again soon: its failure is not confirmed yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// The service.
    pub service_id: ServiceId,
    /// When: the failing round's due time plus the retry interval.
    pub at: Millis,
}

/// Everything a batch writes besides its logs, and the events to publish
/// once it has committed.
#[derive(Debug, Default)]
pub struct Plan {
    /// One final status per service whose status moved forward.
    pub updates: Vec<StatusUpdate>,
    /// Transitions, in the order they happened.
    pub transitions: Vec<Transition>,
    /// Alerts the transitions make, in the same order.
    pub alerts: Vec<AlertDraft>,
    /// `check` and `status_change` events, in result order.
    pub events: Vec<Event>,
    /// Services in an unconfirmed failure, to check again early.
    pub retries: Vec<Retry>,
}

impl Plan {
    /// The services whose `up` alerts need to know when the status they
    /// end (DOWN, or DEGRADED) began, from the transitions recorded before
    /// this batch.
    pub fn since_wanted(&self) -> Vec<ServiceId> {
        let mut ids: Vec<ServiceId> = self
            .alerts
            .iter()
            .filter(|a| a.payload.since.is_none())
            .map(|a| a.service_id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Every channel id the alerts' services list, for the store to see
    /// which still exist.
    pub fn listed_channels(&self) -> Vec<ChannelId> {
        let mut ids: Vec<ChannelId> = self
            .alerts
            .iter()
            .flat_map(|a| a.channels.iter().copied())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// Plans a batch. `current` holds the rows of the batch's services as read
/// inside the transaction; `logged` are the results whose logs this
/// transaction inserted (a result already logged was counted before and is
/// skipped whole; one for a deleted service has no row and is skipped);
/// `history` the newest rounds [`history_wanted`] asked for.
///
/// Results of one service are applied in the order given. A result older
/// than the one behind the status shown is history only; a newer one
/// becomes the service's last check, and its status is the verdict of the
/// thresholds over the rounds due up to it ([`confirm::verdict`]), so
/// rounds count by due time, not arrival (DEGRADED is a passing round; the
/// shown shade of up follows the newest one). A transition (and its
/// `status_change` event and alerts) happens only when the verdict differs
/// from the status shown, so each is recorded once.
pub fn plan<'a>(
    mut current: HashMap<ServiceId, Current>,
    logged: impl IntoIterator<Item = Logged<'a>>,
    history: &History,
) -> Plan {
    let mut plan = Plan::default();
    let mut moved: HashMap<ServiceId, StatusUpdate> = HashMap::new();
    // Per service: whether its newest advancing round left a failure
    // unconfirmed, and that round's due time.
    let mut unconfirmed: HashMap<ServiceId, (bool, Millis)> = HashMap::new();
    // When a service's newest transition within this batch happened: the
    // start of the status a later `up` ends (DOWN or DEGRADED).
    let mut entered_at: HashMap<ServiceId, Millis> = HashMap::new();
    for Logged { result: r, log_id } in logged {
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
            region: row.log_region(r).map(str::to_owned),
        });
        // A region's vote is logged and shown, but the status follows the
        // round's verdict (logged without a region; `crate::recorder`),
        // never a single region.
        if row.log_region(r).is_some() || !transition::advances(row.scheduled_at, r.scheduled_at) {
            continue;
        }
        let window: Vec<Status> = match history.get(&r.service_id) {
            Some(rounds) if row.needs_history() => rounds
                .iter()
                .filter(|(at, _)| *at <= r.scheduled_at)
                .take(row.thresholds.window())
                .map(|(_, s)| *s)
                .collect(),
            // The default thresholds need only this round. Without its
            // history a service's thresholds still hold: one round is
            // never a run of two.
            _ => vec![r.status],
        };
        let old = row.status;
        let new = confirm::verdict(old, row.thresholds, &window);
        unconfirmed.insert(
            r.service_id,
            (
                confirm::failure_unconfirmed(new, row.thresholds, &window),
                r.scheduled_at,
            ),
        );
        row.status = new;
        row.scheduled_at = Some(r.scheduled_at);
        moved.insert(
            r.service_id,
            StatusUpdate {
                service_id: r.service_id,
                status: new,
                checked_at: r.checked_at,
                latency_ms: r.latency_ms,
                scheduled_at: r.scheduled_at,
            },
        );
        if !old.changes_to(new) {
            continue;
        }
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
        if let Some(event) = outbox::event_for(old, new) {
            let since = match event {
                AlertEvent::Up => entered_at.get(&r.service_id).copied(),
                _ => Some(r.checked_at),
            };
            plan.alerts.push(AlertDraft {
                service_id: r.service_id,
                event,
                old,
                new,
                scheduled_at: r.scheduled_at,
                channels: row.channels.clone(),
                payload: AlertPayload {
                    service_name: row.name.clone(),
                    since,
                    check: Some(snapshot(r, log_id)),
                    region: None,
                },
            });
        }
        entered_at.insert(r.service_id, r.checked_at);
    }
    plan.updates = moved.into_values().collect();
    // A fixed order: PostgreSQL takes row locks in it.
    plan.updates.sort_unstable_by_key(|u| u.service_id);
    plan.retries = unconfirmed
        .into_iter()
        .filter_map(|(service_id, (pending, at))| {
            let retry_ms = current.get(&service_id)?.retry_ms?;
            pending.then_some(Retry {
                service_id,
                at: at + retry_ms,
            })
        })
        .collect();
    plan.retries.sort_unstable_by_key(|r| r.service_id);
    plan
}

fn snapshot(r: &CheckResult, log_id: Option<i64>) -> CheckSnapshot {
    CheckSnapshot {
        id: log_id,
        status: r.status,
        latency_ms: r.latency_ms,
        status_code: r.status_code,
        error: r.error.clone(),
        checked_at: r.checked_at,
        scheduled_at: r.scheduled_at,
    }
}

/// One outbox row to insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// The service.
    pub service_id: ServiceId,
    /// The channel it goes to.
    pub channel_id: ChannelId,
    /// Why.
    pub event: AlertEvent,
    /// Status before.
    pub old: Status,
    /// Status after.
    pub new: Status,
    /// The deciding check's due time.
    pub scheduled_at: Millis,
    /// The frozen message part.
    pub payload: AlertPayload,
}

/// When each service last entered a status, as recorded before a batch:
/// `(service, status)` to the newest transition's time into it. A status
/// lasts until the next transition, so the newest change into the status
/// an `up` leaves is when that status began.
pub type EnteredSince = HashMap<(ServiceId, Status), Millis>;

/// Which outbox rows the alerts make: one per alert and channel, the
/// channels being the service's own that still exist (`existing`) and
/// every `all_services` channel, each once. `since` fills in when the
/// status an `up` ends (DOWN or DEGRADED) began, for the `up` alerts that
/// did not see it in the batch.
pub fn outbox_rows(
    alerts: &[AlertDraft],
    existing: &HashSet<ChannelId>,
    all_services: &[ChannelId],
    since: &EnteredSince,
) -> Vec<OutboxRow> {
    let mut rows = Vec::new();
    for a in alerts {
        let mut payload = a.payload.clone();
        if payload.since.is_none() {
            payload.since = since.get(&(a.service_id, a.old)).copied();
        }
        let mut to: Vec<ChannelId> = a
            .channels
            .iter()
            .copied()
            .filter(|c| existing.contains(c))
            .chain(all_services.iter().copied())
            .collect();
        to.sort_unstable();
        to.dedup();
        rows.extend(to.into_iter().map(|channel_id| OutboxRow {
            service_id: a.service_id,
            channel_id,
            event: a.event,
            old: a.old,
            new: a.new,
            scheduled_at: a.scheduled_at,
            payload: payload.clone(),
        }));
    }
    rows
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

/// The batch's results for services that exist, without repeats of a log
/// (service, scheduled_at and [`Current::log_region`]), first one kept:
/// what the store inserts.
pub fn fresh<'a>(
    results: &'a [CheckResult],
    current: &HashMap<ServiceId, Current>,
) -> Vec<&'a CheckResult> {
    let mut seen = std::collections::HashSet::with_capacity(results.len());
    results
        .iter()
        .filter(|r| {
            current
                .get(&r.service_id)
                .is_some_and(|c| seen.insert((r.service_id, r.scheduled_at, c.log_region(r))))
        })
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
mod tests;
