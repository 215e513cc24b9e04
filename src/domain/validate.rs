//! Validation of service bodies, field by field.
//!
//! Bodies are checked from a parsed JSON object rather than through serde's
//! derive so that every bad field is reported at once, by name, and so the
//! original notes' spelling (`"Timeout"`) is accepted: field names match
//! case-insensitively.

use super::channel::ChannelId;
use super::check_kind::{CheckOptions, HIDDEN};
use super::service::ServiceSpec;
use super::time::Seconds;
pub(crate) use name::check_name;
use serde::Serialize;
use serde_json::{Map, Value};

mod check_fields;
mod name;
mod regions;
mod scalars;
mod tags;
mod target;

pub use check_fields::{
    MAX_CERT_EXPIRY_DAYS, MAX_EQUALS_LEN, MAX_EXPECT, MAX_GRACE_S, MAX_HEADER_NAME_LEN,
    MAX_HEADER_VALUE_LEN, MAX_HEADERS, MAX_JSON_ASSERTIONS, MAX_MATCH_LEN, MAX_POINTER_LEN,
    MAX_REQUEST_BODY, METHODS,
};
pub use regions::{MAX_REGION_LEN, MAX_REGIONS, check_region, embedded_regions_error};
use scalars::{
    check_channels, check_expected, check_paused, check_retry, check_seconds, check_threshold,
    check_timeout, check_whole, default_timeout,
};
pub use tags::{MAX_TAG_LEN, MAX_TAGS, TAG_CHARS, check_tag};
pub use target::{DNS_PORT, DNS_TYPES, check_target_url, literal_target};

/// Longest accepted name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest accepted URL, in bytes.
pub const MAX_URL_LEN: usize = 2048;
/// Shortest interval, seconds.
pub const MIN_INTERVAL_S: i64 = 1;
/// Longest interval: one day, in seconds.
pub const MAX_INTERVAL_S: i64 = 86_400;
/// Timeout used when a body gives none (capped by the interval, and
/// following it while the user sets none).
pub const DEFAULT_TIMEOUT_S: i64 = 10;
/// Most entries in `expected_statuses`.
pub const MAX_EXPECTED_STATUSES: usize = 32;
/// Largest `failure_threshold` and `success_threshold` (the store's CHECK).
pub const MAX_THRESHOLD: u32 = 100;
/// Most entries in `channels`.
pub const MAX_CHANNELS: usize = 32;

/// One bad field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// The field as the client spelled it.
    pub field: String,
    /// What is wrong, for a person.
    pub message: String,
}

impl FieldError {
    /// An error for `field`, as the client spelled it.
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// The fields every kind takes; then come [`check_fields::NAMES`].
const COMMON: [&str; 13] = [
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
];
const READ_ONLY: [&str; 8] = [
    "id",
    "push_url",
    "last_status",
    "last_check",
    "last_latency_ms",
    "created_at",
    "updated_at",
    "health_logs",
];

/// The recognised fields of a body, keyed by canonical name, with the
/// client's spelling kept for error messages.
struct Fields<'a> {
    found: Vec<(&'static str, &'a str, &'a Value)>,
}

impl<'a> Fields<'a> {
    fn get(&self, name: &str) -> Option<(&'a str, &'a Value)> {
        self.found
            .iter()
            .find(|(canon, _, _)| *canon == name)
            .map(|(_, spelled, v)| (*spelled, *v))
    }
}

fn collect_fields<'a>(body: &'a Value, errors: &mut Vec<FieldError>) -> Option<Fields<'a>> {
    let Some(map): Option<&Map<String, Value>> = body.as_object() else {
        errors.push(FieldError::new("", "the body must be a JSON object"));
        return None;
    };
    let mut found: Vec<(&'static str, &'a str, &'a Value)> = Vec::new();
    for (key, value) in map {
        let lower = key.to_ascii_lowercase();
        if let Some(canon) = COMMON
            .iter()
            .chain(check_fields::NAMES.iter())
            .find(|w| **w == lower)
        {
            if found.iter().any(|(c, _, _)| c == canon) {
                errors.push(FieldError::new(
                    key,
                    "given twice (names are case-insensitive)",
                ));
            } else {
                found.push((canon, key.as_str(), value));
            }
        } else if READ_ONLY.contains(&lower.as_str()) {
            errors.push(FieldError::new(key, "is read-only"));
        } else {
            errors.push(FieldError::new(
                key,
                format!(
                    "unknown field; expected one of {}, {}",
                    COMMON.join(", "),
                    check_fields::NAMES.join(", ")
                ),
            ));
        }
    }
    Some(Fields { found })
}

