//! Regtest chains for the benchmarks, built fast: blocks are assembled and solved directly
//! (regtest proof of work takes a couple of hashes) and transactions signed on every core.
//! Nothing here validates: the chain state under test does that.
//!
//! ```text
//!   ChainBuilder::next_block(txs) ──▶ coinbase (subsidy + fees to the bench key) + txs,
//!                                     Merkle root, time +1 ms, nonce found
//!   fan_out(coin, n) ──▶ one transaction paying n equal coins to the bench key
//!   sign_spends(coins) ──▶ one signed 1-input, 2-output payment per coin, in parallel
//! ```

use powchain_consensus::pow::HeaderHasher;
use powchain_consensus::secp256k1::Keypair;
use powchain_consensus::signature::{SighashCache, address_of, sign_schnorr};
use powchain_consensus::utxo::created_outputs;
use powchain_consensus::{
    Address, Amount, Block, BlockHash, BlockHeight, Header, Network, OutPoint, Params, Signature,
    Transaction, TxIn, TxInputs, TxOut,
};

/// Fee every benchmark payment pays (above the pool's minimum rate of 1 unit a byte for
/// its ~190 bytes).
pub(crate) const PAYMENT_FEE_UNITS: u64 = 1_000;
/// What every benchmark payment sends to the recipient.
const PAYMENT_VALUE: u64 = 1_000;
/// Outputs per fan-out transaction (about 80 kB, under the 100 kB transaction limit).
pub(crate) const FAN_OUT_OUTPUTS: usize = 2_000;
/// Fan-outs per block (about 1.6 MB, under the 2 MB block limit).
const FAN_OUTS_PER_BLOCK: usize = 20;

/// The key that owns the benchmark's coins.
pub(crate) fn bench_key() -> Keypair {
    Keypair::from_secret_bytes([0x5b; 32]).expect("a small constant secret key is valid")
}

/// Where benchmark payments go.
pub(crate) fn recipient() -> Address {
    address_of(&Keypair::from_secret_bytes([0x7c; 32]).expect("valid secret key"))
}

/// A coin the bench key can spend.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OwnedCoin {
    pub(crate) outpoint: OutPoint,
    pub(crate) output: TxOut,
}

/// Builds the next blocks of a regtest chain (cloned, it builds a rival branch).
#[derive(Clone)]
pub(crate) struct ChainBuilder {
    params: &'static Params,
    tip: BlockHash,
    height: u64,
    time_ms: u64,
    key: Keypair,
    address: Address,
}

impl ChainBuilder {
    /// A builder on regtest's genesis block.
    pub(crate) fn new() -> ChainBuilder {
        let params = Network::Regtest.params();
        let key = bench_key();
        ChainBuilder {
            params,
            tip: params.genesis_hash(),
            height: 0,
            time_ms: params.genesis().header.time_ms,
            address: address_of(&key),
            key,
        }
    }

    /// The tip's height.
    pub(crate) fn height(&self) -> u64 {
        self.height
    }

    /// The bench key.
    pub(crate) fn key(&self) -> &Keypair {
        &self.key
    }

    /// The next block: a coinbase paying subsidy plus `fees` to the bench key (no output
    /// once the subsidy has run out and no fees are paid), then `transactions`. Block
    /// times step by a millisecond, so they stay in the past however long the chain.
    pub(crate) fn next_block(&mut self, transactions: Vec<Transaction>, fees: Amount) -> Block {
        self.next_block_tagged(transactions, fees, b"bench")
    }

    /// [`ChainBuilder::next_block`] with `tag` in the coinbase: two builders cloned from
    /// one tip make different blocks at the same height with different tags.
    pub(crate) fn next_block_tagged(
        &mut self,
        transactions: Vec<Transaction>,
        fees: Amount,
        tag: &[u8],
    ) -> Block {
        let height = BlockHeight(self.height + 1);
        let reward = self
            .params
            .subsidy(height)
            .checked_add(fees)
            .expect("benchmark fees are small");
        let outputs = if reward == Amount::ZERO {
            Vec::new()
        } else {
            vec![TxOut {
                value: reward,
                address: self.address,
            }]
        };
        let mut all = Vec::with_capacity(transactions.len() + 1);
        all.push(Transaction::new_coinbase(height, tag.to_vec(), outputs));
        all.extend(transactions);
        let mut block = Block {
            header: Header {
                version: Header::CURRENT_VERSION,
                prev_hash: self.tip,
                merkle_root: powchain_consensus::MerkleRoot::ZERO,
                time_ms: self.time_ms + 1,
                bits: self.params.pow_limit,
                nonce: 0,
            },
            transactions: all,
        };
        block.header.merkle_root = block.compute_merkle_root();
        let target = block
            .header
            .bits
            .to_target()
            .expect("regtest's limit is a valid target");
        let (nonce, hash) = HeaderHasher::new(&block.header)
            .search(target, 0, u64::MAX)
            .expect("half of all hashes meet regtest's target");
        block.header.nonce = nonce;
        self.tip = hash;
        self.height = height.0;
        self.time_ms = block.header.time_ms;
        block
    }

    /// The coinbase output of `block`, if it pays one.
    pub(crate) fn coinbase_coin(block: &Block) -> Option<OwnedCoin> {
        let coinbase = block.transactions.first()?;
        let output = *coinbase.outputs.first()?;
        Some(OwnedCoin {
            outpoint: OutPoint {
                txid: coinbase.compute_txid(),
                vout: 0,
            },
            output,
        })
    }
}

