//! `BlockIndex`: every known header in memory (height, chain work, status, arrival order),
//! the main chain by height, skip pointers, and the most-work valid header. Pure: no store,
//! no clock; `ChainState` keeps it in step with the `BLOCK_INDEX` and `HEIGHTS` tables.
//!
//! ```text
//!   add_header ──▶ record (sequence = arrival order) ──▶ skip pointer ──▶ best header?
//!   ancestor(hash, height): skips and parents until the main chain, then hash_at (O(log h))
//!   main_chain_fork_height: binary search over ancestors (O(log² h))
//!   push_main / pop_main: the main chain moves one block at a time (connect / disconnect)
//! ```
//!
//! Fork choice reads here: the best header is the valid header with the most work, the
//! first seen winning a tie (lowest `sequence`). The best header is always a *leaf*: a
//! valid header without a valid child (a child has more work than its parent). The index
//! keeps only the leaves ranked, a handful in a healthy network, so failing a block finds
//! the leaves below it (skip pointers), marks its descendants by walking back from them,
//! and picks the next best leaf in time linear in the descendants, never in the size of the
//! index, and at no memory cost per header.
//!
//! Memory: a block is one `Entry` of 152 bytes (its header with the parent as an id,
//! height, work, status, arrival order, skip pointer and chain-data flag) in chunks of
//! `CHUNK`, plus a 4-byte id in a hash table keyed by block hash and a 4-byte id in the
//! main chain: about 16 MB at 100,000 blocks (docs/BENCHMARKS.md).

use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;
use powchain_consensus::difficulty::compute_median_time_past;
use powchain_consensus::validation::{HeaderContext, HeaderSummary, next_required_bits};
use powchain_consensus::{BlockHash, BlockHeight, CompactTarget, Header, MerkleRoot, Params, Work};

use crate::store::{BlockStatus, IndexRecord};

/// The height a block's skip pointer points to (Bitcoin Core's `GetSkipHeight`): chosen so
/// that walking skips and parents reaches any ancestor in O(log height) steps.
pub(crate) fn skip_height(height: u64) -> u64 {
    fn clear_lowest_one(value: u64) -> u64 {
        value & value.wrapping_sub(1)
    }
    if height < 2 {
        return 0;
    }
    if height & 1 == 1 {
        clear_lowest_one(clear_lowest_one(height - 1)) + 1
    } else {
        clear_lowest_one(height)
    }
}

/// Why a main chain read from the store is not one.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BrokenMainChain {
    /// A block on the way from the tip to genesis is not in the index.
    MissingBlock(BlockHash),
    /// The walk from the tip ends at a block other than genesis.
    WrongGenesis,
}

/// A valid header's rank: more work first, then the first seen.
type Rank = (Work, Reverse<u64>, BlockHash);

fn rank(hash: BlockHash, record: &IndexRecord) -> Rank {
    (record.chain_work, Reverse(record.sequence), hash)
}

/// An indexed block's place in [`BlockIndex`]'s entries: ids are given in the order blocks
/// are indexed and never reused (the index only grows).
type Id = u32;

/// No block: genesis's parent, a block without a skip pointer.
const NO_ID: Id = Id::MAX;

/// Entries per chunk. The entries grow a chunk at a time: no reallocation copies the whole
/// index, and at most one chunk is allocated ahead of use.
const CHUNK: usize = 1024;

/// One indexed block: its header with the parent as an id instead of a hash, and what the
/// chain knows of it. About 150 bytes; the `HashMap<BlockHash, IndexRecord>` and the map of
/// skip pointers it replaces took 300 to 500 bytes a block, depending on where the maps
/// were in their doubling.
#[derive(Clone, Copy)]
struct Entry {
    hash: BlockHash,
    merkle_root: MerkleRoot,
    chain_work: Work,
    time_ms: u64,
    nonce: u64,
    height: BlockHeight,
    sequence: u64,
    version: u32,
    bits: CompactTarget,
    parent: Id,
    skip: Id,
    status: BlockStatus,
    /// Its data and all its ancestors' data are stored, and it has not failed: it can be on
    /// the main chain. Kept here for `ChainState`; not stored (rebuilt at open).
    chain_data: bool,
}

/// The work of one header with `bits` (none for bits that are no target: never stored).
fn header_work(bits: CompactTarget) -> Work {
    bits.to_target()
        .map_or(Work::ZERO, |target| target.to_work())
}

/// The entry of `id` in chunks of [`CHUNK`] entries.
fn entry_in(chunks: &[Vec<Entry>], id: Id) -> &Entry {
    let id = id as usize;
    &chunks[id / CHUNK][id % CHUNK]
}

/// Every known header, the main chain and the best header.
pub(crate) struct BlockIndex {
    /// Entries by id, in chunks of [`CHUNK`].
    chunks: Vec<Vec<Entry>>,
    /// Ids by block hash, hashed with `hasher` (keyed: peers choose the headers).
    ids: HashTable<Id>,
    hasher: RandomState,
    /// Main-chain ids by height; never empty (genesis).
    main_chain: Vec<Id>,
    /// Valid headers without a valid child, ranked; the last is the best header.
    leaves: BTreeSet<Rank>,
    genesis: BlockHash,
    next_sequence: u64,
    /// Records read back damaged at open: left out (a header that does not hash to its
    /// key) or repaired (chain work, a main-chain block's status).
    damaged_records: u64,
}

/// Builds a [`BlockIndex`] from stored records in any order (the store's key order), holding
/// no more than the index itself and a parent hash per record.
pub(crate) struct IndexBuilder {
    index: BlockIndex,
    /// Each entry's parent hash, by id, until parents are linked.
    parents: Vec<BlockHash>,
    /// The records are a store's, read back: check them (see [`IndexBuilder::reading_a_store`]).
    from_a_store: bool,
}

