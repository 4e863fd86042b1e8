//! Whether the nodes came back onto one most-work chain after a fault (a partition's heal,
//! a crash's restart), and how soon.
//!
//! ```text
//!   fault over ──▶ the tips with the most work then (one, or several that tie)
//!                  every 10 ms of simulated time, until converged:
//!                    each node's tip, when it changed ──▶ its history
//!                    every node's chain holds one of those tips ──▶ converged
//!                    or every node holds one tip that outweighs them ──▶ converged,
//!                       "overtaken": blocks found after the fault won
//! ```
//!
//! The second way is a race the first cannot see: the lighter side of a healed partition
//! finds a block or two before the heavier side's chain reaches it, the two chains tie or
//! the lighter one pulls ahead, and the heavier side switches to it. Every node ends on the
//! most-work chain, but that chain does not hold the tip that had the most work at the
//! heal (seed 3 of a 16-node, 40-second split: every node on one chain 2.2 s after the
//! heal, which the first way alone reported as never).

use std::sync::Arc;
use std::time::Duration;

use powchain_consensus::{BlockHash, BlockHeight, Work};
use powchain_node::Node;

/// How often convergence is checked, in simulated time.
const CONVERGENCE_CHECK: Duration = Duration::from_millis(10);

/// A node's main chain, as convergence reads it.
pub(crate) trait Chain {
    /// The tip: its hash, height and the chain's work.
    fn tip(&self) -> (BlockHash, BlockHeight, Work);
    /// The hash of the main-chain block at `height`, if any.
    fn hash_at(&self, height: BlockHeight) -> Option<BlockHash>;
}

impl Chain for Arc<Node> {
    fn tip(&self) -> (BlockHash, BlockHeight, Work) {
        let tip = Node::tip(self);
        (tip.hash, tip.height, tip.work)
    }

    fn hash_at(&self, height: BlockHeight) -> Option<BlockHash> {
        Node::hash_at(self, height)
    }
}

/// A node's tip at a check: (since the start, hash, height, work).
type SeenTip = (Duration, BlockHash, BlockHeight, Work);

/// Whether every node's chain came to hold a tip that had the most work at one moment
/// (a healing, a restart), or one tip that outweighs those, and how soon after it.
pub(crate) struct Convergence {
    most_work: Vec<(BlockHash, BlockHeight)>,
    /// Their work.
    work: Work,
    since: Duration,
    next_check: Duration,
    after: Option<Duration>,
    /// True if the nodes converged on a tip that outweighs those of the start instead.
    overtaken: bool,
    /// When each node first held one of the tips (`None`: not yet); once overtaken, when
    /// each came onto the chain they converged on for good.
    reached: Vec<Option<Duration>>,
    /// Each node's tips as they changed, checked at each look until converged.
    history: Vec<Vec<SeenTip>>,
}

impl Convergence {
    /// From `now`: the most-work tips among the running `nodes`.
    pub(crate) fn start<C: Chain>(now: Duration, nodes: &[Option<C>]) -> Convergence {
        let tips: Vec<(BlockHash, BlockHeight, Work)> =
            nodes.iter().flatten().map(Chain::tip).collect();
        let work = tips
            .iter()
            .map(|(_, _, work)| *work)
            .max()
            .unwrap_or(Work::ZERO);
        let mut most_work: Vec<(BlockHash, BlockHeight)> = tips
            .into_iter()
            .filter(|(_, _, tip_work)| *tip_work == work)
            .map(|(hash, height, _)| (hash, height))
            .collect();
        most_work.sort_unstable();
        most_work.dedup();
        Convergence {
            most_work,
            work,
            since: now,
            next_check: now,
            after: None,
            overtaken: false,
            reached: vec![None; nodes.len()],
            history: vec![Vec::new(); nodes.len()],
        }
    }

