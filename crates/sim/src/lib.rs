//! A deterministic simulated network of powchain nodes: the real `Node` and peer layer
//! (`powchain-p2p`) run on tokio-rs/turmoil's simulated TCP, with simulated time, per-link
//! WAN latencies, paced uplinks and a seeded schedule of blocks, so questions about a
//! network (how fast a block reaches the miners, how often blocks race) get reproducible
//! answers from hundreds of nodes on one machine. `docs/SIMULATION.md` says how to run it
//! and what it found.
//!
//! ```text
//!   SimConfig ──▶ topology.rs: regions, 8 outbound peers each, hash power, uplinks
//!             ──▶ mining schedule: a Poisson process, each block to a node by hash share
//!             ──▶ turmoil Sim: one host per node (host.rs)
//!                   Node (chain and pool in memory) + P2p over network.rs (simulated TCP,
//!                   paced by the node's uplink, segments lost if asked) + a recorder of
//!                   the node's events; selfish.rs: the largest miner's strategy, if asked
//!               + hostile hosts (hostile.rs), if asked
//!             ──▶ step until mining ends and the network settles; faults on the way
//!                 (scenario.rs: partition; crash.rs: crash and restart) ──▶ report.rs
//! ```
//!
//! Determinism: every random draw comes from the seed (topology, schedule, the peer
//! layer's nonces and jitter, turmoil's own generator), time is turmoil's, hosts run one at
//! a time in a fixed order, and node calls run inline. A test runs the same seed twice and
//! compares the reports byte for byte.

mod crash;
mod host;
mod hostile;
mod network;
mod payments;
mod plot;
mod random;
mod report;
mod scenario;
mod selfish;
mod topology;

use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use crash::CrashReport;
pub use hostile::{Behaviour, BehaviourReport, HostileReport};
pub use payments::PaymentsReport;
pub use powchain_p2p::ValidationDelay;
pub use report::{MessageTotals, Propagation, Report, RunSettings, Spread};
pub use scenario::{MinerShare, PartitionReport, Scenario};
pub use topology::LatencyModel;

use crate::crash::{Outage, OutageAction};
use crate::host::{HostPlan, Recorder, lock};
use crate::network::Uplink;
use crate::payments::Users;
use crate::random::SimRng;
use crate::scenario::{Action, Partition};
use crate::topology::Topology;

/// Simulated time before the first block: the nodes dial each other and shake hands.
const WARM_UP: Duration = Duration::from_secs(10);
/// Honest nodes each hostile host dials.
const HOSTILE_TARGETS: usize = 8;
/// The most hostile hosts a run takes.
const MAX_HOSTILE_HOSTS: usize = 1_000;
/// The one-way latency between a hostile host and its targets.
const HOSTILE_LATENCY: Duration = Duration::from_millis(50);
/// Simulated time after the last block, for it to reach every node.
const SETTLE: Duration = Duration::from_secs(30);

/// What to simulate.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// How many nodes.
    pub nodes: usize,
    /// Every random draw follows from it.
    pub seed: u64,
    /// Simulated time during which blocks are found (after a warm-up of 10 s, before a
    /// settle of 30 s).
    pub duration: Duration,
    /// Peers each node dials.
    pub outbound: usize,
    /// How links delay messages.
    pub latency: LatencyModel,
    /// The mean time between blocks (regtest's 3 s by default).
    pub block_interval: Duration,
    /// Each node's uplink is drawn between these, in Mbit/s.
    pub uplink_mbit: (u64, u64),
    /// Probability that a TCP segment is lost, in parts per million (network.rs: a write
    /// that loses one leaves a retransmission timeout late).
    pub segment_loss_ppm: u32,
    /// Simulated time per step: the resolution of every delay.
    pub tick: Duration,
    /// Faults injected (scenario.rs).
    pub scenario: Scenario,
    /// Payments a second, over the whole network (payments.rs).
    pub payments_per_second: f64,
    /// How long validation takes (`None`: no simulated time).
    pub validation_delay: Option<ValidationDelay>,
    /// How blocks cross links.
    pub relay: Relay,
    /// Peers each node asks to push new blocks (compact relay's high-bandwidth mode).
    pub high_bandwidth_peers: usize,
    /// The largest miner's share of the hash power, the others scaled to the rest (`None`:
    /// as drawn, 28%).
    pub largest_miner_share: Option<f64>,
}

