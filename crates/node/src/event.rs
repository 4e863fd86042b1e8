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

impl NodeEvent {
    /// True for the events of the chain (blocks connected and disconnected, tip changes),
    /// false for the pool's.
    pub fn is_chain_event(&self) -> bool {
        match self {
            NodeEvent::BlockConnected { .. }
            | NodeEvent::BlockDisconnected { .. }
            | NodeEvent::TipChanged { .. } => true,
            NodeEvent::TransactionAccepted { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use powchain_consensus::Network;
    use tokio::sync::broadcast::error::TryRecvError;

    use super::*;
    use crate::testing::TestNode;

    #[test]
    fn a_burst_of_transactions_cannot_make_a_chain_subscriber_miss_a_block() {
        let test = TestNode::open(Network::Regtest);
        let mut all = test.node.subscribe();
        let mut chain = test.node.subscribe_chain();
        // More pool events than the channel holds, as a reorganisation returning
        // thousands of transactions to the pool publishes.
        for n in 0..5_000u32 {
            let mut txid = [0; 32];
            txid[..4].copy_from_slice(&n.to_be_bytes());
            test.node
                .publish(NodeEvent::TransactionAccepted { txid: Txid(txid) });
        }
        let block = test.mine(false);
        let hash = block.header.compute_hash();
        assert!(
            matches!(all.try_recv(), Err(TryRecvError::Lagged(_))),
            "the channel of all events overflowed"
        );
        let received: Vec<NodeEvent> = std::iter::from_fn(|| chain.try_recv().ok()).collect();
        assert!(
            received.iter().all(NodeEvent::is_chain_event),
            "{received:?}"
        );
        assert!(
            received
                .iter()
                .any(|event| matches!(event, NodeEvent::BlockConnected { hash: connected, .. } if *connected == hash)),
            "{received:?}"
        );
        assert!(
            received.iter().any(
                |event| matches!(event, NodeEvent::TipChanged { hash: tip, .. } if *tip == hash)
            ),
            "{received:?}"
        );
    }
}
