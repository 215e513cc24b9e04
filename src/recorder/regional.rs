//! The recorder's regional side: which services are regional (and their
//! rule), the open rounds ([`super::rounds`]), which regions are impaired,
//! and the recorder's heartbeat saying so.
//!
//! Votes come to one recorder at a time (the bus's votes queue has a single
//! active consumer), so this one sees every region's record: it judges
//! regions by [`region_health`] over each (service, region)'s newest vote
//! of the last two minutes, sets an impaired region's votes aside, and
//! tells the change once: a `region_impaired` / `region_recovered` event,
//! an alert to every channel that gets every service's alerts, and its
//! heartbeats, from which every API process shows it.

use super::rounds::{Closed, Rounds, Rule};
use crate::bus::beat::{BEAT_EVERY, process_id};
use crate::bus::{Beat, Bus, Roster};
use crate::domain::outbox::{AlertEvent, RegionNote};
use crate::domain::region_health::{self, Observation, Standing, WINDOW_MS};
use crate::domain::time::{Millis, now_ms};
use crate::domain::{CheckResult, Event, ServiceId, Status};
use crate::store::Store;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

/// How long a service's rule is trusted before it is read again, so a
/// change of its regions reaches the recorder without a subscription.
const RULE_TTL_MS: Millis = 30_000;
/// How often regions are judged again.
const JUDGE_EVERY_MS: Millis = 1_000;
/// Most (service, region) pairs remembered for judging; beyond it new
/// pairs wait until old ones leave the window.
const SEEN_MAX: usize = 4_000_000;
/// Most region alerts waiting for the database to take them.
const ALERTS_PENDING_MAX: usize = 256;
/// Votes a round's may trail the newest vote taken by, and still be on
/// their way (they left their workers at about the same time).
const CLOCK_SLACK_MS: Millis = 1_000;
/// No vote for this long: the votes queue is idle (or another recorder has
/// it), and round deadlines are read on the wall clock.
const IDLE_MS: Millis = 5_000;

/// A region alert to write.
#[derive(Debug, Clone)]
pub struct RegionAlert {
    /// `region_impaired` or `region_recovered`.
    pub event: AlertEvent,
    /// The region and what was seen of it.
    pub note: RegionNote,
    /// When it changed.
    pub at: Millis,
}

/// What closing rounds produced.
#[derive(Debug, Default)]
pub struct Settled {
    /// The verdicts to record.
    pub verdicts: Vec<CheckResult>,
    /// The regions that changed, as events.
    pub events: Vec<Event>,
}

/// The regional state of one recorder.
pub struct Regional {
    rules: HashMap<ServiceId, (Option<Rule>, Millis)>,
    rounds: Rounds,
    roster: Arc<Roster>,
    /// Each (service, region)'s newest vote: when, and what it found.
    seen: HashMap<(ServiceId, Arc<str>), (Millis, Status)>,
    /// Region names, shared by `seen`'s keys.
    names: BTreeSet<Arc<str>>,
    /// The impaired regions: since when, and their standing then.
    impaired: BTreeMap<String, (Millis, Standing)>,
    /// Region alerts the database has not taken yet.
    alerts: VecDeque<RegionAlert>,
    next_judge: Millis,
    id: String,
    started: Millis,
    next_beat: Millis,
    /// The newest `checked_at` among the votes taken, and when the last
    /// vote came: the rounds' clock (see [`Regional::clock`]).
    newest_vote: Millis,
    last_vote_at: Option<Millis>,
    /// When votes began coming after an idle spell: rounds due before may
    /// have given votes to the recorder that had the queue then.
    active_since: Millis,
}

impl Regional {
    /// A recorder's regional state, watching `bus`'s heartbeats.
    pub fn new(bus: &Bus) -> Self {
        let now = now_ms();
        Self {
            rules: HashMap::new(),
            rounds: Rounds::default(),
            roster: bus.roster(),
            seen: HashMap::new(),
            names: BTreeSet::new(),
            impaired: BTreeMap::new(),
            alerts: VecDeque::new(),
            next_judge: now,
            id: process_id(),
            started: now,
            next_beat: now,
            newest_vote: 0,
            last_vote_at: None,
            active_since: now,
        }
    }

    /// The time round deadlines are read on. While votes flow it is the
    /// newest vote's `checked_at` (plus a little slack), never ahead of the
    /// wall clock: a recorder that fell behind judges a round when the
    /// votes checked by its deadline are in, not when its deadline passed
    /// on the wall clock with those votes still queued (which would close
    /// every round short of votes, keeping every status, exactly when a
    /// backlog makes the news matter). When no vote has come for a while,
    /// the wall clock.
    fn clock(&self, now: Millis) -> Millis {
        match self.last_vote_at {
            Some(at) if now - at < IDLE_MS => now.min(self.newest_vote + CLOCK_SLACK_MS),
            _ => now,
        }
    }