/// How blocks cross links.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Relay {
    /// Compact blocks (BIP-152): short ids, three peers pushing before validation.
    Compact,
    /// Whole blocks, announced by `inv` and fetched by `getdata` after validation.
    Full,
}

impl std::str::FromStr for Relay {
    type Err = String;

    fn from_str(text: &str) -> Result<Relay, String> {
        match text {
            "compact" => Ok(Relay::Compact),
            "full" => Ok(Relay::Full),
            other => Err(format!("unknown relay {other:?}: compact or full")),
        }
    }
}

/// Validation times of a 2-core machine, from `docs/BENCHMARKS.md`: a block 0.6 ms
/// besides its payments (`sync.blocks_per_second`, 929 blocks of 10 payments a second), a
/// payment in a block 45 µs (`connect.full_block`, about 22,000 a second), a relayed
/// transaction 100 µs (a signature check, 50 µs on one core, and the pool's work).
pub const MEASURED_VALIDATION: ValidationDelay = ValidationDelay {
    per_block: Duration::from_micros(600),
    per_payment: Duration::from_micros(45),
    per_transaction: Duration::from_micros(100),
};

impl SimConfig {
    /// `nodes` nodes for `duration` with the defaults: 8 outbound peers, WAN latencies,
    /// 3 s blocks, 20-100 Mbit/s uplinks, 1 ms steps, 20 payments a second, validation
    /// as measured.
    pub fn new(nodes: usize, seed: u64, duration: Duration) -> SimConfig {
        SimConfig {
            nodes,
            seed,
            duration,
            outbound: 8,
            latency: LatencyModel::Wan,
            block_interval: Duration::from_secs(3),
            uplink_mbit: (20, 100),
            segment_loss_ppm: 0,
            tick: Duration::from_millis(1),
            scenario: Scenario::Steady,
            payments_per_second: 20.0,
            validation_delay: Some(MEASURED_VALIDATION),
            relay: Relay::Compact,
            high_bandwidth_peers: 3,
            largest_miner_share: None,
        }
    }
}

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The settings cannot describe a network.
    #[error("invalid simulation settings: {0}")]
    Settings(String),
    /// The wallets' temporary directory could not be made.
    #[error("cannot create a temporary directory: {0}")]
    TempDir(#[source] std::io::Error),
    /// A host's software failed.
    #[error("a simulated host failed: {0}")]
    Host(String),
}

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
    if !(config.payments_per_second >= 0.0 && config.payments_per_second <= 10_000.0) {
        return Err(SimError::Settings(
            "payments a second must be from 0 to 10,000".into(),
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
    for (index, (schedule, payments)) in schedules.into_iter().zip(payments).enumerate() {
        let plan = Arc::new(HostPlan {
            index,
            seed: config.seed,
            data_dir: wallets.path().join(format!("node-{index}")),
            epoch_ms,
            peers: topology.nodes[index]
                .outbound
                .iter()
                .map(|peer| host_name(*peer))
                .collect(),
            max_outbound: config.outbound,
            schedule,
            payments,
            users: Arc::clone(&users),
            validation_delay: config.validation_delay,
            compact_blocks: config.relay == Relay::Compact,
            high_bandwidth_peers: config.high_bandwidth_peers,
            withhold: match config.scenario {
                Scenario::Withholding { delay } if index == topology.largest_miner() => Some(delay),
                _ => None,
            },
            selfish: (config.scenario == Scenario::Selfish && index == topology.largest_miner())
                .then(|| Arc::clone(&selfish_miner)),
            on_disk: outage.as_ref().is_some_and(|outage| outage.crashes(index)),
            progress: Mutex::default(),
            uplink: Arc::clone(&uplinks[index]),
            loss: (config.segment_loss_ppm > 0).then(|| {
                Arc::new(network::Loss {
                    segment_loss_ppm: config.segment_loss_ppm,
                    one_way: (0..config.nodes)
                        .map(|peer| topology.one_way(index, peer))
                        .collect(),
                    seed: config.seed ^ (index as u64).wrapping_mul(0x6a09_e667_f3bc_c909),
                    connections: std::sync::atomic::AtomicU32::new(0),
                })
            }),
            recorder: Arc::clone(&recorder),
            nodes: Arc::clone(&nodes),
            peer_layers: Arc::clone(&peer_layers),
        });
        sim.host(host_name(index), move || host::run(Arc::clone(&plan)));
    }
    let hostile_report = match config.scenario {
        Scenario::Hostile { hosts } => Some(start_hostile_hosts(
            &mut sim,
            &mut rng.fork(6),
            config,
            hosts,
            split_at,
        )),
        _ => None,
    };
    // Every pair of nodes gets its regions' latency: gossip may connect any two.
    for a in 0..config.nodes {
        for b in a + 1..config.nodes {
            sim.set_link_latency(host_name(a), host_name(b), topology.one_way(a, b));
        }
    }
    let mut partition = match config.scenario {
        Scenario::Steady
        | Scenario::Withholding { .. }
        | Scenario::Selfish
        | Scenario::Crash { .. }
        | Scenario::Hostile { .. } => None,
        Scenario::Partition { length } => Some(Partition::new(
            &mut rng.fork(3),
            config.nodes,
            split_at,
            length,
        )),
    };
    // Traffic of peer layers that crashed.
    let mut retired_traffic = Vec::new();
    while sim.elapsed() < end {
        sim.step()
            .map_err(|error| SimError::Host(error.to_string()))?;
        if let Some(partition) = &mut partition {
            let action = partition.at(sim.elapsed(), &lock(&nodes));
            match action {
                Action::Nothing => {}
                Action::Split => {
                    for (a, b) in partition.crossing_pairs() {
                        sim.partition(host_name(a), host_name(b));
                    }
                }
                Action::Heal => {
                    for (a, b) in partition.crossing_pairs() {
                        sim.repair(host_name(a), host_name(b));
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
                        }
                        lock(&nodes)[*index] = None;
                        sim.crash(host_name(*index));
                    }
                }
                OutageAction::Restart => {
                    for index in outage.nodes() {
                        sim.bounce(host_name(*index));
                    }
                }
            }
        }
    }
    let nodes: Vec<_> = lock(&nodes).iter().flatten().cloned().collect();
    let bytes_sent: u64 = uplinks.iter().map(|uplink| uplink.bytes_sent()).sum();
    let traffic = total_traffic(&lock(&peer_layers), retired_traffic);
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
    let crash = outage.map(|outage| {
        outage.report(
            &shares,
            &recorder.reopened,
            recorder.blocks_not_found,
            recorder.payments_not_made,
        )
    });
    let mut report = measure(config, &nodes, recorder, bytes_sent, blocks_scheduled);
    report.stale_floor_ppm = topology.stale_floor_ppm(config.block_interval);
    report.set_traffic(traffic, config.nodes);
    report.payments = payments_report(&lock(&users), &nodes, &report);
    report.partition = partition.map(|partition| partition.report(&found, &shares));
    report.crash = crash;
    report.hostile = hostile_report.map(|report| lock(&report).clone());
    let held = match config.scenario {
        Scenario::Withholding { delay } => delay,
        _ => Duration::ZERO,
    };
    report.largest_miner = miner_share(&nodes, &mined, topology.largest_miner(), &shares, held);
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
            targets: targets.iter().map(|target| host_name(*target)).collect(),
            start,
            seed: config.seed ^ (index as u64 + 1).wrapping_mul(0xbb67_ae85_84ca_a73b),
            report: Arc::clone(&report),
        });
        sim.host(name.as_str(), move || hostile::run(Arc::clone(&plan)));
        for target in targets {
            sim.set_link_latency(name.as_str(), host_name(target), HOSTILE_LATENCY);
        }
    }
    report
}

