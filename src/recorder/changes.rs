//! Status changes in the log: one INFO line per change, at most
//! [`PER_SECOND`] a second.
//!
//! A change is what a person watching the log wants to see ("api went DOWN:
//! connect: connection refused"), but a network blip can flip thousands of
//! services at once, and thousands of lines would bury everything else
//! exactly when the log matters. So the first [`PER_SECOND`] changes of a
//! second are logged one by one and the rest are counted, then summed up in
//! one line when that second is over ("and 9,950 more status changes"), as
//! [`crate::drops`] does for dropped checks.

use crate::domain::Status;
use crate::domain::event::Event;
use std::time::Duration;
use tokio::time::Instant;

/// Most status-change lines a second.
pub const PER_SECOND: u32 = 50;

/// The length of a counting window.
const WINDOW: Duration = Duration::from_secs(1);

/// Changes not logged one by one in a window, by the status they went to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unlogged {
    /// To DOWN.
    pub down: u64,
    /// To UP.
    pub up: u64,
    /// To DEGRADED.
    pub degraded: u64,
    /// To anything else (PENDING is never entered by a check; kept so the
    /// total is right whatever the plan does).
    pub other: u64,
}

impl Unlogged {
    /// All of them.
    pub fn total(&self) -> u64 {
        self.down + self.up + self.degraded + self.other
    }

    fn add(&mut self, to: Status) {
        match to {
            Status::Down => self.down += 1,
            Status::Up => self.up += 1,
            Status::Degraded => self.degraded += 1,
            Status::Pending => self.other += 1,
        }
    }
}

/// The per-second cap. Pure (the caller passes the time), so it can be
/// tested without waiting.
#[derive(Debug)]
pub struct Limiter {
    cap: u32,
    /// When the current window began; `None` after a quiet spell.
    window_start: Option<Instant>,
    logged: u32,
    unlogged: Unlogged,
}

impl Limiter {
    /// A limiter letting `cap` lines through a second.
    pub fn new(cap: u32) -> Self {
        Self {
            cap,
            window_start: None,
            logged: 0,
            unlogged: Unlogged::default(),
        }
    }

    /// Whether a change to `to` at `now` gets its own line. The second
    /// value is the summary of an earlier window that ended with changes
    /// left unlogged, to be written first.
    pub fn admit(&mut self, now: Instant, to: Status) -> (bool, Option<Unlogged>) {
        let summary = self.end_window_if_over(now);
        if self.window_start.is_none() {
            self.window_start = Some(now);
        }
        if self.logged < self.cap {
            self.logged += 1;
            (true, summary)
        } else {
            self.unlogged.add(to);
            (false, summary)
        }
    }

    /// When a summary is due: the end of a window with changes unlogged.
    pub fn due(&self) -> Option<Instant> {
        match self.window_start {
            Some(start) if self.unlogged.total() > 0 => Some(start + WINDOW),
            _ => None,
        }
    }

    /// The summary of the window if it is over at `now` (and starts a quiet
    /// spell).
    pub fn end_window_if_over(&mut self, now: Instant) -> Option<Unlogged> {
        match self.window_start {
            Some(start) if now >= start + WINDOW => self.take(),
            _ => None,
        }
    }

    /// Ends the window at once (at shutdown), with its summary if any.
    pub fn take(&mut self) -> Option<Unlogged> {
        self.window_start = None;
        self.logged = 0;
        let unlogged = std::mem::take(&mut self.unlogged);
        (unlogged.total() > 0).then_some(unlogged)
    }
}

/// Logs a batch's status changes through a [`Limiter`].
#[derive(Debug)]
pub struct ChangeLog {
    limiter: Limiter,
}

impl Default for ChangeLog {
    fn default() -> Self {
        Self {
            limiter: Limiter::new(PER_SECOND),
        }
    }
}

