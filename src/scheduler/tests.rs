//! Unit tests of `scheduler`, one file per concept: rounds (due order,
//! stalls, loads and reloads, what a job carries), retries of unconfirmed
//! failures, push services' deadlines, and the regions the schedule lists.

use super::*;
use crate::domain::time::Seconds;

fn spec(interval: i64) -> ServiceSpec {
    ServiceSpec {
        name: "s".into(),
        url: "http://127.0.0.1:1/".into(),
        interval: Seconds(interval),
        timeout: Seconds(1),
        timeout_follows_interval: false,
        paused: false,
        expected_statuses: None,
        failure_threshold: 1,
        success_threshold: 1,
        retry_interval: None,
        channels: Vec::new(),
        check: Default::default(),
        tags: Vec::new(),
        regions: Vec::new(),
        quorum: None,
    }
}

/// A service as the store returns it, every 10 s.
fn stored(id: i64, url: &str, last_scheduled_at: Option<i64>) -> Service {
    Service {
        id: ServiceId(id),
        name: "s".into(),
        url: url.into(),
        interval: Seconds(10),
        timeout: Seconds(1),
        timeout_follows_interval: false,
        expected_statuses: None,
        failure_threshold: 1,
        success_threshold: 1,
        retry_interval: Seconds(10),
        retry_interval_set: None,
        channels: Vec::new(),
        tags: Vec::new(),
        check: Default::default(),
        last_status: crate::domain::Status::Up,
        last_check: None,
        last_latency_ms: None,
        paused: false,
        created_at: 0,
        updated_at: 0,
        last_scheduled_at,
        version: 0,
        regions: Vec::new(),
        quorum: None,
    }
}

fn ids(jobs: &[CheckJob]) -> Vec<i64> {
    jobs.iter().map(|j| j.service_id.get()).collect()
}

/// A push service every `interval` s with `grace` s.
fn push_spec(interval: i64, grace: i64) -> ServiceSpec {
    let mut s = spec(interval);
    s.url = "push://".into();
    s.check.grace = Some(Seconds(grace));
    s
}

mod push;
mod regions;
mod retries;
mod rounds;
