//! What a finished run measured: per-block propagation from the recorders' arrival times,
//! stale blocks, final tips, traffic by message type, the largest miner's share and the
//! users' payments ([`Report`]).

use powchain_consensus::BlockHash;
use std::sync::Arc;
use std::time::Duration;

use crate::PaymentsReport;
use crate::config::SimConfig;
use crate::host::{self, Recorder};
use crate::payments::Users;
use crate::report::{MessageTotals, Propagation, PushWaitTotals, Report, RunSettings, Spread};
use crate::scenario::MinerShare;
use crate::topology::race_chance;

/// Messages and bytes every node sent, by message type, over the run.
pub(crate) fn total_traffic(
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
pub(crate) fn miner_share(
    nodes: &[Arc<powchain_node::Node>],
    mined: &[host::Mined],
    miner: usize,
    shares: &[f64],
    delay: Duration,
    ties: &[(BlockHash, u64)],
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
        ties_raced: ties.len(),
        ties_won: ties
            .iter()
            .filter(|(hash, height)| {
                reference.is_some_and(|node| {
                    node.hash_at(powchain_consensus::BlockHeight(*height)) == Some(*hash)
                })
            })
            .count(),
    }
}

/// What the users did, how many of their payments the final main chain holds, and how
/// many the run lost.
pub(crate) fn payments_report(
    users: &Users,
    nodes: &[Arc<powchain_node::Node>],
    report: &Report,
) -> PaymentsReport {
    let mut payments = users.report.clone();
    let reference = nodes
        .iter()
        .find(|node| node.tip().height.0 == report.main_chain_height);
    if let Some(snapshot) = reference.and_then(|node| node.reader().snapshot().ok()) {
        let (confirmed, unconfirmed): (Vec<_>, Vec<_>) = users
            .made()
            .iter()
            .partition(|(txid, _)| matches!(snapshot.tx_location(txid), Ok(Some(_))));
        payments.confirmed = confirmed.len() as u64;
        // The rest, each held by some node (in its pool, or in its chain when the run
        // ended on tied tips) or not, and valid on some node's chain (the coin it spends
        // unspent there) or not.
        let txids: Vec<powchain_consensus::Txid> =
            unconfirmed.iter().map(|(txid, _)| *txid).collect();
        let mut held = vec![false; unconfirmed.len()];
        let mut valid = vec![false; unconfirmed.len()];
        for node in nodes {
            let Ok(snapshot) = node.reader().snapshot() else {
                continue;
            };
            let pooled = node.pool_contains(&txids);
            for (index, (txid, outpoint)) in unconfirmed.iter().enumerate() {
                held[index] |= pooled[index] || matches!(snapshot.tx_location(txid), Ok(Some(_)));
                valid[index] |= matches!(snapshot.coin(outpoint), Ok(Some(_)));
            }
        }
        payments.lost = held
            .iter()
            .zip(&valid)
            .filter(|(held, valid)| !**held && **valid)
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

/// The stale rate that blocks' arrival times imply: for each block, the chance that some
/// other miner finds one before the block reaches it ([`race_chance`], the formula of
/// `Topology::stale_floor_ppm`) with the times the block took to be connected instead of
/// the links' latencies, averaged over `blocks` (each given as its miner and when each
/// node connected it, after it was found). A node that never connected it counts as
/// never reached. In parts per million; 0 for no blocks or no interval.
///
/// Measured stale blocks are rare events (a few in a hundred blocks), so their count
/// swings from run to run; every block's arrivals add to this one.
fn implied_stale_ppm<'a>(
    blocks: impl IntoIterator<Item = (usize, &'a [(usize, Duration)])>,
    shares: &[f64],
    interval: Duration,
) -> u64 {
    let interval = interval.as_secs_f64();
    if interval <= 0.0 {
        return 0;
    }
    let mut total = 0.0;
    let mut count = 0u64;
    for (miner, arrivals) in blocks {
        let mut reached = vec![None; shares.len()];
        for (node, after) in arrivals {
            if let Some(slot) = reached.get_mut(*node) {
                *slot = Some(after.as_secs_f64());
            }
        }
        total += race_chance(shares, miner, |node| reached[node], interval);
        count += 1;
    }
    if count == 0 {
        return 0;
    }
    (total / count as f64 * 1_000_000.0).round() as u64
}

pub(crate) fn measure(
    config: &SimConfig,
    nodes: &[Arc<powchain_node::Node>],
    recorder: Recorder,
    bytes_sent: u64,
    blocks_scheduled: usize,
    shares: &[f64],
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
    // Uncontested main-chain blocks: (miner, when each node connected it after it was
    // found). A block that lost a race somewhere arrived there late for that reason.
    let mut uncontested: Vec<(usize, Vec<(usize, Duration)>)> = Vec::new();
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
        } else {
            let after = connections
                .iter()
                .map(|(node, at)| (*node, at.saturating_sub(mined.at)))
                .collect();
            uncontested.push((mined.miner, after));
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
            push_wait_ms: config.push_wait.as_millis() as u64,
            transaction_interval_ms: config.transaction_interval.as_millis() as u64,
            template_min_pool_age_ms: config.template_min_pool_age.as_millis() as u64,
            hosts: config.hosts,
            largest_miner_outbound: config.largest_miner_outbound,
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
        stale_floor_over_links_ppm: 0,
        stale_implied_ppm: implied_stale_ppm(
            uncontested
                .iter()
                .map(|(miner, after)| (*miner, after.as_slice())),
            shares,
            config.block_interval,
        ),
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
        push_waits: PushWaitTotals::default(),
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
    fn the_implied_stale_rate_weighs_each_miner_s_wait_by_its_share() {
        let three = Duration::from_secs(3);
        let ms = Duration::from_millis;
        let shares = [0.5, 0.3, 0.2];
        // Node 0's block reaches node 1 after 100 ms and node 2 after 300 ms.
        let arrivals = [(0, ms(0)), (1, ms(100)), (2, ms(300))];
        let exposure: f64 = 0.3 * 0.1 + 0.2 * 0.3;
        let chance = 1.0 - (-exposure / 3.0).exp();
        let expected = (chance * 1e6).round() as u64;
        assert_eq!(
            implied_stale_ppm([(0, &arrivals[..])], &shares, three),
            expected
        );
        // The miner's own wait does not count, whatever it is.
        let late_self = [(0, ms(900)), (1, ms(100)), (2, ms(300))];
        assert_eq!(
            implied_stale_ppm([(0, &late_self[..])], &shares, three),
            expected
        );
        // An average over blocks: one that reaches everyone at once adds nothing.
        let at_once = [(0, ms(0)), (1, ms(0)), (2, ms(0))];
        assert_eq!(
            implied_stale_ppm([(0, &arrivals[..]), (1, &at_once[..])], &shares, three),
            (chance / 2.0 * 1e6).round() as u64
        );
        // A miner never reached races every block; no blocks, no rate.
        assert_eq!(
            implied_stale_ppm([(0, &arrivals[..2])], &shares, three),
            1_000_000
        );
        assert_eq!(implied_stale_ppm([], &shares, three), 0);
        assert_eq!(
            implied_stale_ppm([(0, &arrivals[..])], &shares, Duration::ZERO),
            0
        );
        // A node with no hash power is never a rival, reached or not.
        let idle = [0.5, 0.5, 0.0];
        let chance = 1.0 - (-0.5 * 0.1 / 3.0_f64).exp();
        assert_eq!(
            implied_stale_ppm([(0, &arrivals[..2])], &idle, three),
            (chance * 1e6).round() as u64
        );
    }

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
}
