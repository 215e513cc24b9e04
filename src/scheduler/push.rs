//! Push services' deadlines (`push://`): no jobs, a missed-ping deadline
//! per service, moved by pings, reported DOWN by the scheduler itself when
//! it passes (DESIGN.md "Check kinds").
//!
//! A min-heap of deadlines with lazy deletion, as the rounds have. A ping
//! moves a deadline later, usually, and that costs no heap push: the entry
//! already queued wakes the scheduler at the old deadline, which finds the
//! new one and queues it then (one spare wake-up per ping cycle, instead of
//! one heap entry per ping for as long as the interval). A deadline moved
//! earlier (a shorter interval) gets a new generation and entry.
//!
//! A ping that reached the API before its deadline may reach the scheduler
//! after it (the bus carries it). A deadline is therefore reported only
//! [`PING_SETTLE_MS`] after it passed, with the deadline as the log's
//! `scheduled_at`; a ping that arrived after the deadline reports the
//! missed deadline itself, at once, before its own UP is recorded, so a
//! late job still shows its DOWN.

use crate::domain::push;
use crate::domain::time::Millis;
use crate::domain::{CheckResult, Service, ServiceId, ServiceSpec};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

/// How long after a deadline its DOWN is reported: time for a ping made
/// before the deadline to reach the scheduler through the bus.
pub const PING_SETTLE_MS: Millis = 2_000;

#[derive(Debug)]
struct Entry {
    spec: ServiceSpec,
    generation: u64,
    /// The latest ping known, or when the service was registered or
    /// resumed (the clock starts then).
    last_ping: Millis,
    /// When it is missed unless a ping comes first.
    deadline: Millis,
    /// The latest missed deadline reported.
    fired: Option<Millis>,
}

/// The deadlines of every enabled push service.
#[derive(Debug, Default)]
pub(super) struct Pushes {
    /// Wake-ups: `(at, id, generation)`, `at` never after the entry's
    /// deadline (see the module's doc).
    heap: BinaryHeap<Reverse<(Millis, ServiceId, u64)>>,
    entries: HashMap<ServiceId, Entry>,
    next_generation: u64,
    /// Missed deadlines found by pings, to publish with the next due ones.
    found: Vec<CheckResult>,
    /// Reminders passed over by a late wake-up since the last take.
    pub(super) skipped: u64,
}

impl Pushes {
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Wake-ups queued, stale ones included (for tests).
    #[cfg(test)]
    pub(super) fn heap_len(&self) -> usize {
        self.heap.len()
    }