    /// When something is due: a round's deadline, the next judgement (while
    /// anything is known) or the next beat.
    pub fn next_wake(&mut self) -> Millis {
        let mut at = self.next_beat;
        if !self.seen.is_empty() || !self.impaired.is_empty() {
            at = at.min(self.next_judge);
        }
        let now = now_ms();
        let clock = self.clock(now);
        match self.rounds.next_deadline() {
            // On the rounds' clock, which moves with the votes (a settle
            // follows each batch) or, idle, with the wall clock.
            Some(deadline) if deadline <= clock => at.min(now),
            Some(deadline) => at.min(now + (deadline - clock).min(IDLE_MS)),
            None => at,
        }
    }

    /// Counts the votes among `results` (logged already): results with a
    /// region, of services that list regions.
    pub async fn take(&mut self, store: &Store, results: &[CheckResult]) {
        let now = now_ms();
        self.learn_rules(store, results, now).await;
        if results.iter().any(|r| r.region.is_some()) {
            if self.last_vote_at.is_none_or(|at| now - at >= IDLE_MS) {
                self.active_since = now;
            }
            self.last_vote_at = Some(now);
        }
        for r in results.iter().filter(|r| r.region.is_some()) {
            self.newest_vote = self.newest_vote.max(r.checked_at);
            let Some(rule) = self.rules.get(&r.service_id).and_then(|(r, _)| r.clone()) else {
                continue;
            };
            self.observe(r, now);
            self.rounds.vote(r.clone(), &rule, now);
        }
    }

    /// Remembers `vote`, received at `now`, as its (service, region)'s
    /// newest. Times are this process's, so a worker whose clock is ahead
    /// is not judged on votes from the future.
    fn observe(&mut self, vote: &CheckResult, now: Millis) {
        let Some(region) = vote.region.as_deref() else {
            return;
        };
        let name = match self.names.get(region) {
            Some(name) => Arc::clone(name),
            None => {
                let name: Arc<str> = Arc::from(region);
                self.names.insert(Arc::clone(&name));
                name
            }
        };
        let key = (vote.service_id, name);
        if self.seen.len() >= SEEN_MAX && !self.seen.contains_key(&key) {
            return;
        }
        self.seen.insert(key, (now, vote.status));
    }

    /// Reads, in one query, the rules of the services among `results`'
    /// votes that are unknown or older than [`RULE_TTL_MS`]. What the store
    /// cannot give now keeps its last rule (or none: the vote is logged
    /// only).
    async fn learn_rules(&mut self, store: &Store, results: &[CheckResult], now: Millis) {
        let mut stale: Vec<ServiceId> = results
            .iter()
            .filter(|r| r.region.is_some())
            .map(|r| r.service_id)
            .filter(|id| {
                self.rules
                    .get(id)
                    .is_none_or(|(_, at)| now - at >= RULE_TTL_MS)
            })
            .collect();
        if stale.is_empty() {
            return;
        }
        stale.sort_unstable();
        stale.dedup();
        let rules = match store.round_rules(&stale).await {
            Ok(rules) => rules,
            Err(e) => {
                tracing::warn!(error = %e, services = stale.len(),
                    "cannot read regional services' rules; their votes are logged only");
                return;
            }
        };
        if self.rules.len() + stale.len() > 1_000_000 {
            self.rules.clear();
        }
        // A service not found was deleted: no rule.
        for id in &stale {
            self.rules.insert(*id, (None, now));
        }
        for r in &rules {
            self.rules.insert(r.id, (Rule::of_stored(r), now));
        }
    }

    /// Judges the regions again if due (always with `all`), then closes the
    /// rounds that are due (all open ones with `all`), completing from the
    /// store those that lack votes, and returns the verdicts to record and
    /// the events of the regions that changed (their alerts are queued).
    pub async fn close(&mut self, store: &Store, all: bool) -> Settled {
        let now = now_ms();
        let events = if all || now >= self.next_judge {
            self.next_judge = now + JUDGE_EVERY_MS;
            self.judge(now)
        } else {
            Vec::new()
        };
        let (live, _) = self.roster.read(now, |s| (s.live_regions(now), ()));
        // Until a few beats could arrive, every region may look absent: no
        // early close then, only deadlines.
        let live = if now - self.started < crate::bus::beat::LIVE_FOR.as_millis() as Millis {
            BTreeSet::new()
        } else {
            live
        };
        let impaired = self.impaired_set();
        let clock = self.clock(now);
        let mut closed = self.rounds.close_at(clock, now, &live, &impaired, all);
        // Votes of a round went elsewhere only around a hand-over: rounds
        // due before this recorder's votes began, or any while it gets none
        // (another recorder may have the queue now). A round merely short
        // of a region's vote costs no read.
        let idle = self.last_vote_at.is_none_or(|at| now - at >= IDLE_MS);
        let since = self.active_since + CLOCK_SLACK_MS;
        complete_from_store(store, &mut closed, &impaired, now, |due| {
            idle || due < since
        })
        .await;
        Settled {
            verdicts: closed.into_iter().filter_map(|c| c.verdict).collect(),
            events,
        }
    }

    fn impaired_set(&self) -> BTreeSet<String> {
        self.impaired.keys().cloned().collect()
    }

