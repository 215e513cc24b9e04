//! The sender's pure rules: backoff, reminder slots, storm grouping, and
//! turning an outbox row into an [`Alert`].

use crate::alert::Alert;
use crate::domain::outbox::{AlertEvent, AlertPayload, CheckSnapshot};
use crate::domain::time::{Millis, to_rfc3339};
use crate::domain::{ServiceId, Status};
use crate::store::OutboxRow;
use std::time::Duration;

/// First retry delay; it doubles per attempt.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// Longest retry delay (a `Retry-After` included).
pub const BACKOFF_CAP: Duration = Duration::from_secs(600);

/// The delay before attempt `attempts + 1`, `attempts` (>= 1) having
/// failed: 1 s, 2 s, 4 s ... capped at 10 min, each within ±20 % (`jitter`
/// in 0..1 picks where), so alerts that failed together do not all come
/// back in the same instant. A receiver's `Retry-After` is honoured when it
/// asks for longer, within the cap.
pub fn backoff(attempts: i32, jitter: f64, retry_after: Option<Duration>) -> Duration {
    let exp = attempts.clamp(1, 30) - 1;
    let base = BACKOFF_FIRST
        .saturating_mul(1u32 << exp.min(20))
        .min(BACKOFF_CAP);
    let factor = 0.8 + 0.4 * jitter.clamp(0.0, 1.0);
    let jittered = base.mul_f64(factor).min(BACKOFF_CAP);
    match retry_after {
        Some(after) => jittered.max(after).min(BACKOFF_CAP),
        None => jittered,
    }
}

/// The newest reminder slot due at `now` for a service DOWN since
/// `down_since`, reminded every `every_s` seconds: `down_since + k *
/// every_s` for the largest k >= 1 not after `now`. Slots are fixed by the
/// outage's start, so a restarted sender computes the same ones (and the
/// outbox's unique key keeps each once); slots missed while no sender ran
/// are not sent late one by one, only the newest.
pub fn reminder_slot(down_since: Millis, every_s: i64, now: Millis) -> Option<Millis> {
    if every_s <= 0 {
        return None;
    }
    let every = every_s.saturating_mul(1000);
    let k = now.saturating_sub(down_since) / every;
    (k >= 1).then(|| down_since + k * every)
}

/// Whether a channel is in a storm: more than `threshold` status changes
/// were written for it within the window (`recent`, those due now
/// included). In a storm the channel gets at most one message per
/// [`super::STORM_GAP`], listing every alert due by then.
pub fn is_storm(recent: i64, threshold: usize) -> bool {
    recent > threshold as i64
}

/// The last_error of a `down` held by a maintenance window whose service
/// recovered before the window ended (and of the `up` that goes with it).
pub const RECOVERED_IN_MAINTENANCE: &str =
    "not sent: held by a maintenance window; the service recovered before it ended";

/// The last_error of a `degraded` held by a maintenance window whose
/// service was no longer DEGRADED when the window ended (the `up` that
/// would have said it ended is dropped with [`RECOVERED_IN_MAINTENANCE`]).
pub const NO_LONGER_DEGRADED: &str =
    "not sent: held by a maintenance window; the service was no longer DEGRADED when it ended";

/// Whether an alert was dropped at a window's end because what it told
/// was over: the alerts that follow it in its lane go with it.
pub fn dropped_at_window_end(last_error: Option<&str>) -> bool {
    matches!(
        last_error,
        Some(RECOVERED_IN_MAINTENANCE | NO_LONGER_DEGRADED)
    )
}

/// The prefix of `last_error` while an alert is held by a window (for
/// people: the hold itself is the `held_until` column).
pub const HELD: &str = "held: ";

/// The alert an outbox row stands for. `service` is the service as the API
/// shows it now, if it still exists.
pub fn alert_of(row: &OutboxRow, service: Option<serde_json::Value>) -> Result<Alert, String> {
    let event: AlertEvent = row.event.parse()?;
    let payload: AlertPayload = serde_json::from_str(&row.payload)
        .map_err(|e| format!("the alert's payload is unreadable: {e}"))?;
    let service_id = ServiceId(row.service_id.unwrap_or(0));
    let status = |s: &str| s.parse::<Status>().unwrap_or(Status::Pending);
    let at = match (&payload.check, event) {
        (Some(check), _) => check.checked_at,
        // A reminder's slot; a test's own time.
        (None, _) => row.scheduled_at,
    };
    let service = service
        .unwrap_or_else(|| serde_json::json!({"id": row.service_id, "name": payload.service_name}));
    Ok(Alert {
        id: row.id,
        event,
        service_id,
        service_name: payload.service_name.clone(),
        service,
        old_status: status(&row.old_status),
        new_status: status(&row.new_status),
        at,
        since: payload.since.unwrap_or(at),
        check: payload
            .check
            .as_ref()
            .map(|c| check_json(c, row.service_id)),
        error: payload.check.and_then(|c| c.error),
        region: payload.region,
    })
}

