//! The request bodies as the API reads them, for the document only.
//!
//! Handlers read a body as JSON and validate it field by field
//! (`domain::validate`, `domain::channel_spec`, `domain::window`,
//! `domain::status_page`), so that every bad field is named at once; these
//! types describe what that validation accepts. Unknown fields are refused
//! with 422.

use crate::domain::check_kind::CheckFields;
use crate::domain::{ChannelId, ServiceId};
use serde::Deserialize;
use utoipa::ToSchema;

/// A service to register or replace (`POST`, `PUT`); a `PATCH` sends any of
/// these fields. The URL's scheme selects the check kind, and each kind
/// takes its own fields (`method`, `headers`, ... for http(s)).
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct ServiceInput {
    /// 1-200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// `http(s)://`, `tcp://host:port`, `tls://host:port`,
    /// `dns://[resolver]/name?type=A` or `push://`.
    #[schema(max_length = 2048)]
    pub url: String,
    /// Seconds between checks.
    #[schema(minimum = 1, maximum = 86400)]
    pub interval: i64,
    /// Seconds a check may take, at most `interval`; default
    /// `min(10, interval)`. `Timeout` is read too.
    #[schema(minimum = 1, maximum = 86400)]
    pub timeout: Option<i64>,
    /// Statuses that count as UP; `null`: 200-399.
    pub expected_statuses: Option<Vec<u16>>,
    /// Failing rounds in a row that make it DOWN (1-100, default 1).
    #[schema(minimum = 1, maximum = 100)]
    pub failure_threshold: Option<u32>,
    /// Passing rounds in a row that make it UP again (1-100, default 1).
    #[schema(minimum = 1, maximum = 100)]
    pub success_threshold: Option<u32>,
    /// Seconds to the next check while a failure is unconfirmed; default
    /// the interval.
    pub retry_interval: Option<i64>,
    /// Its own alert channels.
    pub channels: Option<Vec<ChannelId>>,
    /// Labels (1-64 characters each, at most 32).
    pub tags: Option<Vec<String>>,
    /// Regions that check it each round (1-16 distinct names of 1-32
    /// characters from a-z, 0-9 and -; `null` or `[]`: any worker, once).
    /// An embedded monitor has one region, `worker.region`; others need a
    /// fleet.
    #[schema(max_items = 16)]
    pub regions: Option<Vec<String>>,
    /// Regions that must see a round fail for DOWN, at most as many as
    /// listed and only with `regions`; `null`: a majority.
    #[schema(minimum = 1, maximum = 16)]
    pub quorum: Option<u32>,
    /// Whether checks are suspended.
    pub paused: Option<bool>,
    /// The check kind's settings.
    #[serde(flatten)]
    pub check: CheckFields,
}

/// An alert channel (`POST`, `PUT`); a `PATCH` sends any of these fields
/// and merges `config`.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct ChannelInput {
    /// Unique name.
    pub name: String,
    /// `webhook`, `slack`, `discord`, `teams`, `email`, `ntfy`,
    /// `telegram` or `pagerduty`.
    pub kind: String,
    /// The kind's settings (`url`, `secret`, `token`, `api_base`, ...);
    /// secrets are write-only.
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
    /// Whether every service's alerts come here (default false).
    pub all_services: Option<bool>,
    /// Seconds between reminders while DOWN; 0 (the default) is never.
    pub remind_every_s: Option<i64>,
}

/// A maintenance window: one-off (`start`, `end`) or recurring (`cron`,
/// `duration_s`, `timezone`). `PATCH` is a JSON merge patch of these.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct WindowInput {
    /// Its name.
    pub name: String,
    /// `"all"` or a list of service ids.
    #[schema(value_type = Option<Object>)]
    pub services: Option<serde_json::Value>,
    /// Every service with this tag is covered too.
    pub tag: Option<String>,
    /// A one-off window's first instant (RFC 3339).
    #[schema(format = DateTime)]
    pub start: Option<String>,
    /// A one-off window's end (RFC 3339, exclusive).
    #[schema(format = DateTime)]
    pub end: Option<String>,
    /// A recurring window's 5-field cron pattern (`0 2 * * SUN`).
    pub cron: Option<String>,
    /// A recurring window's length, seconds.
    pub duration_s: Option<i64>,
    /// A recurring window's IANA time zone (default UTC).
    pub timezone: Option<String>,
}

/// A status page; `PATCH` is a JSON merge patch of these.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct StatusPageInput {
    /// Its name in URLs: a-z, 0-9 and `-`, 1-64 characters.
    #[schema(pattern = "^[a-z0-9-]{1,64}$")]
    pub slug: String,
    /// Its heading.
    pub title: String,
    /// The services it shows, in order (at most 500).
    pub services: Vec<ServiceId>,
}
