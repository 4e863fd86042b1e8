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
//!   Every connect or disconnect is one redb write transaction: undo data, height and tip
//!   move together with the block's layer in the coin cache (or, for a block already
//!   flushed, with its rows in the tables), or not at all.
//! ```
//!
//! Writes and syncs: every write transaction commits without waiting for the disk, and each
//! public call that changes the store (`open`, `accept_headers`, `accept_block`) ends with
//! one sync, which makes all its commits durable at once. A call that connects a branch of
//! many blocks therefore pays for one sync, not one per block, and a crash rolls back to the
//! end of the last call that returned: whole calls, never part of a block.
//!
//! The block index (headers, heights, work, status) is kept in memory as well as on disk,
//! so choosing a chain never reads the disk; block data, the UTXO set and the indexes stay
//! on disk. The rows a block changes at random keys (coins, the address index, the
//! transaction index, the history) reach their tables in batches of many blocks through the
//! write-back cache of `overlay.rs`; the block's own write transaction stores what
//! rebuilds them (its data, its undo data, the tip). Each block also keeps a skip pointer
//! to a far ancestor (as Bitcoin Core's `pskip`), so finding an ancestor at any height takes O(log height) steps: no per-block
//! work grows with the length of the chain.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use powchain_consensus::encode::{Decode, Encode};
use powchain_consensus::merkle::compute_merkle_root;
use powchain_consensus::signature::{ParallelVerifier, SignatureVerifier};
use powchain_consensus::validation::{
    HeaderContext, connect_block_transactions, validate_block_structure_with_txids, validate_header,
};
use powchain_consensus::{
    Address, Block, BlockHash, BlockHeight, Coin, ConsensusError, Header, Network, OutPoint,
    Params, Txid, Work,
};
use redb::{Database, ReadableDatabase, ReadableTable, WriteTransaction};
use tracing::{debug, info, warn};

use crate::error::{ChainError, corrupt};
use crate::event::ChainEvent;
use crate::index::{BlockIndex, BrokenMainChain};
use crate::orphan::OrphanPool;
use crate::overlay::{BlockChanges, CoinChange, Overlay, spent_addresses, touched_addresses};
use crate::reader::ChainReader;
use crate::store::{
    ADDRESS_TXS, ADDRESS_UTXO, BLOCK_INDEX, BLOCKS, BlockStatus, HEIGHTS, IndexRecord, META,
    META_FLUSHED, META_GENESIS, META_NETWORK, META_SCHEMA, META_TIP, SCHEMA_VERSION,
    SCHEMA_WITHOUT_FLUSHED_TIP, TX_INDEX, TxLocation, UNDO, UTXO, address_tx_key, address_utxo_key,
    coin_bytes, coin_from_bytes, decode_undo, encode_coin, encode_undo, outpoint_key,
    tx_location_bytes,
};
use crate::store::{hash_from_row, read_meta_hash};

/// The redb page cache of the chain store by default, and a bound on the memory the store
/// may take (redb's own default is 1 GiB). The operating system caches the file as well,
/// so a larger cache buys little (256 MiB connects blocks no faster) and costs more than
/// its size: glibc keeps the page buffers each thread freed in that thread's arena, and a
/// node's work moves between threads, so a syncing node held 150 MB with 32 MiB here and
/// 96 MB with 16 MiB (docs/BENCHMARKS.md, figure 6).
pub const DEFAULT_STORE_CACHE_BYTES: usize = 16 * 1024 * 1024;

/// The write-back coin cache's memory budget by default: the changes of the blocks not yet
/// written to the coin tables and indexes (about 6,000 rows, 0.75 MB, for a block of 1,000
/// payments).
pub const DEFAULT_COIN_CACHE_BYTES: usize = 24 * 1024 * 1024;

/// Blocks the write-back coin cache holds at most by default (whatever their size): it
/// bounds the work of opening a store, which re-applies them, and the layers a coin lookup
/// walks.
pub const DEFAULT_COIN_CACHE_BLOCKS: usize = 256;

