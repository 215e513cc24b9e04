//! Maintenance windows: while one covers a service, its checks and status go
//! on but its alerts are held (DESIGN.md, "Alerting").
//!
//! A window is one-off (`start`, `end`) or recurring (a 5-field `cron`
//! pattern, `duration_s` and an IANA `timezone`). Recurring windows are
//! evaluated on the wall clock of their zone, so "0 2 * * SUN" in
//! Europe/Berlin starts at 02:00 Berlin time in winter and in summer. On the
//! spring-forward day 02:00 does not exist there: the window then starts at
//! the first instant after the gap (03:00 CEST) and lasts its full duration.
//! On the fall-back day 02:00 happens twice: the window starts once, at the
//! first of them. Durations are elapsed seconds, not wall-clock ones.
//!
//! Bodies are validated from parsed JSON, like services, so that every bad
//! field is reported at once and by name.

use super::ServiceId;
use super::time::{Millis, parse_rfc3339, to_rfc3339};
use super::validate::{FieldError, check_tag};
use chrono::{TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde_json::{Map, Value, json};

/// Longest accepted name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest recurring window: 7 days, in seconds. A longer one is better
/// written as a one-off window, and the bound keeps "is `now` inside" a
/// look at the latest start alone.
pub const MAX_DURATION_S: i64 = 7 * 86_400;
/// Most service ids one window may list.
pub const MAX_SERVICE_IDS: usize = 1000;
/// Longest accepted cron pattern, in bytes.
pub const MAX_CRON_LEN: usize = 200;
/// The zone of a recurring window that names none.
pub const DEFAULT_ZONE: &str = "UTC";

/// The fields a client may set.
const WRITABLE: [&str; 8] = [
    "name",
    "services",
    "tag",
    "start",
    "end",
    "cron",
    "duration_s",
    "timezone",
];
/// Fields a response carries that no request may set.
const READ_ONLY: [&str; 5] = ["id", "created_at", "updated_at", "active", "next_start"];

/// Which services a window names by id (besides those its `tag` brings in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every service, including those registered later.
    All,
    /// These services, by id, without repeats, in the order given (none
    /// when the window covers a tag only).
    Services(Vec<ServiceId>),
}

impl Scope {
    /// Whether the window names `service` (its tag aside).
    pub fn covers(&self, service: ServiceId) -> bool {
        match self {
            Scope::All => true,
            Scope::Services(ids) => ids.contains(&service),
        }
    }
}

/// A recurring window: a cron pattern on the wall clock of a time zone and
/// how long each occurrence lasts.
#[derive(Debug, Clone)]
pub struct Recurrence {
    pattern: String,
    cron: Cron,
    duration_s: i64,
    zone: Tz,
}

impl PartialEq for Recurrence {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern
            && self.duration_s == other.duration_s
            && self.zone == other.zone
    }
}

impl Eq for Recurrence {}

impl Recurrence {
    /// A recurrence from its parts as stored; `Err` says which part is bad.
    pub fn new(pattern: &str, duration_s: i64, zone: &str) -> Result<Self, FieldError> {
        let cron = parse_cron(pattern).map_err(|m| FieldError::new("cron", m))?;
        let zone = parse_zone(zone).map_err(|m| FieldError::new("timezone", m))?;
        check_duration(duration_s).map_err(|m| FieldError::new("duration_s", m))?;
        Ok(Self {
            pattern: pattern.trim().to_owned(),
            cron,
            duration_s,
            zone,
        })
    }

    /// The cron pattern as given (trimmed).
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Seconds each occurrence lasts.
    pub fn duration_s(&self) -> i64 {
        self.duration_s
    }

    /// The IANA name of the zone the pattern is read in.
    pub fn zone(&self) -> &'static str {
        self.zone.name()
    }

    fn at(&self, t: Millis) -> Option<chrono::DateTime<Tz>> {
        Utc.timestamp_millis_opt(t)
            .single()
            .map(|t| t.with_timezone(&self.zone))
    }

    /// The latest start at or before `now`. Since every occurrence lasts
    /// the same, its end is the latest end of any occurrence begun by then.
    fn latest_start(&self, now: Millis) -> Option<Millis> {
        let now = self.at(now)?;
        self.cron
            .find_previous_occurrence(&now, true)
            .ok()
            .map(|t| t.timestamp_millis())
    }

    fn next_start(&self, now: Millis) -> Option<Millis> {
        let now = self.at(now)?;
        self.cron
            .find_next_occurrence(&now, false)
            .ok()
            .map(|t| t.timestamp_millis())
    }
}

