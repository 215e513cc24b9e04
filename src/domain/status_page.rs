//! Status pages: a public page (slug, title) listing some services, and
//! what it shows of them: status words and one uptime bar per day.
//!
//! Only what a page lists is public, and only names and statuses: a
//! service's URL may name an internal host.

use super::service::ServiceId;
use super::status::Status;
use super::time::Millis;
use super::validate::{FieldError, check_name};
use serde::Serialize;
use serde_json::{Map, Value};

/// Longest slug, in bytes (it is ASCII).
pub const MAX_SLUG_LEN: usize = 64;
/// Most services one page may list: every view of the page reads them all.
pub const MAX_PAGE_SERVICES: usize = 500;
/// Most status pages that may exist.
pub const MAX_STATUS_PAGES: i64 = 1000;
/// Days of uptime bars a page shows, today included.
pub const BAR_DAYS: i64 = 90;
/// One day in milliseconds; bars are UTC days.
pub const DAY_MS: Millis = 24 * super::time::HOUR_MS;

const FIELDS: [&str; 3] = ["slug", "title", "services"];
const READ_ONLY: [&str; 3] = ["id", "created_at", "updated_at"];

/// What a client sets on a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusPageSpec {
    /// Its name in URLs: 1 to [`MAX_SLUG_LEN`] of `a-z`, `0-9`, `-`.
    pub slug: String,
    /// Shown as the page's heading.
    pub title: String,
    /// The services it lists, in order, without repeats.
    pub services: Vec<ServiceId>,
}

/// A stored page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusPage {
    /// Stable id (pages are named by slug in URLs).
    pub id: i64,
    /// What the client set.
    pub spec: StatusPageSpec,
    /// When it was created.
    pub created_at: Millis,
    /// When it last changed.
    pub updated_at: Millis,
}

/// Validates a whole body (POST): every field required.
pub fn full_spec(body: &Value) -> Result<StatusPageSpec, Vec<FieldError>> {
    let mut errors = Vec::new();
    let map = fields(body, &mut errors);
    let take = |name: &str, errors: &mut Vec<FieldError>| match map.and_then(|m| m.get(name)) {
        Some(v) => Some(v),
        None => {
            if map.is_some() {
                errors.push(FieldError::new(name, "is required"));
            }
            None
        }
    };
    let slug = take("slug", &mut errors).and_then(|v| check_slug(v, &mut errors));
    let title = take("title", &mut errors).and_then(|v| check_name("title", v, &mut errors));
    let services = take("services", &mut errors).and_then(|v| check_services(v, &mut errors));
    match (slug, title, services) {
        (Some(slug), Some(title), Some(services)) if errors.is_empty() => Ok(StatusPageSpec {
            slug,
            title,
            services,
        }),
        _ => Err(errors),
    }
}

/// Validates a merge patch (PATCH) over `current`: the fields given
/// replace theirs; none may be `null` (each is required).
pub fn patch_spec(
    current: &StatusPageSpec,
    body: &Value,
) -> Result<StatusPageSpec, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut spec = current.clone();
    if let Some(map) = fields(body, &mut errors) {
        if let Some(v) = map.get("slug") {
            spec.slug = check_slug(v, &mut errors).unwrap_or_default();
        }
        if let Some(v) = map.get("title") {
            spec.title = check_name("title", v, &mut errors).unwrap_or_default();
        }
        if let Some(v) = map.get("services") {
            spec.services = check_services(v, &mut errors).unwrap_or_default();
        }
    }
    if errors.is_empty() {
        Ok(spec)
    } else {
        Err(errors)
    }
}

/// The body as an object of known fields, reporting the others.
fn fields<'a>(body: &'a Value, errors: &mut Vec<FieldError>) -> Option<&'a Map<String, Value>> {
    let Some(map) = body.as_object() else {
        errors.push(FieldError::new("", "the body must be a JSON object"));
        return None;
    };
    for key in map.keys() {
        if READ_ONLY.contains(&key.as_str()) {
            errors.push(FieldError::new(key, "is read-only"));
        } else if !FIELDS.contains(&key.as_str()) {
            errors.push(FieldError::new(
                key,
                format!("unknown field; expected one of {}", FIELDS.join(", ")),
            ));
        }
    }
    Some(map)
}

fn check_slug(v: &Value, errors: &mut Vec<FieldError>) -> Option<String> {
    let ok = v.as_str().filter(|s| {
        (1..=MAX_SLUG_LEN).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    });
    if ok.is_none() {
        errors.push(FieldError::new(
            "slug",
            format!("must be 1 to {MAX_SLUG_LEN} characters of a-z, 0-9 and -"),
        ));
    }
    ok.map(str::to_owned)
}

