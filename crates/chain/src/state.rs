//! `ChainState`: accepts headers and blocks, keeps the most-work valid chain connected, and
//! is the only writer of the store.
//!
//! ```text
//!   accept_headers ──validate_header──▶ block index (memory + disk)
//!   accept_block ──header──▶ merkle root ──validate_block_structure──▶ store block data
//!        │ (parent unknown: orphan pool)                                   │
//!        ▼                                                                 ▼
//!   activate_best_chain: while a candidate has more work than the tip:
//!        disconnect the tip down to the fork (undo data) ──▶ connect the branch block by
//!        block (connect_block_transactions against the UTXO set); a block that fails is
//!        marked failed with its descendants, and the best remaining candidate is tried.
//!   Every connect or disconnect is one redb write transaction: UTXO set, undo data,
//!   indexes and tip move together or not at all.
//! ```
//!
//! The block index (headers, heights, work, status) is kept in memory as well as on disk,
//! so choosing a chain never reads the disk; block data, the UTXO set and the indexes stay
//! on disk.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use powchain_consensus::difficulty::compute_median_time_past;
use powchain_consensus::encode::{Decode, Encode};
use powchain_consensus::merkle::compute_merkle_root;
use powchain_consensus::signature::ParallelVerifier;
use powchain_consensus::validation::{
    HeaderContext, HeaderSummary, connect_block_transactions, next_required_bits,
    validate_block_structure, validate_header,
};
use powchain_consensus::{
    Address, Block, BlockHash, BlockHeight, Coin, ConsensusError, Header, Network, OutPoint,
    Params, Work,
};
use redb::{Database, ReadableDatabase, ReadableTable, WriteTransaction};
use tracing::{debug, info, warn};

use crate::error::{ChainError, corrupt};
use crate::event::ChainEvent;
use crate::orphan::OrphanPool;
use crate::reader::ChainReader;
use crate::store::{
    ADDRESS_TXS, ADDRESS_UTXO, BLOCK_INDEX, BLOCKS, BlockStatus, HEIGHTS, IndexRecord, META,
    META_GENESIS, META_NETWORK, META_SCHEMA, META_TIP, SCHEMA_VERSION, TX_INDEX, TxLocation, UNDO,
    UTXO, address_tx_key, address_utxo_key, coin_bytes, coin_from_bytes, decode_undo, encode_undo,
    outpoint_key, tx_location_bytes,
};

/// How the chain state runs.
#[derive(Clone, Copy, Debug)]
pub struct ChainOptions {
    /// Threads that verify signatures while connecting a block.
    pub signature_threads: usize,
}

