//! Failing a block under a long branch of headers (issue 13): a branch of headers becomes
//! the best header, then its first block arrives and breaks a rule. Marking the branch
//! failed once rescanned the whole index and walked each header back, O(N²) under the
//! node's lock (129 s at 60,000 headers). The figure is the time `accept_block` takes to
//! refuse the block and fail its descendants, against the time the same chain took to
//! index those headers: the failure must cost a small part of one pass over them.

use powchain_chain::StoreDurability;
use powchain_consensus::pow::HeaderHasher;
use powchain_consensus::{Amount, Header};

use crate::Context;
use crate::chain_builder::ChainBuilder;
use crate::connect::{feed, now_ms, open_chain};
use crate::error::{BenchError, failed};
use crate::measure::timed;
use crate::report::{Figure, Goal};

/// Headers a `headers` message carries.
const BATCH: usize = 2_000;

/// Solves `header` at its own bits (regtest: a hash or two).
fn solve(header: &mut Header) -> Result<(), BenchError> {
    let target = header
        .bits
        .to_target()
        .map_err(|_| failed("regtest bits are a valid target"))?;
    let (nonce, _) = HeaderHasher::new(header)
        .search(target, 0, u64::MAX)
        .ok_or_else(|| failed("no nonce met regtest's target"))?;
    header.nonce = nonce;
    Ok(())
}

pub(crate) fn fail_header_branch(
    context: &Context,
    progress: &mut dyn FnMut(&str),
) -> Result<Figure, BenchError> {
    let count = context.sizes.failed_branch_headers;
    let dir = tempfile::tempdir()?;
    let mut chain = open_chain(
        &dir.path().join("chain.redb"),
        context.threads,
        StoreDurability::Synced,
    )?;
    let mut builder = ChainBuilder::new();
    let blocks: Vec<_> = (0..5)
        .map(|_| builder.next_block(Vec::new(), Amount::ZERO))
        .collect();
    feed(&mut chain, blocks)?;
    // A block whose header is valid and whose coinbase pays one unit too many.
    let mut bad = builder.next_block(Vec::new(), Amount::ZERO);
    let output = bad.transactions[0]
        .outputs
        .first_mut()
        .ok_or_else(|| failed("the coinbase pays an output"))?;
    output.value = Amount::from_units(output.value.to_units() + 1)
        .map_err(|_| failed("the subsidy plus one is an amount"))?;
    bad.header.merkle_root = bad.compute_merkle_root();
    solve(&mut bad.header)?;
    progress(&format!(
        "  solving {count} headers on top of an invalid block"
    ));
    let mut headers = Vec::with_capacity(count + 1);
    headers.push(bad.header);
    let mut previous = bad.header;
    for _ in 0..count {
        let mut header = Header {
            prev_hash: previous.compute_hash(),
            time_ms: previous.time_ms + 1,
            nonce: 0,
            ..previous
        };
        solve(&mut header)?;
        headers.push(header);
        previous = header;
    }
    progress(&format!(
        "  indexing {count} headers, then failing the block under them"
    ));
    let (indexed, index_seconds) = timed(|| {
        headers
            .chunks(BATCH)
            .try_for_each(|batch| chain.accept_headers(batch, now_ms()).map(|_| ()))
    });
    indexed?;
    if chain.best_header().0 != previous.compute_hash() {
        return Err(failed("the header branch did not become the best header"));
    }
    let (refused, fail_seconds) = timed(|| chain.accept_block(bad, now_ms()));
    if refused.is_ok() {
        return Err(failed("the invalid block was accepted"));
    }
    if chain.best_header().0 != chain.tip().hash {
        return Err(failed("the failed branch is still the best header"));
    }
    Ok(Figure::new(
        format!("connect.fail_header_branch.{count}_headers"),
        fail_seconds * 1e3,
        "ms",
        index_seconds * 1e3,
        format!("indexing the same {count} headers"),
        Some(Goal::ValueAtMost(50.0)),
        "accept_block of a block whose coinbase overpays, under a branch of headers that is \
         the best header: the time to refuse it and mark every descendant failed",
    ))
}