/// A deciding check as the API shows health logs.
fn check_json(check: &CheckSnapshot, service_id: Option<i64>) -> serde_json::Value {
    serde_json::json!({
        "id": check.id,
        "service_id": service_id,
        "status": check.status,
        "latency_ms": check.latency_ms,
        "status_code": check.status_code,
        "error": check.error,
        "checked_at": to_rfc3339(check.checked_at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(d: Duration) -> f64 {
        d.as_secs_f64()
    }

    #[test]
    fn backoff_doubles_from_one_second_to_ten_minutes() {
        let mid: Vec<f64> = (1..=12).map(|n| secs(backoff(n, 0.5, None))).collect();
        assert_eq!(
            mid,
            [
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 600.0, 600.0
            ]
        );
        assert_eq!(secs(backoff(1_000, 0.5, None)), 600.0);
    }

    #[test]
    fn backoff_jitters_within_a_fifth_and_never_over_the_cap() {
        assert!((secs(backoff(3, 0.0, None)) - 3.2).abs() < 1e-9);
        assert!((secs(backoff(3, 1.0, None)) - 4.8).abs() < 1e-9);
        assert_eq!(secs(backoff(11, 1.0, None)), 600.0);
    }

    #[test]
    fn retry_after_is_honoured_when_longer_within_the_cap() {
        let after = |s| Some(Duration::from_secs(s));
        assert_eq!(secs(backoff(1, 0.5, after(30))), 30.0);
        assert_eq!(secs(backoff(5, 0.5, after(3))), 16.0);
        assert_eq!(secs(backoff(1, 0.5, after(86_400))), 600.0);
    }

    #[test]
    fn reminder_slots_count_from_the_outage_start() {
        let down = 1_000_000;
        assert_eq!(reminder_slot(down, 60, down + 59_999), None);
        assert_eq!(reminder_slot(down, 60, down + 60_000), Some(down + 60_000));
        assert_eq!(reminder_slot(down, 60, down + 61_000), Some(down + 60_000));
        // Slots missed while no sender ran: only the newest.
        assert_eq!(
            reminder_slot(down, 60, down + 3_600_500),
            Some(down + 3_600_000)
        );
        assert_eq!(reminder_slot(down, 0, down + 3_600_000), None);
        // A clock behind the outage's start: nothing.
        assert_eq!(reminder_slot(down, 60, down - 5), None);
    }

    #[test]
    fn a_storm_is_more_than_the_threshold() {
        assert!(!is_storm(0, 20));
        assert!(!is_storm(20, 20));
        assert!(is_storm(21, 20));
        assert!(is_storm(1, 0));
    }

    fn row(event: &str, payload: AlertPayload) -> OutboxRow {
        OutboxRow {
            id: 7,
            service_id: Some(3),
            channel_id: 1,
            event: event.into(),
            old_status: "UP".into(),
            new_status: "DOWN".into(),
            scheduled_at: 5_000,
            payload: serde_json::to_string(&payload).unwrap(),
            attempts: 0,
            last_error: None,
            created_at: 6_000,
            next_attempt_at: 6_000,
            held_until: None,
            first_attempt_at: None,
            group_id: None,
        }
    }

    #[test]
    fn an_alert_is_built_from_its_frozen_payload() {
        let payload = AlertPayload {
            service_name: "api".into(),
            since: Some(4_000),
            check: Some(CheckSnapshot {
                id: Some(99),
                status: Status::Down,
                latency_ms: 12,
                status_code: Some(503),
                error: Some("status: unexpected status 503".into()),
                checked_at: 5_100,
                scheduled_at: 5_000,
            }),
            region: None,
        };
        let a = alert_of(&row("down", payload), None).unwrap();
        assert_eq!(a.event, AlertEvent::Down);
        assert_eq!(a.service_name, "api");
        assert_eq!(a.service, serde_json::json!({"id": 3, "name": "api"}));
        assert_eq!((a.at, a.since), (5_100, 4_000));
        assert_eq!(a.reason(), Some("status"));
        assert_eq!(a.check.as_ref().unwrap()["id"], 99);
        assert_eq!(a.check.as_ref().unwrap()["status"], "DOWN");
        assert_eq!(a.new_status, Status::Down);

        let reminder = AlertPayload {
            service_name: "api".into(),
            since: Some(1_000),
            check: None,
            region: None,
        };
        let a = alert_of(
            &row("reminder", reminder),
            Some(serde_json::json!({"id": 3})),
        )
        .unwrap();
        assert_eq!((a.at, a.since), (5_000, 1_000));
        assert!(a.check.is_none());

        let mut bad = row("down", AlertPayload::default());
        bad.payload = "{".into();
        assert!(alert_of(&bad, None).is_err());
        assert!(alert_of(&row("storm", AlertPayload::default()), None).is_err());
    }
}
