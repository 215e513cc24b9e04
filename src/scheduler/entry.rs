//! What the scheduler keeps of a service: only what building its jobs and
//! telling a changed check from a rename need.
//!
//! It used to keep the whole `ServiceSpec` (name, tags, channels,
//! thresholds...) inline in its map: 200+ bytes a slot, and a map of a
//! million entries has 2^21 slots, so about 520 MB at 1,000,000 services
//! (BENCHMARKS.md "A million services, embedded"). An [`Entry`] is 40 bytes
//! (see the size test below) plus its URL; the parts most services share
//! (expected statuses, check options, regions) are one [`Extra`], interned
//! by [`Interner`], and absent when all are defaults.

use crate::domain::time::{Millis, Seconds};
use crate::domain::{CheckJob, CheckOptions, Service, ServiceId, ServiceSpec};
use std::collections::HashMap;
use std::sync::Arc;

/// The settings of a service that its jobs carry, borrowed from a
/// [`Service`] (a load) or a [`ServiceSpec`] (an update), so that loading
/// a service copies only these.
#[derive(Debug, Clone, Copy)]
pub(super) struct Parts<'a> {
    pub url: &'a str,
    pub interval: Seconds,
    pub timeout: Seconds,
    pub expected_statuses: &'a Option<Vec<u16>>,
    pub check: &'a CheckOptions,
    pub regions: &'a [String],
}

impl<'a> From<&'a Service> for Parts<'a> {
    fn from(s: &'a Service) -> Self {
        Self {
            url: &s.url,
            interval: s.interval,
            timeout: s.timeout,
            expected_statuses: &s.expected_statuses,
            check: &s.check,
            regions: &s.regions,
        }
    }
}

impl<'a> From<&'a ServiceSpec> for Parts<'a> {
    fn from(s: &'a ServiceSpec) -> Self {
        Self {
            url: &s.url,
            interval: s.interval,
            timeout: s.timeout,
            expected_statuses: &s.expected_statuses,
            check: &s.check,
            regions: &s.regions,
        }
    }
}

/// The parts of a service's jobs that many services share.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Extra {
    expected_statuses: Option<Vec<u16>>,
    check: CheckOptions,
    regions: Vec<String>,
}

/// One scheduled (non-push) service.
#[derive(Debug)]
pub(super) struct Entry {
    url: Box<str>,
    /// `None`: default statuses and options, no regions.
    extra: Option<Arc<Extra>>,
    /// Seconds; validated intervals and timeouts are far below `u32::MAX`
    /// (a larger one would be clamped, never wrapped).
    interval_s: u32,
    timeout_s: u32,
    /// The next normal round's due time. Also what tells a live heap entry
    /// from a stale one: a heap entry is live when its time is this.
    pub due: Millis,
}

fn secs(s: Seconds) -> u32 {
    u32::try_from(s.0.max(0)).unwrap_or(u32::MAX)
}

fn millis(s: u32) -> Millis {
    Seconds(i64::from(s)).millis()
}

impl Entry {
    /// Whether `parts` checks what this entry checks (URL, interval,
    /// timeout, statuses, options): if so a change keeps the slot.
    pub fn same_check(&self, parts: &Parts<'_>) -> bool {
        let same_extra = match &self.extra {
            Some(e) => e.expected_statuses == *parts.expected_statuses && e.check == *parts.check,
            None => parts.expected_statuses.is_none() && parts.check.is_empty(),
        };
        *self.url == *parts.url
            && self.interval_s == secs(parts.interval)
            && self.timeout_s == secs(parts.timeout)
            && same_extra
    }

    /// The regions each round is checked in (empty: any worker).
    pub fn regions(&self) -> &[String] {
        self.extra.as_deref().map_or(&[], |e| &e.regions)
    }

    /// The interval, never 0 (a slot arithmetic divisor).
    pub fn interval_ms(&self) -> Millis {
        millis(self.interval_s).max(1)
    }

    /// The job of a round (or retry) of `id` due at `scheduled_at`, before
    /// it is split by region.
    pub fn job(&self, id: ServiceId, scheduled_at: Millis) -> CheckJob {
        CheckJob {
            service_id: id,
            url: self.url.to_string(),
            timeout_ms: millis(self.timeout_s),
            interval_ms: self.interval_ms(),
            expected_statuses: self
                .extra
                .as_ref()
                .and_then(|e| e.expected_statuses.clone()),
            scheduled_at,
            check: self
                .extra
                .as_ref()
                .map(|e| e.check.clone())
                .unwrap_or_default(),
            region: None,
        }
    }
}

/// Entries below which the intern table is never pruned.
const MIN_PRUNE_AT: usize = 256;

/// Key of an [`Extra`] in the table: the check options by the address of
/// their shared copy (the store hands out one copy per distinct stored
/// text, see `store::interned`; equal options in two copies just make two
/// `Extra`s), the rest by value. The table holds each `Extra`, and so its
/// options, alive: an address in it is never reused while it is there.
type Key = (usize, Option<Vec<u16>>, Vec<String>);

/// One shared [`Extra`] per distinct combination, so a million services
/// with the same regions or assertions hold one copy.
#[derive(Debug)]
pub(super) struct Interner {
    table: HashMap<Key, Arc<Extra>>,
    prune_at: usize,
}

