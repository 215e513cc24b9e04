//! A channel as the API takes and shows it (`POST/PUT/PATCH /channels`):
//! its name, kind, settings, whether it serves every service, and how often
//! it reminds. The kind's settings are read by
//! [`crate::alert::channel::ChannelConfig`]; here is the rest of the body,
//! and the rule that keeps secrets write-only across a round trip: a value
//! sent back exactly as it was shown (`***`, or a URL with `***` in it) keeps
//! the stored one, but only while the destination stays: a change of where
//! the channel sends (url, api_base, host, port, tls, topic, chat_id) must
//! send the secrets again, or a write key could point a stored token at a
//! host of its choosing and read it there.

use super::ChannelId;
use super::time::{Millis, serde_rfc3339};
use super::validate::{FieldError, MAX_NAME_CHARS};
use crate::alert::channel::ChannelConfig;
use serde::Serialize;
use serde_json::{Map, Value};
use std::net::IpAddr;

/// The shortest reminder period, seconds: a DOWN service reminding every
/// few seconds would bury the channel.
pub const MIN_REMIND_S: i64 = 60;

/// The longest reminder period, seconds (30 days).
pub const MAX_REMIND_S: i64 = 30 * 86_400;

/// The one text a secret may not be: what responses show instead of it.
pub const SHOWN_SECRET: &str = "***";

const WRITABLE: [&str; 5] = ["name", "kind", "config", "all_services", "remind_every_s"];
const READ_ONLY: [&str; 3] = ["id", "created_at", "updated_at"];

/// The settings of each kind that are secrets (shown as `***`). A
/// webhook's `url` counts: generic webhooks carry their token anywhere in
/// it, so it shows as `scheme://host[:port]/***`.
pub fn secret_keys(kind: &str) -> &'static [&'static str] {
    match kind {
        "webhook" => &["url", "secret"],
        "slack" | "discord" | "teams" => &["url"],
        "email" => &["password"],
        "ntfy" => &["token"],
        "telegram" => &["bot_token"],
        "pagerduty" => &["routing_key"],
        _ => &[],
    }
}

/// What a user sets on a channel.
#[derive(Clone, PartialEq)]
pub struct ChannelSpec {
    /// Unique, 1..=200 characters.
    pub name: String,
    /// One of [`crate::alert::channel::KINDS`].
    pub kind: String,
    /// The kind's settings as given (checked), secrets included: stored as
    /// they are and read again by the sender.
    pub config: Map<String, Value>,
    /// Whether every service's alerts come here.
    pub all_services: bool,
    /// Seconds between reminders while a service stays DOWN; 0 is never.
    pub remind_every_s: i64,
}

// By hand, so a debug print cannot show a secret.
impl std::fmt::Debug for ChannelSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelSpec")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("config", &"<not shown>")
            .field("all_services", &self.all_services)
            .field("remind_every_s", &self.remind_every_s)
            .finish()
    }
}

impl ChannelSpec {
    /// The settings, read for delivery (secrets usable, shown as `***`).
    pub fn settings(&self) -> Result<ChannelConfig, Vec<FieldError>> {
        ChannelConfig::parse(&self.kind, &Value::Object(self.config.clone()))
    }

    /// The settings as responses show them (see
    /// [`ChannelConfig::shown`]: secrets as `***`, a webhook url as
    /// `scheme://host[:port]/***`, an `api_base` with user info and query
    /// values as `***`). A stored config that no longer reads (rules made
    /// stricter since) shows as `null` rather than risk showing a secret.
    pub fn shown_config(&self) -> Value {
        match self.settings() {
            Ok(settings) => settings.shown(),
            Err(_) => Value::Null,
        }
    }

