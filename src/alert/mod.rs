//! Alerts: what a status change tells the people on call, and in what form
//! each kind of channel takes it (DESIGN.md, "Alerting").
//!
//! This part is pure: [`channel`] reads and checks a channel's settings
//! (secrets kept write-only), [`render`] turns an [`Alert`] into the exact
//! request or mail a channel receives, and [`sign`] signs webhook bodies.
//! Delivery (the outbox, retries, the sender) builds on it.

pub mod channel;
pub mod deliver;
pub mod mail;
pub mod render;
pub mod sender;
pub mod sign;

use crate::domain::time::Millis;
use crate::domain::{ServiceId, Status};

pub use crate::domain::outbox::RegionNote;

pub use crate::domain::outbox::AlertEvent;

/// One alert, with everything any channel's message names.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// The delivery id: stable across retries, so a receiver can drop a
    /// repeat (`X-Healthmon-Delivery`).
    pub id: i64,
    /// Why it is sent.
    pub event: AlertEvent,
    /// The service's id.
    pub service_id: ServiceId,
    /// The service's name.
    pub service_name: String,
    /// The service as the API shows it (password in its URL as `***`).
    pub service: serde_json::Value,
    /// Status before the change.
    pub old_status: Status,
    /// Status after it.
    pub new_status: Status,
    /// When the change happened.
    pub at: Millis,
    /// Since when the service has been in the state the alert is about (for
    /// `up`: since when it was down, so the outage's length is known).
    pub since: Millis,
    /// The check that decided it, as the API shows health logs.
    pub check: Option<serde_json::Value>,
    /// The deciding check's error, starting with its reason code
    /// (`timeout: ...`, `status: ...`), if it failed.
    pub error: Option<String>,
    /// For `region_impaired`/`region_recovered`: the region and what was
    /// seen of it.
    pub region: Option<RegionNote>,
}

impl Alert {
    /// The reason code of the deciding check's error (`timeout`, `connect`,
    /// ...): the text before the first colon.
    pub fn reason(&self) -> Option<&str> {
        let error = self.error.as_deref()?;
        let (code, _) = error.split_once(':')?;
        let code = code.trim();
        (!code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
            .then_some(code)
    }

    /// One line for a person: "api is DOWN (timeout)", "api is DEGRADED
    /// (latency)", "api is UP again after 12 min", "api is UP again (was
    /// DEGRADED for 12 min)".
    pub fn headline(&self) -> String {
        let name = &self.service_name;
        let reason = match self.reason() {
            Some(reason) => format!(" ({reason})"),
            None => String::new(),
        };
        let lasted = human_duration(self.at - self.since);
        match self.event {
            AlertEvent::Down => format!("{name} is DOWN{reason}"),
            AlertEvent::Up if self.old_status == Status::Degraded => {
                format!("{name} is UP again (was DEGRADED for {lasted})")
            }
            // Passing again after DOWN, but over a soft limit.
            AlertEvent::Up if self.new_status == Status::Degraded => {
                format!("{name} is UP again after {lasted}, but DEGRADED{reason}")
            }
            AlertEvent::Up => format!("{name} is UP again after {lasted}"),
            AlertEvent::Degraded => format!("{name} is DEGRADED{reason}"),
            AlertEvent::Reminder => format!(
                "{name} is still DOWN, for {}",
                human_duration(self.at - self.since)
            ),
            AlertEvent::Test => format!("Test alert from healthmon for {name}"),
            AlertEvent::RegionImpaired => match &self.region {
                Some(r) => format!(
                    "healthmon region {} is impaired: {} of {} services that other regions see UP fail from there; its votes are set aside",
                    r.name, r.failing, r.compared
                ),
                None => "a healthmon region is impaired".to_owned(),
            },
            AlertEvent::RegionRecovered => match &self.region {
                Some(r) => format!(
                    "healthmon region {} recovered: its votes count again",
                    r.name
                ),
                None => "a healthmon region recovered".to_owned(),
            },
        }
    }
}

/// A duration for a person: "45 s", "12 min", "3 h 5 min", "2 d 4 h".
pub fn human_duration(ms: Millis) -> String {
    let s = (ms.max(0) + 500) / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => match (s % 3600) / 60 {
            0 => format!("{} h", s / 3600),
            m => format!("{} h {m} min", s / 3600),
        },
        _ => match (s % 86_400) / 3600 {
            0 => format!("{} d", s / 86_400),
            h => format!("{} d {h} h", s / 86_400),
        },
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A DOWN alert for service 8, "api", down since 10 minutes before.
    pub(crate) fn down_alert() -> Alert {
        Alert {
            id: 42,
            event: AlertEvent::Down,
            service_id: ServiceId(8),
            service_name: "api".into(),
            service: serde_json::json!({"id": 8, "name": "api", "url": "https://api.example/health"}),
            old_status: Status::Up,
            new_status: Status::Down,
            at: 1_700_000_600_000,
            since: 1_700_000_600_000,
            check: Some(serde_json::json!({"status": "DOWN", "latency_ms": 5000})),
            error: Some("timeout: no complete response within 5000 ms".into()),
            region: None,
        }
    }

    #[test]
    fn the_reason_code_is_the_errors_first_word() {
        let mut a = down_alert();
        assert_eq!(a.reason(), Some("timeout"));
        a.error = Some("blocked: a redirect to a file: URL".into());
        assert_eq!(a.reason(), Some("blocked"));
        // Not a reason code: an old-style error without one.
        a.error = Some("connection refused".into());
        assert_eq!(a.reason(), None);
        a.error = Some("TLS error: UnknownIssuer".into());
        assert_eq!(a.reason(), None);
    }

    #[test]
    fn headlines_say_what_changed_and_for_how_long() {
        let mut a = down_alert();
        assert_eq!(a.headline(), "api is DOWN (timeout)");
        a.event = AlertEvent::Up;
        a.since = a.at - 754_000;
        assert_eq!(a.headline(), "api is UP again after 12 min");
        a.event = AlertEvent::Reminder;
        a.since = a.at - 3 * 3_600_000 - 5 * 60_000;
        assert_eq!(a.headline(), "api is still DOWN, for 3 h 5 min");
    }

    #[test]
    fn degraded_headlines_name_the_reason_and_how_long_it_lasted() {
        let mut a = down_alert();
        a.event = AlertEvent::Degraded;
        a.new_status = Status::Degraded;
        a.error = Some("latency: 2300 ms, over degraded_latency_ms 1000".into());
        assert_eq!(a.headline(), "api is DEGRADED (latency)");
        a.event = AlertEvent::Up;
        a.old_status = Status::Down;
        a.since = a.at - 754_000;
        assert_eq!(
            a.headline(),
            "api is UP again after 12 min, but DEGRADED (latency)"
        );
        a.old_status = Status::Degraded;
        a.new_status = Status::Up;
        a.error = None;
        assert_eq!(a.headline(), "api is UP again (was DEGRADED for 12 min)");
    }

    #[test]
    fn durations_read_as_a_person_would_say_them() {
        assert_eq!(human_duration(0), "0 s");
        assert_eq!(human_duration(59_400), "59 s");
        assert_eq!(human_duration(60_000), "1 min");
        assert_eq!(human_duration(7_200_000), "2 h");
        assert_eq!(human_duration(90_000_000), "1 d 1 h");
        assert_eq!(human_duration(-5), "0 s");
    }
}
