//! Figure 2: signature checks while connecting a block (`connect_block_transactions`
//! with the chain's `ParallelVerifier`: sighashes, UTXO lookups and BIP-340 verification)
//! against raw BIP-340 verifies of the secp256k1 library on the same threads. A raw
//! verify takes the 32-byte key, message and signature, as BIP-340's `Verify` does: the
//! key is parsed (lifted onto the curve) each time, as consensus must do with addresses.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use powchain_consensus::secp256k1::{XOnlyPublicKey, schnorr};
use powchain_consensus::signature::{ParallelVerifier, SequentialVerifier, SignatureVerifier};
use powchain_consensus::signature_cache::{CacheMode, CachingVerifier, SignatureCache};
use powchain_consensus::validation::{
    check_transaction_inputs, connect_block_transactions, validate_transaction,
};
use powchain_consensus::{Block, BlockHeight, Coin, Network, OutPoint, Txid, UtxoView};

use crate::chain_builder::{ChainBuilder, OwnedCoin, bench_key, block_of_payments, sign_payments};
use crate::error::BenchError;
use crate::measure::rate_on_threads;
use crate::report::{Figure, Goal};
use crate::{Context, thread_label};

/// A raw verify's inputs.
#[derive(Clone, Copy)]
pub(crate) struct RawCheck {
    key: [u8; 32],
    message: [u8; 32],
    signature: [u8; 64],
}

/// Raw checks taken from real signature checks, so the bound verifies the same data.
pub(crate) fn raw_checks(block: &Block, view: &impl UtxoView) -> Vec<RawCheck> {
    let params = Network::Regtest.params();
    block
        .transactions
        .iter()
        .skip(1)
        .take(256)
        .enumerate()
        .flat_map(|(index, transaction)| {
            check_transaction_inputs(params, transaction, index, view, BlockHeight(2))
                .expect("the benchmark's payments are valid")
                .signature_checks
        })
        .map(|check| RawCheck {
            key: check.address.0,
            message: check.sighash.0,
            signature: check.signature.0,
        })
        .collect()
}

/// Raw BIP-340 verifies per second on `threads` threads.
pub(crate) fn raw_verify_rate(checks: &[RawCheck], threads: usize, seconds: f64) -> f64 {
    const PER_CALL: usize = 16;
    rate_on_threads(threads, seconds, &|thread_index| {
        let start = (thread_index * 37) % checks.len();
        for offset in 0..PER_CALL {
            let check = &checks[(start + offset) % checks.len()];
            let valid = XOnlyPublicKey::from_byte_array(check.key).is_ok_and(|key| {
                schnorr::verify(
                    &schnorr::Signature::from_byte_array(check.signature),
                    &check.message,
                    &key,
                )
                .is_ok()
            });
            assert!(valid, "the benchmark's signatures are valid");
        }
        PER_CALL as u64
    })
}

/// A block of `count` single-input payments at height 2 and the coins they spend.
pub(crate) fn payment_block(count: usize, threads: usize) -> (Block, HashMap<OutPoint, Coin>) {
    let key = bench_key();
    let mut builder = ChainBuilder::new();
    let template = ChainBuilder::coinbase_coin(
        &builder.next_block(Vec::new(), powchain_consensus::Amount::ZERO),
    )
    .expect("block 1 pays a subsidy");
    let coins: Vec<OwnedCoin> = (0..count)
        .map(|index| {
            let mut txid = [0u8; 32];
            txid[..8].copy_from_slice(&(index as u64).to_le_bytes());
            OwnedCoin {
                outpoint: OutPoint {
                    txid: Txid(txid),
                    vout: 0,
                },
                output: template.output,
            }
        })
        .collect();
    let view: HashMap<OutPoint, Coin> = coins
        .iter()
        .map(|coin| {
            (
                coin.outpoint,
                Coin {
                    output: coin.output,
                    height: BlockHeight(1),
                    is_coinbase: false,
                },
            )
        })
        .collect();
    let payments = sign_payments(&key, &coins, threads);
    (block_of_payments(&mut builder, payments), view)
}

