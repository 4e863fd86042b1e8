//! Builders for valid chains, blocks and signed transactions, for tests in this crate and
//! (with the `testkit` feature) in others. Deterministic: keys come from seeds, signatures
//! use fixed auxiliary randomness, times step by the target block time.

use std::collections::HashMap;

use secp256k1::Keypair;

use crate::address::Address;
use crate::amount::Amount;
use crate::block::{Block, Header};
use crate::difficulty::compute_median_time_past;
use crate::error::ConsensusError;
use crate::merkle::compute_merkle_root;
use crate::params::{Network, Params};
use crate::pow::HeaderHasher;
use crate::signature::{SequentialVerifier, SighashCache, address_of, sign_schnorr};
use crate::transaction::{BlockHeight, OutPoint, Signature, Transaction, TxIn, TxInputs, TxOut};
use crate::utxo::{Coin, UtxoView};
use crate::validation::{
    BlockConnection, HeaderContext, HeaderSummary, connect_block_transactions, next_required_bits,
    validate_block_structure, validate_header,
};

/// A deterministic key pair from a seed byte (seed 0 is mapped to 1: zero is not a key).
pub fn test_key(seed: u8) -> Keypair {
    let mut secret = [0u8; 32];
    secret[31] = seed.max(1);
    secret[0] = 0x42;
    Keypair::from_secret_bytes(secret).expect("small secret keys are valid")
}

/// The address of [`test_key`]`(seed)`.
pub fn test_address(seed: u8) -> Address {
    address_of(&test_key(seed))
}

/// Signs every input of `transaction`, which spends `spent` (in input order), with the
/// key of each spent output looked up in `keys`.
pub fn sign_all(transaction: &mut Transaction, spent: &[TxOut], keys: &[Keypair]) {
    let cache = SighashCache::new(transaction, spent).expect("one spent output per input");
    let signatures: Vec<Signature> = spent
        .iter()
        .enumerate()
        .map(|(index, output)| {
            let key = keys
                .iter()
                .find(|key| address_of(key) == output.address)
                .expect("a key for every spent output");
            let sighash = cache.compute_sighash(index).expect("index is an input");
            sign_schnorr(key, &sighash.0, &[index as u8; 32])
        })
        .collect();
    if let TxInputs::Spends(inputs) = &mut transaction.inputs {
        for (input, signature) in inputs.iter_mut().zip(signatures) {
            input.signature = signature;
        }
    }
}

/// Finds a nonce that meets the header's bits (fast on regtest).
pub fn solve(header: &mut Header) {
    let target = header
        .bits
        .to_target()
        .expect("test headers have valid bits");
    let (nonce, _) = HeaderHasher::new(header)
        .search(target, 0, u64::MAX)
        .expect("some nonce meets any valid target");
    header.nonce = nonce;
}

/// A chain held in memory with its UTXO set, for building valid blocks and then breaking
/// exactly one rule.
#[derive(Clone, Debug)]
pub struct TestChain {
    /// The network's parameters.
    pub params: &'static Params,
    /// The blocks from genesis to the tip.
    pub blocks: Vec<Block>,
    /// The UTXO set at the tip.
    pub utxo: HashMap<OutPoint, Coin>,
    /// Who the coinbases pay unless told otherwise.
    pub miner: Keypair,
}

impl TestChain {
    /// A chain holding only the genesis block of `network`.
    pub fn new(network: Network) -> TestChain {
        let params = network.params();
        TestChain {
            params,
            blocks: vec![params.genesis().clone()],
            utxo: HashMap::new(),
            miner: test_key(1),
        }
    }

    /// A regtest chain whose miner has `count` mature coinbases to spend.
    pub fn regtest_with_mature_coins(count: usize) -> TestChain {
        let mut chain = TestChain::new(Network::Regtest);
        let blocks = count as u64 + chain.params.coinbase_maturity;
        chain.mine_empty(blocks as usize);
        chain
    }

    /// The tip block.
    pub fn tip(&self) -> &Block {
        self.blocks.last().expect("a chain always holds genesis")
    }

    /// The tip's height.
    pub fn height(&self) -> BlockHeight {
        BlockHeight(self.blocks.len() as u64 - 1)
    }

    fn summary(&self, height: usize) -> HeaderSummary {
        let header = &self.blocks[height].header;
        HeaderSummary {
            height: BlockHeight(height as u64),
            time_ms: header.time_ms,
            bits: header.bits,
        }
    }

    /// What the next block's header is checked against, with the clock at `now_ms`.
    pub fn next_header_context(&self, now_ms: u64) -> HeaderContext {
        let parent = self.summary(self.blocks.len() - 1);
        let anchor = (self.blocks.len() > 1).then(|| self.summary(1));
        let times: Vec<u64> = self
            .blocks
            .iter()
            .map(|block| block.header.time_ms)
            .collect();
        HeaderContext {
            required_bits: next_required_bits(self.params, parent, anchor)
                .expect("the anchor is given"),
            median_time_past_ms: compute_median_time_past(&times),
            now_ms,
        }
    }

