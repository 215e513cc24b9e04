//! Time as the pipeline carries it: milliseconds since the Unix epoch.
//!
//! Integers compare, hash and store the same way on every backend and in every
//! message, so only the edges (JSON, logs) turn them into RFC 3339 text.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

/// A span of whole seconds, as users give intervals and timeouts. A type of
/// its own so seconds cannot be mixed with the milliseconds the pipeline
/// carries: [`Seconds::millis`] is the one conversion. On the wire and in
/// the store it is the plain integer.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct Seconds(pub i64);

impl Seconds {
    /// The number of seconds.
    pub const fn get(self) -> i64 {
        self.0
    }

    /// The same span in milliseconds.
    pub const fn millis(self) -> Millis {
        self.0.saturating_mul(1000)
    }
}

impl std::fmt::Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} s", self.0)
    }
}

/// One hour in milliseconds: hourly rollups bucket
/// `checked_at - checked_at % HOUR_MS`.
pub const HOUR_MS: Millis = 3_600_000;

/// The current time in epoch milliseconds.
pub fn now_ms() -> Millis {
    Utc::now().timestamp_millis()
}

/// Formats epoch milliseconds as RFC 3339 UTC with millisecond precision.
pub fn to_rfc3339(ms: Millis) -> String {
    match Utc.timestamp_millis_opt(ms).single() {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => String::from("1970-01-01T00:00:00.000Z"),
    }
}

/// Parses RFC 3339 text into epoch milliseconds.
pub fn parse_rfc3339(s: &str) -> Option<Millis> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc).timestamp_millis())
}

/// Serde helpers that write epoch milliseconds as RFC 3339 strings.
pub mod serde_rfc3339 {
    use super::{Millis, to_rfc3339};
    use serde::Serializer;

    /// Serializes a required timestamp.
    pub fn serialize<S: Serializer>(ms: &Millis, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&to_rfc3339(*ms))
    }

    /// Serializes an optional timestamp (`null` when absent).
    pub mod option {
        use super::{Millis, to_rfc3339};
        use serde::Serializer;

        /// Serializes `None` as `null`, `Some` as RFC 3339 text.
        pub fn serialize<S: Serializer>(ms: &Option<Millis>, s: S) -> Result<S::Ok, S::Error> {
            match ms {
                Some(ms) => s.serialize_str(&to_rfc3339(*ms)),
                None => s.serialize_none(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_milliseconds() {
        let ms = 1_764_000_000_123;
        let text = to_rfc3339(ms);
        assert!(text.ends_with('Z'), "{text}");
        assert_eq!(parse_rfc3339(&text), Some(ms));
    }

    #[test]
    fn rfc3339_accepts_offsets() {
        assert_eq!(
            parse_rfc3339("1970-01-01T01:00:00+01:00"),
            Some(0),
            "an offset is converted to UTC"
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
