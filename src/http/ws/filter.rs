//! A client's filters from the `/ws` URL: `?service_id=1,2` limits the
//! snapshot and the events to those services, `?events=status_change,...`
//! limits the events to those types (the snapshot and a resync are always
//! sent). Both take a comma list, and may be repeated (the lists add up).
//!
//! Events reach the feed as JSON text shared by every client, so a filter
//! judges the text: the type and service id are read from where the bus's
//! encoding puts them (`{"type":"check","service_id":8,...`), and only an
//! event laid out otherwise (`service_created` and `service_updated`, whose
//! id is inside `service`) is parsed. A client without filters pays nothing.

use crate::domain::validate::FieldError;
use crate::domain::{Service, ServiceId};
use std::collections::HashSet;

/// Most service ids one client may filter on; the list is checked for every
/// event, and a longer one is better served by no filter.
pub const MAX_SERVICE_IDS: usize = 1000;

/// The event types a client may ask for with `?events=`.
pub const EVENT_TYPES: [&str; 5] = [
    "check",
    "status_change",
    "service_created",
    "service_updated",
    "service_deleted",
];

/// What one client is sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only these services (`None`: every service).
    ids: Option<HashSet<ServiceId>>,
    /// Only these event types, as bits by their place in [`EVENT_TYPES`]
    /// (`None`: every type).
    types: Option<u8>,
}

impl Filter {
    /// The filters in a `/ws` query string; other parameters (the access
    /// token) are left alone. Errors name the parameter.
    pub fn parse(query: &str) -> Result<Self, Vec<FieldError>> {
        let mut filter = Filter::default();
        let mut errors = Vec::new();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "service_id" => match service_ids(&value) {
                    Ok(ids) => {
                        let all = filter.ids.get_or_insert_with(HashSet::new);
                        all.extend(ids);
                        if all.len() > MAX_SERVICE_IDS {
                            errors.push(FieldError::new(
                                "service_id",
                                format!("at most {MAX_SERVICE_IDS} ids"),
                            ));
                        }
                    }
                    Err(e) => errors.push(e),
                },
                "events" => match event_types(&value) {
                    Ok(bits) => *filter.types.get_or_insert(0) |= bits,
                    Err(e) => errors.push(e),
                },
                _ => {}
            }
        }
        errors.dedup();
        if errors.is_empty() {
            Ok(filter)
        } else {
            Err(errors)
        }
    }

    /// Whether the client gets everything.
    pub fn is_everything(&self) -> bool {
        self.ids.is_none() && self.types.is_none()
    }

    /// Whether the client is limited to some services.
    pub fn limits_services(&self) -> bool {
        self.ids.is_some()
    }

    /// Whether `service` belongs in the client's snapshot.
    pub fn shows(&self, service: &Service) -> bool {
        self.ids
            .as_ref()
            .is_none_or(|ids| ids.contains(&service.id))
    }

    /// Whether the event in `text` (as the bus carries it) goes to the
    /// client. An event it cannot read goes nowhere but to unfiltered
    /// clients, who get everything.
    pub fn passes(&self, text: &str) -> bool {
        if self.is_everything() {
            return true;
        }
        let Some(head) = Head::of(text) else {
            return false;
        };
        if let Some(types) = self.types {
            match EVENT_TYPES.iter().position(|t| *t == head.kind) {
                Some(i) if types & (1 << i) != 0 => {}
                _ => return false,
            }
        }
        match &self.ids {
            None => true,
            Some(ids) => head.service_id(text).is_some_and(|id| ids.contains(&id)),
        }
    }
}

fn service_ids(value: &str) -> Result<Vec<ServiceId>, FieldError> {
    value
        .split(',')
        .map(|part| match part.trim().parse::<i64>() {
            Ok(id) if id >= 1 => Ok(ServiceId(id)),
            _ => Err(FieldError::new(
                "service_id",
                format!("must be a comma list of service ids, not {part:?}"),
            )),
        })
        .collect()
}