    /// True once every node (all running) holds one of those tips, the same one, or all
    /// hold one tip with more work; looks every [`CONVERGENCE_CHECK`] of simulated time.
    pub(crate) fn check<C: Chain>(&mut self, now: Duration, nodes: &[Option<C>]) -> bool {
        if self.after.is_some() || now < self.next_check {
            return self.after.is_some();
        }
        self.next_check = now + CONVERGENCE_CHECK;
        let since = now.saturating_sub(self.since);
        let holds = |node: &C, (hash, height): &(BlockHash, BlockHeight)| {
            node.hash_at(*height) == Some(*hash)
        };
        for ((node, reached), history) in nodes.iter().zip(&mut self.reached).zip(&mut self.history)
        {
            let Some(node) = node else { continue };
            let (hash, height, work) = node.tip();
            if history.last().is_none_or(|(_, seen, _, _)| *seen != hash) {
                history.push((since, hash, height, work));
            }
            if reached.is_none() && self.most_work.iter().any(|tip| holds(node, tip)) {
                *reached = Some(since);
            }
        }
        let held = self.most_work.iter().any(|tip| {
            nodes
                .iter()
                .all(|node| node.as_ref().is_some_and(|node| holds(node, tip)))
        });
        if held {
            self.after = Some(since);
        } else if let Some(reference) = self.agreed(nodes) {
            self.overtaken = true;
            self.after = Some(since);
            self.reached = self
                .history
                .iter()
                .map(|history| self.on_final_chain_since(history, reference))
                .collect();
        }
        self.after.is_some()
    }

