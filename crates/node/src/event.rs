//! `NodeEvent`: what the node tells the peer-to-peer layer and the dashboard.

use powchain_consensus::{BlockHash, BlockHeight, Txid, Work};

/// Something that changed in the node. Sent on a broadcast channel; a slow subscriber
/// misses events (it sees `Lagged`) rather than slowing the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeEvent {
    /// A block joined the main chain.
    BlockConnected {
        /// Its hash.
        hash: BlockHash,
        /// Its height.
        height: BlockHeight,
    },
    /// A block left the main chain in a reorganisation.
    BlockDisconnected {
        /// Its hash.
        hash: BlockHash,
        /// Its height.
        height: BlockHeight,
    },
    /// The tip settled after a change.
    TipChanged {
        /// The new tip.
        hash: BlockHash,
        /// Its height.
        height: BlockHeight,
        /// Total chain work.
        work: Work,
        /// Blocks disconnected on the way.
        reorg_depth: u64,
    },
    /// A transaction entered the pool.
    TransactionAccepted {
        /// Its id.
        txid: Txid,
    },
}
