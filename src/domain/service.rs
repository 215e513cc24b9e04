//! A monitored service: what the user asked for and what we last saw.

use super::channel::ChannelId;
use super::check_kind::CheckOptions;
use super::confirm::Thresholds;
use super::status::Status;
use super::time::{Millis, Seconds, serde_rfc3339};
use serde::{Deserialize, Serialize};

/// A service's id: stable, never reused, positive. A type of its own so a
/// service id cannot be passed where a log id, a key id or a count is
/// meant; on the wire and in the store it is the plain integer.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct ServiceId(pub i64);

impl ServiceId {
    /// The integer, for the store and for URLs.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl std::fmt::Display for ServiceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The fields a user sets on a service (everything but identity and status).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// Human-readable name, 1..=200 characters.
    pub name: String,
    /// Absolute http(s) URL to check.
    pub url: String,
    /// Time between checks.
    pub interval: Seconds,
    /// Time a check may take, never more than `interval`: the one in
    /// effect, which the scheduler puts in every job.
    pub timeout: Seconds,
    /// Whether `timeout` is the default `min(10 s, interval)` rather than
    /// one the user set: a default follows every change of the interval.
    /// Absent on the wire (a schedule update from an older process) means
    /// set, which is how such a process treated every timeout.
    #[serde(default)]
    pub timeout_follows_interval: bool,
    /// A paused service stays registered but is not checked.
    pub paused: bool,
    /// Response statuses that count as UP; `None` means 200-399.
    pub expected_statuses: Option<Vec<u16>>,
    /// Failing rounds in a row that make the service DOWN (1..=100).
    /// Defaulted on the wire so a schedule update from an older process
    /// still reads.
    #[serde(default = "one")]
    pub failure_threshold: u32,
    /// Passing rounds in a row that make it UP again (1..=100).
    #[serde(default = "one")]
    pub success_threshold: u32,
    /// Seconds to the next check while a failure is unconfirmed; `None`
    /// follows the interval (so changing the interval moves it too).
    #[serde(default)]
    pub retry_interval: Option<Seconds>,
    /// The service's own alert channels (besides the `all_services` ones).
    #[serde(default)]
    pub channels: Vec<ChannelId>,
    /// The settings of its check kind (method, assertions, grace, ...).
    #[serde(default)]
    pub check: CheckOptions,
    /// Labels to group and filter by (`["prod", "api"]`), in the order
    /// given, without repeats; see `validate::tags` for what a tag may be.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The regions that each check every round (`["eu", "us"]`), each once,
    /// in the order given; empty: not regional, one check a round by any
    /// worker (DESIGN.md "Regions and quorum").
    #[serde(default)]
    pub regions: Vec<String>,
    /// How many regions must see a round fail for it to count as DOWN
    /// (1..=`regions.len()`); `None`: a majority. Only with `regions`.
    #[serde(default)]
    pub quorum: Option<u32>,
}

fn one() -> u32 {
    1
}

impl ServiceSpec {
    /// How many rounds in a row change the status.
    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            failure: self.failure_threshold,
            success: self.success_threshold,
        }
    }

    /// The retry interval in effect.
    pub fn effective_retry_interval(&self) -> Seconds {
        self.retry_interval.unwrap_or(self.interval)
    }

    /// The quorum in effect: the one set, else a majority of the regions
    /// (0 for a service without regions).
    pub fn effective_quorum(&self) -> u32 {
        crate::domain::quorum::effective(self.regions.len(), self.quorum)
    }
}

/// A service as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Service {
    /// Stable id, never reused.
    pub id: ServiceId,
    /// Human-readable name.
    pub name: String,
    /// Target URL, with any password shown as `***`.
    #[serde(serialize_with = "serialize_redacted_url")]
    pub url: String,
    /// Seconds between checks.
    pub interval: Seconds,
    /// Seconds a check may take: the one in effect.
    pub timeout: Seconds,
    /// Whether the timeout is the default that follows the interval (no
    /// user set one); what a PATCH of the interval alone consults.
    #[serde(skip)]
    #[schema(ignore)]
    pub timeout_follows_interval: bool,
    /// Response statuses that count as UP; `null` means 200-399.
    pub expected_statuses: Option<Vec<u16>>,
    /// Failing rounds in a row that make it DOWN.
    pub failure_threshold: u32,
    /// Passing rounds in a row that make it UP again.
    pub success_threshold: u32,
    /// Seconds to the next check while a failure is unconfirmed: the one in
    /// effect, so the interval when none was set.
    pub retry_interval: Seconds,
    /// The retry interval as set (`None`: follow the interval); what a
    /// PATCH merges into.
    #[serde(skip)]
    #[schema(ignore)]
    pub retry_interval_set: Option<Seconds>,
    /// Its own alert channels' ids.
    pub channels: Vec<ChannelId>,
    /// Its tags, in the order given (`[]` when none).
    pub tags: Vec<String>,
    /// The regions that check it each round (`[]`: not regional).
    pub regions: Vec<String>,
    /// Regions that must see a round fail for DOWN, as set (`null`: a
    /// majority of `regions`).
    pub quorum: Option<u32>,
    /// The settings of its check kind, flattened into the service's fields
    /// as the user gave them; header values show as `***`.
    #[serde(flatten, serialize_with = "serialize_shown_options")]
    #[schema(value_type = super::check_kind::CheckFields)]
    pub check: CheckOptions,
    /// Result of the most recent check, or PENDING.
    pub last_status: Status,
    /// When the most recent check finished.
    #[serde(serialize_with = "serde_rfc3339::option::serialize")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_check: Option<Millis>,
    /// Latency of the most recent check.
    pub last_latency_ms: Option<i64>,
    /// Whether checks are suspended.
    pub paused: bool,
    /// Registration time.
    #[serde(serialize_with = "serde_rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
    /// Last change of the user-set fields.
    #[serde(serialize_with = "serde_rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Millis,
    /// Due time of the check behind `last_status`; orders late results.
    #[serde(skip)]
    #[schema(ignore)]
    pub last_scheduled_at: Option<Millis>,
    /// Bumped by every settings change; the compare-and-set key of PATCH.
    #[serde(skip)]
    #[schema(ignore)]
    pub version: i64,
}