/// Checks a target URL: absolute http(s), with a host and a port other than
/// 0, at most 2048 bytes. Returns the normalised form that is stored.
pub fn check_url(raw: &str) -> Result<String, String> {
    target::precheck(raw)?;
    let raw = raw.trim();
    let parsed = url::Url::parse(raw).map_err(|e| format!("is not an absolute URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "scheme must be http or https, not {:?}",
            parsed.scheme()
        ));
    }
    match parsed.host_str() {
        Some(h) if !h.is_empty() => {}
        _ => return Err("must have a host".into()),
    }
    if parsed.port() == Some(0) {
        return Err("port must be between 1 and 65535 (got 0)".into());
    }
    let normalised = parsed.to_string();
    if normalised.len() > MAX_URL_LEN {
        return Err(format!(
            "must be at most {MAX_URL_LEN} bytes once normalised"
        ));
    }
    Ok(normalised)
}

/// Validates a body that sets every field: `POST /services`.
///
/// `name`, `url` and `interval` are required; `timeout` defaults to
/// `min(10, interval)`, which follows later changes of the interval, `paused` to false, `expected_statuses` to null, the
/// thresholds to 1, `retry_interval` to the interval, `channels` and `tags` to none and
/// every kind-specific field to unset. A header value of `***` is refused:
/// there is no stored value for it to keep.
pub fn full_spec(body: &Value) -> Result<ServiceSpec, Vec<FieldError>> {
    full(body, None)
}

/// Validates a `PUT`: a body that sets every field, as [`full_spec`], but
/// a header sent back as `***` keeps the value `current` has for it (as
/// long as the URL keeps its scheme, host and port).
pub fn replace_spec(current: &ServiceSpec, body: &Value) -> Result<ServiceSpec, Vec<FieldError>> {
    full(body, Some(current))
}

fn url_field(f: &str, v: &Value, errors: &mut Vec<FieldError>) -> Option<String> {
    match v.as_str() {
        Some(s) => check_target_url(s)
            .map_err(|m| errors.push(FieldError::new(f, m)))
            .ok(),
        None => {
            errors.push(FieldError::new(f, "must be a string"));
            None
        }
    }
}

fn full(body: &Value, current: Option<&ServiceSpec>) -> Result<ServiceSpec, Vec<FieldError>> {
    let mut errors = Vec::new();
    let Some(fields) = collect_fields(body, &mut errors) else {
        return Err(errors);
    };
    let required = |name: &str, errors: &mut Vec<FieldError>| match fields.get(name) {
        Some((spelled, v)) if !v.is_null() => Some((spelled, v)),
        _ => {
            errors.push(FieldError::new(name, "is required"));
            None
        }
    };
    let name = required("name", &mut errors).and_then(|(f, v)| check_name(f, v, &mut errors));
    let url = required("url", &mut errors).and_then(|(f, v)| url_field(f, v, &mut errors));
    let interval = required("interval", &mut errors)
        .and_then(|(f, v)| check_seconds(f, v, MIN_INTERVAL_S, MAX_INTERVAL_S, &mut errors));
    let timeout = match fields.get("timeout") {
        Some((f, v)) => check_timeout(f, v, &mut errors),
        None => Some(None),
    };
    let paused = match fields.get("paused") {
        Some((f, v)) if !v.is_null() => check_paused(f, v, &mut errors),
        _ => Some(false),
    };
    let expected = match fields.get("expected_statuses") {
        Some((f, v)) => check_expected(f, v, &mut errors),
        None => Some(None),
    };
    let threshold = |name: &str, errors: &mut Vec<FieldError>| match fields.get(name) {
        Some((f, v)) if !v.is_null() => check_threshold(f, v, errors),
        _ => Some(1),
    };
    let failure_threshold = threshold("failure_threshold", &mut errors);
    let success_threshold = threshold("success_threshold", &mut errors);
    let retry_interval = match fields.get("retry_interval") {
        Some((f, v)) => check_retry(f, v, &mut errors),
        None => Some(None),
    };
    let channels = match fields.get("channels") {
        Some((f, v)) => check_channels(f, v, &mut errors),
        None => Some(Vec::new()),
    };
    let tags = match fields.get("tags") {
        Some((f, v)) => tags::check_tags(f, v, &mut errors),
        None => Some(Vec::new()),
    };
    let regions = match fields.get("regions") {
        Some((f, v)) => regions::check_regions(f, v, &mut errors),
        None => Some(Vec::new()),
    };
    let quorum = match fields.get("quorum") {
        Some((f, v)) => regions::check_quorum(f, v, &mut errors),
        None => Some(None),
    };
    let check = check_fields::read(
        &fields,
        CheckOptions::default(),
        current.map(|c| &c.check),
        &mut errors,
    );
    finish(
        Parts {
            name,
            url,
            interval,
            timeout,
            paused,
            expected,
            failure_threshold,
            success_threshold,
            retry_interval,
            channels,
            tags,
            regions,
            quorum,
            check,
        },
        &fields,
        current.map(|c| c.url.as_str()),
        errors,
    )
}

