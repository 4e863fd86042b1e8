//! Pool reconciliation: what the pool does when the chain moves. Confirmed and
//! conflicting transactions leave; on a reorganisation the losing branch's transactions
//! come back, oldest block first, followed by what the pool held, and whatever the new
//! chain made invalid is dropped.
//!
//! ```text
//!   ChainEvent::BlockConnected ──▶ remove the block's transactions and their conflicts
//!   ChainEvent::BlockDisconnected ──▶ collect the block ──▶ re-admit (branch, then pool)
//!   every ChainEvent ──▶ NodeEvent (published by the caller, after the lock is released)
//! ```

use std::collections::HashSet;
use std::sync::Arc;

use powchain_chain::ChainEvent;
use powchain_consensus::{Block, Transaction, Txid};
use tracing::{info, warn};

use crate::event::NodeEvent;
use crate::node::{Core, Node};

impl Node {
    /// Brings the pool in line with chain changes; returns the events to publish.
    pub(crate) fn apply_chain_events(
        &self,
        core: &mut Core,
        events: Vec<ChainEvent>,
        now: u64,
    ) -> Vec<NodeEvent> {
        let mut node_events = Vec::with_capacity(events.len());
        let mut disconnected_blocks: Vec<Arc<Block>> = Vec::new();
        let mut removed: Vec<Txid> = Vec::new();
        for event in events {
            match event {
                ChainEvent::BlockConnected {
                    hash,
                    height,
                    block,
                } => {
                    removed.extend(core.mempool.remove_for_block(&block));
                    node_events.push(NodeEvent::BlockConnected { hash, height });
                }
                ChainEvent::BlockDisconnected {
                    hash,
                    height,
                    block,
                } => {
                    disconnected_blocks.push(block);
                    node_events.push(NodeEvent::BlockDisconnected { hash, height });
                }
                ChainEvent::TipChanged {
                    hash,
                    height,
                    work,
                    reorg_depth,
                } => node_events.push(NodeEvent::TipChanged {
                    hash,
                    height,
                    work,
                    reorg_depth,
                }),
            }
        }
        if !disconnected_blocks.is_empty() {
            // The losing branch's transactions go back to the pool, oldest block first,
            // followed by what the pool held; anything the new chain made invalid drops.
            let previous_pool = core.mempool.take_all();
            let mut candidates: Vec<Transaction> = Vec::new();
            for block in disconnected_blocks.iter().rev() {
                candidates.extend(block.transactions.iter().skip(1).cloned());
            }
            let returning: HashSet<Txid> =
                candidates.iter().map(Transaction::compute_txid).collect();
            candidates.extend(previous_pool);
            let mut readmitted = 0usize;
            for transaction in candidates {
                let txid = transaction.compute_txid();
                match self.accept_into_pool(core, transaction.clone(), now) {
                    Ok(_) => {
                        if returning.contains(&txid) {
                            readmitted += 1;
                            if let Err(error) = self.pool_store.insert(&txid, &transaction, now) {
                                warn!(%txid, %error, "could not store a re-admitted transaction");
                            }
                            node_events.push(NodeEvent::TransactionAccepted { txid });
                        }
                    }
                    Err(_) => removed.push(txid),
                }
            }
            info!(
                readmitted,
                "returned a reorganisation's transactions to the pool"
            );
        }
        if let Err(error) = self.pool_store.remove(&removed) {
            warn!(%error, "could not forget removed pool transactions");
        }
        node_events
    }
}