    /// A node of the running `nodes` if they all have the same tip and it has at least the
    /// start's most work (a node's chain only ever gains work, so a tip they all share has
    /// it; checked all the same). Reads the tips this check just recorded.
    fn agreed<'a, C: Chain>(&self, nodes: &'a [Option<C>]) -> Option<&'a C> {
        let mut tips = nodes
            .iter()
            .zip(&self.history)
            .map(|(node, history)| node.as_ref().and(history.last()));
        let (_, hash, _, work) = tips.next()??;
        let same = tips.all(|tip| tip.is_some_and(|(_, other, _, _)| other == hash));
        if same && *work >= self.work {
            nodes[0].as_ref()
        } else {
            None
        }
    }

    /// When a node came onto `reference`'s chain for good, with at least the start's work:
    /// the first of its last run of tips that all lie on that chain.
    fn on_final_chain_since<C: Chain>(
        &self,
        history: &[SeenTip],
        reference: &C,
    ) -> Option<Duration> {
        history
            .iter()
            .rev()
            .take_while(|(_, hash, height, work)| {
                *work >= self.work && reference.hash_at(*height) == Some(*hash)
            })
            .last()
            .map(|(at, _, _, _)| *at)
    }

    /// How long it took (`None`: not yet).
    pub(crate) fn after(&self) -> Option<Duration> {
        self.after
    }

    /// True if the nodes converged on a tip that outweighs every tip of the start (blocks
    /// found after the fault won a race against its most-work chain).
    pub(crate) fn overtaken(&self) -> bool {
        self.overtaken
    }

    /// How long until `percent`% of the nodes each held one of the tips (not necessarily
    /// the same one; once overtaken, the chain they converged on); `None` if fewer ever did.
    pub(crate) fn share_after(&self, percent: usize) -> Option<Duration> {
        let mut times: Vec<Duration> = self.reached.iter().flatten().copied().collect();
        times.sort_unstable();
        let needed = (self.reached.len() * percent).div_ceil(100).max(1);
        times.get(needed - 1).copied()
    }

    /// When each node first held one of the tips (once overtaken, came onto the chain
    /// they converged on), by index.
    pub(crate) fn reached(&self) -> &[Option<Duration>] {
        &self.reached
    }

    /// How many different tips had the most work at the start (1 unless they tied).
    pub(crate) fn tips(&self) -> usize {
        self.most_work.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use powchain_consensus::uint::U256;

    /// A chain of blocks named by a byte each, every block of work 1.
    struct Blocks(Vec<u8>);

    fn hash(name: u8) -> BlockHash {
        BlockHash([name; 32])
    }

    impl Chain for Blocks {
        fn tip(&self) -> (BlockHash, BlockHeight, Work) {
            let height = self.0.len() as u64 - 1;
            let name = self.0.last().copied().unwrap_or_default();
            (
                hash(name),
                BlockHeight(height),
                Work::from_u256(U256::from_u64(height + 1)),
            )
        }

        fn hash_at(&self, height: BlockHeight) -> Option<BlockHash> {
            self.0.get(height.0 as usize).map(|name| hash(*name))
        }
    }

    fn at(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn chains(chains: &[&[u8]]) -> Vec<Option<Blocks>> {
        chains
            .iter()
            .map(|blocks| Some(Blocks(blocks.to_vec())))
            .collect()
    }

    #[test]
    fn the_lighter_side_switching_to_the_heavier_tip_converges_on_it() {
        // Heal: the heavier side at 0-1-2, the lighter at 0-3.
        let mut convergence = Convergence::start(at(0), &chains(&[&[0, 1, 2], &[0, 3]]));
        assert_eq!(convergence.tips(), 1);
        assert!(!convergence.check(at(0), &chains(&[&[0, 1, 2], &[0, 3]])));
        // A check before CONVERGENCE_CHECK has passed does not look.
        assert!(!convergence.check(at(5), &chains(&[&[0, 1, 2], &[0, 1, 2]])));
        // A block on top of the heal's tip still holds it.
        assert!(convergence.check(at(10), &chains(&[&[0, 1, 2, 4], &[0, 1, 2]])));
        assert_eq!(convergence.after(), Some(at(10)));
        assert!(!convergence.overtaken());
        assert_eq!(convergence.reached(), &[Some(at(0)), Some(at(10))]);
    }

    #[test]
    fn blocks_found_after_the_heal_that_outweigh_its_tip_converge_as_overtaken() {
        // Heal: the heavier side at 0-1-2; the lighter at 0-3, then it finds 4 and 5 before
        // the heavier chain reaches it, and the heavier side switches (seed 3's race).
        let mut convergence = Convergence::start(at(0), &chains(&[&[0, 1, 2], &[0, 3]]));
        assert!(!convergence.check(at(0), &chains(&[&[0, 1, 2], &[0, 3]])));
        assert!(!convergence.check(at(10), &chains(&[&[0, 1, 2], &[0, 3, 4]])));
        // Equal work, different tips: not yet.
        assert!(!convergence.check(at(20), &chains(&[&[0, 1, 2], &[0, 3, 4]])));
        assert!(!convergence.check(at(30), &chains(&[&[0, 1, 2], &[0, 3, 4, 5]])));
        // The same heights on different chains are not agreement either.
        assert!(!convergence.check(at(40), &chains(&[&[0, 1, 2, 6], &[0, 3, 4, 5]])));
        assert!(convergence.check(at(50), &chains(&[&[0, 3, 4, 5], &[0, 3, 4, 5]])));
        assert_eq!(convergence.after(), Some(at(50)));
        assert!(convergence.overtaken());
        // The lighter node came onto the final chain with the heal's work at 10 ms (its 0-3
        // had less); the heavier one at 50 ms.
        assert_eq!(convergence.reached(), &[Some(at(50)), Some(at(10))]);
        assert_eq!(convergence.share_after(50), Some(at(10)));
        assert_eq!(convergence.share_after(100), Some(at(50)));
        // Once converged it stays so and looks no more.
        assert!(convergence.check(at(60), &chains(&[&[0, 1, 2], &[0, 3]])));
    }

    #[test]
    fn a_node_not_running_holds_nothing() {
        let mut nodes = chains(&[&[0, 1], &[0, 1]]);
        let mut convergence = Convergence::start(at(0), &nodes);
        nodes.push(None);
        let mut convergence_with_one_down = Convergence::start(at(0), &nodes);
        assert!(!convergence_with_one_down.check(at(0), &nodes));
        assert!(convergence.check(at(0), &chains(&[&[0, 1], &[0, 1]])));
    }
}
