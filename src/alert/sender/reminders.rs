//! Reminders: outbox rows for services still DOWN, one per
//! `remind_every_s` slot of each channel that asks for them.

use super::*;

impl Sender {
    /// Writes the reminders due at `now`: for every channel with
    /// `remind_every_s`, every DOWN service it alerts gets its newest slot
    /// (once: the outbox's unique key). After the first scan (which
    /// catches up), only slots that fell due since the last scan are
    /// written.
    pub async fn write_reminders(&self, now: Millis) -> Result<usize, StoreError> {
        const PAGE: i64 = 1000;
        let since = self.reminded_to.lock().ok().and_then(|s| *s);
        let channels = self.store.reminder_channels().await?;
        if channels.is_empty() {
            self.reminded(now);
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
                    if since.is_some_and(|since| slot <= since) {
                        continue;
                    }
                    let payload = AlertPayload {
                        service_name: service.name.clone(),
                        since: Some(service.down_since),
                        check: None,
                        region: None,
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
                        first_attempt_at: None,
                    });
                }
            }
            written += self.store.insert_alerts(&rows).await?;
            match last {
                Some(last) => after = last,
                None => break,
            }
        }
        self.reminded(now);
        Ok(written)
    }

    /// Notes that every reminder slot due by `now` is written.
    fn reminded(&self, now: Millis) {
        if let Ok(mut to) = self.reminded_to.lock() {
            *to = Some(to.map_or(now, |to| to.max(now)));
        }
    }
}