fn event_types(value: &str) -> Result<u8, FieldError> {
    let mut bits = 0u8;
    for part in value.split(',') {
        let part = part.trim();
        match EVENT_TYPES.iter().position(|t| *t == part) {
            Some(i) => bits |= 1 << i,
            None => {
                return Err(FieldError::new(
                    "events",
                    format!(
                        "unknown event type {part:?}; known: {}",
                        EVENT_TYPES.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(bits)
}

/// The start of an event's text: its type, and where it goes on.
struct Head<'a> {
    kind: &'a str,
    rest: &'a str,
}

impl<'a> Head<'a> {
    fn of(text: &'a str) -> Option<Self> {
        let after = text.strip_prefix(r#"{"type":""#)?;
        let end = after.find('"')?;
        Some(Head {
            kind: &after[..end],
            rest: &after[end + 1..],
        })
    }

    /// The service the event is about: read where the encoding puts it
    /// right after the type, else from the parsed event.
    fn service_id(&self, text: &str) -> Option<ServiceId> {
        if let Some(digits) = self.rest.strip_prefix(r#","service_id":"#) {
            let end = digits
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(digits.len());
            if let Ok(id) = digits[..end].parse() {
                return Some(ServiceId(id));
            }
        }
        #[derive(serde::Deserialize)]
        struct Ids {
            service_id: Option<ServiceId>,
            service: Option<Id>,
        }
        #[derive(serde::Deserialize)]
        struct Id {
            id: ServiceId,
        }
        let ids: Ids = serde_json::from_str(text).ok()?;
        ids.service_id.or(ids.service.map(|s| s.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Event;

    fn text(e: &Event) -> String {
        serde_json::to_string(e).unwrap()
    }

    fn check(id: i64) -> String {
        text(&Event::Check {
            service_id: ServiceId(id),
            name: "a".into(),
            status: crate::domain::Status::Up,
            latency: 1,
            status_code: None,
            error: None,
            checked_at: 0,
        })
    }

    fn created(id: i64) -> String {
        text(&Event::ServiceCreated {
            service: serde_json::json!({"name": "a", "id": id}),
        })
    }

    fn deleted(id: i64) -> String {
        text(&Event::ServiceDeleted {
            service_id: ServiceId(id),
        })
    }

    #[test]
    fn no_filter_passes_everything() {
        let f = Filter::parse("access_token=hm_x").unwrap();
        assert!(f.is_everything());
        assert!(f.passes("anything"));
    }

    #[test]
    fn service_ids_limit_every_kind_of_event() {
        let f = Filter::parse("service_id=1,2&service_id=12").unwrap();
        for id in [1, 2, 12] {
            assert!(f.passes(&check(id)), "check {id}");
            assert!(f.passes(&created(id)), "created {id}");
            assert!(f.passes(&deleted(id)), "deleted {id}");
        }
        for id in [3, 11, 21, 123] {
            assert!(!f.passes(&check(id)), "check {id}");
            assert!(!f.passes(&created(id)), "created {id}");
            assert!(!f.passes(&deleted(id)), "deleted {id}");
        }
    }

    #[test]
    fn event_types_limit_the_types() {
        let f = Filter::parse("events=status_change").unwrap();
        assert!(!f.passes(&check(1)));
        assert!(!f.passes(&created(1)));
        assert!(!f.passes(&deleted(1)));
        let f = Filter::parse("events=service_created,service_deleted&service_id=1").unwrap();
        assert!(f.passes(&created(1)));
        assert!(f.passes(&deleted(1)));
        assert!(!f.passes(&deleted(2)));
        assert!(!f.passes(&check(1)));
    }

    #[test]
    fn bad_values_name_their_parameter() {
        for (query, field) in [
            ("service_id=abc", "service_id"),
            ("service_id=0", "service_id"),
            ("service_id=", "service_id"),
            ("service_id=1,,2", "service_id"),
            ("events=checks", "events"),
            ("events=", "events"),
            ("events=resync", "events"),
        ] {
            let errors = Filter::parse(query).unwrap_err();
            let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
            assert_eq!(fields, [field], "{query}");
        }
        let many: Vec<String> = (1..=MAX_SERVICE_IDS as i64 + 1)
            .map(|i| i.to_string())
            .collect();
        assert!(Filter::parse(&format!("service_id={}", many.join(","))).is_err());
    }
}
