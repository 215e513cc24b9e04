//! The alert sender: delivers the outbox (DESIGN.md, "Alerting").
//!
//! One sender runs per fleet (an advisory lock, like the scheduler's, so a
//! standby takes over when the holder dies). It polls the outbox for due
//! alerts, oldest first, in bounded batches, and delivers them with bounded
//! concurrency. An alert's fate is written only after its attempt ends, so
//! a sender killed mid-delivery leaves it pending and the next one sends it
//! again: delivery is at least once, and `X-Healthmon-Delivery` (the alert's
//! id, stable across retries) lets a receiver drop a repeat.
//!
//! - Success (2xx): `sent`. A failure that may pass (5xx, 408, 429, network,
//!   timeout) is retried after 1 s, 2 s, 4 s ... (at most 10 min, ±20 %
//!   jitter, a longer `Retry-After` honoured) until `alerts.max_age_s` after
//!   its first attempt (time held or waiting does not count), then
//!   `failed`. A 4xx other than 408/429 (a wrong
//!   token or URL), a redirect, or a blocked address fails at once: retrying
//!   would not help, and `last_error` says what to fix.
//! - Alerts of one service to one channel (a lane) go out one at a time in
//!   the order they were written: while one is being retried, later ones
//!   wait for it, so an `up` never arrives before the `down` or `degraded`
//!   it ends, nor a reminder before its `down`. Lanes are independent, and
//!   a pass looks at each channel on its own: one channel has at most half
//!   of `alerts.concurrency` deliveries in flight, and one whose receiver
//!   timed out or refused the connection only one until it answers again,
//!   so a receiver that hangs holds up its own alerts, never another
//!   channel's. A delivery starts only when a permit is free; what cannot
//!   start waits in the outbox for the next pass.
//! - Maintenance: an alert for a service inside a window is held (the
//!   `held_until` column) until the window ends, looked at again at least
//!   every [`HOLD_RECHECK`] and at once when a window is changed or
//!   deleted. Then a `down` whose service recovered meanwhile is failed
//!   ([`RECOVERED_IN_MAINTENANCE`]), and so is the `up` that goes with it;
//!   one still DOWN is delivered. A `degraded` is held alike: failed when
//!   its service is no longer DEGRADED at the window's end, or an `up`
//!   followed it ([`plan::NO_LONGER_DEGRADED`]), the `up` with it; delivered
//!   when it still is. Reminders inside a window are not sent.
//! - Reminders: every `remind_every_s` of a channel while a service stays
//!   DOWN, counted from when it went DOWN (see [`plan::reminder_slot`]).
//! - Storms: see [`storm`].

mod gate;
mod job;
mod lanes;
pub mod plan;
mod reminders;
pub mod storm;

pub use plan::{RECOVERED_IN_MAINTENANCE, backoff, reminder_slot};

use lanes::{ChannelState, Held, Lanes, STORM_LANE, lane, unreachable};

