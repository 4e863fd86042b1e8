//! Moving the main chain: choose the most-work candidate, disconnect down to the fork
//! with undo data, connect the branch block by block, and mark a block that breaks a rule
//! failed with its descendants.
//!
//! ```text
//!   activate_best_chain: while a candidate has more work than the tip:
//!        disconnect_tip ... fork (undo data; a cached layer is popped, a flushed block's
//!        rows restored) ──▶ connect_tip for each block of the branch
//!        (connect_block_transactions against the UTXO set) ──▶ a failure: mark_failed,
//!        rebuild the candidates, try the next best
//!   every connect or disconnect: one write transaction (undo data, height, tip together)
//! ```

use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::Arc;

use powchain_consensus::encode::{Decode, Encode};
use powchain_consensus::utxo::created_outputs;
use powchain_consensus::validation::connect_block_transactions;
use powchain_consensus::{Block, BlockHash, BlockHeight, Coin, OutPoint, Txid};
use redb::{ReadableDatabase, ReadableTable, WriteTransaction};
use tracing::{debug, warn};

use super::{ChainState, ChainTip, candidate_key};
use crate::error::{ChainError, corrupt};
use crate::event::ChainEvent;
use crate::overlay::{BlockChanges, spent_addresses, touched_addresses};
use crate::store::{
    ADDRESS_TXS, ADDRESS_UTXO, BLOCK_INDEX, BLOCKS, BlockStatus, HEIGHTS, IndexRecord, META,
    META_FLUSHED, META_TIP, TX_INDEX, UNDO, UTXO, address_tx_key, address_utxo_key, coin_bytes,
    coin_from_bytes, decode_undo, encode_undo, outpoint_key,
};

impl ChainState {
    pub(super) fn persist_record(&mut self, hash: BlockHash) -> Result<(), ChainError> {
        let record = self.index.record(&hash);
        let write = self.begin_write()?;
        write
            .open_table(BLOCK_INDEX)?
            .insert(hash.0.as_slice(), record.encode_to_vec().as_slice())?;
        self.commit(write)
    }

    /// Stores a failed block's record and drops its data, in one write: a block that broke
    /// a rule is never validated, connected or served again, so its body is not kept.
    pub(super) fn persist_failed(&mut self, hash: BlockHash) -> Result<(), ChainError> {
        let record = self.index.record(&hash);
        let write = self.begin_write()?;
        write
            .open_table(BLOCK_INDEX)?
            .insert(hash.0.as_slice(), record.encode_to_vec().as_slice())?;
        write.open_table(BLOCKS)?.remove(hash.0.as_slice())?;
        self.commit(write)
    }

    /// Records that `hash` has its data; if its parent has chain data, so do it and any
    /// stored descendants that were waiting.
    pub(super) fn note_chain_data(&mut self, hash: BlockHash) {
        let parent = self.index.record(&hash).header.prev_hash;
        if !self.index.has_chain_data(&parent) {
            self.waiting_for_parent
                .entry(parent)
                .or_default()
                .push(hash);
            return;
        }
        let tip_work = self.tip().work;
        let mut ready = vec![hash];
        while let Some(next) = ready.pop() {
            let record = self.index.record(&next);
            if record.status != BlockStatus::DataStored {
                continue;
            }
            self.index.set_chain_data(&next, true);
            if record.chain_work > tip_work {
                self.candidates.insert(candidate_key(next, &record));
            }
            if let Some(children) = self.waiting_for_parent.remove(&next) {
                ready.extend(children);
            }
        }
    }

    pub(super) fn rebuild_candidates(&mut self) {
        let tip_work = self.tip().work;
        self.candidates = self
            .index
            .chain_data_above(tip_work)
            .into_iter()
            .filter(|(_, record)| !record.status.is_failed())
            .map(|(hash, record)| candidate_key(hash, &record))
            .collect();
    }

    /// Marks a block as failed (or as descending from one) in memory and on disk.
    pub(super) fn mark_failed(
        &mut self,
        hash: BlockHash,
        status: BlockStatus,
    ) -> Result<(), ChainError> {
        let changed = self.index.fail(hash, status);
        if changed.is_empty() {
            return Ok(());
        }
        // Its descendants leave the race in memory; on disk only this block is marked, and
        // opening the store marks what lies below it again (`IndexBuilder::finish`).
        for (failed, record) in &changed {
            self.index.set_chain_data(failed, false);
            self.candidates.remove(&candidate_key(*failed, record));
        }
        self.persist_failed(hash)
    }

