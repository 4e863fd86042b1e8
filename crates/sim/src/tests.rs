//! The simulation's own tests: whole runs of small networks, one for each scenario, and
//! the determinism check.

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
    // Whatever the scenario, a payment a node accepted ends in the chain, in a pool, or
    // refused by the chain (its coin gone): never nowhere.
    assert_eq!(report.payments.lost, 0, "{report}");
    (config, report)
}

#[test]
fn a_small_network_converges_and_the_same_seed_reports_the_same() {
    let mut config = SimConfig::new(30, 7, Duration::from_secs(120));
    config.tick = Duration::from_millis(5);
    let first = run(&config).expect("runs");
    println!("{first}");
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    assert_eq!(first.payments.lost, 0, "{first}");
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
    // pools hold them when the block comes (the "pools in sync").
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
        selfish.hash_share_ppm < 333_333 && selfish.main_chain_share_ppm < selfish.hash_share_ppm,
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
    assert_eq!(lossy.payments.lost, 0, "{lossy}");
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
    let (config, report) = run_scenario(12, 17, 120, Scenario::Hostile { hosts: 4 }, |config| {
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
    let (config, report) = run_scenario(12, 17, 60, Scenario::Hostile { hosts: 2 }, |config| {
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
    // Hostile hosts replay too: a flooder's loop once chose between its next round and a
    // pong at random (tokio's unbiased `select!`), and the honest nodes' pong count moved
    // in two runs of three.
    for _ in 0..2 {
        let again = run(&config).expect("runs again");
        assert_eq!(report.to_json(), again.to_json());
    }
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