/// Messages and bytes every node sent, by message type, over the run.
fn total_traffic(
    peer_layers: &[Option<Arc<powchain_p2p::P2p>>],
    retired: Vec<powchain_p2p::MessageTraffic>,
) -> std::collections::BTreeMap<String, MessageTotals> {
    let mut totals: std::collections::BTreeMap<String, MessageTotals> =
        std::collections::BTreeMap::new();
    let live = peer_layers.iter().flatten().flat_map(|p2p| p2p.traffic());
    for traffic in live.chain(retired) {
        let total = totals.entry(traffic.name.to_owned()).or_default();
        total.messages += traffic.sent;
        total.bytes += traffic.sent_bytes;
    }
    totals
}

/// How many blocks `miner` found and how many of them, and of all blocks found in the
/// run, the final main chain holds.
fn miner_share(
    nodes: &[Arc<powchain_node::Node>],
    mined: &[host::Mined],
    miner: usize,
    shares: &[f64],
    delay: Duration,
) -> MinerShare {
    // The most common final tip's chain (the nodes converge by the end of a run).
    let reference = nodes.iter().max_by_key(|node| {
        let tip = node.tip();
        (
            nodes
                .iter()
                .filter(|other| other.tip().hash == tip.hash)
                .count(),
            std::cmp::Reverse(tip.hash),
        )
    });
    let on_main = |block: &&host::Mined| {
        reference.is_some_and(|node| {
            node.hash_at(powchain_consensus::BlockHeight(block.height)) == Some(block.hash)
        })
    };
    let main_chain = mined.iter().filter(on_main).count();
    let ours_on_main = mined
        .iter()
        .filter(|block| block.miner == miner)
        .filter(on_main)
        .count();
    MinerShare {
        miner,
        held_ms: delay.as_millis() as u64,
        selfish: false,
        blocks_never_published: 0,
        hash_share_ppm: (shares.get(miner).copied().unwrap_or(0.0) * 1e6).round() as u64,
        blocks_found: mined.iter().filter(|block| block.miner == miner).count(),
        blocks_on_main_chain: ours_on_main,
        main_chain_share_ppm: (ours_on_main as u64 * 1_000_000)
            .checked_div(main_chain as u64)
            .unwrap_or(0),
    }
}

