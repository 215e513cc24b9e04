//! What travels through the pipeline: a check job and its result.
//!
//! Both are plain serde messages so the in-process bus and RabbitMQ carry the
//! same bytes. A job holds everything a worker needs; workers never read the
//! store.

use super::check_kind::CheckOptions;
use super::service::ServiceId;
use super::status::Status;
use super::time::Millis;
use serde::{Deserialize, Serialize};

/// One check to run, published by the scheduler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckJob {
    /// The service being checked.
    pub service_id: ServiceId,
    /// URL to request (with credentials, never logged as is).
    pub url: String,
    /// Limit on the whole check, request to end of body.
    pub timeout_ms: i64,
    /// The service's interval; a job older than this is stale.
    pub interval_ms: i64,
    /// Statuses that count as UP; `None` means 200-399.
    pub expected_statuses: Option<Vec<u16>>,
    /// When the check was due; with `service_id` it identifies the check.
    pub scheduled_at: Millis,
    /// The settings of the URL's check kind (header values included, never
    /// logged). Defaulted so a job from an older scheduler still reads.
    #[serde(default)]
    pub check: CheckOptions,
    /// The region whose workers must run it (one job per listed region and
    /// round, DESIGN.md "Regions and quorum"); `None`: any worker, as for a
    /// service without `regions`. Defaulted so a job from an older
    /// scheduler still reads.
    #[serde(default)]
    pub region: Option<String>,
}

impl CheckJob {
    /// A job is stale once its service's next check is due: running it then
    /// would only duplicate that one.
    pub fn is_stale(&self, now: Millis) -> bool {
        now >= self.scheduled_at + self.interval_ms
    }
}

/// The outcome of one check, published by a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The service checked.
    pub service_id: ServiceId,
    /// When the check was due (idempotency key with `service_id`).
    pub scheduled_at: Millis,
    /// UP, DEGRADED or DOWN.
    pub status: Status,
    /// Milliseconds from request start to end of the (bounded) body.
    pub latency_ms: i64,
    /// HTTP status, when a response arrived.
    pub status_code: Option<u16>,
    /// What went wrong, for a DOWN check.
    pub error: Option<String>,
    /// When the check finished.
    pub checked_at: Millis,
    /// When the server's certificate expires (https and tls checks that got
    /// one). Defaulted so a result from an older worker still reads.
    #[serde(default)]
    pub cert_expires_at: Option<Millis>,
    /// The region of the worker that ran it (`worker.region`). For a
    /// service with `regions` it is the round's vote it casts, and with
    /// `service_id` and `scheduled_at` it identifies the log; a service
    /// without `regions` has one log per round whatever region ran it.
    /// Defaulted so a result from an older worker still reads.
    #[serde(default)]
    pub region: Option<String>,
}

/// Whether an HTTP status means UP for a service.
pub fn status_is_up(code: u16, expected: Option<&[u16]>) -> bool {
    match expected {
        Some(list) if !list.is_empty() => list.contains(&code),
        _ => (200..=399).contains(&code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_up_range_is_200_to_399() {
        assert!(status_is_up(200, None));
        assert!(status_is_up(399, None));
        assert!(!status_is_up(199, None));
        assert!(!status_is_up(400, None));
        assert!(!status_is_up(503, None));
    }

    #[test]
    fn expected_statuses_replace_the_range() {
        let exp = [401u16, 503];
        assert!(status_is_up(401, Some(&exp)));
        assert!(!status_is_up(200, Some(&exp)));
        assert!(status_is_up(204, Some(&[])), "an empty list means default");
    }

    #[test]
    fn a_job_and_result_from_an_older_process_have_no_region() {
        let job: CheckJob = serde_json::from_value(serde_json::json!({
            "service_id": 1, "url": "http://x/", "timeout_ms": 1000, "interval_ms": 5000,
            "expected_statuses": null, "scheduled_at": 10,
        }))
        .unwrap();
        assert_eq!(job.region, None);
        let result: CheckResult = serde_json::from_value(serde_json::json!({
            "service_id": 1, "scheduled_at": 10, "status": "UP", "latency_ms": 3,
            "status_code": 200, "error": null, "checked_at": 12,
        }))
        .unwrap();
        assert_eq!(result.region, None);
    }

    #[test]
    fn job_is_stale_after_one_interval() {
        let job = CheckJob {
            service_id: ServiceId(1),
            url: "http://x/".into(),
            timeout_ms: 1000,
            interval_ms: 5000,
            expected_statuses: None,
            scheduled_at: 10_000,
            check: CheckOptions::default(),
            region: None,
        };
        assert!(!job.is_stale(14_999));
        assert!(job.is_stale(15_000));
    }
}
