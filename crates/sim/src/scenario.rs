//! Faults a run injects, and what they did: a partition of the network into two halves,
//! healed after a while; or the largest miner withholding each block it finds for a
//! while before publishing it; or a tenth of the nodes crashing (driven by crash.rs).
//! Both the partition and the crash measure convergence the same way (convergence.rs).
//!
//! ```text
//!   mining ─────────────────────────────────────────────────────────▶
//!            ¼ of the window │ partitioned for `length` │ healed
//!                            split: turmoil drops every message between the halves
//!                                                      repair ──▶ every 10 ms: do all
//!                                                      nodes' chains hold the most-work
//!                                                      tip of the moment of healing, or
//!                                                      one tip that outweighs it?
//! ```

use std::sync::Arc;
use std::time::Duration;

use powchain_node::Node;
use serde::Serialize;

use crate::convergence::Convergence;
use crate::random::SimRng;

/// What a run does to the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Nothing: a steady network.
    Steady,
    /// From a quarter of the mining window, a tenth of the nodes (at least one, drawn
    /// from the seed) crash: their software stops at once, their connections drop, and
    /// the blocks and payments scheduled to them meanwhile are not made. After `down`
    /// they restart from what their disks hold (crash.rs).
    Crash {
        /// How long they stay down.
        down: Duration,
    },
    /// The node with the most hash power mines selfishly (selfish.rs): it keeps the
    /// blocks it finds private and publishes them to overtake the public chain.
    Selfish,
    /// From a quarter of the mining window, `hosts` hostile hosts (not nodes) each dial 8
    /// honest nodes and attack them: every other host floods them with legal messages
    /// over the rate limit, the rest announce transactions that do not exist
    /// (hostile.rs).
    Hostile {
        /// Hostile hosts.
        hosts: usize,
    },
    /// From a quarter of the mining window, the nodes are split into two halves drawn
    /// from the seed, which cannot reach each other for `length`; then the split heals.
    Partition {
        /// How long the halves stay apart.
        length: Duration,
    },
    /// The node with the most hash power holds each block it finds for `delay` before
    /// publishing it (to its own node, and so to the network), mining on the public tip
    /// meanwhile: what late publication costs a miner, or what a withholding pool
    /// risks.
    Withholding {
        /// How long each of its blocks is held.
        delay: Duration,
    },
}

/// What the largest miner got: in the withholding and selfish scenarios, the miner that
/// withholds or mines selfishly.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MinerShare {
    /// The node with the most hash power.
    pub miner: usize,
    /// How long it held each block before publishing it, in ms (0: it did not).
    pub held_ms: u64,
    /// Its share of the hash power, in parts per million.
    pub hash_share_ppm: u64,
    /// It mined selfishly.
    pub selfish: bool,
    /// Blocks it found.
    pub blocks_found: usize,
    /// Of those, never published (a selfish miner's branch the public chain beat, or
    /// still private at the end).
    pub blocks_never_published: usize,
    /// Of those, on the final main chain.
    pub blocks_on_main_chain: usize,
    /// Its share of the main chain's blocks found in the run, in parts per million: the
    /// figure to read against its hash share.
    pub main_chain_share_ppm: u64,
    /// Selfish: the times it published a branch that tied the public chain (a race).
    pub ties_raced: usize,
    /// Of those, the races its branch won (its tying block on the final main chain).
    pub ties_won: usize,
}