    /// After a branch failed part-way: the blocks this activation disconnected are the
    /// ones that may now have more work than the (lower) tip; they become candidates again.
    /// Any other stored block with that much work was a candidate already.
    fn restore_candidates(&mut self, disconnected: &[BlockHash]) {
        let tip_work = self.tip().work;
        for hash in disconnected {
            let record = self.index.record(hash);
            if self.index.has_chain_data(hash)
                && record.chain_work > tip_work
                && !record.status.is_failed()
            {
                self.candidates.insert(candidate_key(*hash, &record));
            }
        }
    }

    /// Moves the main chain to the candidate with the most work, trying the next best when
    /// a block fails. Returns the rule broken by `submitted` or an ancestor it needed.
    ///
    /// The tip's change is an event even if a storage failure ends the activation
    /// part-way: what was connected and disconnected by then stays so.
    pub(super) fn activate_best_chain(
        &mut self,
        submitted: Option<BlockHash>,
    ) -> Result<Option<ChainError>, ChainError> {
        let start = self.tip();
        let mut disconnected: Vec<BlockHash> = Vec::new();
        let activated = self.activate_candidates(submitted, &mut disconnected);
        let tip = self.tip();
        if tip.hash != start.hash {
            let depth = disconnected.len() as u64;
            if depth > 0 {
                // The node logs the line a person reads (`reorg: ...`); this is the detail.
                debug!(depth, from = %start.hash, to = %tip.hash, height = tip.height.0, "reorganised the chain");
            }
            self.events.push(ChainEvent::TipChanged {
                hash: tip.hash,
                height: tip.height,
                work: tip.work,
                reorg_depth: depth,
            });
        }
        activated
    }

