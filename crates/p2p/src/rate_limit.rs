//! Token buckets on what a peer sends. Messages: a peer over its rate is flooding and is
//! banned; answers to our own requests give their token back, so a fast sync never looks
//! like a flood. Addresses (`addr`): as Bitcoin Core, 0.1 a second with a burst of 1,000;
//! addresses beyond the budget are ignored, not punished (an honest peer may relay a burst).

use tokio::time::Instant;

/// Messages a peer may send in a burst; refilled at [`MESSAGES_PER_SECOND`].
const MESSAGE_BURST: f64 = 2_000.0;
/// Sustained messages per second a peer may send before it counts as flooding.
pub(crate) const MESSAGES_PER_SECOND: f64 = 500.0;
/// Addresses a peer may share in a burst; refilled at [`ADDRESSES_PER_SECOND`].
const ADDRESS_BURST: f64 = 1_000.0;
/// Sustained addresses per second taken from one peer.
const ADDRESSES_PER_SECOND: f64 = 0.1;

/// A token bucket.
pub(crate) struct RateLimit {
    tokens: f64,
    burst: f64,
    per_second: f64,
    last: Instant,
}

impl RateLimit {
    /// The budget of a peer's messages.
    pub(crate) fn messages() -> RateLimit {
        RateLimit::new(MESSAGE_BURST, MESSAGES_PER_SECOND)
    }

    /// The budget of the addresses a peer shares.
    pub(crate) fn addresses() -> RateLimit {
        RateLimit::new(ADDRESS_BURST, ADDRESSES_PER_SECOND)
    }

    fn new(burst: f64, per_second: f64) -> RateLimit {
        RateLimit {
            tokens: burst,
            burst,
            per_second,
            last: Instant::now(),
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
    }

    /// Takes one token; false when the peer is over its rate.
    pub(crate) fn take(&mut self) -> bool {
        self.take_up_to(1) == 1
    }

    /// Takes up to `wanted` tokens; returns how many it got.
    pub(crate) fn take_up_to(&mut self, wanted: usize) -> usize {
        self.refill();
        let granted = (self.tokens.floor() as usize).min(wanted);
        self.tokens -= granted as f64;
        granted
    }

    /// Gives back the token of a message that answered our own request (a block we asked
    /// this peer for): a fast sync must not look like a flood.
    pub(crate) fn refund(&mut self) {
        self.tokens = (self.tokens + 1.0).min(self.burst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_addresses_is_taken_and_the_rest_ignored() {
        let mut addresses = RateLimit::addresses();
        assert_eq!(addresses.take_up_to(600), 600);
        assert_eq!(addresses.take_up_to(600), 400, "the burst is 1,000");
        assert_eq!(addresses.take_up_to(100), 0, "refilled at 0.1 a second");
        let mut messages = RateLimit::messages();
        assert_eq!(messages.take_up_to(5_000), 2_000);
        assert!(!messages.take());
        messages.refund();
        assert!(messages.take());
    }
}
