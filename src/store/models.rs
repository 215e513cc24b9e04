//! Rows as the tables hold them, and their conversion to and from domain
//! types. Private to the store: nothing outside it sees a row.
#![allow(
    missing_docs,
    reason = "each field is its table's column of the same name (schema.rs)"
)]

use super::schema::{alerts, api_keys, health_logs, hourly_rollups, services, state_changes};
use crate::domain::api_key::{ApiKey, NewApiKey};
use crate::domain::confirm::Thresholds;
use crate::domain::health_log::HealthLog;
use crate::domain::plan::{self, Current, EnteredSince, OutboxRow, Plan, Transition};
use crate::domain::time::{Millis, Seconds};
use crate::domain::uptime::HourlyRollup;
use crate::domain::{ChannelId, CheckResult, Service, ServiceId, ServiceSpec, Status};
use diesel::prelude::*;
use std::collections::{HashMap, HashSet};

/// A `services` row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = services)]
pub struct ServiceRow {
    pub id: i64,
    pub name: String,
    pub url: String,
    pub interval_s: i64,
    pub timeout_s: i64,
    pub expected_statuses: Option<String>,
    pub paused: bool,
    pub last_status: String,
    pub last_check: Option<i64>,
    pub last_latency_ms: Option<i64>,
    pub last_scheduled_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub version: i64,
    pub failure_threshold: i32,
    pub success_threshold: i32,
    pub retry_interval_s: Option<i64>,
    pub channel_ids: Option<String>,
    pub check_options: String,
    #[allow(dead_code, reason = "read by push monitors")]
    pub push_token_hash: Option<String>,
    pub timeout_follows_interval: bool,
    pub tags: String,
    pub regions: String,
    pub quorum: Option<i32>,
}

impl ServiceRow {
    /// Converts to the API's view. An unreadable status (a row edited by
    /// hand) shows as PENDING rather than failing the whole listing.
    pub fn into_service(self) -> Service {
        Service {
            id: ServiceId(self.id),
            name: self.name,
            url: self.url,
            interval: Seconds(self.interval_s),
            timeout: Seconds(self.timeout_s),
            timeout_follows_interval: self.timeout_follows_interval,
            expected_statuses: decode_statuses(self.expected_statuses.as_deref()),
            failure_threshold: threshold(self.failure_threshold),
            success_threshold: threshold(self.success_threshold),
            retry_interval: Seconds(self.retry_interval_s.unwrap_or(self.interval_s)),
            retry_interval_set: self.retry_interval_s.map(Seconds),
            channels: decode_channels(self.channel_ids.as_deref()),
            tags: decode_tags(&self.tags),
            regions: decode_tags(&self.regions),
            quorum: decode_quorum(self.quorum),
            check: super::interned::options(&self.check_options),
            last_status: self.last_status.parse().unwrap_or(Status::Pending),
            last_check: self.last_check,
            last_latency_ms: self.last_latency_ms,
            paused: self.paused,
            created_at: self.created_at,
            updated_at: self.updated_at,
            last_scheduled_at: self.last_scheduled_at,
            version: self.version,
        }
    }
}

/// A service's row as a batch reads it: what its results are judged
/// against.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = services)]
pub struct CurrentRow {
    pub id: i64,
    pub name: String,
    pub last_status: String,
    pub last_scheduled_at: Option<i64>,
    pub interval_s: i64,
    pub failure_threshold: i32,
    pub success_threshold: i32,
    pub retry_interval_s: Option<i64>,
    pub channel_ids: Option<String>,
    pub regions: String,
    pub quorum: Option<i32>,
}

