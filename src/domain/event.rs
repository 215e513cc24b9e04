//! Messages that fan out: events for WebSocket clients, and schedule updates
//! for the scheduler.

use super::service::{ServiceId, ServiceSpec};
use super::status::Status;
use super::time::{Millis, serde_rfc3339};
use serde::{Deserialize, Serialize};

/// An event pushed to every WebSocket client, in the contract's JSON shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A check was recorded.
    Check {
        /// The service checked.
        service_id: ServiceId,
        /// Its name at the time.
        name: String,
        /// UP, DEGRADED or DOWN.
        status: Status,
        /// Latency in milliseconds.
        latency: i64,
        /// HTTP status, when a response arrived.
        status_code: Option<u16>,
        /// What went wrong (DOWN) or which soft limit was crossed
        /// (DEGRADED), starting with its reason code.
        error: Option<String>,
        /// When the check finished (RFC 3339).
        #[serde(
            serialize_with = "serde_rfc3339::serialize",
            deserialize_with = "de_rfc3339"
        )]
        checked_at: Millis,
        /// For a regional service, the region whose vote this check is
        /// (absent for the round's verdict and for other services).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        region: Option<String>,
    },
    /// A service's status flipped.
    StatusChange {
        /// The service.
        service_id: ServiceId,
        /// Its name at the time.
        name: String,
        /// Status before.
        old_status: Status,
        /// Status now.
        new_status: Status,
        /// Latency of the check that flipped it.
        latency: i64,
        /// When the flipping check finished (RFC 3339).
        #[serde(
            serialize_with = "serde_rfc3339::serialize",
            deserialize_with = "de_rfc3339"
        )]
        changed_at: Millis,
    },
    /// A service was registered: `service` is as `POST /services` answers
    /// (secrets as `***`, with `in_maintenance`, never a push URL).
    ServiceCreated {
        /// The service as the REST API shows it. Kept as JSON: the shown
        /// form hides secrets, so it cannot be read back into a service.
        service: serde_json::Value,
    },
    /// A service's settings changed (PUT, PATCH, pause, resume): `service`
    /// is as the REST API shows it after the change.
    ServiceUpdated {
        /// The service as the REST API shows it.
        service: serde_json::Value,
    },
    /// A service was deleted, with its logs.
    ServiceDeleted {
        /// The service that is gone.
        service_id: ServiceId,
    },
    /// A region's workers see most services fail that other regions see
    /// UP: its votes are set aside (DESIGN.md "Regions and quorum").
    RegionImpaired {
        /// The region.
        region: String,
        /// Services it saw fail while others saw them UP (last 2 minutes).
        failed: u64,
        /// Services others saw UP that it checked too.
        services: u64,
        /// When it was judged impaired (RFC 3339).
        #[serde(
            serialize_with = "serde_rfc3339::serialize",
            deserialize_with = "de_rfc3339"
        )]
        at: Millis,
    },
    /// An impaired region agrees with the others again: its votes count.
    RegionRecovered {
        /// The region.
        region: String,
        /// When it recovered (RFC 3339).
        #[serde(
            serialize_with = "serde_rfc3339::serialize",
            deserialize_with = "de_rfc3339"
        )]
        at: Millis,
    },
}

fn de_rfc3339<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Millis, D::Error> {
    let s = String::deserialize(d)?;
    super::time::parse_rfc3339(&s).ok_or_else(|| serde::de::Error::custom("bad RFC 3339 time"))
}

