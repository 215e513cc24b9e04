//! Alert channels' identity. What a channel is (its kind and settings) lives
//! in [`crate::alert::channel`]; here only what other domain types name.

use serde::{Deserialize, Serialize};

/// A channel's id: stable, never reused, positive; on the wire and in the
/// store the plain integer.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct ChannelId(pub i64);

impl ChannelId {
    /// The integer, for the store and for URLs.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl std::fmt::Display for ChannelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
