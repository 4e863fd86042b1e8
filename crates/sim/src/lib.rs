//! A deterministic simulated network of powchain nodes: the real `Node` and peer layer
//! (`powchain-p2p`) run on tokio-rs/turmoil's simulated TCP, with simulated time, per-link
//! WAN latencies, paced uplinks and a seeded schedule of blocks, so questions about a
//! network (how fast a block reaches the miners, how often blocks race) get reproducible
//! answers from hundreds of nodes on one machine. `docs/SIMULATION.md` says how to run it
//! and what it found.
//!
//! ```text
//!   SimConfig (config.rs)
//!             ──▶ topology.rs: regions, 8 outbound peers each, hash power, uplinks
//!             ──▶ schedule.rs: blocks, a Poisson process, each to a node by hash share;
//!                 payments, a Poisson process, each through a node drawn uniformly
//!             ──▶ turmoil Sim: one host per node, or per region (hosts.rs)
//!                   Node (chain and pool in memory) + P2p over network.rs (simulated TCP,
//!                   paced by the node's uplink, segments lost if asked) + a recorder of
//!                   the node's events; selfish.rs: the largest miner's strategy, if asked
//!               + hostile hosts (hostile.rs), if asked
//!             ──▶ step until mining ends and the network settles; faults on the way
//!                 (faults.rs: scenario.rs's partition, crash.rs's crash and restart)
//!             ──▶ measure.rs: propagation, stale blocks, final tips ──▶ report.rs
//! ```
//!
//! Determinism: every random draw comes from the seed (topology, schedule, the peer
//! layer's nonces and jitter, turmoil's own generator), time is turmoil's, hosts run one at
//! a time in a fixed order, and node calls run inline. A test runs the same seed twice and
//! compares the reports byte for byte.

mod config;
mod convergence;
mod crash;
mod faults;
mod host;
mod hostile;
mod hosts;
mod measure;
mod network;
mod payments;
mod plot;
mod random;
mod report;
mod scenario;
mod schedule;
mod selfish;
mod topology;

use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use config::{MEASURED_VALIDATION, Relay, SimConfig, SimError};
pub use crash::CrashReport;
pub use hostile::{Behaviour, BehaviourReport, HostileReport};
pub use hosts::HostLayout;
pub use payments::PaymentsReport;
pub use powchain_p2p::ValidationDelay;
pub use report::{MessageTotals, Propagation, PushWaitTotals, Report, RunSettings, Spread};
pub use scenario::{MinerShare, PartitionReport, Scenario};
pub use topology::LatencyModel;

use crate::crash::Outage;
use crate::faults::Faults;
use crate::host::{HostPlan, Recorder, lock};
use crate::hosts::Hosts;
use crate::measure::{measure, miner_share, payments_report, total_traffic};
use crate::network::Uplink;
use crate::payments::Users;
use crate::random::SimRng;
use crate::scenario::Partition;
use crate::schedule::{mining_schedule, payment_schedule};
use crate::topology::Topology;

/// Signature checks the nodes' shared cache remembers (`SimConfig::share_signature_checks`):
/// an hour of payments at 20 a second is 72,000.
const SHARED_SIGNATURE_CHECKS: usize = 500_000;

/// Simulated time since the run began, when called from a simulated host (a log line's
/// timestamp in `powchain simulate`); `None` elsewhere.
#[must_use]
pub fn simulated_elapsed() -> Option<Duration> {
    turmoil::sim_elapsed()
}

