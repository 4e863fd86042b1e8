//! Accepting headers and blocks in any order: headers are checked against their parent
//! and indexed; a block is checked for structure and stored, waits in the orphan pool if
//! its parent is unknown, and the chain moves to the most-work branch it makes possible.
//!
//! ```text
//!   accept_headers ──validate_header──▶ BlockIndex + BLOCK_INDEX
//!   accept_block ──header──▶ merkle root ──validate_block_structure──▶ extends the tip?
//!        ├─ yes: store_and_connect (one write: data, index, undo, height, tip)
//!        ├─ parent unknown: orphan pool (its children follow once it arrives)
//!        └─ else: store, then activate_best_chain (connect.rs)
//! ```

use std::cmp::Reverse;
use std::sync::Arc;

use powchain_consensus::encode::Encode;
use powchain_consensus::merkle::compute_merkle_root;
use powchain_consensus::validation::{validate_block_structure_with_txids, validate_header};
use powchain_consensus::{Block, BlockHash, ConsensusError, Header, Txid};
use redb::WriteTransaction;
use tracing::{debug, warn};

use super::{
    BlockOutcome, ChainState, MAX_DEFERRED_SYNC_MS, UNSYNCED_COMMITS_BEFORE_SYNC, candidate_key,
};
use crate::error::ChainError;
use crate::event::ChainEvent;
use crate::store::{BLOCK_INDEX, BLOCKS, BlockStatus, IndexRecord};

impl ChainState {
    /// Checks a header against its parent and adds it to the index in memory.
    pub(super) fn index_new_header(
        &mut self,
        header: &Header,
        now_ms: u64,
    ) -> Result<(BlockHash, IndexRecord), ChainError> {
        let hash = header.compute_hash();
        let parent = self
            .index
            .get(&header.prev_hash)
            .ok_or(ChainError::UnknownParent {
                hash,
                parent: header.prev_hash,
            })?;
        if parent.status.is_failed() {
            return Err(ChainError::KnownInvalid {
                hash: header.prev_hash,
            });
        }
        let context = self.header_context(&header.prev_hash, now_ms)?;
        validate_header(self.params, header, &context)
            .map_err(|error| ChainError::Invalid { hash, error })?;
        let work = header
            .bits
            .to_target()
            .map_err(|_| ChainError::Invalid {
                hash,
                error: ConsensusError::BadBits {
                    got: header.bits,
                    expected: context.required_bits,
                },
            })?
            .to_work();
        Ok((hash, self.index.add_header(hash, header, work)))
    }

    /// Checks headers in order (each may build on the one before) and adds them to the
    /// index. Known headers are skipped.
    ///
    /// What it added is durable when it returns. Headers it already had commit nothing and
    /// sync nothing: blocks a sync left unsynced ([`ChainState::accept_block_deferring_sync`])
    /// stay so, and a peer repeating known headers (or compact blocks, whose header comes
    /// here) cannot force a sync of the disk for each.
    ///
    /// # Errors
    /// The first header that does not connect or breaks a rule; headers before it are kept.
    pub fn accept_headers(&mut self, headers: &[Header], now_ms: u64) -> Result<usize, ChainError> {
        self.guarded(|state| {
            let commits_before = state.unsynced_commits;
            let result = state.accept_headers_unsynced(headers, now_ms);
            if state.unsynced_commits > commits_before {
                state.sync_store(false)?;
            }
            result
        })
    }