impl Default for ChainOptions {
    fn default() -> ChainOptions {
        ChainOptions {
            signature_threads: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

/// The tip of the main chain.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ChainTip {
    /// Its hash.
    pub hash: BlockHash,
    /// Its height.
    pub height: BlockHeight,
    /// Total work of the chain.
    pub work: Work,
    /// Its header.
    pub header: Header,
}

/// What happened to a block handed to [`ChainState::accept_block`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BlockOutcome {
    /// Its parent is unknown; it waits in the orphan pool.
    Orphan {
        /// The parent to fetch.
        missing_parent: BlockHash,
    },
    /// Already stored.
    Duplicate,
    /// Stored on a branch with no more work than the main chain.
    SideBranch,
    /// Stored and now on the main chain.
    MainChain,
}

type CandidateKey = (Reverse<Work>, u64, BlockHash);

/// The chain state: block index, main chain, UTXO set and indexes.
pub struct ChainState {
    params: &'static Params,
    db: Arc<Database>,
    index: HashMap<BlockHash, IndexRecord>,
    main_chain: Vec<BlockHash>,
    /// Blocks whose data, and all ancestors' data, are stored, and that have not failed.
    chain_data: HashSet<BlockHash>,
    /// Stored blocks waiting for an ancestor's data, by parent.
    waiting_for_parent: HashMap<BlockHash, Vec<BlockHash>>,
    /// Blocks with chain data and more work than the tip: where the chain may move next.
    candidates: BTreeSet<CandidateKey>,
    best_header: BlockHash,
    orphans: OrphanPool,
    next_sequence: u64,
    verifier: ParallelVerifier,
    events: Vec<ChainEvent>,
}

fn candidate_key(hash: BlockHash, record: &IndexRecord) -> CandidateKey {
    (Reverse(record.chain_work), record.sequence, hash)
}

fn hash_from_row(bytes: &[u8], what: &str) -> Result<BlockHash, ChainError> {
    bytes
        .try_into()
        .map(BlockHash)
        .map_err(|_| ChainError::Corrupt(format!("{what} is not a 32-byte hash")))
}

impl ChainState {
    /// Opens the chain stored at `path` (a file), creating it with the genesis block of
    /// `network` if it does not exist.
    ///
    /// # Errors
    /// [`ChainError::ForeignDataDir`] for another network's store, [`ChainError::Corrupt`]
    /// for a damaged one, [`ChainError::Storage`] if the file cannot be opened.
    pub fn open(
        path: &Path,
        network: Network,
        options: ChainOptions,
    ) -> Result<ChainState, ChainError> {
        let params = network.params();
        let db = Database::builder().create(path)?;
        Self::initialise(&db, params, path)?;
        let mut state = ChainState {
            params,
            db: Arc::new(db),
            index: HashMap::new(),
            main_chain: Vec::new(),
            chain_data: HashSet::new(),
            waiting_for_parent: HashMap::new(),
            candidates: BTreeSet::new(),
            best_header: params.genesis_hash(),
            orphans: OrphanPool::default(),
            next_sequence: 0,
            verifier: ParallelVerifier {
                threads: options.signature_threads.max(1),
            },
            events: Vec::new(),
        };
        state.load()?;
        // A crash in the middle of a reorganisation leaves a lighter tip than the best
        // stored branch; finish the switch now.
        state.activate_best_chain(None)?;
        state.events.clear();
        Ok(state)
    }

    fn initialise(db: &Database, params: &'static Params, path: &Path) -> Result<(), ChainError> {
        let write = db.begin_write()?;
        {
            let mut meta = write.open_table(META)?;
            let stored_network = meta.get(META_NETWORK)?.map(|row| row.value().to_vec());
            match stored_network {
                Some(name) => {
                    let found = String::from_utf8_lossy(&name).into_owned();
                    let genesis = meta.get(META_GENESIS)?.map(|row| row.value().to_vec());
                    if found != params.network.name()
                        || genesis.as_deref() != Some(params.genesis_hash().0.as_slice())
                    {
                        return Err(ChainError::ForeignDataDir {
                            path: path.to_path_buf(),
                            expected: format!(
                                "{} (genesis {})",
                                params.network,
                                params.genesis_hash()
                            ),
                            found,
                        });
                    }
                    let schema = meta.get(META_SCHEMA)?.map(|row| row.value().to_vec());
                    if schema.as_deref() != Some(SCHEMA_VERSION.to_le_bytes().as_slice()) {
                        return Err(ChainError::Corrupt(format!(
                            "unknown store schema {schema:?}, this build writes {SCHEMA_VERSION}"
                        )));
                    }
                }
                None => {
                    let genesis = params.genesis();
                    let hash = params.genesis_hash();
                    let record = IndexRecord {
                        header: genesis.header,
                        height: BlockHeight::GENESIS,
                        chain_work: genesis
                            .header
                            .bits
                            .to_target()
                            .map_err(|error| ChainError::Corrupt(format!("genesis bits: {error}")))?
                            .to_work(),
                        status: BlockStatus::DataStored,
                        sequence: 0,
                    };
                    meta.insert(META_NETWORK, params.network.name().as_bytes())?;
                    meta.insert(META_GENESIS, hash.0.as_slice())?;
                    meta.insert(META_SCHEMA, SCHEMA_VERSION.to_le_bytes().as_slice())?;
                    meta.insert(META_TIP, hash.0.as_slice())?;
                    write
                        .open_table(BLOCKS)?
                        .insert(hash.0.as_slice(), genesis.encode_to_vec().as_slice())?;
                    write
                        .open_table(BLOCK_INDEX)?
                        .insert(hash.0.as_slice(), record.encode_to_vec().as_slice())?;
                    write.open_table(HEIGHTS)?.insert(0, hash.0.as_slice())?;
                    info!(network = %params.network, genesis = %hash, "created a new chain");
                }
            }
            // Create every table so readers never meet a missing one.
            write.open_table(UTXO)?;
            write.open_table(UNDO)?;
            write.open_table(TX_INDEX)?;
            write.open_table(ADDRESS_UTXO)?;
            write.open_table(ADDRESS_TXS)?;
        }
        write.commit()?;
        Ok(())
    }

