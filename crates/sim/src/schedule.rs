//! The seeded schedules a run follows: when each node finds a block (a Poisson process at
//! the block interval, each block to a node by its hash power) and when users pay through
//! each node (a Poisson process at the payment rate).

use std::time::Duration;

use crate::config::SimConfig;
use crate::config::WARM_UP;
use crate::random::SimRng;
use crate::topology::Topology;

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
pub(crate) fn payment_schedule(rng: &mut SimRng, config: &SimConfig) -> Vec<Vec<Duration>> {
    if config.payments_per_second == 0.0 {
        return vec![Vec::new(); config.nodes];
    }
    poisson_schedule(rng, config, 1.0 / config.payments_per_second, |rng| {
        rng.below(config.nodes)
    })
}

/// When each node finds blocks: the block interval, each block given to a node in
/// proportion to its hash power.
pub(crate) fn mining_schedule(
    rng: &mut SimRng,
    topology: &Topology,
    config: &SimConfig,
) -> Vec<Vec<Duration>> {
    let shares: Vec<f64> = topology.nodes.iter().map(|node| node.hash_share).collect();
    poisson_schedule(rng, config, config.block_interval.as_secs_f64(), |rng| {
        rng.weighted(&shares)
    })
}