/// What a partition did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PartitionReport {
    /// When the network split, in simulated ms from the start.
    pub split_at_ms: u64,
    /// When it healed.
    pub healed_at_ms: u64,
    /// Nodes in each half.
    pub nodes: (usize, usize),
    /// Each half's share of the hash power, in parts per million.
    pub hash_share_ppm: (u64, u64),
    /// Blocks found in each half while split.
    pub blocks_found_while_split: (usize, usize),
    /// How many different tips had the most work at the moment of healing (1 unless the
    /// halves tied).
    pub most_work_tips_at_heal: usize,
    /// Simulated time from healing until every node's chain held a most-work tip of the
    /// moment of healing, or one tip with more work (`None`: not within the run).
    pub converged_after_ms: Option<u64>,
    /// True if the nodes converged on a tip with more work instead: blocks found after
    /// the heal outweighed the most-work tip of its moment before that tip reached every
    /// node, and the heavier side switched.
    pub tips_at_heal_overtaken: bool,
    /// Simulated time from healing until half of the nodes each held a most-work tip of
    /// the moment of healing (once overtaken, came onto the chain they converged on for
    /// good): how the catch-up spread.
    pub half_converged_after_ms: Option<u64>,
    /// The same for 90% of the nodes.
    pub ninety_percent_converged_after_ms: Option<u64>,
    /// The same for each node, by index (`None`: never within the run).
    pub each_converged_after_ms: Vec<Option<u64>>,
}

/// Drives a partition: when to split, when to heal, and convergence after.
pub(crate) struct Partition {
    /// `side[node]`: false for the first half, true for the second.
    side: Vec<bool>,
    split_at: Duration,
    heal_at: Duration,
    state: State,
    /// From the moment of healing.
    convergence: Option<Convergence>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Joined,
    Split,
    Healing,
    Converged,
}

impl Partition {
    /// Halves drawn from `rng`; the split starts at `split_at` and lasts `length`.
    pub(crate) fn new(
        rng: &mut SimRng,
        nodes: usize,
        split_at: Duration,
        length: Duration,
    ) -> Partition {
        let mut order: Vec<usize> = (0..nodes).collect();
        rng.shuffle(&mut order);
        let mut side = vec![false; nodes];
        for node in &order[nodes / 2..] {
            side[*node] = true;
        }
        Partition::with_sides(side, split_at, length)
    }

    /// `side[node]` says each node's half; the split starts at `split_at`, lasts `length`.
    fn with_sides(side: Vec<bool>, split_at: Duration, length: Duration) -> Partition {
        Partition {
            side,
            split_at,
            heal_at: split_at + length,
            state: State::Joined,
            convergence: None,
        }
    }

    /// Halves made of whole `groups` (the nodes of each host, when a host holds a
    /// region's nodes): the groups whose nodes come nearest to half of them on the second
    /// side, the first such choice if several tie. turmoil cuts hosts apart, not nodes:
    /// a partition along regions' borders, as a cable cut between continents would be.
    pub(crate) fn by_groups(
        groups: &[Vec<usize>],
        nodes: usize,
        split_at: Duration,
        length: Duration,
    ) -> Partition {
        // Seven regions at most: every choice can be tried. Past 16 groups the last ones
        // stay on the first side.
        let tried = groups.len().min(16);
        let count = |mask: u32| -> usize {
            (0..tried)
                .filter(|group| mask & (1 << group) != 0)
                .map(|group| groups[group].len())
                .sum()
        };
        let best = (1..(1u32 << tried).saturating_sub(1))
            .min_by_key(|mask| count(*mask).abs_diff(nodes / 2))
            .unwrap_or(0);
        let mut side = vec![false; nodes];
        for (group, members) in groups.iter().enumerate().take(tried) {
            if best & (1 << group) != 0 {
                for node in members {
                    side[*node] = true;
                }
            }
        }
        Partition::with_sides(side, split_at, length)
    }

    /// The node pairs across the split.
    pub(crate) fn crossing_pairs(&self) -> Vec<(usize, usize)> {
        let mut pairs = Vec::new();
        for (a, side_a) in self.side.iter().enumerate() {
            for (b, side_b) in self.side.iter().enumerate().skip(a + 1) {
                if side_a != side_b {
                    pairs.push((a, b));
                }
            }
        }
        pairs
    }

    /// What to do at simulated time `now`: split, heal, or check convergence over
    /// `nodes`.
    pub(crate) fn at(&mut self, now: Duration, nodes: &[Option<Arc<Node>>]) -> Action {
        match self.state {
            State::Joined if now >= self.split_at => {
                self.state = State::Split;
                Action::Split
            }
            State::Split if now >= self.heal_at => {
                self.state = State::Healing;
                self.convergence = Some(Convergence::start(now, nodes));
                Action::Heal
            }
            State::Healing => {
                if self
                    .convergence
                    .as_mut()
                    .is_some_and(|convergence| convergence.check(now, nodes))
                {
                    self.state = State::Converged;
                }
                Action::Nothing
            }
            _ => Action::Nothing,
        }
    }