    /// The loop of [`ChainState::activate_best_chain`]: `disconnected` gets every block it
    /// disconnects.
    fn activate_candidates(
        &mut self,
        submitted: Option<BlockHash>,
        disconnected: &mut Vec<BlockHash>,
    ) -> Result<Option<ChainError>, ChainError> {
        let mut submitted_error = None;
        'candidates: loop {
            let tip_work = self.tip().work;
            let Some(&(Reverse(work), _, best)) = self.candidates.first() else {
                break;
            };
            if work <= tip_work {
                self.candidates.clear();
                break;
            }
            let mut path = Vec::new();
            let mut cursor = best;
            while !self.is_on_main_chain(&cursor) {
                let record = self.index.record(&cursor);
                if record.status.is_failed() {
                    self.mark_failed(best, BlockStatus::FailedAncestor)?;
                    continue 'candidates;
                }
                path.push(cursor);
                cursor = record.header.prev_hash;
            }
            path.reverse();
            let fork = cursor;
            while self.tip().hash != fork {
                let tip = self.tip().hash;
                self.disconnect_tip()?;
                disconnected.push(tip);
            }
            for (position, hash) in path.iter().enumerate() {
                match self.connect_tip(*hash) {
                    Ok(()) => {}
                    Err(ChainError::Invalid {
                        hash: failed,
                        error,
                    }) => {
                        warn!(block = %failed, rule = error.rule(), %error, "block failed to connect");
                        self.mark_failed(failed, BlockStatus::Failed)?;
                        for descendant in &path[position + 1..] {
                            self.mark_failed(*descendant, BlockStatus::FailedAncestor)?;
                        }
                        if submitted.is_some_and(|submitted| path[position..].contains(&submitted))
                        {
                            submitted_error = Some(ChainError::Invalid {
                                hash: failed,
                                error,
                            });
                        }
                        self.restore_candidates(disconnected);
                        continue 'candidates;
                    }
                    Err(other) => return Err(other),
                }
            }
            let tip_work = self.tip().work;
            let tip_hash = self.tip().hash;
            self.candidates
                .retain(|(Reverse(work), _, hash)| *work > tip_work && *hash != tip_hash);
        }
        Ok(submitted_error)
    }

    /// A stored block and its txids, checked to be the block stored under `hash`
    /// ([`check_stored_block`]): connecting and disconnecting trust what they read.
    pub(super) fn load_block(&self, hash: &BlockHash) -> Result<(Block, Vec<Txid>), ChainError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(BLOCKS)?;
        let row = table
            .get(hash.0.as_slice())?
            .ok_or_else(|| ChainError::Corrupt(format!("block {hash} has no stored data")))?;
        let block = Block::decode_exact(row.value()).map_err(corrupt("block"))?;
        let txids = block.compute_txids();
        check_stored_block(hash, &block, &txids)?;
        Ok((block, txids))
    }

    /// Connects the child `hash` of the current tip in one write transaction.
    pub(super) fn connect_tip(&mut self, hash: BlockHash) -> Result<(), ChainError> {
        let record = self.index.record(&hash);
        let (block, txids) = self.load_block(&hash)?;
        let write = self.begin_write()?;
        match self.write_connect(&write, hash, &record, &block, &txids) {
            Ok(changes) => self.commit_with(write, |overlay| overlay.push(changes))?,
            Err(error) => {
                write.abort()?;
                return Err(error);
            }
        }
        self.index.push_main(hash);
        self.candidates.remove(&candidate_key(hash, &record));
        debug!(block = %hash, height = record.height.0, "connected block");
        // Before the flush: the block is connected whether or not the flush fails, and
        // the node must hear of it (its pool, its miners, its peers).
        self.events.push(ChainEvent::BlockConnected {
            hash,
            height: record.height,
            block: Arc::new(block),
        });
        self.flush_if_over_budget()
    }

    /// Validates `block` against the UTXO set (tables and coin cache) and writes what
    /// connecting it stores at once: its undo data, its height and the tip. Returns its
    /// changes to the coin tables and indexes, for the coin cache.
    pub(super) fn write_connect(
        &self,
        write: &WriteTransaction,
        hash: BlockHash,
        record: &IndexRecord,
        block: &Block,
        txids: &[Txid],
    ) -> Result<BlockChanges, ChainError> {
        let height = record.height;
        let mut view: HashMap<OutPoint, Coin> = HashMap::new();
        {
            let utxo = write.open_table(UTXO)?;
            for transaction in &block.transactions {
                for input in transaction.spends() {
                    let coin = match self.overlay.coin(&input.prevout) {
                        Some(cached) => cached,
                        None => utxo
                            .get(outpoint_key(&input.prevout).as_slice())?
                            .map(|row| coin_from_bytes(row.value()).map_err(corrupt("coin")))
                            .transpose()?,
                    };
                    if let Some(coin) = coin {
                        view.insert(input.prevout, coin);
                    }
                }
            }
        }
        let connection = connect_block_transactions(
            self.params,
            block,
            txids,
            height,
            &view,
            self.verifier.as_ref(),
        )
        .map_err(|error| ChainError::Invalid { hash, error })?;
        write.open_table(UNDO)?.insert(
            hash.0.as_slice(),
            encode_undo(&hash, &connection.spent).as_slice(),
        )?;
        write
            .open_table(HEIGHTS)?
            .insert(height.0, hash.0.as_slice())?;
        write
            .open_table(META)?
            .insert(META_TIP, hash.0.as_slice())?;
        Ok(BlockChanges::new(
            hash,
            height,
            block,
            txids,
            &connection.spent,
            &connection.created,
        ))
    }

    /// Disconnects the tip in one write transaction, restoring what it spent.
    pub(super) fn disconnect_tip(&mut self) -> Result<(), ChainError> {
        let tip = self.tip();
        if tip.height == BlockHeight::GENESIS {
            return Err(ChainError::Corrupt(
                "asked to disconnect the genesis block".into(),
            ));
        }
        let (block, txids) = self.load_block(&tip.hash)?;
        let write = self.begin_write()?;
        let unflushed = match self.overlay.last_hash() {
            Some(last) if last == tip.hash => true,
            None => false,
            Some(last) => {
                return Err(ChainError::Corrupt(format!(
                    "the coin cache ends at {last}, not at the tip {}",
                    tip.hash
                )));
            }
        };
        let written = if unflushed {
            Self::write_disconnect_unflushed(&write, &tip)
        } else {
            self.write_disconnect(&write, &tip, &block, &txids)
        };
        match written {
            Ok(()) if unflushed => self.commit_with(write, |overlay| {
                overlay.pop();
            })?,
            Ok(()) => self.commit_with(write, |_| {})?,
            Err(error) => {
                write.abort()?;
                return Err(error);
            }
        }
        self.index.pop_main();
        let record = self.index.record(&tip.hash);
        if self.index.has_chain_data(&tip.hash) {
            self.candidates.insert(candidate_key(tip.hash, &record));
        }
        debug!(block = %tip.hash, height = tip.height.0, "disconnected block");
        self.events.push(ChainEvent::BlockDisconnected {
            hash: tip.hash,
            height: tip.height,
            block: Arc::new(block),
        });
        Ok(())
    }

    /// Disconnects an unflushed tip: its rows are only in the coin cache, so the store
    /// drops its undo data and height and moves the tip back.
    pub(super) fn write_disconnect_unflushed(
        write: &WriteTransaction,
        tip: &ChainTip,
    ) -> Result<(), ChainError> {
        write.open_table(UNDO)?.remove(tip.hash.0.as_slice())?;
        write.open_table(HEIGHTS)?.remove(tip.height.0)?;
        write
            .open_table(META)?
            .insert(META_TIP, tip.header.prev_hash.0.as_slice())?;
        Ok(())
    }

    /// Disconnects a flushed tip (the coin cache is empty): restores the coins it spent in
    /// the tables, removes what it created and its index rows, and moves the tip and the
    /// flushed tip back.
    pub(super) fn write_disconnect(
        &self,
        write: &WriteTransaction,
        tip: &ChainTip,
        block: &Block,
        txids: &[Txid],
    ) -> Result<(), ChainError> {
        let mut undo_table = write.open_table(UNDO)?;
        let spent = {
            let row = undo_table.get(tip.hash.0.as_slice())?.ok_or_else(|| {
                ChainError::Corrupt(format!("no undo data for block {}", tip.hash))
            })?;
            decode_undo(&tip.hash, row.value())?
        };
        check_undo(&tip.hash, tip.height, block, txids, &spent, self.params)?;
        undo_table.remove(tip.hash.0.as_slice())?;
        let spent_addresses = spent_addresses(block, txids, &spent);
        let mut utxo = write.open_table(UTXO)?;
        let mut address_utxo = write.open_table(ADDRESS_UTXO)?;
        let mut tx_index = write.open_table(TX_INDEX)?;
        let mut address_txs = write.open_table(ADDRESS_TXS)?;
        for (transaction, txid) in block.transactions.iter().zip(txids).rev() {
            for (outpoint, output) in created_outputs(transaction, *txid) {
                utxo.remove(outpoint_key(&outpoint).as_slice())?;
                address_utxo.remove(address_utxo_key(&output.address, &outpoint).as_slice())?;
            }
            tx_index.remove(txid.0.as_slice())?;
            for address in touched_addresses(transaction, &spent_addresses) {
                address_txs.remove(address_tx_key(&address, tip.height, txid).as_slice())?;
            }
        }
        for (outpoint, coin) in &spent {
            let bytes = coin_bytes(coin);
            utxo.insert(outpoint_key(outpoint).as_slice(), bytes.as_slice())?;
            address_utxo.insert(
                address_utxo_key(&coin.output.address, outpoint).as_slice(),
                bytes.as_slice(),
            )?;
        }
        write.open_table(HEIGHTS)?.remove(tip.height.0)?;
        let mut meta = write.open_table(META)?;
        meta.insert(META_TIP, tip.header.prev_hash.0.as_slice())?;
        meta.insert(META_FLUSHED, tip.header.prev_hash.0.as_slice())?;
        Ok(())
    }
}

