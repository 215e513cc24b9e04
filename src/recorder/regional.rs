//! The recorder's regional side: which services are regional (and their
//! rule), the open rounds ([`super::rounds`]), which regions are impaired,
//! and the recorder's heartbeat saying so.
//!
//! Impaired regions: over the last [`WINDOW_MS`], per region, the services
//! that other regions saw UP in a round; a region that saw more than half
//! of them fail, with at least [`MIN_SERVICES`] such services, is impaired
//! (its own network is the likelier culprit than that many services), and
//! its votes are set aside until that no longer holds. The change goes out
//! as a `region_impaired` / `region_recovered` event and in this
//! recorder's beats, from which every API process shows it.

use super::rounds::{Closed, Rounds, Rule};
use crate::bus::beat::{BEAT_EVERY, process_id};
use crate::bus::{Beat, Bus, Roster};
use crate::domain::time::{Millis, now_ms};
use crate::domain::{CheckResult, Event, ServiceId, Status};
use crate::store::Store;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// How long a service's rule is trusted before it is read again, so a
/// change of its regions reaches the recorder without a subscription.
const RULE_TTL_MS: Millis = 30_000;
/// The span over which a region's failures are weighed.
pub const WINDOW_MS: Millis = 120_000;
/// Least services others see UP before a region can be judged impaired.
pub const MIN_SERVICES: usize = 20;

/// The regional state of one recorder.
pub struct Regional {
    rules: HashMap<ServiceId, (Option<Rule>, Millis)>,
    rounds: Rounds,
    roster: Arc<Roster>,
    /// Per region, per service: when others last saw it UP in a round, and
    /// whether this region saw that round fail.
    seen: HashMap<String, HashMap<ServiceId, (Millis, bool)>>,
    impaired: BTreeMap<String, Millis>,
    id: String,
    started: Millis,
    next_beat: Millis,
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
            impaired: BTreeMap::new(),
            id: process_id(),
            started: now,
            next_beat: now,
        }
    }

    /// When something is due: a round's deadline or the next beat.
    pub fn next_wake(&mut self) -> Millis {
        match self.rounds.next_deadline() {
            Some(at) => at.min(self.next_beat),
            None => self.next_beat,
        }
    }

    /// Counts the votes among `results` (logged already): results with a
    /// region, of services that list regions.
    pub async fn take(&mut self, store: &Store, results: &[CheckResult]) {
        let now = now_ms();
        for r in results.iter().filter(|r| r.region.is_some()) {
            let Some(rule) = self.rule(store, r.service_id, now).await else {
                continue;
            };
            self.rounds.vote(r.clone(), &rule, now);
        }
    }

    async fn rule(&mut self, store: &Store, id: ServiceId, now: Millis) -> Option<Rule> {
        if let Some((rule, at)) = self.rules.get(&id)
            && now - at < RULE_TTL_MS
        {
            return rule.clone();
        }
        let rule = match store.get_service(id).await {
            Ok(svc) => svc.and_then(|s| Rule::of(&s.spec())),
            Err(e) => {
                tracing::warn!(error = %e, service_id = id.get(),
                    "cannot read a regional service's rule; its vote is logged only");
                return self.rules.get(&id).and_then(|(r, _)| r.clone());
            }
        };
        if self.rules.len() > 1_000_000 {
            self.rules.clear();
        }
        self.rules.insert(id, (rule.clone(), now));
        rule
    }

    /// Closes what is due (all open rounds with `all`), judges the impaired
    /// regions again, and returns the verdicts to record and the events of
    /// impaired regions that changed.
    pub fn close(&mut self, all: bool) -> (Vec<CheckResult>, Vec<Event>) {
        let now = now_ms();
        let (live, _) = self.roster.read(now, |s| (s.live_regions(now), ()));
        // Until a few beats could arrive, every region may look absent: no
        // early close then, only deadlines.
        let live = if now - self.started < crate::bus::beat::LIVE_FOR.as_millis() as Millis {
            BTreeSet::new()
        } else {
            live
        };
        let impaired: BTreeSet<String> = self.impaired.keys().cloned().collect();
        let closed = self.rounds.close(now, &live, &impaired, all);
        for c in &closed {
            self.weigh(c, now);
        }
        let events = self.judge(now);
        let verdicts = closed.into_iter().filter_map(|c| c.verdict).collect();
        (verdicts, events)
    }

    /// Notes, for each region of a closed round, whether it failed a
    /// service the other regions saw UP.
    fn weigh(&mut self, closed: &Closed, now: Millis) {
        for v in &closed.votes {
            let Some(region) = v.region.as_deref() else {
                continue;
            };
            let others: Vec<&CheckResult> = closed
                .votes
                .iter()
                .filter(|o| o.region.as_deref() != Some(region))
                .collect();
            if others.is_empty() || others.iter().any(|o| o.status != Status::Up) {
                continue;
            }
            self.seen
                .entry(region.to_owned())
                .or_default()
                .insert(v.service_id, (now, v.status == Status::Down));
        }
    }

    /// Judges each region over the window; the events of those that changed.
    fn judge(&mut self, now: Millis) -> Vec<Event> {
        let mut events = Vec::new();
        for (region, services) in &mut self.seen {
            services.retain(|_, (at, _)| now - *at < WINDOW_MS);
            let failed = services.values().filter(|(_, f)| *f).count();
            let bad = services.len() >= MIN_SERVICES && failed * 2 > services.len();
            let was = self.impaired.contains_key(region);
            if bad && !was {
                self.impaired.insert(region.clone(), now);
                tracing::warn!(region = %region, failed, services = services.len(),
                    "region impaired: its votes are set aside");
                events.push(Event::RegionImpaired {
                    region: region.clone(),
                    failed: failed as u64,
                    services: services.len() as u64,
                    at: now,
                });
            } else if !bad && was {
                self.impaired.remove(region);
                tracing::info!(region = %region, "region recovered: its votes count again");
                events.push(Event::RegionRecovered {
                    region: region.clone(),
                    at: now,
                });
            }
        }
        self.seen.retain(|_, s| !s.is_empty());
        events
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
                .map(|(r, at)| (r.clone(), *at))
                .collect(),
            at: now,
        };
        if let Err(e) = bus.publish_beat(&beat).await {
            tracing::debug!(error = %e, "cannot send the recorder's heartbeat");
        }
    }
}