/// Signatures per second of `connect_block_transactions` with `verifier`, over calls
/// repeated for about `seconds`; `before_each` runs untimed before every call.
fn connect_rate(
    block: &Block,
    view: &HashMap<OutPoint, Coin>,
    verifier: &dyn SignatureVerifier,
    seconds: f64,
    before_each: &mut dyn FnMut(),
) -> f64 {
    let params = Network::Regtest.params();
    let txids = block.compute_txids();
    let signatures = (block.transactions.len() - 1) as f64;
    let mut timed = 0.0;
    let mut calls = 0u32;
    while timed < seconds || calls == 0 {
        before_each();
        let started = Instant::now();
        let connection =
            connect_block_transactions(params, block, &txids, BlockHeight(2), view, verifier);
        timed += started.elapsed().as_secs_f64();
        calls += 1;
        assert!(connection.is_ok(), "the benchmark's block is valid");
    }
    signatures * f64::from(calls) / timed
}

pub(crate) fn run(
    context: &Context,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Figure>, BenchError> {
    let sizes = context.sizes;
    progress(&format!(
        "  signing a block of {} payments",
        sizes.signature_block_transactions
    ));
    let (block, view) = payment_block(sizes.signature_block_transactions, context.threads);
    let raw = raw_checks(&block, &view);
    let mut figures = Vec::new();
    let mut all_threads_raw = 0.0;
    for threads in context.thread_counts() {
        progress(&format!("  verifying on {threads} thread(s)"));
        let verifier = ParallelVerifier { threads };
        let mut bound = f64::MIN;
        let mut value = f64::MIN;
        for _ in 0..sizes.rounds.max(1) {
            bound = bound.max(raw_verify_rate(&raw, threads, sizes.seconds));
            value = value.max(connect_rate(
                &block,
                &view,
                &verifier,
                sizes.seconds,
                &mut || {},
            ));
        }
        all_threads_raw = bound;
        figures.push(Figure::new(
            format!("signatures.block_connect.{}", thread_label(threads)),
            value,
            "signatures/s",
            bound,
            format!(
                "raw BIP-340 verifies (secp256k1, key parsed each time) on {threads} thread(s)"
            ),
            Some(Goal::RatioAtLeast(0.80)),
            format!(
                "connect_block_transactions of a block of {} single-input payments (in-memory \
                 UTXO view) with ParallelVerifier {{ threads: {threads} }}, best of {} rounds",
                sizes.signature_block_transactions, sizes.rounds
            ),
        ));
    }

    // The same block after the pool admitted its transactions: their checks are cached.
    progress("  connecting a block whose transactions the pool verified");
    let cache = Arc::new(SignatureCache::new(sizes.signature_block_transactions * 2));
    let pool = CachingVerifier::new(Arc::clone(&cache), SequentialVerifier, CacheMode::Remember);
    let chain = CachingVerifier::new(
        Arc::clone(&cache),
        ParallelVerifier {
            threads: context.threads,
        },
        CacheMode::Consume,
    );
    let params = Network::Regtest.params();
    let mut admit_all = || {
        for transaction in block.transactions.iter().skip(1) {
            validate_transaction(params, transaction, &view, BlockHeight(2), &pool)
                .expect("the benchmark's payments are valid");
        }
    };
    let mut cached = f64::MIN;
    for _ in 0..sizes.rounds.max(1) {
        cached = cached.max(connect_rate(
            &block,
            &view,
            &chain,
            sizes.seconds,
            &mut admit_all,
        ));
    }
    figures.push(Figure::new(
        "signatures.block_connect.pool_verified",
        cached,
        "signatures/s",
        all_threads_raw,
        format!(
            "raw BIP-340 verifies on {} thread(s) (a ratio above 1: checks skipped)",
            context.threads
        ),
        None,
        "the same block after every transaction passed pool admission (CachingVerifier \
         Remember); the block's verifier (Consume) finds every check in the signature cache",
    ));
    Ok(figures)
}
