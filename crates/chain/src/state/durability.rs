//! When writes reach the disk: commits do not wait for it, each public call syncs once
//! before it returns (peers' blocks within a second), and the coin cache is flushed to
//! the tables when it passes its budget, when asked, and when the state is dropped.
//!
//! ```text
//!   commit (no sync) ──▶ unsynced_commits ──▶ sync_store at the end of a call
//!   layer pushed ──▶ over budget? ──▶ flush_coin_cache: one write of the layers' net
//!                                     effect in key order, flushed tip recorded
//! ```

use std::sync::{Arc, PoisonError};

use powchain_consensus::{Address, BlockHash, BlockHeight, Txid};
use redb::WriteTransaction;
use tracing::{debug, warn};

use super::{ChainState, StoreDurability, UNSYNCED_COMMITS_BEFORE_SYNC};
use crate::error::ChainError;
use crate::overlay::{CoinChange, Overlay};
use crate::store::{
    ADDRESS_TXS, ADDRESS_UTXO, META, META_FLUSHED, TX_INDEX, TxLocation, UTXO, address_tx_key,
    address_utxo_key, encode_coin, outpoint_key, tx_location_bytes,
};

impl ChainState {
    /// True if commits wait for a sync (see [`ChainState::accept_block_deferring_sync`]).
    pub fn has_unsynced_changes(&self) -> bool {
        self.unsynced_commits > 0
    }

    /// Makes every commit so far durable (a no-op if there is none): after
    /// [`ChainState::accept_block_deferring_sync`] or with
    /// [`StoreDurability::UnsyncedForBenchmarks`]. Closing the store does it too.
    ///
    /// # Errors
    /// [`ChainError::Storage`].
    pub fn sync(&mut self) -> Result<(), ChainError> {
        self.guarded(|state| state.sync_store(true))
    }

