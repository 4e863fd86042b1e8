//! The rate limit on a peer's messages: a token bucket. A peer over its rate is flooding
//! and is banned; answers to our own requests give their token back, so a fast sync
//! never looks like a flood.

use std::time::Instant;

/// Messages a peer may send in a burst; refilled at [`MESSAGES_PER_SECOND`].
const MESSAGE_BURST: f64 = 2_000.0;
/// Sustained messages per second a peer may send before it counts as flooding.
pub(crate) const MESSAGES_PER_SECOND: f64 = 500.0;

/// A token bucket counting a peer's messages.
pub(crate) struct RateLimit {
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    pub(crate) fn new() -> RateLimit {
        RateLimit {
            tokens: MESSAGE_BURST,
            last: Instant::now(),
        }
    }

    /// Takes one token; false when the peer is over its rate.
    pub(crate) fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * MESSAGES_PER_SECOND;
        self.tokens = (self.tokens + refill).min(MESSAGE_BURST);
        self.last = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }

    /// Gives back the token of a message that answered our own request (a block we asked
    /// this peer for): a fast sync must not look like a flood.
    pub(crate) fn refund(&mut self) {
        self.tokens = (self.tokens + 1.0).min(MESSAGE_BURST);
    }
}