/// The simulated host name of node `index`.
fn host_name(index: usize) -> String {
    format!("node-{index}")
}

/// The times of a Poisson process with mean gap `mean` (seconds) over the mining window,
/// each given to the node `choose` draws (after the gap, from the same generator).
fn poisson_schedule(
    rng: &mut SimRng,
    config: &SimConfig,
    mean: f64,
    choose: impl Fn(&mut SimRng) -> usize,
) -> Vec<Vec<Duration>> {
    let mut schedules = vec![Vec::new(); config.nodes];
    let end = (WARM_UP + config.duration).as_secs_f64();
    let mut at = WARM_UP.as_secs_f64();
    loop {
        at += rng.exponential(mean);
        if at >= end {
            return schedules;
        }
        // Whole milliseconds, so the schedule does not depend on float printing.
        let node = choose(rng);
        schedules[node].push(Duration::from_millis((at * 1000.0) as u64));
    }
}

/// When users pay through each node: the payment rate, each payment through a node drawn
/// uniformly.
fn payment_schedule(rng: &mut SimRng, config: &SimConfig) -> Vec<Vec<Duration>> {
    if config.payments_per_second == 0.0 {
        return vec![Vec::new(); config.nodes];
    }
    poisson_schedule(rng, config, 1.0 / config.payments_per_second, |rng| {
        rng.below(config.nodes)
    })
}

/// When each node finds blocks: the block interval, each block given to a node in
/// proportion to its hash power.
fn mining_schedule(
    rng: &mut SimRng,
    topology: &Topology,
    config: &SimConfig,
) -> Vec<Vec<Duration>> {
    let shares: Vec<f64> = topology.nodes.iter().map(|node| node.hash_share).collect();
    poisson_schedule(rng, config, config.block_interval.as_secs_f64(), |rng| {
        rng.weighted(&shares)
    })
}

/// What the users did, and how many of their payments the final main chain holds.
fn payments_report(
    users: &Users,
    nodes: &[Arc<powchain_node::Node>],
    report: &Report,
) -> PaymentsReport {
    let mut payments = users.report.clone();
    let reference = nodes
        .iter()
        .find(|node| node.tip().height.0 == report.main_chain_height);
    if let Some(snapshot) = reference.and_then(|node| node.reader().snapshot().ok()) {
        payments.confirmed = users
            .made()
            .iter()
            .filter(|txid| matches!(snapshot.tx_location(txid), Ok(Some(_))))
            .count() as u64;
    }
    payments
}

/// Where the nodes' chains ended.
struct FinalTips {
    /// How many nodes ended on each tip (hash, height).
    nodes_on: std::collections::BTreeMap<(powchain_consensus::BlockHash, u64), usize>,
    /// How many ended on a chain with less work than the best tip: behind, not merely on
    /// the other side of a tie the end of mining left open.
    short_of_most_work: usize,
}