/// When a window is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// From `start` (inclusive) to `end` (exclusive), once.
    Once {
        /// First instant inside.
        start: Millis,
        /// First instant outside; after `start`.
        end: Millis,
    },
    /// Again and again (boxed: a parsed pattern is large).
    Recurring(Box<Recurrence>),
}

impl Schedule {
    /// If the window is open at `now`, when it closes (the first instant
    /// outside it): alerts are held until then.
    pub fn active_until(&self, now: Millis) -> Option<Millis> {
        match self {
            Schedule::Once { start, end } => (*start <= now && now < *end).then_some(*end),
            Schedule::Recurring(r) => {
                let end = r.latest_start(now)?.saturating_add(r.duration_s * 1000);
                (now < end).then_some(end)
            }
        }
    }

    /// The next time the window opens after `now`, if it ever does again.
    pub fn next_start(&self, now: Millis) -> Option<Millis> {
        match self {
            Schedule::Once { start, .. } => (*start > now).then_some(*start),
            Schedule::Recurring(r) => r.next_start(now),
        }
    }
}

/// What a client sets on a window. It covers the services it lists by id
/// (or all of them) and, with a `tag`, every service carrying that tag when
/// asked, so a service tagged after the window was made is covered too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSpec {
    /// Human-readable name, 1..=200 characters.
    pub name: String,
    /// The services it names by id, or all.
    pub scope: Scope,
    /// The services carrying this tag are covered too (never with
    /// [`Scope::All`], which covers them already).
    pub tag: Option<String>,
    /// When it is open.
    pub schedule: Schedule,
}

impl WindowSpec {
    /// The spec as a request body would give it: what a PATCH is merged
    /// into.
    pub fn to_body(&self) -> Value {
        let services = match &self.scope {
            Scope::All => json!("all"),
            Scope::Services(ids) => json!(ids),
        };
        let mut body = json!({"name": self.name, "services": services});
        if let Some(tag) = &self.tag {
            body["tag"] = json!(tag);
        }
        match &self.schedule {
            Schedule::Once { start, end } => {
                body["start"] = json!(to_rfc3339(*start));
                body["end"] = json!(to_rfc3339(*end));
            }
            Schedule::Recurring(r) => {
                body["cron"] = json!(r.pattern());
                body["duration_s"] = json!(r.duration_s());
                body["timezone"] = json!(r.zone());
            }
        }
        body
    }

    /// The service ids it lists (none for "all"): each must exist.
    pub fn service_ids(&self) -> &[ServiceId] {
        match &self.scope {
            Scope::All => &[],
            Scope::Services(ids) => ids,
        }
    }
}

/// A stored window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Its id.
    pub id: i64,
    /// What the client set.
    pub spec: WindowSpec,
    /// When it was created.
    pub created_at: Millis,
    /// When it last changed.
    pub updated_at: Millis,
}

/// Validates a whole body (`POST`, `PUT`). `null` counts as absent.
pub fn full_spec(body: &Value) -> Result<WindowSpec, Vec<FieldError>> {
    let mut errors = Vec::new();
    let Some(map) = body.as_object() else {
        return Err(vec![FieldError::new("", "the body must be a JSON object")]);
    };
    for key in map.keys() {
        if READ_ONLY.contains(&key.as_str()) {
            errors.push(FieldError::new(key, "is read-only"));
        } else if !WRITABLE.contains(&key.as_str()) {
            errors.push(FieldError::new(
                key,
                format!("unknown field; expected one of {}", WRITABLE.join(", ")),
            ));
        }
    }
    let field = |name: &str| map.get(name).filter(|v| !v.is_null());
    let name = field("name")
        .ok_or_else(|| "is required".to_owned())
        .and_then(check_name)
        .map_err(|m| errors.push(FieldError::new("name", m)))
        .ok();
    let tag = field("tag").map(check_window_tag);
    let scope = match (field("services"), &tag) {
        (None, Some(_)) => Ok(Scope::Services(Vec::new())),
        (None, None) => Err(
            "is required: a list of service ids, or \"all\" (or leave it out and give a tag)"
                .to_owned(),
        ),
        (Some(v), tag) => check_scope(v, tag.is_some()),
    }
    .map_err(|m| errors.push(FieldError::new("services", m)))
    .ok();
    let tag = match tag.transpose() {
        Ok(tag) => tag,
        Err(m) => {
            errors.push(FieldError::new("tag", m));
            None
        }
    };
    if tag.is_some() && scope == Some(Scope::All) {
        errors.push(FieldError::new(
            "tag",
            "cannot go with services \"all\", which covers every service already; \
             list service ids or leave services out",
        ));
    }
    let schedule = check_schedule(map, &mut errors);
    match (name, scope, schedule) {
        (Some(name), Some(scope), Some(schedule)) if errors.is_empty() => Ok(WindowSpec {
            name,
            scope,
            tag,
            schedule,
        }),
        _ => Err(errors),
    }
}