impl Service {
    /// The user-set part of this service.
    pub fn spec(&self) -> ServiceSpec {
        ServiceSpec {
            name: self.name.clone(),
            url: self.url.clone(),
            interval: self.interval,
            timeout: self.timeout,
            timeout_follows_interval: self.timeout_follows_interval,
            paused: self.paused,
            expected_statuses: self.expected_statuses.clone(),
            failure_threshold: self.failure_threshold,
            success_threshold: self.success_threshold,
            retry_interval: self.retry_interval_set,
            channels: self.channels.clone(),
            check: self.check.clone(),
            tags: self.tags.clone(),
            regions: self.regions.clone(),
            quorum: self.quorum,
        }
    }
}

fn serialize_shown_options<S: serde::Serializer>(
    options: &CheckOptions,
    s: S,
) -> Result<S::Ok, S::Error> {
    options.shown().serialize(s)
}

fn serialize_redacted_url<S: serde::Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    // A password sits in user info, which ends at an `@`: a URL without
    // one has nothing to hide and is shown as stored, unparsed (a parse
    // per service was about 4 % of the CPU of `GET /services`).
    if !url.contains('@') {
        return s.serialize_str(url);
    }
    s.serialize_str(&redact_url(url))
}

/// Replaces the password of a URL with `***` so it can be shown or logged.
///
/// The stored URL keeps the password (checks need it); every output path uses
/// this instead. It is the crate's one redactor: the broker URL goes through
/// it too.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            if u.set_password(Some("***")).is_ok() {
                u.to_string()
            } else {
                String::from("***")
            }
        }
        Ok(_) => raw.to_owned(),
        // Stored URLs were validated, so this only guards odd legacy rows.
        Err(_) => String::from("***"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::CheckFields;

    #[test]
    fn passwords_never_leave_the_url() {
        assert_eq!(
            redact_url("https://user:secret@example.com/x"),
            "https://user:***@example.com/x"
        );
        assert_eq!(
            redact_url("http://example.com/a?b=c"),
            "http://example.com/a?b=c"
        );
    }

    #[test]
    fn a_spec_from_an_older_process_counts_its_timeout_as_set() {
        let old = serde_json::json!({
            "name": "a", "url": "http://127.0.0.1:1/", "interval": 30, "timeout": 10,
            "paused": false, "expected_statuses": null,
        });
        let spec: ServiceSpec = serde_json::from_value(old).unwrap();
        assert_eq!(spec.timeout, Seconds(10));
        assert!(!spec.timeout_follows_interval);
        assert!(spec.regions.is_empty(), "not regional");
        assert_eq!(spec.quorum, None);
    }

    #[test]
    fn serialized_service_hides_password_and_uses_contract_fields() {
        let svc = Service {
            id: ServiceId(1),
            name: "api".into(),
            url: "http://u:pw@127.0.0.1:1/".into(),
            interval: Seconds(30),
            timeout: Seconds(10),
            timeout_follows_interval: true,
            expected_statuses: None,
            failure_threshold: 1,
            success_threshold: 1,
            retry_interval: Seconds(30),
            retry_interval_set: None,
            channels: Vec::new(),
            tags: vec!["prod".into(), "api".into()],
            regions: vec!["eu".into(), "us".into()],
            quorum: None,
            check: CheckOptions::from(CheckFields {
                headers: Some([("X-Token".to_owned(), "s3cret".to_owned())].into()),
                ..CheckFields::default()
            }),
            last_status: Status::Pending,
            last_check: None,
            last_latency_ms: None,
            paused: false,
            created_at: 0,
            updated_at: 0,
            last_scheduled_at: Some(5),
            version: 0,
        };
        let v = serde_json::to_value(&svc).unwrap();
        assert_eq!(v["url"], "http://u:***@127.0.0.1:1/");
        assert_eq!(v["last_status"], "PENDING");
        assert!(v["last_check"].is_null());
        assert_eq!(v["created_at"], "1970-01-01T00:00:00.000Z");
        assert!(v.get("last_scheduled_at").is_none());
        assert!(v.get("retry_interval_set").is_none());
        assert!(v.get("timeout_follows_interval").is_none());
        assert_eq!(v["retry_interval"], 30, "the interval when none is set");
        assert_eq!(v["channels"], serde_json::json!([]));
        assert_eq!(v["tags"], serde_json::json!(["prod", "api"]));
        assert_eq!(v["regions"], serde_json::json!(["eu", "us"]));
        assert!(v["quorum"].is_null(), "null: a majority");
        assert_eq!(
            v["headers"]["X-Token"], "***",
            "header values are write-only"
        );
        assert!(v.get("method").is_none(), "unset options are not shown");
        for key in [
            "id",
            "name",
            "url",
            "interval",
            "timeout",
            "last_status",
            "last_check",
            "last_latency_ms",
            "paused",
            "created_at",
            "updated_at",
            "failure_threshold",
            "success_threshold",
            "retry_interval",
            "channels",
            "tags",
            "regions",
            "quorum",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
    }
}
