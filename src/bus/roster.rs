//! The roster: one process's view of the fleet's regions, built from the
//! heartbeats it receives ([`super::beat`]): each region's workers, when
//! each was last heard from and how fast it checks, which regions the
//! schedule lists and which the recorders judge impaired.
//!
//! It has no task of its own: every read first drains the beats that
//! arrived since the last one (a bounded ring; a reader that fell behind
//! goes on with the newest, which is all liveness needs). Times are this
//! process's clock at receipt, so clocks that differ between machines do
//! not make a live worker look dead.

use super::Beat;
use crate::domain::time::Millis;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use tokio::sync::broadcast::{self, error::TryRecvError};

/// A worker not heard from for this long is forgotten (a dead one is
/// shown, not live, until then).
pub const FORGET_AFTER_MS: Millis = 10 * 60 * 1000;

/// The view, fed by a heartbeat subscription.
pub struct Roster {
    rx: Mutex<broadcast::Receiver<Beat>>,
    state: Mutex<State>,
}

/// What the beats said so far.
#[derive(Debug, Default)]
pub struct State {
    workers: HashMap<String, Seen>,
    /// Each recorder's impaired regions (with since when), and when it
    /// last beat.
    recorders: HashMap<String, (Vec<(String, Millis)>, Millis)>,
    /// The regions the schedule lists, and when that was heard.
    listed: Option<(Vec<String>, Millis)>,
}

#[derive(Debug)]
struct Seen {
    region: String,
    /// (received at, checks done) of its last beat, and of the one before.
    last: (Millis, u64),
    before: Option<(Millis, u64)>,
}

/// One region as `GET /regions` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionView {
    /// Its name.
    pub name: String,
    /// Whether some scheduled service lists it.
    pub listed: bool,
    /// Whether it has a live worker.
    pub live: bool,
    /// Whether its votes are set aside (a recorder judges it impaired).
    pub impaired: bool,
    /// Since when it is impaired (RFC 3339), if it is.
    #[serde(serialize_with = "opt_rfc3339")]
    pub impaired_since: Option<Millis>,
    /// Checks a second its live workers make, together.
    pub checks_per_second: f64,
    /// Its workers, live or lately seen.
    pub workers: Vec<WorkerView>,
}

/// One worker as `GET /regions` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerView {
    /// Host, pid and a random part.
    pub id: String,
    /// When it last beat (RFC 3339).
    #[serde(serialize_with = "crate::domain::time::serde_rfc3339::serialize")]
    pub last_seen: Millis,
    /// Whether that was recently enough to count it live.
    pub live: bool,
    /// Checks a second, over its last two beats.
    pub checks_per_second: f64,
}

fn opt_rfc3339<S: serde::Serializer>(v: &Option<Millis>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(at) => crate::domain::time::serde_rfc3339::serialize(at, s),
        None => s.serialize_none(),
    }
}

fn live_ms() -> Millis {
    super::beat::LIVE_FOR.as_millis() as Millis
}

impl State {
    /// Takes a beat received at `now`.
    pub fn observe(&mut self, beat: Beat, now: Millis) {
        match beat {
            Beat::Worker {
                id, region, checks, ..
            } => {
                let seen = self.workers.entry(id).or_insert_with(|| Seen {
                    region: region.clone(),
                    last: (now, checks),
                    before: None,
                });
                if seen.last.0 != now || seen.before.is_some() {
                    seen.before = Some(seen.last);
                }
                seen.region = region;
                seen.last = (now, checks);
            }
            Beat::Recorder { id, impaired, .. } => {
                self.recorders.insert(id, (impaired, now));
            }
            Beat::Scheduler { regions, .. } => self.listed = Some((regions, now)),
        }
    }

    /// Forgets workers long gone and recorders no longer live.
    fn prune(&mut self, now: Millis) {
        self.workers.retain(|_, w| now - w.last.0 < FORGET_AFTER_MS);
        self.recorders.retain(|_, (_, at)| now - *at < live_ms());
    }

    /// Regions with a live worker.
    pub fn live_regions(&self, now: Millis) -> BTreeSet<String> {
        self.workers
            .values()
            .filter(|w| now - w.last.0 < live_ms())
            .map(|w| w.region.clone())
            .collect()
    }

    /// Regions some live recorder judges impaired, with the earliest
    /// `since` any of them gives.
    pub fn impaired(&self, now: Millis) -> BTreeMap<String, Millis> {
        let mut out = BTreeMap::new();
        for (regions, at) in self.recorders.values() {
            if now - *at >= live_ms() {
                continue;
            }
            for (region, since) in regions {
                let e = out.entry(region.clone()).or_insert(*since);
                *e = (*e).min(*since);
            }
        }
        out
    }

    /// The regions the schedule lists, as last heard (empty before the
    /// scheduler's first beat arrives).
    pub fn listed(&self) -> &[String] {
        self.listed.as_ref().map_or(&[], |(r, _)| r.as_slice())
    }