use super::channel::ChannelConfig;
use super::deliver::{Deliverer, Outcome};
use super::mail::MailSettings;
use super::render::{Delivery, render};
use super::{Alert, AlertEvent};
use crate::config::AlertsSettings;
use crate::domain::outbox::AlertPayload;
use crate::domain::time::{Millis, now_ms, to_rfc3339};
use crate::domain::{Service, Status};
use crate::store::{
    ChannelRecord, Leadership, NewOutboxRow, OpenWindows, OutboxRow, Store, StoreError,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Most alerts of one channel read from the outbox in one pass (a storm's
/// group is at most this big).
pub const BATCH: i64 = 500;

/// Most channels looked at in one pass; the rest wait for the next.
pub const CHANNELS_PER_PASS: i64 = 1000;

/// How often a standby sender tries to take over, and the active one checks
/// that it still holds the lock.
pub const LEAD_CHECK_EVERY: Duration = Duration::from_secs(1);

/// How often DOWN services are looked at for reminders due.
pub const REMINDER_SCAN_EVERY: Duration = Duration::from_secs(2);

/// How long deliveries in flight at shutdown may take to finish; those
/// still running then are dropped and stay pending for the next sender.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Shortest time between two grouped messages to one channel in a storm,
/// so a storm that goes on is a message a second, not one per poll. A
/// second is what Slack's incoming webhooks allow, and it keeps a grouped
/// alert within 2 s of its change (the alerting benchmark's goal; at 5 s the
/// p99 was 5 s).
pub const STORM_GAP: Duration = Duration::from_secs(1);

/// Longest an alert is held by a maintenance window before the sender
/// looks again: a window shortened or deleted by another process (whose
/// change does not wake this one) releases its alerts within this.
pub const HOLD_RECHECK: Duration = Duration::from_secs(60);

/// How soon after a delivery ends a pass runs when the last one left due
/// alerts for want of a free permit or lane.
const FREED_PASS_DELAY: Duration = Duration::from_millis(10);

/// Rounds [`Sender::pass`] makes at most while alerts are left over.
const PASS_ROUNDS: usize = 50;

/// Rung when this process commits outbox rows, so its sender (if it is the
/// active one) starts at once instead of at its next poll. Alerts written
/// by other processes of a fleet wait for the poll (`alerts.poll_ms`).
static OUTBOX_WRITTEN: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Tells this process's sender that alerts were just committed.
pub fn outbox_written() {
    OUTBOX_WRITTEN.notify_one();
}

/// Logs what became of a finished delivery task.
fn report(done: Result<Result<(), StoreError>, tokio::task::JoinError>) {
    match done {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot record an alert's delivery"),
        Err(e) if e.is_cancelled() => {}
        Err(e) => tracing::error!(error = %e, "an alert delivery task failed"),
    }
}

/// Why the sender stopped.
#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    /// The store failed in a way that needs a restart.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The sender: the outbox, a way to deliver, and its limits.
#[derive(Clone)]
pub struct Sender {
    store: Store,
    deliverer: Deliverer,
    /// How mail goes out (SMTP through the same address policy).
    mail: Arc<MailSettings>,
    settings: AlertsSettings,
    /// When each channel last got a grouped storm message.
    storms: Arc<Mutex<HashMap<i64, Millis>>>,
    /// Lanes and channels with deliveries under way.
    lanes: Arc<Mutex<Lanes>>,
    /// Deliveries in flight at once (`alerts.concurrency`).
    permits: Arc<Semaphore>,
    /// Up to when reminder slots have been written (by this process):
    /// a scan writes only slots that fell due since, so a long outage is
    /// not one upsert per (service, channel) every scan.
    reminded_to: Arc<Mutex<Option<Millis>>>,
    /// Where delivery attempts are counted (`healthmon_alerts_total`).
    metrics: Arc<crate::metrics::Metrics>,
}

/// What a job already knows when it looks at an alert.
#[derive(Default)]
struct Known<'a> {
    /// The alerts going out in the same message (a storm's): an `up` need
    /// not wait for a `down` among them.
    together: &'a [i64],
    /// The services of those alerts, read at once (a storm's), or `None`:
    /// each is read when needed.
    services: Option<&'a HashMap<i64, Service>>,
}

/// What one unit of delivery work is.
enum Work {
    /// Alerts of one (channel, service) in order, or one test alert.
    Lane(Vec<OutboxRow>),
    /// Due changes of a channel in a storm, to go out as one message.
    NewStorm(Vec<OutboxRow>),
    /// The due members of a storm group sent before, sent again as they
    /// were (less any that are no longer to be sent).
    Group(Vec<OutboxRow>),
}

/// One unit of delivery work with what it needs.
struct Job {
    channel: i64,
    lane: i64,
    config: Arc<ChannelConfig>,
    work: Work,
    /// The pass's clock minus the wall clock: a job's "now" is the wall
    /// clock moved by this, so a pass run on a given clock (tests) keeps it.
    skew: Millis,
    /// The maintenance windows open at the pass.
    windows: Arc<OpenWindows>,
}

/// The deliveries running, each reporting whether its outcome was written.
type Running = JoinSet<Result<(), StoreError>>;

impl Sender {
    /// A sender over `store`, delivering over HTTP with `deliverer` and
    /// mail with `mail`.
    pub fn new(
        store: Store,
        deliverer: Deliverer,
        mail: MailSettings,
        settings: AlertsSettings,
    ) -> Self {
        Self {
            store,
            deliverer,
            mail: Arc::new(mail),
            permits: Arc::new(Semaphore::new(settings.concurrency)),
            settings,
            storms: Arc::default(),
            lanes: Arc::default(),
            reminded_to: Arc::default(),
            metrics: Arc::default(),
        }
    }

    /// The same sender, counting its delivery attempts in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Most deliveries in flight to one channel: half of
    /// `alerts.concurrency`, so a receiver that hangs never takes every
    /// permit.
    fn channel_cap(&self) -> usize {
        (self.settings.concurrency / 2).max(1)
    }

    /// Runs until `shutdown`: stands by until this process holds the sender
    /// lock, delivers while it does, stands by again if it loses it.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), SenderError> {
        let mut standing_by = false;
        loop {
            let lead = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                lead = self.store.try_send_alerts() => lead,
            };
            match lead {
                Ok(Some(lead)) => {
                    tracing::info!("this process is the alert sender");
                    standing_by = false;
                    self.run_active(&shutdown, lead).await;
                    if shutdown.is_cancelled() {
                        return Ok(());
                    }
                    tracing::warn!("lost the alert sender lock; standing by");
                }
                Ok(None) => {
                    if !standing_by {
                        tracing::info!("another process sends alerts; standing by");
                        standing_by = true;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reach the store to take the alert sender lock")
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(LEAD_CHECK_EVERY) => {}
            }
        }
    }

    /// Delivers while `lead` holds; returns when it is lost or at shutdown.
    async fn run_active(&self, shutdown: &CancellationToken, lead: Leadership) {
        let mut lead = Some(lead);
        let mut check_lead = tokio::time::interval(LEAD_CHECK_EVERY);
        let mut next_reminders = tokio::time::Instant::now();
        // Reset only after a pass (or to run one early), so deliveries
        // ending all the time cannot keep putting the poll off.
        let next_pass = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(next_pass);
        let mut leftover = false;
        let mut running = Running::new();
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                _ = check_lead.tick() => {
                    let held = match lead.as_mut() {
                        Some(lead) => lead.still_held().await,
                        None => false,
                    };
                    if !held {
                        // Our old session goes first: if it still holds the
                        // lock, it would refuse us our own lock.
                        drop(lead.take());
                        match self.store.try_send_alerts().await {
                            Ok(Some(renewed)) => lead = Some(renewed),
                            Ok(None) => break,
                            // Without the lock another process may be
                            // sending: start nothing until it is ours again.
                            Err(e) => tracing::warn!(error = %e,
                                "cannot renew the alert sender lock; no deliveries start until it is back"),
                        }
                    }
                    continue;
                }
                Some(done) = running.join_next(), if !running.is_empty() => {
                    report(done);
                    let soon = tokio::time::Instant::now() + FREED_PASS_DELAY;
                    if leftover && next_pass.deadline() > soon {
                        next_pass.as_mut().reset(soon);
                    }
                    continue;
                }
                () = &mut next_pass => {}
                () = OUTBOX_WRITTEN.notified() => {}
            }
            let mut wait = self.settings.poll_interval;
            if lead.is_some() {
                if tokio::time::Instant::now() >= next_reminders {
                    next_reminders = tokio::time::Instant::now() + REMINDER_SCAN_EVERY;
                    if let Err(e) = self.write_reminders(now_ms()).await {
                        tracing::warn!(error = %e, "cannot write reminders");
                    }
                }
                match self.start_pass(now_ms(), &mut running).await {
                    Ok(left) => leftover = left,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the alert outbox");
                        wait = wait.max(Duration::from_secs(1));
                    }
                }
            }
            next_pass.as_mut().reset(tokio::time::Instant::now() + wait);
        }
        // Deliveries in flight get a moment; any cut short stay pending and
        // are sent by the next sender.
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while let Some(done) = running.join_next().await {
                report(done);
            }
        })
        .await;
        if drained.is_err() {
            tracing::info!(
                deliveries = running.len(),
                "alert deliveries cut short; they stay pending"
            );
        }
        running.shutdown().await;
    }

    /// Passes on the clock `now`, each waited for, until every alert due
    /// then has been delivered or put off (at most a few dozen rounds).
    /// Whether alerts were still left over.
    pub async fn pass(&self, now: Millis) -> Result<bool, StoreError> {
        for _ in 0..PASS_ROUNDS {
            let mut running = Running::new();
            let leftover = self.start_pass(now, &mut running).await?;
            while let Some(done) = running.join_next().await {
                report(done);
            }
            if !leftover {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// What a pass may start on `channel`.
    fn channel_state(&self, channel: i64) -> ChannelState {
        let cap = self.channel_cap();
        let Ok(lanes) = self.lanes.lock() else {
            return ChannelState {
                storm_busy: true,
                busy_services: Vec::new(),
                busy_ids: Vec::new(),
                free: 0,
            };
        };
        let mut state = ChannelState {
            storm_busy: lanes.busy.contains(&(channel, STORM_LANE)),
            busy_services: Vec::new(),
            busy_ids: Vec::new(),
            free: 0,
        };
        for &(c, lane) in &lanes.busy {
            if c != channel || lane == STORM_LANE {
                continue;
            }
            if lane < 0 {
                state.busy_ids.push(-lane);
            } else {
                state.busy_services.push(lane);
            }
        }
        let cap = if lanes.struggling.contains(&channel) {
            1
        } else {
            cap
        };
        let in_flight = lanes.in_flight.get(&channel).copied().unwrap_or(0);
        state.free = cap.saturating_sub(in_flight);
        state
    }

    /// Reads due alerts channel by channel and starts what it can in
    /// `running`: each job only with a free permit and within its
    /// channel's share, busy lanes left alone. Whether due alerts were left
    /// for a later pass.
    async fn start_pass(&self, now: Millis, running: &mut Running) -> Result<bool, StoreError> {
        let channels = self.store.due_channels(now, CHANNELS_PER_PASS).await?;
        if channels.is_empty() {
            return Ok(false);
        }
        let mut leftover = channels.len() as i64 >= CHANNELS_PER_PASS;
        let skew = now - now_ms();
        let windows = Arc::new(self.store.open_windows(now).await?);
        let records: HashMap<i64, ChannelRecord> = self
            .store
            .channels_by_id(&channels)
            .await?
            .into_iter()
            .map(|c| (c.id, c))
            .collect();
        for channel_id in channels {
            if self.permits.available_permits() == 0 {
                leftover = true;
                break;
            }
            let state = self.channel_state(channel_id);
            if state.storm_busy || state.free == 0 {
                leftover = true;
                continue;
            }
            let rows = self
                .store
                .due_alerts_of(
                    channel_id,
                    now,
                    &state.busy_services,
                    &state.busy_ids,
                    BATCH,
                )
                .await?;
            if rows.is_empty() {
                continue;
            }
            if rows.len() as i64 >= BATCH {
                leftover = true;
            }
            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            let Some(channel) = records.get(&channel_id) else {
                self.store
                    .alerts_failed(&ids, "channel deleted", false)
                    .await?;
                continue;
            };
            let config = match serde_json::from_str(&channel.config)
                .map_err(|e| e.to_string())
                .and_then(|v| {
                    ChannelConfig::parse(&channel.kind, &v).map_err(|errors| {
                        errors
                            .iter()
                            .map(|e| format!("{}: {}", e.field, e.message))
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                }) {
                Ok(config) => Arc::new(config),
                Err(why) => {
                    let error = format!("not sent: the channel's settings are unusable: {why}");
                    self.store.alerts_failed(&ids, &error, false).await?;
                    continue;
                }
            };
            let (jobs, waiting) = self
                .plan_channel(channel_id, config, rows, now, &state)
                .await?;
            leftover |= waiting;
            let mut free = state.free;
            for (lane, work, config) in jobs {
                if free == 0 {
                    leftover = true;
                    break;
                }
                let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
                    leftover = true;
                    break;
                };
                free -= 1;
                let job = Job {
                    channel: channel_id,
                    lane,
                    config,
                    work,
                    skew,
                    windows: Arc::clone(&windows),
                };
                self.spawn(job, permit, running);
            }
        }
        Ok(leftover)
    }

    /// Starts `job` in `running`, its lane busy and its permit held until
    /// it ends.
    fn spawn(&self, job: Job, permit: OwnedSemaphorePermit, running: &mut Running) {
        let held = Held {
            lanes: Arc::clone(&self.lanes),
            key: (job.channel, job.lane),
        };
        if let Ok(mut lanes) = self.lanes.lock() {
            lanes.busy.insert(held.key);
            *lanes.in_flight.entry(job.channel).or_default() += 1;
        }
        let sender = self.clone();
        running.spawn(async move {
            let _held = held;
            let _permit = permit;
            sender.run_job(job).await
        });
    }

    /// Splits one channel's due alerts into jobs, the one that must start
    /// first first: a storm group sent before (alone: the channel's other
    /// changes wait for it), or a new storm's one group, or one in-order
    /// job per service; test alerts each alone. Also whether some due
    /// alerts were left to wait for a lane.
    async fn plan_channel(
        &self,
        channel_id: i64,
        config: Arc<ChannelConfig>,
        rows: Vec<OutboxRow>,
        now: Millis,
        state: &ChannelState,
    ) -> Result<(Vec<(i64, Work, Arc<ChannelConfig>)>, bool), StoreError> {
        let (tests, changes): (Vec<OutboxRow>, Vec<OutboxRow>) =
            rows.into_iter().partition(|r| r.event == "test");
        let mut jobs = Vec::new();
        let tests: Vec<(i64, Work, Arc<ChannelConfig>)> = tests
            .into_iter()
            .map(|r| (lane(&r), Work::Lane(vec![r]), Arc::clone(&config)))
            .collect();
        // A group sent before goes again as it was, before anything newer.
        if let Some(group) = changes.iter().filter_map(|r| r.group_id).min() {
            let members = self.store.due_group(group, now).await?;
            let blocked = members.iter().any(|m| {
                m.service_id
                    .is_some_and(|s| state.busy_services.contains(&s))
            });
            if !blocked && !members.is_empty() {
                jobs.push((STORM_LANE, Work::Group(members), Arc::clone(&config)));
            }
            jobs.extend(tests);
            return Ok((jobs, true));
        }
        if storm::groups(&config) && !changes.is_empty() {
            let window = self.settings.storm_window.as_millis() as i64;
            let recent = self
                .store
                .channel_alerts_since(crate::domain::ChannelId(channel_id), now - window)
                .await?;
            // A storm's message holds the whole channel: it waits for the
            // channel's lanes under way to end.
            if plan::is_storm(recent, self.settings.storm_threshold) {
                if !state.busy_services.is_empty() {
                    jobs.extend(tests);
                    return Ok((jobs, true));
                }
                let last = self
                    .storms
                    .lock()
                    .ok()
                    .and_then(|s| s.get(&channel_id).copied());
                let gap = STORM_GAP.min(self.settings.storm_window).as_millis() as i64;
                if let Some(last) = last
                    && now - last < gap
                {
                    let until = last + gap;
                    let ids: Vec<i64> = changes.iter().map(|r| r.id).collect();
                    self.store
                        .alerts_defer(
                            &ids,
                            until,
                            "grouped: an alert storm on this channel; sent together shortly",
                        )
                        .await?;
                    jobs.extend(tests);
                    return Ok((jobs, false));
                }
                if let Ok(mut storms) = self.storms.lock() {
                    storms.insert(channel_id, now);
                }
                jobs.push((STORM_LANE, Work::NewStorm(changes), Arc::clone(&config)));
                jobs.extend(tests);
                return Ok((jobs, false));
            }
        }
        let mut by_lane: BTreeMap<i64, Vec<OutboxRow>> = BTreeMap::new();
        for row in changes {
            by_lane.entry(lane(&row)).or_default().push(row);
        }
        for (lane, mut rows) in by_lane {
            // Written order, whatever their retry times say.
            rows.sort_by_key(|r| r.id);
            jobs.push((lane, Work::Lane(rows), Arc::clone(&config)));
        }
        jobs.extend(tests);
        Ok((jobs, false))
    }

    /// Notes whether `channel`'s receiver answers at all.
    fn note(&self, channel: i64, outcome: &Outcome) {
        if let Ok(mut lanes) = self.lanes.lock() {
            if unreachable(outcome) {
                lanes.struggling.insert(channel);
            } else {
                lanes.struggling.remove(&channel);
            }
        }
    }
}
