//! Push monitors (`push://`, DESIGN.md "Check kinds"): the monitored job
//! pings `/push/{token}`; a service with no ping for `interval + grace` is
//! DOWN with reason `missed_ping`.
//!
//! Pure: the token's form, its stored hash, what a ping records and the
//! deadline arithmetic the scheduler runs. Drawing the random bits and
//! talking to the store and the bus is the HTTP layer's and the
//! scheduler's business.

use super::check::CheckResult;
use super::service::ServiceId;
use super::status::Status;
use super::time::{Millis, Seconds};

/// Random bytes in a token: 128 bits.
pub const TOKEN_BYTES: usize = 16;

/// Where pings go: `PUSH_PATH` + token.
pub const PUSH_PATH: &str = "/push/";

/// Most characters of a ping's `msg` kept in its log; the rest is cut.
pub const MAX_MESSAGE_CHARS: usize = 1_000;

/// The token for `bytes` (which must be random): 32 lowercase hex digits,
/// safe in a URL path as it is.
pub fn render_token(bytes: [u8; TOKEN_BYTES]) -> String {
    format!("{:032x}", u128::from_be_bytes(bytes))
}

/// Whether `text` has the form of a token [`render_token`] makes. Anything
/// else is unknown without asking the store.
pub fn is_token_form(text: &str) -> bool {
    text.len() == 2 * TOKEN_BYTES && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// What the store keeps of a token (`services.push_token_hash`): its hex
/// SHA-256, the same stored form as API keys'. A token has 128 random
/// bits, so a plain hash is enough: there is nothing to guess.
pub fn token_hash(token: &str) -> String {
    crate::auth::hash_token(token)
}

/// The path a job pings, as the create and rotate answers show it.
pub fn push_url(token: &str) -> String {
    format!("{PUSH_PATH}{token}")
}

/// What a ping reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// All is well (the default).
    Up,
    /// The job says it failed, with its message (cleaned, maybe empty).
    Down(String),
}

impl Report {
    /// Reads a ping's `status` (`up` or `down`, any case; absent: up) and
    /// `msg`. The message is kept only for a DOWN report: an UP log has no
    /// error to show it in. `Err` says what is wrong with `status`.
    pub fn parse(status: Option<&str>, msg: Option<&str>) -> Result<Self, String> {
        match status.map(str::to_ascii_lowercase).as_deref() {
            None | Some("up") => Ok(Report::Up),
            Some("down") => Ok(Report::Down(clean_message(msg.unwrap_or_default()))),
            Some(_) => Err("must be up or down".to_owned()),
        }
    }

    /// The health log a ping at `at` records for `service_id`.
    pub fn result(&self, service_id: ServiceId, at: Millis) -> CheckResult {
        let (status, error) = match self {
            Report::Up => (Status::Up, None),
            Report::Down(msg) if msg.is_empty() => {
                (Status::Down, Some(String::from(DOWN_REPORTED)))
            }
            Report::Down(msg) => (Status::Down, Some(format!("{DOWN_REPORTED}: {msg}"))),
        };
        CheckResult {
            service_id,
            scheduled_at: at,
            status,
            latency_ms: 0,
            status_code: None,
            error,
            checked_at: at,
            cert_expires_at: None,
            region: None,
        }
    }
}

/// The error of a DOWN ping: the `status` reason code (the job reported
/// its own status), then the job's message if it gave one.
pub const DOWN_REPORTED: &str = "status: reported down by the job";

/// A ping's message as a log keeps it: control characters (newlines, ANSI
/// escapes) dropped, surrounding space trimmed, at most
/// [`MAX_MESSAGE_CHARS`] characters.
pub fn clean_message(raw: &str) -> String {
    raw.chars()
        .filter(|c| !c.is_control())
        .take(MAX_MESSAGE_CHARS)
        .collect::<String>()
        .trim()
        .to_owned()
}

/// The deadline of a push service: `interval + grace` after its last ping,
/// but never sooner than one interval after the last missed deadline
/// already reported (`fired`), so a silent job is logged DOWN once per
/// interval, whatever the settings changed to meanwhile.
pub fn deadline(
    last_ping: Millis,
    interval: Seconds,
    grace: Seconds,
    fired: Option<Millis>,
) -> Millis {
    let from_ping = last_ping
        .saturating_add(interval.millis())
        .saturating_add(grace.millis().max(0));
    match fired {
        Some(f) => from_ping.max(f.saturating_add(interval.millis().max(1))),
        None => from_ping,
    }
}

/// The latest missed slot at `now`: slots are `due`, `due + interval`, ...;
/// returns it and how many earlier slots were passed over (a scheduler that
/// woke late reports one miss, not a burst). `None` before `due`.
pub fn latest_slot(due: Millis, interval: Seconds, now: Millis) -> Option<(Millis, u64)> {
    if now < due {
        return None;
    }
    let step = interval.millis().max(1);
    let passed = (now - due) / step;
    Some((due + passed * step, passed as u64))
}

