//! Criterion micro-benchmarks of consensus's inner loops: header hashing with and without
//! the midstate, the nonce search against raw SHA-256 compressions, Merkle roots, sighashes
//! and BIP-340 verification (alone, and through the sequential and parallel verifiers).
//!
//! `cargo bench -p powchain-consensus`. The macro figures, held against the hardware
//! bound, come from `powchain bench` (docs/BENCHMARKS.md).

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use powchain_consensus::pow::{HeaderHasher, run_raw_compressions};
use powchain_consensus::secp256k1::Keypair;
use powchain_consensus::signature::{
    ParallelVerifier, SequentialVerifier, Sighash, SighashCache, SignatureCheck, SignatureVerifier,
    address_of, sign_schnorr, verify_schnorr,
};
use powchain_consensus::{
    Amount, BlockHash, CompactTarget, Header, MerkleRoot, OutPoint, Signature, Transaction, TxIn,
    TxInputs, TxOut, Txid, merkle::compute_merkle_root,
};

fn header() -> Header {
    Header {
        version: 1,
        prev_hash: BlockHash([3; 32]),
        merkle_root: MerkleRoot([4; 32]),
        time_ms: 1_795_564_800_000,
        bits: CompactTarget(0x0300_0001),
        nonce: 0,
    }
}

fn hashing(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("header_hash");
    group.throughput(Throughput::Elements(1));
    group.bench_function("compute_hash (three compressions)", |bencher| {
        let mut header = header();
        bencher.iter(|| {
            header.nonce = header.nonce.wrapping_add(1);
            black_box(header.compute_hash())
        });
    });
    group.bench_function("midstate hash_with_nonce (two compressions)", |bencher| {
        let mut hasher = HeaderHasher::new(&header());
        let mut nonce = 0u64;
        bencher.iter(|| {
            nonce = nonce.wrapping_add(1);
            black_box(hasher.hash_with_nonce(nonce))
        });
    });
    group.finish();

    const NONCES: u64 = 4_096;
    let mut group = criterion.benchmark_group("nonce_search");
    group.throughput(Throughput::Elements(NONCES));
    group.bench_function("search 4096 nonces (midstate, 4 lanes)", |bencher| {
        let mut hasher = HeaderHasher::new(&header());
        let target = header().bits.to_target().expect("valid bits");
        bencher.iter(|| black_box(hasher.search(target, 0, NONCES)));
    });
    for lanes in [1, 8] {
        group.bench_function(
            format!("raw compressions x2 ({lanes} lanes, the bound)"),
            |bencher| {
                bencher.iter(|| black_box(run_raw_compressions(2 * NONCES, lanes)));
            },
        );
    }
    group.finish();
}

fn merkle(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("merkle_root");
    for count in [1_000usize, 5_000] {
        let txids: Vec<Txid> = (0..count)
            .map(|index| {
                let mut bytes = [0u8; 32];
                bytes[..8].copy_from_slice(&(index as u64).to_le_bytes());
                Txid(bytes)
            })
            .collect();
        group.throughput(Throughput::Elements(count as u64));
        group.bench_function(format!("{count} txids"), |bencher| {
            bencher.iter(|| black_box(compute_merkle_root(&txids)));
        });
    }
    group.finish();
}

fn key() -> Keypair {
    Keypair::from_secret_bytes([0x5b; 32]).expect("valid secret key")
}

/// A payment with `inputs` inputs and two outputs, and the outputs it spends.
fn payment(inputs: usize) -> (Transaction, Vec<TxOut>) {
    let owner = address_of(&key());
    let transaction = Transaction {
        version: 1,
        inputs: TxInputs::Spends(
            (0..inputs)
                .map(|index| TxIn {
                    prevout: OutPoint {
                        txid: Txid([index as u8; 32]),
                        vout: 0,
                    },
                    signature: Signature([0; 64]),
                })
                .collect(),
        ),
        outputs: vec![
            TxOut {
                value: Amount::ONE_COIN,
                address: owner,
            };
            2
        ],
    };
    let spent = vec![
        TxOut {
            value: Amount::ONE_COIN,
            address: owner,
        };
        inputs
    ];
    (transaction, spent)
}

fn checks(count: usize) -> Vec<SignatureCheck> {
    let key = key();
    (0..count)
        .map(|index| {
            let mut message = [0u8; 32];
            message[..8].copy_from_slice(&(index as u64).to_le_bytes());
            SignatureCheck {
                transaction_index: index,
                input_index: 0,
                sighash: Sighash(message),
                address: address_of(&key),
                signature: sign_schnorr(&key, &message, &[0; 32]),
            }
        })
        .collect()
}

fn signatures(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("sighash");
    for inputs in [1usize, 10] {
        let (transaction, spent) = payment(inputs);
        group.throughput(Throughput::Elements(inputs as u64));
        group.bench_function(format!("{inputs} input(s)"), |bencher| {
            bencher.iter(|| {
                let cache = SighashCache::new(&transaction, &spent).expect("counts match");
                for index in 0..inputs {
                    black_box(cache.compute_sighash(index));
                }
            });
        });
    }
    group.finish();

    let mut group = criterion.benchmark_group("verify");
    let one = checks(1);
    group.throughput(Throughput::Elements(1));
    group.bench_function("verify_schnorr (key parsed)", |bencher| {
        bencher.iter(|| {
            black_box(verify_schnorr(
                &one[0].address.0,
                &one[0].sighash.0,
                &one[0].signature,
            ))
        });
    });
    let many = checks(256);
    group.throughput(Throughput::Elements(many.len() as u64));
    group.bench_function("SequentialVerifier 256 checks", |bencher| {
        bencher.iter(|| black_box(SequentialVerifier.verify_all(&many)));
    });
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    group.bench_function(
        format!("ParallelVerifier 256 checks, {threads} threads"),
        |bencher| {
            bencher.iter_batched(
                || many.clone(),
                |checks| black_box(ParallelVerifier { threads }.verify_all(&checks)),
                BatchSize::SmallInput,
            );
        },
    );
    group.finish();
}

criterion_group!(benches, hashing, merkle, signatures);
criterion_main!(benches);