impl ChangeLog {
    /// Logs the `status_change` events among a committed batch's events,
    /// each with the error of the check that caused it: the plan emits a
    /// change right after that check's `check` event.
    pub fn log(&mut self, events: &[Event]) {
        let now = Instant::now();
        let mut previous: Option<&Event> = None;
        for event in events {
            if let Event::StatusChange {
                service_id,
                name,
                old_status,
                new_status,
                changed_at,
                ..
            } = event
            {
                let (own_line, summary) = self.limiter.admit(now, *new_status);
                if let Some(summary) = summary {
                    log_summary(summary);
                }
                if own_line {
                    let reason = match previous {
                        Some(Event::Check {
                            service_id: checked,
                            checked_at,
                            error,
                            ..
                        }) if checked == service_id && checked_at == changed_at => error.as_deref(),
                        _ => None,
                    };
                    tracing::info!(
                        service_id = service_id.get(),
                        name = name.as_str(),
                        old = %old_status,
                        new = %new_status,
                        reason,
                        "service status changed"
                    );
                }
            }
            previous = Some(event);
        }
    }

    /// When [`ChangeLog::flush_due`] has a summary to write.
    pub fn due(&self) -> Option<Instant> {
        self.limiter.due()
    }

    /// Writes the summary of a window that is over.
    pub fn flush_due(&mut self) {
        if let Some(summary) = self.limiter.end_window_if_over(Instant::now()) {
            log_summary(summary);
        }
    }

    /// Writes what is still unlogged (at shutdown).
    pub fn flush(&mut self) {
        if let Some(summary) = self.limiter.take() {
            log_summary(summary);
        }
    }
}

fn log_summary(u: Unlogged) {
    tracing::info!(
        more = u.total(),
        down = u.down,
        up = u.up,
        degraded = u.degraded,
        "and {} more status changes (over {PER_SECOND} a second are counted, not logged one by one)",
        thousands(u.total())
    );
}

/// `9950` as `9,950`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storm_gets_the_cap_in_lines_and_one_summary_of_the_rest() {
        let mut l = Limiter::new(50);
        let t0 = Instant::now();
        let mut lines = 0;
        for i in 0..10_000u32 {
            let to = if i % 10 == 0 {
                Status::Up
            } else {
                Status::Down
            };
            let (own, summary) = l.admit(t0 + Duration::from_micros(u64::from(i) * 90), to);
            assert!(summary.is_none(), "the window is still open at {i}");
            lines += u32::from(own);
        }
        assert_eq!(lines, 50);
        assert_eq!(l.due(), Some(t0 + WINDOW));
        assert_eq!(l.end_window_if_over(t0 + Duration::from_millis(999)), None);
        let summary = l.end_window_if_over(t0 + WINDOW).expect("a summary");
        assert_eq!(summary.total(), 9_950);
        // Changes 0..50 were logged (5 of them to UP); of the rest, every
        // tenth went UP.
        assert_eq!(summary.up, 995);
        assert_eq!(summary.down, 8_955);
        assert_eq!(l.due(), None, "summed up once");
        assert_eq!(l.take(), None);
    }

    #[test]
    fn the_next_window_logs_again_and_carries_the_last_summary() {
        let mut l = Limiter::new(2);
        let t0 = Instant::now();
        assert_eq!(l.admit(t0, Status::Down), (true, None));
        assert_eq!(l.admit(t0, Status::Down), (true, None));
        assert_eq!(l.admit(t0, Status::Degraded), (false, None));
        let later = t0 + Duration::from_millis(1500);
        let (own, summary) = l.admit(later, Status::Up);
        assert!(own, "a new window");
        assert_eq!(
            summary,
            Some(Unlogged {
                degraded: 1,
                ..Unlogged::default()
            })
        );
        assert_eq!(l.due(), None, "nothing unlogged in the new window");
    }

    #[test]
    fn quiet_changes_are_all_logged() {
        let mut l = Limiter::new(50);
        let t0 = Instant::now();
        for s in 0..200u64 {
            let (own, summary) = l.admit(t0 + Duration::from_secs(s), Status::Down);
            assert!(own && summary.is_none());
        }
    }

    #[test]
    fn counts_read_with_thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(950), "950");
        assert_eq!(thousands(9_950), "9,950");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
