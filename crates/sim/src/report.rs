//! What a run measured, as JSON and as text.
//!
//! Every figure is in simulated time, in whole milliseconds, so the same seed prints the
//! same report byte for byte.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::Relay;
use crate::crash::CrashReport;
use crate::hostile::{BehaviourReport, HostileReport};
use crate::hosts::HostLayout;
use crate::payments::PaymentsReport;
use crate::scenario::{MinerShare, PartitionReport};
use crate::topology::LatencyModel;

/// A run's settings as the report echoes them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunSettings {
    /// How many nodes.
    pub nodes: usize,
    /// The seed every draw followed.
    pub seed: u64,
    /// Simulated seconds of mining.
    pub duration_seconds: u64,
    /// Peers each node dialled.
    pub outbound_per_node: usize,
    /// How links delayed messages.
    pub latency: LatencyModel,
    /// The mean time between blocks.
    pub block_interval_ms: u64,
    /// The range uplinks were drawn from, in Mbit/s.
    pub uplink_mbit: (u64, u64),
    /// Probability that a TCP segment is lost, in parts per million.
    pub segment_loss_ppm: u32,
    /// Simulated time per step.
    pub tick_ms: u64,
    /// Payments a second over the network.
    pub payments_per_second: f64,
    /// How blocks crossed links.
    pub relay: Relay,
    /// Peers each node asked to push new blocks.
    pub high_bandwidth_peers: usize,
    /// How long a block announced by a peer that does not push waited for a push.
    pub push_wait_ms: u64,
    /// How long nodes gathered transactions before announcing them.
    pub transaction_interval_ms: u64,
    /// How long a payment waited in a miner's pool before its blocks took it.
    pub template_min_pool_age_ms: u64,
    /// How nodes were placed on turmoil's hosts.
    pub hosts: HostLayout,
    /// Peers the largest miner dialled, if not `outbound_per_node`.
    pub largest_miner_outbound: Option<usize>,
    /// Validation times: per block, per payment in a block, per relayed transaction (µs).
    pub validation_delay_us: Option<(u64, u64, u64)>,
}

/// The p50, p95 and largest of a set of durations, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Spread {
    /// The median.
    pub p50: u64,
    /// The 95th percentile.
    pub p95: u64,
    /// The largest.
    pub max: u64,
}

impl Spread {
    /// Nearest-rank percentiles of `values` (zeros if empty).
    pub(crate) fn of(mut values: Vec<u64>) -> Spread {
        if values.is_empty() {
            return Spread::default();
        }
        values.sort_unstable();
        let rank = |percent: usize| values[(values.len() * percent).div_ceil(100).max(1) - 1];
        Spread {
            p50: rank(50),
            p95: rank(95),
            max: values[values.len() - 1],
        }
    }
}

/// How long the blocks of the final main chain took to reach a share of the nodes, from
/// the moment they were found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Propagation {
    /// Blocks measured: those found in the run that ended on the main chain.
    pub blocks: usize,
    /// Until half the nodes had connected it.
    pub to_50_percent_ms: Spread,
    /// Until 90% of the nodes had connected it.
    pub to_90_percent_ms: Spread,
    /// Over the blocks that reached every node.
    pub to_100_percent_ms: Spread,
    /// Main-chain blocks some node never connected (it should be none after the settle).
    pub blocks_not_everywhere: usize,
    /// Blocks some node connected in a reorganisation: they lost a race there at first
    /// and won with a later block, so their times above include the wait for it.
    pub blocks_that_won_a_race: usize,
    /// Until 90% of the nodes had connected it, over the blocks that won no race: the
    /// travel of a block alone.
    pub to_90_percent_uncontested_ms: Spread,
}

