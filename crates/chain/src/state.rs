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
//! to a far ancestor (as Bitcoin Core's `pskip`), so finding an ancestor at any height
//! takes O(log height) steps: no per-block work grows with the length of the chain.
//!
//! This file holds the type, its options and its read accessors; the work is in one file
//! per step: `state/open.rs` (open, checks, replay), `state/accept.rs` (headers, blocks,
//! orphans), `state/connect.rs` (fork choice, connect, disconnect, failures) and
//! `state/durability.rs` (syncs and coin-cache flushes). The in-memory block index is
//! `index.rs`; what a syncing peer is asked for is `sync.rs`.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use powchain_consensus::signature::SignatureVerifier;
use powchain_consensus::validation::HeaderContext;
use powchain_consensus::{BlockHash, BlockHeight, Header, Params, Work};
use redb::Database;

use crate::error::ChainError;
use crate::event::ChainEvent;
use crate::index::BlockIndex;
use crate::orphan::OrphanPool;
use crate::overlay::Overlay;
use crate::reader::ChainReader;
use crate::store::{BlockStatus, IndexRecord};

mod accept;
mod connect;
mod durability;
mod open;

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
    /// Verifies the signatures of connected blocks; `None`: a [`ParallelVerifier`](powchain_consensus::signature::ParallelVerifier) on
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
    /// Keep the store in memory (redb's in-memory backend) instead of the file at the
    /// path, which then only names the chain in errors: nothing survives the process. For
    /// simulations (`crates/sim`), which run hundreds of nodes in one.
    pub in_memory: bool,
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
            .field("in_memory", &self.in_memory)
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
            in_memory: false,
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
    /// Not stored: nobody was asked for it, and the branch it ends has less work than
    /// [`ChainState::anti_dos_work_threshold`], as a batch of headers that is not stored
    /// (`low_work.rs`). Either its header was new to the node, or the tip has left its
    /// stored header that far behind and it does not lead to the best header.
    LowWork,
}

type CandidateKey = (Reverse<Work>, u64, BlockHash);

/// The chain state: block index, main chain, UTXO set and indexes.
pub struct ChainState {
    params: &'static Params,
    db: Arc<Database>,
    /// Every known header, the main chain and the best header (in memory).
    index: BlockIndex,
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
    /// The store file, named in errors.
    path: std::path::PathBuf,
    /// Why the state may no longer match its store: the storage engine panicked in the
    /// middle of a change (`durability.rs`, [`ChainState::guarded`]). Every later change
    /// is refused.
    broken: Option<String>,
    /// Tests: the next write transaction panics, as redb does on some damaged pages.
    #[cfg(test)]
    panic_at_next_write: bool,
    /// Tests: the next flush of the coin cache fails (a full disk, say).
    #[cfg(test)]
    fail_next_flush: bool,
}

fn candidate_key(hash: BlockHash, record: &IndexRecord) -> CandidateKey {
    (Reverse(record.chain_work), record.sequence, hash)
}