/// Validates a partial update (`PATCH`) against the current settings.
/// The merged result must be valid as a whole (timeout and retry interval
/// ≤ interval, every kind-specific field one the URL's kind takes). `null`
/// resets the timeout, a threshold, the retry interval, the channels, the tags or a
/// kind-specific field to its default. A timeout the user never set follows
/// the interval, so changing the interval alone never fails on it. Headers left out or sent back as `***` keep their
/// stored values, which a change of the URL's scheme, host or port refuses.
pub fn patch_spec(current: &ServiceSpec, body: &Value) -> Result<ServiceSpec, Vec<FieldError>> {
    let mut errors = Vec::new();
    let Some(fields) = collect_fields(body, &mut errors) else {
        return Err(errors);
    };
    let name = match fields.get("name") {
        Some((f, v)) => check_name(f, v, &mut errors),
        None => Some(current.name.clone()),
    };
    let url = match fields.get("url") {
        Some((f, v)) => url_field(f, v, &mut errors),
        None => Some(current.url.clone()),
    };
    let interval = match fields.get("interval") {
        Some((f, v)) => check_seconds(f, v, MIN_INTERVAL_S, MAX_INTERVAL_S, &mut errors),
        None => Some(current.interval.get()),
    };
    let timeout = match fields.get("timeout") {
        Some((f, v)) => check_timeout(f, v, &mut errors),
        None if current.timeout_follows_interval => Some(None),
        None => Some(Some(current.timeout.get())),
    };
    let paused = match fields.get("paused") {
        Some((f, v)) => check_paused(f, v, &mut errors),
        None => Some(current.paused),
    };
    let expected = match fields.get("expected_statuses") {
        Some((f, v)) => check_expected(f, v, &mut errors),
        None => Some(current.expected_statuses.clone()),
    };
    let threshold = |name: &str, now: u32, errors: &mut Vec<FieldError>| match fields.get(name) {
        Some((_, v)) if v.is_null() => Some(1),
        Some((f, v)) => check_threshold(f, v, errors),
        None => Some(now),
    };
    let failure_threshold = threshold("failure_threshold", current.failure_threshold, &mut errors);
    let success_threshold = threshold("success_threshold", current.success_threshold, &mut errors);
    let retry_interval = match fields.get("retry_interval") {
        Some((f, v)) => check_retry(f, v, &mut errors),
        None => Some(current.retry_interval.map(Seconds::get)),
    };
    let channels = match fields.get("channels") {
        Some((f, v)) => check_channels(f, v, &mut errors),
        None => Some(current.channels.clone()),
    };
    let tags = match fields.get("tags") {
        Some((f, v)) => tags::check_tags(f, v, &mut errors),
        None => Some(current.tags.clone()),
    };
    let regions = match fields.get("regions") {
        Some((f, v)) => regions::check_regions(f, v, &mut errors),
        None => Some(current.regions.clone()),
    };
    let quorum = match fields.get("quorum") {
        Some((f, v)) => regions::check_quorum(f, v, &mut errors),
        None => Some(current.quorum),
    };
    let check = check_fields::read(
        &fields,
        current.check.clone(),
        Some(&current.check),
        &mut errors,
    );
    finish(
        Parts {
            name,
            url,
            interval,
            timeout,
            paused,
            expected,
            failure_threshold,
            success_threshold,
            retry_interval,
            channels,
            tags,
            regions,
            quorum,
            check,
        },
        &fields,
        Some(current.url.as_str()),
        errors,
    )
}