    /// Runs a change of the state, which must not go on past a panic of the storage engine
    /// (redb panics on some damaged pages that opening the store never read). A panic is
    /// caught and comes back as [`ChainError::Damaged`]; the state may then be half
    /// changed in memory (an index entry without its commit, a coin-cache layer without
    /// its block), so every later change is refused with the same error, and nothing is
    /// flushed on close. What was committed is consistent, and the next open starts from it.
    pub(super) fn guarded<T>(
        &mut self,
        change: impl FnOnce(&mut ChainState) -> Result<T, ChainError>,
    ) -> Result<T, ChainError> {
        if let Some(detail) = &self.broken {
            return Err(ChainError::Damaged {
                path: self.path.clone(),
                detail: detail.clone(),
            });
        }
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| change(self))) {
            Ok(result) => result,
            Err(payload) => {
                let detail = format!(
                    "the storage engine panicked while the chain changed: {}; the node changes \
                     its chain no more until it is restarted",
                    crate::error::panic_message(&*payload)
                );
                tracing::error!(path = %self.path.display(), %detail, "the chain store failed");
                self.broken = Some(detail.clone());
                Err(ChainError::Damaged {
                    path: self.path.clone(),
                    detail,
                })
            }
        }
    }

    /// A write transaction that commits without waiting for the disk: the calling public
    /// method syncs once at its end (`sync_store`).
    pub(super) fn begin_write(&self) -> Result<WriteTransaction, ChainError> {
        #[cfg(test)]
        if self.panic_at_next_write {
            panic!("an injected panic of the storage engine");
        }
        let mut write = self.db.begin_write()?;
        write.set_durability(redb::Durability::None)?;
        Ok(write)
    }

    pub(super) fn commit(&mut self, write: WriteTransaction) -> Result<(), ChainError> {
        write.commit()?;
        self.unsynced_commits += 1;
        Ok(())
    }

    /// Commits a write that moves the tip or the flushed tip, and applies `change` to the
    /// coin cache: readers' snapshots see both or neither (a snapshot is taken under the
    /// same lock).
    pub(super) fn commit_with(
        &mut self,
        write: WriteTransaction,
        change: impl FnOnce(&mut Overlay),
    ) -> Result<(), ChainError> {
        let shared = Arc::clone(&self.shared_overlay);
        let mut published = shared.write().unwrap_or_else(PoisonError::into_inner);
        write.commit()?;
        self.unsynced_commits += 1;
        change(&mut self.overlay);
        *published = self.overlay.clone();
        Ok(())
    }

    /// Writes the coin cache to the tables if it is over its budget.
    pub(super) fn flush_if_over_budget(&mut self) -> Result<(), ChainError> {
        if self.overlay.len() > self.coin_cache_blocks
            || self.overlay.bytes() > self.coin_cache_bytes
        {
            self.flush_coin_cache()?;
        }
        Ok(())
    }

    /// Writes the coin cache to the tables and syncs the store: after it the tables are
    /// complete at the tip, and opening the store re-applies no block. Dropping the chain
    /// state does it too.
    ///
    /// # Errors
    /// [`ChainError::Storage`].
    pub fn flush(&mut self) -> Result<(), ChainError> {
        self.guarded(|state| {
            state.flush_coin_cache()?;
            state.sync_store(true)
        })
    }

    /// Syncs and closes the store leaving the coin cache unflushed, as a process killed
    /// after its last sync would: the next open re-applies the unflushed blocks. For tests
    /// of that path; a node closes by dropping the chain state, which flushes.
    ///
    /// # Errors
    /// [`ChainError::Storage`].
    pub fn close_leaving_cache_unflushed(mut self) -> Result<(), ChainError> {
        self.sync_store(true)?;
        self.overlay.clear();
        Ok(())
    }

    /// Blocks whose changes wait in the coin cache (for tests and diagnostics).
    pub fn unflushed_blocks(&self) -> usize {
        self.overlay.len()
    }

    pub(super) fn flush_coin_cache(&mut self) -> Result<(), ChainError> {
        let Some(last) = self.overlay.last_hash() else {
            return Ok(());
        };
        let blocks = self.overlay.len();
        #[cfg(test)]
        if std::mem::take(&mut self.fail_next_flush) {
            return Err(ChainError::Corrupt("an injected flush failure".into()));
        }
        let write = self.begin_write()?;
        if let Err(error) = self.write_flush(&write, last) {
            write.abort()?;
            return Err(error);
        }
        self.commit_with(write, Overlay::clear)?;
        debug!(blocks, up_to = %last, "flushed the coin cache");
        Ok(())
    }

    /// Writes the net changes of every unflushed block to the tables, each table's rows in
    /// key order, and records `last` as the flushed tip.
    pub(super) fn write_flush(
        &self,
        write: &WriteTransaction,
        last: BlockHash,
    ) -> Result<(), ChainError> {
        // Each table's rows in key order, so consecutive writes land on the same leaves.
        let mut coins = self.overlay.net_coin_changes();
        let mut value = Vec::new();
        {
            let mut utxo = write.open_table(UTXO)?;
            for (outpoint, change) in &coins {
                let key = outpoint_key(outpoint);
                match change {
                    CoinChange::Created(coin) => {
                        value.clear();
                        encode_coin(coin, &mut value);
                        utxo.insert(key.as_slice(), value.as_slice())?;
                    }
                    CoinChange::Spent(_) => {
                        utxo.remove(key.as_slice())?;
                    }
                }
            }
        }
        coins.sort_unstable_by_key(|(outpoint, change)| {
            let (CoinChange::Created(coin) | CoinChange::Spent(coin)) = change;
            (coin.output.address, *outpoint)
        });
        {
            let mut address_utxo = write.open_table(ADDRESS_UTXO)?;
            for (outpoint, change) in &coins {
                match change {
                    CoinChange::Created(coin) => {
                        value.clear();
                        encode_coin(coin, &mut value);
                        address_utxo.insert(
                            address_utxo_key(&coin.output.address, outpoint).as_slice(),
                            value.as_slice(),
                        )?;
                    }
                    CoinChange::Spent(coin) => {
                        address_utxo
                            .remove(address_utxo_key(&coin.output.address, outpoint).as_slice())?;
                    }
                }
            }
        }
        drop(coins);
        let mut locations: Vec<(&Txid, BlockHash, u32)> = Vec::new();
        let mut history: Vec<(&Address, BlockHeight, &Txid)> = Vec::new();
        for layer in self.overlay.layers() {
            locations.extend(
                layer
                    .transactions
                    .iter()
                    .map(|(txid, position)| (txid, layer.hash, *position)),
            );
            history.extend(
                layer
                    .history
                    .iter()
                    .map(|(address, txid)| (address, layer.height, txid)),
            );
        }
        locations.sort_unstable_by_key(|(txid, _, _)| *txid);
        history.sort_unstable();
        {
            let mut tx_index = write.open_table(TX_INDEX)?;
            for (txid, block_hash, position) in &locations {
                let location = TxLocation {
                    block_hash: *block_hash,
                    position: *position,
                };
                tx_index.insert(txid.0.as_slice(), tx_location_bytes(&location).as_slice())?;
            }
            let mut address_txs = write.open_table(ADDRESS_TXS)?;
            for (address, height, txid) in &history {
                address_txs.insert(
                    address_tx_key(address, *height, txid).as_slice(),
                    [].as_slice(),
                )?;
            }
        }
        write
            .open_table(META)?
            .insert(META_FLUSHED, last.0.as_slice())?;
        Ok(())
    }

    /// Syncs the store if anything is unsynced (with [`StoreDurability::UnsyncedForBenchmarks`]
    /// only when `force`d or after many commits). One durable commit makes every earlier
    /// commit durable.
    pub(super) fn sync_store(&mut self, force: bool) -> Result<(), ChainError> {
        if self.unsynced_commits == 0 {
            return Ok(());
        }
        if self.durability == StoreDurability::UnsyncedForBenchmarks
            && !force
            && self.unsynced_commits < UNSYNCED_COMMITS_BEFORE_SYNC
        {
            return Ok(());
        }
        let write = self.db.begin_write()?;
        write.commit()?;
        self.unsynced_commits = 0;
        self.first_deferred_ms = None;
        self.syncs += 1;
        Ok(())
    }
}

impl Drop for ChainState {
    /// Writes the coin cache out, so the next open re-applies no block. Best effort: if it
    /// fails, the next open re-applies the unflushed blocks instead.
    fn drop(&mut self) {
        // A state the storage engine panicked under writes nothing more ([`ChainState::guarded`]).
        if self.overlay.is_empty() || self.broken.is_some() {
            return;
        }
        if let Err(error) = self.flush() {
            warn!(%error, "could not flush the coin cache on close; the next open re-applies its blocks");
        }
    }
}