/// What one run measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// What was simulated.
    pub settings: RunSettings,
    /// Blocks the miners found.
    pub blocks_found: usize,
    /// Height of the most common final tip.
    pub main_chain_height: u64,
    /// Blocks found that are not on the final main chain.
    pub stale_blocks: usize,
    /// `stale_blocks / blocks_found`, in parts per million.
    pub stale_rate_ppm: u64,
    /// The stale rate the network's latencies allow at best, in parts per million: if
    /// every block reached every node over its direct link at once, with no validation
    /// or bandwidth cost (`Topology::stale_floor_ppm`). The bound the measured rate is
    /// read against.
    pub stale_floor_ppm: u64,
    /// The same bound over the links the nodes have: every block crosses every link at
    /// once, so it reaches each node along the fastest path of links, still with no
    /// validation or bandwidth cost (`Topology::stale_floor_over_links_ppm`). Between this
    /// and `stale_floor_ppm` is the topology's cost; between this and the measured rate,
    /// the relay's.
    pub stale_floor_over_links_ppm: u64,
    /// The stale rate this run's propagation implies: the same formula with the times
    /// blocks took to be connected by each node instead of the links' latencies, averaged
    /// over the main-chain blocks that won no race (`measure::implied_stale_ppm`). It
    /// follows every block's arrivals rather than the few blocks that went stale, so it
    /// swings far less from run to run than `stale_rate_ppm`.
    pub stale_implied_ppm: u64,
    /// How fast main-chain blocks spread.
    pub propagation: Propagation,
    /// Bytes every node sent, on average, per block found (everything the peer layer
    /// wrote: blocks, headers, inventories, pings).
    pub bytes_sent_per_node_per_block: u64,
    /// Of those, the bytes of messages that carry blocks or ask for them (`block`,
    /// `cmpctblock`, `getblocktxn`, `blocktxn`, `headers`, `getheaders`, `sendcmpct`;
    /// protocol bytes, without WebSocket framing): what compact relay saves on.
    pub block_relay_bytes_per_node_per_block: u64,
    /// Messages and protocol bytes all nodes sent over the run, by message type.
    pub messages_sent: BTreeMap<String, MessageTotals>,
    /// What the nodes' waits for pushes came to (`P2pConfig::push_wait`), all nodes
    /// together.
    pub push_waits: PushWaitTotals,
    /// Reorganisations seen by any node: how many of each depth.
    pub reorg_depths: BTreeMap<u64, usize>,
    /// True if every node ended on the same tip.
    pub converged: bool,
    /// How many different tips the nodes ended on.
    pub distinct_final_tips: usize,
    /// How many nodes ended on a chain with less work than the best final tip. Zero with
    /// several tips means a tie: blocks found at about the same time at the end of mining,
    /// each node keeping the one it saw first (as Bitcoin's nodes do), and no later block
    /// to settle it.
    pub nodes_short_of_most_work: usize,
    /// Events a node's recorder missed (its channel overflowed); none is expected.
    pub missed_events: u64,
    /// Anything that went wrong on a host (none is expected).
    pub errors: Vec<String>,
    /// What the partition did, in that scenario.
    pub partition: Option<PartitionReport>,
    /// What the crash did, in that scenario.
    pub crash: Option<CrashReport>,
    /// What the hostile peers did and met, in that scenario.
    pub hostile: Option<HostileReport>,
    /// What the largest miner got (the one that withholds, in that scenario): its share
    /// of the main chain against its hash power.
    pub largest_miner: MinerShare,
    /// What the users paid.
    pub payments: PaymentsReport,
    /// For each main-chain block found in the run, when each node connected it (ms since
    /// it was found, sorted): what the plot draws. Not in the JSON.
    #[serde(skip)]
    pub arrival_curves: Vec<Vec<u64>>,
}

/// Messages of one type sent over a run, and their bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MessageTotals {
    /// How many.
    pub messages: u64,
    /// Their protocol bytes.
    pub bytes: u64,
}