    /// Listed regions without a live worker: their rounds count them
    /// missing.
    pub fn missing(&self, now: Millis) -> Vec<String> {
        let live = self.live_regions(now);
        self.listed()
            .iter()
            .filter(|r| !live.contains(*r))
            .cloned()
            .collect()
    }

    /// Every region known, by name.
    pub fn view(&self, now: Millis) -> Vec<RegionView> {
        let impaired = self.impaired(now);
        let mut names: BTreeSet<String> = self.listed().iter().cloned().collect();
        names.extend(self.workers.values().map(|w| w.region.clone()));
        names.extend(impaired.keys().cloned());
        names
            .into_iter()
            .map(|name| {
                let mut workers: Vec<WorkerView> = self
                    .workers
                    .iter()
                    .filter(|(_, w)| w.region == name)
                    .map(|(id, w)| {
                        let live = now - w.last.0 < live_ms();
                        let rate = match w.before {
                            Some((t0, c0)) if live && w.last.0 > t0 => {
                                w.last.1.saturating_sub(c0) as f64 * 1000.0 / (w.last.0 - t0) as f64
                            }
                            _ => 0.0,
                        };
                        WorkerView {
                            id: id.clone(),
                            last_seen: w.last.0,
                            live,
                            checks_per_second: (rate * 10.0).round() / 10.0,
                        }
                    })
                    .collect();
                workers.sort_by(|a, b| a.id.cmp(&b.id));
                let live = workers.iter().any(|w| w.live);
                let rate: f64 = workers.iter().map(|w| w.checks_per_second).sum();
                RegionView {
                    listed: self.listed().contains(&name),
                    live,
                    impaired: impaired.contains_key(&name),
                    impaired_since: impaired.get(&name).copied(),
                    checks_per_second: (rate * 10.0).round() / 10.0,
                    workers,
                    name,
                }
            })
            .collect()
    }
}

impl Roster {
    /// A roster fed by `rx` (a heartbeat subscription).
    pub fn new(rx: broadcast::Receiver<Beat>) -> Self {
        Self {
            rx: Mutex::new(rx),
            state: Mutex::new(State::default()),
        }
    }

    /// Drains the beats received so far, then runs `f` on the state.
    pub fn read<R>(&self, now: Millis, f: impl FnOnce(&State) -> R) -> R {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        {
            let mut rx = self
                .rx
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            loop {
                match rx.try_recv() {
                    Ok(beat) => state.observe(beat, now),
                    Err(TryRecvError::Lagged(_)) => continue,
                    Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                }
            }
        }
        state.prune(now);
        f(&state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(id: &str, region: &str, checks: u64) -> Beat {
        Beat::Worker {
            id: id.into(),
            region: region.into(),
            checks,
            at: 0,
        }
    }

    #[test]
    fn a_worker_is_live_until_its_beats_stop() {
        let mut s = State::default();
        s.observe(worker("w1", "eu", 0), 1_000);
        s.observe(worker("w1", "eu", 50), 3_000);
        assert_eq!(s.live_regions(3_000), BTreeSet::from(["eu".to_owned()]));
        let view = s.view(3_000);
        assert_eq!(view[0].workers[0].checks_per_second, 25.0);
        assert!(view[0].live);
        let later = 3_000 + live_ms();
        assert!(s.live_regions(later).is_empty());
        assert!(!s.view(later)[0].live, "shown, but not live");
    }

    #[test]
    fn a_listed_region_without_a_live_worker_is_missing() {
        let mut s = State::default();
        s.observe(
            Beat::Scheduler {
                regions: vec!["a".into(), "b".into()],
                at: 0,
            },
            0,
        );
        s.observe(worker("w1", "a", 0), 0);
        assert_eq!(s.missing(1), vec!["b".to_owned()]);
        let names: Vec<_> = s.view(1).into_iter().map(|r| (r.name, r.live)).collect();
        assert_eq!(names, vec![("a".into(), true), ("b".into(), false)]);
    }

    #[test]
    fn a_region_is_impaired_while_a_live_recorder_says_so() {
        let mut s = State::default();
        s.observe(
            Beat::Recorder {
                id: "r1".into(),
                impaired: vec![("b".into(), 500)],
                at: 0,
            },
            1_000,
        );
        assert_eq!(s.impaired(1_000).get("b"), Some(&500));
        assert!(s.impaired(1_000 + live_ms()).is_empty());
    }

    #[tokio::test]
    async fn a_read_takes_the_beats_received_so_far() {
        let (tx, rx) = broadcast::channel(4);
        let roster = Roster::new(rx);
        for i in 0..10 {
            tx.send(worker(&format!("w{i}"), "eu", 0)).unwrap();
        }
        // The ring kept the newest 4: a laggard goes on with those.
        let n = roster.read(0, |s| s.view(0)[0].workers.len());
        assert_eq!(n, 4);
    }
}
