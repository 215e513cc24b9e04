//! The scheduler: publishes one check job per service each time it is due.
//!
//! [`Schedule`] is the pure part: a min-heap of next-due times with lazy
//! deletion (a heap entry counts while its time is its service's due time,
//! so an update or delete never searches the heap). The next due time is the previous *scheduled* time plus
//! the interval, so the phase never drifts however late a wake-up is. After a
//! stall, a service that missed several slots gets one job for the latest of
//! them, not a burst.
//!
//! Push services (`push://`) get no jobs: [`push`] keeps their missed-ping
//! deadlines, and the scheduler publishes a DOWN result itself when one
//! passes ([`Schedule::take_missed`]).
//!
//! [`run`] drives it ([`active`]): it subscribes to schedule updates before
//! loading the services, so no change between the two is lost, loads them
//! a page at a time while publishing what is due ([`load`]), reads what
//! changed every [`RECONCILE_EVERY`], and reloads everything from the
//! store if it ever falls behind on updates.
//!
//! Each service costs an [`entry::Entry`] (what its jobs need, 40 bytes
//! plus its URL), not its whole settings: at a million services that is
//! the difference between about 150 MB and 520 MB.

use crate::bus::Bus;
use crate::domain::event::ScheduleUpdate;
use crate::domain::time::Millis;
use crate::domain::{CheckJob, CheckKind, CheckResult, Service, ServiceId, ServiceSpec};
use crate::drops;
use crate::metrics::Metrics;
use crate::store::Store;
use entry::Entry;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

mod active;
mod entry;
mod load;
pub mod push;
pub mod regions;

pub use push::PING_SETTLE_MS;

/// Next-due times of every enabled service.
#[derive(Debug, Default)]
pub struct Schedule {
    /// `(due, id)`; an entry is live while the service's [`Entry::due`] is
    /// its time, so an update or delete never searches the heap.
    heap: BinaryHeap<Reverse<(Millis, ServiceId)>>,
    entries: HashMap<ServiceId, Entry>,
    /// One-off retries of unconfirmed failures, at most one per service
    /// (`retries` holds the live one; heap entries it does not match are
    /// stale). Kept apart from the rounds so a retry never moves the phase.
    retry_heap: BinaryHeap<Reverse<(Millis, ServiceId)>>,
    retries: HashMap<ServiceId, Millis>,
    /// Slots passed over by [`Schedule::take_due`] since the last
    /// [`Schedule::take_skipped`]: due, never to be checked.
    skipped: u64,
    /// Push services: deadlines, not rounds.
    pushes: push::Pushes,
    interner: entry::Interner,
    /// The regions the entries list, counted.
    listed: regions::Listed,
}

fn is_push(url: &str) -> bool {
    CheckKind::of_url(url) == CheckKind::Push
}

impl Schedule {
    /// An empty schedule.
    pub fn new() -> Self {
        Self::default()
    }

    /// Services scheduled (push services included).
    pub fn len(&self) -> usize {
        self.entries.len() + self.pushes.len()
    }

    /// Whether nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `id` is scheduled (rounds or push deadlines).
    pub fn contains(&self, id: ServiceId) -> bool {
        self.entries.contains_key(&id) || self.pushes.contains(id)
    }

    /// Every scheduled id, in order (for finding services deleted behind
    /// the bus's back).
    pub fn ids(&self) -> Vec<ServiceId> {
        let mut ids: Vec<ServiceId> = self.entries.keys().copied().collect();
        ids.extend(self.pushes.ids());
        ids.sort_unstable();
        ids
    }

    /// Sets the entry of `id` (its regions counted), due at `due`, queued
    /// when `queue`.
    fn place(&mut self, id: ServiceId, parts: &entry::Parts<'_>, due: Millis, queue: bool) {
        let entry = self.interner.entry(parts, due);
        self.listed.add(entry.regions());
        if let Some(old) = self.entries.insert(id, entry) {
            self.listed.remove(old.regions());
        }
        if queue {
            self.heap.push(Reverse((due, id)));
        }
    }

    fn drop_entry(&mut self, id: ServiceId) {
        if let Some(old) = self.entries.remove(&id) {
            self.listed.remove(old.regions());
        }
        self.retries.remove(&id);
    }