    fn load(&mut self) -> Result<(), ChainError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(BLOCK_INDEX)?;
        for row in table.iter()? {
            let (key, value) = row?;
            let hash = hash_from_row(key.value(), "block index key")?;
            let record =
                IndexRecord::decode_exact(value.value()).map_err(corrupt("index record"))?;
            self.next_sequence = self.next_sequence.max(record.sequence + 1);
            self.index.insert(hash, record);
        }
        let tip_bytes = read
            .open_table(META)?
            .get(META_TIP)?
            .ok_or_else(|| ChainError::Corrupt("no tip recorded".into()))?
            .value()
            .to_vec();
        let tip = hash_from_row(&tip_bytes, "tip")?;
        let mut cursor = tip;
        let mut reversed = Vec::new();
        loop {
            let record = self.index.get(&cursor).ok_or_else(|| {
                ChainError::Corrupt(format!("main-chain block {cursor} missing from the index"))
            })?;
            reversed.push(cursor);
            if record.height == BlockHeight::GENESIS {
                break;
            }
            cursor = record.header.prev_hash;
        }
        if cursor != self.params.genesis_hash() {
            return Err(ChainError::Corrupt(
                "the main chain does not start at genesis".into(),
            ));
        }
        reversed.reverse();
        self.main_chain = reversed;
        let tip_height = self.main_chain.len() as u64 - 1;
        let stored_at_tip = read
            .open_table(HEIGHTS)?
            .get(tip_height)?
            .map(|row| row.value().to_vec());
        if stored_at_tip.as_deref() != Some(tip.0.as_slice()) {
            return Err(ChainError::Corrupt(format!(
                "height index disagrees with the tip at height {tip_height}"
            )));
        }

        // Which stored blocks have all their ancestors' data: parents before children.
        let mut by_height: Vec<(BlockHeight, BlockHash)> = self
            .index
            .iter()
            .map(|(hash, record)| (record.height, *hash))
            .collect();
        by_height.sort_unstable();
        for (_, hash) in by_height {
            let record = self.index[&hash];
            if record.status == BlockStatus::DataStored {
                if record.height == BlockHeight::GENESIS
                    || self.chain_data.contains(&record.header.prev_hash)
                {
                    self.chain_data.insert(hash);
                } else {
                    self.waiting_for_parent
                        .entry(record.header.prev_hash)
                        .or_default()
                        .push(hash);
                }
            }
            if !record.status.is_failed()
                && record.chain_work > self.index[&self.best_header].chain_work
            {
                self.best_header = hash;
            }
        }
        self.rebuild_candidates();
        info!(
            height = tip_height,
            tip = %tip,
            headers = self.index.len(),
            "opened the chain"
        );
        Ok(())
    }