impl ChainState {
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
        let record = self.index.record(&hash);
        ChainTip {
            hash,
            height: record.height,
            work: record.chain_work,
            header: record.header,
        }
    }

    /// The index record of a known block or header.
    pub fn record(&self, hash: &BlockHash) -> Option<IndexRecord> {
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
        (best, self.index.record(&best))
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    use powchain_consensus::testkit::TestChain;
    use powchain_consensus::{Block, Header, Network};
    use redb::{ReadableDatabase, ReadableTable};

    use crate::store::{
        META, META_FLUSHED, META_SCHEMA, SCHEMA_VERSION, SCHEMA_WITHOUT_FLUSHED_TIP,
        SCHEMA_WITHOUT_UNDO_CHECKSUMS,
    };

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
    fn a_block_connected_before_a_failed_flush_is_still_announced() {
        let dir = tempfile::tempdir().expect("temp dir");
        let every_block = ChainOptions {
            coin_cache_blocks: 0,
            ..ChainOptions::default()
        };
        let mut chain = ChainState::open(
            &dir.path().join("chain.redb"),
            Network::Regtest,
            every_block,
        )
        .expect("the store opens");
        let mut main = TestChain::new(Network::Regtest);
        main.mine_empty(2);
        let mut rival = TestChain::new(Network::Regtest);
        rival.miner = powchain_consensus::testkit::test_key(7);
        rival.mine_empty(3);
        let connected = |events: &[ChainEvent]| -> Vec<BlockHash> {
            events
                .iter()
                .filter_map(|event| match event {
                    ChainEvent::BlockConnected { hash, .. } => Some(*hash),
                    _ => None,
                })
                .collect()
        };
        let tip_changes = |events: &[ChainEvent]| -> Vec<(BlockHash, u64)> {
            events
                .iter()
                .filter_map(|event| match event {
                    ChainEvent::TipChanged {
                        hash, reorg_depth, ..
                    } => Some((*hash, *reorg_depth)),
                    _ => None,
                })
                .collect()
        };

        // Extending the tip: the block is connected, then the flush fails.
        chain.fail_next_flush = true;
        chain
            .accept_block(main.blocks[1].clone(), NOW_MS)
            .expect_err("the flush failed");
        let first = main.blocks[1].compute_hash();
        assert_eq!(chain.tip().hash, first, "connected all the same");
        let events = chain.take_events();
        assert_eq!(connected(&events), vec![first]);
        assert_eq!(tip_changes(&events), vec![(first, 0)]);

        // A reorganisation stopped by a failed flush after its first block: the tip it
        // reached is announced with the blocks it disconnected.
        chain
            .accept_block(main.blocks[2].clone(), NOW_MS)
            .expect("valid");
        chain.take_events();
        for block in &rival.blocks[1..3] {
            chain
                .accept_block(block.clone(), NOW_MS)
                .expect("a side branch");
        }
        assert!(chain.take_events().is_empty());
        chain.fail_next_flush = true;
        chain
            .accept_block(rival.blocks[3].clone(), NOW_MS)
            .expect_err("the flush failed");
        let reached = rival.blocks[1].compute_hash();
        assert_eq!(chain.tip().hash, reached);
        let events = chain.take_events();
        assert_eq!(connected(&events), vec![reached]);
        assert_eq!(tip_changes(&events), vec![(reached, 2)]);
        let disconnected = events
            .iter()
            .filter(|event| matches!(event, ChainEvent::BlockDisconnected { .. }))
            .count();
        assert_eq!(disconnected, 2);
    }

    /// Rewrites the stored row of `hash` in `table` with `change` applied to its bytes.
    fn rewrite_row(
        chain: &ChainState,
        table: redb::TableDefinition<&[u8], &[u8]>,
        hash: &BlockHash,
        change: impl FnOnce(Vec<u8>) -> Vec<u8>,
    ) {
        let write = chain.db.begin_write().expect("a write");
        {
            let mut rows = write.open_table(table).expect("the table");
            let bytes = rows
                .get(hash.0.as_slice())
                .expect("reads")
                .expect("the row")
                .value()
                .to_vec();
            rows.insert(hash.0.as_slice(), change(bytes).as_slice())
                .expect("written");
        }
        write.commit().expect("committed");
    }

    /// A block spending the miner's oldest mature coin, and the chain it extends.
    fn chain_and_a_spending_block() -> (TestChain, Block) {
        use powchain_consensus::testkit::{test_address, test_key};
        let main = TestChain::regtest_with_mature_coins(1);
        let (outpoint, coin) = main.mature_coin(0);
        let fee = powchain_consensus::Amount::from_units(1_000).expect("units");
        let spend = main.spend(
            &[outpoint],
            vec![powchain_consensus::TxOut {
                value: coin.output.value.checked_sub(fee).expect("pays more"),
                address: test_address(2),
            }],
            &[test_key(1)],
            &std::collections::HashMap::new(),
        );
        let block = main.build(vec![spend], fee);
        (main, block)
    }

    /// Undo data of `hash` naming another coin for its first input, with a checksum that
    /// matches (as a bug of ours could write it): `check_undo` must see it.
    fn undo_naming_another_coin(hash: BlockHash) -> impl Fn(Vec<u8>) -> Vec<u8> {
        move |bytes| {
            let mut spent = crate::store::decode_undo(&hash, &bytes).expect("undo data");
            spent[0].0.txid.0[0] ^= 1;
            crate::store::encode_undo(&hash, &spent)
        }
    }

    /// Damage on disk that names the right coins: one bit of the first coin's value (the
    /// byte after its outpoint and the count), which only the checksum sees.
    fn undo_with_a_value_bit_flipped(mut bytes: Vec<u8>) -> Vec<u8> {
        bytes[1 + 36] ^= 1;
        bytes
    }

    #[test]
    fn damaged_undo_data_is_refused_at_open_and_at_a_disconnect() {
        let (main, spending) = chain_and_a_spending_block();
        let hash = spending.compute_hash();
        let accept_all = |chain: &mut ChainState| {
            for block in main.blocks[1..].iter().chain([&spending]) {
                chain.accept_block(block.clone(), NOW_MS).expect("valid");
            }
        };
        type Damage = Box<dyn Fn(Vec<u8>) -> Vec<u8>>;
        // Each damage, what the refusal says, whether a plain read (the API's) sees it (the
        // checksum is checked at every read, the inputs only where they are used), and what
        // `powchain check` says.
        let damages: [(&str, Damage, &str, bool, &str); 2] = [
            (
                "another coin",
                Box::new(undo_naming_another_coin(hash)),
                "undo data",
                false,
                "its undo data is not the coins it spent",
            ),
            (
                "a value",
                Box::new(undo_with_a_value_bit_flipped),
                "does not match its checksum",
                true,
                "does not match its checksum",
            ),
        ];
        for (case, damage, said, read_refused, checked) in &damages {
            // Not flushed: the block is replayed from its undo data when the store opens.
            let dir = tempfile::tempdir().expect("temp dir");
            let mut chain = open(dir.path());
            accept_all(&mut chain);
            rewrite_row(&chain, crate::store::UNDO, &hash, damage);
            chain.close_leaving_cache_unflushed().expect("closes");
            let Err(error) = ChainState::open(
                &dir.path().join("chain.redb"),
                Network::Regtest,
                ChainOptions::default(),
            ) else {
                panic!("{case}: the store opened on damaged undo data");
            };
            assert!(error.to_string().contains(said), "{case}: {error}");

            // Flushed: disconnecting it would restore the wrong coin.
            let dir = tempfile::tempdir().expect("temp dir");
            let mut chain = open(dir.path());
            accept_all(&mut chain);
            chain.flush().expect("flushed");
            rewrite_row(&chain, crate::store::UNDO, &hash, damage);
            let read = chain.reader().snapshot().expect("a snapshot");
            match read.spent_coins(&hash) {
                Err(error) => assert!(*read_refused && error.to_string().contains(said)),
                Ok(_) => assert!(!read_refused, "{case}: damaged undo data read back"),
            }
            let found = crate::check::check_storage(&read).expect_err("check finds it");
            assert!(found.to_string().contains(checked), "{case}: {found}");
            drop(read);
            let mut rival = TestChain::new(Network::Regtest);
            rival.miner = powchain_consensus::testkit::test_key(7);
            rival.mine_empty(main.blocks.len() + 1);
            let results: Vec<_> = rival.blocks[1..]
                .iter()
                .map(|block| chain.accept_block(block.clone(), NOW_MS))
                .collect();
            let error = results
                .into_iter()
                .find_map(Result::err)
                .expect("the reorganisation fails");
            assert!(error.to_string().contains(said), "{case}: {error}");
            assert_eq!(chain.tip().hash, hash, "{case}: nothing was disconnected");
        }
    }

    #[test]
    fn damaged_index_records_are_left_out_or_repaired_at_open() {
        use powchain_consensus::encode::{Decode, Encode};
        let dir = tempfile::tempdir().expect("temp dir");
        let mut chain = open(dir.path());
        let mut main = TestChain::new(Network::Regtest);
        main.mine_empty(3);
        let mut rival = TestChain::new(Network::Regtest);
        rival.miner = powchain_consensus::testkit::test_key(7);
        rival.mine_empty(2);
        for block in [
            &main.blocks[1],
            &main.blocks[2],
            &rival.blocks[1],
            &rival.blocks[2],
        ] {
            chain.accept_block(block.clone(), NOW_MS).expect("valid");
        }
        let tip = main.blocks[2].compute_hash();
        assert_eq!(chain.tip().hash, tip);
        let record = |change: fn(&mut IndexRecord)| {
            move |bytes: Vec<u8>| {
                let mut record = IndexRecord::decode_exact(&bytes).expect("a record");
                change(&mut record);
                record.encode_to_vec()
            }
        };
        // A side block claiming more work than the tip; a main-chain block marked failed
        // (one bit); a side block whose header no longer hashes to its key.
        let side = rival.blocks[1].compute_hash();
        rewrite_row(
            &chain,
            crate::store::BLOCK_INDEX,
            &rival.blocks[2].compute_hash(),
            record(|record| {
                record.chain_work = record.chain_work.saturating_add(record.chain_work)
            }),
        );
        rewrite_row(
            &chain,
            crate::store::BLOCK_INDEX,
            &main.blocks[1].compute_hash(),
            record(|record| record.status = BlockStatus::Failed),
        );
        drop(chain);
        let mut chain = open(dir.path());
        assert_eq!(chain.tip().hash, tip, "the inflated branch is not taken");
        assert_eq!(chain.block_index().damaged_records(), 2);
        chain
            .accept_block(main.blocks[3].clone(), NOW_MS)
            .expect("the main chain goes on");

        rewrite_row(
            &chain,
            crate::store::BLOCK_INDEX,
            &side,
            record(|record| {
                record.header.time_ms += 1;
            }),
        );
        drop(chain);
        let chain = open(dir.path());
        assert!(
            chain.block_index().get(&side).is_none(),
            "left out with its child"
        );
        assert!(
            chain
                .block_index()
                .get(&rival.blocks[2].compute_hash())
                .is_none()
        );
        assert_eq!(chain.tip().hash, main.blocks[3].compute_hash());
    }

    /// A chain of `blocks` empty blocks (as `main`) accepted into a new store, and a rival
    /// branch off genesis of `rival` empty blocks mined by another key, not yet given.
    fn chain_and_rival(
        dir: &Path,
        blocks: usize,
        rival: usize,
    ) -> (ChainState, TestChain, TestChain) {
        let mut chain = open(dir);
        let mut main = TestChain::new(Network::Regtest);
        main.mine_empty(blocks);
        for block in &main.blocks[1..] {
            chain.accept_block(block.clone(), NOW_MS).expect("valid");
        }
        let mut branch = TestChain::new(Network::Regtest);
        branch.miner = powchain_consensus::testkit::test_key(7);
        branch.mine_empty(rival);
        (chain, main, branch)
    }

    /// Damage on disk: `block`'s stored body with its coinbase paying `units` more (or
    /// less), under the block's own hash.
    fn damage_stored_coinbase(chain: &ChainState, block: &Block, units: i64) {
        use powchain_consensus::encode::Encode;
        let mut body = block.clone();
        let value = &mut body.transactions[0].outputs[0].value;
        let change = powchain_consensus::Amount::from_units(units.unsigned_abs()).expect("units");
        *value = if units > 0 {
            value.checked_add(change)
        } else {
            value.checked_sub(change)
        }
        .expect("in range");
        let write = chain.db.begin_write().expect("a write");
        write
            .open_table(crate::store::BLOCKS)
            .expect("the table")
            .insert(
                block.compute_hash().0.as_slice(),
                body.encode_to_vec().as_slice(),
            )
            .expect("written");
        write.commit().expect("committed");
    }

    #[test]
    fn a_side_branch_block_damaged_on_disk_is_damage_not_an_invalid_block() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut chain, main, branch) = chain_and_rival(dir.path(), 2, 3);
        // The rival's first two blocks are stored on the side.
        for block in &branch.blocks[1..3] {
            chain.accept_block(block.clone(), NOW_MS).expect("valid");
        }
        assert_eq!(chain.tip().hash, main.tip().compute_hash());
        // The disk changes the stored coinbase's value: a body that would now break a
        // rule (it pays more than the subsidy).
        damage_stored_coinbase(&chain, &branch.blocks[1], 1);
        // The branch's third block makes it the most-work chain: connecting it meets the
        // damaged body.
        let error = chain
            .accept_block(branch.blocks[3].clone(), NOW_MS)
            .expect_err("the damaged block cannot connect");
        assert!(matches!(error, ChainError::Corrupt(_)), "{error}");
        assert!(!error.is_invalid(), "nobody is blamed: {error}");
        for block in &branch.blocks[1..] {
            assert!(
                !chain.index.record(&block.compute_hash()).status.is_failed(),
                "an honest block is not marked failed"
            );
        }
    }

    #[test]
    fn a_main_chain_block_damaged_on_disk_is_not_disconnected_as_read() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut chain, main, branch) = chain_and_rival(dir.path(), 2, 3);
        // In the tables, so disconnecting the tip removes the coins its body names.
        chain.flush().expect("flushed");
        damage_stored_coinbase(&chain, main.tip(), -1);
        let snapshot_utxo = |chain: &ChainState| {
            chain
                .reader()
                .snapshot()
                .expect("snapshot")
                .utxo_set()
                .expect("read")
        };
        let utxo_before = snapshot_utxo(&chain);
        // The heavier rival: the damaged tip must go first.
        let mut error = None;
        for block in &branch.blocks[1..] {
            if let Err(refused) = chain.accept_block(block.clone(), NOW_MS) {
                error = Some(refused);
            }
        }
        let error = error.expect("the damaged tip cannot be disconnected");
        assert!(matches!(error, ChainError::Corrupt(_)), "{error}");
        assert_eq!(
            chain.tip().hash,
            main.tip().compute_hash(),
            "nothing was disconnected"
        );
        assert_eq!(
            snapshot_utxo(&chain),
            utxo_before,
            "no coin was removed by the damaged body's ids"
        );
    }

    #[test]
    fn a_panic_of_the_storage_engine_stops_every_later_change_and_the_store_reopens() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut chain = open(dir.path());
        let mut main = TestChain::new(Network::Regtest);
        main.mine_empty(3);
        chain
            .accept_block(main.blocks[1].clone(), NOW_MS)
            .expect("valid");
        chain.panic_at_next_write = true;
        let error = chain
            .accept_block(main.blocks[2].clone(), NOW_MS)
            .expect_err("the storage engine panicked");
        assert!(matches!(error, ChainError::Damaged { .. }), "{error}");
        assert!(!error.is_invalid(), "the block is not blamed");
        chain.panic_at_next_write = false;
        // The state may be half changed in memory: nothing changes it any more.
        for refused in [
            chain
                .accept_block(main.blocks[2].clone(), NOW_MS)
                .map(|_| ()),
            chain
                .accept_headers(&[main.blocks[3].header], NOW_MS)
                .map(|_| ()),
            chain.flush(),
            chain.sync(),
        ] {
            assert!(
                matches!(refused, Err(ChainError::Damaged { .. })),
                "{refused:?}"
            );
        }
        drop(chain);
        // What was committed is consistent: a restart goes on from it.
        let mut chain = open(dir.path());
        assert_eq!(chain.tip().hash, main.blocks[1].compute_hash());
        for block in &main.blocks[2..] {
            chain.accept_block(block.clone(), NOW_MS).expect("valid");
        }
        assert_eq!(chain.tip().hash, main.tip().compute_hash());
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
    fn known_headers_neither_commit_nor_sync_and_new_ones_are_synced() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut chain = open(dir.path());
        let mut test_chain = TestChain::new(Network::Regtest);
        test_chain.mine_empty(3);
        chain
            .accept_block_deferring_sync(test_chain.blocks[1].clone(), NOW_MS)
            .expect("valid");
        assert!(chain.has_unsynced_changes());
        let syncs = chain.syncs;
        let known = [test_chain.blocks[1].header];
        for _ in 0..100 {
            assert_eq!(chain.accept_headers(&known, NOW_MS).expect("known"), 0);
        }
        assert_eq!(chain.syncs, syncs, "a known header forced no sync");
        assert!(
            chain.has_unsynced_changes(),
            "the deferred block waits for its sync"
        );
        let new = [test_chain.blocks[2].header];
        assert_eq!(chain.accept_headers(&new, NOW_MS).expect("new"), 1);
        assert_eq!(chain.syncs, syncs + 1, "a new header is durable at once");
        assert!(!chain.has_unsynced_changes());
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
    fn stores_of_earlier_schemas_are_upgraded() {
        // Version 1: no flushed tip, no undo checksums. Version 2: no undo checksums.
        for schema in [SCHEMA_WITHOUT_FLUSHED_TIP, SCHEMA_WITHOUT_UNDO_CHECKSUMS] {
            let dir = tempfile::tempdir().expect("temp dir");
            let (main, spending) = chain_and_a_spending_block();
            let hash = spending.compute_hash();
            let spent = {
                let mut chain = open(dir.path());
                for block in main.blocks[1..].iter().chain([&spending]) {
                    chain.accept_block(block.clone(), NOW_MS).expect("valid");
                }
                chain.flush().expect("flushed");
                let read = chain.reader().snapshot().expect("a snapshot");
                read.spent_coins(&hash).expect("reads").expect("stored")
            };
            // What an earlier build left.
            {
                let db = Database::create(dir.path().join("chain.redb")).expect("open");
                let write = db.begin_write().expect("write");
                {
                    let mut undo = write.open_table(crate::store::UNDO).expect("undo");
                    let rows: Vec<(Vec<u8>, Vec<u8>)> = undo
                        .iter()
                        .expect("rows")
                        .map(|row| {
                            let (key, value) = row.expect("a row");
                            let value = value.value();
                            (key.value().to_vec(), value[..value.len() - 32].to_vec())
                        })
                        .collect();
                    assert!(!rows.is_empty());
                    for (key, value) in rows {
                        undo.insert(key.as_slice(), value.as_slice())
                            .expect("insert");
                    }
                    let mut meta = write.open_table(META).expect("meta");
                    if schema == SCHEMA_WITHOUT_FLUSHED_TIP {
                        meta.remove(META_FLUSHED).expect("remove");
                    }
                    meta.insert(META_SCHEMA, schema.to_le_bytes().as_slice())
                        .expect("insert");
                }
                write.commit().expect("commit");
            }
            let mut chain = open(dir.path());
            assert_eq!(chain.tip().hash, hash, "{schema}");
            assert_eq!(chain.unflushed_blocks(), 0);
            {
                let snapshot = chain.reader().snapshot().expect("snapshot");
                snapshot.check_consistency().expect("consistent");
                assert_eq!(
                    snapshot
                        .spent_coins(&hash)
                        .expect("checked")
                        .expect("stored"),
                    spent,
                    "{schema}: the undo data reads back with its new checksum"
                );
                let read = chain.db.begin_read().expect("read");
                let meta = read.open_table(META).expect("meta");
                let recorded = meta.get(META_SCHEMA).expect("read").expect("recorded");
                assert_eq!(recorded.value(), SCHEMA_VERSION.to_le_bytes().as_slice());
                let flushed = meta.get(META_FLUSHED).expect("read").expect("recorded");
                assert_eq!(flushed.value(), chain.tip().hash.0.as_slice());
            }
            // And the block disconnects on its upgraded undo data.
            let mut rival = TestChain::new(Network::Regtest);
            rival.miner = powchain_consensus::testkit::test_key(7);
            rival.mine_empty(main.blocks.len() + 1);
            for block in &rival.blocks[1..] {
                chain.accept_block(block.clone(), NOW_MS).expect("valid");
            }
            assert_eq!(chain.tip().hash, rival.tip().compute_hash(), "{schema}");
        }
    }

    #[test]
    fn a_current_store_whose_schema_number_is_damaged_is_refused_not_upgraded() {
        // 3 is a bit away from 1 and from 2: upgrading would drop the unflushed blocks'
        // coins (1), or give every undo row a second checksum (2).
        // Each is named by what gives it away.
        for (schema, named) in [
            (SCHEMA_WITHOUT_FLUSHED_TIP, "records a flushed tip"),
            (SCHEMA_WITHOUT_UNDO_CHECKSUMS, "undo data"),
        ] {
            let dir = tempfile::tempdir().expect("temp dir");
            let (main, spending) = chain_and_a_spending_block();
            {
                let mut chain = open(dir.path());
                for block in main.blocks[1..].iter().chain([&spending]) {
                    chain.accept_block(block.clone(), NOW_MS).expect("valid");
                }
                chain.flush().expect("flushed");
            }
            let result = open_recording_schema(dir.path(), schema);
            assert!(
                matches!(&result, Err(ChainError::Damaged { detail, .. }) if detail.contains(named)),
                "{schema}: {:?}",
                result.err()
            );
        }
    }

    /// Opens the store in `dir` after recording `schema` as its schema number.
    fn open_recording_schema(dir: &Path, schema: u64) -> Result<ChainState, ChainError> {
        {
            let db = Database::create(dir.join("chain.redb")).expect("open");
            let write = db.begin_write().expect("write");
            write
                .open_table(META)
                .expect("meta")
                .insert(META_SCHEMA, schema.to_le_bytes().as_slice())
                .expect("insert");
            write.commit().expect("commit");
        }
        ChainState::open(
            &dir.join("chain.redb"),
            Network::Regtest,
            ChainOptions::default(),
        )
    }

    #[test]
    fn a_store_of_an_unknown_schema_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        drop(open(dir.path()));
        let result = open_recording_schema(dir.path(), 99);
        assert!(
            matches!(result, Err(ChainError::Damaged { detail, .. }) if detail.contains("schema"))
        );
    }
}