    /// The outpoint of the first output of the coinbase at `height`.
    pub fn coinbase_outpoint(&self, height: u64) -> OutPoint {
        OutPoint {
            txid: self.blocks[height as usize].transactions[0].compute_txid(),
            vout: 0,
        }
    }

    /// A mature coinbase output of the miner's, by index from the oldest.
    pub fn mature_coin(&self, index: u64) -> (OutPoint, Coin) {
        let outpoint = self.coinbase_outpoint(1 + index);
        let coin = self.utxo.coin(&outpoint).expect("that coinbase is unspent");
        (outpoint, coin)
    }

    /// A transaction spending `outpoints` (from the UTXO set or `extra`), paying `outputs`,
    /// signed with `keys`.
    pub fn spend(
        &self,
        outpoints: &[OutPoint],
        outputs: Vec<TxOut>,
        keys: &[Keypair],
        extra: &HashMap<OutPoint, Coin>,
    ) -> Transaction {
        let spent: Vec<TxOut> = outpoints
            .iter()
            .map(|outpoint| {
                self.utxo
                    .get(outpoint)
                    .or_else(|| extra.get(outpoint))
                    .expect("spent outputs exist")
                    .output
            })
            .collect();
        let mut transaction = Transaction {
            version: Transaction::CURRENT_VERSION,
            inputs: TxInputs::Spends(
                outpoints
                    .iter()
                    .map(|outpoint| TxIn {
                        prevout: *outpoint,
                        signature: Signature([0; 64]),
                    })
                    .collect(),
            ),
            outputs,
        };
        sign_all(&mut transaction, &spent, keys);
        transaction
    }

    /// The outputs of `transaction` as coins at `height`, to chain further spends.
    pub fn coins_of(transaction: &Transaction, height: BlockHeight) -> HashMap<OutPoint, Coin> {
        crate::utxo::created_coins(transaction, transaction.compute_txid(), height).collect()
    }

    /// An unsolved next block: coinbase paying subsidy plus `fees` to the miner, then
    /// `transactions`, with the required bits, a time one target interval after the tip,
    /// and the Merkle root set.
    pub fn template(&self, transactions: Vec<Transaction>, fees: Amount) -> Block {
        let height = self.height().next();
        let reward = self
            .params
            .subsidy(height)
            .checked_add(fees)
            .expect("test fees are small");
        let coinbase = Transaction::new_coinbase(
            height,
            b"testkit".to_vec(),
            vec![TxOut {
                value: reward,
                address: address_of(&self.miner),
            }],
        );
        let mut all = vec![coinbase];
        all.extend(transactions);
        let time_ms = self.tip().header.time_ms + self.params.target_block_time_ms;
        let context = self.next_header_context(time_ms);
        let mut block = Block {
            header: Header {
                version: Header::CURRENT_VERSION,
                prev_hash: self.tip().compute_hash(),
                merkle_root: compute_merkle_root(&[]),
                time_ms,
                bits: context.required_bits,
                nonce: 0,
            },
            transactions: all,
        };
        block.header.merkle_root = block.compute_merkle_root();
        block
    }

    /// Recomputes the Merkle root and finds a nonce.
    pub fn seal(block: &mut Block) {
        block.header.merkle_root = block.compute_merkle_root();
        solve(&mut block.header);
    }

    /// A valid next block holding `transactions`.
    pub fn build(&self, transactions: Vec<Transaction>, fees: Amount) -> Block {
        let mut block = self.template(transactions, fees);
        solve(&mut block.header);
        block
    }

    /// Validates `block` as the next block with the node's clock at `now_ms`.
    ///
    /// # Errors
    /// The first rule the block breaks.
    pub fn validate_with_clock(
        &self,
        block: &Block,
        now_ms: u64,
    ) -> Result<BlockConnection, ConsensusError> {
        let height = self.height().next();
        validate_header(
            self.params,
            &block.header,
            &self.next_header_context(now_ms),
        )?;
        let txids = validate_block_structure(self.params, block, height)?;
        connect_block_transactions(
            self.params,
            block,
            &txids,
            height,
            &self.utxo,
            &SequentialVerifier,
        )
    }

    /// Validates `block` as the next block, the clock reading the block's own time.
    ///
    /// # Errors
    /// The first rule the block breaks.
    pub fn validate(&self, block: &Block) -> Result<BlockConnection, ConsensusError> {
        self.validate_with_clock(block, block.header.time_ms)
    }

    /// Validates and appends `block`, applying it to the UTXO set.
    ///
    /// # Errors
    /// The first rule the block breaks; the chain is unchanged.
    pub fn push(&mut self, block: Block) -> Result<BlockConnection, ConsensusError> {
        let connection = self.validate(&block)?;
        for (outpoint, _) in &connection.spent {
            self.utxo.remove(outpoint);
        }
        self.utxo.extend(connection.created.iter().copied());
        self.blocks.push(block);
        Ok(connection)
    }

    /// Mines and appends `count` blocks with only a coinbase.
    pub fn mine_empty(&mut self, count: usize) {
        for _ in 0..count {
            let block = self.build(vec![], Amount::ZERO);
            self.push(block).expect("an empty template is valid");
        }
    }
}
