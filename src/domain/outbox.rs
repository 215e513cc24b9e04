//! The alert outbox's records, as the recorder writes them and the sender
//! reads them: which alert, and what its message needs that could change
//! before it is delivered (frozen at the status change).

use super::status::Status;
use super::time::Millis;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// Why an alert is sent (the webhook body's `event`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertEvent {
    /// The service went DOWN.
    Down,
    /// It came back (resolved), after being down for a while.
    Up,
    /// It passed but crossed a soft limit (slow, certificate expiring).
    Degraded,
    /// It is still DOWN; sent every `remind_every_s` of the channel.
    Reminder,
    /// `POST /channels/{id}/test`.
    Test,
    /// A region's votes are set aside: its own network likely fails
    /// (DESIGN.md "Regions and quorum"). Not about one service.
    RegionImpaired,
    /// That region's votes count again.
    RegionRecovered,
}

impl AlertEvent {
    /// The event's name, as the webhook body spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertEvent::Down => "down",
            AlertEvent::Up => "up",
            AlertEvent::Degraded => "degraded",
            AlertEvent::Reminder => "reminder",
            AlertEvent::Test => "test",
            AlertEvent::RegionImpaired => "region_impaired",
            AlertEvent::RegionRecovered => "region_recovered",
        }
    }

    /// Whether the news is bad (colours, priorities, PagerDuty's action).
    pub fn is_problem(self) -> bool {
        matches!(
            self,
            AlertEvent::Down
                | AlertEvent::Reminder
                | AlertEvent::Degraded
                | AlertEvent::RegionImpaired
        )
    }

    /// Whether it is about a region, not a service.
    pub fn is_regional(self) -> bool {
        matches!(
            self,
            AlertEvent::RegionImpaired | AlertEvent::RegionRecovered
        )
    }
}

impl FromStr for AlertEvent {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "down" => AlertEvent::Down,
            "up" => AlertEvent::Up,
            "degraded" => AlertEvent::Degraded,
            "reminder" => AlertEvent::Reminder,
            "test" => AlertEvent::Test,
            "region_impaired" => AlertEvent::RegionImpaired,
            "region_recovered" => AlertEvent::RegionRecovered,
            other => return Err(format!("unknown alert event {other:?}")),
        })
    }
}

/// The alert a status change makes, if any:
///
/// - to DOWN from anything: `down`;
/// - DOWN to UP or DEGRADED: `up` (resolved: it passes again, and how long
///   it was down is told); a DEGRADED one says so in its new status;
/// - UP or PENDING to DEGRADED: `degraded`;
/// - DEGRADED to UP: `up` too, "no longer degraded". Silence was the
///   other choice, but whoever got a `degraded` alert expects to hear that
///   it ended, as after a `down`; PagerDuty needs it to resolve the warning
///   incident the `degraded` opened.
/// - PENDING to UP, a first result that passed: nothing new to tell.
pub fn event_for(old: Status, new: Status) -> Option<AlertEvent> {
    match (old, new) {
        (_, Status::Down) if old != Status::Down => Some(AlertEvent::Down),
        (Status::Down | Status::Degraded, Status::Up) | (Status::Down, Status::Degraded) => {
            Some(AlertEvent::Up)
        }
        (Status::Up | Status::Pending, Status::Degraded) => Some(AlertEvent::Degraded),
        _ => None,
    }
}

/// The deciding check, as it was logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckSnapshot {
    /// The health log's id, when known.
    pub id: Option<i64>,
    /// UP, DEGRADED or DOWN.
    pub status: Status,
    /// Latency in milliseconds.
    pub latency_ms: i64,
    /// HTTP status, when a response arrived.
    pub status_code: Option<u16>,
    /// What went wrong, starting with its reason code.
    pub error: Option<String>,
    /// When the check finished.
    pub checked_at: Millis,
    /// When it was due.
    pub scheduled_at: Millis,
}

/// What an outbox row keeps besides its columns (the `payload` JSON).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AlertPayload {
    /// The service's name at the change.
    pub service_name: String,
    /// Since when the service was in the state the alert is about: for `up`,
    /// when the status it ends began (DOWN, or DEGRADED: so the outage's
    /// length is known); for `reminder`, when it went DOWN; otherwise the
    /// change's own time.
    pub since: Option<Millis>,
    /// The check that decided the change (none for tests and reminders).
    pub check: Option<CheckSnapshot>,
    /// The region a `region_impaired`/`region_recovered` alert is about,
    /// and what was seen (`impaired: 25 of 26 services ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<RegionNote>,
}

/// What a region alert tells.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionNote {
    /// The region's name.
    pub name: String,
    /// Services it checked that another region saw up.
    pub compared: u32,
    /// Those it saw DOWN.
    pub failing: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_and_recovery_alert_and_a_first_up_does_not() {
        assert_eq!(event_for(Status::Up, Status::Down), Some(AlertEvent::Down));
        assert_eq!(
            event_for(Status::Pending, Status::Down),
            Some(AlertEvent::Down)
        );
        assert_eq!(event_for(Status::Down, Status::Up), Some(AlertEvent::Up));
        assert_eq!(event_for(Status::Pending, Status::Up), None);
        assert_eq!(event_for(Status::Down, Status::Down), None);
        assert_eq!(event_for(Status::Up, Status::Up), None);
        assert_eq!(event_for(Status::Down, Status::Pending), None);
    }

    #[test]
    fn degraded_alerts_when_it_starts_and_an_up_when_it_ends() {
        use Status::*;
        assert_eq!(event_for(Up, Degraded), Some(AlertEvent::Degraded));
        assert_eq!(event_for(Pending, Degraded), Some(AlertEvent::Degraded));
        // Passing again after DOWN, if slowly, resolves the outage.
        assert_eq!(event_for(Down, Degraded), Some(AlertEvent::Up));
        assert_eq!(event_for(Degraded, Up), Some(AlertEvent::Up));
        assert_eq!(event_for(Degraded, Down), Some(AlertEvent::Down));
        assert_eq!(event_for(Degraded, Degraded), None);
        // Every real change of status but a first UP alerts someone.
        for old in [Pending, Up, Degraded, Down] {
            for new in [Up, Degraded, Down] {
                let quiet = !old.changes_to(new) || (old, new) == (Pending, Up);
                assert_eq!(event_for(old, new).is_none(), quiet, "{old} -> {new}");
            }
        }
    }

    #[test]
    fn event_names_read_back() {
        for e in [
            AlertEvent::Down,
            AlertEvent::Up,
            AlertEvent::Degraded,
            AlertEvent::Reminder,
            AlertEvent::Test,
            AlertEvent::RegionImpaired,
            AlertEvent::RegionRecovered,
        ] {
            assert_eq!(e.as_str().parse::<AlertEvent>(), Ok(e));
        }
        assert!("storm".parse::<AlertEvent>().is_err());
    }
}