/// The DOWN log of a missed deadline `at`, the last ping having been at
/// `last_ping` (or the service's registration).
pub fn missed(
    service_id: ServiceId,
    last_ping: Millis,
    at: Millis,
    interval: Seconds,
    grace: Seconds,
    now: Millis,
) -> CheckResult {
    let silent_s = (at - last_ping).max(0) / 1000;
    CheckResult {
        service_id,
        scheduled_at: at,
        status: Status::Down,
        latency_ms: 0,
        status_code: None,
        error: Some(format!(
            "missed_ping: no ping for {silent_s} s (interval {} s + grace {} s)",
            interval.get(),
            grace.get()
        )),
        checked_at: now.max(at),
        cert_expires_at: None,
        region: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_128_bits_of_lowercase_hex() {
        let token = render_token([0xab; TOKEN_BYTES]);
        assert_eq!(token, "ab".repeat(16));
        assert!(is_token_form(&token));
        assert_eq!(render_token([0; TOKEN_BYTES]), "0".repeat(32));
        assert!(!is_token_form(&token.to_ascii_uppercase()));
        assert!(!is_token_form(&token[1..]));
        assert!(!is_token_form(&format!("{token}0")));
        assert!(!is_token_form(&"g".repeat(32)));
        assert_eq!(push_url("abc"), "/push/abc");
    }

    #[test]
    fn the_stored_hash_is_sha256_hex_and_not_the_token() {
        let token = render_token([7; TOKEN_BYTES]);
        let hash = token_hash(&token);
        assert_eq!(hash.len(), 64);
        assert_ne!(hash, token);
        assert_eq!(hash, token_hash(&token));
        assert_ne!(hash, token_hash(&render_token([8; TOKEN_BYTES])));
    }

    #[test]
    fn a_ping_reports_up_by_default_and_down_with_its_message() {
        assert_eq!(Report::parse(None, Some("ignored")), Ok(Report::Up));
        assert_eq!(Report::parse(Some("UP"), None), Ok(Report::Up));
        assert!(Report::parse(Some("maybe"), None).is_err());
        let down = Report::parse(Some("down"), Some("disk full")).unwrap();
        let r = down.result(ServiceId(4), 1_234);
        assert_eq!(r.status, Status::Down);
        assert_eq!(
            r.error.as_deref(),
            Some("status: reported down by the job: disk full")
        );
        assert_eq!(
            (r.scheduled_at, r.checked_at, r.latency_ms),
            (1_234, 1_234, 0)
        );
        let bare = Report::parse(Some("down"), None).unwrap();
        assert_eq!(
            bare.result(ServiceId(4), 0).error.as_deref(),
            Some(DOWN_REPORTED)
        );
        let up = Report::Up.result(ServiceId(4), 5);
        assert_eq!((up.status, up.error), (Status::Up, None));
    }

    #[test]
    fn messages_lose_control_characters_and_are_bounded() {
        assert_eq!(clean_message(" disk\nfull\u{1b}[31m "), "diskfull[31m");
        assert_eq!(
            clean_message(&"é".repeat(5_000)).chars().count(),
            MAX_MESSAGE_CHARS
        );
    }

    #[test]
    fn the_deadline_is_interval_plus_grace_after_the_ping_then_each_interval() {
        let (i, g) = (Seconds(30), Seconds(60));
        assert_eq!(deadline(1_000, i, g, None), 91_000);
        // Once reported missed at 91 s, the next report is one interval on,
        // not interval + grace.
        assert_eq!(deadline(1_000, i, g, Some(91_000)), 121_000);
        // A ping after the report counts from the ping.
        assert_eq!(deadline(100_000, i, g, Some(91_000)), 190_000);
        assert_eq!(deadline(0, Seconds(10), Seconds(0), None), 10_000);
    }

    #[test]
    fn a_late_wake_up_reports_the_latest_slot_once() {
        assert_eq!(latest_slot(10_000, Seconds(5), 9_999), None);
        assert_eq!(latest_slot(10_000, Seconds(5), 10_000), Some((10_000, 0)));
        assert_eq!(latest_slot(10_000, Seconds(5), 27_000), Some((25_000, 3)));
    }

    #[test]
    fn a_missed_ping_says_how_long_and_why() {
        let r = missed(
            ServiceId(2),
            5_000,
            100_000,
            Seconds(30),
            Seconds(60),
            101_000,
        );
        assert_eq!(r.status, Status::Down);
        assert_eq!(
            r.error.as_deref(),
            Some("missed_ping: no ping for 95 s (interval 30 s + grace 60 s)")
        );
        assert_eq!(
            (r.scheduled_at, r.checked_at, r.latency_ms),
            (100_000, 101_000, 0)
        );
    }
}
