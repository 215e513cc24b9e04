//! Regional rounds in the recorder (DESIGN.md "Regions and quorum"): each
//! region's result (a vote, `region` set) is logged at once like any
//! result; the round stays open here until every live region whose votes
//! count has voted, or until `timeout + 5 s` after it was due, and then its
//! verdict, a result without a region, goes through the store like a
//! single check would: thresholds, status changes and alerts follow the
//! verdict, never a single region.
//!
//! A vote that comes after its round closed is logged and changes nothing.
//! Votes reach one recorder at a time (the bus's votes queue has a single
//! active consumer). When that role moves to another recorder, the rounds
//! the new one opened lack the votes the old one took: a round closed at
//! its deadline without every region is completed from the store
//! ([`Closed::lacks_votes`], [`Closed::complete_with`]) before it is
//! judged, and the store keeps one verdict per round (its log is
//! idempotent on the round), so the first one counts.

use crate::domain::quorum;
use crate::domain::time::Millis;
use crate::domain::{CheckResult, ServiceId, ServiceSpec, Status};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

/// How long past its timeout a round waits for late regions.
pub const GRACE_MS: Millis = 5_000;

/// Rounds remembered as closed, so a late vote does not open one again.
const CLOSED_KEPT: usize = 100_000;

/// What a regional service's rounds need to know of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The regions that vote, as listed.
    pub regions: Arc<[String]>,
    /// Failing votes that make the round DOWN.
    pub quorum: u32,
    /// The check's timeout.
    pub timeout_ms: Millis,
}

impl Rule {
    /// The rule the store gave, or `None` if the service lists no regions.
    pub fn of_stored(r: &crate::store::RoundRule) -> Option<Rule> {
        if r.regions.is_empty() {
            return None;
        }
        Some(Rule {
            regions: r.regions.iter().cloned().collect(),
            quorum: quorum::effective(r.regions.len(), r.quorum),
            timeout_ms: r.timeout_ms,
        })
    }

    /// The rule of a service, or `None` if it lists no regions.
    pub fn of(spec: &ServiceSpec) -> Option<Rule> {
        if spec.regions.is_empty() {
            return None;
        }
        Some(Rule {
            regions: spec.regions.iter().cloned().collect(),
            quorum: quorum::effective(spec.regions.len(), spec.quorum),
            timeout_ms: spec.timeout.millis(),
        })
    }
}

type Key = (ServiceId, Millis);

#[derive(Debug)]
struct Round {
    rule: Rule,
    /// The first vote of each region (a redelivered one is the same check).
    votes: Vec<CheckResult>,
    /// When its last vote arrived (this process's clock).
    last_vote_at: Millis,
}

/// A closed round: its verdict (if enough regions answered) and when its
/// last vote arrived, for the verdict latency.
#[derive(Debug)]
pub struct Closed {
    /// The verdict to record, or `None`: too few answers, the status stays.
    pub verdict: Option<CheckResult>,
    /// The votes it was judged on (impaired regions' included).
    pub votes: Vec<CheckResult>,
    /// When the last vote arrived.
    pub last_vote_at: Millis,
    rule: Rule,
}

impl Closed {
    /// The round: its service and when it was due.
    pub fn key(&self) -> Option<(ServiceId, Millis)> {
        self.votes.first().map(|v| (v.service_id, v.scheduled_at))
    }

    /// Whether a listed region's vote is missing.
    pub fn lacks_votes(&self) -> bool {
        self.rule
            .regions
            .iter()
            .any(|r| !self.votes.iter().any(|v| v.region.as_deref() == Some(r)))
    }

    /// Adds the votes of `logged` (read back from the store) that this
    /// recorder did not get, and judges the round again.
    pub fn complete_with(
        &mut self,
        logged: impl IntoIterator<Item = CheckResult>,
        impaired: &BTreeSet<String>,
        now: Millis,
    ) {
        let before = self.votes.len();
        for vote in logged {
            let listed = vote
                .region
                .as_deref()
                .is_some_and(|r| self.rule.regions.iter().any(|l| l == r));
            if listed && self.votes.iter().all(|v| v.region != vote.region) {
                self.votes.push(vote);
            }
        }
        if self.votes.len() != before {
            self.verdict = verdict(&self.rule, &self.votes, impaired, now);
        }
    }
}

/// The open rounds of this recorder.
#[derive(Debug, Default)]
pub struct Rounds {
    open: HashMap<Key, Round>,
    deadlines: BinaryHeap<Reverse<(Millis, ServiceId, Millis)>>,
    closed: HashSet<Key>,
    closed_order: VecDeque<Key>,
    /// Rounds that got a vote since the last close: only they can have
    /// become complete.
    touched: Vec<Key>,
}

impl Rounds {
    /// Open rounds.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// When the earliest open round must close.
    pub fn next_deadline(&mut self) -> Option<Millis> {
        while let Some(Reverse((at, id, due))) = self.deadlines.peek().copied() {
            if self.open.contains_key(&(id, due)) {
                return Some(at);
            }
            self.deadlines.pop();
        }
        None
    }

