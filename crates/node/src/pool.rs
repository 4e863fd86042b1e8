//! The node's transaction pool: admission against the chain tip, durable storage before
//! an acknowledgement, restore at start, expiry, and the views the API and peers read.
//!
//! ```text
//!   submit_transaction ──▶ Mempool::accept (coins from a chain snapshot, signatures
//!        │                 remembered for the block that confirms it)
//!        └──▶ pool store (synced) ──▶ NodeEvent::TransactionAccepted
//!   open ──▶ restore_pool: stored transactions re-admitted, parents before children
//! ```

use std::collections::HashSet;

use powchain_consensus::{OutPoint, Transaction, Txid};
use powchain_mempool::{Accepted, PoolEntry};
use tracing::{info, warn};

use crate::error::NodeError;
use crate::event::NodeEvent;
use crate::node::{Core, Node, lock};

impl Node {
    /// Re-admits the stored pool; transactions that are no longer valid are forgotten.
    pub(crate) fn restore_pool(&self) -> Result<(), NodeError> {
        let stored = self.pool_store.load()?;
        if stored.is_empty() {
            return Ok(());
        }
        let now = self.clock.now_ms();
        let mut core = lock(&self.core);
        let mut pending: Vec<(Transaction, u64)> = stored;
        // Parents may be stored after their children; retry while progress is made.
        loop {
            let before = pending.len();
            let mut retry = Vec::new();
            for (transaction, time_ms) in pending {
                match self.accept_into_pool(&mut core, transaction.clone(), time_ms.min(now)) {
                    Ok(_) => {}
                    Err(NodeError::Mempool(error)) if error.is_missing_input() => {
                        retry.push((transaction, time_ms))
                    }
                    Err(_) => {}
                }
            }
            pending = retry;
            if pending.is_empty() || pending.len() == before {
                break;
            }
        }
        let kept: HashSet<Txid> = core
            .mempool
            .entries_by_fee_rate()
            .iter()
            .map(|entry| entry.txid)
            .collect();
        let dropped: Vec<Txid> = self
            .pool_store
            .load()?
            .iter()
            .map(|(transaction, _)| transaction.compute_txid())
            .filter(|txid| !kept.contains(txid))
            .collect();
        self.pool_store.remove(&dropped)?;
        info!(
            restored = kept.len(),
            dropped = dropped.len(),
            "restored the transaction pool"
        );
        Ok(())
    }

    /// Validates `transaction` against the chain tip and the pool and adds it to the pool.
    pub(crate) fn accept_into_pool(
        &self,
        core: &mut Core,
        transaction: Transaction,
        now: u64,
    ) -> Result<Accepted, NodeError> {
        let missing = core.mempool.missing_inputs(&transaction);
        let snapshot = self.reader.snapshot()?;
        let coins = snapshot.coins(missing.iter())?;
        let next_height = core.chain.tip().height.next();
        Ok(core
            .mempool
            .accept(transaction, &coins, next_height, now, &self.pool_verifier)?)
    }

    /// Accepts a transaction into the pool and stores it durably before returning.
    ///
    /// # Errors
    /// [`NodeError::Mempool`] if the pool refuses it, [`NodeError::PoolStore`] if it could
    /// not be stored.
    pub fn submit_transaction(&self, transaction: Transaction) -> Result<Accepted, NodeError> {
        let now = self.clock.now_ms();
        let accepted = {
            let mut core = lock(&self.core);
            self.accept_and_store(&mut core, transaction, now)?
        };
        self.publish(NodeEvent::TransactionAccepted {
            txid: accepted.txid,
        });
        Ok(accepted)
    }

    pub(crate) fn accept_and_store(
        &self,
        core: &mut Core,
        transaction: Transaction,
        now: u64,
    ) -> Result<Accepted, NodeError> {
        let stored = transaction.clone();
        let accepted = self.accept_into_pool(core, transaction, now)?;
        // The transaction may spend coins of peers' blocks not yet synced; acknowledging
        // it must not outlive them (a restart would drop it as spending missing coins).
        if core.chain.has_unsynced_changes() {
            core.chain.sync()?;
        }
        self.pool_store.insert(&accepted.txid, &stored, now)?;
        self.pool_store.remove(&accepted.evicted)?;
        Ok(accepted)
    }

    /// Signature checks remembered as passed by the pool and not yet met again in a block.
    pub fn signature_cache_entries(&self) -> usize {
        self.pool_verifier.cache().len()
    }

    /// Drops pooled transactions older than the pool's expiry.
    pub fn expire_pool(&self) -> usize {
        let now = self.clock.now_ms();
        let expired = lock(&self.core).mempool.expire(now);
        if let Err(error) = self.pool_store.remove(&expired) {
            warn!(%error, "could not forget expired pool transactions");
        }
        expired.len()
    }

    /// The pooled transactions, best fee rate first.
    pub fn pool_transactions(&self) -> Vec<PoolEntry> {
        let core = lock(&self.core);
        core.mempool
            .entries_by_fee_rate()
            .into_iter()
            .cloned()
            .collect()
    }

    /// One pooled transaction.
    pub fn pool_transaction(&self, txid: &Txid) -> Option<PoolEntry> {
        lock(&self.core).mempool.get(txid).cloned()
    }

    /// For each txid, true if the pool holds it (one lock for the whole list).
    pub fn pool_contains(&self, txids: &[Txid]) -> Vec<bool> {
        let core = lock(&self.core);
        txids
            .iter()
            .map(|txid| core.mempool.contains(txid))
            .collect()
    }

    /// Number of pooled transactions and their total size.
    pub fn pool_size(&self) -> (usize, usize) {
        let core = lock(&self.core);
        (core.mempool.len(), core.mempool.total_bytes())
    }

    /// The outpoints the pool spends, for explorers.
    pub fn pool_spender_of(&self, outpoint: &OutPoint) -> Option<Txid> {
        lock(&self.core).mempool.spender_of(outpoint)
    }
}