/// New blocks the nodes held back for a push, over a run ([`powchain_p2p::PushWaits`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PushWaitTotals {
    /// Blocks held back because a pushing peer had not shown them yet.
    pub held: u64,
    /// Of those, blocks asked of an announcer when the wait was over.
    pub asked_after_wait: u64,
    /// The longest such a block was asked past its due time, in ms, over all nodes.
    pub most_past_due_ms: u64,
}

impl PushWaitTotals {
    /// Adds one node's holds.
    pub(crate) fn add(&mut self, waits: powchain_p2p::PushWaits) {
        self.held += waits.held;
        self.asked_after_wait += waits.asked_after_wait;
        self.most_past_due_ms = self
            .most_past_due_ms
            .max(waits.most_past_due.as_millis() as u64);
    }
}

/// The messages that carry blocks or ask for them.
const BLOCK_RELAY_MESSAGES: [&str; 7] = [
    "block",
    "cmpctblock",
    "getblocktxn",
    "blocktxn",
    "headers",
    "getheaders",
    "sendcmpct",
];

impl Report {
    /// Records the run's traffic by message type, and the block relay's share per node
    /// per block found.
    pub(crate) fn set_traffic(&mut self, traffic: BTreeMap<String, MessageTotals>, nodes: usize) {
        let block_bytes: u64 = traffic
            .iter()
            .filter(|(name, _)| BLOCK_RELAY_MESSAGES.contains(&name.as_str()))
            .map(|(_, totals)| totals.bytes)
            .sum();
        let per = nodes as u64 * self.blocks_found as u64;
        self.block_relay_bytes_per_node_per_block = block_bytes.checked_div(per).unwrap_or(0);
        self.messages_sent = traffic;
    }

    /// The propagation plot as an SVG document (`plot.rs`).
    pub fn to_svg(&self) -> String {
        crate::plot::propagation_svg(self)
    }

    /// The report as pretty JSON with a final newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_else(|error| {
            format!("{{\"error\": \"the report could not be written: {error}\"}}")
        });
        text.push('\n');
        text
    }
}

