//! Criterion benchmark of `ChainState::accept_block`: a block of 200 single-input payments
//! connected on a synced store at height ~1,000 and at ~100,000, with its share of the
//! coin cache's flush. The cost must not grow with the chain (docs/BENCHMARKS.md holds
//! the figures; `powchain bench` measures the same with larger blocks).
//!
//! `cargo bench -p powchain-chain`: about three minutes. Building the 100,000 blocks and
//! funding 600,000 coins take a few tens of seconds per store (unsynced, as set-up only).

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use powchain_chain::{ChainOptions, ChainState, StoreDurability};
use powchain_consensus::pow::HeaderHasher;
use powchain_consensus::secp256k1::Keypair;
use powchain_consensus::signature::{SighashCache, address_of, sign_schnorr};
use powchain_consensus::{
    Address, Amount, Block, BlockHash, BlockHeight, Header, MerkleRoot, Network, OutPoint,
    Signature, Transaction, TxIn, TxInputs, TxOut,
};

const PAYMENTS_PER_BLOCK: usize = 200;
const FAN_OUT: usize = 2_000;
/// 600,000 coins: enough for the warm-up and ten samples of up to 300 blocks of 200
/// payments (criterion sizes the samples to fill the measurement time).
const FAN_OUTS: usize = 300;
/// Fan-outs of 2,000 outputs (~80 kB each) per block, under the 2 MB block limit.
const FAN_OUTS_PER_BLOCK: usize = 20;
const NOW_MS: u64 = 1_795_564_800_000 + 1_000_000_000_000;

/// Regtest blocks built directly (nothing validated here: the chain state does that).
struct Builder {
    tip: BlockHash,
    height: u64,
    time_ms: u64,
    key: Keypair,
    address: Address,
}

impl Builder {
    fn new() -> Builder {
        let params = Network::Regtest.params();
        let key = Keypair::from_secret_bytes([0x5b; 32]).expect("valid secret key");
        Builder {
            tip: params.genesis_hash(),
            height: 0,
            time_ms: params.genesis().header.time_ms,
            address: address_of(&key),
            key,
        }
    }

    fn next_block(&mut self, transactions: Vec<Transaction>, fees: u64) -> Block {
        let params = Network::Regtest.params();
        let height = BlockHeight(self.height + 1);
        let reward = params.subsidy(height).to_units() + fees;
        let outputs = if reward == 0 {
            Vec::new()
        } else {
            vec![TxOut {
                value: Amount::from_units(reward).expect("in range"),
                address: self.address,
            }]
        };
        let mut all = vec![Transaction::new_coinbase(
            height,
            b"bench".to_vec(),
            outputs,
        )];
        all.extend(transactions);
        let mut block = Block {
            header: Header {
                version: 1,
                prev_hash: self.tip,
                merkle_root: MerkleRoot::ZERO,
                time_ms: self.time_ms + 1,
                bits: params.pow_limit,
                nonce: 0,
            },
            transactions: all,
        };
        block.header.merkle_root = block.compute_merkle_root();
        let target = block.header.bits.to_target().expect("valid");
        let (nonce, hash) = HeaderHasher::new(&block.header)
            .search(target, 0, u64::MAX)
            .expect("regtest targets are met at once");
        block.header.nonce = nonce;
        self.tip = hash;
        self.height = height.0;
        self.time_ms = block.header.time_ms;
        block
    }

    fn spend(&self, coin: (OutPoint, TxOut), outputs: Vec<TxOut>) -> Transaction {
        let mut transaction = Transaction {
            version: 1,
            inputs: TxInputs::Spends(vec![TxIn {
                prevout: coin.0,
                signature: Signature([0; 64]),
            }]),
            outputs,
        };
        let sighash = SighashCache::new(&transaction, &[coin.1])
            .expect("one input")
            .compute_sighash(0)
            .expect("input 0");
        let signature = sign_schnorr(&self.key, &sighash.0, &coin.0.txid.0);
        if let TxInputs::Spends(inputs) = &mut transaction.inputs {
            inputs[0].signature = signature;
        }
        transaction
    }
}

