//! The chain as the peer layer and the API ask about it: where it stands, what a peer's
//! headers and blocks change, the locator and headers a sync exchanges, and which blocks
//! to download from whom. Each question is one method and one short lock.
//!
//! ```text
//!   peer session ──▶ accept_peer_headers / submit_peer_block ──▶ ChainState (+ pool, events)
//!                ──▶ header_locator / headers_for_peer ─────────▶ block index (memory)
//!   download pump ─▶ download_plan(peer tips, window) ──────────▶ powchain-chain sync.rs
//! ```

use std::hash::Hash;

use powchain_chain::{BlockOutcome, ChainTip, IndexRecord};
use powchain_consensus::{Block, BlockHash, BlockHeight, Header, Work};

use crate::error::NodeError;
use crate::node::{Node, lock};

/// What became of a peer's headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerHeaders {
    /// Stored, or already known.
    Stored {
        /// The last header's height.
        height: Option<BlockHeight>,
        /// How many of them were new to the node (0: the batch told it nothing).
        added: usize,
    },
    /// Not stored: the chain they end in has less work than the anti-DoS threshold.
    LowWork {
        /// The work of the chain at the last header.
        end_work: Work,
        /// The work it needed.
        threshold: Work,
        /// The first header the node did not have: where the branch leaves what the node
        /// knows (a batch may start with headers of its main chain).
        first_new: BlockHash,
    },
}

/// What a header relayed ahead of its block (a compact block's) is to the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayedHeader {
    /// Not stored: its chain has less work than the anti-DoS threshold.
    LowWork,
    /// Valid and in the block index.
    Known {
        /// Its height.
        height: BlockHeight,
        /// True if the block's data is here already.
        have_block: bool,
        /// True if its chain has more work than the main chain: its block would become
        /// the tip.
        extends_best: bool,
        /// True if it builds on the tip.
        extends_tip: bool,
    },
}

/// Where the chain stands: its tip, the best header known, and blocks waiting for a parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainSummary {
    /// The main chain's tip.
    pub tip: ChainTip,
    /// The most-work header known (at or ahead of the tip while blocks are missing).
    pub best_header: BlockHash,
    /// Its height.
    pub best_header_height: BlockHeight,
    /// The chain work up to it.
    pub best_header_work: Work,
    /// Blocks whose parent is unknown, waiting in the orphan pool.
    pub orphans: usize,
}

/// What happened to a block a peer sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerBlock {
    /// Where the chain put it.
    pub outcome: BlockOutcome,
    /// Its height, if its header is now in the block index (not for an orphan).
    pub height: Option<BlockHeight>,
    /// Blocks that joined the main chain because of it: itself, orphans that were waiting
    /// for it, or a reorganisation's whole new branch (0 if the tip did not move).
    pub connected: u64,
    /// The main chain's height after it.
    pub tip_height: BlockHeight,
    /// The best header's height after it: above `tip_height` while a sync still has
    /// blocks to fetch.
    pub best_header_height: BlockHeight,
}

impl Node {
    /// The main chain's tip.
    pub fn tip(&self) -> ChainTip {
        lock(&self.core).chain.tip()
    }

    /// The tip, the best header and the orphan count, read together.
    pub fn chain_summary(&self) -> ChainSummary {
        let core = lock(&self.core);
        let (best_header, record) = core.chain.best_header();
        ChainSummary {
            tip: core.chain.tip(),
            best_header,
            best_header_height: record.height,
            best_header_work: record.chain_work,
            orphans: core.chain.orphan_count(),
        }
    }

    /// The hash of the main-chain block at `height`, if any.
    pub fn hash_at(&self, height: BlockHeight) -> Option<BlockHash> {
        lock(&self.core).chain.hash_at(height)
    }

    /// The height of a block whose header is known (on any branch).
    pub fn block_height(&self, hash: &BlockHash) -> Option<BlockHeight> {
        lock(&self.core)
            .chain
            .record(hash)
            .map(|record| record.height)
    }

    /// [`Node::block_height`] for many hashes under one lock.
    pub fn block_heights(&self, hashes: &[BlockHash]) -> Vec<Option<BlockHeight>> {
        let core = lock(&self.core);
        hashes
            .iter()
            .map(|hash| core.chain.record(hash).map(|record| record.height))
            .collect()
    }

    /// The block index's record of a known header: height, work, status.
    pub fn block_record(&self, hash: &BlockHash) -> Option<IndexRecord> {
        lock(&self.core).chain.record(hash)
    }

    /// True if the block is on the main chain.
    pub fn is_on_main_chain(&self, hash: &BlockHash) -> bool {
        lock(&self.core).chain.is_on_main_chain(hash)
    }