/// Commits [`StoreDurability::UnsyncedForBenchmarks`] and
/// [`ChainState::accept_block_deferring_sync`] let pile up before they sync anyway
/// (unsynced commits keep their freed pages from reuse until a sync).
const UNSYNCED_COMMITS_BEFORE_SYNC: u64 = 1_000;

/// How long [`ChainState::accept_block_deferring_sync`] may leave blocks unsynced: a
/// crash loses at most about this much of them (by the caller's clock).
pub const MAX_DEFERRED_SYNC_MS: u64 = 1_000;

/// When the chain state waits for the disk.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum StoreDurability {
    /// Every call that changes the store syncs it before returning: a crash never loses
    /// what a call acknowledged. The default, and the only choice for a node.
    #[default]
    Synced,
    /// For benchmark and test set-up only (building long chains fast): calls return without
    /// syncing; the store syncs every thousand commits and when closed. A crash rolls the
    /// store back to an earlier consistent state and may lose any number of blocks.
    UnsyncedForBenchmarks,
}

/// How the chain state runs.
#[derive(Clone)]
pub struct ChainOptions {
    /// Threads that verify signatures while connecting a block (used when `verifier` is
    /// `None`).
    pub signature_threads: usize,
    /// Verifies the signatures of connected blocks; `None`: a [`ParallelVerifier`] on
    /// `signature_threads` threads. The node passes a verifier with the pool's signature
    /// cache, so signatures checked at admission are not checked again.
    pub verifier: Option<Arc<dyn SignatureVerifier + Send + Sync>>,
    /// When to wait for the disk.
    pub durability: StoreDurability,
    /// The store's page cache, in bytes.
    pub cache_bytes: usize,
    /// The write-back coin cache's budget, in bytes: over it, the changes of the unflushed
    /// blocks are written to the tables in one batch. 0 writes every block's at once.
    pub coin_cache_bytes: usize,
    /// The most blocks the coin cache holds before it is flushed. 0 flushes every block.
    pub coin_cache_blocks: usize,
}

impl std::fmt::Debug for ChainOptions {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ChainOptions")
            .field("signature_threads", &self.signature_threads)
            .field("custom_verifier", &self.verifier.is_some())
            .field("durability", &self.durability)
            .field("cache_bytes", &self.cache_bytes)
            .field("coin_cache_bytes", &self.coin_cache_bytes)
            .field("coin_cache_blocks", &self.coin_cache_blocks)
            .finish()
    }
}

