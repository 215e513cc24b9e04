//! The gate every alert passes just before it is sent: maintenance holds,
//! the order within a lane (an `up` or a reminder waits for its `down`),
//! and the alerts that are not to be sent at all (recovered during a
//! window, a reminder for a service no longer DOWN).

use super::*;

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
                "down" if row.held_until.is_some() => {
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
                    let down = self
                        .store
                        .neighbour_alert(service_id, channel, "down", row.scheduled_at, false)
                        .await?;
                    match down {
                        // A held down that this up follows is dropped when it
                        // is looked at (its service recovered: here is the
                        // up), so the up goes too, even when both are in one
                        // storm message and the down was read before it was
                        // dropped.
                        Some(down) if event == "up" && down.state == "pending" && down.held => {
                            self.store
                                .alerts_failed(&ids, RECOVERED_IN_MAINTENANCE, false)
                                .await?;
                            return Ok(None);
                        }
                        Some(down) if down.state == "pending" && !together.contains(&down.id) => {
                            self.store
                                .alerts_defer(
                                    &ids,
                                    down.next_attempt_at.max(now) + 1,
                                    "waiting: the down alert this follows is not sent yet",
                                )
                                .await?;
                            return Ok(None);
                        }
                        Some(down)
                            if event == "up"
                                && down.state == "failed"
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
}