    /// Literal IP addresses the settings name as a destination, with the
    /// field each is in: checked against the target-safety policy at
    /// registration (names are checked when they are resolved, at delivery).
    pub fn literal_addresses(&self) -> Vec<(String, IpAddr)> {
        let mut found = Vec::new();
        for key in ["url", "api_base"] {
            if let Some(Value::String(raw)) = self.config.get(key)
                && let Ok(url) = url::Url::parse(raw.trim())
            {
                let ip = match url.host() {
                    Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
                    Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
                    _ => None,
                };
                if let Some(ip) = ip {
                    found.push((format!("config.{key}"), ip));
                }
            }
        }
        if self.kind == "email"
            && let Some(Value::String(host)) = self.config.get("host")
            && let Ok(ip) = host
                .trim()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
        {
            found.push(("config.host".to_owned(), ip));
        }
        found
    }
}

/// A stored channel.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredChannel {
    /// Stable id, never reused.
    pub id: ChannelId,
    /// What the user set.
    pub spec: ChannelSpec,
    /// When it was created.
    pub created_at: Millis,
    /// Last change of what the user set.
    pub updated_at: Millis,
}

/// A channel as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ChannelView {
    /// Stable id.
    pub id: ChannelId,
    /// Unique name.
    pub name: String,
    /// The kind.
    pub kind: String,
    /// Settings, secrets as `***`.
    #[schema(value_type = Object)]
    pub config: Value,
    /// Whether every service's alerts come here.
    pub all_services: bool,
    /// Seconds between reminders while DOWN; 0 is never.
    pub remind_every_s: i64,
    /// Creation time.
    #[serde(serialize_with = "serde_rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
    /// Last change.
    #[serde(serialize_with = "serde_rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Millis,
}

