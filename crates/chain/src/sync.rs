//! What a syncing node asks its peers for: the locator that finds the fork point with a
//! peer, and which missing blocks to download from which peer.
//!
//! ```text
//!   peer tips (id, hash) ──▶ download_plan(window) ──▶ [(block, peers whose chain holds it)]
//!                             blocks_to_download: missing blocks on the way to the best
//!                             header, oldest first, within the window
//! ```
//!
//! The peer layer decides *when* to ask and keeps who was asked for what; the chain decides
//! *what* is missing and which peer's chain holds it, because that is a walk over the block
//! index. Every function here costs O(window + peers × log height), never O(height).

use std::collections::HashSet;
use std::hash::Hash;

use powchain_consensus::{BlockHash, BlockHeight, Header};

use crate::state::ChainState;
use crate::store::BlockStatus;

impl ChainState {
    /// Hashes from the tip back to genesis, dense for the last ten blocks and then doubling
    /// the step: a peer finds the fork point from it whatever branch it is on.
    pub fn block_locator(&self) -> Vec<BlockHash> {
        self.block_index().block_locator()
    }

    /// The height of the first locator hash on the main chain (genesis if none is).
    pub fn find_fork(&self, locator: &[BlockHash]) -> BlockHeight {
        self.block_index().find_fork(locator)
    }

    /// Main-chain headers after the fork with `locator`, at most `max`, stopping after `stop`.
    pub fn headers_after(
        &self,
        locator: &[BlockHash],
        stop: Option<BlockHash>,
        max: usize,
    ) -> Vec<Header> {
        self.block_index().headers_after(locator, stop, max)
    }

    /// Blocks to download next: those on the way to the best header whose data is
    /// missing, oldest first, among the `max` heights after the main chain's fork with it
    /// (the download window). The cost is O(max + log^2 height), whatever the distance to
    /// the best header.
    pub fn blocks_to_download(&self, max: usize) -> Vec<BlockHash> {
        let index = self.block_index();
        let best = index.best_header();
        let Some(best_height) = index.get(&best).map(|record| record.height.0) else {
            return Vec::new();
        };
        let Some(fork) = index.main_chain_fork_height(&best) else {
            return Vec::new();
        };
        let last = best_height.min(fork.saturating_add(max as u64));
        let Some(mut cursor) = index.ancestor(&best, BlockHeight(last)) else {
            return Vec::new();
        };
        let mut window = Vec::with_capacity((last - fork) as usize);
        for _ in fork..last {
            let Some(record) = index.get(&cursor) else {
                break;
            };
            window.push((cursor, record.status));
            cursor = record.header.prev_hash;
        }
        window.reverse();
        window
            .into_iter()
            .filter(|(hash, status)| *status == BlockStatus::HeaderValid && !self.is_orphan(hash))
            .map(|(hash, _)| hash)
            .take(max)
            .collect()
    }

    /// The locator a `get_headers` request carries: the best header first (so the peer
    /// learns how far we know), then the main chain's locator.
    pub fn header_locator(&self) -> Vec<BlockHash> {
        let (best, _) = self.best_header();
        let mut locator = vec![best];
        locator.extend(self.block_locator());
        locator
    }

    /// The blocks to download next (at most `window` heights past the main chain's fork with
    /// the best header, oldest first), each with the peers whose tip descends from it.
    ///
    /// `peer_tips` are the best blocks each peer is known to have (by any key the caller
    /// uses for peers). Each peer's chain is read only inside the window: from its ancestor
    /// at the window's top (skip pointers) down to its bottom, so a peer far ahead costs no
    /// more than one at the window's edge.
    pub fn download_plan<P: Copy + Eq + Hash>(
        &self,
        peer_tips: &[(P, BlockHash)],
        window: usize,
    ) -> Vec<(BlockHash, Vec<P>)> {
        if peer_tips.is_empty() {
            return Vec::new();
        }
        let wanted = self.blocks_to_download(window);
        let height_of = |hash: Option<&BlockHash>| {
            hash.and_then(|hash| self.record(hash))
                .map(|record| record.height)
        };
        let (Some(lowest), Some(highest)) = (height_of(wanted.first()), height_of(wanted.last()))
        else {
            return Vec::new();
        };
        let chains: Vec<(P, HashSet<BlockHash>)> = peer_tips
            .iter()
            .map(|(peer, tip)| {
                let mut members = HashSet::new();
                let mut cursor = self.ancestor(tip, highest).unwrap_or(*tip);
                while let Some(record) = self.record(&cursor) {
                    if record.height < lowest {
                        break;
                    }
                    members.insert(cursor);
                    cursor = record.header.prev_hash;
                }
                (*peer, members)
            })
            .collect();
        wanted
            .into_iter()
            .map(|hash| {
                let holders = chains
                    .iter()
                    .filter(|(_, members)| members.contains(&hash))
                    .map(|(peer, _)| *peer)
                    .collect();
                (hash, holders)
            })
            .collect()
    }
}
