//! Figures 5 to 7, with node processes talking over loopback.
//!
//! - Sync (5): a fresh node syncs a chain of blocks full of payments from one peer; blocks
//!   per second against connecting the same blocks in process through
//!   `ChainState::accept_block` with the node's options (the network and the protocol
//!   should not be the bottleneck).
//! - Memory (6): the peak resident memory of the syncing node, and of a node holding the
//!   long chain the connect group built; against the size of its chain store on disk (the
//!   chain lives on disk, not in memory).
//! - End to end (7): three nodes; payments submitted to the first over HTTP, mined by the
//!   second, until every node has the block confirming the last of them.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use powchain_chain::StoreDurability;
use powchain_consensus::{Amount, Block, Transaction};

use crate::chain_builder::{
    ChainBuilder, OwnedCoin, change_of, empty_blocks_to, payment, recipient,
};
use crate::connect::{feed, feed_as_from_peers, open_chain};
use crate::error::{BenchError, failed};
use crate::http::{raw_transaction_bodies, raw_transactions_body};
use crate::measure::timed;
use crate::pool::funded_node_dir;
use crate::process::{NodeProcess, status_height};
use crate::report::{Figure, Goal};
use crate::signatures::{payment_block, raw_checks, raw_verify_rate};
use crate::{Context, LongChain};

/// The end-to-end figure's miner mines a block this often at most.
const BLOCK_INTERVAL: Duration = Duration::from_millis(100);
/// A sync whose tip does not move for this long has stopped.
const STALL: Duration = Duration::from_secs(60);
/// The memory goal for a node, in MB.
const MEMORY_GOAL_MB: f64 = 200.0;
/// The memory goal for a node syncing the long chain (issue 16), in MB.
const SYNC_100K_MEMORY_GOAL_MB: f64 = 120.0;
const MB: f64 = 1024.0 * 1024.0;

