//! One delivery job: a lane's alerts (or a storm's group) rendered, sent
//! and their fate written, with the retry time a failure earns.

use super::*;
use crate::metrics::AlertState;

impl Sender {
    pub(super) async fn run_job(&self, job: Job) -> Result<(), StoreError> {
        let Job {
            channel,
            config,
            work,
            skew,
            windows,
            ..
        } = job;
        let clock = || now_ms() + skew;
        match work {
            Work::NewStorm(rows) | Work::Group(rows) => {
                let regroup = rows.first().and_then(|r| r.group_id);
                let mut ready = Vec::new();
                let mut alerts = Vec::new();
                let together: Vec<i64> = rows.iter().map(|r| r.id).collect();
                // One read for the services of the whole group, not one per
                // alert.
                let mut ids: Vec<i64> = rows.iter().filter_map(|r| r.service_id).collect();
                ids.sort_unstable();
                ids.dedup();
                let services: HashMap<i64, Service> = self
                    .store
                    .services_by_id(&ids)
                    .await?
                    .into_iter()
                    .map(|s| (s.id.get(), s))
                    .collect();
                let known = Known {
                    together: &together,
                    services: Some(&services),
                };
                for row in &rows {
                    if let Some(alert) = self.gate(row, &known, &windows, clock()).await? {
                        ready.push(row);
                        alerts.push(alert);
                    }
                }
                let delivery = match (alerts.as_slice(), regroup) {
                    ([], _) => return Ok(()),
                    // Alone by the end of a gap: it goes as itself.
                    ([alert], None) => render(&config, alert, clock() / 1000),
                    _ => {
                        if regroup.is_none() {
                            // Membership is fixed before the first attempt,
                            // so a retry sends the same set under the same
                            // id.
                            let ids: Vec<i64> = ready.iter().map(|r| r.id).collect();
                            let group = ids.iter().copied().min().unwrap_or_default();
                            self.store.alerts_group(&ids, group).await?;
                        }
                        tracing::info!(alerts = alerts.len(), id = %storm::group_id(&alerts),
                            "alert storm: sending one grouped message");
                        match storm::render_group(&config, &alerts, clock() / 1000) {
                            Some(delivery) => delivery,
                            None => return Ok(()),
                        }
                    }
                };
                let outcome = self.send(&config, delivery).await;
                self.note(channel, &outcome);
                self.record(&ready, outcome, clock()).await?;
                Ok(())
            }
            Work::Lane(rows) => {
                let mut rows = rows.into_iter();
                while let Some(row) = rows.next() {
                    let Some(alert) = self
                        .gate(&row, &Known::default(), &windows, clock())
                        .await?
                    else {
                        continue;
                    };
                    let outcome = self
                        .send(&config, render(&config, &alert, clock() / 1000))
                        .await;
                    self.note(channel, &outcome);
                    let retrying = matches!(outcome, Outcome::Retry { .. });
                    let next_at = self.record(&[&row], outcome, clock()).await?;
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

    async fn send(&self, config: &ChannelConfig, delivery: Delivery) -> Outcome {
        match delivery {
            Delivery::Http(request) => self.deliverer.post(&request).await,
            Delivery::Mail(mail) => crate::alert::mail::outcome(
                crate::alert::mail::send(config, &mail, &self.mail).await,
            ),
        }
    }

    /// Writes what became of an attempt at `rows` that ended at `now`;
    /// when they are to be tried again, when.
    async fn record(
        &self,
        rows: &[&OutboxRow],
        outcome: Outcome,
        now: Millis,
    ) -> Result<Option<Millis>, StoreError> {
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let kinds = || rows.iter().map(|r| r.event.as_str());
        match outcome {
            Outcome::Sent => {
                for row in rows {
                    tracing::info!(alert = row.id, channel = row.channel_id,
                        event = %row.event, attempts = row.attempts + 1, "alert sent");
                }
                self.store.alerts_sent(&ids, now).await?;
                self.metrics.alerts(kinds(), AlertState::Sent);
                Ok(None)
            }
            Outcome::Fail { error } => {
                tracing::warn!(alerts = ?ids, error = %error, "alert failed; not retried");
                self.store.alerts_failed(&ids, &error, true).await?;
                self.metrics.alerts(kinds(), AlertState::Failed);
                Ok(None)
            }
            Outcome::Retry { error, after } => {
                let attempts = rows.iter().map(|r| r.attempts).max().unwrap_or(0) + 1;
                // Counted from the first attempt: time held by a window or
                // waiting behind another alert is not time spent trying.
                let first = rows
                    .iter()
                    .map(|r| r.first_attempt_at.unwrap_or(now))
                    .min()
                    .unwrap_or(now);
                let delay = backoff(attempts, fastrand::f64(), after);
                let next_at = now + delay.as_millis() as i64;
                let deadline = first + self.settings.max_age.as_millis() as i64;
                if next_at > deadline {
                    let error = format!(
                        "gave up after {attempts} attempts over {}: {error}",
                        crate::alert::human_duration(now - first)
                    );
                    tracing::warn!(alerts = ?ids, error = %error, "alert failed");
                    self.store.alerts_failed(&ids, &error, true).await?;
                    self.metrics.alerts(kinds(), AlertState::Failed);
                    return Ok(None);
                }
                tracing::info!(alerts = ?ids, error = %error, attempts,
                    retry_in_ms = delay.as_millis() as u64, "alert delivery failed; will retry");
                self.store.alerts_retry(&ids, &error, now, next_at).await?;
                self.metrics.alerts(kinds(), AlertState::Retried);
                Ok(Some(next_at))
            }
        }
    }
}
