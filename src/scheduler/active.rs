//! The active scheduler's loop: publishes due jobs, applies the bus's
//! schedule updates, and reads the store a page at a time
//! ([`super::load`]) in between, due jobs first, so that neither a restart
//! nor a reconcile holds up checks for longer than one page.

use super::load::Load;
use super::{LEAD_CHECK_EVERY, RECONCILE_EVERY, Schedule, SchedulerError, publish_missed, regions};
use crate::bus::{Bus, ScheduleSignal};
use crate::domain::event::ScheduleUpdate;
use crate::domain::time::{Millis, now_ms};
use crate::drops::{self, DropCause};
use crate::metrics::Metrics;
use crate::store::Store;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

/// The schedule and what feeds it.
pub(super) struct Active<'a> {
    store: &'a Store,
    bus: &'a Bus,
    metrics: &'a Metrics,
    pub(super) schedule: Schedule,
    /// The pass over the store under way, if any.
    load: Option<Load>,
    /// Where the next changes pass starts; `None` until a full pass is done.
    since: Option<Millis>,
    /// Updates may have been missed: a full pass is due (retried until the
    /// store answers, scheduling what is known meanwhile).
    stale: bool,
}

/// Whether the loop goes on.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Flow {
    Go,
    Stop,
}

impl<'a> Active<'a> {
    /// An empty schedule, with a full pass to make.
    pub(super) fn new(store: &'a Store, bus: &'a Bus, metrics: &'a Metrics) -> Self {
        let schedule = Schedule::new();
        Self {
            store,
            bus,
            metrics,
            load: Some(Load::full(&schedule)),
            schedule,
            since: None,
            stale: false,
        }
    }

    /// Whether a pass over the store is under way.
    pub(super) fn loading(&self) -> bool {
        self.load.is_some()
    }

    /// Starts a full pass, afresh even if one is under way: its pages read
    /// so far may predate the updates missed.
    fn start_full(&mut self) {
        self.load = Some(Load::full(&self.schedule));
        self.stale = false;
    }

    /// The reconcile timer: a changes pass, unless a pass is under way.
    fn reconcile(&mut self) {
        if self.load.is_some() {
            return;
        }
        match self.since {
            Some(since) => self.load = Some(Load::changes(since)),
            None => self.stale = true,
        }
    }

    /// Reads and applies the next page of the pass under way.
    pub(super) async fn step_load(&mut self) -> Result<(), SchedulerError> {
        let Some(load) = self.load.as_mut() else {
            return Ok(());
        };
        let done = load.step(self.store, &mut self.schedule).await?;
        if done {
            self.since = Some(load.next_since());
            self.load = None;
        }
        Ok(())
    }

    /// [`Active::step_load`], a failure logged: a full pass is retried
    /// from the start, a changes pass at the next reconcile (from the same
    /// moment, so nothing is skipped).
    async fn step_load_or_log(&mut self) {
        if let Err(e) = self.step_load().await {
            let full = self.load.take().is_some_and(|l| l.is_full());
            if full {
                self.stale = true;
            }
            tracing::warn!(error = %e, full, "cannot read the schedule from the store yet");
        }
    }

    /// Applies a schedule update from the bus.
    pub(super) fn apply(&mut self, update: ScheduleUpdate) {
        if let (ScheduleUpdate::Upsert { id, .. }, Some(load)) = (&update, self.load.as_mut()) {
            load.noticed(*id);
        }
        self.schedule.apply(update, now_ms());
    }

    /// Publishes what is due by now: push services' missed deadlines, then
    /// the rounds and retries.
    pub(super) async fn publish_due(
        &mut self,
        shutdown: &CancellationToken,
    ) -> Result<Flow, SchedulerError> {
        let now = now_ms();
        let missed = self.schedule.take_missed(now);
        if !missed.is_empty() {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(Flow::Stop),
                sent = publish_missed(self.bus, missed) => sent?,
            }
        }
        let due = self.schedule.take_due(now);
        drops::record(DropCause::SchedulerLate, self.schedule.take_skipped());
        if due.is_empty() {
            return Ok(Flow::Go);
        }
        let count = due.len();
        let due_at: Vec<Millis> = due.iter().map(|j| j.scheduled_at).collect();
        let sent = tokio::select! {
            () = shutdown.cancelled() => return Ok(Flow::Stop),
            sent = self.bus.publish_jobs(due) => sent,
        };
        match sent {
            Ok(()) => self.metrics.jobs_published(&due_at, now_ms()),
            // The broker is away (a bounded wait ran out): these checks are
            // skipped, not retried; every service is already rescheduled at
            // its next slot, which is what a late job would have duplicated
            // anyway.
            Err(crate::bus::BusError::Unavailable) => {
                tracing::warn!(due = count, "the bus is unavailable; skipping due checks");
                // Counted whole: a failed batch may have had some jobs
                // accepted before the broker went, so this is an upper bound.
                drops::record(DropCause::BusUnavailable, count as u64);
            }
            Err(e) => return Err(e.into()),
        }
        Ok(Flow::Go)
    }
}

/// Schedules while `lead` holds; returns when it is lost or at shutdown.
pub(super) async fn run(
    store: &Store,
    bus: &Bus,
    metrics: &Metrics,
    shutdown: &CancellationToken,
    lead: &mut crate::store::Leadership,
) -> Result<(), SchedulerError> {
    // Subscribed before the first page is read, so no change between the
    // two is lost.
    let mut updates = bus.subscribe_schedule();
    let mut active = Active::new(store, bus, metrics);
    // A store that cannot be read at all stops the scheduler, as before;
    // later pages are retried.
    active.step_load().await?;
    let mut check_lead = tokio::time::interval(LEAD_CHECK_EVERY);
    let mut reconcile = tokio::time::interval_at(
        tokio::time::Instant::now() + RECONCILE_EVERY,
        RECONCILE_EVERY,
    );
    let mut beat = tokio::time::interval(crate::bus::beat::BEAT_EVERY);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let now = now_ms();
        let next = active.schedule.next_due();
        let due_now = next.is_some_and(|due| due <= now);
        let loading = active.loading();
        let wait = match next {
            Some(due) => Duration::from_millis(due.saturating_sub(now).max(0) as u64),
            // Nothing to do: wake up only for updates (or shutdown).
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return Ok(()),
            // Due jobs before anything else, a page of the store included.
            () = std::future::ready(()), if due_now => {
                if active.publish_due(shutdown).await? == Flow::Stop {
                    return Ok(());
                }
            }
            _ = beat.tick() => regions::beat(bus, active.schedule.listed_regions()).await,
            _ = reconcile.tick() => active.reconcile(),
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
                if active.stale {
                    active.start_full();
                }
            }
            update = updates.recv() => match update {
                Ok(ScheduleSignal::Resync) => {
                    tracing::info!("schedule updates may have been missed; reloading from the store");
                    active.stale = true;
                    check_lead.reset_immediately();
                }
                Ok(ScheduleSignal::Update(update)) => active.apply(update),
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "schedule updates lagged; reloading from the store");
                    active.stale = true;
                    check_lead.reset_immediately();
                }
                Err(RecvError::Closed) => return Ok(()),
            },
            // One page, then round the loop again: due jobs come first.
            () = std::future::ready(()), if loading => active.step_load_or_log().await,
            () = tokio::time::sleep(wait) => {
                if active.publish_due(shutdown).await? == Flow::Stop {
                    return Ok(());
                }
            }
        }
    }
}
