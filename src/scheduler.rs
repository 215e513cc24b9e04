//! The scheduler: publishes one check job per service each time it is due.
//!
//! [`Schedule`] is the pure part: a min-heap of next-due times with lazy
//! deletion (a generation number per service, so an update or delete never
//! searches the heap). The next due time is the previous *scheduled* time plus
//! the interval, so the phase never drifts however late a wake-up is. After a
//! stall, a service that missed several slots gets one job for the latest of
//! them, not a burst.
//!
//! [`run`] drives it: it subscribes to schedule updates before loading the
//! services, so no change between the two is lost, and reloads everything
//! from the store if it ever falls behind on updates.

use crate::bus::{Bus, ScheduleSignal};
use crate::domain::event::ScheduleUpdate;
use crate::domain::time::{Millis, now_ms};
use crate::domain::{CheckJob, Service, ServiceId, ServiceSpec};
use crate::drops::{self, DropCause};
use crate::store::Store;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

#[derive(Debug)]
struct Entry {
    spec: ServiceSpec,
    generation: u64,
}

/// Next-due times of every enabled service.
#[derive(Debug, Default)]
pub struct Schedule {
    heap: BinaryHeap<Reverse<(Millis, ServiceId, u64)>>,
    entries: HashMap<ServiceId, Entry>,
    next_generation: u64,
    /// Slots passed over by [`Schedule::take_due`] since the last
    /// [`Schedule::take_skipped`]: due, never to be checked.
    skipped: u64,
}

impl Schedule {
    /// An empty schedule.
    pub fn new() -> Self {
        Self::default()
    }

    /// Services scheduled.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn push(&mut self, id: ServiceId, spec: ServiceSpec, due: Millis) {
        self.next_generation += 1;
        let generation = self.next_generation;
        self.entries.insert(id, Entry { spec, generation });
        self.heap.push(Reverse((due, id, generation)));
    }

    /// Adds a service found in the store at start-up. It keeps the phase of
    /// its last check: due one interval after it, or at the next slot of
    /// that phase if that has passed (so a restart does not check every
    /// service at once). Never checked: due now.
    pub fn load(&mut self, svc: &Service, now: Millis) {
        if svc.paused {
            return;
        }
        let interval = svc.interval * 1000;
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
    /// now; a rename keeps its slot; a pause removes it.
    pub fn upsert(&mut self, id: ServiceId, spec: ServiceSpec, now: Millis) {
        if spec.paused {
            self.remove(id);
            return;
        }
        if let Some(entry) = self.entries.get_mut(&id) {
            let same_check = entry.spec.url == spec.url
                && entry.spec.interval == spec.interval
                && entry.spec.timeout == spec.timeout
                && entry.spec.expected_statuses == spec.expected_statuses;
            if same_check {
                entry.spec = spec;
                return;
            }
        }
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
            if self.entries.contains_key(&svc.id) {
                self.upsert(svc.id, svc.spec(), now);
            } else {
                self.load(svc, now);
            }
        }
    }

    /// Ends a reconcile: drops every service not seen in it.
    pub fn reconcile_end(&mut self, present: &HashSet<ServiceId>) {
        self.entries.retain(|id, _| present.contains(id));
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
    }

    /// When the earliest service is due, if any.
    pub fn next_due(&mut self) -> Option<Millis> {
        while let Some(Reverse((due, id, generation))) = self.heap.peek().copied() {
            if self
                .entries
                .get(&id)
                .is_some_and(|e| e.generation == generation)
            {
                return Some(due);
            }
            self.heap.pop();
        }
        None
    }

    /// Takes every job due at `now`, each service at most once, and
    /// reschedules each at its next slot after `now`.
    pub fn take_due(&mut self, now: Millis) -> Vec<CheckJob> {
        let mut jobs = Vec::new();
        while let Some(Reverse((due, id, generation))) = self.heap.peek().copied() {
            if due > now {
                break;
            }
            self.heap.pop();
            let Some(entry) = self.entries.get(&id).filter(|e| e.generation == generation) else {
                continue;
            };
            let interval = (entry.spec.interval * 1000).max(1);
            // The latest slot not after `now`: one job however many were missed.
            let missed = (now - due) / interval;
            self.skipped += missed.max(0) as u64;
            let scheduled_at = due + missed * interval;
            jobs.push(CheckJob {
                service_id: id,
                url: entry.spec.url.clone(),
                timeout_ms: entry.spec.timeout * 1000,
                interval_ms: interval,
                expected_statuses: entry.spec.expected_statuses.clone(),
                scheduled_at,
            });
            self.heap
                .push(Reverse((scheduled_at + interval, id, generation)));
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
            ScheduleUpdate::Upsert { id, spec } => self.upsert(id, spec, now),
            ScheduleUpdate::Remove { id } => self.remove(id),
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
    let ran = lead_or_stand_by(store, bus, shutdown).await;
    // Drops counted in the last second would otherwise go unreported: their
    // once-a-second report may not run once the runtime stops.
    drops::flush();
    ran
}

/// The body of [`run`].
async fn lead_or_stand_by(
    store: Store,
    bus: Bus,
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
                run_active(&store, &bus, &shutdown, &mut lead).await?;
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
    loop {
        let wait = match schedule.next_due() {
            Some(due) => Duration::from_millis(due.saturating_sub(now_ms()).max(0) as u64),
            // Nothing to do: wake up only for updates (or shutdown).
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return Ok(()),
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
                    // outage (their results wait on the bus).
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
                let due = schedule.take_due(now_ms());
                drops::record(DropCause::SchedulerLate, schedule.take_skipped());
                let count = due.len();
                let sent = tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    sent = bus.publish_jobs(due) => sent,
                };
                match sent {
                    Ok(()) => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(interval: i64) -> ServiceSpec {
        ServiceSpec {
            name: "s".into(),
            url: "http://127.0.0.1:1/".into(),
            interval,
            timeout: 1,
            paused: false,
            expected_statuses: None,
        }
    }

    /// A service as the store returns it, every 10 s.
    fn stored(id: i64, url: &str, last_scheduled_at: Option<i64>) -> Service {
        Service {
            id: ServiceId(id),
            name: "s".into(),
            url: url.into(),
            interval: 10,
            timeout: 1,
            expected_statuses: None,
            last_status: crate::domain::Status::Up,
            last_check: None,
            last_latency_ms: None,
            paused: false,
            created_at: 0,
            updated_at: 0,
            last_scheduled_at,
            version: 0,
        }
    }

    fn ids(jobs: &[CheckJob]) -> Vec<i64> {
        jobs.iter().map(|j| j.service_id.get()).collect()
    }

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
        sp.timeout = 20;
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
}
