//! The verdict of a regional round (DESIGN.md "Regions and quorum").
//!
//! A service with `regions` is checked once in each listed region per
//! round; [`verdict`] turns the region results gathered so far into the
//! round's one status, which thresholds and alerts then take as a single
//! round's result. The rule, with `q` the quorum in effect
//! ([`effective`]) and only *counted* votes (answers from listed regions
//! that are not impaired) taken into account:
//!
//! - **DOWN** when at least `q` counted regions saw the round fail;
//! - otherwise, with fewer than `q` counted answers, the round is no
//!   evidence either way and **keeps the previous status**;
//! - otherwise **DEGRADED** when at least `q` counted regions saw it DOWN
//!   or DEGRADED (fewer than `q` of them DOWN);
//! - otherwise **UP**.
//!
//! So the verdict is the worst status that a quorum of regions agrees on
//! (or on something worse): one region alone never makes a 3-region,
//! quorum-2 service DOWN or DEGRADED, which is the point: a single vantage
//! point's trouble is not the service's. The verdict depends on the set of
//! answers only, never on the order they arrived in, and an impaired
//! region's answer never counts.

use super::status::Status;
use std::collections::{BTreeMap, BTreeSet};

/// The quorum in effect for `regions` regions: `set`, else a majority
/// (`regions / 2 + 1`), never more than `regions`; 0 for a service without
/// regions.
pub fn effective(regions: usize, set: Option<u32>) -> u32 {
    if regions == 0 {
        return 0;
    }
    let listed = u32::try_from(regions).unwrap_or(u32::MAX);
    set.unwrap_or(listed / 2 + 1).clamp(1, listed)
}

/// What a round's verdict is judged from.
#[derive(Debug, Clone, Copy)]
pub struct Round<'a> {
    /// The service's regions.
    pub regions: &'a [String],
    /// Its quorum as set (`None`: a majority).
    pub quorum: Option<u32>,
    /// The results gathered so far, by region (one per region: a repeat
    /// of a region's result is the same log, see `plan::fresh`). A region
    /// the service does not list is ignored, and so is a PENDING entry.
    pub results: &'a BTreeMap<String, Status>,
    /// Impaired regions: their votes are set aside and the round does not
    /// wait for them.
    pub impaired: &'a BTreeSet<String>,
    /// Regions with no live worker: the round does not wait for them
    /// (missing, not failing), though an answer that comes anyway counts.
    pub absent: &'a BTreeSet<String>,
    /// The service's status before this round.
    pub previous: Status,
}

/// A round's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The round's status.
    pub status: Status,
    /// Whether every listed region that is live and not impaired has
    /// answered: nothing more is awaited.
    pub complete: bool,
    /// Whether no answer yet to come (absent regions' included) could
    /// change `status`, e.g. a quorum already failed: the round may be
    /// closed early.
    pub settled: bool,
    /// Whether too few regions counted, so `status` is the previous one.
    pub kept_previous: bool,
    /// Counted votes: answers from listed, non-impaired regions.
    pub counted: u32,
    /// Counted votes that saw the round fail.
    pub failed: u32,
    /// The quorum in effect.
    pub quorum: u32,
}

/// Counted votes of a round: (all, DOWN, DOWN or DEGRADED).
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    counted: u32,
    down: u32,
    not_up: u32,
}

impl Tally {
    fn add(&mut self, status: Status) {
        self.counted += 1;
        match status {
            Status::Down => {
                self.down += 1;
                self.not_up += 1;
            }
            Status::Degraded => self.not_up += 1,
            Status::Up | Status::Pending => {}
        }
    }

    /// The status this tally gives with quorum `q`, `None` when too few
    /// counted.
    fn status(self, q: u32) -> Option<Status> {
        if self.down >= q {
            Some(Status::Down)
        } else if self.counted < q {
            None
        } else if self.not_up >= q {
            Some(Status::Degraded)
        } else {
            Some(Status::Up)
        }
    }
}

/// The verdict of a round from the region results gathered so far (see
/// the module's documentation for the rule).
pub fn verdict(round: &Round<'_>) -> Verdict {
    let q = effective(round.regions.len(), round.quorum);
    let mut tally = Tally::default();
    let mut awaited = 0u32;
    // Not answered yet, awaited or not: an absent region's worker may come
    // back before the round closes.
    let mut open = 0u32;
    let mut seen = BTreeSet::new();
    for region in round.regions {
        // Validation keeps regions distinct; a repeat in a hand-edited row
        // must not vote twice.
        if !seen.insert(region.as_str()) || round.impaired.contains(region) {
            continue;
        }
        match round.results.get(region) {
            Some(Status::Pending) | None => {
                open += 1;
                if !round.absent.contains(region) {
                    awaited += 1;
                }
            }
            Some(status) => tally.add(*status),
        }
    }
    let now = tally.status(q);
    // Answers yet to come only add votes, and the round may close before
    // all of them do: settled when no subset of them, of any statuses,
    // could give another status.
    let settled = match now {
        Some(Status::Down) => true,
        None => tally.counted + open < q,
        Some(Status::Degraded) => tally.down + open < q,
        Some(_) => tally.not_up + open < q,
    };
    Verdict {
        status: now.unwrap_or(round.previous),
        complete: awaited == 0,
        settled,
        kept_previous: now.is_none(),
        counted: tally.counted,
        failed: tally.down,
        quorum: q,
    }
}

#[cfg(test)]
mod tests;
