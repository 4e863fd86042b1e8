//! What a simulation is asked to do ([`SimConfig`]), its defaults (the network:
//! 8 outbound peers, WAN latencies, 3 s blocks, validation times as measured), and why a
//! run can refuse to start ([`SimError`]).

use std::time::Duration;

use powchain_p2p::{P2pConfig, ValidationDelay};

use crate::hostile;
use crate::hosts::{self, HostLayout};
use crate::scenario::Scenario;
use crate::topology::LatencyModel;

/// Simulated time before the first block: the nodes dial each other and shake hands.
pub(crate) const WARM_UP: Duration = Duration::from_secs(10);
/// Simulated time after the last block, for it to reach every node.
pub(crate) const SETTLE: Duration = Duration::from_secs(30);

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
    /// How long a new block announced by a peer that does not push waits before it is
    /// asked of that peer, while a pushing peer has not shown it yet
    /// (`P2pConfig::push_wait`; zero: asked at once).
    pub push_wait: Duration,
    /// The selfish miner (`Scenario::Selfish`) sends the blocks it publishes to tie the
    /// public chain to its peers itself, so nodes that see them first take them (Eyal and
    /// Sirer's γ > 0); false: its node keeps them, as it keeps any block of equal work
    /// (γ = 0).
    pub selfish_relays_ties: bool,
    /// How long a node gathers new transactions before announcing them to a peer in one
    /// `inv` (`P2pConfig::transaction_announcement_interval`; blocks never wait).
    pub transaction_interval: Duration,
    /// How long a payment must have been in a miner's pool before its blocks take it
    /// (`NodeConfig::template_min_pool_age_ms`; zero: every pooled payment).
    pub template_min_pool_age: Duration,
    /// The largest miner's share of the hash power, the others scaled to the rest (`None`:
    /// as drawn, 28%).
    pub largest_miner_share: Option<f64>,
    /// Peers the largest miner dials (`None`: `outbound`, as every node); more reach more
    /// of the network first (a selfish miner's γ).
    pub largest_miner_outbound: Option<usize>,
    /// The nodes share one cache of the signature checks any of them passed, so each
    /// payment's signature is checked once in the process, not once a node (as the issue
    /// allows; `NodeConfig::shared_signature_checks`). It saves wall time only: simulated
    /// validation time comes from `validation_delay`, and a test shows the report is the
    /// same either way.
    pub share_signature_checks: bool,
    /// How nodes are placed on turmoil's hosts (hosts.rs): a host a node, or a host a
    /// region for large networks, whose wall time turmoil's links dominate.
    pub hosts: HostLayout,
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
            high_bandwidth_peers: P2pConfig::default().high_bandwidth_peers,
            push_wait: P2pConfig::default().push_wait,
            transaction_interval: P2pConfig::default().transaction_announcement_interval,
            template_min_pool_age: Duration::ZERO,
            selfish_relays_ties: true,
            largest_miner_share: None,
            largest_miner_outbound: None,
            share_signature_checks: true,
            hosts: HostLayout::Node,
        }
    }

    /// When mining ends: after the warm-up and the run's duration.
    pub(crate) fn mining_end(&self) -> Duration {
        WARM_UP + self.duration
    }

    /// When a fault (a partition, a crash, hostile hosts) starts: a quarter into mining.
    pub(crate) fn fault_start(&self) -> Duration {
        WARM_UP + self.duration / 4
    }

    /// The end of the run: mining, then the settle.
    pub(crate) fn end(&self) -> Duration {
        self.mining_end() + SETTLE
    }

    /// Refuses settings that describe no network, or a fault that would not fit the run.
    pub(crate) fn check(&self) -> Result<(), SimError> {
        if self.nodes < 2 {
            return Err(SimError::Settings(
                "a network needs at least 2 nodes".into(),
            ));
        }
        if self.block_interval.is_zero() || self.tick.is_zero() {
            return Err(SimError::Settings(
                "the block interval and the step must be above zero".into(),
            ));
        }
        if self.segment_loss_ppm >= 1_000_000 {
            return Err(SimError::Settings(
                "a segment loss must be below 100%".into(),
            ));
        }
        if self.uplink_mbit.0 == 0 || self.uplink_mbit.0 > self.uplink_mbit.1 {
            return Err(SimError::Settings(
                "uplinks need 0 < min <= max Mbit/s".into(),
            ));
        }
        if let Scenario::Withholding { delay } = self.scenario
            && (delay.is_zero() || delay >= SETTLE)
        {
            return Err(SimError::Settings(format!(
                "a withholding delay must be above zero and below the {} s the run settles",
                SETTLE.as_secs()
            )));
        }
        // A crash and a partition start a quarter into mining and must end before it does.
        let timed_fault = match self.scenario {
            Scenario::Crash { down } => Some(("a crash", down)),
            Scenario::Partition { length } => Some(("a partition", length)),
            _ => None,
        };
        if let Some((fault, length)) = timed_fault
            && (length.is_zero() || self.fault_start() + length >= self.mining_end())
        {
            return Err(SimError::Settings(format!(
                "{fault} of {} s must end before mining does: it starts after a quarter of the {} s",
                length.as_secs(),
                self.duration.as_secs()
            )));
        }
        if let Scenario::Hostile { hosts } = self.scenario
            && (hosts == 0 || hosts > hostile::MAX_HOSTILE_HOSTS)
        {
            return Err(SimError::Settings(format!(
                "hostile hosts must number from 1 to {}",
                hostile::MAX_HOSTILE_HOSTS
            )));
        }
        if self
            .largest_miner_share
            .is_some_and(|share| !(share > 0.0 && share < 1.0))
        {
            return Err(SimError::Settings(
                "the largest miner's share must be above 0 and below 1".into(),
            ));
        }
        if self.hosts == HostLayout::Region {
            if matches!(self.scenario, Scenario::Crash { .. }) {
                return Err(SimError::Settings(
                    "a crash reaches single nodes: it needs a host a node, not a host a region"
                        .into(),
                ));
            }
            if self.nodes > hosts::MAX_NODES_BY_REGION {
                return Err(SimError::Settings(format!(
                    "a host a region places at most {} nodes (a port each)",
                    hosts::MAX_NODES_BY_REGION
                )));
            }
        }
        if !(self.payments_per_second >= 0.0 && self.payments_per_second <= 10_000.0) {
            return Err(SimError::Settings(
                "payments a second must be from 0 to 10,000".into(),
            ));
        }
        Ok(())
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