    /// Adds a one-off check of `id` at `at`, for a failure not confirmed
    /// yet. Ignored when the service is not scheduled (paused, deleted) or
    /// its next round comes no later anyway; a retry already pending keeps
    /// the earlier of the two, so a service never has two.
    pub fn retry(&mut self, id: ServiceId, at: Millis) {
        let Some(entry) = self.entries.get(&id) else {
            return;
        };
        if at >= entry.due {
            return;
        }
        if self.retries.get(&id).is_some_and(|pending| *pending <= at) {
            return;
        }
        self.retries.insert(id, at);
        self.retry_heap.push(Reverse((at, id)));
    }

    /// Retries pending (for tests and the log).
    pub fn retries_pending(&self) -> usize {
        self.retries.len()
    }

    /// Adds a service found in the store at start-up. It keeps the phase of
    /// its last check: due one interval after it, or at the next slot of
    /// that phase if that has passed (so a restart does not check every
    /// service at once). Never checked: due now. A push service's deadline
    /// runs from its last logged round, or its registration.
    pub fn load(&mut self, svc: &Service, now: Millis) {
        if svc.paused {
            return;
        }
        if is_push(&svc.url) {
            self.pushes.load(svc);
            return;
        }
        let interval = svc.interval.millis();
        let due = match svc.last_scheduled_at {
            Some(last) if interval > 0 => {
                let next = last + interval;
                if next >= now {
                    next
                } else {
                    let missed = (now - last + interval - 1) / interval;
                    last + missed * interval
                }
            }
            // Never checked, created less than an interval ago: due when
            // it was created. A reload that meets many new services at once
            // (a bus lag during a bulk registration) then keeps the phases
            // their registration spread them over, instead of making them
            // all due now and checked in one burst every interval.
            None if interval > 0 && svc.created_at > now - interval => svc.created_at.min(now),
            _ => now,
        };
        self.place(svc.id, &entry::Parts::from(svc), due, true);
    }

    /// Applies a created or changed service. A change to what is checked
    /// (URL, interval, timeout, expected statuses) or an unpause makes it due
    /// now; a rename keeps its slot; a pause removes it. A push service
    /// keeps its deadline but for a changed interval or grace, which moves
    /// it; a new or resumed one has `interval + grace` from `now`.
    pub fn upsert(&mut self, id: ServiceId, spec: ServiceSpec, now: Millis) {
        if spec.paused {
            self.remove(id);
            return;
        }
        if is_push(&spec.url) {
            self.drop_entry(id);
            self.pushes.upsert(id, spec, now);
            return;
        }
        self.upsert_rounds(id, &entry::Parts::from(&spec), now);
    }

    /// [`Schedule::upsert`] of a service that is not paused and not a push
    /// service.
    fn upsert_rounds(&mut self, id: ServiceId, parts: &entry::Parts<'_>, now: Millis) {
        self.pushes.remove(id);
        if let Some(entry) = self.entries.get(&id)
            && entry.same_check(parts)
        {
            // Same slot. Most often nothing changed at all (a reconcile
            // meeting what the bus announced): no new entry then.
            if entry.regions() != parts.regions {
                let due = entry.due;
                self.place(id, parts, due, false);
            }
            return;
        }
        // A changed check starts afresh, now: a retry of the old one is moot.
        self.retries.remove(&id);
        self.place(id, parts, now, true);
    }

    /// Brings the schedule in line with one service as the store has it:
    /// one already scheduled for the same check keeps its slot, a new one
    /// is [`Schedule::load`]ed, a changed one is due now, a paused one is
    /// dropped. A push service's round logged after everything known of it
    /// is taken for a ping whose news was lost.
    pub fn reconcile_one(&mut self, svc: &Service, now: Millis) {
        if !self.contains(svc.id) {
            self.load(svc, now);
        } else if svc.paused {
            self.remove(svc.id);
        } else if is_push(&svc.url) {
            self.drop_entry(svc.id);
            self.pushes.upsert(svc.id, svc.spec(), now);
            self.pushes.observe(svc);
        } else {
            self.upsert_rounds(svc.id, &entry::Parts::from(svc), now);
        }
    }