    /// Judges every region over the window; the events of those that
    /// changed, whose alerts are queued.
    fn judge(&mut self, now: Millis) -> Vec<Event> {
        self.seen.retain(|_, (at, _)| now - *at < WINDOW_MS);
        let observations: Vec<Observation> = self
            .seen
            .iter()
            .map(|((service, region), (at, status))| Observation {
                service: *service,
                region: region.to_string(),
                at: *at,
                status: *status,
            })
            .collect();
        let before = self.impaired_set();
        let standings = region_health::judge(&observations, now, &before);
        let mut events = Vec::new();
        for (region, standing) in standings {
            let was = before.contains(&region);
            let note = RegionNote {
                name: region.clone(),
                compared: standing.compared,
                failing: standing.failing,
            };
            if standing.impaired && !was {
                tracing::warn!(region = %region, failing = standing.failing,
                    compared = standing.compared,
                    "region impaired: its votes are set aside");
                self.impaired.insert(region.clone(), (now, standing));
                events.push(Event::RegionImpaired {
                    region,
                    failed: u64::from(standing.failing),
                    services: u64::from(standing.compared),
                    at: now,
                });
                self.queue_alert(AlertEvent::RegionImpaired, note, now);
            } else if !standing.impaired && was {
                tracing::info!(region = %region, failing = standing.failing,
                    compared = standing.compared,
                    "region recovered: its votes count again");
                self.impaired.remove(&region);
                events.push(Event::RegionRecovered { region, at: now });
                self.queue_alert(AlertEvent::RegionRecovered, note, now);
            }
        }
        // Names of regions no longer seen go with their last pair.
        let used: BTreeSet<&str> = self.seen.keys().map(|(_, r)| &**r).collect();
        let gone: Vec<Arc<str>> = self
            .names
            .iter()
            .filter(|n| !used.contains(&***n))
            .cloned()
            .collect();
        for name in gone {
            self.names.remove(&name);
        }
        events
    }

    fn queue_alert(&mut self, event: AlertEvent, note: RegionNote, at: Millis) {
        if self.alerts.len() >= ALERTS_PENDING_MAX {
            // Only while the database refuses writes for a long time with
            // regions flapping: the oldest news goes first.
            self.alerts.pop_front();
            tracing::warn!("region alerts pile up unwritten; the oldest is dropped");
        }
        self.alerts.push_back(RegionAlert { event, note, at });
    }

    /// Writes the queued region alerts, oldest first; what the database
    /// refuses waits for the next call. Whether any was written.
    pub async fn write_alerts(&mut self, store: &Store) -> bool {
        let mut wrote = false;
        while let Some(alert) = self.alerts.front() {
            match store
                .create_region_alerts(alert.event, &alert.note, alert.at)
                .await
            {
                Ok(n) => {
                    wrote |= n > 0;
                    self.alerts.pop_front();
                }
                Err(e) => {
                    tracing::warn!(error = %e, region = %alert.note.name,
                        "cannot write a region alert yet; retrying");
                    break;
                }
            }
        }
        wrote
    }

    /// Beats if due: the impaired regions, for every API process's view.
    pub async fn beat(&mut self, bus: &Bus) {
        let now = now_ms();
        if now < self.next_beat {
            return;
        }
        self.next_beat = now + BEAT_EVERY.as_millis() as Millis;
        let beat = Beat::Recorder {
            id: self.id.clone(),
            impaired: self
                .impaired
                .iter()
                .map(|(r, (at, _))| (r.clone(), *at))
                .collect(),
            at: now,
        };
        if let Err(e) = bus.publish_beat(&beat).await {
            tracing::debug!(error = %e, "cannot send the recorder's heartbeat");
        }
    }
}

/// Completes, from the votes the store logged, the rounds that closed
/// without every listed region: their other votes went to the recorder
/// that had the votes queue before this one. Without the store they are
/// judged on what they have.
async fn complete_from_store(
    store: &Store,
    closed: &mut [Closed],
    impaired: &BTreeSet<String>,
    now: Millis,
    may_be_elsewhere: impl Fn(Millis) -> bool,
) {
    let lacking: Vec<(ServiceId, Millis)> = closed
        .iter()
        .filter(|c| c.lacks_votes())
        .filter_map(Closed::key)
        .filter(|(_, due)| may_be_elsewhere(*due))
        .collect();
    if lacking.is_empty() {
        return;
    }
    let logged = match store.round_votes(&lacking).await {
        Ok(logged) => logged,
        Err(e) => {
            tracing::warn!(error = %e, rounds = lacking.len(),
                "cannot read rounds' votes back; judging them on the votes at hand");
            return;
        }
    };
    let mut by_round: HashMap<(ServiceId, Millis), Vec<CheckResult>> = HashMap::new();
    for vote in logged {
        by_round
            .entry((vote.service_id, vote.scheduled_at))
            .or_default()
            .push(vote);
    }
    for round in closed.iter_mut().filter(|c| c.lacks_votes()) {
        if let Some(votes) = round.key().and_then(|k| by_round.remove(&k)) {
            round.complete_with(votes, impaired, now);
        }
    }
}

#[cfg(test)]
mod tests;
