//! The scheduler: publishes one check job per service each time it is due.
//!
//! [`Schedule`] is the pure part: a min-heap of next-due times with lazy
//! deletion (a generation number per service, so an update or delete never
//! searches the heap). The next due time is the previous *scheduled* time plus
//! the interval, so the phase never drifts however late a wake-up is. After a
//! stall, a service that missed several slots gets one job for the latest of
//! them, not a burst.
//!
//! Push services (`push://`) get no jobs: [`push`] keeps their missed-ping
//! deadlines, and the scheduler publishes a DOWN result itself when one
//! passes ([`Schedule::take_missed`]).
//!
//! [`run`] drives it: it subscribes to schedule updates before loading the
//! services, so no change between the two is lost, and reloads everything
//! from the store if it ever falls behind on updates.

use crate::bus::{Bus, ScheduleSignal};
use crate::domain::event::ScheduleUpdate;
use crate::domain::time::{Millis, now_ms};
use crate::domain::{CheckJob, CheckKind, CheckResult, Service, ServiceId, ServiceSpec};
use crate::drops::{self, DropCause};
use crate::metrics::Metrics;
use crate::store::Store;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

pub mod push;
pub mod regions;

pub use push::PING_SETTLE_MS;

#[derive(Debug)]
struct Entry {
    spec: ServiceSpec,
    generation: u64,
    /// The next normal round's due time.
    due: Millis,
}

/// Next-due times of every enabled service.
#[derive(Debug, Default)]
pub struct Schedule {
    heap: BinaryHeap<Reverse<(Millis, ServiceId, u64)>>,
    entries: HashMap<ServiceId, Entry>,
    /// One-off retries of unconfirmed failures, at most one per service
    /// (`retries` holds the live one; heap entries it does not match are
    /// stale). Kept apart from the rounds so a retry never moves the phase.
    retry_heap: BinaryHeap<Reverse<(Millis, ServiceId)>>,
    retries: HashMap<ServiceId, Millis>,
    next_generation: u64,
    /// Slots passed over by [`Schedule::take_due`] since the last
    /// [`Schedule::take_skipped`]: due, never to be checked.
    skipped: u64,
    /// Push services: deadlines, not rounds.
    pushes: push::Pushes,
}

