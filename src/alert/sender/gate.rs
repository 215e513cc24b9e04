//! The gate every alert passes just before it is sent: maintenance holds,
//! the order within a lane (an `up` waits for the `down` or `degraded` it
//! ends, a reminder for its `down`), and the alerts that are not to be
//! sent at all (recovered during a window, a reminder for a service no
//! longer DOWN).

use super::*;
use crate::domain::{ChannelId, ServiceId};
use crate::store::Earlier;

impl Sender {
    /// Whether `row` is to be delivered now, and as what. Holds, waits and
    /// the alerts not to send at all are written here.
    pub(super) async fn gate(
        &self,
        row: &OutboxRow,
        known: &Known<'_>,
        windows: &OpenWindows,
        now: Millis,
    ) -> Result<Option<Alert>, StoreError> {
        let together = known.together;
        let ids = [row.id];
        let mut service_json = None;
        if let Some(service_id) = row.service() {
            let event = row.event.as_str();
            if let Some(end) = windows.until(service_id) {
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
                    let again = end.min(now + HOLD_RECHECK.as_millis() as i64);
                    self.store.alerts_hold(&ids, end, again, &why).await?;
                }
                return Ok(None);
            }
            let service = match known.services {
                Some(services) => services.get(&service_id.get()).cloned(),
                None => self.store.get_service(service_id).await?,
            };
            let channel = row.channel();
            match event {
                // A held `down` (or `degraded`) whose service is no longer
                // DOWN (DEGRADED) when its window ends, or which an `up`
                // followed, is old news: dropped, with the `up`.
                "down" | "degraded" if row.held_until.is_some() => {
                    let (still, why) = if event == "down" {
                        (Status::Down, RECOVERED_IN_MAINTENANCE)
                    } else {
                        (Status::Degraded, plan::NO_LONGER_DEGRADED)
                    };
                    let over = service.as_ref().is_some_and(|s| s.last_status != still)
                        || self
                            .store
                            .neighbour_alert(service_id, channel, "up", row.scheduled_at, true)
                            .await?
                            .is_some();
                    if over {
                        self.store.alerts_failed(&ids, why, false).await?;
                        return Ok(None);
                    }
                }
                "up" | "reminder" => {
                    if event == "reminder"
                        && service
                            .as_ref()
                            .is_none_or(|s| s.last_status != Status::Down)
                    {
                        let why = match service {
                            Some(_) => "not sent: the service is no longer DOWN",
                            None => "not sent: the service was deleted",
                        };
                        self.store.alerts_failed(&ids, why, false).await?;
                        return Ok(None);
                    }
                    let (follows, opened) = self.follows(row, service_id, channel).await?;
                    match follows {
                        // A held down (degraded) that this up follows is
                        // dropped when it is looked at (here is the up that
                        // ends it), so the up goes too, even when both are in
                        // one storm message and the down was read before it
                        // was dropped. An `up` it follows may still be sent.
                        Some(before)
                            if event == "up"
                                && opened
                                && before.state == "pending"
                                && before.held =>
                        {
                            self.store
                                .alerts_failed(&ids, RECOVERED_IN_MAINTENANCE, false)
                                .await?;
                            return Ok(None);
                        }
                        Some(before)
                            if before.state == "pending" && !together.contains(&before.id) =>
                        {
                            self.store
                                .alerts_defer(
                                    &ids,
                                    before.next_attempt_at.max(now) + 1,
                                    "waiting: the alert this follows is not sent yet",
                                )
                                .await?;
                            return Ok(None);
                        }
                        Some(before)
                            if event == "up"
                                && before.state == "failed"
                                && plan::dropped_at_window_end(before.last_error.as_deref()) =>
                        {
                            self.store
                                .alerts_failed(&ids, RECOVERED_IN_MAINTENANCE, false)
                                .await?;
                            return Ok(None);
                        }
                        _ => {}
                    }
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

    /// The alert an `up` or a reminder comes after in its lane, and whether
    /// that one opened what the `up` ends (a `down` or `degraded`, not an
    /// `up`). A reminder and an `up` from DOWN follow the `down` that began
    /// the outage. An `up` from DEGRADED follows what began the DEGRADED
    /// spell: a `degraded` (from UP), or an `up` (back from DOWN, but
    /// slow), whichever is newer (ids grow with a service's changes: the
    /// recorder writes them in order, under the service's row lock).
    async fn follows(
        &self,
        row: &OutboxRow,
        service: ServiceId,
        channel: ChannelId,
    ) -> Result<(Option<Earlier>, bool), StoreError> {
        let before = |event: &'static str| {
            self.store
                .neighbour_alert(service, channel, event, row.scheduled_at, false)
        };
        if row.event != "up" || row.old_status != Status::Degraded.as_str() {
            return Ok((before("down").await?, true));
        }
        let degraded = before("degraded").await?;
        let up = before("up").await?;
        Ok(match (degraded, up) {
            (Some(d), Some(u)) if u.id > d.id => (Some(u), false),
            (None, Some(u)) => (Some(u), false),
            (d, _) => (d, true),
        })
    }
}