    /// Brings the schedule in line with the store's services, in place
    /// ([`Schedule::reconcile_one`] each). The services may come in pages:
    /// pass each to this with the same `present`, then call
    /// [`Schedule::reconcile_end`].
    ///
    /// Rebuilding from scratch instead would give a service that is due but
    /// not yet taken (late by the reload itself) its *next* slot, skipping a
    /// check, more of them the more services there are. And it would hold two
    /// schedules at once.
    pub fn reconcile<'a>(
        &mut self,
        services: impl IntoIterator<Item = &'a Service>,
        now: Millis,
        present: &mut HashSet<ServiceId>,
    ) {
        for svc in services {
            present.insert(svc.id);
            self.reconcile_one(svc, now);
        }
    }

    /// Ends a reconcile: drops every service not seen in it.
    pub fn reconcile_end(&mut self, present: &HashSet<ServiceId>) {
        self.pushes.retain(present);
        let listed = &mut self.listed;
        self.entries.retain(|id, entry| {
            let keep = present.contains(id);
            if !keep {
                listed.remove(entry.regions());
            }
            keep
        });
        let entries = &self.entries;
        self.retries.retain(|id, _| entries.contains_key(id));
        self.compact();
    }

    /// Drops stale heap entries once they outnumber the live ones, which
    /// many reloads or updates would otherwise pile up.
    fn compact(&mut self) {
        if self.heap.len() > 2 * self.entries.len() + 1024 {
            let entries = &self.entries;
            self.heap
                .retain(|Reverse((due, id))| entries.get(id).is_some_and(|e| e.due == *due));
        }
    }

    /// Drops a service; its stale heap entries are skipped when reached.
    pub fn remove(&mut self, id: ServiceId) {
        self.drop_entry(id);
        self.pushes.remove(id);
    }

    /// A push service was pinged at `at`: its deadline moves to `interval +
    /// grace` after it. A ping after the deadline in force reports that
    /// deadline missed (taken by [`Schedule::take_missed`], due at once).
    /// Ignored for a service that is not a scheduled push service, and for
    /// a ping older than one already known.
    pub fn ping(&mut self, id: ServiceId, at: Millis) {
        self.pushes.ping(id, at);
    }

    /// Takes the DOWN results of push services whose deadline passed by
    /// `now` (each reported [`PING_SETTLE_MS`] after its deadline, with the
    /// deadline as `scheduled_at`), each due again one interval later.
    pub fn take_missed(&mut self, now: Millis) -> Vec<CheckResult> {
        let missed = self.pushes.take_missed(now);
        self.skipped += std::mem::take(&mut self.pushes.skipped);
        missed
    }

    /// When the earliest service is due (a round, a retry, or a push
    /// service's deadline with its settling time), if any.
    pub fn next_due(&mut self) -> Option<Millis> {
        let deadline = self.pushes.next_due();
        let rounds = self.next_round();
        match (rounds, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// When the earliest round or retry is due, if any.
    fn next_round(&mut self) -> Option<Millis> {
        let round = loop {
            let Some(Reverse((due, id))) = self.heap.peek().copied() else {
                break None;
            };
            if self.entries.get(&id).is_some_and(|e| e.due == due) {
                break Some(due);
            }
            self.heap.pop();
        };
        let retry = loop {
            let Some(Reverse((at, id))) = self.retry_heap.peek().copied() else {
                break None;
            };
            if self.retries.get(&id) == Some(&at) {
                break Some(at);
            }
            self.retry_heap.pop();
        };
        match (round, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Every region some scheduled service lists, sorted, each once.
    pub fn listed_regions(&self) -> Vec<String> {
        self.listed.names()
    }

    /// Takes every job due at `now`, each service at most once (a regional
    /// service: once in each of its regions), and
    /// reschedules each at its next slot after `now`. A retry due by now is
    /// a job of its own, due at the retry's time, unless a round of the
    /// service is due too.
    pub fn take_due(&mut self, now: Millis) -> Vec<CheckJob> {
        let mut jobs = Vec::new();
        while let Some(Reverse((at, id))) = self.retry_heap.peek().copied() {
            if at > now {
                break;
            }
            self.retry_heap.pop();
            if self.retries.get(&id) != Some(&at) {
                continue;
            }
            self.retries.remove(&id);
            let Some(entry) = self.entries.get(&id) else {
                continue;
            };
            // A round due by now (a stall, or a changed check made due
            // now) checks it anyway, in the loop below.
            if entry.due <= now || at >= entry.due {
                continue;
            }
            regions::push_round(&mut jobs, entry.regions(), entry.job(id, at));
        }
        while let Some(Reverse((due, id))) = self.heap.peek().copied() {
            if due > now {
                break;
            }
            self.heap.pop();
            let Some(entry) = self.entries.get_mut(&id).filter(|e| e.due == due) else {
                continue;
            };
            let interval = entry.interval_ms();
            // The latest slot not after `now`: one job however many were missed.
            let missed = (now - due) / interval;
            self.skipped += missed.max(0) as u64;
            let scheduled_at = due + missed * interval;
            regions::push_round(&mut jobs, entry.regions(), entry.job(id, scheduled_at));
            entry.due = scheduled_at + interval;
            self.heap.push(Reverse((entry.due, id)));
        }
        jobs
    }

    /// Slots skipped by [`Schedule::take_due`] (a wake-up more than an
    /// interval late) since the last call. Slots missed while no scheduler
    /// ran (see [`Schedule::load`]) are not counted: nothing was due then.
    pub fn take_skipped(&mut self) -> u64 {
        std::mem::take(&mut self.skipped)
    }

    /// Applies an update from the bus.
    pub fn apply(&mut self, update: ScheduleUpdate, now: Millis) {
        match update {
            ScheduleUpdate::Upsert { id, spec } => self.upsert(id, *spec, now),
            ScheduleUpdate::Remove { id } => self.remove(id),
            ScheduleUpdate::Retry { id, at } => self.retry(id, at),
            ScheduleUpdate::Pinged { id, at } => self.ping(id, at),
        }
    }
}

/// What stops the scheduler.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The services could not be loaded.
    #[error("cannot load services: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The bus closed under it.
    #[error("bus: {0}")]
    Bus(#[from] crate::bus::BusError),
}

/// How often a standby scheduler tries to take the lead, and the leader
/// checks that it still has it.
pub const LEAD_CHECK_EVERY: Duration = Duration::from_secs(1);

/// How often the active scheduler reads what changed in the store, to
/// catch any change whose announcement was lost (an API process that could
/// not reach the bus after committing); see [`load`].
pub const RECONCILE_EVERY: Duration = Duration::from_secs(60);

/// Runs the scheduler until `shutdown` is cancelled: waits (standing by)
/// until this process holds the scheduler lock, schedules while it does, and
/// stands by again if it loses it.
pub async fn run(
    store: Store,
    bus: Bus,
    shutdown: CancellationToken,
) -> Result<(), SchedulerError> {
    run_measured(store, bus, Arc::new(Metrics::new()), shutdown).await
}

/// [`run`], noting each published job's lag in `metrics`
/// (`healthmon_schedule_lag_seconds`).
pub async fn run_measured(
    store: Store,
    bus: Bus,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<(), SchedulerError> {
    let ran = lead_or_stand_by(store, bus, &metrics, shutdown).await;
    // Drops counted in the last second would otherwise go unreported: their
    // once-a-second report may not run once the runtime stops.
    drops::flush();
    ran
}

/// The body of [`run`].
async fn lead_or_stand_by(
    store: Store,
    bus: Bus,
    metrics: &Metrics,
    shutdown: CancellationToken,
) -> Result<(), SchedulerError> {
    let mut standing_by = false;
    loop {
        let lead = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            lead = store.try_lead() => lead,
        };
        match lead {
            Ok(Some(mut lead)) => {
                tracing::info!("this process is the active scheduler");
                standing_by = false;
                active::run(&store, &bus, metrics, &shutdown, &mut lead).await?;
                if shutdown.is_cancelled() {
                    return Ok(());
                }
                tracing::warn!("lost the scheduler lock; standing by");
            }
            Ok(None) => {
                if !standing_by {
                    tracing::info!("another scheduler is active; standing by");
                    standing_by = true;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach the store to take the scheduler lock")
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(LEAD_CHECK_EVERY) => {}
        }
    }
}

/// Publishes push services' missed deadlines, as a worker publishes its
/// results (the recorder logs them, flips statuses and alerts). A bus that
/// refuses one (a full or unreachable broker) loses it: the service is
/// reported again one interval later, and blocking here would hold up
/// every other service's checks. Only a closed bus is an error.
async fn publish_missed(bus: &Bus, missed: Vec<CheckResult>) -> Result<(), SchedulerError> {
    for result in missed {
        let service_id = result.service_id.get();
        match bus.publish_result(result).await {
            Ok(()) => tracing::info!(service_id, "push service missed its deadline"),
            Err(e @ crate::bus::BusError::Closed) => return Err(e.into()),
            Err(e) => tracing::warn!(service_id, error = %e,
                "cannot publish a missed push deadline; it is reported again next interval"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod store_tests;
#[cfg(test)]
mod tests;
