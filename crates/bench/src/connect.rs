//! Figure 3: connecting full blocks through `ChainState::accept_block` (the node's path:
//! structure checks, storing the block, UTXO reads and writes, undo data, indexes, one
//! synced commit) against raw BIP-340 verifies on all threads (every payment carries one
//! signature); and the cost of the same kind of block at height ~1,000 against ~100,000.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use powchain_chain::{
    ChainOptions, ChainState, DEFAULT_COIN_CACHE_BLOCKS, DEFAULT_COIN_CACHE_BYTES, StoreDurability,
};
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
    figures.extend(height_cost(context, progress)?);
    figures.push(crate::failing::fail_header_branch(context, progress)?);
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
    chain.flush()?;
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
            // Its rows written at once, as if the coin cache flushed after every block:
            // the cost without the cache's batching (height_cost measures it amortised).
            let (flushed, flush_seconds) = timed(|| chain.flush());
            flushed?;
            best[size_index] = best[size_index].max(count as f64 / (seconds + flush_seconds));
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
                Some(Goal::RatioAtLeast(0.7)),
                format!(
                    "ChainState::accept_block of a block of {size} single-input payments on a \
                     synced store, then a flush of its rows from the coin cache, {} signature \
                     threads, best of {rounds}",
                    context.threads
                ),
            )
        })
        .collect())
}

/// What connecting a run of blocks cost.
struct BlockRun {
    /// Seconds per block, the coin cache's flushes included (the time of every connect
    /// and of the final flush, over the blocks).
    per_block: f64,
    /// The median of the connects alone.
    median_connect: f64,
    /// Seconds spent in the final flush.
    final_flush: f64,
}