/// Runs a simulation and measures it.
///
/// # Errors
/// [`SimError`] for settings that describe no network or a host that fails.
pub fn run(config: &SimConfig) -> Result<Report, SimError> {
    config.check()?;
    let split_at = config.fault_start();
    let mut rng = SimRng::new(config.seed);
    let mut topology = Topology::draw(
        &mut rng.fork(1),
        config.nodes,
        config.outbound,
        config.latency,
        config.uplink_mbit,
    );
    if let Some(share) = config.largest_miner_share {
        topology.set_largest_share(share);
    }
    if let Some(peers) = config.largest_miner_outbound {
        topology.widen_largest_miner(&mut rng.fork(7), peers);
    }
    let hosts = Hosts::place(config.hosts, &topology);
    if matches!(config.scenario, Scenario::Partition { .. }) && hosts.groups().len() < 2 {
        return Err(SimError::Settings(
            "a partition along regions needs nodes in two regions at least".into(),
        ));
    }
    let schedules = mining_schedule(&mut rng.fork(2), &topology, config);
    let payments = payment_schedule(&mut rng.fork(4), config);
    let users = Arc::new(Mutex::new(Users::new(config.seed)));
    let blocks_scheduled: usize = schedules.iter().map(Vec::len).sum();
    let wallets = tempfile::tempdir().map_err(SimError::TempDir)?;
    let recorder = Arc::new(Mutex::new(Recorder::default()));
    let nodes = Arc::new(Mutex::new(vec![None; config.nodes]));
    let peer_layers = Arc::new(Mutex::new(vec![None; config.nodes]));
    let uplinks: Vec<Arc<Uplink>> = topology
        .nodes
        .iter()
        .map(|node| Uplink::new(node.uplink_bits_per_second))
        .collect();
    let end = config.end();
    let mut sim = turmoil::Builder::new()
        .simulation_duration(end + Duration::from_secs(60))
        .tick_duration(config.tick)
        .rng_seed(config.seed)
        .build();
    let epoch_ms = powchain_consensus::Network::Regtest
        .params()
        .genesis()
        .header
        .time_ms
        + 60_000;
    let outage = match config.scenario {
        Scenario::Crash { down } => {
            Some(Outage::new(&mut rng.fork(5), config.nodes, split_at, down))
        }
        _ => None,
    };
    let selfish_miner = Arc::new(Mutex::new(selfish::SelfishMiner::default()));
    let signature_checks = config.share_signature_checks.then(|| {
        Arc::new(powchain_consensus::signature_cache::SignatureCache::new(
            SHARED_SIGNATURE_CHECKS,
        ))
    });
    let mut plans = Vec::with_capacity(config.nodes);
    for (index, (schedule, payments)) in schedules.into_iter().zip(payments).enumerate() {
        plans.push(Arc::new(HostPlan {
            index,
            seed: config.seed,
            data_dir: wallets.path().join(format!("node-{index}")),
            epoch_ms,
            port: hosts.port(index),
            peers: topology.nodes[index]
                .outbound
                .iter()
                .map(|peer| hosts.address(*peer))
                .collect(),
            // The topology's peers are each node's configured peers; learned addresses
            // fill only the slots the topology leaves below `outbound`.
            max_outbound: config
                .outbound
                .saturating_sub(topology.nodes[index].outbound.len()),
            schedule,
            payments,
            users: Arc::clone(&users),
            validation_delay: config.validation_delay,
            signature_checks: signature_checks.clone(),
            compact_blocks: config.relay == Relay::Compact,
            high_bandwidth_peers: config.high_bandwidth_peers,
            push_wait: config.push_wait,
            transaction_interval: config.transaction_interval,
            template_min_pool_age: config.template_min_pool_age,
            withhold: match config.scenario {
                Scenario::Withholding { delay } if index == topology.largest_miner() => Some(delay),
                _ => None,
            },
            selfish: (config.scenario == Scenario::Selfish && index == topology.largest_miner())
                .then(|| Arc::clone(&selfish_miner)),
            selfish_relays_ties: config.selfish_relays_ties,
            on_disk: outage.as_ref().is_some_and(|outage| outage.crashes(index)),
            progress: Mutex::default(),
            uplink: Arc::clone(&uplinks[index]),
            loss: (config.segment_loss_ppm > 0).then(|| {
                Arc::new(network::Loss {
                    segment_loss_ppm: config.segment_loss_ppm,
                    one_way: hosts.one_way_from(&topology, index),
                    seed: config.seed ^ (index as u64).wrapping_mul(0x6a09_e667_f3bc_c909),
                    connections: std::sync::atomic::AtomicU32::new(0),
                })
            }),
            recorder: Arc::clone(&recorder),
            nodes: Arc::clone(&nodes),
            peer_layers: Arc::clone(&peer_layers),
        }));
    }
    for (name, nodes) in hosts.groups() {
        let name = name.clone();
        let plans: Vec<Arc<HostPlan>> =
            nodes.iter().map(|node| Arc::clone(&plans[*node])).collect();
        sim.host(name, move || host::run_all(plans.clone()));
    }
    let hostile_report = match config.scenario {
        Scenario::Hostile { hosts: hostile } => Some(hostile::start_hosts(
            &mut sim,
            &mut rng.fork(6),
            config,
            hostile,
            split_at,
            &hosts,
        )),
        _ => None,
    };
    // Every pair of hosts gets its regions' latency: gossip may connect any two nodes.
    for (a, b, latency) in hosts.links(&topology) {
        sim.set_link_latency(a, b, latency);
    }
    let partition = match config.scenario {
        Scenario::Steady
        | Scenario::Withholding { .. }
        | Scenario::Selfish
        | Scenario::Crash { .. }
        | Scenario::Hostile { .. } => None,
        Scenario::Partition { length } => Some(match config.hosts {
            HostLayout::Node => Partition::new(&mut rng.fork(3), config.nodes, split_at, length),
            HostLayout::Region => {
                let groups: Vec<Vec<usize>> = hosts
                    .groups()
                    .iter()
                    .map(|(_, nodes)| nodes.clone())
                    .collect();
                Partition::by_groups(&groups, config.nodes, split_at, length)
            }
        }),
    };
    let mut faults = Faults::new(partition, outage, &hosts);
    while sim.elapsed() < end {
        sim.step()
            .map_err(|error| SimError::Host(error.to_string()))?;
        faults.after_step(&mut sim, &hosts, &nodes, &peer_layers);
    }
    let Faults {
        partition,
        outage,
        retired_traffic,
        mut push_waits,
        ..
    } = faults;
    let nodes: Vec<_> = lock(&nodes).iter().flatten().cloned().collect();
    let bytes_sent: u64 = uplinks.iter().map(|uplink| uplink.bytes_sent()).sum();
    let traffic = total_traffic(&lock(&peer_layers), retired_traffic);
    for p2p in lock(&peer_layers).iter().flatten() {
        push_waits.add(p2p.push_waits());
    }
    let mut recorder = std::mem::take(&mut *lock(&recorder));
    // Blocks the selfish miner still kept private at the end were found, not published.
    recorder.never_published += lock(&selfish_miner).unpublished();
    drop(sim);
    let shares: Vec<f64> = topology.nodes.iter().map(|node| node.hash_share).collect();
    let found: Vec<(usize, Duration)> = recorder
        .mined
        .iter()
        .map(|mined| (mined.miner, mined.at))
        .collect();
    let mined = recorder.mined.clone();
    let never_published = recorder.never_published;
    let ties = std::mem::take(&mut recorder.ties);
    let crash = outage.map(|outage| {
        outage.report(
            &shares,
            &recorder.reopened,
            recorder.blocks_not_found,
            recorder.payments_not_made,
        )
    });
    let mut report = measure(
        config,
        &nodes,
        recorder,
        bytes_sent,
        blocks_scheduled,
        &shares,
    );
    report.stale_floor_ppm = topology.stale_floor_ppm(config.block_interval);
    report.stale_floor_over_links_ppm = topology.stale_floor_over_links_ppm(config.block_interval);
    report.set_traffic(traffic, config.nodes);
    report.push_waits = push_waits;
    report.payments = payments_report(&lock(&users), &nodes, &report);
    report.partition = partition.map(|partition| partition.report(&found, &shares));
    report.crash = crash;
    report.hostile = hostile_report.map(|report| lock(&report).clone());
    let held = match config.scenario {
        Scenario::Withholding { delay } => delay,
        _ => Duration::ZERO,
    };
    report.largest_miner = miner_share(
        &nodes,
        &mined,
        topology.largest_miner(),
        &shares,
        held,
        &ties,
    );
    if config.scenario == Scenario::Selfish {
        report.largest_miner.selfish = true;
        report.largest_miner.blocks_found += never_published;
        report.largest_miner.blocks_never_published = never_published;
    }
    Ok(report)
}

#[cfg(test)]
mod tests;