    /// The network's parameters.
    pub fn params(&self) -> &'static Params {
        self.params
    }

    /// A reader for consistent snapshots of the stored chain.
    pub fn reader(&self) -> ChainReader {
        ChainReader {
            db: Arc::clone(&self.db),
            params: self.params,
        }
    }

    /// Events since the last call, oldest first.
    pub fn take_events(&mut self) -> Vec<ChainEvent> {
        std::mem::take(&mut self.events)
    }

    /// The main chain's tip.
    pub fn tip(&self) -> ChainTip {
        let hash = *self
            .main_chain
            .last()
            .expect("the main chain always holds genesis");
        let record = &self.index[&hash];
        ChainTip {
            hash,
            height: record.height,
            work: record.chain_work,
            header: record.header,
        }
    }

    /// The index record of a known block or header.
    pub fn record(&self, hash: &BlockHash) -> Option<&IndexRecord> {
        self.index.get(hash)
    }

    /// The main-chain hash at `height`.
    pub fn hash_at(&self, height: BlockHeight) -> Option<BlockHash> {
        usize::try_from(height.0)
            .ok()
            .and_then(|height| self.main_chain.get(height))
            .copied()
    }

    /// True if `hash` is on the main chain.
    pub fn is_on_main_chain(&self, hash: &BlockHash) -> bool {
        self.index
            .get(hash)
            .is_some_and(|record| self.hash_at(record.height) == Some(*hash))
    }

    /// True if the block's transactions are stored (or it waits in the orphan pool).
    pub fn has_block(&self, hash: &BlockHash) -> bool {
        self.orphans.contains(hash)
            || self
                .index
                .get(hash)
                .is_some_and(|record| record.status == BlockStatus::DataStored)
    }

    /// The valid header with the most work: where the chain will go once blocks arrive.
    pub fn best_header(&self) -> (BlockHash, IndexRecord) {
        (self.best_header, self.index[&self.best_header])
    }

    /// Number of orphan blocks held.
    pub fn orphan_count(&self) -> usize {
        self.orphans.len()
    }

    /// The ancestor of `hash` at `height`, walking back until the main chain.
    pub fn ancestor(&self, hash: &BlockHash, height: BlockHeight) -> Option<BlockHash> {
        let mut cursor = *hash;
        loop {
            let record = self.index.get(&cursor)?;
            if record.height < height {
                return None;
            }
            if record.height == height {
                return Some(cursor);
            }
            if self.hash_at(record.height) == Some(cursor) {
                return self.hash_at(height);
            }
            cursor = record.header.prev_hash;
        }
    }

    fn summary(&self, hash: &BlockHash) -> Option<HeaderSummary> {
        self.index.get(hash).map(|record| HeaderSummary {
            height: record.height,
            time_ms: record.header.time_ms,
            bits: record.header.bits,
        })
    }

    /// What a child of `parent` is checked against, with the clock at `now_ms`.
    ///
    /// # Errors
    /// [`ChainError::Corrupt`] if the parent's ancestry is incomplete.
    pub fn header_context(
        &self,
        parent: &BlockHash,
        now_ms: u64,
    ) -> Result<HeaderContext, ChainError> {
        let summary = self
            .summary(parent)
            .ok_or_else(|| ChainError::Corrupt(format!("unknown parent {parent}")))?;
        let anchor = self
            .ancestor(parent, Params::ASERT_ANCHOR_HEIGHT)
            .and_then(|anchor| self.summary(&anchor));
        let required_bits = next_required_bits(self.params, summary, anchor)
            .ok_or_else(|| ChainError::Corrupt(format!("no difficulty anchor below {parent}")))?;
        let mut times = Vec::with_capacity(11);
        let mut cursor = *parent;
        while times.len() < 11 {
            let Some(record) = self.index.get(&cursor) else {
                break;
            };
            times.push(record.header.time_ms);
            if record.height == BlockHeight::GENESIS {
                break;
            }
            cursor = record.header.prev_hash;
        }
        times.reverse();
        Ok(HeaderContext {
            required_bits,
            median_time_past_ms: compute_median_time_past(&times),
            now_ms,
        })
    }

    /// Checks a header against its parent and adds it to the index in memory.
    fn index_new_header(
        &mut self,
        header: &Header,
        now_ms: u64,
    ) -> Result<(BlockHash, IndexRecord), ChainError> {
        let hash = header.compute_hash();
        let parent = *self
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
        let record = IndexRecord {
            header: *header,
            height: parent.height.next(),
            chain_work: parent.chain_work.saturating_add(work),
            status: BlockStatus::HeaderValid,
            sequence: self.next_sequence,
        };
        self.next_sequence += 1;
        self.index.insert(hash, record);
        if record.chain_work > self.index[&self.best_header].chain_work {
            self.best_header = hash;
        }
        Ok((hash, record))
    }

    /// Checks headers in order (each may build on the one before) and adds them to the
    /// index. Known headers are skipped.
    ///
    /// # Errors
    /// The first header that does not connect or breaks a rule; headers before it are kept.
    pub fn accept_headers(&mut self, headers: &[Header], now_ms: u64) -> Result<usize, ChainError> {
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
            let write = self.db.begin_write()?;
            {
                let mut table = write.open_table(BLOCK_INDEX)?;
                for (hash, record) in &added {
                    table.insert(hash.0.as_slice(), record.encode_to_vec().as_slice())?;
                }
            }
            write.commit()?;
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

    fn accept_waiting_orphans(&mut self, parent: BlockHash, now_ms: u64) -> Result<(), ChainError> {
        let mut parents = vec![parent];
        while let Some(parent) = parents.pop() {
            for orphan in self.orphans.take_children(&parent) {
                let hash = orphan.compute_hash();
                match self.accept_one_block(hash, orphan, now_ms) {
                    Ok(BlockOutcome::SideBranch | BlockOutcome::MainChain) => parents.push(hash),
                    Ok(_) => {}
                    Err(error) if error.is_invalid() => {
                        warn!(block = %hash, %error, "dropped an invalid orphan block");
                    }
                    Err(error) => return Err(error),
                }
            }
        }
        Ok(())
    }

    fn accept_one_block(
        &mut self,
        hash: BlockHash,
        block: Block,
        now_ms: u64,
    ) -> Result<BlockOutcome, ChainError> {
        let parent_hash = block.header.prev_hash;
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
            Some(_) => {}
            None => {
                if !self.index.contains_key(&parent_hash) {
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
                    debug!(block = %hash, parent = %parent_hash, "holding an orphan block");
                    self.orphans.insert(hash, block, size);
                    return Ok(BlockOutcome::Orphan {
                        missing_parent: parent_hash,
                    });
                }
                new_record = Some(self.index_new_header(&block.header, now_ms)?);
            }
        }
        let record = self.index[&hash];

        // A body that does not match its header says nothing about the header: reject it
        // without marking the block, or anyone could poison a valid header with junk.
        let txids = block.compute_txids();
        let computed = compute_merkle_root(&txids);
        if computed != block.header.merkle_root || block.transactions.is_empty() {
            if let Some((hash, _)) = new_record {
                self.persist_record(hash)?;
            }
            return Err(ChainError::Invalid {
                hash,
                error: ConsensusError::BadMerkleRoot {
                    header: block.header.merkle_root,
                    computed,
                },
            });
        }
        if let Err(error) = validate_block_structure(self.params, &block, record.height) {
            self.mark_failed(hash, BlockStatus::Failed)?;
            return Err(ChainError::Invalid { hash, error });
        }

        let mut stored = record;
        stored.status = BlockStatus::DataStored;
        let write = self.db.begin_write()?;
        {
            write
                .open_table(BLOCKS)?
                .insert(hash.0.as_slice(), block.encode_to_vec().as_slice())?;
            write
                .open_table(BLOCK_INDEX)?
                .insert(hash.0.as_slice(), stored.encode_to_vec().as_slice())?;
        }
        write.commit()?;
        self.index.insert(hash, stored);
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

    fn persist_record(&self, hash: BlockHash) -> Result<(), ChainError> {
        let record = self.index[&hash];
        let write = self.db.begin_write()?;
        write
            .open_table(BLOCK_INDEX)?
            .insert(hash.0.as_slice(), record.encode_to_vec().as_slice())?;
        write.commit()?;
        Ok(())
    }

    /// Records that `hash` has its data; if its parent has chain data, so do it and any
    /// stored descendants that were waiting.
    fn note_chain_data(&mut self, hash: BlockHash) {
        let parent = self.index[&hash].header.prev_hash;
        if !self.chain_data.contains(&parent) {
            self.waiting_for_parent
                .entry(parent)
                .or_default()
                .push(hash);
            return;
        }
        let tip_work = self.tip().work;
        let mut ready = vec![hash];
        while let Some(next) = ready.pop() {
            let record = self.index[&next];
            if record.status != BlockStatus::DataStored {
                continue;
            }
            self.chain_data.insert(next);
            if record.chain_work > tip_work {
                self.candidates.insert(candidate_key(next, &record));
            }
            if let Some(children) = self.waiting_for_parent.remove(&next) {
                ready.extend(children);
            }
        }
    }

    fn rebuild_candidates(&mut self) {
        let tip_work = self.tip().work;
        self.candidates = self
            .chain_data
            .iter()
            .filter_map(|hash| {
                let record = &self.index[hash];
                (record.chain_work > tip_work && !record.status.is_failed())
                    .then(|| candidate_key(*hash, record))
            })
            .collect();
    }

    /// Marks a block as failed (or as descending from one) in memory and on disk.
    fn mark_failed(&mut self, hash: BlockHash, status: BlockStatus) -> Result<(), ChainError> {
        let Some(record) = self.index.get_mut(&hash) else {
            return Ok(());
        };
        record.status = status;
        let record = *record;
        self.chain_data.remove(&hash);
        self.candidates.remove(&candidate_key(hash, &record));
        self.persist_record(hash)?;
        let best = self.index[&self.best_header];
        if best.status.is_failed() || self.descends_from_failed(&best) {
            self.best_header = self
                .index
                .iter()
                .filter(|(_, record)| {
                    !record.status.is_failed() && !self.descends_from_failed(record)
                })
                .max_by_key(|(_, record)| (record.chain_work, Reverse(record.sequence)))
                .map(|(hash, _)| *hash)
                .unwrap_or(self.params.genesis_hash());
        }
        Ok(())
    }

    fn descends_from_failed(&self, record: &IndexRecord) -> bool {
        let mut cursor = record.header.prev_hash;
        while let Some(parent) = self.index.get(&cursor) {
            if parent.status.is_failed() {
                return true;
            }
            if self.hash_at(parent.height) == Some(cursor) {
                return false;
            }
            cursor = parent.header.prev_hash;
        }
        false
    }

    /// Moves the main chain to the candidate with the most work, trying the next best when
    /// a block fails. Returns the rule broken by `submitted` or an ancestor it needed.
    fn activate_best_chain(
        &mut self,
        submitted: Option<BlockHash>,
    ) -> Result<Option<ChainError>, ChainError> {
        let start = self.tip();
        let mut disconnected = 0u64;
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
                let record = self.index[&cursor];
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
                self.disconnect_tip()?;
                disconnected += 1;
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
                        self.rebuild_candidates();
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
        let tip = self.tip();
        if tip.hash != start.hash {
            if disconnected > 0 {
                info!(depth = disconnected, from = %start.hash, to = %tip.hash, height = tip.height.0, "reorganised the chain");
            }
            self.events.push(ChainEvent::TipChanged {
                hash: tip.hash,
                height: tip.height,
                work: tip.work,
                reorg_depth: disconnected,
            });
        }
        Ok(submitted_error)
    }

    fn load_block(&self, hash: &BlockHash) -> Result<Block, ChainError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(BLOCKS)?;
        let row = table
            .get(hash.0.as_slice())?
            .ok_or_else(|| ChainError::Corrupt(format!("block {hash} has no stored data")))?;
        Block::decode_exact(row.value()).map_err(corrupt("block"))
    }

    /// Connects the child `hash` of the current tip in one write transaction.
    fn connect_tip(&mut self, hash: BlockHash) -> Result<(), ChainError> {
        let record = self.index[&hash];
        let block = self.load_block(&hash)?;
        let write = self.db.begin_write()?;
        match self.write_connect(&write, hash, &record, &block) {
            Ok(()) => write.commit()?,
            Err(error) => {
                write.abort()?;
                return Err(error);
            }
        }
        self.main_chain.push(hash);
        self.candidates.remove(&candidate_key(hash, &record));
        debug!(block = %hash, height = record.height.0, "connected block");
        self.events.push(ChainEvent::BlockConnected {
            hash,
            height: record.height,
            block: Arc::new(block),
        });
        Ok(())
    }

    fn write_connect(
        &self,
        write: &WriteTransaction,
        hash: BlockHash,
        record: &IndexRecord,
        block: &Block,
    ) -> Result<(), ChainError> {
        let height = record.height;
        let txids = block.compute_txids();
        let mut utxo = write.open_table(UTXO)?;
        let mut view: HashMap<OutPoint, Coin> = HashMap::new();
        for transaction in &block.transactions {
            for input in transaction.spends() {
                if let Some(row) = utxo.get(outpoint_key(&input.prevout).as_slice())? {
                    view.insert(
                        input.prevout,
                        coin_from_bytes(row.value()).map_err(corrupt("coin"))?,
                    );
                }
            }
        }
        let connection =
            connect_block_transactions(self.params, block, &txids, height, &view, &self.verifier)
                .map_err(|error| ChainError::Invalid { hash, error })?;

        // Addresses of every output the block spends, for the history index.
        let mut spent_addresses: HashMap<OutPoint, Address> = view
            .iter()
            .map(|(outpoint, coin)| (*outpoint, coin.output.address))
            .collect();
        for (transaction, txid) in block.transactions.iter().zip(&txids) {
            for (vout, output) in transaction.outputs.iter().enumerate() {
                spent_addresses.insert(
                    OutPoint {
                        txid: *txid,
                        vout: vout as u32,
                    },
                    output.address,
                );
            }
        }

        let mut address_utxo = write.open_table(ADDRESS_UTXO)?;
        for (outpoint, coin) in &connection.spent {
            utxo.remove(outpoint_key(outpoint).as_slice())?;
            address_utxo.remove(address_utxo_key(&coin.output.address, outpoint).as_slice())?;
        }
        for (outpoint, coin) in &connection.created {
            let bytes = coin_bytes(coin);
            utxo.insert(outpoint_key(outpoint).as_slice(), bytes.as_slice())?;
            address_utxo.insert(
                address_utxo_key(&coin.output.address, outpoint).as_slice(),
                bytes.as_slice(),
            )?;
        }
        write
            .open_table(UNDO)?
            .insert(hash.0.as_slice(), encode_undo(&connection.spent).as_slice())?;
        let mut tx_index = write.open_table(TX_INDEX)?;
        let mut address_txs = write.open_table(ADDRESS_TXS)?;
        for (position, (transaction, txid)) in block.transactions.iter().zip(&txids).enumerate() {
            let location = TxLocation {
                block_hash: hash,
                position: position as u32,
            };
            tx_index.insert(txid.0.as_slice(), tx_location_bytes(&location).as_slice())?;
            for address in touched_addresses(transaction, &spent_addresses) {
                address_txs.insert(
                    address_tx_key(&address, height, txid).as_slice(),
                    [].as_slice(),
                )?;
            }
        }
        write
            .open_table(HEIGHTS)?
            .insert(height.0, hash.0.as_slice())?;
        write
            .open_table(META)?
            .insert(META_TIP, hash.0.as_slice())?;
        Ok(())
    }

    /// Disconnects the tip in one write transaction, restoring what it spent.
    fn disconnect_tip(&mut self) -> Result<(), ChainError> {
        let tip = self.tip();
        if tip.height == BlockHeight::GENESIS {
            return Err(ChainError::Corrupt(
                "asked to disconnect the genesis block".into(),
            ));
        }
        let block = self.load_block(&tip.hash)?;
        let write = self.db.begin_write()?;
        match self.write_disconnect(&write, &tip, &block) {
            Ok(()) => write.commit()?,
            Err(error) => {
                write.abort()?;
                return Err(error);
            }
        }
        self.main_chain.pop();
        let record = self.index[&tip.hash];
        if self.chain_data.contains(&tip.hash) {
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

    fn write_disconnect(
        &self,
        write: &WriteTransaction,
        tip: &ChainTip,
        block: &Block,
    ) -> Result<(), ChainError> {
        let mut undo_table = write.open_table(UNDO)?;
        let spent = {
            let row = undo_table.get(tip.hash.0.as_slice())?.ok_or_else(|| {
                ChainError::Corrupt(format!("no undo data for block {}", tip.hash))
            })?;
            decode_undo(row.value()).map_err(corrupt("undo data"))?
        };
        undo_table.remove(tip.hash.0.as_slice())?;
        let txids = block.compute_txids();
        let mut spent_addresses: HashMap<OutPoint, Address> = spent
            .iter()
            .map(|(outpoint, coin)| (*outpoint, coin.output.address))
            .collect();
        for (transaction, txid) in block.transactions.iter().zip(&txids) {
            for (vout, output) in transaction.outputs.iter().enumerate() {
                spent_addresses.insert(
                    OutPoint {
                        txid: *txid,
                        vout: vout as u32,
                    },
                    output.address,
                );
            }
        }
        let mut utxo = write.open_table(UTXO)?;
        let mut address_utxo = write.open_table(ADDRESS_UTXO)?;
        let mut tx_index = write.open_table(TX_INDEX)?;
        let mut address_txs = write.open_table(ADDRESS_TXS)?;
        for (transaction, txid) in block.transactions.iter().zip(&txids).rev() {
            for (vout, output) in transaction.outputs.iter().enumerate() {
                let outpoint = OutPoint {
                    txid: *txid,
                    vout: vout as u32,
                };
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
        write
            .open_table(META)?
            .insert(META_TIP, tip.header.prev_hash.0.as_slice())?;
        Ok(())
    }

    /// Hashes from the tip back to genesis, dense for the last ten blocks and then doubling
    /// the step: a peer finds the fork point from it whatever branch it is on.
    pub fn block_locator(&self) -> Vec<BlockHash> {
        let mut locator = Vec::new();
        let mut height = self.main_chain.len() as u64 - 1;
        let mut step = 1u64;
        loop {
            locator.push(self.main_chain[height as usize]);
            if height == 0 {
                break;
            }
            if locator.len() >= 10 {
                step *= 2;
            }
            height = height.saturating_sub(step);
        }
        locator
    }

    /// The height of the first locator hash on the main chain (genesis if none is).
    pub fn find_fork(&self, locator: &[BlockHash]) -> BlockHeight {
        locator
            .iter()
            .find_map(|hash| self.is_on_main_chain(hash).then(|| self.index[hash].height))
            .unwrap_or(BlockHeight::GENESIS)
    }

    /// Main-chain headers after the fork with `locator`, at most `max`, stopping after `stop`.
    pub fn headers_after(
        &self,
        locator: &[BlockHash],
        stop: Option<BlockHash>,
        max: usize,
    ) -> Vec<Header> {
        let start = self.find_fork(locator).0 as usize + 1;
        let mut headers = Vec::new();
        for hash in self.main_chain.iter().skip(start).take(max) {
            headers.push(self.index[hash].header);
            if Some(*hash) == stop {
                break;
            }
        }
        headers
    }

    /// Blocks to download next: those on the way to the best header whose data is
    /// missing, oldest first, at most `max`.
    pub fn blocks_to_download(&self, max: usize) -> Vec<BlockHash> {
        let mut path = Vec::new();
        let mut cursor = self.best_header;
        while !self.is_on_main_chain(&cursor) {
            let Some(record) = self.index.get(&cursor) else {
                break;
            };
            path.push((cursor, record.status));
            cursor = record.header.prev_hash;
        }
        path.reverse();
        path.into_iter()
            .filter(|(hash, status)| {
                *status == BlockStatus::HeaderValid && !self.orphans.contains(hash)
            })
            .map(|(hash, _)| hash)
            .take(max)
            .collect()
    }
}

/// Every address a transaction pays or spends from.
fn touched_addresses(
    transaction: &powchain_consensus::Transaction,
    spent_addresses: &HashMap<OutPoint, Address>,
) -> BTreeSet<Address> {
    transaction
        .outputs
        .iter()
        .map(|output| output.address)
        .chain(
            transaction
                .spends()
                .iter()
                .filter_map(|input| spent_addresses.get(&input.prevout).copied()),
        )
        .collect()
}