fn check_services(v: &Value, errors: &mut Vec<FieldError>) -> Option<Vec<ServiceId>> {
    let bad = |errors: &mut Vec<FieldError>, message: String| {
        errors.push(FieldError::new("services", message));
        None
    };
    let Some(items) = v.as_array() else {
        return bad(errors, "must be an array of service ids".into());
    };
    if items.len() > MAX_PAGE_SERVICES {
        return bad(
            errors,
            format!(
                "must list at most {MAX_PAGE_SERVICES} services (got {})",
                items.len()
            ),
        );
    }
    let mut ids: Vec<ServiceId> = Vec::with_capacity(items.len());
    for item in items {
        let Some(id) = item.as_i64().filter(|n| *n >= 1).map(ServiceId) else {
            return bad(errors, format!("{item} is not a service id"));
        };
        if ids.contains(&id) {
            return bad(errors, format!("lists service {id} more than once"));
        }
        ids.push(id);
    }
    Some(ids)
}

/// One service's checks over one UTC day, summed from its hourly rollups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayCount {
    /// The service.
    pub service_id: ServiceId,
    /// Start of the day (a multiple of [`DAY_MS`]).
    pub day_start: Millis,
    /// Checks counted.
    pub checks: i64,
    /// Of those, DOWN.
    pub failures: i64,
}

/// One bar: a day, and the share of its checks that passed.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DayBar {
    /// The day, `YYYY-MM-DD` (UTC).
    pub date: String,
    /// Checks counted that day.
    pub checks: i64,
    /// `(checks - failures) / checks`, DEGRADED counting as up; `null` for
    /// a day without data.
    pub uptime_ratio: Option<f64>,
}

/// The first day of the bars that end with the day holding `now`.
pub fn first_bar_day(now: Millis) -> Millis {
    now - now.rem_euclid(DAY_MS) - (BAR_DAYS - 1) * DAY_MS
}

/// [`BAR_DAYS`] bars from `first_day`, oldest first, from one service's
/// day counts (any order; other days ignored). Days without a count are
/// bars without data, not bars of 0 %.
pub fn bars(counts: &[DayCount], first_day: Millis) -> Vec<DayBar> {
    (0..BAR_DAYS)
        .map(|i| {
            let day = first_day + i * DAY_MS;
            let (checks, failures) = counts
                .iter()
                .filter(|c| c.day_start == day)
                .fold((0, 0), |(c, f), d| (c + d.checks, f + d.failures));
            DayBar {
                date: day_name(day),
                checks,
                uptime_ratio: (checks > 0).then(|| (checks - failures) as f64 / checks as f64),
            }
        })
        .collect()
}

fn day_name(day: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(day)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// The share of checks that passed over some day counts; `None` without
/// checks.
pub fn uptime_ratio(counts: &[DayCount]) -> Option<f64> {
    let (checks, failures) = counts
        .iter()
        .fold((0, 0), |(c, f), d| (c + d.checks, f + d.failures));
    (checks > 0).then(|| (checks - failures) as f64 / checks as f64)
}

/// What a service shows publicly: its status, or PAUSED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum PublicStatus {
    /// Not checked yet.
    Pending,
    /// Passing.
    Up,
    /// Passing, over a soft limit.
    Degraded,
    /// Failing.
    Down,
    /// Not being checked.
    Paused,
}

impl PublicStatus {
    /// The status a service shows.
    pub fn of(status: Status, paused: bool) -> Self {
        match (paused, status) {
            (true, _) => PublicStatus::Paused,
            (false, Status::Pending) => PublicStatus::Pending,
            (false, Status::Up) => PublicStatus::Up,
            (false, Status::Degraded) => PublicStatus::Degraded,
            (false, Status::Down) => PublicStatus::Down,
        }
    }

    /// The word shown (the page must read without colour).
    pub fn as_str(self) -> &'static str {
        match self {
            PublicStatus::Pending => "PENDING",
            PublicStatus::Up => "UP",
            PublicStatus::Degraded => "DEGRADED",
            PublicStatus::Down => "DOWN",
            PublicStatus::Paused => "PAUSED",
        }
    }
}

