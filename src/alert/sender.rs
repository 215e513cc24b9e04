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
//!   the alert was written, then `failed`. A 4xx other than 408/429 (a wrong
//!   token or URL), a redirect, or a blocked address fails at once: retrying
//!   would not help, and `last_error` says what to fix.
//! - Alerts of one service to one channel (a lane) go out one at a time in
//!   the order they were written: while one is being retried, later ones
//!   wait for it, so an `up` never arrives before its `down`. Lanes are
//!   independent: a receiver that hangs holds up only its own alerts until
//!   `alerts.http_timeout_s`, never another channel's.
//! - Maintenance: an alert for a service inside a window is held until the
//!   window ends. Then a `down` whose service recovered meanwhile is failed
//!   ([`RECOVERED_IN_MAINTENANCE`]), and so is the `up` that goes with it;
//!   one still DOWN is delivered. Reminders inside a window are not sent.
//! - Reminders: every `remind_every_s` of a channel while a service stays
//!   DOWN, counted from when it went DOWN (see [`plan::reminder_slot`]).
//! - Storms: see [`storm`].

pub mod plan;
pub mod storm;

pub use plan::{RECOVERED_IN_MAINTENANCE, backoff, reminder_slot};

use super::channel::ChannelConfig;
use super::deliver::{Deliverer, Outcome};
use super::mail::MailSettings;
use super::render::{Delivery, render};
use super::{Alert, AlertEvent};
use crate::config::AlertsSettings;
use crate::domain::Status;
use crate::domain::outbox::AlertPayload;
use crate::domain::time::{Millis, now_ms, to_rfc3339};
use crate::store::{ChannelRecord, Leadership, NewOutboxRow, OutboxRow, Store, StoreError};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Most alerts read from the outbox in one pass (a storm's group is at
/// most this big).
pub const BATCH: i64 = 500;

/// How often a standby sender tries to take over, and the active one checks
/// that it still holds the lock.
pub const LEAD_CHECK_EVERY: Duration = Duration::from_secs(1);

/// How often DOWN services are looked at for reminders due.
pub const REMINDER_SCAN_EVERY: Duration = Duration::from_secs(2);

/// How long deliveries in flight at shutdown may take to finish; those
/// still running then are dropped and stay pending for the next sender.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Shortest time between two grouped messages to one channel in a storm,
/// so a storm that goes on is a message every few seconds, not one per
/// poll.
pub const STORM_GAP: Duration = Duration::from_secs(5);

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
    /// Lanes with a delivery under way: (channel, service), a test alert's
    /// lane being minus its id, and a storm holding its whole channel
    /// ([`STORM_LANE`]). A pass leaves busy lanes alone, so one slow
    /// receiver holds up only its own alerts, and alerts of one service to
    /// one channel stay in order.
    busy: Arc<Mutex<HashSet<(i64, i64)>>>,
    /// Deliveries in flight at once (`alerts.concurrency`).
    permits: Arc<Semaphore>,
}

/// The lane a storm holds: its whole channel.
const STORM_LANE: i64 = i64::MIN;

/// The lane of an alert within its channel.
fn lane(row: &OutboxRow) -> i64 {
    row.service_id.unwrap_or(-row.id)
}

/// One unit of delivery work: alerts of one (channel, service) in order,
/// or one channel's storm group.
struct Job {
    channel: i64,
    lane: i64,
    config: Arc<ChannelConfig>,
    rows: Vec<OutboxRow>,
}