impl FinalTips {
    fn of(
        tips: impl IntoIterator<Item = (powchain_consensus::BlockHash, u64, powchain_consensus::Work)>,
    ) -> FinalTips {
        let tips: Vec<_> = tips.into_iter().collect();
        let mut nodes_on = std::collections::BTreeMap::new();
        for (hash, height, _) in &tips {
            *nodes_on.entry((*hash, *height)).or_default() += 1;
        }
        let most_work = tips.iter().map(|(_, _, work)| *work).max();
        let short_of_most_work = tips
            .iter()
            .filter(|(_, _, work)| Some(*work) < most_work)
            .count();
        FinalTips {
            nodes_on,
            short_of_most_work,
        }
    }
}

fn measure(
    config: &SimConfig,
    nodes: &[Arc<powchain_node::Node>],
    recorder: Recorder,
    bytes_sent: u64,
    blocks_scheduled: usize,
) -> Report {
    let mut errors = recorder.errors;
    if nodes.len() != config.nodes {
        errors.push(format!("{} of {} nodes started", nodes.len(), config.nodes));
    }
    let final_tips = FinalTips::of(nodes.iter().map(|node| {
        let tip = node.tip();
        (tip.hash, tip.height.0, tip.work)
    }));
    let tips = &final_tips.nodes_on;
    let main = tips
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map(|(tip, _)| *tip);
    let reference =
        main.and_then(|(hash, _)| nodes.iter().find(|node| node.tip().hash == hash).cloned());
    let on_main = |hash, height| {
        reference
            .as_ref()
            .is_some_and(|node| node.hash_at(powchain_consensus::BlockHeight(height)) == Some(hash))
    };
    let mut to_50 = Vec::new();
    let mut to_90 = Vec::new();
    let mut to_100 = Vec::new();
    let mut stale = 0;
    let mut not_everywhere = 0;
    let mut arrival_curves = Vec::new();
    let mut to_90_uncontested = Vec::new();
    let mut races_won = 0;
    let reorganised: std::collections::HashSet<(usize, Duration)> = recorder
        .reorgs
        .iter()
        .map(|(node, _, at)| (*node, *at))
        .collect();
    let mut measured = 0;
    for mined in &recorder.mined {
        if !on_main(mined.hash, mined.height) {
            stale += 1;
            continue;
        }
        measured += 1;
        let connections = recorder
            .connected
            .get(&mined.hash)
            .map(Vec::as_slice)
            .unwrap_or_default();
        // Some node connected it in a reorganisation: it lost a race there first and won
        // with a later block, so its time is the wait for that block, not its travel.
        let won_a_race = connections
            .iter()
            .any(|(node, at)| reorganised.contains(&(*node, *at)));
        let mut arrivals: Vec<u64> = connections
            .iter()
            .map(|(_, at)| at.saturating_sub(mined.at).as_millis() as u64)
            .collect();
        arrivals.sort_unstable();
        let reached = |share: usize| {
            let needed = (config.nodes * share).div_ceil(100).max(1);
            arrivals.get(needed - 1).copied()
        };
        if let (Some(half), Some(most)) = (reached(50), reached(90)) {
            to_50.push(half);
            to_90.push(most);
            if !won_a_race {
                to_90_uncontested.push(most);
            }
        }
        if won_a_race {
            races_won += 1;
        }
        match reached(100) {
            Some(all) => to_100.push(all),
            None => not_everywhere += 1,
        }
        arrival_curves.push(arrivals);
    }
    let found = recorder.mined.len();
    // Blocks scheduled to a crashed host while it was down are not found; a selfish
    // miner's may never be published.
    let expected = blocks_scheduled - recorder.blocks_not_found - recorder.never_published;
    if found != expected {
        errors.push(format!(
            "{blocks_scheduled} blocks scheduled, {} while their miner was down, {} never \
             published, {found} published",
            recorder.blocks_not_found, recorder.never_published
        ));
    }
    let mut reorg_depths = std::collections::BTreeMap::new();
    for (_, depth, _) in &recorder.reorgs {
        *reorg_depths.entry(*depth).or_default() += 1;
    }
    Report {
        settings: RunSettings {
            nodes: config.nodes,
            seed: config.seed,
            duration_seconds: config.duration.as_secs(),
            outbound_per_node: config.outbound,
            latency: config.latency,
            block_interval_ms: config.block_interval.as_millis() as u64,
            uplink_mbit: config.uplink_mbit,
            segment_loss_ppm: config.segment_loss_ppm,
            tick_ms: config.tick.as_millis() as u64,
            payments_per_second: config.payments_per_second,
            relay: config.relay,
            high_bandwidth_peers: config.high_bandwidth_peers,
            validation_delay_us: config.validation_delay.map(|delay| {
                (
                    delay.per_block.as_micros() as u64,
                    delay.per_payment.as_micros() as u64,
                    delay.per_transaction.as_micros() as u64,
                )
            }),
        },
        blocks_found: found,
        main_chain_height: main.map_or(0, |(_, height)| height),
        stale_blocks: stale,
        stale_floor_ppm: 0,
        stale_rate_ppm: if found == 0 {
            0
        } else {
            (stale as u64 * 1_000_000) / found as u64
        },
        propagation: Propagation {
            blocks: measured,
            to_50_percent_ms: Spread::of(to_50),
            to_90_percent_ms: Spread::of(to_90),
            to_100_percent_ms: Spread::of(to_100),
            blocks_not_everywhere: not_everywhere,
            blocks_that_won_a_race: races_won,
            to_90_percent_uncontested_ms: Spread::of(to_90_uncontested),
        },
        bytes_sent_per_node_per_block: if found == 0 {
            0
        } else {
            bytes_sent / (config.nodes as u64 * found as u64)
        },
        block_relay_bytes_per_node_per_block: 0,
        messages_sent: std::collections::BTreeMap::new(),
        reorg_depths,
        converged: tips.len() == 1,
        distinct_final_tips: tips.len(),
        nodes_short_of_most_work: final_tips.short_of_most_work,
        missed_events: recorder.missed_events,
        errors,
        partition: None,
        crash: None,
        hostile: None,
        largest_miner: MinerShare::default(),
        payments: PaymentsReport::default(),
        arrival_curves,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_tips_tell_a_tie_from_a_node_behind() {
        use powchain_consensus::{BlockHash, Work};
        let work = |n: u8| {
            Work::from_be_bytes([[0; 31].as_slice(), &[n]].concat().try_into().expect("32"))
        };
        let (a, b, c) = (BlockHash([1; 32]), BlockHash([2; 32]), BlockHash([3; 32]));
        let converged = FinalTips::of([(a, 5, work(50)), (a, 5, work(50))]);
        assert_eq!(converged.nodes_on.len(), 1);
        assert_eq!(converged.short_of_most_work, 0);
        // Two blocks at the same height of the same work: a tie, nobody behind.
        let tie = FinalTips::of([(a, 5, work(50)), (b, 5, work(50)), (a, 5, work(50))]);
        assert_eq!(tie.nodes_on.len(), 2);
        assert_eq!(tie.nodes_on[&(a, 5)], 2);
        assert_eq!(tie.short_of_most_work, 0);
        // One node a block behind.
        let behind = FinalTips::of([(a, 5, work(50)), (c, 4, work(40)), (a, 5, work(50))]);
        assert_eq!(behind.nodes_on.len(), 2);
        assert_eq!(behind.short_of_most_work, 1);
    }

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
    fn a_healed_partition_puts_every_node_on_the_most_work_chain_within_10_seconds() {
        let length = Duration::from_secs(90);
        let (_, report) = run_scenario(12, 11, 240, Scenario::Partition { length }, |_| {});
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
        });
        assert!(report.converged, "{report}");
        let selfish = report.largest_miner.clone();
        assert!(selfish.selfish);
        assert!(selfish.blocks_found >= 10, "{report}");
        // Its releases orphan honest blocks (and lost races orphan its own).
        assert!(report.stale_blocks > 0, "{report}");
        // Its node relays only its tip, so it never wins a tie (Eyal and Sirer's gamma
        // is 0): below a third of the hash power, selfish mining earns less than its share.
        assert!(
            selfish.hash_share_ppm < 333_333
                && selfish.main_chain_share_ppm < selfish.hash_share_ppm,
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
        // A compact block is a few segments: at 10%, many wait out a retransmission.
        assert!(
            lossy.propagation.to_100_percent_ms.p95 > clean.propagation.to_100_percent_ms.p95,
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
    }
}
