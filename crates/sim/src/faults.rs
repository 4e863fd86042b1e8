//! The faults a run injects as it steps: a partition (scenario.rs) cut and healed between
//! the hosts on either side, and a tenth of the nodes crashed and restarted (crash.rs).
//!
//! ```text
//!   after each step ──▶ Partition::at ──▶ Split: cut every crossing pair of hosts
//!                                     └─▶ Heal: repair them
//!                   ──▶ Outage::at    ──▶ Crash: keep what its peer layer sent, drop the
//!                                           node, crash its host
//!                                     └─▶ Restart: its host starts again from its disk
//! ```

use std::sync::{Arc, Mutex};

use powchain_node::Node;
use powchain_p2p::{MessageTraffic, P2p};

use crate::crash::{Outage, OutageAction};
use crate::host::lock;
use crate::hosts::Hosts;
use crate::report::PushWaitTotals;
use crate::scenario::{Action, Partition};

/// The run's faults, and what the peer layers they stopped had counted.
pub(crate) struct Faults {
    pub(crate) partition: Option<Partition>,
    /// turmoil cuts and repairs hosts: the pairs of hosts across the split, in the order
    /// of their first crossing pair of nodes.
    crossing_hosts: Vec<(String, String)>,
    pub(crate) outage: Option<Outage>,
    /// What the peer layers of crashed nodes sent.
    pub(crate) retired_traffic: Vec<MessageTraffic>,
    /// Blocks the peer layers of crashed nodes held for a push.
    pub(crate) push_waits: PushWaitTotals,
}

impl Faults {
    /// `partition` and `outage` (either, both or neither) of nodes placed on `hosts`.
    pub(crate) fn new(
        partition: Option<Partition>,
        outage: Option<Outage>,
        hosts: &Hosts,
    ) -> Faults {
        let crossing_hosts = partition.as_ref().map_or_else(Vec::new, |partition| {
            let mut seen = std::collections::HashSet::new();
            partition
                .crossing_pairs()
                .into_iter()
                .map(|(a, b)| (hosts.host(a).to_owned(), hosts.host(b).to_owned()))
                .filter(|pair| seen.insert(pair.clone()))
                .collect()
        });
        Faults {
            partition,
            crossing_hosts,
            outage,
            retired_traffic: Vec::new(),
            push_waits: PushWaitTotals::default(),
        }
    }

    /// Does what is due at the simulation's time: called after every step.
    pub(crate) fn after_step(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        hosts: &Hosts,
        nodes: &Mutex<Vec<Option<Arc<Node>>>>,
        peer_layers: &Mutex<Vec<Option<Arc<P2p>>>>,
    ) {
        if let Some(partition) = &mut self.partition {
            // The nodes' lock is let go before the action (a crash takes it again).
            let action = partition.at(sim.elapsed(), &lock(nodes));
            match action {
                Action::Nothing => {}
                Action::Split => {
                    for (a, b) in &self.crossing_hosts {
                        sim.partition(a.as_str(), b.as_str());
                    }
                }
                Action::Heal => {
                    for (a, b) in &self.crossing_hosts {
                        sim.repair(a.as_str(), b.as_str());
                    }
                }
            }
        }
        if let Some(outage) = &mut self.outage {
            let action = outage.at(sim.elapsed(), &lock(nodes));
            match action {
                OutageAction::Nothing => {}
                OutageAction::Crash => {
                    for index in outage.nodes() {
                        // What it sent counts; then nothing here keeps its node alive,
                        // so the crash closes its files.
                        if let Some(p2p) = lock(peer_layers)[*index].take() {
                            self.retired_traffic.extend(p2p.traffic());
                            self.push_waits.add(p2p.push_waits());
                        }
                        lock(nodes)[*index] = None;
                        sim.crash(hosts.host(*index));
                    }
                }
                OutageAction::Restart => {
                    for index in outage.nodes() {
                        sim.bounce(hosts.host(*index));
                    }
                }
            }
        }
    }
}
