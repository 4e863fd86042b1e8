//! Figure 3: connecting full blocks through `ChainState::accept_block` (the node's path:
//! structure checks, storing the block, UTXO reads and writes, undo data, indexes, one
//! synced commit) against raw BIP-340 verifies on all threads (every payment carries one
//! signature); and the cost of the same kind of block at height ~1,000 against ~100,000.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use powchain_chain::{ChainOptions, ChainState, StoreDurability};
use powchain_consensus::signature::ParallelVerifier;
use powchain_consensus::signature_cache::{
    CacheMode, CachingVerifier, DEFAULT_SIGNATURE_CACHE_ENTRIES, SignatureCache,
};
use powchain_consensus::{Block, Network};

use crate::chain_builder::{
    ChainBuilder, OwnedCoin, block_of_payments, empty_blocks_to, fund, sign_payments,
};
use crate::error::{BenchError, failed};
use crate::measure::{median, timed};
use crate::report::{Figure, Goal};
use crate::signatures::{payment_block, raw_checks, raw_verify_rate};
use crate::{Context, LongChain};

/// The wall clock in milliseconds (the benchmark's blocks are all in the past).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// The options a node opens its chain with: a verifier on `threads` threads behind a
/// signature cache (empty here: these blocks' transactions never went through a pool).
pub(crate) fn node_chain_options(threads: usize, durability: StoreDurability) -> ChainOptions {
    let cache = Arc::new(SignatureCache::new(DEFAULT_SIGNATURE_CACHE_ENTRIES));
    ChainOptions {
        signature_threads: threads,
        verifier: Some(Arc::new(CachingVerifier::new(
            cache,
            ParallelVerifier { threads },
            CacheMode::Consume,
        ))),
        durability,
        ..ChainOptions::default()
    }
}

/// Opens (or creates) a regtest chain store at `path`.
pub(crate) fn open_chain(
    path: &Path,
    threads: usize,
    durability: StoreDurability,
) -> Result<ChainState, BenchError> {
    Ok(ChainState::open(
        path,
        Network::Regtest,
        node_chain_options(threads, durability),
    )?)
}

/// Feeds `blocks` to `chain`, each of which must join the main chain.
pub(crate) fn feed(
    chain: &mut ChainState,
    blocks: impl IntoIterator<Item = Block>,
) -> Result<(), BenchError> {
    for block in blocks {
        let outcome = chain.accept_block(block, now_ms())?;
        if outcome != powchain_chain::BlockOutcome::MainChain {
            return Err(failed(format!(
                "a benchmark block was not connected: {outcome:?}"
            )));
        }
    }
    Ok(())
}

/// Feeds `blocks` to `chain` as a node feeds blocks from peers
/// (`accept_block_deferring_sync`), then syncs.
pub(crate) fn feed_as_from_peers(
    chain: &mut ChainState,
    blocks: impl IntoIterator<Item = Block>,
) -> Result<(), BenchError> {
    for block in blocks {
        let outcome = chain.accept_block_deferring_sync(block, now_ms())?;
        if outcome != powchain_chain::BlockOutcome::MainChain {
            return Err(failed(format!(
                "a benchmark block was not connected: {outcome:?}"
            )));
        }
    }
    chain.sync()?;
    Ok(())
}

/// Seconds `accept_block` takes to connect `block`.
fn connect_seconds(chain: &mut ChainState, block: Block) -> Result<f64, BenchError> {
    let (outcome, seconds) = timed(|| chain.accept_block(block, now_ms()));
    if outcome? != powchain_chain::BlockOutcome::MainChain {
        return Err(failed("a benchmark block was not connected"));
    }
    Ok(seconds)
}

/// Takes `count` coins from the front of `coins`.
fn take(coins: &mut Vec<OwnedCoin>, count: usize) -> Vec<OwnedCoin> {
    let rest = coins.split_off(count.min(coins.len()));
    std::mem::replace(coins, rest)
}

