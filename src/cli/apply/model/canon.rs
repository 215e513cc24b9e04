//! The comparable form of an object as the monitor answers it.

use super::{Canon, Section};
use serde_json::Value;
use std::collections::HashMap;

/// Every field of `section` from `object`, `null` where absent.
pub(super) fn fill(section: Section, object: Value) -> Canon {
    section
        .fields()
        .iter()
        .map(|f| {
            (
                (*f).to_owned(),
                object.get(*f).cloned().unwrap_or(Value::Null),
            )
        })
        .collect()
}

/// The names of the ids in `value` (a list of ids), sorted; an id that
/// names nothing known shows as `#ID`.
fn named(value: Option<&Value>, names: &HashMap<i64, String>) -> Value {
    let mut list: Vec<String> = match value {
        Some(Value::Array(ids)) => ids
            .iter()
            .filter_map(Value::as_i64)
            .map(|id| names.get(&id).cloned().unwrap_or_else(|| format!("#{id}")))
            .collect(),
        _ => Vec::new(),
    };
    list.sort();
    Value::from(list)
}

/// The comparable form of an object as the monitor answered it;
/// `names` maps the ids it refers to (channels of a service, services of
/// a window) to their names.
pub fn canon_of_answer(section: Section, answer: &Value, names: &HashMap<i64, String>) -> Canon {
    let mut canon = fill(section, answer.clone());
    match section {
        Section::Services => {
            canon.insert("channels".into(), named(answer.get("channels"), names));
        }
        Section::Maintenance if answer.get("services").and_then(Value::as_str) != Some("all") => {
            canon.insert("services".into(), named(answer.get("services"), names));
        }
        _ => {}
    }
    canon
}

/// Whether `field` of `canon` holds its default, so `export` leaves it out.
pub fn is_default(section: Section, canon: &Canon, field: &str) -> bool {
    let value = canon.get(field).unwrap_or(&Value::Null);
    let int = |f: &str| canon.get(f).and_then(Value::as_i64);
    match (section, field) {
        (_, "name") => false,
        (Section::Services, "url" | "interval") => false,
        (Section::Services, "timeout") => int("timeout") == int("interval").map(|i| i.min(10)),
        (Section::Services, "retry_interval") => int("retry_interval") == int("interval"),
        (Section::Services, "failure_threshold" | "success_threshold") => value == 1,
        (Section::Services | Section::Channels, "paused" | "all_services") => value == false,
        (Section::Services, "channels" | "tags" | "regions") => {
            value.is_null() || value.as_array().is_some_and(Vec::is_empty)
        }
        (Section::Channels, "remind_every_s") => value == 0,
        // No ids: a window by tag alone.
        (Section::Maintenance, "services") => value.as_array().is_some_and(Vec::is_empty),
        (Section::Channels, "kind" | "config") => false,
        _ => value.is_null(),
    }
}