impl Default for Interner {
    fn default() -> Self {
        Self {
            table: HashMap::new(),
            prune_at: MIN_PRUNE_AT,
        }
    }
}

impl Interner {
    /// An entry for `parts`, due at `due`.
    pub fn entry(&mut self, parts: &Parts<'_>, due: Millis) -> Entry {
        Entry {
            url: parts.url.into(),
            extra: self.extra(parts),
            interval_s: secs(parts.interval),
            timeout_s: secs(parts.timeout),
            due,
        }
    }

    fn extra(&mut self, parts: &Parts<'_>) -> Option<Arc<Extra>> {
        if parts.expected_statuses.is_none() && parts.check.is_empty() && parts.regions.is_empty() {
            return None;
        }
        let address = parts.check.shared().map_or(0, |a| Arc::as_ptr(a) as usize);
        let key = (
            address,
            parts.expected_statuses.clone(),
            parts.regions.to_vec(),
        );
        if let Some(extra) = self.table.get(&key) {
            return Some(Arc::clone(extra));
        }
        if self.table.len() >= self.prune_at {
            // Only the table holds these: no entry uses them any more.
            self.table.retain(|_, extra| Arc::strong_count(extra) > 1);
            self.prune_at = (self.table.len() * 2).max(MIN_PRUNE_AT);
        }
        let extra = Arc::new(Extra {
            expected_statuses: parts.expected_statuses.clone(),
            check: parts.check.clone(),
            regions: parts.regions.to_vec(),
        });
        self.table.insert(key, Arc::clone(&extra));
        Some(extra)
    }

    /// Distinct combinations held (for tests).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::CheckFields;

    fn spec() -> ServiceSpec {
        ServiceSpec {
            name: "a name that the scheduler does not keep".into(),
            url: "http://127.0.0.1:1/health".into(),
            interval: Seconds(300),
            timeout: Seconds(10),
            timeout_follows_interval: true,
            paused: false,
            expected_statuses: None,
            failure_threshold: 1,
            success_threshold: 1,
            retry_interval: None,
            channels: Vec::new(),
            check: Default::default(),
            tags: vec!["prod".into()],
            regions: Vec::new(),
            quorum: None,
        }
    }

    #[test]
    #[allow(clippy::print_stdout, reason = "the sizes, for BENCHMARKS.md")]
    fn an_entry_is_a_fraction_of_a_spec() {
        let spec = std::mem::size_of::<ServiceSpec>();
        let entry = std::mem::size_of::<Entry>();
        // Measured when the entry was slimmed: the old entry was a spec
        // plus 16 bytes (generation and due time) inline in the map slot.
        println!(
            "map slot before: {} bytes, after: {} bytes",
            spec + 16,
            entry
        );
        assert!(entry <= 40, "{entry} bytes");
        assert!(spec + 16 >= 4 * entry, "spec {spec}, entry {entry}");
    }

    #[test]
    fn shared_parts_are_held_once_and_freed_when_unused() {
        let mut interner = Interner::default();
        let mut a = spec();
        a.regions = vec!["eu".into(), "us".into()];
        let first = interner.entry(&Parts::from(&a), 0);
        let second = interner.entry(&Parts::from(&a), 0);
        let (Some(x), Some(y)) = (&first.extra, &second.extra) else {
            panic!("regions make an extra");
        };
        assert!(Arc::ptr_eq(x, y), "one copy for the same regions");
        assert!(interner.entry(&Parts::from(&spec()), 0).extra.is_none());
        drop((first, second));
        // Filling the table past its pruning point drops the unused ones.
        let kept: Vec<Entry> = (0..MIN_PRUNE_AT * 3)
            .map(|i| {
                let mut s = spec();
                s.regions = vec![format!("r{i}")];
                interner.entry(&Parts::from(&s), 0)
            })
            .collect();
        assert!(interner.len() <= MIN_PRUNE_AT * 3, "{}", interner.len());
        drop(kept);
        // None held now: the next prune empties the table, and it stays
        // within its (lowered) pruning point.
        for i in 0..MIN_PRUNE_AT * 4 {
            let mut s = spec();
            s.expected_statuses = Some(vec![u16::try_from(i).unwrap_or(0)]);
            drop(interner.entry(&Parts::from(&s), 0));
        }
        assert!(interner.len() <= MIN_PRUNE_AT, "{}", interner.len());
    }

    #[test]
    fn a_job_carries_what_the_spec_said() {
        let mut interner = Interner::default();
        let mut s = spec();
        s.expected_statuses = Some(vec![204]);
        s.check = CheckOptions::from(CheckFields {
            body_contains: Some("ok".into()),
            ..Default::default()
        });
        let entry = interner.entry(&Parts::from(&s), 7);
        let job = entry.job(ServiceId(4), 1_000);
        assert_eq!(job.url, s.url);
        assert_eq!((job.interval_ms, job.timeout_ms), (300_000, 10_000));
        assert_eq!(job.expected_statuses, Some(vec![204]));
        assert_eq!(job.check.body_contains.as_deref(), Some("ok"));
        assert!(entry.same_check(&Parts::from(&s)));
        let mut renamed = s.clone();
        renamed.name = "other".into();
        renamed.tags.clear();
        assert!(entry.same_check(&Parts::from(&renamed)));
        let mut moved = s.clone();
        moved.timeout = Seconds(11);
        assert!(!entry.same_check(&Parts::from(&moved)));
    }
}
