//! The JSON shapes that more than one route file serves (camelCase): a block's header
//! fields (blocks and header pages) and transactions with their inputs and outputs (blocks,
//! the pool, payments, lookups). A shape only one route file serves lives in that file.
//!
//! Header fields keep the tutorial's names where they exist (`hash`, `lastHash`,
//! `timestamp`, `nonce`, `difficulty`) and add `height`, `bits`, `merkleRoot`. Amounts are
//! integers of base units (1 coin = 100,000,000 units).

use powchain_consensus::encode::Encode;
use powchain_consensus::{
    BlockHash, BlockHeight, Header, Network, Params, Transaction, TxInputs, hex,
};
use serde::Serialize;

/// The header fields a block (`GET /blocks`, `blocks.rs`) and a header page entry
/// (`GET /headers`, `charts.rs`) both show first, under the tutorial's names where it has
/// them. Each flattens it into its own JSON and adds its fields after these.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct HeaderFieldsJson {
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
}

impl HeaderFieldsJson {
    /// Describes `header`, whose hash is `hash`, at `height`.
    pub fn new(
        params: &Params,
        hash: BlockHash,
        header: &Header,
        height: BlockHeight,
    ) -> HeaderFieldsJson {
        HeaderFieldsJson {
            hash: hash.to_string(),
            height: height.0,
            last_hash: header.prev_hash.to_string(),
            timestamp: header.time_ms,
            nonce: header.nonce,
            difficulty: params.difficulty(header.bits),
            bits: header.bits.to_string(),
            merkle_root: header.merkle_root.to_string(),
            version: header.version,
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

#[cfg(test)]
pub(crate) mod tests {
    use std::fmt;

    use powchain_consensus::Network;
    use serde::Deserializer as _;
    use serde::de::{IgnoredAny, MapAccess, Visitor};

    use super::*;

    /// The keys of `HeaderFieldsJson`, in the order the tutorial's block JSON has them; a
    /// block and a header page entry both start with them.
    pub(crate) const HEADER_FIELDS: [&str; 9] = [
        "hash",
        "height",
        "lastHash",
        "timestamp",
        "nonce",
        "difficulty",
        "bits",
        "merkleRoot",
        "version",
    ];

    /// The keys of the JSON object `json` in the order they were written (a
    /// `serde_json::Value` would sort them), so a test can pin a shape's field order.
    pub(crate) fn keys_in_order(json: &str) -> Vec<String> {
        struct Keys;
        impl<'de> Visitor<'de> for Keys {
            type Value = Vec<String>;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
                let mut keys = Vec::new();
                while let Some((key, IgnoredAny)) = map.next_entry::<String, IgnoredAny>()? {
                    keys.push(key);
                }
                Ok(keys)
            }
        }
        serde_json::Deserializer::from_str(json)
            .deserialize_map(Keys)
            .expect("a JSON object")
    }

    #[test]
    fn header_fields_keep_the_tutorials_order() {
        let params = Network::Regtest.params();
        let genesis = params.genesis();
        let fields = HeaderFieldsJson::new(
            params,
            genesis.compute_hash(),
            &genesis.header,
            BlockHeight(0),
        );
        let json = serde_json::to_string(&fields).expect("serializes");
        assert_eq!(keys_in_order(&json), HEADER_FIELDS);
    }
}
