//! Impaired regions (DESIGN.md "Regions and quorum"): a region whose own
//! network fails sees most services DOWN while the other regions see them
//! UP. Its votes are then set aside ([`crate::domain::quorum`]), so a
//! monitor whose vantage point breaks raises one alert about itself, not
//! one per service.
//!
//! The rule, over the region results of the last [`WINDOW_MS`]: for each
//! region, the *compared* services are those it checked that some other,
//! unimpaired region saw up (UP or DEGRADED, its newest result in the
//! window); the region *fails* one when its own newest result for it is
//! DOWN. With at least [`MIN_COMPARED`] compared services:
//!
//! - a region becomes impaired when it fails more than half of them;
//! - an impaired region recovers when it fails at most a quarter of them
//!   (hysteresis: a region near one half does not flap in and out, and
//!   with it every regional service's verdict);
//! - with fewer compared services nothing is known, and a region keeps
//!   its state.

use super::service::ServiceId;
use super::status::Status;
use super::time::Millis;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// How far back results count: 2 minutes.
pub const WINDOW_MS: i64 = 120_000;
/// Fewest compared services for any judgement.
pub const MIN_COMPARED: u32 = 20;

/// One region's result for one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The service checked.
    pub service: ServiceId,
    /// The region that checked it.
    pub region: String,
    /// When the check finished.
    pub at: Millis,
    /// What it found.
    pub status: Status,
}

/// A region's standing, as judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Standing {
    /// Services it checked that another region saw up.
    pub compared: u32,
    /// Those it saw DOWN.
    pub failing: u32,
    /// Whether its votes are set aside.
    pub impaired: bool,
}

impl Standing {
    fn judged(compared: u32, failing: u32, was_impaired: bool) -> Self {
        let impaired = if compared < MIN_COMPARED {
            was_impaired
        } else if was_impaired {
            // Recovered only at a quarter or less: 4 * failing <= compared.
            4 * u64::from(failing) > u64::from(compared)
        } else {
            2 * u64::from(failing) > u64::from(compared)
        };
        Standing {
            compared,
            failing,
            impaired,
        }
    }
}

/// Judges every region seen in `observations` (and every one in
/// `impaired`, which stays impaired while nothing is known of it) at
/// `now`, given which were impaired before.
pub fn judge(
    observations: &[Observation],
    now: Millis,
    impaired: &BTreeSet<String>,
) -> BTreeMap<String, Standing> {
    let since = now - WINDOW_MS;
    // Each (service, region)'s newest result in the window.
    let mut newest: HashMap<(ServiceId, &str), (Millis, Status)> = HashMap::new();
    for o in observations {
        if o.at < since || o.at > now || o.status == Status::Pending {
            continue;
        }
        let entry = newest
            .entry((o.service, o.region.as_str()))
            .or_insert((o.at, o.status));
        // Ties go to the worse status, so the order given never matters.
        if (o.at, severity(o.status)) > (entry.0, severity(entry.1)) {
            *entry = (o.at, o.status);
        }
    }
    // Per service: the regions that saw it, and whether each saw it up.
    let mut by_service: HashMap<ServiceId, Vec<(&str, bool)>> = HashMap::new();
    for ((service, region), (_, status)) in &newest {
        by_service
            .entry(*service)
            .or_default()
            .push((region, status.is_up()));
    }
    let mut tally: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    for seen in by_service.values() {
        for (region, up) in seen {
            let tallied = tally.entry(region).or_default();
            let others_up = seen.iter().any(|(other, other_up)| {
                other != region && *other_up && !impaired.contains(*other)
            });
            if others_up {
                tallied.0 += 1;
                if !up {
                    tallied.1 += 1;
                }
            }
        }
    }
    let mut standings: BTreeMap<String, Standing> = impaired
        .iter()
        .map(|r| (r.clone(), Standing::judged(0, 0, true)))
        .collect();
    for (region, (compared, failing)) in tally {
        standings.insert(
            region.to_owned(),
            Standing::judged(compared, failing, impaired.contains(region)),
        );
    }
    standings
}

/// Orders statuses so a tie between two results of one moment is decided
/// the same way whatever order they came in.
fn severity(status: Status) -> u8 {
    match status {
        Status::Pending => 0,
        Status::Up => 1,
        Status::Degraded => 2,
        Status::Down => 3,
    }
}

#[cfg(test)]
mod tests;
