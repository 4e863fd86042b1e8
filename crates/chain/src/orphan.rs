//! Blocks that arrived before their parent, held (bounded) until it comes.

use std::collections::{HashMap, HashSet, VecDeque};

use powchain_consensus::{Block, BlockHash};

/// At most this many orphan blocks are kept; the oldest go first.
pub const MAX_ORPHAN_BLOCKS: usize = 128;
/// At most this many bytes of orphan blocks are kept.
pub const MAX_ORPHAN_BYTES: usize = 16 * 1024 * 1024;

/// A bounded pool of blocks whose parent is unknown.
#[derive(Default)]
pub(crate) struct OrphanPool {
    blocks: HashMap<BlockHash, (Block, usize)>,
    arrival: VecDeque<BlockHash>,
    bytes: usize,
}

impl OrphanPool {
    pub(crate) fn contains(&self, hash: &BlockHash) -> bool {
        self.blocks.contains_key(hash)
    }

    pub(crate) fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Keeps `block`, evicting the oldest orphans past the limits.
    pub(crate) fn insert(&mut self, hash: BlockHash, block: Block, size: usize) {
        if self.blocks.contains_key(&hash) || size > MAX_ORPHAN_BYTES {
            return;
        }
        self.bytes += size;
        self.blocks.insert(hash, (block, size));
        self.arrival.push_back(hash);
        while self.blocks.len() > MAX_ORPHAN_BLOCKS || self.bytes > MAX_ORPHAN_BYTES {
            let Some(oldest) = self.arrival.pop_front() else {
                break;
            };
            if let Some((_, size)) = self.blocks.remove(&oldest) {
                self.bytes -= size;
            }
        }
    }

    /// Removes and returns the oldest orphan whose parent is one of `parents`, if any.
    ///
    /// The order matters: each block is given its place in the block index (its
    /// `sequence`) as it is accepted, and among branches of equal work the node keeps the
    /// one it saw first. So the caller takes orphans one at a time, oldest first among
    /// those whose parent it has, adding each accepted one to `parents`: siblings, and
    /// their children after them, go in the order they came, by the arrival queue rather
    /// than the map (whose order is random).
    pub(crate) fn take_oldest_child_of(&mut self, parents: &HashSet<BlockHash>) -> Option<Block> {
        let position = self.arrival.iter().position(|hash| {
            self.blocks
                .get(hash)
                .is_some_and(|(block, _)| parents.contains(&block.header.prev_hash))
        })?;
        let hash = self.arrival.remove(position)?;
        let (block, size) = self.blocks.remove(&hash)?;
        self.bytes -= size;
        Some(block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use powchain_consensus::testkit::TestChain;
    use powchain_consensus::{Amount, Network};

    #[test]
    fn the_pool_is_bounded_and_evicts_the_oldest() {
        let chain = TestChain::new(Network::Regtest);
        let block = chain.build(vec![], Amount::ZERO);
        let mut pool = OrphanPool::default();
        for index in 0..(MAX_ORPHAN_BLOCKS + 10) {
            pool.insert(BlockHash([index as u8; 32]), block.clone(), 100);
        }
        assert_eq!(pool.len(), MAX_ORPHAN_BLOCKS);
        assert!(!pool.contains(&BlockHash([0; 32])));
        assert!(pool.contains(&BlockHash([(MAX_ORPHAN_BLOCKS + 9) as u8; 32])));
        let parent = block.header.prev_hash;
        let parents = HashSet::from([parent]);
        let mut taken = 0;
        while pool.take_oldest_child_of(&parents).is_some() {
            taken += 1;
        }
        assert_eq!(taken, MAX_ORPHAN_BLOCKS);
        assert_eq!(pool.len(), 0);
        assert_eq!(pool.bytes, 0);
    }

    #[test]
    fn children_come_back_in_the_order_they_arrived() {
        let chain = TestChain::new(Network::Regtest);
        let template = chain.build(vec![], Amount::ZERO);
        let parent = template.header.prev_hash;
        // Ten children of one parent, told apart by their nonce, arriving in an order
        // unrelated to their hashes; a child of another parent arrives among them.
        let order = [7u8, 2, 9, 0, 5, 3, 8, 1, 6, 4];
        let mut pool = OrphanPool::default();
        for (position, &key) in order.iter().enumerate() {
            let mut child = template.clone();
            child.header.nonce = u64::from(key);
            pool.insert(BlockHash([key; 32]), child, 100);
            if position == 4 {
                let mut stranger = template.clone();
                stranger.header.prev_hash = BlockHash([0xee; 32]);
                pool.insert(BlockHash([0xff; 32]), stranger, 100);
            }
        }
        let parents = HashSet::from([parent]);
        let nonces: Vec<u64> = std::iter::from_fn(|| pool.take_oldest_child_of(&parents))
            .map(|child| child.header.nonce)
            .collect();
        let expected: Vec<u64> = order.iter().map(|&key| u64::from(key)).collect();
        assert_eq!(nonces, expected);
        assert_eq!(pool.len(), 1);
        assert!(pool.contains(&BlockHash([0xff; 32])));
        assert_eq!(pool.bytes, 100);
        assert_eq!(pool.arrival, [BlockHash([0xff; 32])]);
    }

    #[test]
    fn a_generation_s_children_come_back_in_the_order_they_arrived_too() {
        let chain = TestChain::new(Network::Regtest);
        let template = chain.build(vec![], Amount::ZERO);
        let parent = template.header.prev_hash;
        let child_of = |parent: BlockHash, nonce: u8| {
            let mut block = template.clone();
            block.header.prev_hash = parent;
            block.header.nonce = u64::from(nonce);
            (BlockHash([nonce; 32]), block)
        };
        // Siblings 1 and 2, then 1's child 3, then 2's child 4. A walk of the parents as a
        // stack took 4 before 3, though 3 came first: the later branch got the lower
        // sequence.
        let mut pool = OrphanPool::default();
        for (parent, nonce) in [(parent, 1), (parent, 2), (BlockHash([1; 32]), 3)] {
            let (hash, block) = child_of(parent, nonce);
            pool.insert(hash, block, 100);
        }
        let (hash, block) = child_of(BlockHash([2; 32]), 4);
        pool.insert(hash, block, 100);
        let mut parents = HashSet::from([parent]);
        let mut order = Vec::new();
        while let Some(block) = pool.take_oldest_child_of(&parents) {
            let nonce = u8::try_from(block.header.nonce).expect("small");
            order.push(nonce);
            parents.insert(BlockHash([nonce; 32]));
        }
        assert_eq!(order, [1, 2, 3, 4]);
        assert_eq!(pool.len(), 0);
        assert_eq!(pool.bytes, 0);
    }
}
