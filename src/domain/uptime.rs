//! Uptime: checks counted per service and hour, and what they add up to.

use super::service::ServiceId;
use super::time::{Millis, serde_rfc3339};
use serde::Serialize;

/// One service's checks in one hour, as log maintenance counts them (see
/// `Store::rollup`). Hours without checks have none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourlyRollup {
    /// The service.
    pub service_id: ServiceId,
    /// Start of the hour (epoch ms, a multiple of [`super::time::HOUR_MS`]).
    pub hour_start: Millis,
    /// Checks counted.
    pub checks: i64,
    /// Of those, checks that failed (DOWN).
    pub failures: i64,
    /// Of those, checks that passed but DEGRADED (they count as up).
    pub degraded: i64,
    /// Sum of their latencies; the mean is `latency_sum_ms / checks`.
    pub latency_sum_ms: i64,
    /// Highest latency.
    pub latency_max_ms: i64,
}

impl HourlyRollup {
    /// Adds the checks counted in `other` (same service and hour).
    pub fn absorb(&mut self, other: &HourlyRollup) {
        self.checks += other.checks;
        self.failures += other.failures;
        self.degraded += other.degraded;
        self.latency_sum_ms += other.latency_sum_ms;
        self.latency_max_ms = self.latency_max_ms.max(other.latency_max_ms);
    }
}

/// Counts over some checks, as the API shows them.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Uptime {
    /// Checks counted.
    pub checks: i64,
    /// Checks that failed (DOWN).
    pub failures: i64,
    /// Checks that passed but DEGRADED.
    pub degraded: i64,
    /// `(checks - failures) / checks`: DEGRADED counts as up; `null`
    /// without checks.
    pub uptime_ratio: Option<f64>,
    /// `degraded / checks`: the share of checks that passed DEGRADED (part
    /// of `uptime_ratio`); `null` without checks.
    pub degraded_ratio: Option<f64>,
    /// Mean latency; `null` without checks.
    pub mean_latency_ms: Option<f64>,
    /// Highest latency; `null` without checks.
    pub max_latency_ms: Option<i64>,
}

impl Uptime {
    fn of(r: &HourlyRollup) -> Self {
        let HourlyRollup {
            checks,
            failures,
            degraded,
            latency_sum_ms,
            latency_max_ms,
            ..
        } = *r;
        let some = checks > 0;
        Self {
            checks,
            failures,
            degraded,
            uptime_ratio: some.then(|| (checks - failures) as f64 / checks as f64),
            degraded_ratio: some.then(|| degraded as f64 / checks as f64),
            mean_latency_ms: some.then(|| latency_sum_ms as f64 / checks as f64),
            max_latency_ms: some.then_some(latency_max_ms),
        }
    }
}

/// One hour of the answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Hour {
    /// Start of the hour.
    #[serde(serialize_with = "serde_rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub hour_start: i64,
    /// Its counts.
    #[serde(flatten)]
    pub uptime: Uptime,
}

/// The answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UptimeReport {
    /// The service.
    pub service_id: ServiceId,
    /// Hours covered, the current one included.
    pub hours: i64,
    /// Start of the first hour covered.
    #[serde(serialize_with = "serde_rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub from: i64,
    /// End of the window (now).
    #[serde(serialize_with = "serde_rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub to: i64,
    /// Over every hour below.
    pub totals: Uptime,
    /// Hours with checks, oldest first.
    pub hourly: Vec<Hour>,
}

/// Builds the answer from rollups of the window.
pub fn report(
    service_id: ServiceId,
    hours: i64,
    from: i64,
    to: i64,
    rows: &[HourlyRollup],
) -> UptimeReport {
    let mut totals = HourlyRollup {
        service_id,
        hour_start: from,
        checks: 0,
        failures: 0,
        degraded: 0,
        latency_sum_ms: 0,
        latency_max_ms: 0,
    };
    for r in rows {
        totals.absorb(r);
    }
    UptimeReport {
        service_id,
        hours,
        from,
        to,
        totals: Uptime::of(&totals),
        hourly: rows
            .iter()
            .map(|r| Hour {
                hour_start: r.hour_start,
                uptime: Uptime::of(r),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::time::HOUR_MS;

    #[test]
    fn totals_sum_hours_and_means_come_from_sums() {
        let row = |hour_start, checks, failures, degraded, sum, max| HourlyRollup {
            service_id: ServiceId(1),
            hour_start,
            checks,
            failures,
            degraded,
            latency_sum_ms: sum,
            latency_max_ms: max,
        };
        let r = report(
            ServiceId(1),
            2,
            0,
            HOUR_MS,
            &[row(0, 3, 1, 1, 60, 30), row(HOUR_MS, 1, 0, 0, 5, 5)],
        );
        assert_eq!(r.totals, Uptime::of(&row(0, 4, 1, 1, 65, 30)));
        assert_eq!(r.totals.uptime_ratio, Some(0.75), "DEGRADED counts as up");
        assert_eq!(r.totals.degraded_ratio, Some(0.25));
        assert_eq!(r.hourly[1].uptime.degraded_ratio, Some(0.0));
        assert_eq!(r.totals.mean_latency_ms, Some(16.25));
        assert_eq!(r.hourly[0].uptime.mean_latency_ms, Some(20.0));
        let empty = report(ServiceId(1), 2, 0, HOUR_MS, &[]);
        assert_eq!(empty.totals.uptime_ratio, None);
        assert_eq!(empty.totals.max_latency_ms, None);
        assert_eq!(empty.totals.degraded_ratio, None);
    }
}
