//! Outbound slots filled from the address book: while the peers connected outbound, the
//! learned dials still connecting and the configured peers not connected outbound (each
//! keeps its slot while it is down) are fewer than `max_outbound`, learned addresses are
//! dialled, one dial each, at most [`MAX_LEARNED_DIALS`] connecting at once.
//!
//! ```text
//!   every FILL_INTERVAL, when addresses are learned, when a learned peer leaves 10 s or
//!   more after it was dialled
//!        ──free outbound slot? (connected outbound + learned dials connecting + configured
//!          peers not connected < max_outbound)
//!        ──the book's candidate: a learned address not dialled, connected or waiting after
//!          a failure, of an address group no dial is in if it can be, drawn at random
//!        ──▶ dial once (connection.rs) ──▶ its end tells the book when to try it again
//! ```
//!
//! Before, learned addresses were dialled only when first heard of, and a dialler then
//! held its address for good: once four learned peers were connected, or the first ones
//! had failed, nothing else in the book was ever dialled, so a node whose first peers
//! left kept fewer and fewer, and whoever gossiped first chose them all. Bitcoin Core's
//! `ThreadOpenConnections` does the same loop (every 500 ms, one outbound peer per
//! network group).

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::address_book::MAX_LEARNED_DIALS;
use crate::service::P2p;

/// How often free outbound slots are looked at, besides when addresses are learned and
/// when a learned dial ends.
const FILL_INTERVAL: Duration = Duration::from_secs(1);

impl P2p {
    /// Fills free outbound slots now and every [`FILL_INTERVAL`], until the layer stops.
    pub(crate) async fn outbound_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(FILL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = self.token.cancelled() => return,
                _ = tick.tick() => self.fill_outbound(),
            }
        }
    }

    /// Dials learned addresses while an outbound slot is free and learned dials connecting
    /// have room, or until the book has no candidate.
    pub(crate) fn fill_outbound(self: &Arc<Self>) {
        let _filling = self.filling.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if self.token.is_cancelled() {
                return;
            }
            // A configured peer keeps its slot while it is down: when it comes back it is
            // dialled whatever the count, and learned peers must not have taken its place.
            let (connecting, configured_down) = self.unconnected_dials();
            if self.registry.outbound_count() + connecting + configured_down
                >= self.config.max_outbound
                || connecting >= MAX_LEARNED_DIALS
            {
                return;
            }
            let connected = self.registry.listen_urls(false);
            let seed = self.random();
            let Some(url) = self.addresses().candidate(Instant::now(), seed, &connected) else {
                return;
            };
            if !self.dial(url, false) {
                return;
            }
        }
    }
}