/// A page's overall status: DOWN if any service is, else DEGRADED if any
/// is, else UP if any is, else PENDING (nothing checked). Paused services
/// do not count.
pub fn overall(statuses: impl IntoIterator<Item = PublicStatus>) -> PublicStatus {
    let mut worst = PublicStatus::Pending;
    for s in statuses {
        worst = match (worst, s) {
            (_, PublicStatus::Down) | (PublicStatus::Down, _) => PublicStatus::Down,
            (_, PublicStatus::Degraded) | (PublicStatus::Degraded, _) => PublicStatus::Degraded,
            (_, PublicStatus::Up) | (PublicStatus::Up, _) => PublicStatus::Up,
            _ => PublicStatus::Pending,
        };
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields_of(r: Result<StatusPageSpec, Vec<FieldError>>) -> Vec<String> {
        r.unwrap_err().into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn a_valid_body_and_each_bad_field_by_name() {
        let spec = full_spec(&json!({"slug": "a-1", "title": " Ops ", "services": [2, 1]}));
        assert_eq!(
            spec,
            Ok(StatusPageSpec {
                slug: "a-1".into(),
                title: "Ops".into(),
                services: vec![ServiceId(2), ServiceId(1)],
            })
        );
        let long = "a".repeat(MAX_SLUG_LEN + 1);
        for slug in [
            json!(""),
            json!("A"),
            json!("a_b"),
            json!("a.json"),
            json!(long),
            json!(1),
        ] {
            let body = json!({"slug": slug, "title": "t", "services": []});
            assert_eq!(fields_of(full_spec(&body)), ["slug"], "{slug}");
        }
        let ok = "a".repeat(MAX_SLUG_LEN);
        assert!(full_spec(&json!({"slug": ok, "title": "t", "services": []})).is_ok());
        for title in [
            json!(""),
            json!("a\u{202E}b"),
            json!("a\u{7}b"),
            json!("y".repeat(201)),
        ] {
            let body = json!({"slug": "s", "title": title, "services": []});
            assert_eq!(fields_of(full_spec(&body)), ["title"], "{title}");
        }
        let many: Vec<i64> = (1..=MAX_PAGE_SERVICES as i64 + 1).collect();
        for services in [
            json!([1, 1]),
            json!([0]),
            json!(["1"]),
            json!(many),
            json!(3),
        ] {
            let body = json!({"slug": "s", "title": "t", "services": services});
            assert_eq!(fields_of(full_spec(&body)), ["services"], "{services}");
        }
        assert_eq!(
            fields_of(full_spec(&json!({"id": 1, "x": 2}))),
            ["id", "x", "slug", "title", "services"]
        );
    }

    #[test]
    fn a_patch_replaces_only_the_fields_given() {
        let current = full_spec(&json!({"slug": "a", "title": "A", "services": [1]})).unwrap();
        let patched = patch_spec(&current, &json!({"title": "B"})).unwrap();
        assert_eq!((patched.slug.as_str(), patched.title.as_str()), ("a", "B"));
        assert_eq!(patched.services, [ServiceId(1)]);
        let errors = patch_spec(&current, &json!({"services": null, "slug": "B"})).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["slug", "services"]);
    }

    #[test]
    fn bars_are_days_with_degraded_as_up_and_empty_days_without_data() {
        let now = 1_700_000_000_000;
        let first = first_bar_day(now);
        assert_eq!(first % DAY_MS, 0);
        let today = first + (BAR_DAYS - 1) * DAY_MS;
        assert!((today..today + DAY_MS).contains(&now));
        let count = |day_start, checks, failures| DayCount {
            service_id: ServiceId(1),
            day_start,
            checks,
            failures,
        };
        let counts = [
            count(first, 4, 1),
            count(today, 10, 0),
            count(first - DAY_MS, 5, 5),
        ];
        let bars = bars(&counts, first);
        assert_eq!(bars.len(), BAR_DAYS as usize);
        assert_eq!(bars[0].uptime_ratio, Some(0.75));
        assert_eq!(bars[1].uptime_ratio, None, "no data is not 0 %");
        assert_eq!(bars[1].checks, 0);
        assert_eq!(bars[89].uptime_ratio, Some(1.0));
        assert_eq!(bars[0].date, day_name(first));
        assert_eq!(uptime_ratio(&counts[..2]), Some(13.0 / 14.0));
        assert_eq!(uptime_ratio(&[]), None);
    }

    #[test]
    fn overall_is_the_worst_status_and_ignores_paused() {
        use PublicStatus::*;
        assert_eq!(overall([Up, Degraded, Up]), Degraded);
        assert_eq!(overall([Down, Degraded, Pending]), Down);
        assert_eq!(overall([Up, Pending, Paused]), Up);
        assert_eq!(overall([Paused, Pending]), Pending);
        assert_eq!(overall([]), Pending);
        assert_eq!(PublicStatus::of(Status::Down, true), Paused);
    }
}