    /// True if the block's data is stored (or waits in the orphan pool).
    pub fn has_block(&self, hash: &BlockHash) -> bool {
        lock(&self.core).chain.has_block(hash)
    }

    /// The header of `hash` and up to `count - 1` of its ancestors, oldest first (empty if
    /// the header is unknown): what announcing a block by its headers sends.
    pub fn headers_ending_at(&self, hash: &BlockHash, count: usize) -> Vec<Header> {
        let core = lock(&self.core);
        let mut headers = Vec::with_capacity(count);
        let mut next = Some(*hash);
        while headers.len() < count {
            let Some(record) = next.and_then(|hash| core.chain.record(&hash)) else {
                break;
            };
            headers.push(record.header);
            next = (record.height.0 > 0).then_some(record.header.prev_hash);
        }
        headers.reverse();
        headers
    }

    /// The locator for a `get_headers` request: our best header, then the main chain's
    /// locator, so a peer finds the fork point whatever branch it is on.
    pub fn header_locator(&self) -> Vec<BlockHash> {
        lock(&self.core).chain.header_locator()
    }

    /// The main-chain headers a peer asks for with `locator` (at most `max`, ending at
    /// `stop`), and the height of the locator's first hash if we know it: a peer's
    /// locator starts at its best block, so that is a fresh view of its height.
    pub fn headers_for_peer(
        &self,
        locator: &[BlockHash],
        stop: Option<BlockHash>,
        max: usize,
    ) -> (Vec<Header>, Option<BlockHeight>) {
        let core = lock(&self.core);
        let their_height = locator
            .first()
            .and_then(|hash| core.chain.record(hash))
            .map(|record| record.height);
        (core.chain.headers_after(locator, stop, max), their_height)
    }

    /// Checks and stores a peer's headers (headers-first sync). With `require_work`, a
    /// batch whose chain ends below the anti-DoS work threshold is not stored
    /// (`powchain_chain::low_work`): [`PeerHeaders::LowWork`]. Without it (a branch the
    /// peer layer pre-synced and found worth it), every valid header is stored.
    ///
    /// # Errors
    /// [`NodeError::Chain`] for the first header that does not connect, does not build on
    /// the one before, or breaks a rule.
    pub fn accept_peer_headers(
        &self,
        headers: &[Header],
        require_work: bool,
    ) -> Result<PeerHeaders, NodeError> {
        let now = self.clock.now_ms();
        let mut core = lock(&self.core);
        if require_work && let Some(end_work) = core.chain.headers_chain_work(headers)? {
            let threshold = core.chain.anti_dos_work_threshold();
            // headers_chain_work counts only batches with a new header.
            if end_work < threshold
                && let Some(first_new) = headers
                    .iter()
                    .map(Header::compute_hash)
                    .find(|hash| core.chain.record(hash).is_none())
            {
                return Ok(PeerHeaders::LowWork {
                    end_work,
                    threshold,
                    first_new,
                });
            }
        }
        let added = core.chain.accept_headers(headers, now)?;
        Ok(PeerHeaders::Stored {
            height: headers
                .last()
                .and_then(|header| core.chain.record(&header.compute_hash()))
                .map(|record| record.height),
            added,
        })
    }

    /// Checks and stores one header a peer relays ahead of its block (compact block
    /// relay), as [`Node::accept_peer_headers`] does, and says whether the block is here
    /// and whether it would become the tip.
    ///
    /// # Errors
    /// As [`Node::accept_peer_headers`].
    pub fn accept_relayed_header(&self, header: &Header) -> Result<RelayedHeader, NodeError> {
        if let PeerHeaders::LowWork { .. } =
            self.accept_peer_headers(std::slice::from_ref(header), true)?
        {
            return Ok(RelayedHeader::LowWork);
        }
        let hash = header.compute_hash();
        let core = lock(&self.core);
        Ok(match core.chain.record(&hash) {
            Some(record) => RelayedHeader::Known {
                height: record.height,
                have_block: core.chain.has_block(&hash),
                extends_best: record.chain_work > core.chain.tip().work,
                extends_tip: header.prev_hash == core.chain.tip().hash,
            },
            None => RelayedHeader::LowWork,
        })
    }

    /// Counts the work of headers that continue a branch being pre-synced from the block
    /// `prev` with `start_work` (nothing is stored); returns the new total and the
    /// threshold it must reach to be stored.
    ///
    /// # Errors
    /// [`NodeError::Chain`] if a header does not build on the one before or misses its
    /// own target.
    pub fn presync_peer_headers(
        &self,
        prev: BlockHash,
        start_work: Work,
        headers: &[Header],
    ) -> Result<(Work, Work), NodeError> {
        let pow_limit = self.params().pow_limit_target();
        // Proof-of-work checks need no lock; only the threshold reads the chain.
        let work = powchain_chain::presync_work(prev, start_work, headers, pow_limit)?;
        let threshold = lock(&self.core).chain.anti_dos_work_threshold();
        Ok((work, threshold))
    }

