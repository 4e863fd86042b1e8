//! Figure 4: pool admission of pre-signed single-input payments.
//!
//! - in memory: `Mempool::accept` with the node's pool verifier (checks and remembers the
//!   signature), against raw BIP-340 verifies on one thread (admission runs under one lock);
//! - after a reorganisation: a node in process holding more pooled payments than its
//!   signature cache replaces the block on its tip; the pooled payments reconciled a
//!   second, against raw verifies on one thread (what checking each signature again
//!   would allow);
//! - in process: `Node::submit_transaction`, which also stores the transaction durably
//!   before acknowledging it, against durable commits per second of a small redb store on
//!   the same disk (each acknowledgement needs one);
//! - over HTTP: `POST /tx {"hex"}` to a node process from several kept-alive connections,
//!   against the same durable-commit bound (concurrent submissions share commits, so the
//!   figure can pass it);
//! - in batches: `POST /txs {"hex": [...]}` from two connections, against raw verifies on
//!   one thread (the admission's own ceiling, as for the in-memory figure);
//! - streamed: the same batches as messages of one `GET /txs/ws` WebSocket, a few in
//!   flight, against the same bound.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use powchain_chain::StoreDurability;
use powchain_consensus::signature::SequentialVerifier;
use powchain_consensus::signature_cache::{CacheMode, CachingVerifier, SignatureCache};
use powchain_consensus::{Amount, BlockHeight, Network, Transaction};
use powchain_mempool::{Mempool, MempoolOptions};
use powchain_node::{Node, NodeConfig, SystemClock};
use redb::{Database, TableDefinition};

use crate::Context;
use crate::chain_builder::{ChainBuilder, fund, sign_payments};
use crate::connect::{feed, open_chain};
use crate::error::{BenchError, failed};
use crate::http::{raw_transaction_bodies, raw_transactions_body};
use crate::measure::timed;
use crate::process::NodeProcess;
use crate::report::{Figure, Goal};
use crate::signatures::{payment_block, raw_checks, raw_verify_rate};

const PROBE: TableDefinition<u64, &[u8]> = TableDefinition::new("probe");

/// Durable commits per second of a small redb store in `dir` (one ~200-byte row each,
/// like a pool store insert), over about `seconds`.
pub(crate) fn durable_commit_rate(dir: &Path, seconds: f64) -> Result<f64, BenchError> {
    let path = dir.join("commit-probe.redb");
    let db = Database::create(&path)?;
    let row = [7u8; 200];
    let started = Instant::now();
    let mut commits = 0u64;
    while commits < 3 || started.elapsed().as_secs_f64() < seconds {
        let write = db.begin_write()?;
        write.open_table(PROBE)?.insert(commits, row.as_slice())?;
        write.commit()?;
        commits += 1;
    }
    let rate = commits as f64 / started.elapsed().as_secs_f64();
    drop(db);
    std::fs::remove_file(path)?;
    Ok(rate)
}

/// A node data directory whose chain gives the bench key `count` coins, and the signed
/// payments spending them.
pub(crate) fn funded_node_dir(
    context: &Context,
    count: usize,
) -> Result<(tempfile::TempDir, Vec<Transaction>), BenchError> {
    funded_chain(context, count).map(|(dir, payments, _)| (dir, payments))
}

/// [`funded_node_dir`], and the builder at the chain's tip (to build on it).
fn funded_chain(
    context: &Context,
    count: usize,
) -> Result<(tempfile::TempDir, Vec<Transaction>, ChainBuilder), BenchError> {
    let dir = tempfile::tempdir()?;
    let mut builder = ChainBuilder::new();
    let (blocks, coins) = fund(&mut builder, count);
    let mut chain = open_chain(
        &dir.path().join("chain.redb"),
        context.threads,
        StoreDurability::Synced,
    )?;
    feed(&mut chain, blocks)?;
    drop(chain);
    let payments = sign_payments(builder.key(), &coins, context.threads);
    Ok((dir, payments, builder))
}

/// A node in process on `dir` (a chain that pays the suite's key, not a wallet of its own).
fn open_node(dir: &Path) -> Result<Arc<Node>, BenchError> {
    let mut config = NodeConfig::new(Network::Regtest, dir.to_path_buf());
    config.new_wallet = true;
    Ok(Node::open(config, Arc::new(SystemClock))?)
}

