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
//!                 (scenario.rs: partition; crash.rs: crash and restart)
//!             ──▶ measure.rs: propagation, stale blocks, final tips ──▶ report.rs
//! ```
//!
//! Determinism: every random draw comes from the seed (topology, schedule, the peer
//! layer's nonces and jitter, turmoil's own generator), time is turmoil's, hosts run one at
//! a time in a fixed order, and node calls run inline. A test runs the same seed twice and
//! compares the reports byte for byte.

mod config;
mod crash;
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

use crate::crash::{Outage, OutageAction};
use crate::host::{HostPlan, Recorder, lock};
use crate::hosts::Hosts;
use crate::measure::{measure, miner_share, payments_report, total_traffic};
use crate::network::Uplink;
use crate::payments::Users;
use crate::random::SimRng;
use crate::scenario::{Action, Partition};
use crate::schedule::{mining_schedule, payment_schedule};
use crate::topology::Topology;

/// Simulated time before the first block: the nodes dial each other and shake hands.
pub(crate) const WARM_UP: Duration = Duration::from_secs(10);
/// Honest nodes each hostile host dials.
const HOSTILE_TARGETS: usize = 8;
/// The most hostile hosts a run takes.
const MAX_HOSTILE_HOSTS: usize = 1_000;
/// The one-way latency between a hostile host and its targets.
const HOSTILE_LATENCY: Duration = Duration::from_millis(50);
/// Simulated time after the last block, for it to reach every node.
const SETTLE: Duration = Duration::from_secs(30);
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
    if config.nodes < 2 {
        return Err(SimError::Settings(
            "a network needs at least 2 nodes".into(),
        ));
    }
    if config.block_interval.is_zero() || config.tick.is_zero() {
        return Err(SimError::Settings(
            "the block interval and the step must be above zero".into(),
        ));
    }
    if config.segment_loss_ppm >= 1_000_000 {
        return Err(SimError::Settings(
            "a segment loss must be below 100%".into(),
        ));
    }
    if config.uplink_mbit.0 == 0 || config.uplink_mbit.0 > config.uplink_mbit.1 {
        return Err(SimError::Settings(
            "uplinks need 0 < min <= max Mbit/s".into(),
        ));
    }
    let mining_end = WARM_UP + config.duration;
    let split_at = WARM_UP + config.duration / 4;
    if let Scenario::Withholding { delay } = config.scenario {
        if delay.is_zero() || delay >= SETTLE {
            return Err(SimError::Settings(format!(
                "a withholding delay must be above zero and below the {} s the run settles",
                SETTLE.as_secs()
            )));
        }
    }
    if let Scenario::Crash { down } = config.scenario {
        if down.is_zero() || split_at + down >= mining_end {
            return Err(SimError::Settings(format!(
                "a crash of {} s must end before mining does: it starts after a quarter of the {} s",
                down.as_secs(),
                config.duration.as_secs()
            )));
        }
    }
    if let Scenario::Hostile { hosts } = config.scenario {
        if hosts == 0 || hosts > MAX_HOSTILE_HOSTS {
            return Err(SimError::Settings(format!(
                "hostile hosts must number from 1 to {MAX_HOSTILE_HOSTS}"
            )));
        }
    }
    if let Scenario::Partition { length } = config.scenario {
        if length.is_zero() || split_at + length >= mining_end {
            return Err(SimError::Settings(format!(
                "a partition of {} s must end before mining does: it starts after a quarter of the {} s",
                length.as_secs(),
                config.duration.as_secs()
            )));
        }
    }
    if config
        .largest_miner_share
        .is_some_and(|share| !(share > 0.0 && share < 1.0))
    {
        return Err(SimError::Settings(
            "the largest miner's share must be above 0 and below 1".into(),
        ));
    }
    if config.hosts == HostLayout::Region {
        if matches!(config.scenario, Scenario::Crash { .. }) {
            return Err(SimError::Settings(
                "a crash reaches single nodes: it needs a host a node, not a host a region".into(),
            ));
        }
        if config.nodes > hosts::MAX_NODES_BY_REGION {
            return Err(SimError::Settings(format!(
                "a host a region places at most {} nodes (a port each)",
                hosts::MAX_NODES_BY_REGION
            )));
        }
    }
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
    if !(config.payments_per_second >= 0.0 && config.payments_per_second <= 10_000.0) {
        return Err(SimError::Settings(
            "payments a second must be from 0 to 10,000".into(),
        ));
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
    let end = WARM_UP + config.duration + SETTLE;
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
    let mut outage = match config.scenario {
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
            max_outbound: topology.nodes[index].outbound.len().max(config.outbound),
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
        Scenario::Hostile { hosts: hostile } => Some(start_hostile_hosts(
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
    let mut partition = match config.scenario {
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
    // turmoil cuts and repairs hosts: the pairs of hosts across the split, in the order
    // of their first crossing pair of nodes.
    let crossing_hosts: Vec<(String, String)> =
        partition.as_ref().map_or_else(Vec::new, |partition| {
            let mut seen = std::collections::HashSet::new();
            partition
                .crossing_pairs()
                .into_iter()
                .map(|(a, b)| (hosts.host(a).to_owned(), hosts.host(b).to_owned()))
                .filter(|pair| seen.insert(pair.clone()))
                .collect()
        });
    // Traffic and holds of peer layers that crashed.
    let mut retired_traffic = Vec::new();
    let mut push_waits = PushWaitTotals::default();
    while sim.elapsed() < end {
        sim.step()
            .map_err(|error| SimError::Host(error.to_string()))?;
        if let Some(partition) = &mut partition {
            let action = partition.at(sim.elapsed(), &lock(&nodes));
            match action {
                Action::Nothing => {}
                Action::Split => {
                    for (a, b) in &crossing_hosts {
                        sim.partition(a.as_str(), b.as_str());
                    }
                }
                Action::Heal => {
                    for (a, b) in &crossing_hosts {
                        sim.repair(a.as_str(), b.as_str());
                    }
                }
            }
        }
        if let Some(outage) = &mut outage {
            let action = outage.at(sim.elapsed(), &lock(&nodes));
            match action {
                OutageAction::Nothing => {}
                OutageAction::Crash => {
                    for index in outage.nodes() {
                        // What it sent counts; then nothing here keeps its node alive,
                        // so the crash closes its files.
                        if let Some(p2p) = lock(&peer_layers)[*index].take() {
                            retired_traffic.extend(p2p.traffic());
                            push_waits.add(p2p.push_waits());
                        }
                        lock(&nodes)[*index] = None;
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

/// Starts `hosts` hostile hosts (hostile.rs), each dialling [`HOSTILE_TARGETS`] honest
/// nodes drawn from `rng` from `start`, every other one flooding; returns the report
/// they fill.
fn start_hostile_hosts(
    sim: &mut turmoil::Sim<'_>,
    rng: &mut SimRng,
    config: &SimConfig,
    hosts: usize,
    start: Duration,
    honest: &Hosts,
) -> Arc<Mutex<HostileReport>> {
    let targets_per_host = HOSTILE_TARGETS.min(config.nodes);
    let report = Arc::new(Mutex::new(HostileReport {
        hosts,
        targets_per_host,
        started_at_ms: start.as_millis() as u64,
        ..HostileReport::default()
    }));
    for index in 0..hosts {
        let mut order: Vec<usize> = (0..config.nodes).collect();
        rng.shuffle(&mut order);
        let targets: Vec<usize> = order[..targets_per_host].to_vec();
        let name = format!("hostile-{index}");
        let plan = Arc::new(hostile::HostilePlan {
            behaviour: if index % 2 == 0 {
                Behaviour::Flood
            } else {
                Behaviour::Phantom
            },
            targets: targets
                .iter()
                .map(|target| (honest.host(*target).to_owned(), honest.port(*target)))
                .collect(),
            start,
            seed: config.seed ^ (index as u64 + 1).wrapping_mul(0xbb67_ae85_84ca_a73b),
            report: Arc::clone(&report),
        });
        sim.host(name.as_str(), move || hostile::run(Arc::clone(&plan)));
        for target in targets {
            sim.set_link_latency(name.as_str(), honest.host(target), HOSTILE_LATENCY);
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `nodes` nodes (seed `seed`) for `seconds` of mining under `scenario`, in 5 ms
    /// steps; `adjust` changes the rest. Prints the report and checks no host failed.
    fn run_scenario(
        nodes: usize,
        seed: u64,
        seconds: u64,
        scenario: Scenario,
        adjust: impl FnOnce(&mut SimConfig),
    ) -> (SimConfig, Report) {
        let mut config = SimConfig::new(nodes, seed, Duration::from_secs(seconds));
        config.tick = Duration::from_millis(5);
        config.scenario = scenario;
        adjust(&mut config);
        let report = run(&config).expect("runs");
        println!("{report}");
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        (config, report)
    }

    #[test]
    fn a_small_network_converges_and_the_same_seed_reports_the_same() {
        let mut config = SimConfig::new(30, 7, Duration::from_secs(120));
        config.tick = Duration::from_millis(5);
        let first = run(&config).expect("runs");
        println!("{first}");
        assert!(first.errors.is_empty(), "{:?}", first.errors);
        assert!(first.converged, "{first}");
        assert!(first.blocks_found >= 20, "{first}");
        assert_eq!(first.propagation.blocks_not_everywhere, 0, "{first}");
        assert!(first.propagation.blocks + first.stale_blocks == first.blocks_found);
        // Payments flowed: signed, validated, relayed and mined by real nodes.
        let payments = &first.payments;
        assert!(payments.accepted > payments.scheduled / 2, "{first}");
        assert_eq!(payments.refused, 0, "{first}");
        assert!(payments.confirmed > payments.accepted * 9 / 10, "{first}");
        // Simulated time: a block crosses 30 nodes on WAN links in well under a block
        // interval (a figure of the simulation, not of this machine's speed).
        assert!(first.propagation.to_90_percent_ms.p95 < 3_000, "{first}");
        let second = run(&config).expect("runs again");
        assert_eq!(first.to_json(), second.to_json());
        assert_eq!(first.to_svg(), second.to_svg());
        let svg = first.to_svg();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(
            svg.matches("<polyline").count(),
            first.propagation.blocks + 1
        );
        let mut other_seed = config.clone();
        other_seed.seed = 8;
        let third = run(&other_seed).expect("runs with another seed");
        assert_ne!(
            first.to_json(),
            third.to_json(),
            "another seed, another network"
        );
    }

    #[test]
    fn sharing_signature_checks_between_the_nodes_changes_no_figure() {
        let (_, shared) = run_scenario(8, 5, 60, Scenario::Steady, |_| {});
        assert!(shared.payments.accepted > 0, "{shared}");
        let (_, alone) = run_scenario(8, 5, 60, Scenario::Steady, |config| {
            config.share_signature_checks = false;
        });
        assert_eq!(shared.to_json(), alone.to_json());
    }

    #[test]
    fn a_longer_transaction_interval_announces_the_same_payments_in_fewer_invs() {
        let (_, every_20_ms) = run_scenario(8, 5, 60, Scenario::Steady, |_| {});
        let (_, every_500_ms) = run_scenario(8, 5, 60, Scenario::Steady, |config| {
            config.transaction_interval = Duration::from_millis(500);
        });
        assert_eq!(every_20_ms.settings.transaction_interval_ms, 20);
        assert_eq!(every_500_ms.settings.transaction_interval_ms, 500);
        let invs = |report: &Report| messages_of(report, "inv");
        assert!(
            invs(&every_500_ms) * 2 < invs(&every_20_ms),
            "{} inv messages every 500 ms, {} every 20 ms",
            invs(&every_500_ms),
            invs(&every_20_ms)
        );
        // The same payments reach the blocks: gathered, not lost.
        assert!(every_20_ms.payments.confirmed > 0, "{every_20_ms}");
        assert_confirms_about_as_many(&every_500_ms, &every_20_ms);
    }

    /// How many `name` messages the run sent.
    fn messages_of(report: &Report, name: &str) -> u64 {
        report
            .messages_sent
            .get(name)
            .map_or(0, |sent| sent.messages)
    }

    /// `changed` confirmed at least 90% of the payments `base` did.
    fn assert_confirms_about_as_many(changed: &Report, base: &Report) {
        assert!(
            changed.payments.confirmed * 10 >= base.payments.confirmed * 9,
            "{} confirmed against {}",
            changed.payments.confirmed,
            base.payments.confirmed
        );
    }

    #[test]
    fn miners_that_take_payments_pooled_for_a_second_leave_fewer_to_ask_for() {
        let adjust = |age_ms| {
            move |config: &mut SimConfig| {
                config.template_min_pool_age = Duration::from_millis(age_ms);
            }
        };
        let (_, newest) = run_scenario(12, 5, 90, Scenario::Steady, adjust(0));
        let (_, pooled) = run_scenario(12, 5, 90, Scenario::Steady, adjust(1_000));
        assert_eq!(pooled.settings.template_min_pool_age_ms, 1_000);
        let asked = |report: &Report| messages_of(report, "getblocktxn");
        assert!(asked(&newest) > 0, "{newest}");
        assert!(
            asked(&pooled) * 4 < asked(&newest),
            "getblocktxn: {} with the newest payments, {} with those pooled a second",
            asked(&newest),
            asked(&pooled)
        );
        // The payments wait a second, not a block more: about as many are confirmed.
        assert_confirms_about_as_many(&pooled, &newest);
    }

    #[test]
    fn waiting_briefly_for_a_push_brings_fewer_duplicate_compact_blocks() {
        let (_, at_once) = run_scenario(16, 5, 90, Scenario::Steady, |config| {
            config.push_wait = Duration::ZERO;
        });
        let (_, waiting) = run_scenario(16, 5, 90, Scenario::Steady, |_| {});
        assert_eq!(waiting.settings.push_wait_ms, 50, "the default");
        let compact = |report: &Report| messages_of(report, "cmpctblock");
        assert!(
            compact(&waiting) * 20 < compact(&at_once) * 19,
            "cmpctblock: {} asked at once, {} after waiting for pushes",
            compact(&at_once),
            compact(&waiting)
        );
        assert!(waiting.converged, "{waiting}");
        assert_eq!(waiting.propagation.blocks_not_everywhere, 0, "{waiting}");
        assert_confirms_about_as_many(&waiting, &at_once);
        // A block whose push did not come is asked for when its wait is over: the
        // download loop wakes for it, within a tick of the simulated clock (5 ms). Left
        // to the loop's 1 s tick and to other traffic, this run's latest was 180 ms.
        let waits = waiting.push_waits;
        assert!(waits.asked_after_wait > 0, "{waiting}");
        assert!(waits.most_past_due_ms <= 5, "{waiting}");
        assert_eq!(at_once.push_waits, PushWaitTotals::default(), "{at_once}");
    }

    #[test]
    fn compact_relay_sends_an_eighth_of_the_block_bytes_of_full_relay_when_pools_agree() {
        // Blocks of about 150 payments, taken once they are a second old, so that the
        // pools hold them when the block comes (the issue's "pools in sync").
        let settings = |relay| {
            move |config: &mut SimConfig| {
                config.relay = relay;
                config.payments_per_second = 250.0;
                config.template_min_pool_age = Duration::from_secs(1);
            }
        };
        let (_, full) = run_scenario(8, 7, 60, Scenario::Steady, settings(Relay::Full));
        let (_, compact) = run_scenario(8, 7, 60, Scenario::Steady, settings(Relay::Compact));
        assert!(full.converged && compact.converged, "{full}\n{compact}");
        assert_eq!(messages_of(&compact, "block"), 0, "{compact}");
        assert_eq!(messages_of(&full, "cmpctblock"), 0, "{full}");
        assert_confirms_about_as_many(&compact, &full);
        // 9.4x when written (24,189 and 2,579 bytes a node a block); the issue asks 10x,
        // measured on longer runs with larger blocks (docs/SIMULATION.md).
        let (full_bytes, compact_bytes) = (
            full.block_relay_bytes_per_node_per_block,
            compact.block_relay_bytes_per_node_per_block,
        );
        assert!(
            compact_bytes * 8 < full_bytes,
            "block relay bytes a node a block: {compact_bytes} compact, {full_bytes} full"
        );
    }

    /// Checks that both halves mined while split, that the lighter one reorganised onto
    /// the other's chain, and that every node was on the most-work chain within 10 s of
    /// the heal.
    fn assert_healed(report: &Report) -> PartitionReport {
        let partition = report.partition.clone().expect("a partition report");
        let (first, second) = partition.blocks_found_while_split;
        assert!(
            first > 0 && second > 0,
            "both halves mined while split: {report}"
        );
        assert!(
            report.reorg_depths.keys().any(|depth| *depth > 1),
            "the lighter half reorganised: {report}"
        );
        let converged = partition.converged_after_ms.expect("converged");
        assert!(converged < 10_000, "{report}");
        assert!(report.converged, "{report}");
        partition
    }

    #[test]
    fn a_healed_partition_puts_every_node_on_the_most_work_chain_within_10_seconds() {
        let length = Duration::from_secs(90);
        let (_, report) = run_scenario(12, 11, 240, Scenario::Partition { length }, |_| {});
        assert_healed(&report);
    }

    /// After a heal, a node catching up asks its new peer for blocks while each serves
    /// the other its pool: both write more than the network buffers hold. When a session
    /// read nothing while it wrote, each waited on the other until the write deadline,
    /// and this network took 21 s to converge (100 nodes: 31 s); with writes queued apart
    /// from reading (outbox.rs), under a second.
    #[test]
    fn peers_with_much_to_send_each_other_after_a_heal_do_not_wait_on_each_other() {
        let length = Duration::from_secs(60);
        let (_, report) = run_scenario(8, 11, 120, Scenario::Partition { length }, |config| {
            config.payments_per_second = 60.0;
        });
        let partition = report.partition.clone().expect("a partition report");
        let converged = partition.converged_after_ms.expect("converged");
        assert!(converged < 5_000, "{report}");
        assert!(report.converged, "{report}");
    }

    #[test]
    fn a_miner_that_holds_its_blocks_back_loses_them_to_the_network() {
        let delay = Duration::from_secs(6);
        let (_, report) = run_scenario(10, 5, 90, Scenario::Withholding { delay }, |config| {
            config.payments_per_second = 2.0;
        });
        assert!(report.converged, "{report}");
        let withholding = report.largest_miner.clone();
        assert_eq!(withholding.held_ms, 6_000);
        assert!(withholding.blocks_found >= 3, "{report}");
        // Two block intervals late, most of its blocks have a rival with a head start.
        assert!(
            withholding.main_chain_share_ppm < withholding.hash_share_ppm / 2,
            "{report}"
        );
    }

    #[test]
    fn a_selfish_miner_below_a_third_of_the_hash_power_loses_by_it() {
        let (_, report) = run_scenario(10, 5, 240, Scenario::Selfish, |config| {
            config.payments_per_second = 2.0;
            config.selfish_relays_ties = false;
        });
        assert!(report.converged, "{report}");
        let selfish = report.largest_miner.clone();
        assert!(selfish.selfish);
        assert!(selfish.blocks_found >= 10, "{report}");
        // Its releases orphan honest blocks (and lost races orphan its own).
        assert!(report.stale_blocks > 0, "{report}");
        // Its node keeps a block that only ties the public chain, so it never wins a tie
        // on the network (Eyal and Sirer's gamma is 0): below a third of the hash power,
        // selfish mining earns less than its share.
        assert!(
            selfish.hash_share_ppm < 333_333
                && selfish.main_chain_share_ppm < selfish.hash_share_ppm,
            "{report}"
        );
        // It raced: it published blocks that tied the public chain, and counted them.
        assert!(
            selfish.ties_raced > 0 && selfish.ties_won <= selfish.ties_raced,
            "{report}"
        );
    }

    #[test]
    fn crashed_nodes_reopen_their_disks_and_catch_up_with_the_network() {
        let down = Duration::from_secs(30);
        let (config, report) = run_scenario(20, 13, 120, Scenario::Crash { down }, |_| {});
        assert!(report.converged, "{report}");
        let crash = report.crash.clone().expect("a crash report");
        assert_eq!(crash.nodes.len(), 2, "a tenth of 20");
        for (at_crash, reopened) in crash.heights_at_crash.iter().zip(&crash.heights_at_reopen) {
            assert!(*at_crash > 0, "mining had begun: {report}");
            assert_eq!(
                *reopened,
                Some(*at_crash),
                "a node reopens at the height it crashed at: {report}"
            );
        }
        for (at_crash, reopened) in crash.pools_at_crash.iter().zip(&crash.pools_at_reopen) {
            assert!(*at_crash > 0, "payments were flowing: {report}");
            assert_eq!(
                *reopened,
                Some(*at_crash),
                "a node reopens with the pool it crashed with: {report}"
            );
        }
        let caught_up = crash.caught_up_after_ms.expect("caught up");
        assert!(caught_up < 10_000, "{report}");
        // The restarted nodes' pools and the rest carried the payments on.
        let payments = &report.payments;
        assert_eq!(payments.refused, 0, "{report}");
        assert!(payments.confirmed > payments.accepted * 9 / 10, "{report}");
        // Disks and restarts replay too.
        assert_eq!(
            report.to_json(),
            run(&config).expect("runs again").to_json()
        );
    }

    #[test]
    fn lost_segments_slow_blocks_down_and_the_network_still_converges() {
        let mut config = SimConfig::new(10, 21, Duration::from_secs(60));
        config.tick = Duration::from_millis(5);
        config.payments_per_second = 5.0;
        let clean = run(&config).expect("runs");
        config.segment_loss_ppm = 100_000;
        let lossy = run(&config).expect("runs with loss");
        println!("{clean}\n{lossy}");
        assert!(lossy.errors.is_empty(), "{:?}", lossy.errors);
        assert!(lossy.converged, "{lossy}");
        assert_eq!(lossy.propagation.blocks_not_everywhere, 0, "{lossy}");
        assert_eq!(lossy.settings.segment_loss_ppm, 100_000);
        // A compact block is a few segments: at 10%, many wait out a retransmission. Read
        // by the stale rate the arrivals imply, which averages every node's arrival of
        // every block: a p95 of 15 blocks is one block's, and one race or one lucky
        // retransmission moves it (this network's p95 to 90% without raced blocks was
        // 401 ms clean and 400 ms lossy once the pushers heard of blocks sooner).
        assert!(
            lossy.stale_implied_ppm > clean.stale_implied_ppm,
            "{clean}\n{lossy}"
        );
    }

    #[test]
    fn hostile_peers_are_banned_or_bounded_and_the_honest_network_carries_on() {
        let (config, report) =
            run_scenario(12, 17, 120, Scenario::Hostile { hosts: 4 }, |config| {
                config.payments_per_second = 5.0;
            });
        assert!(report.converged, "{report}");
        assert_eq!(report.propagation.blocks_not_everywhere, 0, "{report}");
        let hostile = report.hostile.clone().expect("a hostile report");
        // Two flooding hosts, 8 targets each: every connection is banned.
        assert_eq!(hostile.flood.connections, 16, "{report}");
        assert_eq!(hostile.flood.banned, 16, "{report}");
        // Phantom announcements are legal: the connections stay, and what they cost each
        // honest node is bounded by the request tracker, not by what they announce.
        let phantom = &hostile.phantom;
        assert_eq!(phantom.connections, 16, "{report}");
        assert_eq!(phantom.open_at_end, 16, "{report}");
        let announced = phantom.messages_sent * 500;
        let attack_seconds = (config.duration * 3 / 4 + Duration::from_secs(30)).as_secs();
        let bound = 16 * 5_000 * (attack_seconds / 30 + 1);
        assert!(
            phantom.transactions_requested > 0
                && phantom.transactions_requested <= bound
                && phantom.transactions_requested * 4 < announced,
            "asked {} of {announced} announced (bound {bound}): {report}",
            phantom.transactions_requested
        );
        let payments = &report.payments;
        assert_eq!(payments.refused, 0, "{report}");
        assert!(payments.confirmed > payments.accepted * 9 / 10, "{report}");
    }

    #[test]
    fn a_host_a_region_carries_the_same_network_as_a_host_a_node() {
        let (_, apart) = run_scenario(20, 5, 90, Scenario::Steady, |_| {});
        let region = |config: &mut SimConfig| config.hosts = HostLayout::Region;
        let (_, shared) = run_scenario(20, 5, 90, Scenario::Steady, region);
        assert_eq!(shared.settings.hosts, HostLayout::Region);
        // The same blocks were found (the schedule does not depend on the hosts), and
        // went everywhere.
        assert_eq!(shared.blocks_found, apart.blocks_found, "{apart}\n{shared}");
        for report in [&apart, &shared] {
            assert!(report.converged, "{report}");
            assert_eq!(report.propagation.blocks_not_everywhere, 0, "{report}");
            assert!(report.messages_sent["cmpctblock"].messages > 0, "{report}");
        }
        // Between regions the latencies are the same; within one, a step instead of
        // 1 ms: propagation moves by a little, not by a factor.
        let (a, b) = (
            apart.propagation.to_90_percent_ms.p50,
            shared.propagation.to_90_percent_ms.p50,
        );
        assert!(b * 2 > a && b < a * 2, "{apart}\n{shared}");
        let (a, b) = (apart.payments.confirmed, shared.payments.confirmed);
        assert!(b * 10 > a * 9 && a * 10 > b * 9, "{apart}\n{shared}");
        // Deterministic too.
        let (_, again) = run_scenario(20, 5, 90, Scenario::Steady, region);
        assert_eq!(shared.to_json(), again.to_json());
    }

    #[test]
    fn a_partition_along_regions_heals_onto_the_most_work_chain() {
        let length = Duration::from_secs(90);
        let (_, report) = run_scenario(20, 11, 240, Scenario::Partition { length }, |config| {
            config.hosts = HostLayout::Region;
        });
        let partition = assert_healed(&report);
        let (first, second) = partition.nodes;
        assert!(first >= 5 && second >= 5, "two sides of regions: {report}");
    }

    #[test]
    fn hostile_hosts_reach_nodes_that_share_a_host_and_are_banned_alone() {
        let (_, report) = run_scenario(12, 17, 60, Scenario::Hostile { hosts: 2 }, |config| {
            config.hosts = HostLayout::Region;
            config.payments_per_second = 5.0;
        });
        let hostile = report.hostile.clone().expect("a hostile report");
        assert_eq!(hostile.flood.connections, 8, "{report}");
        assert_eq!(hostile.flood.banned, 8, "{report}");
        assert_eq!(hostile.phantom.connections, 8, "{report}");
        // A ban is of the hostile host's address: the honest nodes of a region, which share
        // one, still carry the network.
        assert!(report.converged, "{report}");
        assert_eq!(report.propagation.blocks_not_everywhere, 0, "{report}");
        assert_eq!(report.payments.refused, 0, "{report}");
    }

    #[test]
    fn settings_that_describe_no_network_are_refused() {
        let mut config = SimConfig::new(1, 7, Duration::from_secs(60));
        assert!(matches!(run(&config), Err(SimError::Settings(_))));
        config.nodes = 4;
        config.uplink_mbit = (0, 10);
        assert!(matches!(run(&config), Err(SimError::Settings(_))));
        config.uplink_mbit = (20, 100);
        config.segment_loss_ppm = 1_000_000;
        assert!(matches!(run(&config), Err(SimError::Settings(_))));
        config.segment_loss_ppm = 0;
        config.largest_miner_share = Some(1.0);
        assert!(matches!(run(&config), Err(SimError::Settings(_))));
        config.largest_miner_share = None;
        config.tick = Duration::ZERO;
        assert!(matches!(run(&config), Err(SimError::Settings(_))));
        config.tick = Duration::from_millis(1);
        config.scenario = Scenario::Partition {
            length: Duration::from_secs(50),
        };
        assert!(
            matches!(run(&config), Err(SimError::Settings(_))),
            "ends after mining"
        );
        config.scenario = Scenario::Withholding {
            delay: Duration::from_secs(30),
        };
        assert!(
            matches!(run(&config), Err(SimError::Settings(_))),
            "published after the run"
        );
        config.scenario = Scenario::Crash {
            down: Duration::from_secs(50),
        };
        assert!(
            matches!(run(&config), Err(SimError::Settings(_))),
            "restarts after mining"
        );
        // A crash of single nodes needs hosts of their own.
        config.duration = Duration::from_secs(600);
        config.hosts = HostLayout::Region;
        config.scenario = Scenario::Crash {
            down: Duration::from_secs(60),
        };
        match run(&config) {
            Err(SimError::Settings(why)) => assert!(why.contains("a host a node"), "{why}"),
            other => panic!("a crash ran with a host a region: {:?}", other.map(|_| ())),
        }
        // A partition along regions needs two: two nodes that the seed put in one region.
        config.nodes = 2;
        config.scenario = Scenario::Partition {
            length: Duration::from_secs(60),
        };
        config.seed = (0..1_000)
            .find(|seed| {
                let drawn = Topology::draw(
                    &mut SimRng::new(*seed).fork(1),
                    2,
                    config.outbound,
                    config.latency,
                    config.uplink_mbit,
                );
                drawn.nodes[0].region == drawn.nodes[1].region
            })
            .expect("a seed puts two nodes in one region");
        match run(&config) {
            Err(SimError::Settings(why)) => assert!(why.contains("two regions"), "{why}"),
            other => panic!("a partition of one region ran: {:?}", other.map(|_| ())),
        }
    }
}