/// Connects `count` blocks of payments, each timed, then flushes the coin cache (timed):
/// the cost of a block includes its share of the writes the cache batches. The chain is
/// reopened synced first, its coin cache holding at most `cache_blocks` blocks.
fn timed_blocks(
    path: &Path,
    context: &Context,
    builder: &mut ChainBuilder,
    coins: &mut Vec<OwnedCoin>,
    cache_blocks: usize,
) -> Result<BlockRun, BenchError> {
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
    let mut chain = ChainState::open(
        path,
        Network::Regtest,
        ChainOptions {
            coin_cache_blocks: cache_blocks,
            ..node_chain_options(context.threads, StoreDurability::Synced)
        },
    )?;
    let connects = batches
        .into_iter()
        .map(|payments| connect_seconds(&mut chain, block_of_payments(builder, payments)))
        .collect::<Result<Vec<f64>, BenchError>>()?;
    let (flushed, final_flush) = timed(|| chain.flush());
    flushed?;
    Ok(BlockRun {
        per_block: (connects.iter().sum::<f64>() + final_flush) / connects.len().max(1) as f64,
        median_connect: median(&connects),
        final_flush,
    })
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

/// A store funded with `coins` coins of the builder's and extended with empty blocks to
/// `height` (unsynced set-up); the seconds the extension took.
fn funded_store_at(
    path: &Path,
    context: &Context,
    builder: &mut ChainBuilder,
    coins: usize,
    height: u64,
) -> Result<(Vec<OwnedCoin>, f64), BenchError> {
    let (funding, coins) = fund(builder, coins);
    {
        let mut chain = open_chain(
            path,
            context.threads,
            StoreDurability::UnsyncedForBenchmarks,
        )?;
        feed(&mut chain, funding)?;
    }
    let (result, seconds) = timed(|| extend_unsynced(path, context, builder, height));
    result?;
    Ok((coins, seconds))
}

/// The same blocks connected on two stores built alike but for their height: with one
/// store grown from the low height to the high one, the high blocks would also meet the
/// coins and index rows the low blocks left, and the figure would mix the chain's length
/// with the size of the tables.
///
/// A third store, built as the low one, connects the same blocks with the coin cache
/// flushed after every block: what the cache's batching saves.
fn height_cost(
    context: &Context,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Figure>, BenchError> {
    let sizes = context.sizes;
    let [low, high] = sizes.heights;
    let per_height = sizes.blocks_per_height * sizes.height_block_transactions;

    progress(&format!("  building a funded chain to height {low}"));
    let low_dir = tempfile::tempdir()?;
    let low_path = low_dir.path().join("chain.redb");
    let mut low_builder = ChainBuilder::new();
    let (mut low_coins, _) =
        funded_store_at(&low_path, context, &mut low_builder, per_height, low)?;
    progress(&format!("  connecting blocks at height ~{low}"));
    let at_low = timed_blocks(
        &low_path,
        context,
        &mut low_builder,
        &mut low_coins,
        DEFAULT_COIN_CACHE_BLOCKS,
    )?;
    drop(low_dir);

    progress(&format!(
        "  the same at height ~{low}, the coin cache flushed every block"
    ));
    let every_dir = tempfile::tempdir()?;
    let every_path = every_dir.path().join("chain.redb");
    let mut every_builder = ChainBuilder::new();
    let (mut every_coins, _) =
        funded_store_at(&every_path, context, &mut every_builder, per_height, low)?;
    let every_block = timed_blocks(
        &every_path,
        context,
        &mut every_builder,
        &mut every_coins,
        0,
    )?;
    drop(every_dir);

    progress(&format!(
        "  building the same funded chain to height {high} (unsynced set-up)"
    ));
    let dir = tempfile::tempdir()?;
    let path: PathBuf = dir.path().join("chain.redb");
    let mut builder = ChainBuilder::new();
    let (mut coins, build_seconds) =
        funded_store_at(&path, context, &mut builder, per_height, high)?;
    let ((), open_seconds) = {
        let (result, seconds) =
            timed(|| open_chain(&path, context.threads, StoreDurability::Synced).map(drop));
        (result?, seconds)
    };
    progress(&format!("  connecting blocks at height ~{high}"));
    let at_high = timed_blocks(
        &path,
        context,
        &mut builder,
        &mut coins,
        DEFAULT_COIN_CACHE_BLOCKS,
    )?;
    let low_ms = at_low.per_block * 1000.0;
    let high_ms = at_high.per_block * 1000.0;
    let final_height = builder.height();
    *context
        .long_chain
        .lock()
        .map_err(|_| failed("a benchmark thread panicked"))? = Some(LongChain {
        dir,
        height: final_height,
    });
    let batching = Figure::new(
        "connect.coin_cache.batched_vs_every_block",
        low_ms,
        "ms/block",
        every_block.per_block * 1000.0,
        format!("the same blocks at height ~{low} with the coin cache flushed after every block"),
        None,
        format!(
            "mean accept_block time of {} blocks of {} payments, flushes included, with the \
             node's coin cache (at most {} blocks or {} MiB) against one that writes each \
             block's rows with it",
            sizes.blocks_per_height,
            sizes.height_block_transactions,
            DEFAULT_COIN_CACHE_BLOCKS,
            DEFAULT_COIN_CACHE_BYTES >> 20,
        ),
    );
    let height_cost = Figure::new(
        format!("connect.height_cost.{high}_vs_{low}"),
        high_ms,
        "ms/block",
        low_ms,
        format!("the same kind of block at height ~{low}"),
        Some(Goal::RatioAtMost(1.2)),
        format!(
            "mean accept_block time of {} blocks of {} payments at height ~{high} against \
             ~{low} (two stores built alike but for their height), the coin cache's flushes \
             included (synced store, {} signature threads; \
             median connect {:.1} / {:.1} ms, final flush {:.0} / {:.0} ms); building {} \
             blocks unsynced took {build_seconds:.1} s ({:.0} blocks/s), reopening that store \
             {open_seconds:.2} s",
            sizes.blocks_per_height,
            sizes.height_block_transactions,
            context.threads,
            at_high.median_connect * 1000.0,
            at_low.median_connect * 1000.0,
            at_high.final_flush * 1000.0,
            at_low.final_flush * 1000.0,
            high,
            high as f64 / build_seconds,
        ),
    );
    Ok(vec![height_cost, batching])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A driver for profilers, not a test: connects `POWCHAIN_PROFILE_BLOCKS` (default 12)
    /// blocks of `POWCHAIN_PROFILE_PAYMENTS` (default 5,000) payments as `full_blocks` does
    /// (each flushed after it; with `POWCHAIN_PROFILE_BATCHED=1` the coin cache flushes on
    /// its own budget instead, as a node's does), printing the raw verify rate and the time
    /// of each connect and flush. It writes `connecting` to stderr once its set-up is done,
    /// so a profiler can attach then (issue 16; docs/profiles/):
    /// `cargo test --release -p powchain-bench profile_full_blocks -- --ignored --nocapture`.
    #[test]
    #[ignore = "a profiling driver (issue 16), minutes long"]
    fn profile_full_blocks() {
        let number = |name: &str, default: usize| {
            std::env::var(name)
                .ok()
                .and_then(|value| value.parse().ok())
                .unwrap_or(default)
        };
        let blocks = number("POWCHAIN_PROFILE_BLOCKS", 12);
        let payments = number("POWCHAIN_PROFILE_PAYMENTS", 5_000);
        let batched = number("POWCHAIN_PROFILE_BATCHED", 0) == 1;
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut builder = ChainBuilder::new();
        let (funding, mut coins) = fund(&mut builder, blocks * payments);
        let key = *builder.key();
        let mut chain = open_chain(
            &dir.path().join("chain.redb"),
            threads,
            StoreDurability::Synced,
        )
        .expect("a store");
        feed(&mut chain, funding).expect("funding connects");
        chain.flush().expect("flushed");
        let signed: Vec<_> = (0..blocks)
            .map(|_| sign_payments(&key, &take(&mut coins, payments), threads))
            .collect();
        let blocks: Vec<Block> = signed
            .into_iter()
            .map(|transactions| block_of_payments(&mut builder, transactions))
            .collect();
        let (sample, view) = payment_block(64, threads);
        let raw = raw_checks(&sample, &view);
        eprintln!(
            "raw verifies on {threads} threads: {:.0}/s",
            raw_verify_rate(&raw, threads, 1.0)
        );
        eprintln!("connecting");
        std::thread::sleep(std::time::Duration::from_secs(2));
        let (mut connects, mut flushes) = (0.0, 0.0);
        for block in blocks {
            let connect = connect_seconds(&mut chain, block).expect("connects");
            let (flushed, flush) = if batched {
                (Ok(()), 0.0)
            } else {
                timed(|| chain.flush())
            };
            flushed.expect("flushed");
            eprintln!(
                "connect {:.1} ms, flush {:.1} ms: {:.0} tx/s ({} blocks in the coin cache)",
                connect * 1e3,
                flush * 1e3,
                payments as f64 / (connect + flush),
                chain.unflushed_blocks()
            );
            connects += connect;
            flushes += flush;
        }
        eprintln!("total connect {connects:.3} s, flush {flushes:.3} s");
    }
}