impl fmt::Display for Report {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let settings = &self.settings;
        writeln!(
            formatter,
            "{} nodes{}, seed {}, {} s simulated, {:?} latency, {} ms blocks, {}-{} Mbit/s uplinks, {:?} relay{}{}, {}",
            settings.nodes,
            match settings.hosts {
                HostLayout::Node => "",
                HostLayout::Region => " (a host a region)",
            },
            settings.seed,
            settings.duration_seconds,
            settings.latency,
            settings.block_interval_ms,
            settings.uplink_mbit.0,
            settings.uplink_mbit.1,
            settings.relay,
            // Only compact relay pushes blocks.
            match (settings.relay, settings.push_wait_ms) {
                (Relay::Full, _) | (_, 0) => String::new(),
                (Relay::Compact, wait) => format!(" (pushes awaited {wait} ms)"),
            },
            if settings.segment_loss_ppm > 0 {
                format!(
                    ", {:.2}% of segments lost",
                    f64::from(settings.segment_loss_ppm) / 10_000.0
                )
            } else {
                String::new()
            },
            match settings.validation_delay_us {
                Some((block, payment, transaction)) => format!(
                    "validation {block} µs a block, {payment} µs a payment, {transaction} µs a \
                     relayed transaction"
                ),
                None => "no validation time".to_owned(),
            }
        )?;
        writeln!(
            formatter,
            "blocks found {}, main chain height {}, stale {} ({:.2}%; implied by propagation {:.2}%; latency floor {:.2}%, over the drawn links {:.2}%)",
            self.blocks_found,
            self.main_chain_height,
            self.stale_blocks,
            self.stale_rate_ppm as f64 / 10_000.0,
            self.stale_implied_ppm as f64 / 10_000.0,
            self.stale_floor_ppm as f64 / 10_000.0,
            self.stale_floor_over_links_ppm as f64 / 10_000.0
        )?;
        let propagation = &self.propagation;
        for (label, spread) in [
            ("50%", propagation.to_50_percent_ms),
            ("90%", propagation.to_90_percent_ms),
            ("100%", propagation.to_100_percent_ms),
        ] {
            writeln!(
                formatter,
                "propagation to {label:>4} of nodes: p50 {} ms, p95 {} ms, max {} ms",
                spread.p50, spread.p95, spread.max
            )?;
        }
        writeln!(
            formatter,
            "blocks that won a race {}; to 90% without them: p50 {} ms, p95 {} ms, max {} ms",
            propagation.blocks_that_won_a_race,
            propagation.to_90_percent_uncontested_ms.p50,
            propagation.to_90_percent_uncontested_ms.p95,
            propagation.to_90_percent_uncontested_ms.max
        )?;
        let payments = &self.payments;
        writeln!(
            formatter,
            "payments: {} scheduled, {} accepted, {} confirmed, {} refused, {} without a coin yet, \
             {} lost{}",
            payments.scheduled,
            payments.accepted,
            payments.confirmed,
            payments.refused,
            payments.no_coin,
            payments.lost,
            match settings.template_min_pool_age_ms {
                0 => String::new(),
                age => format!("; blocks take those pooled for {age} ms or more"),
            }
        )?;
        writeln!(
            formatter,
            "bytes sent per node per block {} (block relay {}), reorgs {:?} (depth: count)",
            self.bytes_sent_per_node_per_block,
            self.block_relay_bytes_per_node_per_block,
            self.reorg_depths
        )?;
        let waits = &self.push_waits;
        if waits.held > 0 {
            writeln!(
                formatter,
                "blocks held for a push {}: {} asked of an announcer after the wait, at most {} ms \
                 past due",
                waits.held, waits.asked_after_wait, waits.most_past_due_ms
            )?;
        }
        write!(
            formatter,
            "converged: {} ({} distinct final tips",
            self.converged, self.distinct_final_tips
        )?;
        match (self.converged, self.nodes_short_of_most_work) {
            (true, _) => write!(formatter, ")")?,
            (false, 0) => write!(
                formatter,
                ", all of equal work: the last blocks tied and no block came after them)"
            )?,
            (false, behind) => write!(formatter, "; {behind} nodes short of the most work)")?,
        }
        if let Some(partition) = &self.partition {
            write!(
                formatter,
                "\npartition: {} + {} nodes ({:.1}% + {:.1}% of the hash power) split at {} s, \
                 healed at {} s; {} + {} blocks found while split; ",
                partition.nodes.0,
                partition.nodes.1,
                partition.hash_share_ppm.0 as f64 / 10_000.0,
                partition.hash_share_ppm.1 as f64 / 10_000.0,
                partition.split_at_ms / 1000,
                partition.healed_at_ms / 1000,
                partition.blocks_found_while_split.0,
                partition.blocks_found_while_split.1
            )?;
            match partition.converged_after_ms {
                Some(after) => write!(
                    formatter,
                    "every node on the most-work chain {after} ms after healing \
                     ({}half of them after {} ms, 90% after {} ms)",
                    if partition.tips_at_heal_overtaken {
                        format!("{OVERTAKEN}; ")
                    } else {
                        String::new()
                    },
                    show_ms(partition.half_converged_after_ms),
                    show_ms(partition.ninety_percent_converged_after_ms)
                )?,
                None => write!(
                    formatter,
                    "the nodes did NOT converge on the most-work chain within the run"
                )?,
            }
        }
        if let Some(crash) = &self.crash {
            let heights = |heights: &[Option<u64>]| {
                heights
                    .iter()
                    .map(|height| height.map_or("-".to_owned(), |height| height.to_string()))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            write!(
                formatter,
                "\ncrash: nodes {:?} ({:.1}% of the hash power) down from {} s to {} s; \
                 heights at crash [{}], reopened at [{}]; pools at crash [{}], reopened with \
                 [{}]; {} blocks and {} payments not made while down; ",
                crash.nodes,
                crash.hash_share_ppm as f64 / 10_000.0,
                crash.crashed_at_ms / 1000,
                crash.restarted_at_ms / 1000,
                heights(
                    &crash
                        .heights_at_crash
                        .iter()
                        .copied()
                        .map(Some)
                        .collect::<Vec<_>>()
                ),
                heights(&crash.heights_at_reopen),
                heights(
                    &crash
                        .pools_at_crash
                        .iter()
                        .map(|pool| Some(*pool as u64))
                        .collect::<Vec<_>>()
                ),
                heights(
                    &crash
                        .pools_at_reopen
                        .iter()
                        .map(|pool| pool.map(|pool| pool as u64))
                        .collect::<Vec<_>>()
                ),
                crash.blocks_not_found,
                crash.payments_not_made
            )?;
            match crash.caught_up_after_ms {
                Some(after) => write!(
                    formatter,
                    "every node on the most-work chain {after} ms after the restart{}",
                    if crash.tips_at_restart_overtaken {
                        format!(" ({OVERTAKEN})")
                    } else {
                        String::new()
                    }
                )?,
                None => write!(
                    formatter,
                    "the restarted nodes did NOT catch up within the run"
                )?,
            }
        }
        if let Some(hostile) = &self.hostile {
            write!(
                formatter,
                "\nhostile: {} hosts from {} s, each dialling {} nodes",
                hostile.hosts,
                hostile.started_at_ms / 1000,
                hostile.targets_per_host
            )?;
            for (name, behaviour) in [("flood", &hostile.flood), ("phantom", &hostile.phantom)] {
                let BehaviourReport {
                    connections,
                    banned,
                    ended_otherwise,
                    open_at_end,
                    messages_sent,
                    transactions_requested,
                } = behaviour;
                write!(
                    formatter,
                    "\n  {name}: {connections} connections, {banned} banned, {ended_otherwise} \
                     ended otherwise, {open_at_end} open at the end; {messages_sent} messages \
                     sent, {transactions_requested} transactions asked of them"
                )?;
            }
        }
        let miner = &self.largest_miner;
        write!(
            formatter,
            "\nlargest miner: node {} ({:.1}% of the hash power), {}: \
             found {}, {} on the main chain ({:.1}% of the main chain's blocks)",
            miner.miner,
            miner.hash_share_ppm as f64 / 10_000.0,
            if miner.selfish {
                format!(
                    "mining selfishly, {} blocks never published, {} of {} ties won",
                    miner.blocks_never_published, miner.ties_won, miner.ties_raced
                )
            } else {
                format!("held each block {} ms", miner.held_ms)
            },
            miner.blocks_found,
            miner.blocks_on_main_chain,
            miner.main_chain_share_ppm as f64 / 10_000.0
        )?;
        if !self.errors.is_empty()
            || self.missed_events > 0
            || propagation.blocks_not_everywhere > 0
        {
            write!(
                formatter,
                "\nproblems: {} errors, {} missed events, {} blocks not everywhere",
                self.errors.len(),
                self.missed_events,
                propagation.blocks_not_everywhere
            )?;
        }
        Ok(())
    }
}

/// A time in ms for the printed report, or a dash.
fn show_ms(ms: Option<u64>) -> String {
    ms.map_or_else(|| "-".to_owned(), |ms| ms.to_string())
}

/// What the text says of a convergence on a tip that outweighed the fault's own.
const OVERTAKEN: &str = "blocks found since outweighed the tip that had the most work then";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        assert_eq!(Spread::of(Vec::new()), Spread::default());
        assert_eq!(
            Spread::of(vec![7]),
            Spread {
                p50: 7,
                p95: 7,
                max: 7
            }
        );
        let spread = Spread::of((1..=100).rev().collect());
        assert_eq!(
            spread,
            Spread {
                p50: 50,
                p95: 95,
                max: 100
            }
        );
    }
}