impl IndexBuilder {
    /// An empty builder for the chain that starts at `genesis`.
    pub(crate) fn new(genesis: BlockHash) -> IndexBuilder {
        IndexBuilder {
            index: BlockIndex::empty(genesis),
            parents: Vec::new(),
            from_a_store: false,
        }
    }

    /// A builder for records read back from a store, which may be damaged: a record whose
    /// header does not hash to its key is left out (with its descendants), chain work is
    /// recomputed from the headers' bits, and a main-chain block's status is "data stored"
    /// (it was connected). Each such record counts in [`BlockIndex::damaged_records`].
    pub(crate) fn reading_a_store(genesis: BlockHash) -> IndexBuilder {
        IndexBuilder {
            from_a_store: true,
            ..IndexBuilder::new(genesis)
        }
    }

    /// Adds a stored record (a second record of the same hash is ignored, and one whose
    /// header does not hash to `hash` is damage, left out with its descendants).
    pub(crate) fn add(&mut self, hash: BlockHash, record: IndexRecord) {
        if self.index.id_of(&hash).is_some() {
            return;
        }
        if self.from_a_store && record.header.compute_hash() != hash {
            self.index.damaged_records += 1;
            return;
        }
        self.index.push_entry(hash, &record, NO_ID);
        self.parents.push(record.header.prev_hash);
    }

    /// Links parents and skip pointers and rebuilds the main chain from `tip`. A header
    /// whose parent is not indexed at the height below it (a damaged store) is left out,
    /// with its descendants; a header below a failed block is marked `FailedAncestor` (in
    /// memory: only the failed block's own record is stored as failed); the best header is
    /// the valid one with the most work.
    pub(crate) fn finish(self, tip: BlockHash) -> Result<BlockIndex, BrokenMainChain> {
        let IndexBuilder {
            mut index,
            parents,
            from_a_store,
        } = self;
        // The main chain must lead from the tip down to genesis (at most one step a record:
        // a damaged store may hold a cycle).
        let mut cursor = tip;
        for _ in 0..=index.len() {
            let id = index
                .id_of(&cursor)
                .ok_or(BrokenMainChain::MissingBlock(cursor))?;
            if index.entry(id).height == BlockHeight::GENESIS {
                if cursor != index.genesis {
                    return Err(BrokenMainChain::WrongGenesis);
                }
                break;
            }
            cursor = parents[id as usize];
        }
        if cursor != index.genesis {
            return Err(BrokenMainChain::WrongGenesis);
        }
        let mut order: Vec<(BlockHeight, Id)> = (0..index.len())
            .map(|id| {
                let id = id as Id;
                (index.entry(id).height, id)
            })
            .collect();
        order.sort_unstable();
        // Link parents, heights first; a record that cannot be placed is dropped.
        let mut placed = vec![false; index.len()];
        for &(height, id) in &order {
            placed[id as usize] = if height == BlockHeight::GENESIS {
                index.entry(id).hash == index.genesis
            } else {
                match index.id_of(&parents[id as usize]) {
                    Some(parent)
                        if placed[parent as usize]
                            && index.entry(parent).height.next() == height =>
                    {
                        index.entry_mut(id).parent = parent;
                        true
                    }
                    _ => false,
                }
            };
        }
        let dropped = placed.contains(&false);
        if dropped {
            // Terminates: each pass holds fewer entries.
            return Self::without_unplaced(index, &parents, &order, &placed, from_a_store)
                .finish(tip);
        }
        // The main chain: the walk from the tip down to genesis.
        let mut cursor = index
            .id_of(&tip)
            .ok_or(BrokenMainChain::MissingBlock(tip))?;
        let mut reversed = Vec::with_capacity(index.entry(cursor).height.0 as usize + 1);
        loop {
            reversed.push(cursor);
            let entry = index.entry(cursor);
            if entry.parent == NO_ID {
                if entry.hash != index.genesis {
                    return Err(BrokenMainChain::WrongGenesis);
                }
                break;
            }
            cursor = entry.parent;
        }
        reversed.reverse();
        // Every main-chain block was connected, so its data is stored and it has not
        // failed: another status read back is damage, which would fail every block built
        // on the tip.
        for &id in reversed.iter().filter(|_| from_a_store) {
            if index.entry(id).status != BlockStatus::DataStored {
                index.damaged_records += 1;
                index.entry_mut(id).status = BlockStatus::DataStored;
            }
        }
        index.main_chain = reversed;
        index.next_sequence = (0..index.len())
            .map(|id| index.entry(id as Id).sequence + 1)
            .max()
            .unwrap_or(0);
        // Skip pointers, chain work and inherited failures, parents first; then the
        // leaves. Chain work is the parent's plus the header's own, recomputed rather than
        // read: a damaged record's larger work would pull the node onto its branch for
        // good.
        let mut has_valid_child = vec![false; index.len()];
        // A division per header otherwise; on regtest (and between retargets) consecutive
        // headers share their bits.
        let mut last_work: Option<(CompactTarget, Work)> = None;
        for &(height, id) in &order {
            index.link_skip(id);
            let bits = index.entry(id).bits;
            let own = match last_work {
                Some((last_bits, work)) if last_bits == bits => work,
                _ => {
                    let work = header_work(bits);
                    last_work = Some((bits, work));
                    work
                }
            };
            let parent = index.entry(id).parent;
            let work = if height == BlockHeight::GENESIS {
                own
            } else {
                index.entry(parent).chain_work.saturating_add(own)
            };
            if from_a_store && index.entry(id).chain_work != work {
                index.damaged_records += 1;
                index.entry_mut(id).chain_work = work;
            }
            if height == BlockHeight::GENESIS {
                continue;
            }
            if index.entry(parent).status.is_failed() && !index.entry(id).status.is_failed() {
                index.entry_mut(id).status = BlockStatus::FailedAncestor;
            }
            if !index.entry(id).status.is_failed() {
                has_valid_child[parent as usize] = true;
            }
        }
        for (id, has_valid_child) in has_valid_child.into_iter().enumerate() {
            let (hash, record) = index.hash_and_record(id as Id);
            if !record.status.is_failed() && !has_valid_child {
                index.leaves.insert(rank(hash, &record));
            }
        }
        Ok(index)
    }

