//! A client's filters from the `/ws` URL: `?service_id=1,2` limits the
//! snapshot and the events to those services, `?tag=prod` to the services
//! with that tag, `?events=status_change,...` limits the events to those
//! types (the snapshot and a resync are always sent). `service_id` and
//! `events` take a comma list, and may be repeated (the lists add up);
//! `tag` is one tag, given once. Filters given together all apply.
//!
//! `check` and `status_change` events carry no tags, so a tag filter keeps
//! the set of services that have the tag: filled from the snapshot (and
//! each fresh one after a resync), and kept up by `service_created`,
//! `service_updated` and `service_deleted`, which it reads whatever events
//! the client asked for. A `service_updated` that takes the tag away is
//! still sent (the service's last event for this client, so a dashboard
//! drops it), and so is the `service_deleted` of a tagged service.
//!
//! Events reach the feed as JSON text shared by every client, so a filter
//! judges the text: the type and service id are read from where the bus's
//! encoding puts them (`{"type":"check","service_id":8,...`), and only an
//! event laid out otherwise (`service_created` and `service_updated`, whose
//! id is inside `service`) is parsed. A client without filters pays nothing.

use crate::domain::validate::{FieldError, check_tag};
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
    /// Only services with this tag (`None`: any).
    tag: Option<String>,
    /// With a tag: the services known to have it.
    tagged: HashSet<ServiceId>,
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
                "tag" if filter.tag.is_some() => {
                    errors.push(FieldError::new("tag", "may be given only once"));
                }
                "tag" => match check_tag(&value) {
                    Ok(()) => filter.tag = Some(value.into_owned()),
                    Err(message) => errors.push(FieldError::new("tag", message)),
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
        self.ids.is_none() && self.types.is_none() && self.tag.is_none()
    }

    /// Whether the client is limited to some services.
    pub fn limits_services(&self) -> bool {
        self.ids.is_some() || self.tag.is_some()
    }

    /// Whether `service` belongs in the client's snapshot. Every service of
    /// a snapshot passes through here, so with a tag filter this is also
    /// where the set of tagged services is (re)learnt.
    pub fn shows(&mut self, service: &Service) -> bool {
        let tag_ok = match &self.tag {
            None => true,
            Some(tag) => {
                let has = service.tags.contains(tag);
                if has {
                    self.tagged.insert(service.id);
                } else {
                    self.tagged.remove(&service.id);
                }
                has
            }
        };
        tag_ok
            && self
                .ids
                .as_ref()
                .is_none_or(|ids| ids.contains(&service.id))
    }

    /// Whether the event in `text` (as the bus carries it) goes to the
    /// client. An event it cannot read goes nowhere but to unfiltered
    /// clients, who get everything. With a tag filter, service events
    /// update the set of tagged services first, whether they are sent or
    /// not.
    pub fn passes(&mut self, text: &str) -> bool {
        if self.is_everything() {
            return true;
        }
        let Some(head) = Head::of(text) else {
            return false;
        };
        let mut id = None;
        if let Some(tag) = &self.tag {
            let tagged = match head.kind {
                "service_created" | "service_updated" => {
                    let Some((sid, has)) = changed_service(text, tag) else {
                        return false;
                    };
                    id = Some(sid);
                    let had = if has {
                        !self.tagged.insert(sid)
                    } else {
                        self.tagged.remove(&sid)
                    };
                    has || had
                }
                "service_deleted" => {
                    id = head.service_id(text);
                    id.is_some_and(|sid| self.tagged.remove(&sid))
                }
                _ => {
                    id = head.service_id(text);
                    id.is_some_and(|sid| self.tagged.contains(&sid))
                }
            };
            if !tagged {
                return false;
            }
        }
        if let Some(types) = self.types {
            match EVENT_TYPES.iter().position(|t| *t == head.kind) {
                Some(i) if types & (1 << i) != 0 => {}
                _ => return false,
            }
        }
        match &self.ids {
            None => true,
            Some(ids) => id
                .or_else(|| head.service_id(text))
                .is_some_and(|id| ids.contains(&id)),
        }
    }
}

