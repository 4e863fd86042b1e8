//! The JSON shapes of the API (camelCase), built from consensus and node types.
//!
//! Blocks keep the tutorial's names where they exist (`hash`, `lastHash`, `timestamp`,
//! `nonce`, `difficulty`, `data` = the transactions) and add `height`, `bits`,
//! `merkleRoot`. Amounts are integers of base units (1 coin = 100,000,000 units).

use powchain_consensus::encode::Encode;
use powchain_consensus::{Block, BlockHeight, Network, Params, Transaction, TxInputs, hex};
use serde::Serialize;

/// What every block summary shows: the header's fields under the tutorial's names where
/// it has them, the height, and the block's size. A block (`BlockJson`) and a header page
/// entry (`HeaderJson`, `GET /headers`) both flatten it into their JSON.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct BlockSummaryJson {
    /// Its hash.
    pub hash: String,
    /// Its height.
    pub height: u64,
    /// The parent's hash (the tutorial's name).
    pub last_hash: String,
    /// Block time, ms since the epoch.
    pub timestamp: u64,
    /// The nonce that met the target.
    pub nonce: u64,
    /// How many times harder than the network's easiest target.
    pub difficulty: f64,
    /// The compact target, hex.
    pub bits: String,
    /// Merkle root of the transactions.
    pub merkle_root: String,
    /// Header version.
    pub version: u32,
    /// Encoded size in bytes.
    pub size: usize,
    /// Number of transactions.
    pub transaction_count: usize,
}

impl BlockSummaryJson {
    /// Summarises `block` at `height`.
    pub fn new(params: &Params, block: &Block, height: BlockHeight) -> BlockSummaryJson {
        BlockSummaryJson {
            hash: block.compute_hash().to_string(),
            height: height.0,
            last_hash: block.header.prev_hash.to_string(),
            timestamp: block.header.time_ms,
            nonce: block.header.nonce,
            difficulty: params.difficulty(block.header.bits),
            bits: block.header.bits.to_string(),
            merkle_root: block.header.merkle_root.to_string(),
            version: block.header.version,
            size: block.compute_size(),
            transaction_count: block.transactions.len(),
        }
    }
}

/// A block.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct BlockJson {
    /// Header fields, height and size.
    #[serde(flatten)]
    pub summary: BlockSummaryJson,
    /// Blocks on top of it plus one, if on the main chain.
    pub confirmations: Option<u64>,
    /// The transactions (the tutorial's `data`).
    pub data: Vec<TransactionJson>,
}

impl BlockJson {
    /// Describes `block` at `height`; `confirmations` is `None` off the main chain.
    pub fn new(
        params: &Params,
        block: &Block,
        height: BlockHeight,
        confirmations: Option<u64>,
    ) -> BlockJson {
        BlockJson {
            summary: BlockSummaryJson::new(params, block, height),
            confirmations,
            data: block
                .transactions
                .iter()
                .map(|transaction| TransactionJson::new(params.network, transaction))
                .collect(),
        }
    }
}

/// A transaction input.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct InputJson {
    /// The spent output's transaction.
    pub txid: String,
    /// The spent output's index.
    pub vout: u32,
    /// The BIP-340 signature, hex.
    pub signature: String,
    /// The spent output's address, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The spent output's amount in units, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<u64>,
}

/// A transaction output.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct OutputJson {
    /// Its index.
    pub n: u32,
    /// Who it pays.
    pub address: String,
    /// How much, in units.
    pub amount: u64,
}

/// A coinbase input.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct CoinbaseJson {
    /// The height it commits to.
    pub height: u64,
    /// The note, as text (invalid UTF-8 replaced).
    pub data: String,
    /// The note, hex.
    pub data_hex: String,
}

/// A transaction.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct TransactionJson {
    /// Its id.
    pub txid: String,
    /// Format version.
    pub version: u32,
    /// Encoded size in bytes.
    pub size: usize,
    /// The coinbase input, for a coinbase.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coinbase: Option<CoinbaseJson>,
    /// Spent outputs (empty for a coinbase).
    pub inputs: Vec<InputJson>,
    /// New outputs.
    pub outputs: Vec<OutputJson>,
    /// Sum of outputs, units.
    pub output_total: u64,
    /// The canonical encoding, hex (what `POST /tx` takes).
    pub hex: String,
}

impl TransactionJson {
    /// Describes `transaction` (input addresses and amounts left unknown).
    pub fn new(network: Network, transaction: &Transaction) -> TransactionJson {
        let encoded = transaction.encode_to_vec();
        let coinbase = match &transaction.inputs {
            TxInputs::Coinbase(input) => Some(CoinbaseJson {
                height: input.height.0,
                data: String::from_utf8_lossy(&input.data).into_owned(),
                data_hex: hex::encode(&input.data),
            }),
            TxInputs::Spends(_) => None,
        };
        TransactionJson {
            txid: transaction.compute_txid().to_string(),
            version: transaction.version,
            size: encoded.len(),
            coinbase,
            inputs: transaction
                .spends()
                .iter()
                .map(|input| InputJson {
                    txid: input.prevout.txid.to_string(),
                    vout: input.prevout.vout,
                    signature: hex::encode(&input.signature.0),
                    address: None,
                    amount: None,
                })
                .collect(),
            outputs: transaction
                .outputs
                .iter()
                .enumerate()
                .map(|(index, output)| OutputJson {
                    n: index as u32,
                    address: output.address.to_bech32(network),
                    amount: output.value.to_units(),
                })
                .collect(),
            output_total: transaction
                .output_total()
                .map_or(0, |total| total.to_units()),
            hex: hex::encode(&encoded),
        }
    }
}