impl Default for ChainOptions {
    fn default() -> ChainOptions {
        ChainOptions {
            signature_threads: std::thread::available_parallelism().map_or(1, usize::from),
            verifier: None,
            durability: StoreDurability::Synced,
            cache_bytes: DEFAULT_STORE_CACHE_BYTES,
            coin_cache_bytes: DEFAULT_COIN_CACHE_BYTES,
            coin_cache_blocks: DEFAULT_COIN_CACHE_BLOCKS,
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
    /// Every known header, the main chain and the best header (in memory).
    index: BlockIndex,
    /// Blocks whose data, and all ancestors' data, are stored, and that have not failed.
    chain_data: HashSet<BlockHash>,
    /// Stored blocks waiting for an ancestor's data, by parent.
    waiting_for_parent: HashMap<BlockHash, Vec<BlockHash>>,
    /// Blocks with chain data and more work than the tip: where the chain may move next.
    candidates: BTreeSet<CandidateKey>,
    orphans: OrphanPool,
    verifier: Arc<dyn SignatureVerifier + Send + Sync>,
    durability: StoreDurability,
    /// The unflushed blocks' changes to the coin tables and indexes (the writer's copy).
    overlay: Overlay,
    /// The copy readers take with their snapshots; replaced under its lock together with
    /// each commit that moves the tip or the flushed tip.
    shared_overlay: Arc<RwLock<Overlay>>,
    coin_cache_bytes: usize,
    coin_cache_blocks: usize,
    /// Commits since the store was last synced.
    unsynced_commits: u64,
    /// When `accept_block_deferring_sync` first left a commit unsynced.
    first_deferred_ms: Option<u64>,
    /// Syncs so far (for tests and diagnostics).
    syncs: u64,
    events: Vec<ChainEvent>,
}

fn candidate_key(hash: BlockHash, record: &IndexRecord) -> CandidateKey {
    (Reverse(record.chain_work), record.sequence, hash)
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
        let db = Database::builder()
            .set_cache_size(options.cache_bytes)
            .create(path)?;
        Self::initialise(&db, params, path)?;
        let index = Self::load_index(&db, params)?;
        let verifier = options.verifier.clone().unwrap_or_else(|| {
            Arc::new(ParallelVerifier {
                threads: options.signature_threads.max(1),
            })
        });
        let mut state = ChainState {
            params,
            db: Arc::new(db),
            index,
            chain_data: HashSet::new(),
            waiting_for_parent: HashMap::new(),
            candidates: BTreeSet::new(),
            orphans: OrphanPool::default(),
            verifier,
            durability: options.durability,
            overlay: Overlay::default(),
            shared_overlay: Arc::new(RwLock::new(Overlay::default())),
            coin_cache_bytes: options.coin_cache_bytes,
            coin_cache_blocks: options.coin_cache_blocks,
            unsynced_commits: 0,
            first_deferred_ms: None,
            syncs: 0,
            events: Vec::new(),
        };
        state.load()?;
        // A crash in the middle of a reorganisation leaves a lighter tip than the best
        // stored branch; finish the switch now.
        let activated = state
            .flush_if_over_budget()
            .and_then(|()| state.activate_best_chain(None));
        state.sync_store(true)?;
        activated?;
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
                    if schema.as_deref()
                        == Some(SCHEMA_WITHOUT_FLUSHED_TIP.to_le_bytes().as_slice())
                    {
                        // Written block by block: the tables are complete at the tip.
                        let tip = meta
                            .get(META_TIP)?
                            .ok_or_else(|| ChainError::Corrupt("no tip recorded".into()))?
                            .value()
                            .to_vec();
                        meta.insert(META_FLUSHED, tip.as_slice())?;
                        meta.insert(META_SCHEMA, SCHEMA_VERSION.to_le_bytes().as_slice())?;
                        info!(
                            from = SCHEMA_WITHOUT_FLUSHED_TIP,
                            to = SCHEMA_VERSION,
                            "upgraded the store's schema"
                        );
                    } else if schema.as_deref() != Some(SCHEMA_VERSION.to_le_bytes().as_slice()) {
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
                    meta.insert(META_FLUSHED, hash.0.as_slice())?;
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

    /// Reads the block index and the tip, and rebuilds the main chain and skip pointers.
    fn load_index(db: &Database, params: &'static Params) -> Result<BlockIndex, ChainError> {
        let read = db.begin_read()?;
        let table = read.open_table(BLOCK_INDEX)?;
        let mut records = HashMap::new();
        for row in table.iter()? {
            let (key, value) = row?;
            let hash = hash_from_row(key.value(), "block index key")?;
            let record =
                IndexRecord::decode_exact(value.value()).map_err(corrupt("index record"))?;
            records.insert(hash, record);
        }
        let tip = read_meta_hash(&read, META_TIP, "tip")?;
        let index =
            BlockIndex::from_records(records, tip, params.genesis_hash()).map_err(|broken| {
                match broken {
                    BrokenMainChain::MissingBlock(hash) => ChainError::Corrupt(format!(
                        "main-chain block {hash} missing from the index"
                    )),
                    BrokenMainChain::WrongGenesis => {
                        ChainError::Corrupt("the main chain does not start at genesis".into())
                    }
                }
            })?;
        let tip_height = index.tip_height().0;
        let stored_at_tip = read
            .open_table(HEIGHTS)?
            .get(tip_height)?
            .map(|row| row.value().to_vec());
        if stored_at_tip.as_deref() != Some(tip.0.as_slice()) {
            return Err(ChainError::Corrupt(format!(
                "height index disagrees with the tip at height {tip_height}"
            )));
        }
        Ok(index)
    }

    /// Which stored blocks have their ancestors' data (candidates for the main chain), and
    /// the coin cache of the unflushed blocks.
    fn load(&mut self) -> Result<(), ChainError> {
        let read = self.db.begin_read()?;
        // Which stored blocks have all their ancestors' data: parents before children.
        for (_, hash) in self.index.by_height() {
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
        }
        self.rebuild_candidates();
        self.replay_unflushed(&read)?;
        info!(
            height = self.index.tip_height().0,
            tip = %self.index.tip(),
            headers = self.index.len(),
            unflushed = self.overlay.len(),
            "opened the chain"
        );
        Ok(())
    }

    /// Rebuilds the coin cache's layers of the main-chain blocks above the flushed tip
    /// from their data and undo data.
    fn replay_unflushed(&mut self, read: &redb::ReadTransaction) -> Result<(), ChainError> {
        let flushed = read_meta_hash(read, META_FLUSHED, "flushed tip")?;
        let flushed_height = self
            .index
            .get(&flushed)
            .map(|record| record.height)
            .filter(|height| self.hash_at(*height) == Some(flushed))
            .ok_or_else(|| {
                ChainError::Corrupt(format!(
                    "the flushed tip {flushed} is not on the main chain"
                ))
            })?;
        let blocks = read.open_table(BLOCKS)?;
        let undo = read.open_table(UNDO)?;
        let mut overlay = Overlay::default();
        for height in flushed_height.0 + 1..=self.index.tip_height().0 {
            let hash = self
                .index
                .hash_at(BlockHeight(height))
                .expect("heights up to the tip are on the main chain");
            let block = blocks
                .get(hash.0.as_slice())?
                .ok_or_else(|| ChainError::Corrupt(format!("block {hash} has no stored data")))
                .and_then(|row| Block::decode_exact(row.value()).map_err(corrupt("block")))?;
            let spent = undo
                .get(hash.0.as_slice())?
                .ok_or_else(|| ChainError::Corrupt(format!("no undo data for block {hash}")))
                .and_then(|row| decode_undo(row.value()).map_err(corrupt("undo data")))?;
            let txids = block.compute_txids();
            overlay.push(BlockChanges::replayed(
                hash,
                BlockHeight(height),
                &block,
                &txids,
                &spent,
            ));
        }
        self.overlay = overlay;
        *self
            .shared_overlay
            .write()
            .unwrap_or_else(PoisonError::into_inner) = self.overlay.clone();
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
            overlay: Arc::clone(&self.shared_overlay),
        }
    }

    /// Events since the last call, oldest first.
    pub fn take_events(&mut self) -> Vec<ChainEvent> {
        std::mem::take(&mut self.events)
    }

    /// The main chain's tip.
    pub fn tip(&self) -> ChainTip {
        let hash = self.index.tip();
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
        self.index.hash_at(height)
    }

    /// True if `hash` is on the main chain.
    pub fn is_on_main_chain(&self, hash: &BlockHash) -> bool {
        self.index.is_on_main_chain(hash)
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
        let best = self.index.best_header();
        (best, self.index[&best])
    }

    /// The block index (in memory).
    pub(crate) fn block_index(&self) -> &BlockIndex {
        &self.index
    }

    /// True if the block waits in the orphan pool for its parent.
    pub(crate) fn is_orphan(&self, hash: &BlockHash) -> bool {
        self.orphans.contains(hash)
    }

    /// Number of orphan blocks held.
    pub fn orphan_count(&self) -> usize {
        self.orphans.len()
    }

    /// The ancestor of `hash` at `height` (`hash` itself at its own height), in O(log height)
    /// steps: skip pointers and parents until the main chain, then the height index.
    pub fn ancestor(&self, hash: &BlockHash, height: BlockHeight) -> Option<BlockHash> {
        self.index.ancestor(hash, height)
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
        if self.index.get(parent).is_none() {
            return Err(ChainError::Corrupt(format!("unknown parent {parent}")));
        }
        self.index
            .header_context(self.params, parent, now_ms)
            .ok_or_else(|| ChainError::Corrupt(format!("no difficulty anchor below {parent}")))
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
        Ok((hash, self.index.add_header(hash, header, work)))
    }

    /// Checks headers in order (each may build on the one before) and adds them to the
    /// index. Known headers are skipped.
    ///
    /// # Errors
    /// The first header that does not connect or breaks a rule; headers before it are kept.
    pub fn accept_headers(&mut self, headers: &[Header], now_ms: u64) -> Result<usize, ChainError> {
        let result = self.accept_headers_unsynced(headers, now_ms);
        self.sync_store(false)?;
        result
    }

    fn accept_headers_unsynced(
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
        let result = self.accept_block_unsynced(block, now_ms);
        // Whatever the outcome, what was committed becomes durable before the caller hears.
        self.sync_store(false)?;
        result
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
        let result = self.accept_block_unsynced(block, now_ms);
        if self.unsynced_commits > 0 {
            let first = *self.first_deferred_ms.get_or_insert(now_ms);
            if now_ms.saturating_sub(first) >= MAX_DEFERRED_SYNC_MS
                || self.unsynced_commits >= UNSYNCED_COMMITS_BEFORE_SYNC
            {
                self.sync_store(true)?;
            }
        }
        result
    }

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
        self.sync_store(true)
    }

    /// A write transaction that commits without waiting for the disk: the calling public
    /// method syncs once at its end (`sync_store`).
    fn begin_write(&self) -> Result<WriteTransaction, ChainError> {
        let mut write = self.db.begin_write()?;
        write.set_durability(redb::Durability::None)?;
        Ok(write)
    }

    fn commit(&mut self, write: WriteTransaction) -> Result<(), ChainError> {
        write.commit()?;
        self.unsynced_commits += 1;
        Ok(())
    }

    /// Commits a write that moves the tip or the flushed tip, and applies `change` to the
    /// coin cache: readers' snapshots see both or neither (a snapshot is taken under the
    /// same lock).
    fn commit_with(
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
    fn flush_if_over_budget(&mut self) -> Result<(), ChainError> {
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
        self.flush_coin_cache()?;
        self.sync_store(true)
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

    fn flush_coin_cache(&mut self) -> Result<(), ChainError> {
        let Some(last) = self.overlay.last_hash() else {
            return Ok(());
        };
        let blocks = self.overlay.len();
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
    fn write_flush(&self, write: &WriteTransaction, last: BlockHash) -> Result<(), ChainError> {
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
    fn sync_store(&mut self, force: bool) -> Result<(), ChainError> {
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

    fn accept_block_unsynced(
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
        {
            write
                .open_table(BLOCKS)?
                .insert(hash.0.as_slice(), block.encode_to_vec().as_slice())?;
            write
                .open_table(BLOCK_INDEX)?
                .insert(hash.0.as_slice(), stored.encode_to_vec().as_slice())?;
        }
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
    fn is_next_tip(&self, hash: BlockHash, stored: &IndexRecord) -> bool {
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
    fn store_and_connect(
        &mut self,
        hash: BlockHash,
        stored: IndexRecord,
        block: Block,
        txids: &[Txid],
    ) -> Result<BlockOutcome, ChainError> {
        let write = self.begin_write()?;
        let connected = (|| {
            write
                .open_table(BLOCKS)?
                .insert(hash.0.as_slice(), block.encode_to_vec().as_slice())?;
            write
                .open_table(BLOCK_INDEX)?
                .insert(hash.0.as_slice(), stored.encode_to_vec().as_slice())?;
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
        self.chain_data.insert(hash);
        self.index.push_main(hash);
        self.flush_if_over_budget()?;
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
        Ok(BlockOutcome::MainChain)
    }

    fn persist_record(&mut self, hash: BlockHash) -> Result<(), ChainError> {
        let record = self.index[&hash];
        let write = self.begin_write()?;
        write
            .open_table(BLOCK_INDEX)?
            .insert(hash.0.as_slice(), record.encode_to_vec().as_slice())?;
        self.commit(write)
    }

    /// Stores a failed block's record and drops its data, in one write: a block that broke
    /// a rule is never validated, connected or served again, so its body is not kept.
    fn persist_failed(&mut self, hash: BlockHash) -> Result<(), ChainError> {
        let record = self.index[&hash];
        let write = self.begin_write()?;
        write
            .open_table(BLOCK_INDEX)?
            .insert(hash.0.as_slice(), record.encode_to_vec().as_slice())?;
        write.open_table(BLOCKS)?.remove(hash.0.as_slice())?;
        self.commit(write)
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
        let Some(record) = self.index.set_status(&hash, status) else {
            return Ok(());
        };
        self.chain_data.remove(&hash);
        self.candidates.remove(&candidate_key(hash, &record));
        self.persist_failed(hash)?;
        self.index.forget_failed_best_header();
        Ok(())
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
        let txids = block.compute_txids();
        let write = self.begin_write()?;
        match self.write_connect(&write, hash, &record, &block, &txids) {
            Ok(changes) => self.commit_with(write, |overlay| overlay.push(changes))?,
            Err(error) => {
                write.abort()?;
                return Err(error);
            }
        }
        self.index.push_main(hash);
        self.flush_if_over_budget()?;
        self.candidates.remove(&candidate_key(hash, &record));
        debug!(block = %hash, height = record.height.0, "connected block");
        self.events.push(ChainEvent::BlockConnected {
            hash,
            height: record.height,
            block: Arc::new(block),
        });
        Ok(())
    }

    /// Validates `block` against the UTXO set (tables and coin cache) and writes what
    /// connecting it stores at once: its undo data, its height and the tip. Returns its
    /// changes to the coin tables and indexes, for the coin cache.
    fn write_connect(
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
        write
            .open_table(UNDO)?
            .insert(hash.0.as_slice(), encode_undo(&connection.spent).as_slice())?;
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
    fn disconnect_tip(&mut self) -> Result<(), ChainError> {
        let tip = self.tip();
        if tip.height == BlockHeight::GENESIS {
            return Err(ChainError::Corrupt(
                "asked to disconnect the genesis block".into(),
            ));
        }
        let block = self.load_block(&tip.hash)?;
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
            self.write_disconnect(&write, &tip, &block)
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

    /// Disconnects an unflushed tip: its rows are only in the coin cache, so the store
    /// drops its undo data and height and moves the tip back.
    fn write_disconnect_unflushed(
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
        let spent_addresses = spent_addresses(block, &txids, &spent);
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
        let mut meta = write.open_table(META)?;
        meta.insert(META_TIP, tip.header.prev_hash.0.as_slice())?;
        meta.insert(META_FLUSHED, tip.header.prev_hash.0.as_slice())?;
        Ok(())
    }
}

impl Drop for ChainState {
    /// Writes the coin cache out, so the next open re-applies no block. Best effort: if it
    /// fails, the next open re-applies the unflushed blocks instead.
    fn drop(&mut self) {
        if self.overlay.is_empty() {
            return;
        }
        if let Err(error) = self.flush() {
            warn!(%error, "could not flush the coin cache on close; the next open re-applies its blocks");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use powchain_consensus::testkit::TestChain;

    const NOW_MS: u64 = 1_795_564_800_000 + 1_000_000_000_000;

    fn open(dir: &Path) -> ChainState {
        ChainState::open(
            &dir.join("chain.redb"),
            Network::Regtest,
            ChainOptions::default(),
        )
        .expect("the store opens")
    }

    fn headers(chain: &TestChain, from: usize) -> Vec<Header> {
        chain.blocks[from..]
            .iter()
            .map(|block| block.header)
            .collect()
    }

    #[test]
    fn ancestors_through_skip_pointers_equal_a_parent_walk() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut chain = open(dir.path());
        let mut main = TestChain::new(Network::Regtest);
        main.mine_empty(150);
        for block in &main.blocks[1..] {
            chain.accept_block(block.clone(), NOW_MS).expect("valid");
        }
        // A branch of headers only, off height 40 and longer than the main chain: never
        // connected, so its ancestors are found by skips and parents alone.
        let mut branch = TestChain::new(Network::Regtest);
        for block in &main.blocks[1..=40] {
            branch.push(block.clone()).expect("valid");
        }
        branch.miner = powchain_consensus::testkit::test_key(7);
        branch.mine_empty(170);
        chain
            .accept_headers(&headers(&branch, 41), NOW_MS)
            .expect("valid headers");
        let branch_tip = branch.tip().compute_hash();
        assert_eq!(chain.best_header().0, branch_tip);
        assert_eq!(
            chain.block_index().main_chain_fork_height(&branch_tip),
            Some(40)
        );
        for (blocks, tip) in [
            (&branch.blocks, branch_tip),
            (&main.blocks, main.tip().compute_hash()),
        ] {
            for (height, block) in blocks.iter().enumerate() {
                assert_eq!(
                    chain.ancestor(&tip, BlockHeight(height as u64)),
                    Some(block.compute_hash()),
                    "height {height}"
                );
            }
            assert_eq!(chain.ancestor(&tip, BlockHeight(blocks.len() as u64)), None);
        }
        // The window starts after the fork and holds at most `max` heights.
        let wanted = chain.blocks_to_download(5);
        let expected: Vec<BlockHash> = branch.blocks[41..46]
            .iter()
            .map(Block::compute_hash)
            .collect();
        assert_eq!(wanted, expected);
        assert_eq!(chain.blocks_to_download(10_000).len(), 170);

        // Reopened, the skip pointers are rebuilt from the stored index.
        drop(chain);
        let chain = open(dir.path());
        for (height, block) in branch.blocks.iter().enumerate().step_by(7) {
            assert_eq!(
                chain.ancestor(&branch_tip, BlockHeight(height as u64)),
                Some(block.compute_hash())
            );
        }
    }

    #[test]
    fn a_branch_of_many_blocks_connects_with_one_sync() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut chain = open(dir.path());
        let mut test_chain = TestChain::new(Network::Regtest);
        test_chain.mine_empty(30);
        // Blocks 2..=30 first: stored, each waiting for its parent.
        for block in &test_chain.blocks[2..] {
            chain
                .accept_headers(&[test_chain.blocks[1].header], NOW_MS)
                .expect("valid");
            chain.accept_block(block.clone(), NOW_MS).expect("valid");
        }
        assert_eq!(chain.tip().height, BlockHeight::GENESIS);
        let syncs_before = chain.syncs;
        let commits_before_block_one = chain.unsynced_commits;
        assert_eq!(commits_before_block_one, 0, "every call ends synced");
        chain
            .accept_block(test_chain.blocks[1].clone(), NOW_MS)
            .expect("valid");
        assert_eq!(chain.tip().height, BlockHeight(30));
        assert_eq!(chain.syncs, syncs_before + 1, "thirty connects, one sync");
        assert_eq!(chain.unsynced_commits, 0);
    }

    #[test]
    fn deferred_syncs_wait_for_the_interval_or_an_explicit_sync() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut chain = open(dir.path());
        let mut test_chain = TestChain::new(Network::Regtest);
        test_chain.mine_empty(6);
        let syncs = chain.syncs;
        for block in &test_chain.blocks[1..4] {
            chain
                .accept_block_deferring_sync(block.clone(), NOW_MS)
                .expect("valid");
        }
        assert_eq!(chain.syncs, syncs, "no sync within the interval");
        assert!(chain.has_unsynced_changes());
        chain
            .accept_block_deferring_sync(
                test_chain.blocks[4].clone(),
                NOW_MS + MAX_DEFERRED_SYNC_MS,
            )
            .expect("valid");
        assert_eq!(chain.syncs, syncs + 1, "the interval passed");
        assert!(!chain.has_unsynced_changes());
        chain
            .accept_block_deferring_sync(
                test_chain.blocks[5].clone(),
                NOW_MS + MAX_DEFERRED_SYNC_MS,
            )
            .expect("valid");
        assert!(chain.has_unsynced_changes());
        // A synced call makes everything durable.
        chain
            .accept_block(test_chain.blocks[6].clone(), NOW_MS)
            .expect("valid");
        assert!(!chain.has_unsynced_changes());
        assert_eq!(chain.tip().height, BlockHeight(6));
    }

    #[test]
    fn a_block_that_fails_on_the_fast_path_is_marked_failed() {
        use powchain_consensus::testkit::{test_address, test_key};
        use powchain_consensus::{Amount, TxOut};
        let dir = tempfile::tempdir().expect("temp dir");
        let mut chain = open(dir.path());
        let mut test_chain = TestChain::regtest_with_mature_coins(1);
        for block in &test_chain.blocks[1..] {
            chain.accept_block(block.clone(), NOW_MS).expect("valid");
        }
        let (outpoint, coin) = test_chain.mature_coin(0);
        let mut spend = test_chain.spend(
            &[outpoint],
            vec![TxOut {
                value: coin.output.value,
                address: test_address(2),
            }],
            &[test_key(1)],
            &Default::default(),
        );
        if let powchain_consensus::TxInputs::Spends(inputs) = &mut spend.inputs {
            inputs[0].signature.0[5] ^= 1;
        }
        let mut bad = test_chain.template(vec![spend], Amount::ZERO);
        TestChain::seal(&mut bad);
        let hash = bad.compute_hash();
        let error = chain
            .accept_block(bad.clone(), NOW_MS)
            .expect_err("bad signature");
        assert_eq!(error.rule(), Some("bad-signature"));
        assert!(
            chain
                .record(&hash)
                .is_some_and(|record| record.status == BlockStatus::Failed)
        );
        assert!(matches!(
            chain.accept_block(bad, NOW_MS),
            Err(ChainError::KnownInvalid { .. })
        ));
        // The chain goes on with a valid block at the same height.
        let good = test_chain.build(vec![], Amount::ZERO);
        test_chain.push(good.clone()).expect("valid");
        assert_eq!(
            chain.accept_block(good, NOW_MS).expect("valid"),
            BlockOutcome::MainChain
        );
        drop(chain);
        let chain = open(dir.path());
        assert!(
            chain
                .record(&hash)
                .is_some_and(|record| record.status == BlockStatus::Failed)
        );
    }

    #[test]
    fn a_store_of_the_first_schema_is_upgraded_with_its_tip_as_flushed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut test_chain = TestChain::new(Network::Regtest);
        test_chain.mine_empty(5);
        {
            let mut chain = open(dir.path());
            for block in &test_chain.blocks[1..] {
                chain.accept_block(block.clone(), NOW_MS).expect("valid");
            }
        }
        // What a version 1 build left: no flushed tip, schema 1.
        {
            let db = Database::create(dir.path().join("chain.redb")).expect("open");
            let write = db.begin_write().expect("write");
            {
                let mut meta = write.open_table(META).expect("meta");
                meta.remove(META_FLUSHED).expect("remove");
                meta.insert(
                    META_SCHEMA,
                    SCHEMA_WITHOUT_FLUSHED_TIP.to_le_bytes().as_slice(),
                )
                .expect("insert");
            }
            write.commit().expect("commit");
        }
        let chain = open(dir.path());
        assert_eq!(chain.tip().hash, test_chain.tip().compute_hash());
        assert_eq!(chain.unflushed_blocks(), 0);
        let snapshot = chain.reader().snapshot().expect("snapshot");
        snapshot.check_consistency().expect("consistent");
        let read = chain.db.begin_read().expect("read");
        let meta = read.open_table(META).expect("meta");
        let schema = meta.get(META_SCHEMA).expect("read").expect("recorded");
        assert_eq!(schema.value(), SCHEMA_VERSION.to_le_bytes().as_slice());
        let flushed = meta.get(META_FLUSHED).expect("read").expect("recorded");
        assert_eq!(flushed.value(), chain.tip().hash.0.as_slice());
    }

    #[test]
    fn a_store_of_an_unknown_schema_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        drop(open(dir.path()));
        {
            let db = Database::create(dir.path().join("chain.redb")).expect("open");
            let write = db.begin_write().expect("write");
            write
                .open_table(META)
                .expect("meta")
                .insert(META_SCHEMA, 99u64.to_le_bytes().as_slice())
                .expect("insert");
            write.commit().expect("commit");
        }
        let result = ChainState::open(
            &dir.path().join("chain.redb"),
            Network::Regtest,
            ChainOptions::default(),
        );
        assert!(matches!(result, Err(ChainError::Corrupt(message)) if message.contains("schema")));
    }
}