/// A store with `FAN_OUTS * FAN_OUT` coins of the builder's key, at `height`.
fn funded_store(path: &Path, height: u64) -> (Builder, Vec<(OutPoint, TxOut)>) {
    let mut builder = Builder::new();
    let mut chain = ChainState::open(
        path,
        Network::Regtest,
        ChainOptions {
            durability: StoreDurability::UnsyncedForBenchmarks,
            ..ChainOptions::default()
        },
    )
    .expect("open");
    let mut coinbases = Vec::new();
    for _ in 0..=FAN_OUTS {
        let block = builder.next_block(Vec::new(), 0);
        let coinbase = &block.transactions[0];
        coinbases.push((
            OutPoint {
                txid: coinbase.compute_txid(),
                vout: 0,
            },
            coinbase.outputs[0],
        ));
        chain.accept_block(block, NOW_MS).expect("valid");
    }
    let mut coins = Vec::new();
    for group in coinbases[..FAN_OUTS].chunks(FAN_OUTS_PER_BLOCK) {
        let mut fan_outs = Vec::new();
        let mut fees = 0;
        for coinbase in group.iter().copied() {
            let each = (coinbase.1.value.to_units() - 100_000) / FAN_OUT as u64;
            let output = TxOut {
                value: Amount::from_units(each).expect("in range"),
                address: builder.address,
            };
            let transaction = builder.spend(coinbase, vec![output; FAN_OUT]);
            fees += coinbase.1.value.to_units() - each * FAN_OUT as u64;
            let txid = transaction.compute_txid();
            coins.extend((0..FAN_OUT).map(|vout| {
                (
                    OutPoint {
                        txid,
                        vout: vout as u32,
                    },
                    output,
                )
            }));
            fan_outs.push(transaction);
        }
        let block = builder.next_block(fan_outs, fees);
        chain.accept_block(block, NOW_MS).expect("valid");
    }
    while builder.height < height {
        let block = builder.next_block(Vec::new(), 0);
        chain.accept_block(block, NOW_MS).expect("valid");
    }
    chain.sync().expect("sync");
    (builder, coins)
}

/// Times `iterations` connects of blocks of payments (built and signed untimed) and the
/// flush of the coin cache after them: each sample pays for its blocks' writes, batched as
/// the cache batches them (a sample of few blocks batches less than a node does).
fn connect_blocks(
    chain: &mut ChainState,
    builder: &mut Builder,
    coins: &mut Vec<(OutPoint, TxOut)>,
    iterations: u64,
) -> Duration {
    let recipient = address_of(&Keypair::from_secret_bytes([0x7c; 32]).expect("valid key"));
    let mut total = Duration::ZERO;
    for _ in 0..iterations {
        assert!(
            coins.len() >= PAYMENTS_PER_BLOCK,
            "the benchmark ran out of coins"
        );
        let payments: Vec<Transaction> = coins
            .drain(..PAYMENTS_PER_BLOCK)
            .map(|coin| {
                let change = coin.1.value.to_units() - 2_000;
                builder.spend(
                    coin,
                    vec![
                        TxOut {
                            value: Amount::from_units(1_000).expect("in range"),
                            address: recipient,
                        },
                        TxOut {
                            value: Amount::from_units(change).expect("in range"),
                            address: builder.address,
                        },
                    ],
                )
            })
            .collect();
        let block = builder.next_block(payments, 1_000 * PAYMENTS_PER_BLOCK as u64);
        let started = Instant::now();
        chain.accept_block(block, NOW_MS).expect("valid");
        total += started.elapsed();
    }
    // The rows the coin cache holds back are part of the blocks' cost.
    let started = Instant::now();
    chain.flush().expect("flush");
    total + started.elapsed()
}

fn connect_at_heights(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("connect_block_200_payments");
    // 40 s of samples: criterion gives them ~30 to ~300 blocks each, so each sample's
    // final flush writes a batch of the size the node's cache holds (24 MiB, ~160 blocks
    // of 200 payments), and the figure is the steady cost per block, not the cost of
    // flushing a handful of blocks.
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(40));
    group.warm_up_time(Duration::from_millis(500));
    for height in [1_000u64, 100_000] {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("chain.redb");
        let (mut builder, mut coins) = funded_store(&path, height);
        let mut chain =
            ChainState::open(&path, Network::Regtest, ChainOptions::default()).expect("open");
        group.bench_function(format!("at height ~{height}"), |bencher| {
            bencher.iter_custom(|iterations| {
                connect_blocks(&mut chain, &mut builder, &mut coins, iterations)
            });
        });
    }
    group.finish();
}

criterion_group!(benches, connect_at_heights);
criterion_main!(benches);
