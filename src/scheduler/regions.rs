//! Regional rounds (DESIGN.md "Regions and quorum"): a service that lists
//! `regions` gets one job per listed region each round, each bound to its
//! region's queue; one without gets a single job any worker may take.
//!
//! The active scheduler also beats ([`crate::bus::beat`]) the regions its
//! services list, so the API can tell a listed region that has no live
//! worker (`GET /regions`, `/readyz`) without reading every service.

use crate::bus::{Beat, Bus};
use crate::domain::CheckJob;
use crate::domain::time::now_ms;
use std::collections::BTreeMap;

/// How many scheduled services list each region, kept as services come
/// and go: the heartbeat names the listed regions every 2 s, and finding
/// them by reading every entry cost a scan of the whole schedule each
/// time (a million entries at a million services).
#[derive(Debug, Default)]
pub(super) struct Listed(BTreeMap<String, usize>);

impl Listed {
    /// A service listing `regions` was added.
    pub(super) fn add(&mut self, regions: &[String]) {
        for region in regions {
            *self.0.entry(region.clone()).or_default() += 1;
        }
    }

    /// A service listing `regions` was dropped.
    pub(super) fn remove(&mut self, regions: &[String]) {
        for region in regions {
            if let Some(count) = self.0.get_mut(region) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.0.remove(region);
                }
            }
        }
    }

    /// Every region listed by some service, sorted, each once.
    pub(super) fn names(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }
}

/// Adds `job`'s round to `jobs`: as it is for a service without regions,
/// else a copy per region with that region set (all with the same
/// `scheduled_at`, which with the region identifies each vote).
pub fn push_round(jobs: &mut Vec<CheckJob>, regions: &[String], job: CheckJob) {
    match regions {
        [] => jobs.push(job),
        [rest @ .., last] => {
            for region in rest {
                jobs.push(CheckJob {
                    region: Some(region.clone()),
                    ..job.clone()
                });
            }
            jobs.push(CheckJob {
                region: Some(last.clone()),
                ..job
            });
        }
    }
}

/// Tells the fleet which regions the schedule lists. Best effort: a beat
/// the bus does not take is sent again at the next tick.
pub async fn beat(bus: &Bus, regions: Vec<String>) {
    let beat = Beat::Scheduler {
        regions,
        at: now_ms(),
    };
    if let Err(e) = bus.publish_beat(&beat).await {
        tracing::debug!(error = %e, "cannot send the scheduler's heartbeat");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ServiceId;

    fn job() -> CheckJob {
        CheckJob {
            service_id: ServiceId(3),
            url: "http://127.0.0.1:1/".into(),
            timeout_ms: 1000,
            interval_ms: 5000,
            expected_statuses: None,
            scheduled_at: 10_000,
            check: Default::default(),
            region: None,
        }
    }

    #[test]
    fn a_service_without_regions_gets_one_job_for_any_worker() {
        let mut jobs = Vec::new();
        push_round(&mut jobs, &[], job());
        assert_eq!(jobs, vec![job()]);
    }

    #[test]
    fn a_regional_service_gets_one_job_per_region_in_the_same_round() {
        let mut jobs = Vec::new();
        let regions = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
        push_round(&mut jobs, &regions, job());
        let got: Vec<_> = jobs
            .iter()
            .map(|j| (j.region.as_deref(), j.scheduled_at, j.service_id))
            .collect();
        assert_eq!(
            got,
            vec![
                (Some("a"), 10_000, ServiceId(3)),
                (Some("b"), 10_000, ServiceId(3)),
                (Some("c"), 10_000, ServiceId(3)),
            ]
        );
    }
}