/// Applies a PATCH body to `current` as a JSON merge patch (RFC 7396): the
/// fields given replace the current ones, `null` removes one (how a window
/// changes from one-off to recurring: `"start": null, "end": null` with the
/// cron fields), and the result is validated as a whole body.
pub fn patch_spec(current: &WindowSpec, patch: &Value) -> Result<WindowSpec, Vec<FieldError>> {
    let Some(changes) = patch.as_object() else {
        return Err(vec![FieldError::new("", "the body must be a JSON object")]);
    };
    let mut body = current.to_body();
    let Some(merged) = body.as_object_mut() else {
        return Err(vec![FieldError::new("", "the stored window is unreadable")]);
    };
    for (key, value) in changes {
        if value.is_null() {
            merged.remove(key);
        } else {
            merged.insert(key.clone(), value.clone());
        }
    }
    // A recurring window's zone defaults to UTC when none is stored; a
    // patch that removes it goes back to that default rather than failing.
    full_spec(&body)
}

fn check_name(v: &Value) -> Result<String, String> {
    let s = v.as_str().ok_or("must be a string")?.trim();
    let chars = s.chars().count();
    if chars == 0 {
        Err("must not be empty".into())
    } else if chars > MAX_NAME_CHARS {
        Err(format!(
            "must be at most {MAX_NAME_CHARS} characters (got {chars})"
        ))
    } else if s.chars().any(char::is_control) {
        Err("must not contain control characters".into())
    } else {
        Ok(s.to_owned())
    }
}

/// A window's `tag`: one tag, by the rules of services' tags.
fn check_window_tag(v: &Value) -> Result<String, String> {
    let tag = v
        .as_str()
        .ok_or("must be a string: one tag, such as \"prod\"")?;
    check_tag(tag)?;
    Ok(tag.to_owned())
}

/// `services`; an empty list is allowed only beside a tag.
fn check_scope(v: &Value, tagged: bool) -> Result<Scope, String> {
    const EXPECTED: &str = "must be a list of service ids or \"all\"";
    if let Some(s) = v.as_str() {
        return if s == "all" {
            Ok(Scope::All)
        } else {
            Err(format!("{EXPECTED} (got the string {s:?})"))
        };
    }
    let list = v.as_array().ok_or(EXPECTED)?;
    if list.is_empty() && !tagged {
        return Err(
            "must name at least one service id, or be \"all\" (an empty list needs a tag)".into(),
        );
    }
    if list.len() > MAX_SERVICE_IDS {
        return Err(format!(
            "may list at most {MAX_SERVICE_IDS} services (got {}); use \"all\" or several windows",
            list.len()
        ));
    }
    let mut ids: Vec<ServiceId> = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        match item.as_i64() {
            Some(id) if id > 0 => {
                if !ids.contains(&ServiceId(id)) {
                    ids.push(ServiceId(id));
                }
            }
            _ => {
                return Err(format!(
                    "{EXPECTED}; item {i} is {item}, not a positive integer"
                ));
            }
        }
    }
    Ok(Scope::Services(ids))
}

