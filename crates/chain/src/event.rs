//! `ChainEvent`: what changed, for the mempool, miner, P2P layer and API to follow.

use std::sync::Arc;

use powchain_consensus::{Block, BlockHash, BlockHeight, Work};

/// A change to the main chain. Events come in the order the changes were committed.
#[derive(Clone, Debug)]
pub enum ChainEvent {
    /// A block was connected to the tip.
    BlockConnected {
        /// Its hash.
        hash: BlockHash,
        /// Its height.
        height: BlockHeight,
        /// The block.
        block: Arc<Block>,
    },
    /// The tip block was disconnected (a reorganisation is under way).
    BlockDisconnected {
        /// Its hash.
        hash: BlockHash,
        /// Its height.
        height: BlockHeight,
        /// The block, whose transactions may go back to the pool.
        block: Arc<Block>,
    },
    /// The tip settled after a call; sent once per call that changed it.
    TipChanged {
        /// The new tip.
        hash: BlockHash,
        /// Its height.
        height: BlockHeight,
        /// The chain's total work.
        work: Work,
        /// Blocks disconnected on the way (0 without a reorganisation).
        reorg_depth: u64,
    },
}