/// A URL sent back as answers show it, its password as `***`, keeps the
/// stored password, so a read-edit-write round trip does not replace a
/// secret with three stars. Only for the same scheme, user, host and port:
/// otherwise a write key could send the stored password to a host of its
/// own choosing.
fn keep_stored_password(url: String, previous_url: Option<&str>) -> Result<String, String> {
    let Ok(mut sent) = url::Url::parse(&url) else {
        return Ok(url);
    };
    if sent.password() != Some(HIDDEN) {
        return Ok(url);
    }
    let stored = previous_url.and_then(|p| url::Url::parse(p).ok());
    let kept = stored.as_ref().and_then(|stored| {
        let same = stored.scheme() == sent.scheme()
            && stored.username() == sent.username()
            && stored.host_str() == sent.host_str()
            && stored.port_or_known_default() == sent.port_or_known_default();
        stored.password().filter(|_| same).map(str::to_owned)
    });
    match kept {
        Some(password) => {
            sent.set_password(Some(&password))
                .map_err(|()| String::from("cannot keep the stored password"))?;
            Ok(sent.to_string())
        }
        None if stored.is_some_and(|s| s.password().is_some()) => Err(format!(
            "the password {HIDDEN} keeps the stored one only for the same scheme, user, host \
             and port; give the password again to send it elsewhere"
        )),
        None => Err(format!(
            "the password {HIDDEN} stands for a stored password, and there is none; give the \
             real password"
        )),
    }
}

/// Each field's outcome; `None` when it was bad (and said so).
struct Parts {
    name: Option<String>,
    url: Option<String>,
    interval: Option<i64>,
    /// `Some(None)`: the default, following the interval.
    timeout: Option<Option<i64>>,
    paused: Option<bool>,
    expected: Option<Option<Vec<u16>>>,
    failure_threshold: Option<u32>,
    success_threshold: Option<u32>,
    retry_interval: Option<Option<i64>>,
    channels: Option<Vec<ChannelId>>,
    tags: Option<Vec<String>>,
    regions: Option<Vec<String>>,
    /// `Some(None)`: a majority.
    quorum: Option<Option<u32>>,
    check: check_fields::Read,
}

/// Judges what depends on more than one field, then builds the spec if
/// nothing was wrong. `previous_url` is the stored URL a kept header value
/// was set for (none for a new service).
fn finish(
    mut p: Parts,
    fields: &Fields<'_>,
    previous_url: Option<&str>,
    mut errors: Vec<FieldError>,
) -> Result<ServiceSpec, Vec<FieldError>> {
    if let Some(url) = p.url.take() {
        match keep_stored_password(url, previous_url) {
            Ok(url) => p.url = Some(url),
            Err(message) => {
                let field = fields.get("url").map_or("url", |(f, _)| f);
                errors.push(FieldError::new(field, message));
            }
        }
    }
    if let (Some(i), Some(Some(t))) = (p.interval, p.timeout)
        && t > i
    {
        let field = fields.get("timeout").map_or("timeout", |(f, _)| f);
        errors.push(FieldError::new(
            field,
            format!("must not exceed the interval ({t} s > {i} s)"),
        ));
    }
    if let (Some(i), Some(Some(r))) = (p.interval, p.retry_interval)
        && r > i
    {
        // A retry later than the next round would never run.
        let field = fields
            .get("retry_interval")
            .map_or("retry_interval", |(f, _)| f);
        errors.push(FieldError::new(
            field,
            format!("must not exceed the interval ({r} s > {i} s)"),
        ));
    }
    if let (Some(regions), Some(quorum)) = (&p.regions, p.quorum) {
        let field = fields.get("quorum").map_or("quorum", |(f, _)| f);
        regions::check_quorum_fits(field, regions, quorum, &mut errors);
    }
    // The timeout in effect; unknown while the interval it follows is bad.
    let timeout = match p.timeout {
        Some(Some(t)) => Some(t),
        Some(None) => p.interval.map(default_timeout),
        None => None,
    };
    // Which fields the kind takes is judged only once the URL is known to
    // be good; a bad URL is reported on its own.
    if let Some(url) = &p.url {
        check_fields::judge(
            &p.check,
            url,
            timeout,
            matches!(p.expected, Some(Some(_))),
            previous_url,
            fields,
            &mut errors,
        );
    }
    match p {
        Parts {
            name: Some(name),
            url: Some(url),
            interval: Some(interval),
            timeout: Some(set_timeout),
            paused: Some(paused),
            expected: Some(expected_statuses),
            failure_threshold: Some(failure_threshold),
            success_threshold: Some(success_threshold),
            retry_interval: Some(retry_interval),
            channels: Some(channels),
            tags: Some(tags),
            regions: Some(regions),
            quorum: Some(quorum),
            check,
        } if errors.is_empty() && check.bad.is_empty() => Ok(ServiceSpec {
            name,
            url,
            interval: Seconds(interval),
            timeout: Seconds(set_timeout.unwrap_or_else(|| default_timeout(interval))),
            timeout_follows_interval: set_timeout.is_none(),
            paused,
            expected_statuses,
            failure_threshold,
            success_threshold,
            retry_interval: retry_interval.map(Seconds),
            channels,
            check: check.options,
            tags,
            regions,
            quorum,
        }),
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests;