/// Tells the scheduler that a service's schedule must change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ScheduleUpdate {
    /// Created or changed: schedule with these settings (paused removes it).
    Upsert {
        /// The service.
        id: ServiceId,
        /// Its settings now (boxed: they are much larger than the other
        /// variants, which are sent far more often).
        spec: Box<ServiceSpec>,
    },
    /// Deleted: drop it from the schedule.
    Remove {
        /// The service.
        id: ServiceId,
    },
    /// Its newest round failed but the failure is not confirmed yet: check
    /// it once more at `at` (its retry interval after that round), besides
    /// its normal rounds. Sent by the recorder; losing one only means the
    /// next normal round confirms the failure instead.
    Retry {
        /// The service.
        id: ServiceId,
        /// When the extra check is due.
        #[serde(rename = "at_ms")]
        at: Millis,
    },
    /// A push service was pinged at `at` (the ping's `scheduled_at`): its
    /// missed-ping deadline moves to `interval + grace` after it. Sent by
    /// the API after publishing the ping's result.
    Pinged {
        /// The service.
        id: ServiceId,
        /// When the ping arrived.
        #[serde(rename = "at_ms")]
        at: Millis,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_change_has_the_original_notes_fields() {
        let e = Event::StatusChange {
            service_id: ServiceId(8),
            name: "api".into(),
            old_status: Status::Up,
            new_status: Status::Down,
            latency: 5000,
            changed_at: 0,
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], "status_change");
        assert_eq!(v["service_id"], 8);
        assert_eq!(v["old_status"], "UP");
        assert_eq!(v["new_status"], "DOWN");
        assert_eq!(v["latency"], 5000);
        assert_eq!(v["changed_at"], "1970-01-01T00:00:00.000Z");
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn degraded_travels_as_its_name() {
        let e = Event::StatusChange {
            service_id: ServiceId(8),
            name: "api".into(),
            old_status: Status::Up,
            new_status: Status::Degraded,
            latency: 2300,
            changed_at: 0,
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            (&v["old_status"], &v["new_status"]),
            (&"UP".into(), &"DEGRADED".into())
        );
        assert_eq!(serde_json::from_value::<Event>(v).unwrap(), e);
    }

    #[test]
    fn a_retry_travels_as_json() {
        let u = ScheduleUpdate::Retry {
            id: ServiceId(3),
            at: 5000,
        };
        let v = serde_json::to_value(&u).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"op": "retry", "id": 3, "at_ms": 5000})
        );
        assert_eq!(serde_json::from_value::<ScheduleUpdate>(v).unwrap(), u);
    }

    #[test]
    fn a_ping_travels_as_json() {
        let u = ScheduleUpdate::Pinged {
            id: ServiceId(3),
            at: 5000,
        };
        let v = serde_json::to_value(&u).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"op": "pinged", "id": 3, "at_ms": 5000})
        );
        assert_eq!(serde_json::from_value::<ScheduleUpdate>(v).unwrap(), u);
    }

    #[test]
    fn service_lifecycle_events_have_the_contract_shapes() {
        let service = serde_json::json!({"id": 8, "name": "api", "in_maintenance": false});
        let created = Event::ServiceCreated {
            service: service.clone(),
        };
        let v = serde_json::to_value(&created).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "service_created", "service": service})
        );
        assert_eq!(serde_json::from_value::<Event>(v).unwrap(), created);
        let updated = Event::ServiceUpdated {
            service: service.clone(),
        };
        assert_eq!(
            serde_json::to_value(&updated).unwrap()["type"],
            "service_updated"
        );
        let deleted = Event::ServiceDeleted {
            service_id: ServiceId(8),
        };
        let v = serde_json::to_value(&deleted).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "service_deleted", "service_id": 8})
        );
        assert_eq!(serde_json::from_value::<Event>(v).unwrap(), deleted);
    }

    #[test]
    fn check_event_shape() {
        let e = Event::Check {
            service_id: ServiceId(8),
            name: "api".into(),
            status: Status::Up,
            latency: 12,
            status_code: Some(200),
            error: None,
            checked_at: 1000,
            region: None,
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], "check");
        assert_eq!(v["status"], "UP");
        assert_eq!(v["latency"], 12);
        assert_eq!(v["checked_at"], "1970-01-01T00:00:01.000Z");
    }
}
