//! `powchain simulate`: runs a simulated network (`powchain-sim`) and prints its report;
//! `--json FILE` writes it as JSON too, `--svg FILE` the propagation plot.

use anyhow::Context;
use powchain_sim::SimConfig;

use crate::args::SimulateArgs;

/// Networks from this many nodes get a hint to place nodes a host a region.
const LARGE_NETWORK: usize = 100;

/// What to say before a run of `config` that could run much faster: a large network with
/// a host a node (the crash scenario needs one).
fn hint(config: &SimConfig) -> Option<&'static str> {
    let crash = matches!(config.scenario, powchain_sim::Scenario::Crash { .. });
    (config.nodes >= LARGE_NETWORK && config.hosts == powchain_sim::HostLayout::Node && !crash)
        .then_some(
            "with a host a node the simulator's cost grows with the cube of the nodes; \
             --hosts region runs large networks several times faster (200 nodes for a \
             simulated minute: 42 s instead of 441 s) with the same figures, a partition \
             splitting along regions (docs/SIMULATION.md, \"A host a region\")",
        )
}

/// Runs the simulation `args` describe and prints what it measured.
///
/// # Errors
/// Settings that describe no network, a host that failed, or a report file that cannot be
/// written.
pub fn run(args: &SimulateArgs) -> anyhow::Result<()> {
    let mut config = SimConfig::new(args.nodes, args.seed, args.duration);
    config.latency = args.latency;
    config.outbound = args.outbound;
    config.block_interval = std::time::Duration::from_millis(args.block_interval_ms);
    config.tick = std::time::Duration::from_millis(args.tick_ms);
    config.payments_per_second = args.payments_per_second;
    config.relay = args.relay;
    config.high_bandwidth_peers = usize::from(args.high_bandwidth_peers);
    config.push_wait = std::time::Duration::from_millis(args.push_wait_ms);
    config.transaction_interval = std::time::Duration::from_millis(args.transaction_interval_ms);
    config.template_min_pool_age = std::time::Duration::from_millis(args.template_min_pool_age_ms);
    config.selfish_relays_ties = !args.selfish_keeps_ties;
    config.hosts = args.hosts;
    let costs_us = match (&args.validation_us, &args.validation_from) {
        (Some((block, payment, transaction)), _) => {
            Some([*block as f64, *payment as f64, *transaction as f64])
        }
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the bench report {}", path.display()))?;
            let costs = powchain_bench::ValidationCosts::from_report_json(&text)
                .map_err(|problem| anyhow::anyhow!("{}: {problem}", path.display()))?;
            Some([
                costs.per_block_us,
                costs.per_payment_us,
                costs.per_transaction_us,
            ])
        }
        (None, None) => None,
    };
    if let Some([block, payment, transaction]) = costs_us {
        let micros = |us: f64| std::time::Duration::from_secs_f64(us / 1e6);
        config.validation_delay = Some(powchain_sim::ValidationDelay {
            per_block: micros(block),
            per_payment: micros(payment),
            per_transaction: micros(transaction),
        });
    }
    config.uplink_mbit = args.uplink_mbit;
    config.largest_miner_share = args.largest_share;
    config.largest_miner_outbound = args.largest_outbound;
    config.segment_loss_ppm = (args.loss_percent * 10_000.0).round() as u32;
    if let Some(length) = args.partition {
        config.scenario = powchain_sim::Scenario::Partition { length };
    }
    if let Some(delay) = args.withhold {
        config.scenario = powchain_sim::Scenario::Withholding { delay };
    }
    if let Some(down) = args.crash {
        config.scenario = powchain_sim::Scenario::Crash { down };
    }
    if let Some(hosts) = args.hostile {
        config.scenario = powchain_sim::Scenario::Hostile { hosts };
    }
    if args.selfish {
        config.scenario = powchain_sim::Scenario::Selfish;
    }
    if let Some(hint) = hint(&config) {
        eprintln!("hint: {hint}");
    }
    let started = std::time::Instant::now();
    let report = powchain_sim::run(&config).context("the simulation failed")?;
    println!("{report}");
    eprintln!("(wall time {:.1} s)", started.elapsed().as_secs_f64());
    if let Some(path) = &args.json {
        std::fs::write(path, report.to_json())
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
    }
    if let Some(path) = &args.svg {
        std::fs::write(path, report.to_svg())
            .with_context(|| format!("cannot write the plot to {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use powchain_sim::{HostLayout, Scenario};

    use super::*;

    #[test]
    fn only_a_large_network_with_a_host_a_node_gets_the_hint() {
        let config = |nodes: usize, hosts: HostLayout, scenario: Scenario| {
            let mut config = SimConfig::new(nodes, 7, Duration::from_secs(60));
            config.hosts = hosts;
            config.scenario = scenario;
            config
        };
        let hinted = hint(&config(LARGE_NETWORK, HostLayout::Node, Scenario::Steady));
        assert!(hinted.is_some_and(|text| text.contains("--hosts region")));
        assert!(
            hint(&config(
                LARGE_NETWORK - 1,
                HostLayout::Node,
                Scenario::Steady
            ))
            .is_none()
        );
        assert!(hint(&config(200, HostLayout::Region, Scenario::Steady)).is_none());
        let crash = Scenario::Crash {
            down: Duration::from_secs(30),
        };
        assert!(
            hint(&config(200, HostLayout::Node, crash)).is_none(),
            "a crash needs a host a node"
        );
    }
}