/// The rows a batch read, by id, as [`crate::domain::plan::plan`] takes
/// them. An unreadable status (a row edited by hand) counts as PENDING.
pub fn current(rows: Vec<CurrentRow>) -> HashMap<ServiceId, Current> {
    rows.into_iter()
        .map(|r| {
            let interval_ms = Seconds(r.interval_s).millis();
            // A retry at the interval or later is just the next round.
            let retry_ms = r
                .retry_interval_s
                .map(|s| Seconds(s).millis())
                .filter(|ms| *ms >= 1 && *ms < interval_ms);
            let row = Current {
                name: r.name,
                status: r.last_status.parse().unwrap_or(Status::Pending),
                scheduled_at: r.last_scheduled_at,
                thresholds: Thresholds {
                    failure: threshold(r.failure_threshold),
                    success: threshold(r.success_threshold),
                },
                retry_ms,
                channels: decode_channels(r.channel_ids.as_deref()),
                regions: decode_tags(&r.regions),
                quorum: decode_quorum(r.quorum),
            };
            (ServiceId(r.id), row)
        })
        .collect()
}

/// Newest rounds as read, `(scheduled_at, status)`; an unreadable status
/// (a row edited by hand) is left out.
pub fn rounds(rows: Vec<(i64, String)>) -> Vec<(Millis, Status)> {
    rows.into_iter()
        .filter_map(|(at, s)| Some((at, s.parse().ok()?)))
        .collect()
}

/// The statuses an `up` alert ends, whose start [`outbox_rows`] needs:
/// the store reads the newest transition into each (see [`SinceRow`]).
pub const ENDED_BY_UP: [&str; 2] = ["DOWN", "DEGRADED"];

/// `(service, status, newest changed_at into it)` from `state_changes`.
pub type SinceRow = (i64, String, Option<i64>);

/// The outbox rows of a batch's plan, given the channels read for it
/// (`(id, all_services)`: the listed ones that exist and every
/// all-services one) and when its services last went DOWN or DEGRADED.
pub fn outbox_rows(
    plan: &Plan,
    channels: Vec<(i64, bool)>,
    since: Vec<SinceRow>,
) -> Vec<OutboxRow> {
    let existing: HashSet<ChannelId> = channels.iter().map(|(id, _)| ChannelId(*id)).collect();
    let all: Vec<ChannelId> = channels
        .iter()
        .filter(|(_, all)| *all)
        .map(|(id, _)| ChannelId(*id))
        .collect();
    let since: EnteredSince = since
        .into_iter()
        .filter_map(|(id, status, at)| Some(((ServiceId(id), status.parse().ok()?), at?)))
        .collect();
    plan::outbox_rows(&plan.alerts, &existing, &all, &since)
}

/// Columns written when a service is created.
#[derive(Debug, Insertable)]
#[diesel(table_name = services)]
pub struct NewServiceRow<'a> {
    pub name: &'a str,
    pub url: &'a str,
    pub interval_s: i64,
    pub timeout_s: i64,
    pub expected_statuses: Option<String>,
    pub paused: bool,
    pub last_status: &'static str,
    pub created_at: i64,
    pub updated_at: i64,
    pub failure_threshold: i32,
    pub success_threshold: i32,
    pub retry_interval_s: Option<i64>,
    pub channel_ids: Option<String>,
    pub check_options: String,
    pub timeout_follows_interval: bool,
    pub tags: String,
    pub regions: String,
    pub quorum: Option<i32>,
}

impl<'a> NewServiceRow<'a> {
    /// The row for a new service.
    pub fn new(spec: &'a ServiceSpec, now: Millis) -> Self {
        Self {
            name: &spec.name,
            url: &spec.url,
            interval_s: spec.interval.get(),
            timeout_s: spec.timeout.get(),
            expected_statuses: encode_statuses(spec.expected_statuses.as_deref()),
            paused: spec.paused,
            last_status: Status::Pending.as_str(),
            created_at: now,
            updated_at: now,
            failure_threshold: spec.failure_threshold as i32,
            success_threshold: spec.success_threshold as i32,
            retry_interval_s: spec.retry_interval.map(Seconds::get),
            channel_ids: encode_channels(&spec.channels),
            check_options: spec.check.to_json(),
            timeout_follows_interval: spec.timeout_follows_interval,
            tags: encode_tags(&spec.tags),
            regions: encode_tags(&spec.regions),
            quorum: encode_quorum(spec.quorum),
        }
    }
}

