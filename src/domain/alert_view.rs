//! The alert outbox as users see it (`GET /alerts`): one entry per alert,
//! with its delivery state, and the filters a listing takes.

use super::time::{Millis, serde_rfc3339};
use super::{ChannelId, ServiceId};
use serde::Serialize;
use std::str::FromStr;

/// Where an alert is in its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// Not delivered yet (waiting for its first or next attempt).
    Pending,
    /// Delivered.
    Sent,
    /// Given up on (retries ran out, or its channel was deleted).
    Failed,
}

impl AlertState {
    /// Every state, in the order they are listed to users.
    pub const ALL: [AlertState; 3] = [AlertState::Pending, AlertState::Sent, AlertState::Failed];

    /// The state as the API and the store spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Pending => "pending",
            AlertState::Sent => "sent",
            AlertState::Failed => "failed",
        }
    }
}

impl FromStr for AlertState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AlertState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("must be one of pending, sent, failed (got {s:?})"))
    }
}

/// One alert as `GET /alerts` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AlertView {
    /// The alert's id, also its delivery id (`X-Healthmon-Delivery`).
    pub id: i64,
    /// The service it is about; `null` for a channel test.
    pub service_id: Option<ServiceId>,
    /// Where it goes.
    pub channel_id: ChannelId,
    /// `down`, `up`, `degraded`, `reminder`, `test`. Kept as stored, so an
    /// event this version does not know still lists.
    pub event: String,
    /// `pending`, `sent` or `failed`.
    pub state: String,
    /// Delivery attempts made so far.
    pub attempts: i32,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    /// When the alert was written.
    #[serde(serialize_with = "serde_rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
    /// When it was delivered.
    #[serde(serialize_with = "serde_rfc3339::option::serialize")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub sent_at: Option<Millis>,
}

/// Which alerts a listing shows; `None` is any.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlertFilter {
    /// Only this service's.
    pub service_id: Option<ServiceId>,
    /// Only this channel's.
    pub channel_id: Option<ChannelId>,
    /// Only those in this state.
    pub state: Option<AlertState>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_back_and_anything_else_is_refused() {
        for state in AlertState::ALL {
            assert_eq!(state.as_str().parse::<AlertState>(), Ok(state));
        }
        assert!("PENDING".parse::<AlertState>().is_err());
        assert!("".parse::<AlertState>().is_err());
    }

    #[test]
    fn an_alert_shows_times_as_rfc3339_and_a_test_without_service() {
        let v = AlertView {
            id: 7,
            service_id: None,
            channel_id: ChannelId(2),
            event: "test".into(),
            state: "pending".into(),
            attempts: 0,
            last_error: None,
            created_at: 1000,
            sent_at: None,
        };
        assert_eq!(
            serde_json::to_value(&v).unwrap(),
            serde_json::json!({"id": 7, "service_id": null, "channel_id": 2, "event": "test",
                "state": "pending", "attempts": 0, "last_error": null,
                "created_at": "1970-01-01T00:00:01.000Z", "sent_at": null})
        );
    }
}
