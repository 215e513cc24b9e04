//! Each section's checks, by the same rules as the API, and the fields
//! each section compares.

use super::canon::fill;
use super::{Canon, Item, Section};
use crate::domain::channel_spec;
use crate::domain::check_kind::HIDDEN;
use crate::domain::service::redact_url;
use crate::domain::validate::{self, FieldError};
use crate::domain::window;
use serde_json::{Map, Value};

/// A service's writable fields as the API shows them.
pub(super) const SERVICE_FIELDS: [&str; 24] = [
    "name",
    "url",
    "interval",
    "timeout",
    "paused",
    "expected_statuses",
    "failure_threshold",
    "success_threshold",
    "retry_interval",
    "channels",
    "tags",
    "regions",
    "quorum",
    "method",
    "headers",
    "body",
    "follow_redirects",
    "body_contains",
    "body_not_contains",
    "json",
    "degraded_latency_ms",
    "cert_expiry_days",
    "expect",
    "grace",
];
/// The kind-specific ones among them (absent from an answer when unset).
const CHECK_FIELDS: [&str; 11] = [
    "method",
    "headers",
    "body",
    "follow_redirects",
    "body_contains",
    "body_not_contains",
    "json",
    "degraded_latency_ms",
    "cert_expiry_days",
    "expect",
    "grace",
];
pub(super) const CHANNEL_FIELDS: [&str; 5] =
    ["name", "kind", "config", "all_services", "remind_every_s"];
pub(super) const WINDOW_FIELDS: [&str; 8] = [
    "name",
    "services",
    "tag",
    "start",
    "end",
    "cron",
    "duration_s",
    "timezone",
];

/// A placeholder for a hidden secret while an object is checked: the
/// checks refuse `***` where no stored value exists, and the shown form of
/// the placeholder is `***` again.
const PLACEHOLDER: &str = "x";

fn names(value: Option<&Value>, field: &str, what: &str) -> Result<Vec<String>, FieldError> {
    let bad = || FieldError::new(field, format!("must be a list of {what} names"));
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(list)) => {
            let mut names = list
                .iter()
                .map(|v| match v {
                    Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
                    _ => Err(bad()),
                })
                .collect::<Result<Vec<_>, _>>()?;
            names.sort();
            names.dedup();
            Ok(names)
        }
        Some(_) => Err(bad()),
    }
}

pub(super) fn check_service(item: &mut Item) -> Result<Canon, Vec<FieldError>> {
    let mut probe = item.body.clone();
    let channels = names(probe.remove("channels").as_ref(), "channels", "channel");
    if let Some(Value::String(raw)) = probe.get_mut("url")
        && let Ok(mut url) = url::Url::parse(raw)
    {
        if url.password() == Some(HIDDEN) {
            item.hidden.push("url".to_owned());
            if url.set_password(Some(PLACEHOLDER)).is_ok() {
                *raw = url.to_string();
            }
        } else if url.password().is_some() {
            item.has_secrets = true;
        }
    }
    if let Some(Value::Object(headers)) = probe.get_mut("headers") {
        for (name, value) in headers.iter_mut() {
            if value.as_str() == Some(HIDDEN) {
                item.hidden.push(format!("headers.{name}"));
                *value = Value::String(PLACEHOLDER.to_owned());
            } else {
                item.has_secrets = true;
            }
        }
    }
    let spec = validate::full_spec(&Value::Object(probe));
    let (spec, channels) = match (spec, channels) {
        (Ok(spec), Ok(channels)) => (spec, channels),
        (spec, channels) => {
            let mut errors = spec.err().unwrap_or_default();
            errors.extend(channels.err());
            return Err(errors);
        }
    };
    let mut canon = Map::new();
    canon.insert("name".into(), spec.name.clone().into());
    canon.insert("url".into(), redact_url(&spec.url).into());
    canon.insert("interval".into(), spec.interval.get().into());
    canon.insert("timeout".into(), spec.timeout.get().into());
    canon.insert("paused".into(), spec.paused.into());
    canon.insert(
        "expected_statuses".into(),
        serde_json::to_value(&spec.expected_statuses).unwrap_or(Value::Null),
    );
    canon.insert("failure_threshold".into(), spec.failure_threshold.into());
    canon.insert("success_threshold".into(), spec.success_threshold.into());
    canon.insert(
        "retry_interval".into(),
        spec.effective_retry_interval().get().into(),
    );
    canon.insert("channels".into(), channels.into());
    // Read through the spec's serialised form, so tags compare as the
    // API stores them (and as null where this build has no tags).
    let whole = serde_json::to_value(&spec).unwrap_or(Value::Null);
    for field in ["tags", "regions", "quorum"] {
        canon.insert(
            field.into(),
            whole.get(field).cloned().unwrap_or(Value::Null),
        );
    }
    let check = serde_json::to_value(spec.check.shown()).unwrap_or(Value::Null);
    for field in CHECK_FIELDS {
        canon.insert(
            field.into(),
            check.get(field).cloned().unwrap_or(Value::Null),
        );
    }
    Ok(canon)
}

pub(super) fn check_channel(item: &mut Item) -> Result<Canon, Vec<FieldError>> {
    let mut probe = item.body.clone();
    let kind = probe
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if let Some(Value::Object(config)) = probe.get_mut("config") {
        let secret = channel_spec::secret_keys(&kind);
        for (key, value) in config.iter_mut() {
            let Value::String(text) = value else { continue };
            if text.contains(HIDDEN) {
                item.hidden.push(format!("config.{key}"));
                *text = if text == HIDDEN && key == "url" {
                    "https://hidden.invalid/".to_owned()
                } else if text == HIDDEN {
                    PLACEHOLDER.to_owned()
                } else {
                    text.replace(HIDDEN, PLACEHOLDER)
                };
            } else if secret.contains(&key.as_str()) {
                item.has_secrets = true;
            }
        }
    }
    let spec = channel_spec::full_spec(&Value::Object(probe), None)?;
    let mut canon = Map::new();
    canon.insert("name".into(), spec.name.clone().into());
    canon.insert("kind".into(), spec.kind.clone().into());
    canon.insert("config".into(), spec.shown_config());
    canon.insert("all_services".into(), spec.all_services.into());
    canon.insert("remind_every_s".into(), spec.remind_every_s.into());
    Ok(canon)
}

pub(super) fn check_window(item: &mut Item) -> Result<Canon, Vec<FieldError>> {
    let mut probe = item.body.clone();
    // Services are named in the file; the checks want ids, so each name
    // stands in as a made-up id while the rest is checked.
    let services = match probe.get("services") {
        Some(Value::String(all)) if all == "all" => Ok(None),
        other => names(other, "services", "service").map(Some),
    };
    if let Ok(Some(names)) = &services {
        let ids: Vec<Value> = (1..=names.len()).map(Value::from).collect();
        probe.insert("services".into(), Value::Array(ids));
    } else if services.is_err() {
        probe.insert("services".into(), "all".into());
    }
    let spec = window::full_spec(&Value::Object(probe));
    let (spec, services) = match (spec, services) {
        (Ok(spec), Ok(services)) => (spec, services),
        (spec, services) => {
            let mut errors = spec.err().unwrap_or_default();
            if let Err(e) = services {
                errors.retain(|e| e.field != "services");
                errors.push(FieldError::new(
                    "services",
                    format!("{}, or \"all\"", e.message),
                ));
            }
            return Err(errors);
        }
    };
    let mut canon = fill(Section::Maintenance, spec.to_body());
    canon.insert(
        "services".into(),
        services.map_or_else(|| "all".into(), Value::from),
    );
    Ok(canon)
}
