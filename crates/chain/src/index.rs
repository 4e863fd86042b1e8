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

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Index;

use powchain_consensus::difficulty::compute_median_time_past;
use powchain_consensus::validation::{HeaderContext, HeaderSummary, next_required_bits};
use powchain_consensus::{BlockHash, BlockHeight, Header, Params, Work};

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

/// Every known header, the main chain and the best header.
pub(crate) struct BlockIndex {
    records: HashMap<BlockHash, IndexRecord>,
    /// Main-chain hashes by height; never empty (genesis).
    main_chain: Vec<BlockHash>,
    /// Each indexed block's skip pointer: its ancestor at [`skip_height`] of its height.
    skips: HashMap<BlockHash, BlockHash>,
    /// Valid headers without a valid child, ranked; the last is the best header.
    leaves: BTreeSet<Rank>,
    genesis: BlockHash,
    next_sequence: u64,
}

impl Index<&BlockHash> for BlockIndex {
    type Output = IndexRecord;

    /// The record of a block the caller knows is indexed (a main-chain block, the best
    /// header, a parent of an indexed block).
    fn index(&self, hash: &BlockHash) -> &IndexRecord {
        &self.records[hash]
    }
}

impl BlockIndex {
    /// An index holding only `genesis`, the main chain's first block.
    #[cfg(test)]
    pub(crate) fn new(genesis_hash: BlockHash, genesis: IndexRecord) -> BlockIndex {
        let mut records = HashMap::new();
        records.insert(genesis_hash, genesis);
        BlockIndex {
            records,
            main_chain: vec![genesis_hash],
            skips: HashMap::new(),
            leaves: BTreeSet::from([rank(genesis_hash, &genesis)]),
            genesis: genesis_hash,
            next_sequence: genesis.sequence + 1,
        }
    }

    /// Builds the index from stored records and the stored tip: the main chain is the walk
    /// from the tip to genesis, skip pointers are linked parents first, a header below a
    /// failed block is marked `FailedAncestor` (in memory: only the failed block's own
    /// record is stored as failed), and the best header is the valid one with the most work.
    pub(crate) fn from_records(
        records: HashMap<BlockHash, IndexRecord>,
        tip: BlockHash,
        genesis: BlockHash,
    ) -> Result<BlockIndex, BrokenMainChain> {
        let mut cursor = tip;
        let mut reversed = Vec::new();
        loop {
            let record = records
                .get(&cursor)
                .ok_or(BrokenMainChain::MissingBlock(cursor))?;
            reversed.push(cursor);
            if record.height == BlockHeight::GENESIS {
                break;
            }
            cursor = record.header.prev_hash;
        }
        if cursor != genesis {
            return Err(BrokenMainChain::WrongGenesis);
        }
        reversed.reverse();
        let next_sequence = records
            .values()
            .map(|record| record.sequence + 1)
            .max()
            .unwrap_or(0);
        let mut index = BlockIndex {
            records,
            main_chain: reversed,
            skips: HashMap::new(),
            leaves: BTreeSet::new(),
            genesis,
            next_sequence,
        };
        let by_height = index.by_height();
        // Parents of valid headers: every other valid header is a leaf.
        let mut valid_parents = HashSet::new();
        for (height, hash) in &by_height {
            let mut record = index.records[hash];
            index.link_skip(*hash, &record);
            if *height == BlockHeight::GENESIS {
                continue;
            }
            let parent = record.header.prev_hash;
            let parent_failed = index
                .records
                .get(&parent)
                .is_none_or(|parent| parent.status.is_failed());
            if parent_failed && !record.status.is_failed() {
                record.status = BlockStatus::FailedAncestor;
                index.records.insert(*hash, record);
            }
            if !record.status.is_failed() {
                valid_parents.insert(parent);
            }
        }
        for (_, hash) in by_height {
            let record = index.records[&hash];
            if !record.status.is_failed() && !valid_parents.contains(&hash) {
                index.leaves.insert(rank(hash, &record));
            }
        }
        Ok(index)
    }

    /// Every indexed block, lowest height first (parents before children).
    pub(crate) fn by_height(&self) -> Vec<(BlockHeight, BlockHash)> {
        let mut by_height: Vec<(BlockHeight, BlockHash)> = self
            .records
            .iter()
            .map(|(hash, record)| (record.height, *hash))
            .collect();
        by_height.sort_unstable();
        by_height
    }