    /// The report, given the run's blocks (finder, time) and hash shares.
    pub(crate) fn report(&self, found: &[(usize, Duration)], shares: &[f64]) -> PartitionReport {
        let in_half =
            |second: bool| (0..self.side.len()).filter(move |node| self.side[*node] == second);
        let share = |second: bool| {
            (in_half(second).map(|node| shares[node]).sum::<f64>() * 1e6).round() as u64
        };
        let while_split = |second: bool| {
            found
                .iter()
                .filter(|(miner, at)| {
                    self.side[*miner] == second && *at >= self.split_at && *at < self.heal_at
                })
                .count()
        };
        PartitionReport {
            split_at_ms: self.split_at.as_millis() as u64,
            healed_at_ms: self.heal_at.as_millis() as u64,
            nodes: (in_half(false).count(), in_half(true).count()),
            hash_share_ppm: (share(false), share(true)),
            blocks_found_while_split: (while_split(false), while_split(true)),
            most_work_tips_at_heal: self.convergence.as_ref().map_or(0, Convergence::tips),
            converged_after_ms: self
                .convergence
                .as_ref()
                .and_then(Convergence::after)
                .map(|after| after.as_millis() as u64),
            tips_at_heal_overtaken: self
                .convergence
                .as_ref()
                .is_some_and(Convergence::overtaken),
            half_converged_after_ms: self.share_converged_after(50),
            ninety_percent_converged_after_ms: self.share_converged_after(90),
            each_converged_after_ms: self
                .convergence
                .as_ref()
                .map(|convergence| {
                    convergence
                        .reached()
                        .iter()
                        .map(|after| after.map(|after| after.as_millis() as u64))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    fn share_converged_after(&self, percent: usize) -> Option<u64> {
        self.convergence
            .as_ref()
            .and_then(|convergence| convergence.share_after(percent))
            .map(|after| after.as_millis() as u64)
    }
}

/// What the run does at a step.
pub(crate) enum Action {
    Nothing,
    Split,
    Heal,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_of_whole_groups_come_nearest_to_half_the_nodes() {
        let at = Duration::from_secs(10);
        // 10 nodes in groups of 4, 3, 2 and 1: 4 + 1 (or 3 + 2) is half.
        let groups = vec![vec![0, 1, 2, 3], vec![4, 5, 6], vec![7, 8], vec![9]];
        let partition = Partition::by_groups(&groups, 10, at, at);
        let second: Vec<usize> = (0..10).filter(|node| partition.side[*node]).collect();
        assert_eq!(second.len(), 5, "{second:?}");
        for group in &groups {
            let sides: Vec<bool> = group.iter().map(|node| partition.side[*node]).collect();
            assert!(
                sides.iter().all(|side| *side == sides[0]),
                "a group split: {sides:?}"
            );
        }
        // Only nodes of different groups are cut apart.
        for (a, b) in partition.crossing_pairs() {
            assert!(
                !groups
                    .iter()
                    .any(|group| group.contains(&a) && group.contains(&b))
            );
        }
        // Two groups: one a side, however uneven (3 and 1 are as far from 2: the first
        // choice, the first group, goes to the second side).
        let partition = Partition::by_groups(&[vec![0, 1, 2], vec![3]], 4, at, at);
        assert_eq!(partition.side, vec![true, true, true, false]);
    }

    #[test]
    fn the_halves_split_every_node_and_cross_pairs_join_them() {
        let partition = Partition::new(&mut SimRng::new(4), 7, Duration::ZERO, Duration::ZERO);
        let second = partition.side.iter().filter(|side| **side).count();
        assert_eq!((7 - second, second), (3, 4));
        assert_eq!(partition.crossing_pairs().len(), 12);
        for (a, b) in partition.crossing_pairs() {
            assert!(a < b && partition.side[a] != partition.side[b]);
        }
    }
}