/// A lane held busy while its job runs (or until the job is dropped,
/// aborted at shutdown included).
struct Held {
    busy: Arc<Mutex<HashSet<(i64, i64)>>>,
    key: (i64, i64),
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Ok(mut busy) = self.busy.lock() {
            busy.remove(&self.key);
        }
    }
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
            busy: Arc::default(),
        }
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
                Ok(Some(mut lead)) => {
                    tracing::info!("this process is the alert sender");
                    standing_by = false;
                    self.run_active(&shutdown, &mut lead).await;
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
    async fn run_active(&self, shutdown: &CancellationToken, lead: &mut Leadership) {
        let mut check_lead = tokio::time::interval(LEAD_CHECK_EVERY);
        let mut next_reminders = tokio::time::Instant::now();
        let mut wait = Duration::ZERO;
        let mut running = Running::new();
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                _ = check_lead.tick() => {
                    if !lead.still_held().await {
                        match self.store.try_send_alerts().await {
                            Ok(Some(renewed)) => *lead = renewed,
                            Ok(None) => break,
                            // Nothing can be delivered without the store
                            // either; go on and let the passes fail.
                            Err(e) => tracing::warn!(error = %e, "cannot renew the alert sender lock"),
                        }
                    }
                    continue;
                }
                Some(done) = running.join_next(), if !running.is_empty() => {
                    report(done);
                    continue;
                }
                () = tokio::time::sleep(wait) => {}
                () = OUTBOX_WRITTEN.notified() => {}
            }
            if tokio::time::Instant::now() >= next_reminders {
                next_reminders = tokio::time::Instant::now() + REMINDER_SCAN_EVERY;
                if let Err(e) = self.write_reminders(now_ms()).await {
                    tracing::warn!(error = %e, "cannot write reminders");
                }
            }
            wait = self.settings.poll_interval;
            // Bounded: no new pass while a batch's worth of jobs is queued.
            if running.len() >= BATCH as usize {
                continue;
            }
            if let Err(e) = self.start_pass(now_ms(), &mut running).await {
                tracing::warn!(error = %e, "cannot read the alert outbox");
                wait = wait.max(Duration::from_secs(1));
            }
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

    /// One pass, waited for: every due alert of one batch delivered (or
    /// put off). Whether the batch was full.
    pub async fn pass(&self, now: Millis) -> Result<bool, StoreError> {
        let mut running = Running::new();
        let full = self.start_pass(now, &mut running).await?;
        while let Some(done) = running.join_next().await {
            report(done);
        }
        Ok(full)
    }

    /// Reads due alerts and starts their deliveries in `running`, leaving
    /// lanes that are busy alone. Whether the batch was full.
    async fn start_pass(&self, now: Millis, running: &mut Running) -> Result<bool, StoreError> {
        let busy: HashSet<(i64, i64)> = self.busy.lock().map(|b| b.clone()).unwrap_or_default();
        let due = self
            .store
            .due_alerts(now, BATCH + busy.len() as i64)
            .await?;
        let full = due.len() as i64 >= BATCH + busy.len() as i64;
        let due: Vec<OutboxRow> = due
            .into_iter()
            .filter(|r| {
                !busy.contains(&(r.channel_id, STORM_LANE))
                    && !busy.contains(&(r.channel_id, lane(r)))
            })
            .take(BATCH as usize)
            .collect();
        if due.is_empty() {
            return Ok(full);
        }
        let mut by_channel: BTreeMap<i64, Vec<OutboxRow>> = BTreeMap::new();
        for row in due {
            by_channel.entry(row.channel_id).or_default().push(row);
        }
        let ids: Vec<i64> = by_channel.keys().copied().collect();
        let channels: HashMap<i64, ChannelRecord> = self
            .store
            .channels_by_id(&ids)
            .await?
            .into_iter()
            .map(|c| (c.id, c))
            .collect();
        let mut jobs = Vec::new();
        for (channel_id, rows) in by_channel {
            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            let Some(channel) = channels.get(&channel_id) else {
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
            jobs.extend(self.plan_channel(channel_id, config, rows, now).await?);
        }
        for job in jobs {
            let held = Held {
                busy: Arc::clone(&self.busy),
                key: (job.channel, job.lane),
            };
            if let Ok(mut busy) = self.busy.lock() {
                busy.insert(held.key);
            }
            let (sender, permits) = (self.clone(), Arc::clone(&self.permits));
            running.spawn(async move {
                let _held = held;
                let _permit = permits.acquire_owned().await;
                sender.run_job(job).await
            });
        }
        Ok(full)
    }

    /// Splits one channel's due alerts into jobs: a storm's one group, or
    /// one in-order job per service.
    async fn plan_channel(
        &self,
        channel_id: i64,
        config: Arc<ChannelConfig>,
        rows: Vec<OutboxRow>,
        now: Millis,
    ) -> Result<Vec<Job>, StoreError> {
        let groupable = storm::groups(&config);
        let (tests, changes): (Vec<OutboxRow>, Vec<OutboxRow>) =
            rows.into_iter().partition(|r| r.event == "test");
        let mut jobs: Vec<Job> = tests
            .into_iter()
            .map(|r| Job {
                channel: channel_id,
                lane: lane(&r),
                config: Arc::clone(&config),
                rows: vec![r],
            })
            .collect();
        if groupable && !changes.is_empty() {
            let window = self.settings.storm_window.as_millis() as i64;
            let recent = self
                .store
                .channel_alerts_since(crate::domain::ChannelId(channel_id), now - window)
                .await?;
            if plan::is_storm(recent, self.settings.storm_threshold) {
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
                    return Ok(jobs);
                }
                if let Ok(mut storms) = self.storms.lock() {
                    storms.insert(channel_id, now);
                }
                jobs.push(Job {
                    channel: channel_id,
                    lane: STORM_LANE,
                    config,
                    rows: changes,
                });
                return Ok(jobs);
            }
        }
        let mut by_lane: BTreeMap<i64, Vec<OutboxRow>> = BTreeMap::new();
        for row in changes {
            by_lane.entry(lane(&row)).or_default().push(row);
        }
        for (lane, mut rows) in by_lane {
            // Written order, whatever their retry times say.
            rows.sort_by_key(|r| r.id);
            jobs.push(Job {
                channel: channel_id,
                lane,
                config: Arc::clone(&config),
                rows,
            });
        }
        Ok(jobs)
    }

    async fn run_job(&self, job: Job) -> Result<(), StoreError> {
        let Job {
            lane, config, rows, ..
        } = job;
        match lane {
            STORM_LANE => {
                let mut ready = Vec::new();
                let mut alerts = Vec::new();
                let together: Vec<i64> = rows.iter().map(|r| r.id).collect();
                for row in &rows {
                    if let Some(alert) = self.gate(row, &together, now_ms()).await? {
                        ready.push(row);
                        alerts.push(alert);
                    }
                }
                let delivery = match alerts.as_slice() {
                    [] => return Ok(()),
                    // Alone by the end of a gap: it goes as itself.
                    [alert] => render(&config, alert, now_ms() / 1000),
                    _ => {
                        tracing::info!(alerts = alerts.len(), id = %storm::group_id(&alerts),
                            "alert storm: sending one grouped message");
                        match storm::render_group(&config, &alerts, now_ms() / 1000) {
                            Some(delivery) => delivery,
                            None => return Ok(()),
                        }
                    }
                };
                let outcome = self.send(&config, delivery).await;
                self.record(&ready, outcome).await?;
                Ok(())
            }
            _ => {
                let mut rows = rows.into_iter();
                while let Some(row) = rows.next() {
                    let Some(alert) = self.gate(&row, &[], now_ms()).await? else {
                        continue;
                    };
                    let outcome = self.deliver(&config, &alert).await;
                    let retrying = matches!(outcome, Outcome::Retry { .. });
                    let next_at = self.record(&[&row], outcome).await?;
                    if retrying && let Some(next_at) = next_at {
                        // Later alerts of this service wait for this one.
                        let rest: Vec<i64> = rows.by_ref().map(|r| r.id).collect();
                        if !rest.is_empty() {
                            self.store
                                .alerts_defer(
                                    &rest,
                                    next_at + 1,
                                    "waiting: an earlier alert of this service to this channel is being retried",
                                )
                                .await?;
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// Whether `row` is to be delivered now, and as what. Holds, waits and
    /// the alerts not to send at all are written here. `together` are the
    /// alerts going out in the same message (a storm's): an `up` need not
    /// wait for a `down` among them.
    async fn gate(
        &self,
        row: &OutboxRow,
        together: &[i64],
        now: Millis,
    ) -> Result<Option<Alert>, StoreError> {
        let ids = [row.id];
        let mut service_json = None;
        if let Some(service_id) = row.service() {
            let event = row.event.as_str();
            if let Some(end) = self.store.maintenance_until(service_id, now).await? {
                if event == "reminder" {
                    self.store
                        .alerts_failed(
                            &ids,
                            "not sent: the service is in a maintenance window",
                            false,
                        )
                        .await?;
                } else {
                    let why = format!(
                        "{}a maintenance window until {}",
                        plan::HELD,
                        to_rfc3339(end)
                    );
                    self.store.alerts_defer(&ids, end, &why).await?;
                }
                return Ok(None);
            }
            let service = self.store.get_service(service_id).await?;
            let channel = row.channel();
            match event {
                "down"
                    if row
                        .last_error
                        .as_deref()
                        .is_some_and(|e| e.starts_with(plan::HELD)) =>
                {
                    let recovered = service
                        .as_ref()
                        .is_some_and(|s| s.last_status != Status::Down)
                        || self
                            .store
                            .neighbour_alert(service_id, channel, "up", row.scheduled_at, true)
                            .await?
                            .is_some();
                    if recovered {
                        self.store
                            .alerts_failed(&ids, RECOVERED_IN_MAINTENANCE, false)
                            .await?;
                        return Ok(None);
                    }
                }
                "up" => {
                    let down = self
                        .store
                        .neighbour_alert(service_id, channel, "down", row.scheduled_at, false)
                        .await?;
                    match down {
                        Some(down) if down.state == "pending" && !together.contains(&down.id) => {
                            self.store
                                .alerts_defer(
                                    &ids,
                                    down.next_attempt_at.max(now) + 1,
                                    "waiting: the down alert this resolves is not sent yet",
                                )
                                .await?;
                            return Ok(None);
                        }
                        Some(down)
                            if down.state == "failed"
                                && down.last_error.as_deref() == Some(RECOVERED_IN_MAINTENANCE) =>
                        {
                            self.store
                                .alerts_failed(&ids, RECOVERED_IN_MAINTENANCE, false)
                                .await?;
                            return Ok(None);
                        }
                        _ => {}
                    }
                }
                "reminder"
                    if service
                        .as_ref()
                        .is_none_or(|s| s.last_status != Status::Down) =>
                {
                    let why = match service {
                        Some(_) => "not sent: the service is no longer DOWN",
                        None => "not sent: the service was deleted",
                    };
                    self.store.alerts_failed(&ids, why, false).await?;
                    return Ok(None);
                }
                _ => {}
            }
            service_json = service.and_then(|s| serde_json::to_value(&s).ok());
        }
        match plan::alert_of(row, service_json) {
            Ok(alert) => Ok(Some(alert)),
            Err(why) => {
                self.store
                    .alerts_failed(&ids, &format!("not sent: {why}"), false)
                    .await?;
                Ok(None)
            }
        }
    }

    /// One attempt of one alert.
    async fn deliver(&self, config: &ChannelConfig, alert: &Alert) -> Outcome {
        self.send(config, render(config, alert, now_ms() / 1000))
            .await
    }

    async fn send(&self, config: &ChannelConfig, delivery: Delivery) -> Outcome {
        match delivery {
            Delivery::Http(request) => self.deliverer.post(&request).await,
            Delivery::Mail(mail) => {
                super::mail::outcome(super::mail::send(config, &mail, &self.mail).await)
            }
        }
    }

    /// Writes what became of an attempt at `rows`; when they are to be
    /// tried again, when.
    async fn record(
        &self,
        rows: &[&OutboxRow],
        outcome: Outcome,
    ) -> Result<Option<Millis>, StoreError> {
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let now = now_ms();
        match outcome {
            Outcome::Sent => {
                for row in rows {
                    tracing::info!(alert = row.id, channel = row.channel_id,
                        event = %row.event, attempts = row.attempts + 1, "alert sent");
                }
                self.store.alerts_sent(&ids, now).await?;
                Ok(None)
            }
            Outcome::Fail { error } => {
                tracing::warn!(alerts = ?ids, error = %error, "alert failed; not retried");
                self.store.alerts_failed(&ids, &error, true).await?;
                Ok(None)
            }
            Outcome::Retry { error, after } => {
                let attempts = rows.iter().map(|r| r.attempts).max().unwrap_or(0) + 1;
                let created = rows.iter().map(|r| r.created_at).min().unwrap_or(now);
                let delay = backoff(attempts, fastrand::f64(), after);
                let next_at = now + delay.as_millis() as i64;
                let deadline = created + self.settings.max_age.as_millis() as i64;
                if next_at > deadline {
                    let error = format!(
                        "gave up after {attempts} attempts over {}: {error}",
                        crate::alert::human_duration(now - created)
                    );
                    tracing::warn!(alerts = ?ids, error = %error, "alert failed");
                    self.store.alerts_failed(&ids, &error, true).await?;
                    return Ok(None);
                }
                tracing::info!(alerts = ?ids, error = %error, attempts,
                    retry_in_ms = delay.as_millis() as u64, "alert delivery failed; will retry");
                self.store.alerts_retry(&ids, &error, next_at).await?;
                Ok(Some(next_at))
            }
        }
    }

    /// Writes the reminders due at `now`: for every channel with
    /// `remind_every_s`, every DOWN service it alerts gets its newest slot
    /// (once: the outbox's unique key).
    pub async fn write_reminders(&self, now: Millis) -> Result<usize, StoreError> {
        const PAGE: i64 = 1000;
        let channels = self.store.reminder_channels().await?;
        if channels.is_empty() {
            return Ok(0);
        }
        let mut after = 0;
        let mut written = 0;
        loop {
            let (page, last) = self.store.down_services_after(after, PAGE).await?;
            let mut rows = Vec::new();
            for service in &page {
                for channel in &channels {
                    let applies = channel.all_services
                        || service.channels.iter().any(|c| c.get() == channel.id);
                    let slot = reminder_slot(service.down_since, channel.remind_every_s, now);
                    let (true, Some(slot)) = (applies, slot) else {
                        continue;
                    };
                    let payload = AlertPayload {
                        service_name: service.name.clone(),
                        since: Some(service.down_since),
                        check: None,
                    };
                    rows.push(NewOutboxRow {
                        service_id: Some(service.id.get()),
                        channel_id: channel.id,
                        event: AlertEvent::Reminder.as_str().to_owned(),
                        old_status: Status::Down.as_str().to_owned(),
                        new_status: Status::Down.as_str().to_owned(),
                        scheduled_at: slot,
                        payload: serde_json::to_string(&payload).unwrap_or_default(),
                        state: "pending".to_owned(),
                        attempts: 0,
                        created_at: now,
                        next_attempt_at: now,
                    });
                }
            }
            written += self.store.insert_alerts(&rows).await?;
            match last {
                Some(last) => after = last,
                None => break,
            }
        }
        Ok(written)
    }
}
