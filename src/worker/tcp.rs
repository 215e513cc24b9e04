//! The `tcp://host:port` check: a TCP connect, timed. The connection is
//! closed as soon as it is made; nothing is sent.

use crate::domain::{CheckJob, Status};
use crate::worker::check::Outcome;
use crate::worker::guard::AddressPolicy;
use crate::worker::net::{connect, elapsed_ms, host_port};
use std::time::Instant;

/// Connects to the job's `host:port`; UP when a connection is made (DEGRADED
/// when slower than `degraded_latency_ms`), else DOWN with why.
pub(crate) async fn check(policy: &AddressPolicy, job: &CheckJob, start: Instant) -> Outcome {
    let (host, port) = match host_port(&job.url) {
        Ok(target) => target,
        Err(e) => return Outcome::down(elapsed_ms(start), e.to_string()),
    };
    match connect(policy, &host, port).await {
        Ok(stream) => {
            let latency = elapsed_ms(start);
            drop(stream);
            slower_than(Outcome::up(latency), job.check.degraded_latency_ms)
        }
        Err(e) => Outcome::down(elapsed_ms(start), e.to_string()),
    }
}

/// A passing outcome made DEGRADED when its latency is over `limit_ms`.
pub(crate) fn slower_than(outcome: Outcome, limit_ms: Option<i64>) -> Outcome {
    match limit_ms {
        Some(limit) if outcome.status == Status::Up && outcome.latency_ms > limit => Outcome {
            status: Status::Degraded,
            error: Some(format!(
                "latency: {} ms, slower than {limit} ms",
                outcome.latency_ms
            )),
            ..outcome
        },
        _ => outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_passing_check_over_the_limit_is_degraded() {
        let slow = slower_than(Outcome::up(812), Some(500));
        assert_eq!(slow.status, Status::Degraded);
        assert_eq!(
            slow.error.as_deref(),
            Some("latency: 812 ms, slower than 500 ms")
        );
        assert_eq!(slower_than(Outcome::up(500), Some(500)).status, Status::Up);
        assert_eq!(slower_than(Outcome::up(9_000), None).status, Status::Up);
        let down = Outcome::down(900, "connect: connection refused");
        assert_eq!(slower_than(down.clone(), Some(500)), down);
    }
}