fn is_push(spec: &ServiceSpec) -> bool {
    CheckKind::of_url(&spec.url) == CheckKind::Push
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

    fn push(&mut self, id: ServiceId, spec: ServiceSpec, due: Millis) {
        self.next_generation += 1;
        let generation = self.next_generation;
        self.entries.insert(
            id,
            Entry {
                spec,
                generation,
                due,
            },
        );
        self.heap.push(Reverse((due, id, generation)));
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
        if is_push(&svc.spec()) {
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
            _ => now,
        };
        self.push(svc.id, svc.spec(), due);
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
        if is_push(&spec) {
            self.entries.remove(&id);
            self.retries.remove(&id);
            self.pushes.upsert(id, spec, now);
            return;
        }
        self.pushes.remove(id);
        if let Some(entry) = self.entries.get_mut(&id) {
            let same_check = entry.spec.url == spec.url
                && entry.spec.interval == spec.interval
                && entry.spec.timeout == spec.timeout
                && entry.spec.expected_statuses == spec.expected_statuses
                && entry.spec.check == spec.check;
            if same_check {
                entry.spec = spec;
                return;
            }
        }
        // A changed check starts afresh, now: a retry of the old one is moot.
        self.retries.remove(&id);
        self.push(id, spec, now);
    }

    /// Brings the schedule in line with the store's services, in place:
    /// a service already scheduled for the same check keeps its slot, a new
    /// one is [`Schedule::load`]ed, a changed one is due now, and one gone
    /// or paused is dropped. The services may come in pages: pass each to
    /// this with the same `present`, then call [`Schedule::reconcile_end`].
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
            if self.entries.contains_key(&svc.id) || self.pushes.contains(svc.id) {
                self.upsert(svc.id, svc.spec(), now);
                self.pushes.observe(svc);
            } else {
                self.load(svc, now);
            }
        }
    }

    /// Ends a reconcile: drops every service not seen in it.
    pub fn reconcile_end(&mut self, present: &HashSet<ServiceId>) {
        self.pushes.retain(present);
        self.entries.retain(|id, _| present.contains(id));
        let entries = &self.entries;
        self.retries.retain(|id, _| entries.contains_key(id));
        // Stale heap entries would otherwise pile up over many reloads.
        if self.heap.len() > 2 * self.entries.len() + 1024 {
            let entries = &self.entries;
            self.heap
                .retain(|Reverse((_, id, g))| entries.get(id).is_some_and(|e| e.generation == *g));
        }
    }

    /// Drops a service; its stale heap entries are skipped when reached.
    pub fn remove(&mut self, id: ServiceId) {
        self.entries.remove(&id);
        self.retries.remove(&id);
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
            let Some(Reverse((due, id, generation))) = self.heap.peek().copied() else {
                break None;
            };
            if self
                .entries
                .get(&id)
                .is_some_and(|e| e.generation == generation)
            {
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
        let mut all: Vec<String> = self
            .entries
            .values()
            .flat_map(|e| e.spec.regions.iter().cloned())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        all.sort_unstable();
        all
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
            let interval = entry.spec.interval.millis().max(1);
            regions::push_round(
                &mut jobs,
                &entry.spec.regions,
                CheckJob {
                    service_id: id,
                    url: entry.spec.url.clone(),
                    timeout_ms: entry.spec.timeout.millis(),
                    interval_ms: interval,
                    expected_statuses: entry.spec.expected_statuses.clone(),
                    scheduled_at: at,
                    check: entry.spec.check.clone(),
                    region: None,
                },
            );
        }
        while let Some(Reverse((due, id, generation))) = self.heap.peek().copied() {
            if due > now {
                break;
            }
            self.heap.pop();
            let Some(entry) = self.entries.get(&id).filter(|e| e.generation == generation) else {
                continue;
            };
            let interval = entry.spec.interval.millis().max(1);
            // The latest slot not after `now`: one job however many were missed.
            let missed = (now - due) / interval;
            self.skipped += missed.max(0) as u64;
            let scheduled_at = due + missed * interval;
            regions::push_round(
                &mut jobs,
                &entry.spec.regions,
                CheckJob {
                    service_id: id,
                    url: entry.spec.url.clone(),
                    timeout_ms: entry.spec.timeout.millis(),
                    interval_ms: interval,
                    expected_statuses: entry.spec.expected_statuses.clone(),
                    scheduled_at,
                    check: entry.spec.check.clone(),
                    region: None,
                },
            );
            self.heap
                .push(Reverse((scheduled_at + interval, id, generation)));
            if let Some(entry) = self.entries.get_mut(&id) {
                entry.due = scheduled_at + interval;
            }
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

/// Services read per query when (re)loading: loading them all at once
/// every reconcile left RSS the allocator kept (BENCHMARKS.md).
const LOAD_PAGE: i64 = 2000;

/// Loads (or, given a schedule, reconciles) every service from the store,
/// a page at a time. A failure leaves the schedule as it was, but for
/// pages already applied.
async fn load_all(store: &Store, schedule: &mut Schedule) -> Result<(), SchedulerError> {
    let mut present = HashSet::with_capacity(schedule.len());
    let mut after = 0;
    loop {
        let page = store.services_after(after, LOAD_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.id.get();
        schedule.reconcile(&page, now_ms(), &mut present);
        if (page.len() as i64) < LOAD_PAGE {
            break;
        }
    }
    schedule.reconcile_end(&present);
    tracing::info!(services = schedule.len(), "schedule loaded");
    Ok(())
}

/// How often a standby scheduler tries to take the lead, and the leader
/// checks that it still has it.
pub const LEAD_CHECK_EVERY: Duration = Duration::from_secs(1);

/// How often the active scheduler reloads everything from the store, to
/// catch any change whose announcement was lost (an API process that could
/// not reach the bus after committing).
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
                run_active(&store, &bus, metrics, &shutdown, &mut lead).await?;
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

/// Schedules while `lead` holds; returns when it is lost or at shutdown.
async fn run_active(
    store: &Store,
    bus: &Bus,
    metrics: &Metrics,
    shutdown: &CancellationToken,
    lead: &mut crate::store::Leadership,
) -> Result<(), SchedulerError> {
    let mut updates = bus.subscribe_schedule();
    let mut schedule = Schedule::new();
    load_all(store, &mut schedule).await?;
    let mut check_lead = tokio::time::interval(LEAD_CHECK_EVERY);
    let mut reconcile = tokio::time::interval_at(
        tokio::time::Instant::now() + RECONCILE_EVERY,
        RECONCILE_EVERY,
    );
    // Set when updates may have been missed; the reload is retried until the
    // store answers, scheduling what is known meanwhile.
    let mut stale = false;
    let mut beat = tokio::time::interval(crate::bus::beat::BEAT_EVERY);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let wait = match schedule.next_due() {
            Some(due) => Duration::from_millis(due.saturating_sub(now_ms()).max(0) as u64),
            // Nothing to do: wake up only for updates (or shutdown).
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return Ok(()),
            _ = beat.tick() => regions::beat(bus, schedule.listed_regions()).await,
            _ = reconcile.tick() => {
                stale = true;
                check_lead.reset_immediately();
            }
            _ = check_lead.tick() => {
                if !lead.still_held().await {
                    // The lock's connection is gone. Take it again if we can;
                    // stand down if another scheduler has it; and while the
                    // database is unreachable keep scheduling: no one else can
                    // take over then, and checks must not stop for a database
                    // outage (their results wait on the bus). The old
                    // session goes first, or it would refuse us our lock.
                    lead.release();
                    match store.try_lead().await {
                        Ok(Some(renewed)) => {
                            *lead = renewed;
                            tracing::info!("took the scheduler lock again");
                        }
                        Ok(None) => return Ok(()),
                        Err(e) => tracing::warn!(error = %e,
                            "database unreachable; scheduling on until it is back"),
                    }
                }
                if stale {
                    match load_all(store, &mut schedule).await {
                        Ok(()) => stale = false,
                        Err(e) => tracing::warn!(error = %e, "cannot reload the schedule yet"),
                    }
                }
            }
            update = updates.recv() => match update {
                Ok(ScheduleSignal::Resync) => {
                    tracing::info!("schedule updates may have been missed; reloading from the store");
                    stale = true;
                    check_lead.reset_immediately();
                }
                Ok(ScheduleSignal::Update(update)) => schedule.apply(update, now_ms()),
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "schedule updates lagged; reloading from the store");
                    stale = true;
                    check_lead.reset_immediately();
                }
                Err(RecvError::Closed) => return Ok(()),
            },
            () = tokio::time::sleep(wait) => {
                let now = now_ms();
                let missed = schedule.take_missed(now);
                if !missed.is_empty() {
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        sent = publish_missed(bus, missed) => sent?,
                    }
                }
                let due = schedule.take_due(now);
                drops::record(DropCause::SchedulerLate, schedule.take_skipped());
                let count = due.len();
                let due_at: Vec<Millis> = due.iter().map(|j| j.scheduled_at).collect();
                let sent = tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    sent = bus.publish_jobs(due) => sent,
                };
                match sent {
                    Ok(()) => metrics.jobs_published(&due_at, now_ms()),
                    // The broker is away (a bounded wait ran out): these
                    // checks are skipped, not retried; every service is
                    // already rescheduled at its next slot, which is what a
                    // late job would have duplicated anyway.
                    Err(crate::bus::BusError::Unavailable) => {
                        tracing::warn!(due = count, "the bus is unavailable; skipping due checks");
                        // Counted whole: a failed batch may have had some
                        // jobs accepted before the broker went, so this is
                        // an upper bound.
                        drops::record(DropCause::BusUnavailable, count as u64);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
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
mod tests;