pub(crate) fn run(
    context: &Context,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Figure>, BenchError> {
    let sizes = context.sizes;
    let mut figures = Vec::new();

    progress("  admitting payments in memory");
    let (block, view) = payment_block(sizes.pool_transactions, context.threads);
    let raw = raw_checks(&block, &view);
    let params = Network::Regtest.params();
    let mut bound = f64::MIN;
    let mut value = f64::MIN;
    for _ in 0..sizes.rounds.max(1) {
        bound = bound.max(raw_verify_rate(&raw, 1, sizes.seconds));
        let mut pool = Mempool::new(params, MempoolOptions::default());
        let verifier = CachingVerifier::new(
            Arc::new(SignatureCache::new(sizes.pool_transactions)),
            SequentialVerifier,
            CacheMode::Remember,
        );
        let transactions: Vec<Transaction> = block.transactions[1..].to_vec();
        let count = transactions.len();
        let (result, seconds) = timed(|| {
            transactions.into_iter().try_for_each(|transaction| {
                pool.accept(transaction, &view, BlockHeight(2), 0, &verifier)
                    .map(drop)
            })
        });
        result.map_err(|error| failed(format!("the pool refused a payment: {error}")))?;
        value = value.max(count as f64 / seconds);
    }
    let admission_bound = bound;
    figures.push(Figure::new(
        "pool.accept.in_memory",
        value,
        "transactions/s",
        bound,
        "raw BIP-340 verifies on 1 thread (one per payment)",
        None,
        format!(
            "Mempool::accept of {} single-input payments with the node's pool verifier \
             (signature cache, remembering), no disk; best of {}",
            sizes.pool_transactions, sizes.rounds
        ),
    ));

    progress("  submitting payments to a node in process");
    let submissions = sizes.pool_submissions;
    let (dir, payments) = funded_node_dir(context, submissions)?;
    let commit_bound = durable_commit_rate(dir.path(), sizes.seconds)?;
    let node = open_node(dir.path())?;
    let (result, seconds) = timed(|| {
        payments
            .iter()
            .try_for_each(|payment| node.submit_transaction(payment.clone()).map(drop))
    });
    result?;
    drop(node);
    let commit_bound = commit_bound.max(durable_commit_rate(dir.path(), sizes.seconds)?);
    figures.push(Figure::new(
        "pool.submit.in_process",
        submissions as f64 / seconds,
        "transactions/s",
        commit_bound,
        "durable commits/s of a small redb store on the same disk (one per acknowledgement)",
        None,
        format!(
            "Node::submit_transaction of {submissions} payments one after another: pool \
             admission plus a synced pool-store write before each returns"
        ),
    ));

    let pooled = sizes.pool_reorg_transactions;
    progress(&format!(
        "  replacing a block under {pooled} pooled payments"
    ));
    let seconds = reorganise_under_pool(context, pooled)?;
    figures.push(Figure::new(
        format!("pool.reorg.{pooled}_pooled"),
        pooled as f64 / seconds,
        "transactions/s",
        admission_bound,
        "raw BIP-340 verifies on 1 thread (the pool reconciles under one lock; one verify \
         each if it checked every signature again)",
        None,
        format!(
            "a node in process pools {pooled} payments, then a rival branch of two empty \
             blocks replaces the empty block on its tip: the payments the pool keeps, over \
             the seconds the winning block took to submit (the reorganisation and the \
             pool's reconciliation)"
        ),
    ));

    let Some(executable) = &context.node_executable else {
        return Ok(figures);
    };
    let clients = sizes.http_clients.max(1);
    progress(&format!(
        "  submitting payments over HTTP from {clients} connections"
    ));
    let (count, seconds) = submit_over_http(context, executable, clients, None)?;
    figures.push(Figure::new(
        "pool.submit.http",
        count as f64 / seconds,
        "transactions/s",
        commit_bound,
        "durable commits/s of a small redb store on the same disk (one per acknowledgement \
         without group commit)",
        Some(Goal::RatioAtLeast(0.8)),
        format!(
            "POST /tx of {count} pre-signed payments from {clients} kept-alive connections to \
             a node process; each answer waits for the synced pool-store write, which \
             concurrent submissions share (group commit)"
        ),
    ));

    progress("  submitting payments over HTTP in batches");
    let batch = sizes.http_batch.max(1);
    let (count, seconds) = submit_over_http(context, executable, 2, Some(batch))?;
    figures.push(Figure::new(
        "pool.submit.http_batch",
        count as f64 / seconds,
        "transactions/s",
        admission_bound,
        ADMISSION_BOUND,
        None,
        format!(
            "POST /txs of {count} pre-signed payments, {batch} a request, from 2 kept-alive \
             connections to a node process; each answer waits for its rows' synced writes"
        ),
    ));

    progress("  streaming payments over a WebSocket");
    let (count, seconds) = submit_over_websocket(context, executable, batch)?;
    figures.push(Figure::new(
        "pool.submit.websocket",
        count as f64 / seconds,
        "transactions/s",
        admission_bound,
        ADMISSION_BOUND,
        None,
        format!(
            "{count} pre-signed payments as messages of {batch} on one GET /txs/ws stream to \
             a node process, up to {STREAM_WINDOW} messages sent ahead of their answers; each \
             answer waits for its rows' synced writes"
        ),
    ));
    Ok(figures)
}

/// Pools `count` payments in a node in process, mines an empty block on its tip, then
/// submits a rival branch of two empty blocks from the tip before it: returns the
/// seconds the second took (the reorganisation and the pool's reconciliation), after
/// checking that the pool kept every payment.
fn reorganise_under_pool(context: &Context, count: usize) -> Result<f64, BenchError> {
    let (dir, payments, mut builder) = funded_chain(context, count)?;
    let node = open_node(dir.path())?;
    for result in node.submit_peer_transactions(payments) {
        result?;
    }
    let mut rival = builder.clone();
    node.submit_block(builder.next_block(Vec::new(), Amount::ZERO))?;
    node.submit_block(rival.next_block_tagged(Vec::new(), Amount::ZERO, b"rival"))?;
    let winner = rival.next_block_tagged(Vec::new(), Amount::ZERO, b"rival");
    let winner_hash = winner.compute_hash();
    let (outcome, seconds) = timed(|| node.submit_block(winner));
    outcome?;
    if node.tip().hash != winner_hash {
        return Err(failed("the rival branch did not replace the tip"));
    }
    let (kept, _) = node.pool_size();
    if kept != count {
        return Err(failed(format!(
            "the pool kept {kept} of {count} payments through the reorganisation"
        )));
    }
    Ok(seconds)
}

/// What bounds the batched and streamed submissions.
const ADMISSION_BOUND: &str =
    "raw BIP-340 verifies on 1 thread (admission runs under one lock, one verify each)";

/// Messages a streaming client sends ahead of the answers it has read.
const STREAM_WINDOW: usize = 4;

/// Submits the payments of a fresh funded node process as messages of `batch` on one
/// `GET /txs/ws` stream, keeping [`STREAM_WINDOW`] messages ahead of the answers. Checks
/// that every answer accepted all of its message and that the node pooled them all;
/// returns how many and the seconds it took.
fn submit_over_websocket(
    context: &Context,
    executable: &Path,
    batch: usize,
) -> Result<(usize, f64), BenchError> {
    use tungstenite::Message;
    let (dir, payments) = funded_node_dir(context, context.sizes.pool_submissions)?;
    let node = NodeProcess::start(executable, dir.path(), &[])?;
    let bodies: Vec<String> = payments.chunks(batch).map(raw_transactions_body).collect();
    let ws_error = |error: tungstenite::Error| failed(format!("transaction stream: {error}"));
    let (mut socket, _) = tungstenite::connect(node.transaction_stream_url()).map_err(ws_error)?;
    // As the HTTP clients: a node that stops answering fails the figure, not hangs it.
    if let tungstenite::stream::MaybeTlsStream::Plain(stream) = socket.get_ref() {
        stream.set_read_timeout(Some(std::time::Duration::from_secs(120)))?;
    }
    let started = Instant::now();
    let mut sent = 0;
    let mut answered = 0;
    while answered < bodies.len() {
        while sent < bodies.len() && sent - answered < STREAM_WINDOW {
            socket
                .send(Message::text(bodies[sent].as_str()))
                .map_err(ws_error)?;
            sent += 1;
        }
        if let Message::Text(text) = socket.read().map_err(ws_error)? {
            let answer: serde_json::Value = serde_json::from_str(text.as_str())
                .map_err(|error| failed(format!("a stream's answer is not JSON: {error}")))?;
            if answer["refused"].as_u64() != Some(0) {
                return Err(failed(format!("the stream refused some: {answer}")));
            }
            answered += 1;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let _ = socket.close(None);
    all_pooled(&node, payments.len())?;
    Ok((payments.len(), seconds))
}

/// Checks that `node` pooled all `count` submissions.
fn all_pooled(node: &NodeProcess, count: usize) -> Result<(), BenchError> {
    let pooled = node.status()?["mempool"]["transactions"]
        .as_u64()
        .unwrap_or(0);
    if pooled != count as u64 {
        return Err(failed(format!(
            "the node pooled {pooled} of {count} submissions"
        )));
    }
    Ok(())
}

/// Submits the payments of a fresh funded node process over HTTP from `clients` kept-alive
/// connections: one `POST /tx` each, or `POST /txs` of `batch` each. Checks that the node
/// pooled them all; returns how many and the seconds it took.
fn submit_over_http(
    context: &Context,
    executable: &Path,
    clients: usize,
    batch: Option<usize>,
) -> Result<(usize, f64), BenchError> {
    let (dir, payments) = funded_node_dir(context, context.sizes.pool_submissions)?;
    let node = NodeProcess::start(executable, dir.path(), &[])?;
    let bodies: Vec<String> = match batch {
        None => raw_transaction_bodies(&payments),
        Some(batch) => payments.chunks(batch).map(raw_transactions_body).collect(),
    };
    let path = if batch.is_some() { "/txs" } else { "/tx" };
    let share = bodies.len().div_ceil(clients).max(1);
    let started = Instant::now();
    let results: Vec<Result<(), BenchError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = bodies
            .chunks(share)
            .map(|part| {
                let node = &node;
                scope.spawn(move || {
                    let mut client = node.client()?;
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
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|_| Err(failed("an HTTP client thread panicked")))
            })
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    results.into_iter().collect::<Result<Vec<()>, _>>()?;
    all_pooled(&node, payments.len())?;
    Ok((payments.len(), seconds))
}
