//! Reading the store into the schedule, a page at a time, so that the
//! scheduler publishes due jobs between pages (see [`super::active`]):
//!
//! - a **full** pass reads every service (at start-up, and after updates
//!   may have been missed) and drops what it did not see. At start the
//!   first page's due jobs go out before the second page is read, so the
//!   first check comes within one page of a restart, not after all of
//!   them (24 s at a million services before).
//! - a **changes** pass, every [`super::RECONCILE_EVERY`], catches what the
//!   bus did not announce (an API process that could not reach it after
//!   committing): the services changed since the last pass, push services
//!   with a round logged since then (a ping whose news was lost), and, by
//!   walking the ids alone, services deleted. Reading every service whole
//!   instead cost 500 pages of 2,000 rows a minute at a million services.
//!
//! A page is applied as soon as it is read, with no bus update in between:
//! an update handled after it is at least as new as the page, so the
//! schedule never goes back to an older state.

use super::Schedule;
use crate::domain::ServiceId;
use crate::domain::time::{Millis, now_ms};
use crate::store::changed::ChangedCursor;
use crate::store::{Store, StoreError};
use std::collections::HashSet;

/// Services read per query: loading them all at once left RSS the
/// allocator kept (BENCHMARKS.md), and the scheduler publishes nothing
/// while a page is read.
pub(super) const LOAD_PAGE: i64 = 2000;

/// Ids read per query when looking for deleted services.
pub(super) const ID_PAGE: i64 = 20_000;

/// How far before a pass's start the next pass looks for changes: a
/// change stamped with its writer's clock before the pass but committed
/// after it (a queued writer), or by a process whose clock is behind.
pub(super) const CHANGE_MARGIN_MS: Millis = 30_000;

/// Where a pass stands.
#[derive(Debug)]
enum Step {
    /// Every service, by id, after `after`; `present`: those seen.
    Full {
        after: i64,
        present: HashSet<ServiceId>,
    },
    /// Services changed after the cursor.
    Changed(ChangedCursor),
    /// Push services with a round logged since the pass's `since`, after
    /// this token hash.
    Pinged(String),
    /// Ids in the store after `after`, against `scheduled` (the schedule's
    /// ids at the pass's start, in order), of which those before `next`
    /// are done.
    Gone {
        after: i64,
        scheduled: Vec<ServiceId>,
        next: usize,
    },
}

/// One pass over the store, stepped a page at a time.
#[derive(Debug)]
pub(super) struct Load {
    step: Step,
    /// When the pass started: the next changes pass looks from a little
    /// before it.
    started: Millis,
    /// Changes from this on are read (a changes pass).
    since: Millis,
}

impl Load {
    /// A pass over every service.
    pub(super) fn full(schedule: &Schedule) -> Self {
        Self {
            step: Step::Full {
                after: 0,
                present: HashSet::with_capacity(schedule.len()),
            },
            started: now_ms(),
            since: Millis::MIN,
        }
    }

    /// A pass over what changed since `since`.
    pub(super) fn changes(since: Millis) -> Self {
        Self {
            step: Step::Changed(ChangedCursor::since(since)),
            started: now_ms(),
            since,
        }
    }

    /// Whether this is a full pass.
    pub(super) fn is_full(&self) -> bool {
        matches!(self.step, Step::Full { .. })
    }

    /// Where the next changes pass starts, once this one is done.
    pub(super) fn next_since(&self) -> Millis {
        self.started.saturating_sub(CHANGE_MARGIN_MS)
    }

    /// A service the bus announced during this pass: a full pass must not
    /// drop it for not having seen it (created after its page was read).
    pub(super) fn noticed(&mut self, id: ServiceId) {
        if let Step::Full { present, .. } = &mut self.step {
            present.insert(id);
        }
    }

    /// Reads one page and applies it; true when the pass is done. On an
    /// error the pages applied stay applied.
    pub(super) async fn step(
        &mut self,
        store: &Store,
        schedule: &mut Schedule,
    ) -> Result<bool, StoreError> {
        match &mut self.step {
            Step::Full { after, present } => {
                let page = store.services_after(*after, LOAD_PAGE).await?;
                schedule.reconcile(&page, now_ms(), present);
                match page.last() {
                    Some(last) if page.len() as i64 >= LOAD_PAGE => {
                        *after = last.id.get();
                        Ok(false)
                    }
                    _ => {
                        schedule.reconcile_end(present);
                        tracing::info!(services = schedule.len(), "schedule loaded");
                        Ok(true)
                    }
                }
            }
            Step::Changed(cursor) => {
                let page = store.services_changed_after(*cursor, LOAD_PAGE).await?;
                let now = now_ms();
                for svc in &page {
                    schedule.reconcile_one(svc, now);
                }
                match page.last() {
                    Some(last) if page.len() as i64 >= LOAD_PAGE => {
                        *cursor = ChangedCursor::after(last);
                    }
                    _ => {
                        if !page.is_empty() {
                            tracing::debug!(changed = page.len(), "reconciled changed services");
                        }
                        self.step = Step::Pinged(String::new());
                    }
                }
                Ok(false)
            }
            Step::Pinged(after) => {
                let page = store
                    .push_services_logged_since(self.since, after, LOAD_PAGE)
                    .await?;
                let now = now_ms();
                for (_, svc) in &page {
                    schedule.reconcile_one(svc, now);
                }
                match page.last() {
                    Some((hash, _)) if page.len() as i64 >= LOAD_PAGE => *after = hash.clone(),
                    _ => {
                        self.step = Step::Gone {
                            after: 0,
                            scheduled: schedule.ids(),
                            next: 0,
                        }
                    }
                }
                Ok(false)
            }
            Step::Gone {
                after,
                scheduled,
                next,
            } => {
                let ids = store.service_ids_after(*after, ID_PAGE).await?;
                let last_page = (ids.len() as i64) < ID_PAGE;
                // Every scheduled id up to the page's end (all that are
                // left after the last page) is in the store or gone.
                let end = if last_page {
                    i64::MAX
                } else {
                    ids.last().copied().unwrap_or(i64::MAX)
                };
                let mut gone = 0;
                while let Some(id) = scheduled.get(*next).copied() {
                    if id.get() > end {
                        break;
                    }
                    *next += 1;
                    if ids.binary_search(&id.get()).is_err() {
                        schedule.remove(id);
                        gone += 1;
                    }
                }
                if gone > 0 {
                    tracing::info!(gone, "dropped services deleted without notice");
                }
                if last_page {
                    return Ok(true);
                }
                *after = end;
                Ok(false)
            }
        }
    }
}
