//! A service's health status and the rule for what counts as a change.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The health of a service as the API and WebSocket show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// Registered, not checked yet.
    Pending,
    /// The last check succeeded.
    Up,
    /// The check passed but crossed a soft limit (slower than
    /// `degraded_latency_ms`, a certificate expiring within
    /// `cert_expiry_days`). It counts as up: for thresholds, uptime and
    /// alerts' "resolved".
    Degraded,
    /// The last check failed.
    Down,
}

impl Status {
    /// The wire and storage spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::Up => "UP",
            Status::Degraded => "DEGRADED",
            Status::Down => "DOWN",
        }
    }

    /// Whether moving from `self` to `new` is a state change worth an event.
    ///
    /// The first result after registration (PENDING -> UP/DOWN) counts: a
    /// service that is down from the start must be announced too.
    pub fn changes_to(self, new: Status) -> bool {
        self != new && new != Status::Pending
    }

    /// Whether a check with this outcome passed: UP or DEGRADED. Noise
    /// control counts passing and failing rounds, not the two shades of up.
    pub fn is_up(self) -> bool {
        matches!(self, Status::Up | Status::Degraded)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status string that is not one of PENDING, UP, DEGRADED, DOWN.
#[derive(Debug, thiserror::Error)]
#[error("unknown status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for Status {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "PENDING" => Ok(Status::Pending),
            "UP" => Ok(Status::Up),
            "DEGRADED" => Ok(Status::Degraded),
            "DOWN" => Ok(Status::Down),
            other => Err(UnknownStatus(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_real_flips_are_changes() {
        assert!(Status::Up.changes_to(Status::Down));
        assert!(Status::Down.changes_to(Status::Up));
        assert!(Status::Pending.changes_to(Status::Up));
        assert!(Status::Pending.changes_to(Status::Down));
        assert!(!Status::Up.changes_to(Status::Up));
        assert!(!Status::Down.changes_to(Status::Down));
        assert!(!Status::Up.changes_to(Status::Pending));
    }

    #[test]
    fn parses_what_it_prints() {
        for s in [Status::Pending, Status::Up, Status::Degraded, Status::Down] {
            assert_eq!(s.as_str().parse::<Status>().ok(), Some(s));
        }
        assert!("up".parse::<Status>().is_err());
    }
}