    /// A builder holding only the entries of `index` that were placed (rare: a damaged
    /// store).
    fn without_unplaced(
        index: BlockIndex,
        parents: &[BlockHash],
        order: &[(BlockHeight, Id)],
        placed: &[bool],
        from_a_store: bool,
    ) -> IndexBuilder {
        let mut builder = IndexBuilder {
            from_a_store,
            ..IndexBuilder::new(index.genesis)
        };
        builder.index.damaged_records = index.damaged_records;
        for &(_, id) in order {
            if placed[id as usize] {
                let (hash, mut record) = index.hash_and_record(id);
                record.header.prev_hash = parents[id as usize];
                builder.add(hash, record);
            }
        }
        builder
    }
}

impl BlockIndex {
    fn empty(genesis: BlockHash) -> BlockIndex {
        BlockIndex {
            chunks: Vec::new(),
            ids: HashTable::new(),
            hasher: RandomState::new(),
            main_chain: Vec::new(),
            leaves: BTreeSet::new(),
            genesis,
            next_sequence: 0,
            damaged_records: 0,
        }
    }

    /// Records read back damaged when the index was built (see `damaged_records`).
    pub(crate) fn damaged_records(&self) -> u64 {
        self.damaged_records
    }

    /// An index holding only `genesis`, the main chain's first block.
    #[cfg(test)]
    pub(crate) fn new(genesis_hash: BlockHash, genesis: IndexRecord) -> BlockIndex {
        let mut builder = IndexBuilder::new(genesis_hash);
        builder.add(genesis_hash, genesis);
        builder
            .finish(genesis_hash)
            .expect("genesis alone is a main chain")
    }

    /// Builds the index from stored records (see [`IndexBuilder::finish`]).
    #[cfg(test)]
    pub(crate) fn from_records(
        records: impl IntoIterator<Item = (BlockHash, IndexRecord)>,
        tip: BlockHash,
        genesis: BlockHash,
    ) -> Result<BlockIndex, BrokenMainChain> {
        let mut builder = IndexBuilder::new(genesis);
        for (hash, record) in records {
            builder.add(hash, record);
        }
        builder.finish(tip)
    }

    fn entry(&self, id: Id) -> &Entry {
        entry_in(&self.chunks, id)
    }

    fn entry_mut(&mut self, id: Id) -> &mut Entry {
        let id = id as usize;
        &mut self.chunks[id / CHUNK][id % CHUNK]
    }

    fn id_of(&self, hash: &BlockHash) -> Option<Id> {
        self.ids
            .find(self.hasher.hash_one(hash), |&id| {
                entry_in(&self.chunks, id).hash == *hash
            })
            .copied()
    }

    /// Appends an entry for `hash` with `parent` and no skip pointer yet; returns its id.
    fn push_entry(&mut self, hash: BlockHash, record: &IndexRecord, parent: Id) -> Id {
        let id = self.len();
        // 2^32 - 1 headers would take over 600 GB of memory: a process never gets there.
        let id = Id::try_from(id).expect("fewer than 2^32 - 1 indexed headers");
        if self.chunks.last().is_none_or(|chunk| chunk.len() == CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        let header = &record.header;
        let entry = Entry {
            hash,
            merkle_root: header.merkle_root,
            chain_work: record.chain_work,
            time_ms: header.time_ms,
            nonce: header.nonce,
            height: record.height,
            sequence: record.sequence,
            version: header.version,
            bits: header.bits,
            parent,
            skip: NO_ID,
            status: record.status,
            chain_data: false,
        };
        if let Some(chunk) = self.chunks.last_mut() {
            chunk.push(entry);
        }
        let chunks = &self.chunks;
        let hasher = &self.hasher;
        self.ids.insert_unique(hasher.hash_one(hash), id, |&id| {
            hasher.hash_one(entry_in(chunks, id).hash)
        });
        id
    }

    /// The hash and record of an indexed block.
    fn hash_and_record(&self, id: Id) -> (BlockHash, IndexRecord) {
        let entry = self.entry(id);
        let prev_hash = if entry.parent == NO_ID {
            BlockHash::ZERO
        } else {
            self.entry(entry.parent).hash
        };
        (
            entry.hash,
            IndexRecord {
                header: Header {
                    version: entry.version,
                    prev_hash,
                    merkle_root: entry.merkle_root,
                    time_ms: entry.time_ms,
                    bits: entry.bits,
                    nonce: entry.nonce,
                },
                height: entry.height,
                chain_work: entry.chain_work,
                status: entry.status,
                sequence: entry.sequence,
            },
        )
    }

    /// Every indexed block, lowest height first (parents before children).
    pub(crate) fn by_height(&self) -> Vec<(BlockHeight, BlockHash)> {
        let mut by_height: Vec<(BlockHeight, BlockHash)> = (0..self.len())
            .map(|id| {
                let entry = self.entry(id as Id);
                (entry.height, entry.hash)
            })
            .collect();
        by_height.sort_unstable();
        by_height
    }

    /// The record of a known header.
    pub(crate) fn get(&self, hash: &BlockHash) -> Option<IndexRecord> {
        self.id_of(hash).map(|id| self.hash_and_record(id).1)
    }

    /// The record of a block the caller knows is indexed (a main-chain block, the best
    /// header, a parent of an indexed block).
    ///
    /// # Panics
    /// If `hash` is not indexed: a broken invariant of the caller.
    pub(crate) fn record(&self, hash: &BlockHash) -> IndexRecord {
        self.get(hash)
            .unwrap_or_else(|| panic!("block {hash} is not in the block index"))
    }

    /// Number of known headers.
    pub(crate) fn len(&self) -> usize {
        self.chunks
            .last()
            .map_or(0, |last| (self.chunks.len() - 1) * CHUNK + last.len())
    }

    /// Every known header.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (BlockHash, IndexRecord)> + '_ {
        (0..self.len()).map(|id| self.hash_and_record(id as Id))
    }