/// Columns written when a service's settings change.
#[derive(Debug, AsChangeset)]
#[diesel(table_name = services, treat_none_as_null = true)]
pub struct ServiceChanges<'a> {
    pub name: &'a str,
    pub url: &'a str,
    pub interval_s: i64,
    pub timeout_s: i64,
    pub expected_statuses: Option<String>,
    pub paused: bool,
    pub updated_at: i64,
    pub failure_threshold: i32,
    pub success_threshold: i32,
    pub retry_interval_s: Option<i64>,
    pub channel_ids: Option<String>,
    pub check_options: String,
    pub timeout_follows_interval: bool,
    pub tags: String,
    pub regions: String,
    pub quorum: Option<i32>,
}

impl<'a> ServiceChanges<'a> {
    /// The changes that make a row match `spec`.
    pub fn new(spec: &'a ServiceSpec, now: Millis) -> Self {
        Self {
            name: &spec.name,
            url: &spec.url,
            interval_s: spec.interval.get(),
            timeout_s: spec.timeout.get(),
            expected_statuses: encode_statuses(spec.expected_statuses.as_deref()),
            paused: spec.paused,
            updated_at: now,
            failure_threshold: spec.failure_threshold as i32,
            success_threshold: spec.success_threshold as i32,
            retry_interval_s: spec.retry_interval.map(Seconds::get),
            channel_ids: encode_channels(&spec.channels),
            check_options: spec.check.to_json(),
            timeout_follows_interval: spec.timeout_follows_interval,
            tags: encode_tags(&spec.tags),
            regions: encode_tags(&spec.regions),
            quorum: encode_quorum(spec.quorum),
        }
    }
}

/// A `health_logs` row, as far as the API shows it.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = health_logs)]
pub struct HealthLogRow {
    pub id: i64,
    pub service_id: i64,
    pub status: String,
    pub latency_ms: i64,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub checked_at: i64,
    pub cert_expires_at: Option<i64>,
    pub region: String,
}

impl From<HealthLogRow> for HealthLog {
    fn from(r: HealthLogRow) -> Self {
        Self {
            id: r.id,
            service_id: ServiceId(r.service_id),
            status: r.status,
            latency_ms: r.latency_ms,
            status_code: r.status_code,
            error: r.error,
            checked_at: r.checked_at,
            cert_expires_at: r.cert_expires_at,
            region: decode_region(r.region),
        }
    }
}

/// A log to insert.
#[derive(Debug, Insertable)]
#[diesel(table_name = health_logs)]
pub struct NewHealthLog<'a> {
    pub service_id: i64,
    pub status: &'static str,
    pub latency_ms: i64,
    pub status_code: Option<i32>,
    pub error: Option<&'a str>,
    pub scheduled_at: i64,
    pub checked_at: i64,
    pub cert_expires_at: Option<i64>,
    pub region: &'a str,
}

impl<'a> NewHealthLog<'a> {
    /// The log of a check result, under `region` (see
    /// [`crate::domain::plan::Current::log_region`]).
    pub fn from_result(r: &'a CheckResult, region: Option<&'a str>) -> Self {
        Self {
            service_id: r.service_id.get(),
            status: r.status.as_str(),
            latency_ms: r.latency_ms,
            status_code: r.status_code.map(i32::from),
            error: r.error.as_deref(),
            scheduled_at: r.scheduled_at,
            checked_at: r.checked_at,
            cert_expires_at: r.cert_expires_at,
            region: encode_region(region),
        }
    }
}

/// A transition to insert.
#[derive(Debug, Insertable)]
#[diesel(table_name = state_changes)]
pub struct NewStateChange {
    pub service_id: i64,
    pub old_status: &'static str,
    pub new_status: &'static str,
    pub latency_ms: i64,
    pub scheduled_at: i64,
    pub changed_at: i64,
}