    /// The record of a known header.
    pub(crate) fn get(&self, hash: &BlockHash) -> Option<&IndexRecord> {
        self.records.get(hash)
    }

    /// Number of known headers.
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// Every known header.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&BlockHash, &IndexRecord)> {
        self.records.iter()
    }

    /// Records a validation step of a known block that is not a failure (its data is
    /// stored); failures go through [`BlockIndex::fail`]. Returns its record as it is now.
    pub(crate) fn set_status(
        &mut self,
        hash: &BlockHash,
        status: BlockStatus,
    ) -> Option<IndexRecord> {
        let record = self.records.get_mut(hash)?;
        record.status = status;
        Some(*record)
    }

    /// Adds a header whose parent is indexed: its height and chain work follow from the
    /// parent's, its sequence is the next arrival number. Returns its record.
    pub(crate) fn add_header(
        &mut self,
        hash: BlockHash,
        header: &Header,
        work: Work,
    ) -> IndexRecord {
        let parent = self.records[&header.prev_hash];
        let record = IndexRecord {
            header: *header,
            height: parent.height.next(),
            chain_work: parent.chain_work.saturating_add(work),
            status: BlockStatus::HeaderValid,
            sequence: self.next_sequence,
        };
        self.next_sequence += 1;
        self.records.insert(hash, record);
        self.link_skip(hash, &record);
        self.leaves.remove(&rank(header.prev_hash, &parent));
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
        let Some(record) = self.records.get_mut(&hash) else {
            return changed;
        };
        let was_failed = record.status.is_failed();
        record.status = status;
        let record = *record;
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
            let mut cursor = leaf.2;
            while cursor != hash {
                let Some(descendant) = self.records.get_mut(&cursor) else {
                    break;
                };
                if descendant.status.is_failed() {
                    break;
                }
                descendant.status = BlockStatus::FailedAncestor;
                changed.push((cursor, *descendant));
                cursor = descendant.header.prev_hash;
            }
        }
        // Its parent is a leaf again if no valid header is left below it.
        let parent_hash = record.header.prev_hash;
        if let Some(parent) = self.records.get(&parent_hash).copied() {
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
        *self
            .main_chain
            .last()
            .expect("the main chain always holds genesis")
    }

    /// The main chain's tip height.
    pub(crate) fn tip_height(&self) -> BlockHeight {
        BlockHeight(self.main_chain.len() as u64 - 1)
    }

    /// `hash`, a child of the tip, becomes the tip.
    pub(crate) fn push_main(&mut self, hash: BlockHash) {
        self.main_chain.push(hash);
    }

    /// The tip leaves the main chain (never genesis).
    pub(crate) fn pop_main(&mut self) {
        if self.main_chain.len() > 1 {
            self.main_chain.pop();
        }
    }

    /// The main-chain hash at `height`.
    pub(crate) fn hash_at(&self, height: BlockHeight) -> Option<BlockHash> {
        usize::try_from(height.0)
            .ok()
            .and_then(|height| self.main_chain.get(height))
            .copied()
    }

    /// True if `hash` is on the main chain.
    pub(crate) fn is_on_main_chain(&self, hash: &BlockHash) -> bool {
        self.records
            .get(hash)
            .is_some_and(|record| self.hash_at(record.height) == Some(*hash))
    }

    /// The ancestor of `hash` at `height` (`hash` itself at its own height), in O(log height)
    /// steps: skip pointers and parents until the main chain, then the height index.
    pub(crate) fn ancestor(&self, hash: &BlockHash, height: BlockHeight) -> Option<BlockHash> {
        let target = height.0;
        let mut cursor = *hash;
        loop {
            let record = self.records.get(&cursor)?;
            let walk = record.height.0;
            if walk < target {
                return None;
            }
            if walk == target {
                return Some(cursor);
            }
            if self.hash_at(record.height) == Some(cursor) {
                return self.hash_at(height);
            }
            // Bitcoin Core's `GetAncestor`: take the skip unless the parent's skip would
            // land closer to the target without passing it.
            let skip = skip_height(walk);
            let skip_of_parent = skip_height(walk - 1);
            let take_skip = skip == target
                || (skip > target
                    && !(skip_of_parent < skip.saturating_sub(2) && skip_of_parent >= target));
            cursor = match self.skips.get(&cursor) {
                Some(skip_hash) if take_skip => *skip_hash,
                _ => record.header.prev_hash,
            };
        }
    }

    /// Records the skip pointer of a newly indexed block (its parent's are in place).
    fn link_skip(&mut self, hash: BlockHash, record: &IndexRecord) {
        if record.height == BlockHeight::GENESIS {
            return;
        }
        let target = BlockHeight(skip_height(record.height.0));
        if let Some(skip) = self.ancestor(&record.header.prev_hash, target) {
            self.skips.insert(hash, skip);
        }
    }

    /// The height of the highest ancestor of `hash` (itself included) on the main chain,
    /// by binary search over heights: O(log^2 height).
    pub(crate) fn main_chain_fork_height(&self, hash: &BlockHash) -> Option<u64> {
        let record = self.records.get(hash)?;
        let on_main_chain = |height: u64| {
            self.ancestor(hash, BlockHeight(height))
                .is_some_and(|ancestor| self.hash_at(BlockHeight(height)) == Some(ancestor))
        };
        let mut high = record.height.0.min(self.tip_height().0);
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

    fn summary(&self, hash: &BlockHash) -> Option<HeaderSummary> {
        self.records.get(hash).map(|record| HeaderSummary {
            height: record.height,
            time_ms: record.header.time_ms,
            bits: record.header.bits,
        })
    }

    /// What a child of `parent` is checked against, with the clock at `now_ms`; `None` if
    /// the parent or the difficulty anchor below it is not indexed.
    pub(crate) fn header_context(
        &self,
        params: &Params,
        parent: &BlockHash,
        now_ms: u64,
    ) -> Option<HeaderContext> {
        let summary = self.summary(parent)?;
        let anchor = self
            .ancestor(parent, Params::ASERT_ANCHOR_HEIGHT)
            .and_then(|anchor| self.summary(&anchor));
        let required_bits = next_required_bits(params, summary, anchor)?;
        let mut times = Vec::with_capacity(11);
        let mut cursor = *parent;
        while times.len() < 11 {
            let Some(record) = self.records.get(&cursor) else {
                break;
            };
            times.push(record.header.time_ms);
            if record.height == BlockHeight::GENESIS {
                break;
            }
            cursor = record.header.prev_hash;
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
    pub(crate) fn find_fork(&self, locator: &[BlockHash]) -> BlockHeight {
        locator
            .iter()
            .find_map(|hash| {
                self.is_on_main_chain(hash)
                    .then(|| self.records[hash].height)
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
        for hash in self.main_chain.iter().skip(start).take(max) {
            headers.push(self.records[hash].header);
            if Some(*hash) == stop {
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
        let records: HashMap<BlockHash, IndexRecord> = index
            .iter()
            .map(|(hash, record)| (*hash, *record))
            .collect();
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
        assert_eq!(index[&branch_tip].status, BlockStatus::FailedAncestor);
        assert!(!index[&main.tip().compute_hash()].status.is_failed());
        assert_eq!(index.best_header(), main.tip().compute_hash());
        assert_eq!(
            index.fail(first_of_branch, BlockStatus::Failed).len(),
            1,
            "failing it again touches no descendant"
        );
        // Rebuilt from records where only the failed block is stored as failed, as at open.
        let mut records: HashMap<BlockHash, IndexRecord> = index
            .iter()
            .map(|(hash, record)| (*hash, *record))
            .collect();
        records.insert(
            branch_tip,
            IndexRecord {
                status: BlockStatus::HeaderValid,
                ..records[&branch_tip]
            },
        );
        let rebuilt = BlockIndex::from_records(records, index.tip(), main.blocks[0].compute_hash())
            .expect("a main chain");
        assert_eq!(rebuilt[&branch_tip].status, BlockStatus::FailedAncestor);
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
                index[&block.compute_hash()].status,
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
        let mut records: HashMap<BlockHash, IndexRecord> = index
            .iter()
            .map(|(hash, record)| (*hash, *record))
            .collect();
        let middle = main.blocks[2].compute_hash();
        records.remove(&middle);
        assert_eq!(
            BlockIndex::from_records(records, index.tip(), main.blocks[0].compute_hash()).err(),
            Some(BrokenMainChain::MissingBlock(middle))
        );
    }
}