/// The id of the service in a `service_created` or `service_updated`
/// event, and whether it has `tag`.
fn changed_service(text: &str, tag: &str) -> Option<(ServiceId, bool)> {
    #[derive(serde::Deserialize)]
    struct Event {
        service: Shown,
    }
    #[derive(serde::Deserialize)]
    struct Shown {
        id: ServiceId,
        #[serde(default)]
        tags: Vec<String>,
    }
    let event: Event = serde_json::from_str(text).ok()?;
    let has = event.service.tags.iter().any(|t| t == tag);
    Some((event.service.id, has))
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
            region: None,
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
        let mut f = Filter::parse("access_token=hm_x").unwrap();
        assert!(f.is_everything());
        assert!(f.passes("anything"));
    }

    #[test]
    fn service_ids_limit_every_kind_of_event() {
        let mut f = Filter::parse("service_id=1,2&service_id=12").unwrap();
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
        let mut f = Filter::parse("events=status_change").unwrap();
        assert!(!f.passes(&check(1)));
        assert!(!f.passes(&created(1)));
        assert!(!f.passes(&deleted(1)));
        let mut f = Filter::parse("events=service_created,service_deleted&service_id=1").unwrap();
        assert!(f.passes(&created(1)));
        assert!(f.passes(&deleted(1)));
        assert!(!f.passes(&deleted(2)));
        assert!(!f.passes(&check(1)));
    }

    fn service(id: i64, tags: &[&str]) -> Service {
        let mut s = crate::http::ws::snapshot::tests::service(id);
        s.tags = tags.iter().map(|t| (*t).to_owned()).collect();
        s
    }

    fn updated(id: i64, tags: &[&str]) -> String {
        text(&Event::ServiceUpdated {
            service: serde_json::json!({"id": id, "name": "a", "tags": tags}),
        })
    }

    fn status_change(id: i64) -> String {
        text(&Event::StatusChange {
            service_id: ServiceId(id),
            name: "a".into(),
            old_status: crate::domain::Status::Up,
            new_status: crate::domain::Status::Down,
            latency: 1,
            changed_at: 0,
        })
    }

    #[test]
    fn a_tag_limits_the_snapshot_and_follows_services_through_their_events() {
        let mut f = Filter::parse("tag=prod").unwrap();
        assert!(f.limits_services());
        assert!(f.shows(&service(1, &["prod", "api"])));
        assert!(!f.shows(&service(2, &["staging"])));
        assert!(!f.shows(&service(3, &["Prod"])), "tags are case-sensitive");
        assert!(f.passes(&check(1)));
        assert!(!f.passes(&check(2)));
        assert!(!f.passes(&check(3)));
        // Service 2 gains the tag: its update and then its checks are sent.
        assert!(f.passes(&updated(2, &["staging", "prod"])));
        assert!(f.passes(&check(2)));
        // Service 1 loses it: the update that says so is its last event.
        assert!(f.passes(&updated(1, &["api"])));
        assert!(!f.passes(&check(1)));
        assert!(!f.passes(&updated(1, &["api", "x"])));
        // A new tagged service, then deleted; an untagged one never shows.
        assert!(f.passes(&text(&Event::ServiceCreated {
            service: serde_json::json!({"id": 9, "tags": ["prod"]}),
        })));
        assert!(f.passes(&check(9)));
        assert!(f.passes(&deleted(9)));
        assert!(!f.passes(&check(9)));
        assert!(!f.passes(&created(10)));
        assert!(!f.passes(&deleted(10)));
        // A fresh snapshot (after a resync) relearns the set.
        assert!(!f.shows(&service(2, &[])));
        assert!(!f.passes(&check(2)));
    }

    #[test]
    fn a_tag_with_other_filters_keeps_learning_from_events_it_does_not_send() {
        let mut f = Filter::parse("tag=prod&events=status_change&service_id=1,2").unwrap();
        assert!(f.shows(&service(1, &["prod"])));
        assert!(!f.shows(&service(2, &[])));
        assert!(!f.shows(&service(3, &["prod"])), "not among the ids");
        assert!(!f.passes(&updated(2, &["prod"])), "not an asked-for type");
        assert!(f.passes(&status_change(2)), "but it was learnt");
        assert!(f.passes(&status_change(1)));
        assert!(
            !f.passes(&status_change(3)),
            "tagged, but not among the ids"
        );
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
            ("tag=", "tag"),
            ("tag=a%20b", "tag"),
            ("tag=a&tag=b", "tag"),
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