impl From<&StoredChannel> for ChannelView {
    fn from(c: &StoredChannel) -> Self {
        ChannelView {
            id: c.id,
            name: c.spec.name.clone(),
            kind: c.spec.kind.clone(),
            config: c.spec.shown_config(),
            all_services: c.spec.all_services,
            remind_every_s: c.spec.remind_every_s,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// The recognised fields of a body; every other one is an error.
fn fields(body: &Value, errors: &mut Vec<FieldError>) -> Map<String, Value> {
    let mut found = Map::new();
    let Some(map) = body.as_object() else {
        errors.push(FieldError::new("", "the body must be a JSON object"));
        return found;
    };
    for (key, value) in map {
        if WRITABLE.contains(&key.as_str()) {
            found.insert(key.clone(), value.clone());
        } else if READ_ONLY.contains(&key.as_str()) {
            errors.push(FieldError::new(key, "is read-only"));
        } else {
            errors.push(FieldError::new(
                key,
                format!("unknown field; expected one of {}", WRITABLE.join(", ")),
            ));
        }
    }
    found
}

fn check_name(v: &Value, errors: &mut Vec<FieldError>) -> Option<String> {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    let bad = |errors: &mut Vec<FieldError>, why: &str| {
        errors.push(FieldError::new("name", why));
        None
    };
    let Some(s) = v.as_str() else {
        return bad(errors, "must be a string");
    };
    let name = s.trim();
    let chars = name.chars().count();
    if chars == 0 {
        bad(errors, "must not be empty")
    } else if chars > MAX_NAME_CHARS {
        bad(
            errors,
            &format!("must be at most {MAX_NAME_CHARS} characters (got {chars})"),
        )
    } else if name
        .chars()
        .any(|c| c.is_control() || c.general_category() == GeneralCategory::Format)
    {
        // As for services: invisible characters make two names look alike.
        bad(
            errors,
            "must not contain control or invisible formatting characters",
        )
    } else {
        Some(name.to_owned())
    }
}

fn check_kind(v: &Value, errors: &mut Vec<FieldError>) -> Option<String> {
    match v.as_str() {
        Some(kind) => Some(kind.to_owned()),
        None => {
            errors.push(FieldError::new("kind", "must be a string"));
            None
        }
    }
}

fn check_config(v: &Value, errors: &mut Vec<FieldError>) -> Option<Map<String, Value>> {
    match v {
        Value::Object(map) => Some(map.clone()),
        _ => {
            errors.push(FieldError::new("config", "must be an object"));
            None
        }
    }
}

fn check_all_services(v: &Value, errors: &mut Vec<FieldError>) -> bool {
    v.as_bool().unwrap_or_else(|| {
        errors.push(FieldError::new("all_services", "must be true or false"));
        false
    })
}

fn check_remind(v: &Value, errors: &mut Vec<FieldError>) -> i64 {
    match v.as_i64() {
        Some(0) => 0,
        Some(s) if (MIN_REMIND_S..=MAX_REMIND_S).contains(&s) => s,
        _ => {
            errors.push(FieldError::new(
                "remind_every_s",
                format!(
                    "must be 0 (never) or a whole number of seconds from {MIN_REMIND_S} to \
                     {MAX_REMIND_S}"
                ),
            ));
            0
        }
    }
}

/// Puts back the stored value of each setting sent exactly as it was shown
/// with `***` in it, so a client may send back what it read. Only within
/// one kind: another kind's secrets mean nothing here. Returns the secrets
/// ([`secret_keys`]) so kept.
fn keep_stored_secrets(config: &mut Map<String, Value>, stored: &ChannelSpec) -> Vec<String> {
    let shown = stored.shown_config();
    let mut kept = Vec::new();
    for (key, value) in config.iter_mut() {
        let sent_as_shown = value.as_str().is_some_and(|s| s.contains(SHOWN_SECRET))
            && shown.get(key) == Some(&*value);
        if sent_as_shown && let Some(raw) = stored.config.get(key) {
            *value = raw.clone();
            if secret_keys(&stored.kind).contains(&key.as_str()) {
                kept.push(key.clone());
            }
        }
    }
    kept
}

/// Refuses each stored secret kept (sent back as shown, or left out of a
/// PATCH) while the destination changes: the secret was given for the old
/// one. A channel whose stored settings no longer read counts as changed.
fn check_kept_secrets(
    stored: &ChannelSpec,
    spec: &ChannelSpec,
    kept: &[String],
    errors: &mut Vec<FieldError>,
) {
    if kept.is_empty() || stored.kind != spec.kind {
        return;
    }
    let Ok(new) = spec.settings() else {
        // Already reported by check_settings.
        return;
    };
    let old = stored
        .settings()
        .map(|s| s.destination())
        .unwrap_or_default();
    let changed: Vec<String> = new
        .destination()
        .into_iter()
        .filter(|(key, value)| old.iter().all(|(k, v)| k != key || v != value))
        .map(|(key, _)| format!("config.{key}"))
        .collect();
    for key in kept {
        let others: Vec<&str> = changed
            .iter()
            .map(String::as_str)
            .filter(|c| c.strip_prefix("config.") != Some(key.as_str()))
            .collect();
        if others.is_empty() {
            continue;
        }
        let field = format!("config.{key}");
        if errors.iter().any(|e| e.field == field) {
            continue;
        }
        errors.push(FieldError::new(
            &field,
            format!(
                "is write-only and the stored one was given for another destination ({} \
                 changes): send the secret again when the destination changes",
                others.join(", ")
            ),
        ));
    }
}

/// Checks a spec's settings: the kind's own rules, and `***` refused as a
/// secret; every problem is named. Nothing is said of the settings when
/// `config` itself is already wrong.
fn check_settings(spec: &ChannelSpec, errors: &mut Vec<FieldError>) {
    if errors
        .iter()
        .any(|e| e.field == "config" || e.field == "kind")
    {
        return;
    }
    for key in secret_keys(&spec.kind) {
        if spec.config.get(*key).and_then(Value::as_str) == Some(SHOWN_SECRET) {
            errors.push(FieldError::new(
                &format!("config.{key}"),
                "is write-only: send the value itself (*** keeps the stored value only \
                 on a channel of the same kind that has one)",
            ));
        }
    }
    if let Err(bad) = spec.settings() {
        for e in bad {
            if !errors.iter().any(|known| known.field == e.field) {
                errors.push(e);
            }
        }
    }
}

/// Reads a whole channel (`POST`, `PUT`): `name`, `kind` and `config` are
/// required; `all_services` defaults to false and `remind_every_s` to 0.
/// With `stored` (a PUT), settings sent back as shown keep their values.
pub fn full_spec(
    body: &Value,
    stored: Option<&ChannelSpec>,
) -> Result<ChannelSpec, Vec<FieldError>> {
    let mut errors = Vec::new();
    let given = fields(body, &mut errors);
    let required = |key: &str, errors: &mut Vec<FieldError>| {
        let v = given.get(key);
        if v.is_none() && body.is_object() {
            errors.push(FieldError::new(key, "is required"));
        }
        v
    };
    let name = required("name", &mut errors).and_then(|v| check_name(v, &mut errors));
    let kind = required("kind", &mut errors).and_then(|v| check_kind(v, &mut errors));
    let config = required("config", &mut errors).and_then(|v| check_config(v, &mut errors));
    let all_services = given
        .get("all_services")
        .is_some_and(|v| check_all_services(v, &mut errors));
    let remind_every_s = given
        .get("remind_every_s")
        .map_or(0, |v| check_remind(v, &mut errors));
    let Some((kind, mut config)) = kind.zip(config) else {
        return Err(errors);
    };
    let kept = match stored.filter(|s| s.kind == kind) {
        Some(stored) => keep_stored_secrets(&mut config, stored),
        None => Vec::new(),
    };
    let spec = ChannelSpec {
        // A missing name is already an error; the settings are still read,
        // so one answer names every problem.
        name: name.clone().unwrap_or_default(),
        kind,
        config,
        all_services,
        remind_every_s,
    };
    check_settings(&spec, &mut errors);
    if let Some(stored) = stored {
        check_kept_secrets(stored, &spec, &kept, &mut errors);
    }
    match name {
        Some(_) if errors.is_empty() => Ok(spec),
        _ => Err(errors),
    }
}

/// Applies a `PATCH`: each field given replaces the current one; `config`
/// is merged key by key (a `null` removes a setting), unless `kind`
/// changes, when it replaces the settings whole.
pub fn patch_spec(current: &ChannelSpec, body: &Value) -> Result<ChannelSpec, Vec<FieldError>> {
    let mut errors = Vec::new();
    let given = fields(body, &mut errors);
    let mut spec = current.clone();
    if let Some(v) = given.get("name")
        && let Some(name) = check_name(v, &mut errors)
    {
        spec.name = name;
    }
    if let Some(v) = given.get("kind")
        && let Some(kind) = check_kind(v, &mut errors)
    {
        if kind != current.kind {
            spec.config = Map::new();
            if !given.contains_key("config") {
                errors.push(FieldError::new(
                    "config",
                    "is required when the kind changes",
                ));
            }
        }
        spec.kind = kind;
    }
    // Secrets the PATCH leaves alone are kept as much as those sent back.
    let mut kept: Vec<String> = secret_keys(&current.kind)
        .iter()
        .filter(|key| current.config.contains_key(**key))
        .map(|key| (*key).to_owned())
        .collect();
    if let Some(v) = given.get("config")
        && let Some(mut patch) = check_config(v, &mut errors)
    {
        kept.retain(|key| !patch.contains_key(key));
        if spec.kind == current.kind {
            kept.extend(keep_stored_secrets(&mut patch, current));
        }
        for (key, value) in patch {
            if value.is_null() {
                spec.config.remove(&key);
            } else {
                spec.config.insert(key, value);
            }
        }
    }
    if let Some(v) = given.get("all_services") {
        spec.all_services = check_all_services(v, &mut errors);
    }
    if let Some(v) = given.get("remind_every_s") {
        spec.remind_every_s = check_remind(v, &mut errors);
    }
    check_settings(&spec, &mut errors);
    check_kept_secrets(current, &spec, &kept, &mut errors);
    if errors.is_empty() {
        Ok(spec)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests;