impl From<&Transition> for NewStateChange {
    fn from(t: &Transition) -> Self {
        Self {
            service_id: t.service_id.get(),
            old_status: t.old.as_str(),
            new_status: t.new.as_str(),
            latency_ms: t.latency_ms,
            scheduled_at: t.scheduled_at,
            changed_at: t.changed_at,
        }
    }
}

/// An outbox row to insert (state, attempts and the rest keep their
/// defaults: pending, never tried).
#[derive(Debug, Insertable)]
#[diesel(table_name = alerts)]
pub struct NewAlertRow {
    pub service_id: Option<i64>,
    pub channel_id: i64,
    pub event: &'static str,
    pub old_status: &'static str,
    pub new_status: &'static str,
    pub scheduled_at: i64,
    pub payload: String,
    pub created_at: i64,
    pub next_attempt_at: i64,
}

impl NewAlertRow {
    /// The row for `row`, due at once.
    pub fn new(row: &OutboxRow, now: Millis) -> Self {
        Self {
            service_id: Some(row.service_id.get()),
            channel_id: row.channel_id.get(),
            event: row.event.as_str(),
            old_status: row.old.as_str(),
            new_status: row.new.as_str(),
            scheduled_at: row.scheduled_at,
            payload: payload_json(row),
            created_at: now,
            next_attempt_at: now,
        }
    }
}

/// The payload column: `AlertPayload` as JSON (it always serializes; the
/// fallback only keeps the row writable).
pub fn payload_json(row: &OutboxRow) -> String {
    serde_json::to_string(&row.payload).unwrap_or_else(|_| String::from("{}"))
}

/// An `api_keys` row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_keys)]
pub struct ApiKeyRow {
    pub id: i64,
    pub name: String,
    pub scope: String,
    pub token_hash: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

impl From<ApiKeyRow> for ApiKey {
    fn from(r: ApiKeyRow) -> Self {
        Self {
            id: r.id,
            name: r.name,
            scope: r.scope,
            token_hash: r.token_hash,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
        }
    }
}

/// A key to insert.
#[derive(Debug, Insertable)]
#[diesel(table_name = api_keys)]
pub struct NewApiKeyRow<'a> {
    pub name: &'a str,
    pub scope: &'static str,
    pub token_hash: &'a str,
    pub created_at: i64,
}

impl<'a> From<&NewApiKey<'a>> for NewApiKeyRow<'a> {
    fn from(k: &NewApiKey<'a>) -> Self {
        Self {
            name: k.name,
            scope: k.scope.as_str(),
            token_hash: k.token_hash,
            created_at: k.created_at,
        }
    }
}

/// An `hourly_rollups` row.
#[derive(Debug, Clone, Copy, Queryable, Selectable)]
#[diesel(table_name = hourly_rollups)]
pub struct HourlyRollupRow {
    pub service_id: i64,
    pub hour_start: i64,
    pub checks: i64,
    pub failures: i64,
    pub latency_sum_ms: i64,
    pub latency_max_ms: i64,
    pub degraded: i64,
}

impl From<HourlyRollupRow> for HourlyRollup {
    fn from(r: HourlyRollupRow) -> Self {
        Self {
            service_id: ServiceId(r.service_id),
            hour_start: r.hour_start,
            checks: r.checks,
            failures: r.failures,
            degraded: r.degraded,
            latency_sum_ms: r.latency_sum_ms,
            latency_max_ms: r.latency_max_ms,
        }
    }
}

/// Stores a status list as `"200,204"`: portable across backends.
pub fn encode_statuses(list: Option<&[u16]>) -> Option<String> {
    list.map(|l| l.iter().map(u16::to_string).collect::<Vec<_>>().join(","))
}

/// Reads a list written by [`encode_statuses`], skipping anything unreadable.
pub fn decode_statuses(text: Option<&str>) -> Option<Vec<u16>> {
    let list: Vec<u16> = text?
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    (!list.is_empty()).then_some(list)
}