    /// The ids of every push service scheduled.
    pub(super) fn ids(&self) -> impl Iterator<Item = ServiceId> + '_ {
        self.entries.keys().copied()
    }

    pub(super) fn contains(&self, id: ServiceId) -> bool {
        self.entries.contains_key(&id)
    }

    /// Sets the clock of `id`: its deadline follows from `last_ping` and
    /// `fired` under `spec`.
    fn place(
        &mut self,
        id: ServiceId,
        spec: ServiceSpec,
        last_ping: Millis,
        fired: Option<Millis>,
    ) {
        let deadline = push::deadline(
            last_ping,
            spec.interval,
            spec.check.effective_grace(),
            fired,
        );
        let generation = match self.entries.get(&id) {
            // Its queued wake-up comes no later; it will find this deadline.
            Some(entry) if deadline >= entry.deadline => entry.generation,
            // New, or due sooner: a new generation, so the old wake-up is
            // dropped when reached.
            _ => {
                self.next_generation += 1;
                self.heap
                    .push(Reverse((deadline, id, self.next_generation)));
                self.next_generation
            }
        };
        self.entries.insert(
            id,
            Entry {
                spec,
                generation,
                last_ping,
                deadline,
                fired,
            },
        );
    }

    /// A push service found in the store at start-up: its clock runs from
    /// its last logged round (a ping, or a missed deadline reported before
    /// the restart), or from its registration.
    pub(super) fn load(&mut self, svc: &Service) {
        let last = svc
            .last_scheduled_at
            .map_or(svc.created_at, |at| at.max(svc.created_at));
        self.place(svc.id, svc.spec(), last, None);
    }

    /// A created or changed push service (not paused). New here (created,
    /// resumed, or turned into a push service): its clock starts `now`. A
    /// changed interval or grace moves the deadline; anything else keeps it.
    pub(super) fn upsert(&mut self, id: ServiceId, spec: ServiceSpec, now: Millis) {
        match self.entries.get_mut(&id) {
            Some(entry)
                if entry.spec.interval == spec.interval
                    && entry.spec.check.effective_grace() == spec.check.effective_grace() =>
            {
                entry.spec = spec;
            }
            Some(entry) => {
                let (last_ping, fired) = (entry.last_ping, entry.fired);
                self.place(id, spec, last_ping, fired);
            }
            None => self.place(id, spec, now, None),
        }
    }

    /// A ping of `id` at `at`. One after the deadline in force reports that
    /// deadline missed first (at once, the ping proves it passed); one at or
    /// before a deadline already reported came too late to the scheduler to
    /// stop that report, which stands until the job's next ping (logged).
    pub(super) fn ping(&mut self, id: ServiceId, at: Millis) {
        let Some(entry) = self.entries.get(&id) else {
            return;
        };
        if at <= entry.last_ping {
            return;
        }
        let grace = entry.spec.check.effective_grace();
        let mut fired = entry.fired;
        if let Some((slot, _)) = push::latest_slot(entry.deadline, entry.spec.interval, at - 1) {
            self.found.push(push::missed(
                id,
                entry.last_ping,
                slot,
                entry.spec.interval,
                grace,
                at,
            ));
            fired = Some(slot);
        } else if let Some(reported) = entry.fired.filter(|f| at <= *f) {
            tracing::warn!(
                service_id = id.get(),
                ping_at = at,
                reported_missed_at = reported,
                late_ms = at - reported,
                settle_ms = PING_SETTLE_MS,
                "a ping reached the scheduler after its deadline was reported missed; \
                 the service stays DOWN until its next ping"
            );
        }
        let spec = entry.spec.clone();
        self.place(id, spec, at, fired);
    }

    /// What the store says of a push service at a reload: a round logged
    /// after everything this schedule knows of is a ping whose news was
    /// lost (a bus reconnect). Missed deadlines this schedule reported are
    /// never after its `fired`, so they are not taken for pings.
    pub(super) fn observe(&mut self, svc: &Service) {
        let Some(at) = svc.last_scheduled_at else {
            return;
        };
        if let Some(entry) = self.entries.get(&svc.id)
            && at > entry.last_ping.max(entry.fired.unwrap_or(Millis::MIN))
        {
            self.ping(svc.id, at);
        }
    }

    pub(super) fn remove(&mut self, id: ServiceId) {
        self.entries.remove(&id);
    }

    /// Ends a reload: drops every push service not seen in it.
    pub(super) fn retain(&mut self, present: &HashSet<ServiceId>) {
        self.entries.retain(|id, _| present.contains(id));
        if self.heap.len() > 2 * self.entries.len() + 1024 {
            let entries = &self.entries;
            self.heap
                .retain(|Reverse((_, id, g))| entries.get(id).is_some_and(|e| e.generation == *g));
        }
    }

    /// When the scheduler must next wake for push services.
    pub(super) fn next_due(&mut self) -> Option<Millis> {
        if !self.found.is_empty() {
            return Some(Millis::MIN);
        }
        loop {
            let Reverse((at, id, generation)) = *self.heap.peek()?;
            if self
                .entries
                .get(&id)
                .is_some_and(|e| e.generation == generation)
            {
                return Some(at.saturating_add(PING_SETTLE_MS));
            }
            self.heap.pop();
        }
    }

    /// The DOWN results of deadlines missed by `now` (each reported
    /// [`PING_SETTLE_MS`] after it), and of those pings found; each missed
    /// service is due again one interval after its deadline.
    pub(super) fn take_missed(&mut self, now: Millis) -> Vec<CheckResult> {
        let mut missed = std::mem::take(&mut self.found);
        let settled = now.saturating_sub(PING_SETTLE_MS);
        while let Some(Reverse((at, id, generation))) = self.heap.peek().copied() {
            if at > settled {
                break;
            }
            self.heap.pop();
            let Some(entry) = self
                .entries
                .get_mut(&id)
                .filter(|e| e.generation == generation)
            else {
                continue;
            };
            let Some((slot, passed)) =
                push::latest_slot(entry.deadline, entry.spec.interval, settled)
            else {
                // Pinged meanwhile: wake at the deadline now in force.
                self.heap.push(Reverse((entry.deadline, id, generation)));
                continue;
            };
            self.skipped += passed;
            missed.push(push::missed(
                id,
                entry.last_ping,
                slot,
                entry.spec.interval,
                entry.spec.check.effective_grace(),
                now,
            ));
            entry.fired = Some(slot);
            entry.deadline = slot + entry.spec.interval.millis().max(1);
            self.heap.push(Reverse((entry.deadline, id, generation)));
        }
        missed
    }
}