    /// Records a validation step of a known block that is not a failure (its data is
    /// stored); failures go through [`BlockIndex::fail`]. Returns its record as it is now.
    pub(crate) fn set_status(
        &mut self,
        hash: &BlockHash,
        status: BlockStatus,
    ) -> Option<IndexRecord> {
        let id = self.id_of(hash)?;
        self.entry_mut(id).status = status;
        Some(self.hash_and_record(id).1)
    }

    /// True if the block's data and all its ancestors' data are stored and it has not
    /// failed (as `ChainState` last said with [`BlockIndex::set_chain_data`]).
    pub(crate) fn has_chain_data(&self, hash: &BlockHash) -> bool {
        self.id_of(hash).is_some_and(|id| self.entry(id).chain_data)
    }

    /// Says whether a known block has chain data (see [`BlockIndex::has_chain_data`]).
    pub(crate) fn set_chain_data(&mut self, hash: &BlockHash, chain_data: bool) {
        if let Some(id) = self.id_of(hash) {
            self.entry_mut(id).chain_data = chain_data;
        }
    }

    /// The blocks with chain data whose chain has more work than `work`, with their
    /// records: a scan of the whole index.
    pub(crate) fn chain_data_above(&self, work: Work) -> Vec<(BlockHash, IndexRecord)> {
        (0..self.len() as Id)
            .filter(|&id| {
                let entry = self.entry(id);
                entry.chain_data && entry.chain_work > work
            })
            .map(|id| self.hash_and_record(id))
            .collect()
    }

    /// Adds a header whose parent is indexed: its height and chain work follow from the
    /// parent's, its sequence is the next arrival number. Returns its record.
    ///
    /// # Panics
    /// If the parent is not indexed: callers check it first.
    pub(crate) fn add_header(
        &mut self,
        hash: BlockHash,
        header: &Header,
        work: Work,
    ) -> IndexRecord {
        let parent_id = self
            .id_of(&header.prev_hash)
            .unwrap_or_else(|| panic!("the parent of {hash} is not in the block index"));
        let (parent_hash, parent) = self.hash_and_record(parent_id);
        let record = IndexRecord {
            header: *header,
            height: parent.height.next(),
            chain_work: parent.chain_work.saturating_add(work),
            status: BlockStatus::HeaderValid,
            sequence: self.next_sequence,
        };
        self.next_sequence += 1;
        let id = self.push_entry(hash, &record, parent_id);
        self.link_skip(id);
        self.leaves.remove(&rank(parent_hash, &parent));
        self.leaves.insert(rank(hash, &record));
        record
    }

    /// The valid header with the most work (the first seen among equals).
    pub(crate) fn best_header(&self) -> BlockHash {
        self.leaves
            .last()
            .map_or(self.genesis, |(_, _, hash)| *hash)
    }

    /// Marks `hash` with the failed `status` and every descendant not yet failed as
    /// `FailedAncestor`, and takes them out of the best-header race. Returns the blocks whose
    /// status changed, with their records. Costs O(leaves × log index + descendants).
    pub(crate) fn fail(
        &mut self,
        hash: BlockHash,
        status: BlockStatus,
    ) -> Vec<(BlockHash, IndexRecord)> {
        let mut changed = Vec::new();
        let Some(id) = self.id_of(&hash) else {
            return changed;
        };
        let was_failed = self.entry(id).status.is_failed();
        self.entry_mut(id).status = status;
        let (_, record) = self.hash_and_record(id);
        changed.push((hash, record));
        if was_failed {
            // Its descendants were marked when it first failed.
            return changed;
        }
        // Every valid descendant lies on the way from a leaf below it back to it.
        let below: Vec<Rank> = self
            .leaves
            .iter()
            .filter(|(_, _, leaf)| self.ancestor(leaf, record.height) == Some(hash))
            .copied()
            .collect();
        for leaf in below {
            self.leaves.remove(&leaf);
            let Some(mut cursor) = self.id_of(&leaf.2) else {
                continue;
            };
            while cursor != id && cursor != NO_ID {
                if self.entry(cursor).status.is_failed() {
                    break;
                }
                self.entry_mut(cursor).status = BlockStatus::FailedAncestor;
                changed.push(self.hash_and_record(cursor));
                cursor = self.entry(cursor).parent;
            }
        }
        // Its parent is a leaf again if no valid header is left below it.
        let parent_id = self.entry(id).parent;
        if parent_id != NO_ID {
            let (parent_hash, parent) = self.hash_and_record(parent_id);
            let still_has_valid_child = self
                .leaves
                .iter()
                .any(|(_, _, leaf)| self.ancestor(leaf, parent.height) == Some(parent_hash));
            if !parent.status.is_failed() && !still_has_valid_child {
                self.leaves.insert(rank(parent_hash, &parent));
            }
        }
        changed
    }

    /// The main chain's tip.
    pub(crate) fn tip(&self) -> BlockHash {
        let tip = *self
            .main_chain
            .last()
            .expect("the main chain always holds genesis");
        self.entry(tip).hash
    }

    /// The main chain's tip height.
    pub(crate) fn tip_height(&self) -> BlockHeight {
        BlockHeight(self.main_chain.len() as u64 - 1)
    }

    /// `hash`, a child of the tip, becomes the tip.
    ///
    /// # Panics
    /// If `hash` is not indexed: callers connect only indexed blocks.
    pub(crate) fn push_main(&mut self, hash: BlockHash) {
        let id = self
            .id_of(&hash)
            .unwrap_or_else(|| panic!("block {hash} is not in the block index"));
        self.main_chain.push(id);
    }

