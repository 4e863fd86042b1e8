//! Explains, at start, a burst of fast blocks a devnet is about to mine: ASERT's schedule
//! is absolute, so a chain left idle is behind it and mines quickly until it catches up,
//! and a new chain starts at the genesis difficulty, easy for most machines
//! (docs/CONSENSUS.md, "an idle devnet catches up").

use powchain_consensus::params::Retarget;
use powchain_consensus::validation::{HeaderSummary, schedule_lag_ms};
use powchain_consensus::{BlockHeight, Header, Params};
use powchain_node::Node;

/// The line to log at start, if the first blocks will come faster than the schedule's.
pub(crate) fn explain(
    params: &Params,
    tip: HeaderSummary,
    anchor: Option<HeaderSummary>,
    now_ms: u64,
) -> Option<String> {
    let Retarget::Asert(schedule) = params.retarget else {
        return None;
    };
    let seconds = |ms: i64| ms / 1_000;
    let Some(anchor) = anchor else {
        return Some(format!(
            "a new chain starts at the genesis difficulty, which most machines beat in well \
             under {} s: the first blocks come fast until ASERT has raised the difficulty to \
             the network's hash rate (it doubles for every {} s the chain runs ahead of its \
             schedule)",
            seconds(schedule.ideal_block_time),
            seconds(schedule.half_life)
        ));
    };
    let lag = schedule_lag_ms(params, tip, anchor, now_ms)?;
    if lag <= schedule.half_life {
        return None;
    }
    Some(format!(
        "the chain is {} behind its {} s block schedule (no block for a while): ASERT makes \
         blocks easier until the chain catches up, so expect about {} fast blocks",
        duration(seconds(lag)),
        seconds(schedule.ideal_block_time),
        lag / schedule.ideal_block_time.max(1)
    ))
}

/// `90 s`, `12 min`, `5 h`, `3 days`.
fn duration(seconds: i64) -> String {
    match seconds {
        ..120 => format!("{seconds} s"),
        120..7_200 => format!("{} min", seconds / 60),
        7_200..172_800 => format!("{} h", seconds / 3_600),
        _ => format!("{} days", seconds / 86_400),
    }
}

/// [`explain`] for a mining node's stored chain and the clock now; `None` for a node that
/// does not mine (it follows its peers' blocks) and on a read error (only a log line is
/// lost).
pub(crate) fn explain_for(node: &Node, mining: bool, now_ms: u64) -> Option<String> {
    if !mining {
        return None;
    }
    let snapshot = node.reader().snapshot().ok()?;
    let tip = snapshot.tip().ok()?.record;
    let summary = |height: BlockHeight, header: &Header| HeaderSummary {
        height,
        time_ms: header.time_ms,
        bits: header.bits,
    };
    let anchor = match snapshot.hash_at(Params::ASERT_ANCHOR_HEIGHT).ok()? {
        Some(hash) => {
            let record = snapshot.index_record(&hash).ok()??;
            Some(summary(record.height, &record.header))
        }
        None => None,
    };
    explain(
        node.params(),
        summary(tip.height, &tip.header),
        anchor,
        now_ms,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use powchain_consensus::Network;

    fn at(height: u64, time_ms: u64) -> HeaderSummary {
        HeaderSummary {
            height: BlockHeight(height),
            time_ms,
            bits: Network::Devnet.params().genesis_bits,
        }
    }

    #[test]
    fn an_idle_devnet_is_told_how_many_fast_blocks_to_expect() {
        let params = Network::Devnet.params();
        let anchor = at(1, 1_000_000);
        let tip = at(101, 1_300_000);
        let line = explain(params, tip, Some(anchor), 1_300_000 + 3_600_000).expect("explained");
        assert!(
            line.contains("60 min behind its 3 s block schedule"),
            "{line}"
        );
        assert!(line.contains("about 1200 fast blocks"), "{line}");
    }

    #[test]
    fn a_chain_on_schedule_or_on_regtest_needs_no_explanation() {
        let params = Network::Devnet.params();
        let anchor = at(1, 1_000_000);
        let tip = at(101, 1_300_000);
        assert_eq!(explain(params, tip, Some(anchor), 1_330_000), None);
        let regtest = Network::Regtest.params();
        assert_eq!(explain(regtest, at(0, 0), None, 1), None);
    }

    #[test]
    fn a_new_devnet_chain_is_told_its_first_blocks_come_fast() {
        let params = Network::Devnet.params();
        let line = explain(params, at(0, 0), None, 1).expect("explained");
        assert!(line.contains("the first blocks come fast"), "{line}");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(90), "90 s");
        assert_eq!(duration(720), "12 min");
        assert_eq!(duration(5 * 3_600), "5 h");
        assert_eq!(duration(3 * 86_400), "3 days");
    }
}