/// A transaction spending `coin` to `outputs`, signed by `key`.
pub(crate) fn spend(key: &Keypair, coin: &OwnedCoin, outputs: Vec<TxOut>) -> Transaction {
    let mut transaction = Transaction {
        version: Transaction::CURRENT_VERSION,
        inputs: TxInputs::Spends(vec![TxIn {
            prevout: coin.outpoint,
            signature: Signature([0; 64]),
        }]),
        outputs,
    };
    let sighash = SighashCache::new(&transaction, &[coin.output])
        .expect("one spent output for one input")
        .compute_sighash(0)
        .expect("input 0 exists");
    let mut aux = [0u8; 32];
    aux[..32].copy_from_slice(&coin.outpoint.txid.0);
    let signature = sign_schnorr(key, &sighash.0, &aux);
    if let TxInputs::Spends(inputs) = &mut transaction.inputs {
        inputs[0].signature = signature;
    }
    transaction
}

/// A payment of `coin`: a small amount to `recipient`, the change (less the fee) back to
/// the bench key as output 1.
pub(crate) fn payment(key: &Keypair, coin: &OwnedCoin, recipient: Address) -> Transaction {
    let change = coin
        .output
        .value
        .to_units()
        .checked_sub(PAYMENT_VALUE + PAYMENT_FEE_UNITS)
        .expect("benchmark coins exceed a payment");
    spend(
        key,
        coin,
        vec![
            TxOut {
                value: Amount::from_units(PAYMENT_VALUE).expect("in range"),
                address: recipient,
            },
            TxOut {
                value: Amount::from_units(change).expect("in range"),
                address: address_of(key),
            },
        ],
    )
}

/// The change output of a [`payment`], to spend next.
pub(crate) fn change_of(transaction: &Transaction) -> OwnedCoin {
    OwnedCoin {
        outpoint: OutPoint {
            txid: transaction.compute_txid(),
            vout: 1,
        },
        output: transaction.outputs[1],
    }
}

/// A transaction splitting `coin` into `count` equal coins of the bench key.
pub(crate) fn fan_out(
    key: &Keypair,
    coin: &OwnedCoin,
    count: usize,
) -> (Transaction, Vec<OwnedCoin>) {
    let spendable = coin.output.value.to_units() - PAYMENT_FEE_UNITS * 100;
    let each = Amount::from_units(spendable / count as u64).expect("in range");
    let address = address_of(key);
    let transaction = spend(
        key,
        coin,
        vec![
            TxOut {
                value: each,
                address
            };
            count
        ],
    );
    let coins = created_outputs(&transaction, transaction.compute_txid())
        .map(|(outpoint, output)| OwnedCoin {
            outpoint,
            output: *output,
        })
        .collect();
    (transaction, coins)
}

/// The fee a fan-out pays (what its input holds beyond its outputs).
pub(crate) fn fan_out_fee(transaction: &Transaction, coin: &OwnedCoin) -> Amount {
    let paid = transaction.output_total().expect("in range");
    coin.output
        .value
        .checked_sub(paid)
        .expect("outputs below input")
}

/// One [`payment`] per coin, signed on `threads` threads, in coin order.
pub(crate) fn sign_payments(
    key: &Keypair,
    coins: &[OwnedCoin],
    threads: usize,
) -> Vec<Transaction> {
    let chunk = coins.len().div_ceil(threads.max(1)).max(1);
    let recipient = recipient();
    std::thread::scope(|scope| {
        let handles: Vec<_> = coins
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|coin| payment(key, coin, recipient))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().expect("signing does not panic"))
            .collect()
    })
}

/// Blocks that give the bench key `count` spendable coins, starting from `builder`'s tip:
/// empty blocks for coinbases, then fan-outs of them (twenty to a block). Returns the
/// blocks (to feed a chain state) and the coins.
pub(crate) fn fund(builder: &mut ChainBuilder, count: usize) -> (Vec<Block>, Vec<OwnedCoin>) {
    let fan_outs = count.div_ceil(FAN_OUT_OUTPUTS).max(1);
    let mut blocks = Vec::new();
    let mut coinbases = Vec::new();
    // One more block than coinbases so the last one matures (regtest maturity: 1 block).
    while coinbases.len() < fan_outs {
        let block = builder.next_block(Vec::new(), Amount::ZERO);
        coinbases.extend(ChainBuilder::coinbase_coin(&block));
        blocks.push(block);
    }
    blocks.push(builder.next_block(Vec::new(), Amount::ZERO));
    let key = *builder.key();
    let mut coins = Vec::with_capacity(fan_outs * FAN_OUT_OUTPUTS);
    for group in coinbases.chunks(FAN_OUTS_PER_BLOCK) {
        let mut transactions = Vec::new();
        let mut fees = Amount::ZERO;
        for coinbase in group {
            let (transaction, outputs) = fan_out(&key, coinbase, FAN_OUT_OUTPUTS);
            fees = fees
                .checked_add(fan_out_fee(&transaction, coinbase))
                .expect("in range");
            transactions.push(transaction);
            coins.extend(outputs);
        }
        blocks.push(builder.next_block(transactions, fees));
    }
    coins.truncate(count);
    (blocks, coins)
}

/// Empty blocks up to `height`.
pub(crate) fn empty_blocks_to(
    builder: &mut ChainBuilder,
    height: u64,
) -> impl Iterator<Item = Block> + '_ {
    std::iter::from_fn(move || {
        (builder.height() < height).then(|| builder.next_block(Vec::new(), Amount::ZERO))
    })
}

/// The next block holding `transactions` (payments paying [`PAYMENT_FEE_UNITS`] each).
pub(crate) fn block_of_payments(
    builder: &mut ChainBuilder,
    transactions: Vec<Transaction>,
) -> Block {
    let fees = Amount::from_units(PAYMENT_FEE_UNITS * transactions.len() as u64).expect("in range");
    builder.next_block(transactions, fees)
}
