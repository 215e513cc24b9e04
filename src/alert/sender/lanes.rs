//! Lanes and per-channel bookkeeping: what is under way, per channel and
//! per (channel, service) lane, and what a pass may start.

use super::super::deliver::Outcome;
use crate::store::OutboxRow;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// What is under way, per channel.
#[derive(Default)]
pub(super) struct Lanes {
    /// Lanes with a delivery under way: (channel, service), a test alert's
    /// lane being minus its id, and a storm holding its whole channel
    /// ([`STORM_LANE`]). A pass leaves busy lanes alone, so alerts of one
    /// service to one channel stay in order.
    pub(super) busy: HashSet<(i64, i64)>,
    /// Deliveries in flight per channel.
    pub(super) in_flight: HashMap<i64, usize>,
    /// Channels whose last attempt timed out or could not connect: one
    /// delivery at a time until one gets an answer.
    pub(super) struggling: HashSet<i64>,
}

/// The lane a storm holds: its whole channel.
pub(super) const STORM_LANE: i64 = i64::MIN;

/// The lane of an alert within its channel.
pub(super) fn lane(row: &OutboxRow) -> i64 {
    row.service_id.unwrap_or(-row.id)
}

/// Whether an attempt's failure says the receiver is not answering at all
/// (as opposed to answering with an error).
pub(super) fn unreachable(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Retry { error, .. }
        if error.starts_with("timeout:") || error.starts_with("connect:"))
}

/// A lane held busy while its job runs (or until the job is dropped,
/// aborted at shutdown included).
pub(super) struct Held {
    pub(super) lanes: Arc<Mutex<Lanes>>,
    pub(super) key: (i64, i64),
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Ok(mut lanes) = self.lanes.lock() {
            lanes.busy.remove(&self.key);
            if let Some(n) = lanes.in_flight.get_mut(&self.key.0) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    lanes.in_flight.remove(&self.key.0);
                }
            }
        }
    }
}

/// A channel's lanes as a pass sees them.
pub(super) struct ChannelState {
    /// A storm message is under way: nothing else of the channel's changes
    /// may start.
    pub(super) storm_busy: bool,
    /// Services with a delivery under way.
    pub(super) busy_services: Vec<i64>,
    /// Test alerts under way.
    pub(super) busy_ids: Vec<i64>,
    /// How many more deliveries may start on it.
    pub(super) free: usize,
}