    pub(super) fn accept_headers_unsynced(
        &mut self,
        headers: &[Header],
        now_ms: u64,
    ) -> Result<usize, ChainError> {
        let mut added = Vec::new();
        let mut failure = None;
        for header in headers {
            let hash = header.compute_hash();
            if let Some(record) = self.index.get(&hash) {
                if record.status.is_failed() {
                    failure = Some(ChainError::KnownInvalid { hash });
                    break;
                }
                continue;
            }
            match self.index_new_header(header, now_ms) {
                Ok((hash, record)) => added.push((hash, record)),
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        if !added.is_empty() {
            let write = self.begin_write()?;
            {
                let mut table = write.open_table(BLOCK_INDEX)?;
                for (hash, record) in &added {
                    table.insert(hash.0.as_slice(), record.encode_to_vec().as_slice())?;
                }
            }
            self.commit(write)?;
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(added.len()),
        }
    }

    /// Accepts a block: checks it, stores it, and moves the main chain to the most-work
    /// valid branch. Events describing any change wait in [`ChainState::take_events`].
    ///
    /// # Errors
    /// [`ChainError::Invalid`] if the block (or the ancestor it needed) broke a rule,
    /// [`ChainError::KnownInvalid`] if it is known bad; storage failures.
    pub fn accept_block(&mut self, block: Block, now_ms: u64) -> Result<BlockOutcome, ChainError> {
        self.guarded(|state| {
            let result = state.accept_block_unsynced(block, now_ms);
            // Whatever the outcome, what was committed becomes durable before the caller
            // hears.
            state.sync_store(false)?;
            result
        })
    }

    /// [`ChainState::accept_block`] for a block nobody waits on (one from a peer): its
    /// commits are not synced at once, but once [`MAX_DEFERRED_SYNC_MS`] have passed
    /// since the first unsynced one (by `now_ms`) or a thousand commits have piled up, and
    /// by any synced call or [`ChainState::sync`]. A crash loses at most those blocks
    /// (the store reopens consistent at an earlier tip, and the peers send them again);
    /// an in-order sync pays one disk sync a second instead of one a block.
    ///
    /// # Errors
    /// As [`ChainState::accept_block`].
    pub fn accept_block_deferring_sync(
        &mut self,
        block: Block,
        now_ms: u64,
    ) -> Result<BlockOutcome, ChainError> {
        self.guarded(|state| {
            let result = state.accept_block_unsynced(block, now_ms);
            if state.unsynced_commits > 0 {
                let first = *state.first_deferred_ms.get_or_insert(now_ms);
                if now_ms.saturating_sub(first) >= MAX_DEFERRED_SYNC_MS
                    || state.unsynced_commits >= UNSYNCED_COMMITS_BEFORE_SYNC
                {
                    state.sync_store(true)?;
                }
            }
            result
        })
    }

    pub(super) fn accept_block_unsynced(
        &mut self,
        block: Block,
        now_ms: u64,
    ) -> Result<BlockOutcome, ChainError> {
        let hash = block.compute_hash();
        let outcome = self.accept_one_block(hash, block, now_ms)?;
        if matches!(outcome, BlockOutcome::SideBranch | BlockOutcome::MainChain) {
            self.accept_waiting_orphans(hash, now_ms)?;
        }
        // An orphan may have moved the chain past this block.
        Ok(match outcome {
            BlockOutcome::SideBranch | BlockOutcome::MainChain if self.is_on_main_chain(&hash) => {
                BlockOutcome::MainChain
            }
            BlockOutcome::MainChain => BlockOutcome::SideBranch,
            other => other,
        })
    }

    pub(super) fn accept_waiting_orphans(
        &mut self,
        parent: BlockHash,
        now_ms: u64,
    ) -> Result<(), ChainError> {
        // Oldest first among the orphans whose parent is in, whatever their depth: a
        // grandchild that came before its uncle's child goes first too (see
        // `OrphanPool::take_oldest_child_of`).
        let mut parents = std::collections::HashSet::from([parent]);
        while let Some(orphan) = self.orphans.take_oldest_child_of(&parents) {
            let hash = orphan.compute_hash();
            match self.accept_one_block(hash, orphan, now_ms) {
                Ok(BlockOutcome::SideBranch | BlockOutcome::MainChain) => {
                    parents.insert(hash);
                }
                Ok(_) => {}
                Err(error) if error.is_invalid() => {
                    warn!(block = %hash, %error, "dropped an invalid orphan block");
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    pub(super) fn accept_one_block(
        &mut self,
        hash: BlockHash,
        block: Block,
        now_ms: u64,
    ) -> Result<BlockOutcome, ChainError> {
        let parent_hash = block.header.prev_hash;
        // A held orphan's body was checked against this header before it was held, so it
        // is the block this header names: another copy adds nothing, whatever its body.
        if self.orphans.contains(&hash) {
            return Ok(BlockOutcome::Orphan {
                missing_parent: parent_hash,
            });
        }
        let mut new_record = None;
        match self.index.get(&hash) {
            Some(record) if record.status.is_failed() => {
                return Err(ChainError::KnownInvalid { hash });
            }
            Some(record) if record.status == BlockStatus::DataStored => {
                return Ok(BlockOutcome::Duplicate);
            }
            // Its header was stored once, when its branch could still overtake the active
            // chain. If the tip has since left it far behind, and it is not on the way to
            // the best header (what the node downloads), nobody asked for this block:
            // storing it would let a peer fill the disk with blocks whose bodies are never
            // checked against coins, for headers it stored while they were cheap.
            Some(record)
                if record.chain_work < self.anti_dos_work_threshold()
                    && self
                        .index
                        .ancestor(&self.index.best_header(), record.height)
                        != Some(hash) =>
            {
                debug!(block = %hash, "refused an unrequested block on a branch left far behind");
                return Ok(BlockOutcome::LowWork);
            }
            Some(_) => {}
            None => {
                if self.index.get(&parent_hash).is_none() {
                    let size = block.compute_size();
                    if size > self.params.max_block_bytes {
                        return Err(ChainError::Invalid {
                            hash,
                            error: ConsensusError::BlockTooLarge {
                                size,
                                max: self.params.max_block_bytes,
                            },
                        });
                    }
                    // Check the proof of work before holding the block, so orphans cost
                    // their sender real work.
                    let target_met = block.header.bits.to_target().is_ok_and(|target| {
                        target <= self.params.pow_limit_target() && target.is_met_by(hash)
                    });
                    if !target_met {
                        return Err(ChainError::Invalid {
                            hash,
                            error: ConsensusError::BadProofOfWork {
                                hash,
                                bits: block.header.bits,
                            },
                        });
                    }
                    // Check the body before holding it too: the pool keeps one block per
                    // header hash, so a copy of a real header with a tampered body, held
                    // first, would turn the real block away when it came. Refused here, it
                    // leaves no trace, and the real block can still be held.
                    body_txids(hash, &block)?;
                    debug!(block = %hash, parent = %parent_hash, "holding an orphan block");
                    self.orphans.insert(hash, block, size);
                    return Ok(BlockOutcome::Orphan {
                        missing_parent: parent_hash,
                    });
                }
                // The node asks only for blocks whose headers it stored, and those passed
                // the work check, so this block came unasked: it is kept only on a branch
                // that could still overtake the active chain, as its header alone would be
                // (low_work.rs). Otherwise a peer could store cheap blocks (and their
                // headers) far below the tip. A header that fails the check's own proof of
                // work goes on to `index_new_header`, which says why in full.
                if let Ok(Some(work)) = self.headers_chain_work(std::slice::from_ref(&block.header))
                    && work < self.anti_dos_work_threshold()
                {
                    debug!(block = %hash, "refused an unrequested block on a low-work branch");
                    return Ok(BlockOutcome::LowWork);
                }
                new_record = Some(self.index_new_header(&block.header, now_ms)?);
            }
        }
        let record = self.index.record(&hash);

        // A body that does not match its header says nothing about the header: reject it
        // without marking the block, or anyone could poison a valid header with junk. The
        // header itself passed its checks, so it stays indexed.
        let txids = match body_txids(hash, &block) {
            Ok(txids) => txids,
            Err(error) => {
                if let Some((hash, _)) = new_record {
                    self.persist_record(hash)?;
                }
                return Err(error);
            }
        };
        if let Err(error) =
            validate_block_structure_with_txids(self.params, &block, record.height, &txids)
        {
            self.mark_failed(hash, BlockStatus::Failed)?;
            return Err(ChainError::Invalid { hash, error });
        }

        let mut stored = record;
        stored.status = BlockStatus::DataStored;
        if self.is_next_tip(hash, &stored) {
            return self.store_and_connect(hash, stored, block, &txids);
        }
        let write = self.begin_write()?;
        write_block_and_record(&write, hash, &block, &stored)?;
        self.commit(write)?;
        self.index.set_status(&hash, stored.status);
        self.note_chain_data(hash);

        if let Some(error) = self.activate_best_chain(Some(hash))? {
            return Err(error);
        }
        Ok(if self.is_on_main_chain(&hash) {
            BlockOutcome::MainChain
        } else {
            BlockOutcome::SideBranch
        })
    }

    /// True if `hash`, whose data is about to be stored, is exactly what
    /// `activate_best_chain` would connect next and nothing waits on it: a child of the tip
    /// with more work, ahead of every other candidate, with no stored children waiting for
    /// its data. The common case (a miner's block, a block of an in-order sync).
    pub(super) fn is_next_tip(&self, hash: BlockHash, stored: &IndexRecord) -> bool {
        let tip = self.tip();
        stored.header.prev_hash == tip.hash
            && stored.chain_work > tip.work
            && !self.waiting_for_parent.contains_key(&hash)
            && self
                .candidates
                .first()
                .is_none_or(|first| candidate_key(hash, stored) < *first)
    }

    /// The fast path of [`ChainState::is_next_tip`]: stores the block and connects it in
    /// one write transaction, without reading it back from the store. A block that breaks
    /// a rule is marked failed (its data is not kept), as the slow path would.
    pub(super) fn store_and_connect(
        &mut self,
        hash: BlockHash,
        stored: IndexRecord,
        block: Block,
        txids: &[Txid],
    ) -> Result<BlockOutcome, ChainError> {
        let write = self.begin_write()?;
        let connected = (|| {
            write_block_and_record(&write, hash, &block, &stored)?;
            self.write_connect(&write, hash, &stored, &block, txids)
        })();
        match connected {
            Ok(changes) => self.commit_with(write, |overlay| overlay.push(changes))?,
            Err(error) => {
                write.abort()?;
                if let ChainError::Invalid {
                    hash: failed,
                    error: rule,
                } = &error
                {
                    warn!(block = %failed, rule = rule.rule(), %rule, "block failed to connect");
                    self.index.set_status(&hash, stored.status);
                    self.mark_failed(hash, BlockStatus::Failed)?;
                }
                return Err(error);
            }
        }
        self.index.set_status(&hash, stored.status);
        self.index.set_chain_data(&hash, true);
        self.index.push_main(hash);
        let tip = self.tip();
        self.candidates
            .retain(|(Reverse(work), _, candidate)| *work > tip.work && *candidate != hash);
        debug!(block = %hash, height = stored.height.0, "connected block");
        self.events.push(ChainEvent::BlockConnected {
            hash,
            height: stored.height,
            block: Arc::new(block),
        });
        self.events.push(ChainEvent::TipChanged {
            hash,
            height: tip.height,
            work: tip.work,
            reorg_depth: 0,
        });
        // After the events: the block is connected whether or not the flush fails.
        self.flush_if_over_budget()?;
        Ok(BlockOutcome::MainChain)
    }
}

/// The block's transaction ids, if its body is the one its header commits to (through the
/// Merkle root) and is not empty. Failing this says nothing about the header, only that
/// this copy of the block was damaged or tampered with, so callers must not mark the
/// header failed.
fn body_txids(hash: BlockHash, block: &Block) -> Result<Vec<Txid>, ChainError> {
    let txids = block.compute_txids();
    let computed = compute_merkle_root(&txids);
    if computed != block.header.merkle_root || block.transactions.is_empty() {
        return Err(ChainError::Invalid {
            hash,
            error: ConsensusError::BadMerkleRoot {
                header: block.header.merkle_root,
                computed,
            },
        });
    }
    Ok(txids)
}

/// Stores a block's data and its index record in `write`.
fn write_block_and_record(
    write: &WriteTransaction,
    hash: BlockHash,
    block: &Block,
    record: &IndexRecord,
) -> Result<(), ChainError> {
    write
        .open_table(BLOCKS)?
        .insert(hash.0.as_slice(), block.encode_to_vec().as_slice())?;
    write
        .open_table(BLOCK_INDEX)?
        .insert(hash.0.as_slice(), record.encode_to_vec().as_slice())?;
    Ok(())
}
