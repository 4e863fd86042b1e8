//! `LogBudget`: at most so many log lines of one kind, so that nothing a peer can do at
//! will (connect and leave, send a stranger's first frame, win a cheap reorganisation on
//! regtest) floods the console.
//!
//! ```text
//!   admit(now_ms) ──token left?──▶ Some(lines held back since the last one) ──▶ log it
//!                 └─ none ──▶ None (counted, reported with the next line let through)
//! ```
//!
//! A token bucket over the caller's clock (milliseconds), so it is tested without waiting.

use std::fmt;
use std::sync::Mutex;

use crate::node::lock;

/// A token bucket of log lines: `burst` lines at once, then one per `interval_ms`.
#[derive(Debug)]
pub struct LogBudget {
    burst: u32,
    interval_ms: u64,
    state: Mutex<BudgetState>,
}

#[derive(Debug)]
struct BudgetState {
    tokens: u32,
    /// When the last token was added; `None` until the first line.
    refilled_ms: Option<u64>,
    /// Lines held back since the last line let through.
    held_back: u64,
}

/// Says how many lines were held back before the one being logged: nothing when none
/// were, otherwise ` (N similar lines before this one not logged)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldBack(pub u64);

impl fmt::Display for HeldBack {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => Ok(()),
            1 => formatter.write_str(" (1 similar line before this one not logged)"),
            lines => write!(
                formatter,
                " ({lines} similar lines before this one not logged)"
            ),
        }
    }
}

impl LogBudget {
    /// `burst` lines at once, then one every `interval_ms` (at least 1 ms).
    pub const fn new(burst: u32, interval_ms: u64) -> LogBudget {
        LogBudget {
            burst,
            interval_ms: if interval_ms == 0 { 1 } else { interval_ms },
            state: Mutex::new(BudgetState {
                tokens: burst,
                refilled_ms: None,
                held_back: 0,
            }),
        }
    }

    /// May a line be logged at `now_ms`? `Some` with the lines held back before it (log
    /// them as [`HeldBack`]), or `None`: stay quiet (the line is counted).
    pub fn admit(&self, now_ms: u64) -> Option<HeldBack> {
        let mut state = lock(&self.state);
        let refilled = *state.refilled_ms.get_or_insert(now_ms);
        if now_ms < refilled {
            // The clock went back: start counting again from now.
            state.refilled_ms = Some(now_ms);
        } else {
            let earned = (now_ms - refilled) / self.interval_ms;
            if earned > 0 {
                let earned_tokens = u32::try_from(earned).unwrap_or(u32::MAX);
                state.tokens = state.tokens.saturating_add(earned_tokens).min(self.burst);
                state.refilled_ms = Some(refilled + earned * self.interval_ms);
            }
        }
        if state.tokens == 0 {
            state.held_back = state.held_back.saturating_add(1);
            return None;
        }
        state.tokens -= 1;
        Some(HeldBack(std::mem::take(&mut state.held_back)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_line_per_interval_and_the_held_back_lines_are_counted() {
        let budget = LogBudget::new(3, 1_000);
        for _ in 0..3 {
            assert_eq!(budget.admit(10_000), Some(HeldBack(0)));
        }
        assert_eq!(budget.admit(10_500), None);
        assert_eq!(budget.admit(10_900), None);
        assert_eq!(
            budget.admit(11_000),
            Some(HeldBack(2)),
            "a token a second; the two held back are reported"
        );
        assert_eq!(budget.admit(11_001), None);
        assert_eq!(budget.admit(60_000), Some(HeldBack(1)));
        assert_eq!(
            budget.admit(60_000),
            Some(HeldBack(0)),
            "refilled to the burst"
        );
        assert_eq!(budget.admit(60_000), Some(HeldBack(0)));
        assert_eq!(budget.admit(60_000), None, "never more than the burst");
    }

    #[test]
    fn a_clock_that_goes_back_neither_panics_nor_refills() {
        let budget = LogBudget::new(1, 1_000);
        assert!(budget.admit(5_000).is_some());
        assert!(budget.admit(1_000).is_none());
        assert!(budget.admit(1_999).is_none());
        assert!(
            budget.admit(2_000).is_some(),
            "counted from the earlier time"
        );
    }

    #[test]
    fn held_back_lines_read_as_a_sentence() {
        assert_eq!(HeldBack(0).to_string(), "");
        assert_eq!(
            HeldBack(1).to_string(),
            " (1 similar line before this one not logged)"
        );
        assert_eq!(
            HeldBack(7).to_string(),
            " (7 similar lines before this one not logged)"
        );
    }
}