    /// Counts `vote` (logged already) in its round, opening the round if it
    /// is the first. Ignored when the round closed already, or the region
    /// is not one the rule lists (the service changed).
    pub fn vote(&mut self, vote: CheckResult, rule: &Rule, now: Millis) {
        let key = (vote.service_id, vote.scheduled_at);
        if self.closed.contains(&key) {
            return;
        }
        let Some(region) = vote.region.as_deref() else {
            return;
        };
        if !rule.regions.iter().any(|r| r == region) {
            return;
        }
        let round = self.open.entry(key).or_insert_with(|| {
            let closes_at = vote.scheduled_at + rule.timeout_ms + GRACE_MS;
            self.deadlines
                .push(Reverse((closes_at, vote.service_id, vote.scheduled_at)));
            Round {
                rule: rule.clone(),
                votes: Vec::with_capacity(rule.regions.len()),
                last_vote_at: now,
            }
        });
        if round.votes.iter().all(|v| v.region != vote.region) {
            round.votes.push(vote);
            round.last_vote_at = now;
            self.touched.push(key);
        }
    }

    /// Closes the rounds that are complete (every live, not impaired,
    /// listed region voted) or past their deadline (`now`), or all of them
    /// with `all` (shutdown), and judges each.
    pub fn close(
        &mut self,
        now: Millis,
        live: &BTreeSet<String>,
        impaired: &BTreeSet<String>,
        all: bool,
    ) -> Vec<Closed> {
        self.close_at(now, now, live, impaired, all)
    }

    /// [`Rounds::close`] with deadlines read on `clock` (the votes' time,
    /// which lags `now` while the recorder is behind) and verdicts timed
    /// `now`. Looks only at the rounds due by `clock` and those that got a
    /// vote since the last call, not at every open one.
    pub fn close_at(
        &mut self,
        clock: Millis,
        now: Millis,
        live: &BTreeSet<String>,
        impaired: &BTreeSet<String>,
        all: bool,
    ) -> Vec<Closed> {
        let mut done: Vec<Key> = if all {
            self.open.keys().copied().collect()
        } else {
            let mut done = Vec::new();
            while let Some(Reverse((at, id, due))) = self.deadlines.peek().copied() {
                if at > clock {
                    break;
                }
                self.deadlines.pop();
                if self.open.contains_key(&(id, due)) {
                    done.push((id, due));
                }
            }
            done.extend(self.touched.iter().copied().filter(|k| {
                self.open
                    .get(k)
                    .is_some_and(|r| complete(r, live, impaired))
            }));
            done
        };
        self.touched.clear();
        done.sort_unstable();
        done.dedup();
        let mut out = Vec::with_capacity(done.len());
        for key in done {
            let Some(round) = self.open.remove(&key) else {
                continue;
            };
            self.closed.insert(key);
            self.closed_order.push_back(key);
            if self.closed_order.len() > CLOSED_KEPT
                && let Some(old) = self.closed_order.pop_front()
            {
                self.closed.remove(&old);
            }
            out.push(Closed {
                verdict: verdict(&round.rule, &round.votes, impaired, now),
                votes: round.votes,
                last_vote_at: round.last_vote_at,
                rule: round.rule,
            });
        }
        out
    }
}

/// Whether every region whose vote is awaited has voted: the listed ones
/// with a live worker that are not impaired. A round none of whose regions
/// is awaited waits for its deadline.
fn complete(round: &Round, live: &BTreeSet<String>, impaired: &BTreeSet<String>) -> bool {
    let mut awaited = round
        .rule
        .regions
        .iter()
        .filter(|r| live.contains(*r) && !impaired.contains(*r))
        .peekable();
    awaited.peek().is_some()
        && awaited.all(|r| round.votes.iter().any(|v| v.region.as_deref() == Some(r)))
}

/// The round's verdict from its votes, by [`quorum::verdict`] (impaired
/// regions' votes set aside), or `None` when too few regions counted and
/// the status stays as it was. The verdict carries a deciding vote's
/// details (a failing one's error, so its reason code leads, followed by
/// which regions failed) and no region.
pub fn verdict(
    rule: &Rule,
    votes: &[CheckResult],
    impaired: &BTreeSet<String>,
    now: Millis,
) -> Option<CheckResult> {
    let results: BTreeMap<String, Status> = votes
        .iter()
        .filter_map(|v| Some((v.region.clone()?, v.status)))
        .collect();
    let judged = quorum::verdict(&quorum::Round {
        regions: &rule.regions,
        quorum: Some(rule.quorum),
        results: &results,
        impaired,
        absent: &BTreeSet::new(),
        previous: Status::Pending,
    });
    if judged.kept_previous {
        return None;
    }
    let counted: Vec<&CheckResult> = votes
        .iter()
        .filter(|v| v.region.as_deref().is_some_and(|r| !impaired.contains(r)))
        .collect();
    let status = judged.status;
    let base = counted
        .iter()
        .copied()
        .find(|v| v.status == status)
        .or_else(|| counted.iter().copied().find(|v| v.status != Status::Up))
        .or_else(|| counted.first().copied())?;
    let failed: Vec<&str> = counted
        .iter()
        .filter(|v| v.status == Status::Down)
        .filter_map(|v| v.region.as_deref())
        .collect();
    let error = match status {
        Status::Down => base.error.as_ref().map(|e| {
            format!(
                "{e} ({} of {} regions failed: {})",
                failed.len(),
                counted.len(),
                failed.join(", ")
            )
        }),
        _ => base.error.clone(),
    };
    Some(CheckResult {
        service_id: base.service_id,
        scheduled_at: base.scheduled_at,
        status,
        latency_ms: base.latency_ms,
        status_code: base.status_code,
        error,
        checked_at: now.max(base.checked_at),
        cert_expires_at: base.cert_expires_at,
        region: None,
    })
}

#[cfg(test)]
mod tests;