/// The chain a fresh node syncs: `lanes + 1` funding blocks, then `blocks` blocks of one
/// payment per lane (each lane spends its previous payment's change). Lanes are signed in
/// parallel.
fn sync_chain(blocks: usize, lanes: usize) -> Vec<Block> {
    let mut builder = ChainBuilder::new();
    let mut chain = Vec::with_capacity(blocks + lanes + 1);
    let mut lane_coins: Vec<OwnedCoin> = Vec::new();
    while lane_coins.len() < lanes {
        let block = builder.next_block(Vec::new(), Amount::ZERO);
        lane_coins.extend(ChainBuilder::coinbase_coin(&block));
        chain.push(block);
    }
    chain.push(builder.next_block(Vec::new(), Amount::ZERO));
    let key = *builder.key();
    let recipient = recipient();
    let lanes_of_payments: Vec<Vec<Transaction>> = std::thread::scope(|scope| {
        let handles: Vec<_> = lane_coins
            .iter()
            .map(|first| {
                scope.spawn(move || {
                    let mut coin = *first;
                    (0..blocks)
                        .map(|_| {
                            let transaction = payment(&key, &coin, recipient);
                            coin = change_of(&transaction);
                            transaction
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("signing does not panic"))
            .collect()
    });
    let mut lanes_of_payments: Vec<std::vec::IntoIter<Transaction>> =
        lanes_of_payments.into_iter().map(Vec::into_iter).collect();
    for _ in 0..blocks {
        let transactions: Vec<Transaction> = lanes_of_payments
            .iter_mut()
            .filter_map(Iterator::next)
            .collect();
        chain.push(crate::chain_builder::block_of_payments(
            &mut builder,
            transactions,
        ));
    }
    chain
}

fn file_size(path: &Path) -> Result<f64, BenchError> {
    Ok(std::fs::metadata(path)?.len() as f64)
}

pub(crate) fn run_sync(
    context: &Context,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Figure>, BenchError> {
    let Some(executable) = &context.node_executable else {
        progress("  skipped: no node executable");
        return Ok(Vec::new());
    };
    let sizes = context.sizes;
    let lanes = sizes.sync_transactions_per_block;
    progress(&format!(
        "  signing {} blocks of {lanes} payments",
        sizes.sync_blocks
    ));
    let blocks = sync_chain(sizes.sync_blocks, lanes);
    let block_count = blocks.len();
    let payments: usize = blocks
        .iter()
        .map(|block| block.transactions.len().saturating_sub(1))
        .sum();
    *context
        .sync_payments_per_block
        .lock()
        .map_err(|_| failed("a benchmark thread panicked"))? =
        Some(payments as f64 / block_count.max(1) as f64);
    let final_height = block_count as u64;

    progress("  connecting them in process (the bound)");
    let serve_dir = tempfile::tempdir()?;
    let chain_path = serve_dir.path().join("chain.redb");
    let mut chain = open_chain(&chain_path, context.threads, StoreDurability::Synced)?;
    let (result, connect_seconds) = timed(|| feed_as_from_peers(&mut chain, blocks));
    result?;
    drop(chain);
    let connect_rate = block_count as f64 / connect_seconds;
    let store_bytes = file_size(&chain_path)?;

    progress("  syncing a fresh node from a node process over loopback");
    let server = NodeProcess::start(executable, serve_dir.path(), &[])?;
    let sync_dir = tempfile::tempdir()?;
    let started = Instant::now();
    let syncing = NodeProcess::start(executable, sync_dir.path(), &[server.p2p_url()])?;
    syncing
        .wait_for_height(final_height, STALL)
        .map_err(|error| with_log_of(error, "the serving node", &server))?;
    let sync_seconds = started.elapsed().as_secs_f64();
    let syncing_rss = syncing.peak_rss_bytes()? as f64;
    drop(syncing);
    drop(server);

    let mut figures = vec![
        Figure::new(
            "sync.blocks_per_second",
            block_count as f64 / sync_seconds,
            "blocks/s",
            connect_rate,
            "the same blocks connected in process as a node connects peers' blocks (accept_block_deferring_sync, node options)",
            Some(Goal::RatioAtLeast(0.85)),
            format!(
                "a fresh node process syncs {block_count} blocks ({} payments) from one node \
                 process over loopback, timed from its start to its tip at height \
                 {final_height}; in process they connect in {connect_seconds:.1} s",
                sizes.sync_blocks * lanes
            ),
        ),
        Figure::new(
            format!("memory.peak_rss.syncing_{block_count}_blocks"),
            syncing_rss / MB,
            "MB",
            store_bytes / MB,
            "the size of the synced chain store on disk",
            Some(Goal::ValueAtMost(MEMORY_GOAL_MB)),
            format!(
                "VmHWM of the node process that synced {block_count} blocks, read when its tip reached the last"
            ),
        ),
    ];

    // A node holding the long chain of the connect group (built here if it did not run).
    let long_chain = context
        .long_chain
        .lock()
        .map_err(|_| failed("a benchmark thread panicked"))?
        .take();
    let long_chain = match long_chain {
        Some(long_chain) => long_chain,
        None => {
            progress(&format!(
                "  building a chain of {} blocks (unsynced set-up)",
                sizes.heights[1]
            ));
            let dir = tempfile::tempdir()?;
            let mut builder = ChainBuilder::new();
            let mut chain = open_chain(
                &dir.path().join("chain.redb"),
                context.threads,
                StoreDurability::UnsyncedForBenchmarks,
            )?;
            feed(&mut chain, empty_blocks_to(&mut builder, sizes.heights[1]))?;
            chain.sync()?;
            LongChain {
                dir,
                height: builder.height(),
            }
        }
    };
    progress(&format!(
        "  starting a node holding {} blocks",
        long_chain.height
    ));
    let store_bytes = file_size(&long_chain.dir.path().join("chain.redb"))?;
    let (holding, open_seconds) =
        timed(|| NodeProcess::start(executable, long_chain.dir.path(), &[]));
    let holding = holding?;
    let status = holding.status()?;
    if status_height(&status) != long_chain.height {
        return Err(failed(format!(
            "the node opened at height {}, not {}",
            status_height(&status),
            long_chain.height
        )));
    }
    let mut client = holding.client()?;
    for height in [0, long_chain.height / 2, long_chain.height] {
        client.expect_ok("GET", &format!("/blocks/{height}"), None)?;
    }
    client.expect_ok("POST", "/mine", Some("{\"data\":\"bench\"}"))?;
    let holding_rss = holding.peak_rss_bytes()? as f64;
    let holding_height = status_height(&holding.status()?);

    // A fresh node syncing the long chain from the node holding it.
    progress(&format!(
        "  syncing those {holding_height} blocks into a fresh node"
    ));
    let fresh_dir = tempfile::tempdir()?;
    let started = Instant::now();
    let fresh = NodeProcess::start(executable, fresh_dir.path(), &[holding.p2p_url()])?;
    fresh
        .wait_for_height(holding_height, STALL)
        .map_err(|error| with_log_of(error, "the serving node", &holding))?;
    let long_sync_seconds = started.elapsed().as_secs_f64();
    let fresh_rss = fresh.peak_rss_bytes()? as f64;
    drop(fresh);
    drop(holding);
    let fresh_store_bytes = file_size(&fresh_dir.path().join("chain.redb"))?;
    figures.push(Figure::new(
        format!("memory.peak_rss.holding_{}_blocks", long_chain.height),
        holding_rss / MB,
        "MB",
        store_bytes / MB,
        "the size of its chain store on disk",
        Some(Goal::ValueAtMost(MEMORY_GOAL_MB)),
        format!(
            "VmHWM of a node process opened on a store of {} blocks (start to listening: \
             {open_seconds:.1} s), after status, three block lookups and mining one block",
            long_chain.height
        ),
    ));
    figures.push(Figure::new(
        format!("memory.peak_rss.syncing_{holding_height}_blocks"),
        fresh_rss / MB,
        "MB",
        fresh_store_bytes / MB,
        "the size of the synced chain store on disk",
        Some(Goal::ValueAtMost(SYNC_100K_MEMORY_GOAL_MB)),
        format!(
            "VmHWM of a fresh node process that synced those {holding_height} blocks (mostly \
             empty) from it over loopback, in {long_sync_seconds:.1} s ({:.0} blocks/s)",
            holding_height as f64 / long_sync_seconds
        ),
    ));
    Ok(figures)
}

pub(crate) fn run_end_to_end(
    context: &Context,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Figure>, BenchError> {
    let Some(executable) = &context.node_executable else {
        progress("  skipped: no node executable");
        return Ok(Vec::new());
    };
    let sizes = context.sizes;
    // Each payment is verified once by each of the three nodes (a block's signatures are
    // found in the signature cache), and the three share this machine's cores: the network
    // cannot confirm more than a third of the raw verifies all threads make.
    let (block, view) = payment_block(sizes.pool_transactions, context.threads);
    let checks = raw_checks(&block, &view);
    let mut all_threads = f64::MIN;
    for _ in 0..sizes.rounds.max(1) {
        all_threads = all_threads.max(raw_verify_rate(&checks, context.threads, sizes.seconds));
    }
    let bound = all_threads / 3.0;
    Ok(vec![
        end_to_end(context, executable, bound, None, progress)?,
        end_to_end(
            context,
            executable,
            bound,
            Some(sizes.http_batch.max(1)),
            progress,
        )?,
    ])
}

/// One three-node run: payments submitted to node 1 (`POST /tx` each, or `POST /txs` of
/// `batch`), mined by node 2, until every node has them in its chain.
fn end_to_end(
    context: &Context,
    executable: &Path,
    bound: f64,
    batch: Option<usize>,
    progress: &mut dyn FnMut(&str),
) -> Result<Figure, BenchError> {
    let sizes = context.sizes;
    let count = sizes.network_transactions;
    progress("  starting three nodes");
    let (first_dir, payments) = funded_node_dir(context, count)?;
    let first = NodeProcess::start(executable, first_dir.path(), &[])?;
    let second_dir = tempfile::tempdir()?;
    let second = NodeProcess::start(executable, second_dir.path(), &[first.p2p_url()])?;
    let third_dir = tempfile::tempdir()?;
    let third = NodeProcess::start(
        executable,
        third_dir.path(),
        &[first.p2p_url(), second.p2p_url()],
    )?;
    let funded_height = status_height(&first.status()?);
    for node in [&second, &third] {
        node.wait_for_status(Duration::from_secs(60), "the funding blocks", |status| {
            status_height(status) >= funded_height && status["peers"].as_u64().unwrap_or(0) >= 2
        })?;
    }

    progress(&format!(
        "  {count} payments: submitted to node 1, mined by node 2, confirmed on all"
    ));
    let (bodies, path, clients) = match batch {
        None => (
            raw_transaction_bodies(&payments),
            "/tx",
            sizes.http_clients.max(1),
        ),
        Some(batch) => (
            payments.chunks(batch).map(raw_transactions_body).collect(),
            "/txs",
            2,
        ),
    };
    let share = bodies.len().div_ceil(clients).max(1);
    let submitting = AtomicBool::new(true);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(if count > 100 { 600 } else { 120 });
    let outcome: Result<(u64, String, f64, f64, u64), BenchError> = std::thread::scope(|scope| {
        let submitters: Vec<_> = bodies
            .chunks(share)
            .map(|part| {
                let first = &first;
                scope.spawn(move || -> Result<(), BenchError> {
                    let mut client = first.client()?;
                    for body in part {
                        let answer = client.expect_ok("POST", path, Some(body))?;
                        if batch.is_some() && answer["refused"].as_u64() != Some(0) {
                            return Err(failed(format!("POST /txs refused some: {answer}")));
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        let submitting = &submitting;
        let watcher = scope.spawn(move || {
            let mut results = Vec::new();
            for handle in submitters {
                results.push(
                    handle
                        .join()
                        .unwrap_or_else(|_| Err(failed("a submitting thread panicked"))),
                );
            }
            submitting.store(false, Ordering::Relaxed);
            let submitted = started.elapsed().as_secs_f64();
            results
                .into_iter()
                .collect::<Result<Vec<()>, _>>()
                .map(|_| submitted)
        });
        // Mine on node 2 until every payment is in a block.
        let mut miner = second.client()?;
        let mut confirmed = 0u64;
        let mut last_hash = String::new();
        let mut blocks = 0u64;
        let mut last_block = Instant::now();
        while confirmed < count as u64 {
            if Instant::now() > deadline {
                return Err(failed(format!(
                    "only {confirmed} of {count} payments were confirmed in time"
                )));
            }
            let block = miner.expect_ok("POST", "/mine-transactions", None)?;
            blocks += 1;
            confirmed += block["transactionCount"]
                .as_u64()
                .unwrap_or(1)
                .saturating_sub(1);
            last_hash = block["hash"].as_str().unwrap_or_default().to_owned();
            // A block every BLOCK_INTERVAL at most, as a network mines (regtest would mine
            // them back to back, hundreds of blocks of a few payments, each connected and
            // synced by all three nodes: a figure of block overhead, not of throughput).
            let next_block = last_block + BLOCK_INTERVAL;
            if let Some(wait) = next_block.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            last_block = Instant::now();
        }
        let mined = started.elapsed().as_secs_f64();
        let submitted = watcher
            .join()
            .unwrap_or_else(|_| Err(failed("the watcher panicked")))?;
        Ok((confirmed, last_hash, submitted, mined, blocks))
    });
    let (confirmed, last_hash, submitted, mined, blocks) = outcome.map_err(|error| {
        let error = with_log_of(error, "node 1", &first);
        let error = with_log_of(error, "node 2", &second);
        with_log_of(error, "node 3", &third)
    })?;
    for node in [&first, &third] {
        node.wait_for_status(Duration::from_secs(60), "the last block", |status| {
            status["tip"].as_str() == Some(last_hash.as_str())
        })?;
    }
    let seconds = started.elapsed().as_secs_f64();
    if confirmed != count as u64 {
        return Err(failed(format!(
            "{confirmed} payments confirmed, {count} sent"
        )));
    }
    let (name, how) = match batch {
        None => (
            "network.end_to_end".to_owned(),
            "POSTed one a request".to_owned(),
        ),
        Some(batch) => (
            "network.end_to_end.batched".to_owned(),
            format!("POSTed {batch} a request (POST /txs)"),
        ),
    };
    Ok(Figure::new(
        name,
        count as f64 / seconds,
        "transactions/s",
        bound,
        "raw BIP-340 verifies/s on all threads / 3 (each of the three nodes verifies each payment once)",
        Some(Goal::RatioAtLeast(0.5)),
        format!(
            "{count} pre-signed payments {how} to node 1 from {clients} connections while \
             node 2 mines (POST /mine-transactions) until all are in blocks and nodes 1 and 3 \
             have the last block; three node processes on loopback. Submitted in {submitted:.2} \
             s, all mined in {mined:.2} s ({blocks} blocks), on every node in {seconds:.2} s"
        ),
    ))
}

/// `error` with the tail of `node`'s log appended.
fn with_log_of(error: BenchError, who: &str, node: &NodeProcess) -> BenchError {
    failed(format!("{error}\n{who}'s log ends:\n{}", node.log_tail(20)))
}
