//! Blocks that arrived before their parent, held (bounded) until it comes.

use std::collections::{HashMap, VecDeque};

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

    /// Removes and returns the orphans whose parent is `parent`.
    pub(crate) fn take_children(&mut self, parent: &BlockHash) -> Vec<Block> {
        let children: Vec<BlockHash> = self
            .blocks
            .iter()
            .filter(|(_, (block, _))| block.header.prev_hash == *parent)
            .map(|(hash, _)| *hash)
            .collect();
        children
            .into_iter()
            .filter_map(|hash| {
                self.arrival.retain(|queued| *queued != hash);
                self.blocks.remove(&hash).map(|(block, size)| {
                    self.bytes -= size;
                    block
                })
            })
            .collect()
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
        assert_eq!(pool.take_children(&parent).len(), MAX_ORPHAN_BLOCKS);
        assert_eq!(pool.len(), 0);
        assert_eq!(pool.bytes, 0);
    }
}