/// A threshold column as the domain counts it; the store's CHECK keeps it
/// in 1..=100, and a row edited past it counts as 1.
fn threshold(column: i32) -> u32 {
    u32::try_from(column).ok().filter(|n| *n >= 1).unwrap_or(1)
}

/// Stores channel ids as a JSON array (`"[1,2]"`), `NULL` when there are none.
pub fn encode_channels(ids: &[ChannelId]) -> Option<String> {
    (!ids.is_empty()).then(|| serde_json::to_string(ids).unwrap_or_default())
}

/// Reads a list written by [`encode_channels`]; anything unreadable is none.
pub fn decode_channels(text: Option<&str>) -> Vec<ChannelId> {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default()
}

/// Stores tags as a JSON array (`'["prod","api"]'`, `'[]'` for none): the
/// triggers of `service_tags` read it with `json_each` (SQLite) or
/// `jsonb_array_elements_text` (PostgreSQL).
pub fn encode_tags(tags: &[String]) -> String {
    serde_json::to_string(tags).unwrap_or_else(|_| String::from("[]"))
}

/// Reads a list written by [`encode_tags`]; anything unreadable is none.
pub fn decode_tags(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

/// A quorum as stored (validation keeps it within 1..=16).
pub fn encode_quorum(quorum: Option<u32>) -> Option<i32> {
    quorum.map(|q| i32::try_from(q).unwrap_or(i32::MAX))
}

/// Reads a stored quorum; a value below 1 (a row edited by hand) is none:
/// the majority.
pub fn decode_quorum(quorum: Option<i32>) -> Option<u32> {
    quorum
        .and_then(|q| u32::try_from(q).ok())
        .filter(|q| *q >= 1)
}

/// A log's region as stored: `''` for none, so the (service, scheduled_at,
/// region) key also repeats for logs without one (SQL's NULLs never do).
pub fn encode_region(region: Option<&str>) -> &str {
    region.unwrap_or("")
}

/// Reads a stored region: `''` is none.
pub fn decode_region(region: String) -> Option<String> {
    (!region.is_empty()).then_some(region)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_and_quorum_round_trip() {
        assert_eq!(decode_region(encode_region(None).to_owned()), None);
        assert_eq!(
            decode_region(encode_region(Some("eu")).to_owned()),
            Some("eu".to_owned())
        );
        assert_eq!(decode_quorum(encode_quorum(Some(2))), Some(2));
        assert_eq!(decode_quorum(encode_quorum(None)), None);
        assert_eq!(
            decode_quorum(Some(0)),
            None,
            "a hand-edited 0 is a majority"
        );
    }

    #[test]
    fn tag_lists_round_trip() {
        let tags = vec!["prod".to_owned(), "team:pay/eu".to_owned()];
        assert_eq!(encode_tags(&tags), r#"["prod","team:pay/eu"]"#);
        assert_eq!(decode_tags(&encode_tags(&tags)), tags);
        assert_eq!(encode_tags(&[]), "[]");
        assert!(decode_tags("garbage").is_empty());
    }

    #[test]
    fn channel_lists_round_trip_and_none_is_null() {
        let enc = encode_channels(&[ChannelId(3), ChannelId(1)]);
        assert_eq!(enc.as_deref(), Some("[3,1]"));
        assert_eq!(
            decode_channels(enc.as_deref()),
            [ChannelId(3), ChannelId(1)]
        );
        assert_eq!(encode_channels(&[]), None);
        assert!(decode_channels(None).is_empty());
        assert!(decode_channels(Some("garbage")).is_empty());
    }

    #[test]
    fn status_lists_round_trip() {
        let enc = encode_statuses(Some(&[200, 503]));
        assert_eq!(enc.as_deref(), Some("200,503"));
        assert_eq!(decode_statuses(enc.as_deref()), Some(vec![200, 503]));
        assert_eq!(decode_statuses(None), None);
        assert_eq!(decode_statuses(Some("")), None);
    }
}
