//! `GET /services/{id}/uptime?hours=N`: a service's hourly rollups for the
//! last `N` hours (default 24, at most 90 days), with totals.
//!
//! Rollups are written every `logs.rollup_interval_s` (see `maintenance`),
//! so the newest hour lags by up to one interval; they outlive the raw logs.
//! Hours without checks are left out.

use super::AppState;
use super::problem::ApiError;
use super::services::PathId;
use crate::domain::time::{HOUR_MS, now_ms, serde_rfc3339};
use crate::domain::uptime::HourlyRollup;
use crate::domain::validate::FieldError;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;

/// Hours when `hours` is not given.
pub const DEFAULT_HOURS: i64 = 24;
/// Most hours one request may cover (90 days).
pub const MAX_HOURS: i64 = 24 * 90;

/// Parses `hours` (1..=[`MAX_HOURS`]); other parameters are ignored.
pub fn parse_hours(query: &str) -> Result<i64, Vec<FieldError>> {
    let mut hours = DEFAULT_HOURS;
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if key == "hours" {
            match value.parse::<i64>() {
                Ok(n) if (1..=MAX_HOURS).contains(&n) => hours = n,
                _ => {
                    return Err(vec![FieldError {
                        field: "hours".into(),
                        message: format!("must be a whole number from 1 to {MAX_HOURS}"),
                    }]);
                }
            }
        }
    }
    Ok(hours)
}

/// Counts over some checks, as the API shows them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Uptime {
    /// Checks counted.
    pub checks: i64,
    /// Checks that were not UP.
    pub failures: i64,
    /// `(checks - failures) / checks`; `null` without checks.
    pub uptime_ratio: Option<f64>,
    /// Mean latency; `null` without checks.
    pub mean_latency_ms: Option<f64>,
    /// Highest latency; `null` without checks.
    pub max_latency_ms: Option<i64>,
}

impl Uptime {
    fn of(checks: i64, failures: i64, latency_sum_ms: i64, latency_max_ms: i64) -> Self {
        let some = checks > 0;
        Self {
            checks,
            failures,
            uptime_ratio: some.then(|| (checks - failures) as f64 / checks as f64),
            mean_latency_ms: some.then(|| latency_sum_ms as f64 / checks as f64),
            max_latency_ms: some.then_some(latency_max_ms),
        }
    }
}

/// One hour of the answer.
#[derive(Debug, Serialize)]
pub struct Hour {
    /// Start of the hour.
    #[serde(serialize_with = "serde_rfc3339::serialize")]
    pub hour_start: i64,
    /// Its counts.
    #[serde(flatten)]
    pub uptime: Uptime,
}

/// The answer.
#[derive(Debug, Serialize)]
pub struct UptimeReport {
    /// The service.
    pub service_id: i64,
    /// Hours covered, the current one included.
    pub hours: i64,
    /// Start of the first hour covered.
    #[serde(serialize_with = "serde_rfc3339::serialize")]
    pub from: i64,
    /// End of the window (now).
    #[serde(serialize_with = "serde_rfc3339::serialize")]
    pub to: i64,
    /// Over every hour below.
    pub totals: Uptime,
    /// Hours with checks, oldest first.
    pub hourly: Vec<Hour>,
}

/// Builds the answer from rollups of the window.
pub fn report(
    service_id: i64,
    hours: i64,
    from: i64,
    to: i64,
    rows: &[HourlyRollup],
) -> UptimeReport {
    let (mut checks, mut failures, mut sum, mut max) = (0, 0, 0, 0);
    for r in rows {
        checks += r.checks;
        failures += r.failures;
        sum += r.latency_sum_ms;
        max = max.max(r.latency_max_ms);
    }
    UptimeReport {
        service_id,
        hours,
        from,
        to,
        totals: Uptime::of(checks, failures, sum, max),
        hourly: rows
            .iter()
            .map(|r| Hour {
                hour_start: r.hour_start,
                uptime: Uptime::of(r.checks, r.failures, r.latency_sum_ms, r.latency_max_ms),
            })
            .collect(),
    }
}

/// `GET /services/{id}/uptime`
pub async fn get(
    req: HttpRequest,
    PathId(id): PathId,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let hours = parse_hours(req.query_string()).map_err(ApiError::BadQuery)?;
    if state.store.get_service(id).await?.is_none() {
        return Err(ApiError::NotFound(format!("no service with id {id}")));
    }
    let now = now_ms();
    let from = now - now.rem_euclid(HOUR_MS) - (hours - 1) * HOUR_MS;
    let rows = state.store.rollups(id, from, now + 1).await?;
    Ok(HttpResponse::Ok().json(report(id, hours, from, now, &rows)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_default_and_bounds() {
        assert_eq!(parse_hours(""), Ok(24));
        assert_eq!(parse_hours("hours=1"), Ok(1));
        assert_eq!(parse_hours("hours=2160&x=y"), Ok(2160));
        for bad in ["hours=0", "hours=2161", "hours=-1", "hours=abc", "hours="] {
            let errs = parse_hours(bad).unwrap_err();
            assert_eq!(errs[0].field, "hours", "{bad}");
        }
    }

    #[test]
    fn totals_sum_hours_and_means_come_from_sums() {
        let row = |hour_start, checks, failures, sum, max| HourlyRollup {
            service_id: 1,
            hour_start,
            checks,
            failures,
            latency_sum_ms: sum,
            latency_max_ms: max,
        };
        let r = report(
            1,
            2,
            0,
            HOUR_MS,
            &[row(0, 3, 1, 60, 30), row(HOUR_MS, 1, 0, 5, 5)],
        );
        assert_eq!(r.totals, Uptime::of(4, 1, 65, 30));
        assert_eq!(r.totals.uptime_ratio, Some(0.75));
        assert_eq!(r.totals.mean_latency_ms, Some(16.25));
        assert_eq!(r.hourly[0].uptime.mean_latency_ms, Some(20.0));
        let empty = report(1, 2, 0, HOUR_MS, &[]);
        assert_eq!(empty.totals.uptime_ratio, None);
        assert_eq!(empty.totals.max_latency_ms, None);
    }
}
