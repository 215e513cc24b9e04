//! A budget for log lines that clients can cause: failed requests and
//! WebSocket clients that break the protocol. A client sending thousands of
//! bad requests a second must not be able to fill the disk or bury the
//! lines that matter; past the budget lines are counted, not written, and
//! the next line written says how many were left out.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most `per_second` lines a second; the rest are counted.
pub struct LogBudget {
    per_second: u32,
    state: Mutex<State>,
}

struct State {
    window_start: Option<Instant>,
    used: u32,
    suppressed: u64,
}

impl LogBudget {
    /// A budget of `per_second` lines a second.
    pub const fn new(per_second: u32) -> Self {
        LogBudget {
            per_second,
            state: Mutex::new(State {
                window_start: None,
                used: 0,
                suppressed: 0,
            }),
        }
    }

    /// `Some(n)` when a line may be written now, `n` being how many were
    /// left out since the last one written; `None` when over budget (the
    /// line is counted).
    pub fn take(&self) -> Option<u64> {
        self.take_at(Instant::now())
    }

    fn take_at(&self, now: Instant) -> Option<u64> {
        let Ok(mut s) = self.state.lock() else {
            // A panic elsewhere poisoned it: log rather than go silent.
            return Some(0);
        };
        let fresh = s
            .window_start
            .is_none_or(|start| now.duration_since(start) >= Duration::from_secs(1));
        if fresh {
            s.window_start = Some(now);
            s.used = 0;
        }
        if s.used >= self.per_second {
            s.suppressed += 1;
            return None;
        }
        s.used += 1;
        Some(std::mem::take(&mut s.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_past_the_budget_are_counted_and_reported_with_the_next_one() {
        let budget = LogBudget::new(3);
        let t0 = Instant::now();
        assert_eq!(budget.take_at(t0), Some(0));
        assert_eq!(budget.take_at(t0), Some(0));
        assert_eq!(budget.take_at(t0), Some(0));
        for _ in 0..1000 {
            assert_eq!(budget.take_at(t0 + Duration::from_millis(500)), None);
        }
        let next = t0 + Duration::from_secs(1);
        assert_eq!(budget.take_at(next), Some(1000));
        assert_eq!(budget.take_at(next), Some(0));
    }
}