/// `Ok` if a block read back from the store is the one its key names: its header hashes to
/// `hash` and its transactions to the header's Merkle root. Every block was checked so on
/// arrival (`bad-merkle-root` comes before any other rule), so a difference is damage to
/// the store, never the block's fault: without this check a damaged body failed a rule,
/// and an honest block, with its descendants and whoever offered them, was refused for
/// good (and a damaged body that broke no rule put wrong coins in the UTXO set).
///
/// # Errors
/// [`ChainError::Corrupt`] naming the block.
pub(super) fn check_stored_block(
    hash: &BlockHash,
    block: &Block,
    txids: &[Txid],
) -> Result<(), ChainError> {
    if block.header.compute_hash() != *hash
        || powchain_consensus::merkle::compute_merkle_root(txids) != block.header.merkle_root
    {
        return Err(ChainError::Corrupt(format!(
            "block {hash} read back from the store is not the block stored under that hash"
        )));
    }
    Ok(())
}

/// Checks a block's undo data read back from the store against the block: it must list,
/// in input order, every output the block spends that it did not create itself (as
/// connecting wrote it), each a coin older than the block and, if a coinbase's, mature at
/// its height. The block names the outpoints, so a damaged one is caught here rather than
/// restoring or spending the wrong coin; a damaged value or address is not (only the
/// spending signatures commit to them).
pub(super) fn check_undo(
    hash: &BlockHash,
    height: BlockHeight,
    block: &Block,
    txids: &[Txid],
    spent: &[(OutPoint, Coin)],
    params: &powchain_consensus::Params,
) -> Result<(), ChainError> {
    let damaged = || {
        ChainError::Corrupt(format!(
            "the undo data of block {hash} does not match the block's inputs"
        ))
    };
    let mut listed = spent.iter();
    let mut earlier = std::collections::HashSet::with_capacity(txids.len());
    for (transaction, txid) in block.transactions.iter().zip(txids) {
        for input in transaction.spends() {
            if earlier.contains(&input.prevout.txid) {
                continue;
            }
            match listed.next() {
                Some((outpoint, coin))
                    if *outpoint == input.prevout
                        && coin.height < height
                        && coin.is_mature_at(height, params) => {}
                _ => return Err(damaged()),
            }
        }
        earlier.insert(*txid);
    }
    match listed.next() {
        Some(_) => Err(damaged()),
        None => Ok(()),
    }
}