/// The one-off fields or the recurring ones, never both, never neither.
fn check_schedule(map: &Map<String, Value>, errors: &mut Vec<FieldError>) -> Option<Schedule> {
    let field = |name: &str| map.get(name).filter(|v| !v.is_null());
    let (start, end) = (field("start"), field("end"));
    let (cron, duration, zone) = (field("cron"), field("duration_s"), field("timezone"));
    let one_off = start.is_some() || end.is_some();
    let recurring = cron.is_some() || duration.is_some() || zone.is_some();
    if one_off && recurring {
        let given: Vec<&str> = ["cron", "duration_s", "timezone"]
            .into_iter()
            .filter(|k| field(k).is_some())
            .collect();
        for key in given {
            errors.push(FieldError::new(
                key,
                "belongs to a recurring window, but start/end (a one-off window) are given too; \
                 give one or the other",
            ));
        }
        return None;
    }
    if !one_off && !recurring {
        errors.push(FieldError::new(
            "start",
            "is required: give start and end (RFC 3339) for a one-off window, \
             or cron and duration_s for a recurring one",
        ));
        return None;
    }
    if one_off {
        let start = required_time("start", start, errors);
        let end = required_time("end", end, errors);
        let (start, end) = (start?, end?);
        if end <= start {
            errors.push(FieldError::new(
                "end",
                format!("must be after start ({})", to_rfc3339(start)),
            ));
            return None;
        }
        return Some(Schedule::Once { start, end });
    }
    let before = errors.len();
    let cron = match cron {
        Some(v) => match v.as_str() {
            Some(s) => parse_cron(s).map(|_| s).map_err(|m| ("cron", m)),
            None => Err(("cron", "must be a string such as \"0 2 * * SUN\"".into())),
        },
        None => Err((
            "cron",
            "is required with duration_s or timezone (a recurring window)".into(),
        )),
    };
    let duration = match duration {
        Some(v) => v
            .as_i64()
            .ok_or_else(|| format!("must be a whole number of seconds, 1 to {MAX_DURATION_S}"))
            .and_then(|d| check_duration(d).map(|()| d))
            .map_err(|m| ("duration_s", m)),
        None => Err((
            "duration_s",
            "is required with cron: how long each occurrence lasts, in seconds".into(),
        )),
    };
    let zone = match zone {
        Some(v) => match v.as_str() {
            Some(s) => parse_zone(s).map(|_| s).map_err(|m| ("timezone", m)),
            None => Err((
                "timezone",
                "must be a string such as \"Europe/Berlin\"".into(),
            )),
        },
        None => Ok(DEFAULT_ZONE),
    };
    for (key, message) in [
        cron.as_ref().err(),
        duration.as_ref().err(),
        zone.as_ref().err(),
    ]
    .into_iter()
    .flatten()
    {
        errors.push(FieldError::new(key, message.as_str()));
    }
    if errors.len() > before {
        return None;
    }
    match Recurrence::new(cron.ok()?, duration.ok()?, zone.ok()?) {
        Ok(r) => Some(Schedule::Recurring(Box::new(r))),
        Err(e) => {
            errors.push(e);
            None
        }
    }
}

fn required_time(key: &str, v: Option<&Value>, errors: &mut Vec<FieldError>) -> Option<Millis> {
    let Some(v) = v else {
        let other = if key == "start" { "end" } else { "start" };
        errors.push(FieldError::new(
            key,
            format!("is required with {other} (a one-off window)"),
        ));
        return None;
    };
    let parsed = v.as_str().and_then(parse_rfc3339);
    if parsed.is_none() {
        errors.push(FieldError::new(
            key,
            "must be an RFC 3339 time with an offset, such as \"2026-12-24T22:00:00Z\"",
        ));
    }
    parsed
}

/// Parses a standard 5-field pattern (minute hour day-of-month month
/// day-of-week, names such as SUN and JAN, `@daily`-style nicknames), and
/// refuses one that never matches (`0 0 31 2 *`).
fn parse_cron(pattern: &str) -> Result<Cron, String> {
    let pattern = pattern.trim();
    if pattern.len() > MAX_CRON_LEN {
        return Err(format!("must be at most {MAX_CRON_LEN} bytes"));
    }
    let parser = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build();
    let cron = parser.parse(pattern).map_err(|e| {
        format!(
            "is not a cron pattern ({e}); expected 5 fields: \
             minute hour day-of-month month day-of-week, such as \"0 2 * * SUN\""
        )
    })?;
    if cron.find_next_occurrence(&Utc::now(), false).is_err() {
        return Err("never matches a date (such as the 31st of February)".into());
    }
    Ok(cron)
}

fn parse_zone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>().map_err(|_| {
        format!("{name:?} is not an IANA time zone; expected a name such as \"Europe/Berlin\" or \"UTC\"")
    })
}

fn check_duration(d: i64) -> Result<(), String> {
    if (1..=MAX_DURATION_S).contains(&d) {
        Ok(())
    } else {
        Err(format!(
            "must be from 1 to {MAX_DURATION_S} seconds (7 days), got {d}"
        ))
    }
}

#[cfg(test)]
mod tests;