    /// The tip leaves the main chain (never genesis).
    pub(crate) fn pop_main(&mut self) {
        if self.main_chain.len() > 1 {
            self.main_chain.pop();
        }
    }

    fn id_at(&self, height: u64) -> Option<Id> {
        usize::try_from(height)
            .ok()
            .and_then(|height| self.main_chain.get(height))
            .copied()
    }

    /// The main-chain hash at `height`.
    pub(crate) fn hash_at(&self, height: BlockHeight) -> Option<BlockHash> {
        self.id_at(height.0).map(|id| self.entry(id).hash)
    }

    /// True if `hash` is on the main chain.
    pub(crate) fn is_on_main_chain(&self, hash: &BlockHash) -> bool {
        self.id_of(hash)
            .is_some_and(|id| self.id_at(self.entry(id).height.0) == Some(id))
    }

    /// The ancestor of `hash` at `height` (`hash` itself at its own height), in O(log height)
    /// steps: skip pointers and parents until the main chain, then the height index.
    pub(crate) fn ancestor(&self, hash: &BlockHash, height: BlockHeight) -> Option<BlockHash> {
        let id = self.id_of(hash)?;
        self.ancestor_id(id, height.0)
            .map(|ancestor| self.entry(ancestor).hash)
    }

    fn ancestor_id(&self, id: Id, target: u64) -> Option<Id> {
        let mut cursor = id;
        loop {
            if cursor == NO_ID {
                return None;
            }
            let entry = self.entry(cursor);
            let walk = entry.height.0;
            if walk < target {
                return None;
            }
            if walk == target {
                return Some(cursor);
            }
            if self.id_at(walk) == Some(cursor) {
                return self.id_at(target);
            }
            // Bitcoin Core's `GetAncestor`: take the skip unless the parent's skip would
            // land closer to the target without passing it.
            let skip = skip_height(walk);
            let skip_of_parent = skip_height(walk - 1);
            let take_skip = skip == target
                || (skip > target
                    && !(skip_of_parent < skip.saturating_sub(2) && skip_of_parent >= target));
            cursor = if take_skip && entry.skip != NO_ID {
                entry.skip
            } else {
                entry.parent
            };
        }
    }

    /// Links the skip pointer of a newly indexed block (its parent's are in place).
    fn link_skip(&mut self, id: Id) {
        let entry = self.entry(id);
        if entry.height == BlockHeight::GENESIS || entry.parent == NO_ID {
            return;
        }
        let target = skip_height(entry.height.0);
        if let Some(skip) = self.ancestor_id(entry.parent, target) {
            self.entry_mut(id).skip = skip;
        }
    }

    /// The height of the highest ancestor of `hash` (itself included) on the main chain,
    /// by binary search over heights: O(log^2 height).
    pub(crate) fn main_chain_fork_height(&self, hash: &BlockHash) -> Option<u64> {
        let id = self.id_of(hash)?;
        let on_main_chain = |height: u64| {
            self.ancestor_id(id, height)
                .is_some_and(|ancestor| self.id_at(height) == Some(ancestor))
        };
        let mut high = self.entry(id).height.0.min(self.tip_height().0);
        // Usually the answer at once: a header chain that extends the tip.
        if on_main_chain(high) {
            return Some(high);
        }
        // Genesis is on every branch; the answer lies in low..high.
        let mut low = 0u64;
        high -= 1;
        while low < high {
            let middle = low + (high - low).div_ceil(2);
            if on_main_chain(middle) {
                low = middle;
            } else {
                high = middle - 1;
            }
        }
        Some(low)
    }

    fn summary(&self, id: Id) -> HeaderSummary {
        let entry = self.entry(id);
        HeaderSummary {
            height: entry.height,
            time_ms: entry.time_ms,
            bits: entry.bits,
        }
    }

    /// What a child of `parent` is checked against, with the clock at `now_ms`; `None` if
    /// the parent or the difficulty anchor below it is not indexed.
    pub(crate) fn header_context(
        &self,
        params: &Params,
        parent: &BlockHash,
        now_ms: u64,
    ) -> Option<HeaderContext> {
        let parent = self.id_of(parent)?;
        let summary = self.summary(parent);
        let anchor = self
            .ancestor_id(parent, Params::ASERT_ANCHOR_HEIGHT.0)
            .map(|anchor| self.summary(anchor));
        let required_bits = next_required_bits(params, summary, anchor)?;
        let mut times = Vec::with_capacity(11);
        let mut cursor = parent;
        while times.len() < 11 && cursor != NO_ID {
            let entry = self.entry(cursor);
            times.push(entry.time_ms);
            cursor = entry.parent;
        }
        times.reverse();
        Some(HeaderContext {
            required_bits,
            median_time_past_ms: compute_median_time_past(&times),
            now_ms,
        })
    }

