//! Criterion benchmark of pool admission: `Mempool::accept` of 500 pre-signed
//! single-input payments into an empty pool (validation, policy, one BIP-340 verify each),
//! and the same with their signatures already in the signature cache.
//!
//! `cargo bench -p powchain-mempool`.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use powchain_consensus::secp256k1::Keypair;
use powchain_consensus::signature::{SequentialVerifier, SighashCache, address_of, sign_schnorr};
use powchain_consensus::signature_cache::{CacheMode, CachingVerifier, SignatureCache};
use powchain_consensus::{
    Amount, BlockHeight, Coin, Network, OutPoint, Signature, Transaction, TxIn, TxInputs, TxOut,
    Txid,
};
use powchain_mempool::{Mempool, MempoolOptions};

const PAYMENTS: usize = 500;

fn payments() -> (Vec<Transaction>, HashMap<OutPoint, Coin>) {
    let key = Keypair::from_secret_bytes([0x5b; 32]).expect("valid secret key");
    let owner = address_of(&key);
    let recipient = address_of(&Keypair::from_secret_bytes([0x7c; 32]).expect("valid key"));
    let coin_output = TxOut {
        value: Amount::ONE_COIN,
        address: owner,
    };
    let mut coins = HashMap::new();
    let transactions = (0..PAYMENTS)
        .map(|index| {
            let mut txid = [0u8; 32];
            txid[..8].copy_from_slice(&(index as u64).to_le_bytes());
            let prevout = OutPoint {
                txid: Txid(txid),
                vout: 0,
            };
            coins.insert(
                prevout,
                Coin {
                    output: coin_output,
                    height: BlockHeight(1),
                    is_coinbase: false,
                },
            );
            let mut transaction = Transaction {
                version: 1,
                inputs: TxInputs::Spends(vec![TxIn {
                    prevout,
                    signature: Signature([0; 64]),
                }]),
                outputs: vec![
                    TxOut {
                        value: Amount::from_units(1_000).expect("in range"),
                        address: recipient,
                    },
                    TxOut {
                        value: Amount::from_units(Amount::ONE_COIN.to_units() - 2_000)
                            .expect("in range"),
                        address: owner,
                    },
                ],
            };
            let sighash = SighashCache::new(&transaction, &[coin_output])
                .expect("one input")
                .compute_sighash(0)
                .expect("input 0");
            let signature = sign_schnorr(&key, &sighash.0, &[0; 32]);
            if let TxInputs::Spends(inputs) = &mut transaction.inputs {
                inputs[0].signature = signature;
            }
            transaction
        })
        .collect();
    (transactions, coins)
}

fn accept(criterion: &mut Criterion) {
    let params = Network::Regtest.params();
    let (transactions, coins) = payments();
    let mut group = criterion.benchmark_group("mempool_accept");
    group.throughput(Throughput::Elements(PAYMENTS as u64));
    group.sample_size(20);
    group.bench_function("500 payments, signatures checked", |bencher| {
        bencher.iter_batched(
            || {
                (
                    Mempool::new(params, MempoolOptions::default()),
                    transactions.clone(),
                )
            },
            |(mut pool, transactions)| {
                for transaction in transactions {
                    black_box(
                        pool.accept(transaction, &coins, BlockHeight(2), 0, &SequentialVerifier)
                            .expect("valid"),
                    );
                }
            },
            BatchSize::LargeInput,
        );
    });
    // Signatures already remembered (as when a transaction is re-admitted after a reorg).
    let cache = Arc::new(SignatureCache::new(PAYMENTS * 2));
    let verifier =
        CachingVerifier::new(Arc::clone(&cache), SequentialVerifier, CacheMode::Remember);
    let mut warm = Mempool::new(params, MempoolOptions::default());
    for transaction in &transactions {
        warm.accept(transaction.clone(), &coins, BlockHeight(2), 0, &verifier)
            .expect("valid");
    }
    group.bench_function("500 payments, signatures cached", |bencher| {
        bencher.iter_batched(
            || {
                (
                    Mempool::new(params, MempoolOptions::default()),
                    transactions.clone(),
                )
            },
            |(mut pool, transactions)| {
                for transaction in transactions {
                    black_box(
                        pool.accept(transaction, &coins, BlockHeight(2), 0, &verifier)
                            .expect("valid"),
                    );
                }
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

criterion_group!(benches, accept);
criterion_main!(benches);
