//! A selfish miner (Eyal and Sirer, "Majority is not enough: Bitcoin mining is
//! vulnerable", 2014): the largest miner keeps the blocks it finds on a private branch
//! and publishes them only to overtake or tie the public chain, so that honest miners
//! waste their work on blocks its branch orphans.
//!
//! ```text
//!   it finds a block ──▶ kept private; if it was racing a tie, its branch now leads:
//!                        published at once (the race is won)
//!   the public chain grows (lead = its branch's height − the public height):
//!     lead < 0   the public chain won: its branch is dropped, it mines on the public tip
//!     lead = 0   a tie: it publishes everything and races (first seen wins at each node)
//!     lead = 1   it publishes everything: its branch is longer and wins
//!     lead ≥ 2   it publishes up to the public height, keeping its lead
//! ```
//!
//! Its private blocks carry no transactions (a pool's payments go to the public chain);
//! it builds them with the miner's own template builder on its branch's tip.

use std::collections::VecDeque;

use powchain_consensus::{Block, BlockHash};

/// A block the selfish miner can mine on: its hash, height and time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tip {
    pub(crate) hash: BlockHash,
    pub(crate) height: u64,
    pub(crate) time_ms: u64,
}

impl Tip {
    pub(crate) fn of(block: &Block, height: u64) -> Tip {
        Tip {
            hash: block.compute_hash(),
            height,
            time_ms: block.header.time_ms,
        }
    }
}

/// The selfish miner's state: its branch, what of it is unpublished, whether it races.
#[derive(Default)]
pub(crate) struct SelfishMiner {
    /// Its branch's tip while it mines apart from the public tip.
    branch: Option<Tip>,
    /// Its branch's blocks not yet published, oldest first, with their heights.
    unpublished: VecDeque<(Block, u64)>,
    /// It published a branch that ties the public chain.
    racing: bool,
}

impl SelfishMiner {
    /// Where to mine next: its branch's tip if it has one, else `public`'s.
    pub(crate) fn parent(&self, public: Tip) -> Tip {
        self.branch.unwrap_or(public)
    }

    /// It found `block` at `height` on [`SelfishMiner::parent`]: the blocks to publish
    /// now, oldest first.
    pub(crate) fn found(&mut self, block: Block, height: u64) -> Vec<Block> {
        self.branch = Some(Tip::of(&block, height));
        self.unpublished.push_back((block, height));
        if self.racing {
            // Its branch of the tie now leads by one: publishing wins the race.
            self.racing = false;
            return self.take_up_to(u64::MAX);
        }
        Vec::new()
    }

    /// The node's tip (the public chain, its own published blocks included) is now
    /// `public`: the blocks to publish now, oldest first.
    pub(crate) fn public_tip(&mut self, public: Tip) -> Vec<Block> {
        let Some(branch) = self.branch else {
            return Vec::new();
        };
        if branch.hash == public.hash {
            // Its branch is the public chain now.
            self.branch = None;
            self.racing = false;
            return Vec::new();
        }
        let lead = i128::from(branch.height) - i128::from(public.height);
        match lead {
            ..0 => {
                self.branch = None;
                self.unpublished.clear();
                self.racing = false;
                Vec::new()
            }
            0 => {
                self.racing = true;
                self.take_up_to(u64::MAX)
            }
            1 => {
                self.racing = false;
                self.take_up_to(u64::MAX)
            }
            _ => self.take_up_to(public.height),
        }
    }

    /// True while its published branch ties the public chain.
    pub(crate) fn racing(&self) -> bool {
        self.racing
    }

    /// Blocks found and not published.
    pub(crate) fn unpublished(&self) -> usize {
        self.unpublished.len()
    }

    /// Takes the unpublished blocks at heights up to `height`.
    fn take_up_to(&mut self, height: u64) -> Vec<Block> {
        let mut published = Vec::new();
        while self
            .unpublished
            .front()
            .is_some_and(|(_, at)| *at <= height)
        {
            if let Some((block, _)) = self.unpublished.pop_front() {
                published.push(block);
            }
        }
        published
    }
}

#[cfg(test)]
mod tests {
    use powchain_consensus::testkit::TestChain;

    use super::*;

    /// Blocks of a test chain, as stand-ins: the strategy looks at heights and hashes.
    fn blocks(count: usize) -> Vec<Block> {
        TestChain::regtest_with_mature_coins(count).blocks
    }

    fn tip(hash_byte: u8, height: u64) -> Tip {
        Tip {
            hash: BlockHash([hash_byte; 32]),
            height,
            time_ms: 0,
        }
    }

    #[test]
    fn a_lead_of_two_is_kept_and_released_block_by_block_then_all_at_one() {
        let chain = blocks(4);
        let mut miner = SelfishMiner::default();
        assert_eq!(miner.parent(tip(1, 10)), tip(1, 10));
        assert!(miner.found(chain[1].clone(), 11).is_empty());
        assert!(miner.found(chain[2].clone(), 12).is_empty());
        assert!(miner.found(chain[3].clone(), 13).is_empty());
        assert_eq!(miner.parent(tip(1, 10)).height, 13);
        // Honest block at 11: lead 2, its block at 11 goes out to tie.
        assert_eq!(miner.public_tip(tip(2, 11)), vec![chain[1].clone()]);
        // Honest block at 12: lead 1, everything goes out and its branch wins.
        assert_eq!(
            miner.public_tip(tip(3, 12)),
            vec![chain[2].clone(), chain[3].clone()]
        );
        // Its tip becomes the node's tip: it mines on the public chain again.
        let ours = Tip::of(&chain[3], 13);
        assert!(miner.public_tip(ours).is_empty());
        assert_eq!(miner.parent(tip(9, 13)), tip(9, 13));
    }

    #[test]
    fn a_tie_is_raced_and_won_by_the_next_block_or_lost_to_the_public_one() {
        let chain = blocks(3);
        let mut miner = SelfishMiner::default();
        assert!(miner.found(chain[1].clone(), 11).is_empty());
        // An honest block at the same height: publish and race.
        assert_eq!(miner.public_tip(tip(2, 11)), vec![chain[1].clone()]);
        // It finds the next one first: published at once, the race is won.
        assert_eq!(miner.found(chain[2].clone(), 12), vec![chain[2].clone()]);

        let mut loser = SelfishMiner::default();
        assert!(loser.found(chain[1].clone(), 11).is_empty());
        assert_eq!(loser.public_tip(tip(2, 11)), vec![chain[1].clone()]);
        // The honest side finds the next one: its branch is dropped.
        assert!(loser.public_tip(tip(3, 12)).is_empty());
        assert_eq!(loser.parent(tip(3, 12)), tip(3, 12));
        assert!(
            loser.found(chain[2].clone(), 13).is_empty(),
            "private again"
        );
    }
}
