//! The crash scenario: a tenth of the nodes stop at once, stay down a while, and restart
//! from what their disks hold, as a node whose machine lost power would.
//!
//! ```text
//!   mining ───────────────────────────────────────────────────────────────▶
//!            ¼ of the window │ down for `down`             │ restarted
//!                            crash: turmoil drops the      bounce: the host's software
//!                            hosts' software (the node     starts again, reopens its
//!                            closes its files), peers      chain and pool from its disk,
//!                            see their connections die     dials its peers ──▶ every
//!                                                          10 ms: does every node hold
//!                                                          the most-work tip of the
//!                                                          moment of restart?
//! ```
//!
//! The crashing nodes keep their chain and pool on disk (the others in memory), so a
//! restart shows what a real one does: the node reopens at the height it had, learns
//! what it missed from its peers, and takes its pool's transactions back.

use std::sync::Arc;
use std::time::Duration;

use powchain_node::Node;
use serde::Serialize;

use crate::convergence::Convergence;
use crate::random::SimRng;

/// What the crash did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CrashReport {
    /// The nodes that crashed.
    pub nodes: Vec<usize>,
    /// Their share of the hash power, in parts per million.
    pub hash_share_ppm: u64,
    /// When they crashed, in simulated ms from the start.
    pub crashed_at_ms: u64,
    /// When they restarted.
    pub restarted_at_ms: u64,
    /// Each one's height when it crashed.
    pub heights_at_crash: Vec<u64>,
    /// Each one's height when it had reopened its disk (`None`: it did not restart).
    pub heights_at_reopen: Vec<Option<u64>>,
    /// Transactions in each one's pool when it crashed.
    pub pools_at_crash: Vec<usize>,
    /// And when it had reopened its disk.
    pub pools_at_reopen: Vec<Option<usize>>,
    /// Blocks they were scheduled to find while down (not found).
    pub blocks_not_found: usize,
    /// Payments scheduled through them while down (not made).
    pub payments_not_made: usize,
    /// How many different tips had the most work at the moment of restart.
    pub most_work_tips_at_restart: usize,
    /// Simulated time from the restart until every node's chain held a most-work tip of
    /// that moment, or one tip with more work (`None`: not within the run).
    pub caught_up_after_ms: Option<u64>,
    /// True if the nodes converged on a tip with more work instead (blocks found after
    /// the restart won a race against the tip of its moment).
    pub tips_at_restart_overtaken: bool,
}

/// What the run does at a step.
pub(crate) enum OutageAction {
    Nothing,
    /// Crash these nodes.
    Crash,
    /// Start them again.
    Restart,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Down,
    Restarted,
}

/// Drives a crash: which nodes, when they go down and come back, and the catch-up after.
pub(crate) struct Outage {
    nodes: Vec<usize>,
    crash_at: Duration,
    restart_at: Duration,
    state: State,
    /// Each crashing node's (height, pool transactions) when it crashed.
    at_crash: Vec<(u64, usize)>,
    convergence: Option<Convergence>,
}

impl Outage {
    /// A tenth of `nodes` (at least one) drawn from `rng`, down from `crash_at` for `down`.
    pub(crate) fn new(
        rng: &mut SimRng,
        nodes: usize,
        crash_at: Duration,
        down: Duration,
    ) -> Outage {
        let mut order: Vec<usize> = (0..nodes).collect();
        rng.shuffle(&mut order);
        let mut chosen: Vec<usize> = order[..(nodes / 10).max(1)].to_vec();
        chosen.sort_unstable();
        Outage {
            nodes: chosen,
            crash_at,
            restart_at: crash_at + down,
            state: State::Running,
            at_crash: Vec::new(),
            convergence: None,
        }
    }

    /// The nodes that crash.
    pub(crate) fn nodes(&self) -> &[usize] {
        &self.nodes
    }

    /// True if `node` is one that crashes (it keeps its chain on disk).
    pub(crate) fn crashes(&self, node: usize) -> bool {
        self.nodes.binary_search(&node).is_ok()
    }

    /// What to do at simulated time `now`, over `nodes` (the running ones).
    pub(crate) fn at(&mut self, now: Duration, nodes: &[Option<Arc<Node>>]) -> OutageAction {
        match self.state {
            State::Running if now >= self.crash_at => {
                self.state = State::Down;
                self.at_crash = self
                    .nodes
                    .iter()
                    .map(|index| {
                        nodes[*index]
                            .as_ref()
                            .map_or((0, 0), |node| (node.tip().height.0, node.pool_size().0))
                    })
                    .collect();
                OutageAction::Crash
            }
            State::Down if now >= self.restart_at => {
                self.state = State::Restarted;
                // The crashed nodes are not running: the tips of the ones that are.
                self.convergence = Some(Convergence::start(now, nodes));
                OutageAction::Restart
            }
            State::Restarted => {
                if let Some(convergence) = &mut self.convergence {
                    convergence.check(now, nodes);
                }
                OutageAction::Nothing
            }
            _ => OutageAction::Nothing,
        }
    }

    /// The report, given what the hosts recorded (`reopened`: node, height, pool
    /// transactions).
    pub(crate) fn report(
        &self,
        shares: &[f64],
        reopened: &[(usize, u64, usize)],
        blocks_not_found: usize,
        payments_not_made: usize,
    ) -> CrashReport {
        let share: f64 = self.nodes.iter().map(|node| shares[*node]).sum();
        let reopen = |node: usize| {
            reopened
                .iter()
                .find(|(index, _, _)| *index == node)
                .map(|(_, height, pool)| (*height, *pool))
        };
        CrashReport {
            nodes: self.nodes.clone(),
            hash_share_ppm: (share * 1e6).round() as u64,
            crashed_at_ms: self.crash_at.as_millis() as u64,
            restarted_at_ms: self.restart_at.as_millis() as u64,
            heights_at_crash: self.at_crash.iter().map(|(height, _)| *height).collect(),
            heights_at_reopen: self
                .nodes
                .iter()
                .map(|node| reopen(*node).map(|(height, _)| height))
                .collect(),
            pools_at_crash: self.at_crash.iter().map(|(_, pool)| *pool).collect(),
            pools_at_reopen: self
                .nodes
                .iter()
                .map(|node| reopen(*node).map(|(_, pool)| pool))
                .collect(),
            blocks_not_found,
            payments_not_made,
            most_work_tips_at_restart: self.convergence.as_ref().map_or(0, Convergence::tips),
            caught_up_after_ms: self
                .convergence
                .as_ref()
                .and_then(Convergence::after)
                .map(|after| after.as_millis() as u64),
            tips_at_restart_overtaken: self
                .convergence
                .as_ref()
                .is_some_and(Convergence::overtaken),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenth_of_the_nodes_crash_and_at_least_one() {
        let outage = Outage::new(&mut SimRng::new(3), 30, Duration::ZERO, Duration::ZERO);
        assert_eq!(outage.nodes().len(), 3);
        assert!(outage.nodes().windows(2).all(|pair| pair[0] < pair[1]));
        assert!(outage.nodes().iter().all(|node| outage.crashes(*node)));
        assert_eq!((0..30).filter(|node| outage.crashes(*node)).count(), 3);
        let small = Outage::new(&mut SimRng::new(3), 4, Duration::ZERO, Duration::ZERO);
        assert_eq!(small.nodes().len(), 1);
    }
}