    /// Accepts a block from a peer. Nobody waits on it, so the chain store syncs it within
    /// about a second rather than before returning (`ChainState::accept_block_deferring_sync`):
    /// a sync from peers pays one disk sync a second, not one a block. A crash may lose
    /// the last second of such blocks; peers send them again.
    ///
    /// # Errors
    /// [`NodeError::Chain`] if it is invalid or storage failed.
    pub fn submit_peer_block(&self, block: Block) -> Result<PeerBlock, NodeError> {
        let hash = block.compute_hash();
        let submitted = self.submit_block_with(block, false)?;
        let core = lock(&self.core);
        Ok(PeerBlock {
            outcome: submitted.outcome,
            height: core.chain.record(&hash).map(|record| record.height),
            connected: submitted.connected,
            tip_height: core.chain.tip().height,
            best_header_height: core.chain.best_header().1.height,
        })
    }

    /// Accepts blocks a peer sent, in order, as [`Node::submit_peer_block`] each: one
    /// result a block. Stops after the first block the caller would punish the peer for (a
    /// rejection), so nothing after it is taken from that peer.
    pub fn submit_peer_blocks(&self, blocks: Vec<Block>) -> Vec<Result<PeerBlock, NodeError>> {
        let mut results = Vec::with_capacity(blocks.len());
        for block in blocks {
            let result = self.submit_peer_block(block);
            let rejected = result
                .as_ref()
                .is_err_and(|error| error.is_rejection() && !error.is_premature());
            results.push(result);
            if rejected {
                break;
            }
        }
        results
    }

    /// The blocks to download next, each with the peers (by the caller's key) whose tip
    /// descends from it; see `ChainState::download_plan`.
    pub fn download_plan<P: Copy + Eq + Hash>(
        &self,
        peer_tips: &[(P, BlockHash)],
        window: usize,
    ) -> Vec<(BlockHash, Vec<P>)> {
        lock(&self.core).chain.download_plan(peer_tips, window)
    }
}

#[cfg(test)]
mod tests {
    use powchain_consensus::Network;

    use super::PeerHeaders;
    use crate::testing::TestNode;

    #[test]
    fn a_batch_of_peer_blocks_stops_at_the_first_rejected_one() {
        let miner = TestNode::open(Network::Regtest);
        let first = miner.mine(false);
        let mut second = miner.mine(false);
        let third = miner.mine(false);
        // The header no longer commits to the transactions: a rejection, and the peer's
        // fault.
        second.transactions[0].outputs[0].value =
            powchain_consensus::Amount::from_units(1).expect("in range");

        let receiver = TestNode::open_with_clock(Network::Regtest, miner.clock.clone());
        let results = receiver
            .node
            .submit_peer_blocks(vec![first.clone(), second, third]);
        assert_eq!(results.len(), 2, "the third block was not submitted");
        let connected = results[0].as_ref().expect("the first block connects");
        assert_eq!(connected.tip_height.0, 1);
        let error = results[1].as_ref().expect_err("the second is refused");
        assert!(error.is_rejection(), "{error}");
        assert_eq!(
            receiver.node.hash_at(powchain_consensus::BlockHeight(1)),
            Some(first.compute_hash())
        );
        assert_eq!(
            receiver.node.hash_at(powchain_consensus::BlockHeight(2)),
            None
        );
    }

    /// The peer layer makes a download plan again only for headers that told the node
    /// something: a peer repeating known headers must not buy a plan under the lock each
    /// time (docs/SECURITY.md, "Tiny messages made a download plan").
    #[test]
    fn peer_headers_say_how_many_were_new() {
        let miner = TestNode::open(Network::Regtest);
        let headers: Vec<_> = (0..3).map(|_| miner.mine(false).header).collect();
        let receiver = TestNode::open_with_clock(Network::Regtest, miner.clock.clone());
        let stored = |batch: &[powchain_consensus::Header]| match receiver
            .node
            .accept_peer_headers(batch, true)
            .expect("valid")
        {
            PeerHeaders::Stored { height, added } => (height.map(|height| height.0), added),
            other => panic!("stored, not {other:?}"),
        };
        assert_eq!(stored(&headers[..2]), (Some(2), 2));
        assert_eq!(stored(&headers[1..2]), (Some(2), 0), "known: nothing new");
        assert_eq!(stored(&headers), (Some(3), 1), "one of three new");
        assert_eq!(stored(&headers), (Some(3), 0));
    }
}
