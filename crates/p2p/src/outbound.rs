//! Outbound slots filled from the address book: while fewer than `max_outbound` learned
//! addresses are being dialled (connecting or connected), learned addresses are dialled,
//! one dial each, at most [`MAX_LEARNED_DIALS`] connecting at once. Configured peers
//! (`PEERS`, `POST /peers`) are dialled apart and always, as Bitcoin Core dials its
//! `-addnode` peers beside its automatic outbound slots: they take no learned slot, so a
//! list of configured peers that are down cannot keep the node from the peers it learns.
//!
//! ```text
//!   every FILL_INTERVAL, when addresses are learned, when a learned peer leaves 10 s or
//!   more after it was dialled
//!        ──free outbound slot? (learned dials, connected or not, < max_outbound)
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
            // Configured peers are dialled apart, whatever the count, as Bitcoin Core's
            // `-addnode` peers are: they neither take a learned slot nor keep one while
            // they are down.
            let learned = self.addresses().learned_dials().len();
            if learned >= self.config.max_outbound || self.learned_dials() >= MAX_LEARNED_DIALS {
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