    /// Hashes from the tip back to genesis, dense for the last ten blocks and then doubling
    /// the step: a peer finds the fork point from it whatever branch it is on.
    pub(crate) fn block_locator(&self) -> Vec<BlockHash> {
        let mut locator = Vec::new();
        let mut height = self.tip_height().0;
        let mut step = 1u64;
        loop {
            locator.push(self.entry(self.main_chain[height as usize]).hash);
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
    pub(crate) fn find_fork(&self, locator: &[BlockHash]) -> BlockHeight {
        locator
            .iter()
            .find_map(|hash| {
                let id = self.id_of(hash)?;
                let height = self.entry(id).height;
                (self.id_at(height.0) == Some(id)).then_some(height)
            })
            .unwrap_or(BlockHeight::GENESIS)
    }

    /// Main-chain headers after the fork with `locator`, at most `max`, stopping after `stop`.
    pub(crate) fn headers_after(
        &self,
        locator: &[BlockHash],
        stop: Option<BlockHash>,
        max: usize,
    ) -> Vec<Header> {
        let start = self.find_fork(locator).0 as usize + 1;
        let mut headers = Vec::new();
        for &id in self.main_chain.iter().skip(start).take(max) {
            let (hash, record) = self.hash_and_record(id);
            headers.push(record.header);
            if Some(hash) == stop {
                break;
            }
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use powchain_consensus::testkit::{TestChain, test_key};
    use powchain_consensus::{Block, Network};
    use std::collections::HashMap;

    fn genesis_record(chain: &TestChain) -> (BlockHash, IndexRecord) {
        let record = IndexRecord::genesis(chain.params).expect("genesis bits are valid");
        (chain.blocks[0].compute_hash(), record)
    }

    fn work_of(block: &Block) -> Work {
        block.header.bits.to_target().expect("valid bits").to_work()
    }

    /// An index holding `main` as its main chain and `branch` (sharing a prefix) as headers.
    fn index_of(main: &TestChain, branch: &TestChain) -> BlockIndex {
        let (genesis, record) = genesis_record(main);
        let mut index = BlockIndex::new(genesis, record);
        for block in &main.blocks[1..] {
            let hash = block.compute_hash();
            index.add_header(hash, &block.header, work_of(block));
            index.push_main(hash);
        }
        for block in &branch.blocks[1..] {
            let hash = block.compute_hash();
            if index.get(&hash).is_none() {
                index.add_header(hash, &block.header, work_of(block));
            }
        }
        index
    }

    fn branch_off(main: &TestChain, at: usize, length: usize) -> TestChain {
        let mut branch = TestChain::new(Network::Regtest);
        for block in &main.blocks[1..=at] {
            branch.push(block.clone()).expect("valid");
        }
        branch.miner = test_key(7);
        branch.mine_empty(length);
        branch
    }

    #[test]
    fn skip_heights_point_below_and_match_bitcoin_core() {
        // Values of Bitcoin Core's GetSkipHeight.
        let expected = [0, 0, 0, 1, 0, 1, 4, 1, 0, 1, 8, 1, 8, 1, 12, 9, 0];
        for (height, skip) in expected.iter().enumerate() {
            assert_eq!(skip_height(height as u64), *skip, "height {height}");
        }
        for height in 1..10_000u64 {
            assert!(skip_height(height) < height);
        }
    }

    #[test]
    fn an_entry_stays_compact() {
        // The point of the layout (issue 16): a 100,000-block index in about 16 MB.
        assert!(
            std::mem::size_of::<Entry>() <= 152,
            "an index entry takes {} bytes",
            std::mem::size_of::<Entry>()
        );
    }

    #[test]
    fn records_read_back_whole_across_chunks_and_from_the_store_order() {
        // More blocks than a chunk holds, with a branch, so ids, parents and skips cross
        // chunk boundaries.
        let mut main = TestChain::new(Network::Regtest);
        main.mine_empty(CHUNK + 300);
        let branch = branch_off(&main, CHUNK - 10, 40);
        let index = index_of(&main, &branch);
        assert_eq!(index.len(), main.blocks.len() + 40);
        for blocks in [&main.blocks, &branch.blocks] {
            for (height, block) in blocks.iter().enumerate() {
                let record = index.get(&block.compute_hash()).expect("indexed");
                assert_eq!(record.header, block.header, "height {height}");
                assert_eq!(record.height, BlockHeight(height as u64));
            }
        }
        // Rebuilt from its records in another order (the store's is by hash), it is the same.
        let mut records: Vec<(BlockHash, IndexRecord)> = index.iter().collect();
        records.sort_unstable_by_key(|(hash, _)| *hash);
        let rebuilt = BlockIndex::from_records(records, index.tip(), main.blocks[0].compute_hash())
            .expect("a main chain");
        assert_eq!(rebuilt.len(), index.len());
        assert_eq!(rebuilt.tip(), index.tip());
        assert_eq!(rebuilt.best_header(), index.best_header());
        for (hash, record) in index.iter() {
            assert_eq!(rebuilt.get(&hash), Some(record));
            assert_eq!(
                rebuilt.is_on_main_chain(&hash),
                index.is_on_main_chain(&hash)
            );
        }
        let branch_tip = branch.tip().compute_hash();
        for height in (0..=(CHUNK as u64 + 30)).step_by(97) {
            assert_eq!(
                rebuilt.ancestor(&branch_tip, BlockHeight(height)),
                Some(branch.blocks[height as usize].compute_hash())
            );
        }
    }

    #[test]
    fn a_damaged_store_s_unplaceable_headers_are_left_out() {
        let mut main = TestChain::new(Network::Regtest);
        main.mine_empty(8);
        let branch = branch_off(&main, 3, 4);
        let index = index_of(&main, &branch);
        let mut records: HashMap<BlockHash, IndexRecord> = index.iter().collect();
        // The branch's first header is lost: the three above it cannot be placed.
        records.remove(&branch.blocks[4].compute_hash());
        // A header whose stored height disagrees with its parent's.
        let mut wrong_height = records[&main.tip().compute_hash()];
        wrong_height.header.time_ms += 1;
        wrong_height.height = BlockHeight(20);
        let stray = wrong_height.header.compute_hash();
        records.insert(stray, wrong_height);
        // A second record claiming height 0.
        let mut second_genesis = records[&main.blocks[2].compute_hash()];
        second_genesis.height = BlockHeight::GENESIS;
        let second_genesis_hash = BlockHash([9; 32]);
        records.insert(second_genesis_hash, second_genesis);
        let rebuilt = BlockIndex::from_records(records, index.tip(), main.blocks[0].compute_hash())
            .expect("the main chain is whole");
        assert_eq!(rebuilt.len(), main.blocks.len());
        for hash in [stray, second_genesis_hash, branch.tip().compute_hash()] {
            assert_eq!(rebuilt.get(&hash), None);
        }
        assert_eq!(rebuilt.best_header(), main.tip().compute_hash());
        assert_eq!(rebuilt.tip_height(), BlockHeight(8));
    }

    #[test]
    fn chain_data_is_kept_per_block_and_listed_above_a_work() {
        let mut main = TestChain::new(Network::Regtest);
        main.mine_empty(5);
        let mut index = index_of(&main, &main);
        let hashes: Vec<BlockHash> = main.blocks.iter().map(Block::compute_hash).collect();
        for hash in &hashes {
            assert!(!index.has_chain_data(hash));
            index.set_chain_data(hash, true);
        }
        index.set_chain_data(&hashes[5], false);
        assert!(!index.has_chain_data(&hashes[5]));
        assert!(!index.has_chain_data(&BlockHash([1; 32])), "unknown");
        let above: Vec<BlockHash> = index
            .chain_data_above(index.record(&hashes[2]).chain_work)
            .into_iter()
            .map(|(hash, _)| hash)
            .collect();
        assert_eq!(above, vec![hashes[3], hashes[4]]);
    }

    #[test]
    fn ancestors_through_skip_pointers_equal_a_parent_walk_without_a_store() {
        let mut main = TestChain::new(Network::Regtest);
        main.mine_empty(150);
        let branch = branch_off(&main, 40, 170);
        let index = index_of(&main, &branch);
        let branch_tip = branch.tip().compute_hash();
        assert_eq!(index.best_header(), branch_tip, "the branch has more work");
        assert_eq!(index.main_chain_fork_height(&branch_tip), Some(40));
        for (blocks, tip) in [
            (&branch.blocks, branch_tip),
            (&main.blocks, main.tip().compute_hash()),
        ] {
            for (height, block) in blocks.iter().enumerate() {
                assert_eq!(
                    index.ancestor(&tip, BlockHeight(height as u64)),
                    Some(block.compute_hash()),
                    "height {height}"
                );
            }
            assert_eq!(index.ancestor(&tip, BlockHeight(blocks.len() as u64)), None);
        }
        // Rebuilt from its records, as at open, the index answers the same.
        let records: HashMap<BlockHash, IndexRecord> = index.iter().collect();
        let rebuilt = BlockIndex::from_records(records, index.tip(), main.blocks[0].compute_hash())
            .expect("a main chain");
        assert_eq!(rebuilt.best_header(), branch_tip);
        for height in (0..=210).step_by(7) {
            assert_eq!(
                rebuilt.ancestor(&branch_tip, BlockHeight(height)),
                index.ancestor(&branch_tip, BlockHeight(height))
            );
        }
    }

    #[test]
    fn a_failed_block_takes_its_descendants_out_of_the_best_header_race() {
        let mut main = TestChain::new(Network::Regtest);
        main.mine_empty(10);
        let branch = branch_off(&main, 5, 8);
        let mut index = index_of(&main, &branch);
        let branch_tip = branch.tip().compute_hash();
        assert_eq!(index.best_header(), branch_tip);
        let first_of_branch = branch.blocks[6].compute_hash();
        let changed = index.fail(first_of_branch, BlockStatus::Failed);
        assert_eq!(changed.len(), 8, "the block and its 7 descendants");
        assert_eq!(
            index.record(&branch_tip).status,
            BlockStatus::FailedAncestor
        );
        assert!(!index.record(&main.tip().compute_hash()).status.is_failed());
        assert_eq!(index.best_header(), main.tip().compute_hash());
        assert_eq!(
            index.fail(first_of_branch, BlockStatus::Failed).len(),
            1,
            "failing it again touches no descendant"
        );
        // Rebuilt from records where only the failed block is stored as failed, as at open.
        let mut records: HashMap<BlockHash, IndexRecord> = index.iter().collect();
        records.insert(
            branch_tip,
            IndexRecord {
                status: BlockStatus::HeaderValid,
                ..records[&branch_tip]
            },
        );
        let rebuilt = BlockIndex::from_records(records, index.tip(), main.blocks[0].compute_hash())
            .expect("a main chain");
        assert_eq!(
            rebuilt.record(&branch_tip).status,
            BlockStatus::FailedAncestor
        );
        assert_eq!(rebuilt.best_header(), main.tip().compute_hash());
    }

    #[test]
    fn failing_a_fork_point_marks_every_branch_above_it_and_its_parent_leads_again() {
        let mut main = TestChain::new(Network::Regtest);
        main.mine_empty(6);
        // Two branches of headers off height 6 of a longer header chain: 6 ─ a7 ─ a8 ─ a9
        // and a7 ─ b8 ─ b9 ─ b10 (b is heaviest).
        let long = branch_off(&main, 6, 3);
        let mut other = TestChain::new(Network::Regtest);
        for block in &long.blocks[1..=7] {
            other.push(block.clone()).expect("valid");
        }
        other.miner = test_key(8);
        other.mine_empty(3);
        let mut index = index_of(&main, &long);
        for block in &other.blocks[8..] {
            index.add_header(block.compute_hash(), &block.header, work_of(block));
        }
        assert_eq!(index.best_header(), other.tip().compute_hash());
        let fork = long.blocks[7].compute_hash();
        let changed = index.fail(fork, BlockStatus::Failed);
        assert_eq!(
            changed.len(),
            1 + 2 + 3,
            "the fork block and both branches above it"
        );
        for block in long.blocks[8..].iter().chain(&other.blocks[8..]) {
            assert_eq!(
                index.record(&block.compute_hash()).status,
                BlockStatus::FailedAncestor
            );
        }
        assert_eq!(
            index.best_header(),
            main.tip().compute_hash(),
            "the main tip, no longer below a valid header, leads again"
        );
    }

    #[test]
    fn ties_go_to_the_first_seen_and_locators_find_the_fork() {
        let mut main = TestChain::new(Network::Regtest);
        main.mine_empty(30);
        let branch = branch_off(&main, 20, 10);
        let index = index_of(&main, &branch);
        assert_eq!(
            index.best_header(),
            main.tip().compute_hash(),
            "equal work: the first seen stays best"
        );
        let locator = index.block_locator();
        assert_eq!(locator[0], main.tip().compute_hash());
        assert_eq!(locator.last(), Some(&main.blocks[0].compute_hash()));
        assert_eq!(
            index.find_fork(&[branch.tip().compute_hash()]),
            BlockHeight(0)
        );
        let branch_locator: Vec<BlockHash> = branch.blocks[..=20]
            .iter()
            .rev()
            .map(Block::compute_hash)
            .collect();
        assert_eq!(index.find_fork(&branch_locator), BlockHeight(20));
        let after = index.headers_after(&branch_locator, None, 5);
        assert_eq!(after.len(), 5);
        assert_eq!(after[0], main.blocks[21].header);
    }

    #[test]
    fn a_main_chain_that_does_not_reach_genesis_is_refused() {
        let mut main = TestChain::new(Network::Regtest);
        main.mine_empty(3);
        let index = index_of(&main, &main);
        let mut records: HashMap<BlockHash, IndexRecord> = index.iter().collect();
        let middle = main.blocks[2].compute_hash();
        records.remove(&middle);
        assert_eq!(
            BlockIndex::from_records(records, index.tip(), main.blocks[0].compute_hash()).err(),
            Some(BrokenMainChain::MissingBlock(middle))
        );
    }

    mod property {
        use super::*;
        use powchain_consensus::uint::U256;
        use proptest::prelude::*;

        /// A header of `parent` told apart by `salt`; the index checks no proof of work.
        fn header_on(parent: BlockHash, salt: u64) -> Header {
            Header {
                version: 1,
                prev_hash: parent,
                merkle_root: MerkleRoot([7; 32]),
                time_ms: 1_700_000_000_000 + salt,
                bits: CompactTarget(0x207f_ffff),
                nonce: salt,
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Any tree of headers, indexed as they arrive and rebuilt from its records in
            /// the store's order, answers as a walk over parents does: ancestors, the fork
            /// with the main chain, the best header (most work, first seen on a tie).
            #[test]
            fn any_tree_of_headers_answers_as_a_parent_walk(
                shape in proptest::collection::vec((any::<prop::sample::Index>(), 1u64..4), 1..300),
                main_pick in any::<prop::sample::Index>(),
                probes in proptest::collection::vec(
                    (any::<prop::sample::Index>(), any::<prop::sample::Index>()), 1..40),
            ) {
                let genesis_header = header_on(BlockHash::ZERO, 0);
                let genesis = genesis_header.compute_hash();
                let mut index = BlockIndex::new(genesis, IndexRecord {
                    header: genesis_header,
                    height: BlockHeight::GENESIS,
                    chain_work: Work::from_u256(U256::from_u64(1)),
                    status: BlockStatus::DataStored,
                    sequence: 0,
                });
                // hashes[i], parents[i] (by position), heights and work, for the naive walk.
                let mut hashes = vec![genesis];
                let mut parents: Vec<Option<usize>> = vec![None];
                let mut works = vec![1u64];
                let mut heights = vec![0u64];
                for (salt, (parent, work)) in shape.iter().enumerate() {
                    let parent = parent.index(hashes.len());
                    let header = header_on(hashes[parent], salt as u64 + 1);
                    let hash = header.compute_hash();
                    index.add_header(hash, &header, Work::from_u256(U256::from_u64(*work)));
                    hashes.push(hash);
                    parents.push(Some(parent));
                    works.push(works[parent] + work);
                    heights.push(heights[parent] + 1);
                }
                // The main chain: the path from genesis to one of the headers.
                let tip = main_pick.index(hashes.len());
                let mut path = vec![tip];
                while let Some(parent) = parents[*path.last().expect("not empty")] {
                    path.push(parent);
                }
                for position in path.iter().rev().skip(1) {
                    index.push_main(hashes[*position]);
                }
                let walk = |from: usize, height: u64| {
                    let mut cursor = from;
                    while heights[cursor] > height {
                        cursor = parents[cursor].expect("above genesis");
                    }
                    hashes[cursor]
                };
                // Most work, then the first seen (the lowest position).
                let best = (0..hashes.len())
                    .max_by_key(|&position| (works[position], Reverse(position)))
                    .expect("not empty");
                let mut records: Vec<(BlockHash, IndexRecord)> = index.iter().collect();
                records.sort_unstable_by_key(|(hash, _)| *hash);
                let rebuilt = BlockIndex::from_records(records, hashes[tip], genesis)
                    .expect("a main chain");
                for built in [&index, &rebuilt] {
                    prop_assert_eq!(built.len(), hashes.len());
                    prop_assert_eq!(built.tip(), hashes[tip]);
                    prop_assert_eq!(built.best_header(), hashes[best]);
                    for &(from, height) in &probes {
                        let from = from.index(hashes.len());
                        let height = height.index(heights[from] as usize + 1) as u64;
                        prop_assert_eq!(
                            built.ancestor(&hashes[from], BlockHeight(height)),
                            Some(walk(from, height))
                        );
                        let fork = (0..=heights[from].min(heights[tip]))
                            .rev()
                            .find(|&height| walk(from, height) == walk(tip, height))
                            .expect("genesis is shared");
                        prop_assert_eq!(built.main_chain_fork_height(&hashes[from]), Some(fork));
                        let record = built.get(&hashes[from]).expect("indexed");
                        prop_assert_eq!(record.height, BlockHeight(heights[from]));
                        prop_assert_eq!(record.header.compute_hash(), hashes[from]);
                    }
                }
            }
        }
    }
}