pub(crate) fn run(
    context: &Context,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Figure>, BenchError> {
    let mut figures = full_blocks(context, progress)?;
    figures.push(height_cost(context, progress)?);
    Ok(figures)
}

fn full_blocks(
    context: &Context,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Figure>, BenchError> {
    let sizes = context.sizes;
    let rounds = sizes.rounds.max(1);
    let dir = tempfile::tempdir()?;
    let mut builder = ChainBuilder::new();
    let needed: usize = sizes.full_block_transactions.iter().sum::<usize>() * rounds;
    progress(&format!("  funding and signing {needed} payments"));
    let (funding, mut coins) = fund(&mut builder, needed);
    let key = *builder.key();
    let mut chain = open_chain(
        &dir.path().join("chain.redb"),
        context.threads,
        StoreDurability::Synced,
    )?;
    feed(&mut chain, funding)?;
    let payments_by_size: Vec<Vec<Vec<_>>> = sizes
        .full_block_transactions
        .iter()
        .map(|size| {
            (0..rounds)
                .map(|_| sign_payments(&key, &take(&mut coins, *size), context.threads))
                .collect()
        })
        .collect();

    // The bound: raw verifies on all threads, interleaved with the blocks.
    let (sample, view) = payment_block(64, context.threads);
    let raw = raw_checks(&sample, &view);
    let mut bound = f64::MIN;
    let mut best = vec![f64::MIN; sizes.full_block_transactions.len()];
    for round in 0..rounds {
        bound = bound.max(raw_verify_rate(&raw, context.threads, sizes.seconds));
        for (size_index, payments) in payments_by_size.iter().enumerate() {
            let transactions = payments[round].clone();
            let count = transactions.len();
            progress(&format!("  connecting a block of {count} payments"));
            let block = block_of_payments(&mut builder, transactions);
            let seconds = connect_seconds(&mut chain, block)?;
            best[size_index] = best[size_index].max(count as f64 / seconds);
        }
    }
    Ok(sizes
        .full_block_transactions
        .iter()
        .zip(best)
        .map(|(size, rate)| {
            Figure::new(
                format!("connect.full_block.{size}_tx"),
                rate,
                "transactions/s",
                bound,
                format!(
                    "raw BIP-340 verifies on {} thread(s) (one per payment)",
                    context.threads
                ),
                None,
                format!(
                    "ChainState::accept_block of a block of {size} single-input payments on a \
                     synced store, {} signature threads, best of {rounds}",
                    context.threads
                ),
            )
        })
        .collect())
}

/// Connects `count` blocks of payments, each timed; the chain is reopened synced first.
fn timed_blocks(
    path: &Path,
    context: &Context,
    builder: &mut ChainBuilder,
    coins: &mut Vec<OwnedCoin>,
) -> Result<Vec<f64>, BenchError> {
    let sizes = context.sizes;
    let key = *builder.key();
    let batches: Vec<Vec<_>> = (0..sizes.blocks_per_height)
        .map(|_| {
            sign_payments(
                &key,
                &take(coins, sizes.height_block_transactions),
                context.threads,
            )
        })
        .collect();
    let mut chain = open_chain(path, context.threads, StoreDurability::Synced)?;
    batches
        .into_iter()
        .map(|payments| connect_seconds(&mut chain, block_of_payments(builder, payments)))
        .collect()
}

fn extend_unsynced(
    path: &Path,
    context: &Context,
    builder: &mut ChainBuilder,
    height: u64,
) -> Result<(), BenchError> {
    let mut chain = open_chain(
        path,
        context.threads,
        StoreDurability::UnsyncedForBenchmarks,
    )?;
    feed(&mut chain, empty_blocks_to(builder, height))?;
    chain.sync()?;
    Ok(())
}

fn height_cost(context: &Context, progress: &mut dyn FnMut(&str)) -> Result<Figure, BenchError> {
    let sizes = context.sizes;
    let [low, high] = sizes.heights;
    let dir = tempfile::tempdir()?;
    let path: PathBuf = dir.path().join("chain.redb");
    let mut builder = ChainBuilder::new();
    let per_height = sizes.blocks_per_height * sizes.height_block_transactions;
    let (funding, mut coins) = fund(&mut builder, 2 * per_height);
    {
        let mut chain = open_chain(
            &path,
            context.threads,
            StoreDurability::UnsyncedForBenchmarks,
        )?;
        feed(&mut chain, funding)?;
    }
    progress(&format!("  building a chain to height {low}"));
    extend_unsynced(&path, context, &mut builder, low)?;
    progress(&format!("  connecting blocks at height ~{low}"));
    let at_low = timed_blocks(&path, context, &mut builder, &mut coins)?;
    progress(&format!(
        "  building the chain on to height {high} (unsynced set-up)"
    ));
    let ((), build_seconds) = {
        let (result, seconds) = timed(|| extend_unsynced(&path, context, &mut builder, high));
        (result?, seconds)
    };
    progress(&format!("  connecting blocks at height ~{high}"));
    let ((), open_seconds) = {
        let (result, seconds) =
            timed(|| open_chain(&path, context.threads, StoreDurability::Synced).map(drop));
        (result?, seconds)
    };
    let at_high = timed_blocks(&path, context, &mut builder, &mut coins)?;
    let low_ms = median(&at_low) * 1000.0;
    let high_ms = median(&at_high) * 1000.0;
    let final_height = builder.height();
    *context
        .long_chain
        .lock()
        .map_err(|_| failed("a benchmark thread panicked"))? = Some(LongChain {
        dir,
        height: final_height,
    });
    Ok(Figure::new(
        format!("connect.height_cost.{high}_vs_{low}"),
        high_ms,
        "ms/block",
        low_ms,
        format!("the same kind of block at height ~{low}"),
        Some(Goal::RatioAtMost(1.2)),
        format!(
            "median accept_block time of {} blocks of {} payments at height ~{high} against \
             ~{low} (synced store, {} signature threads); building {} blocks unsynced took \
             {build_seconds:.1} s ({:.0} blocks/s), reopening the store {open_seconds:.2} s",
            sizes.blocks_per_height,
            sizes.height_block_transactions,
            context.threads,
            high - low,
            (high - low) as f64 / build_seconds,
        ),
    ))
}
