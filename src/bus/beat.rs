//! Heartbeats: the small messages by which processes tell the fleet they
//! are alive and what they know about regions (DESIGN.md "Regions and
//! quorum").
//!
//! Workers have no database connection (they never touch the store), so
//! the bus is the only way they can say they are alive. A beat goes out
//! every [`BEAT_EVERY`] on a fanout (`P.heartbeats` with RabbitMQ, a
//! broadcast ring in-process) without a confirm, like an event: a lost
//! beat is made good by the next one, and a process that stops beating is
//! judged gone after [`LIVE_FOR`]. Every reader (the API for `GET
//! /regions` and `/readyz`, the recorder for which regions a round waits
//! for) keeps its own view from the beats it receives, so nothing has to
//! be cleaned up when a worker dies: its beats simply stop.

use crate::domain::time::Millis;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How often a process beats.
pub const BEAT_EVERY: Duration = Duration::from_secs(2);

/// How long after its last beat a process still counts as live: a few
/// beats, so one lost beat (or a busy second) does not mark a region
/// missing.
pub const LIVE_FOR: Duration = Duration::from_secs(7);

/// One heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Beat {
    /// A worker process is alive.
    Worker {
        /// Which process (host, pid and a random part: unique per start).
        id: String,
        /// Its region (`worker.region`).
        region: String,
        /// Checks it finished since it started (a rate comes from two beats).
        checks: u64,
        /// When the beat was sent (epoch ms, the sender's clock).
        at: Millis,
    },
    /// A recorder's view of the regions: which it judges impaired.
    Recorder {
        /// Which process.
        id: String,
        /// The regions it judges impaired, with since when.
        impaired: Vec<(String, Millis)>,
        /// When the beat was sent.
        at: Millis,
    },
    /// The active scheduler's list of the regions services name.
    Scheduler {
        /// Every region some scheduled service lists, sorted.
        regions: Vec<String>,
        /// When the beat was sent.
        at: Millis,
    },
}

/// A name for this process in beats: host, pid and a random part, so two
/// starts of the same process are never taken for one.
pub fn process_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}:{}:{:04x}", std::process::id(), fastrand::u16(..))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_beat_reads_back_as_it_was_sent() {
        let beats = [
            Beat::Worker {
                id: "h:1:ab".into(),
                region: "eu".into(),
                checks: 7,
                at: 5,
            },
            Beat::Recorder {
                id: "h:2:cd".into(),
                impaired: vec![("us".into(), 3)],
                at: 6,
            },
            Beat::Scheduler {
                regions: vec!["eu".into(), "us".into()],
                at: 7,
            },
        ];
        for beat in beats {
            let text = serde_json::to_string(&beat).unwrap();
            assert_eq!(serde_json::from_str::<Beat>(&text).unwrap(), beat);
        }
    }

    #[test]
    fn process_ids_differ_between_starts() {
        let ids: std::collections::HashSet<String> = (0..20).map(|_| process_id()).collect();
        assert!(ids.len() > 1);
    }
}
