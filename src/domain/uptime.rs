//! Uptime: checks counted per service and hour, and what they add up to.

use super::time::Millis;

/// One service's checks in one hour, as log maintenance counts them (see
/// `Store::rollup`). Hours without checks have none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourlyRollup {
    /// The service.
    pub service_id: i64,
    /// Start of the hour (epoch ms, a multiple of [`super::time::HOUR_MS`]).
    pub hour_start: Millis,
    /// Checks counted.
    pub checks: i64,
    /// Of those, checks that were not UP.
    pub failures: i64,
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
        self.latency_sum_ms += other.latency_sum_ms;
        self.latency_max_ms = self.latency_max_ms.max(other.latency_max_ms);
    }
}
