//! Transactions: inputs that spend earlier outputs, outputs that pay amounts to addresses.
//!
//! ```text
//!   Transaction { version, inputs, outputs }
//!     inputs = Coinbase { height, data }            (first transaction of a block only)
//!            | Spends [ TxIn { prevout: OutPoint { txid, vout }, signature } ... ]
//!     outputs = [ TxOut { value: Amount, address } ... ]
//! ```
//!
//! The txid is SHA-256d over the whole canonical encoding, signatures included, so the
//! Merkle root of a block commits to every byte of every transaction. BIP-340 signatures
//! cannot be altered by a third party, so txids are not malleable in transit.

use std::fmt;

use crate::address::Address;
use crate::amount::Amount;
use crate::encode::{Decode, DecodeError, Encode, Reader, write_bytes, write_varint};
use crate::hash::{Txid, sha256d};
use crate::hex;

/// The largest encoded transaction, in bytes. Bounds decoding and is a consensus rule.
pub const MAX_TX_BYTES: usize = 100_000;

/// Most elements reserved up front while decoding a list; larger lists grow as they decode.
const PREALLOCATE_LIMIT: usize = 1024;

/// The height of a block: the genesis block is at 0.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Debug)]
pub struct BlockHeight(pub u64);

impl BlockHeight {
    /// The genesis block's height.
    pub const GENESIS: BlockHeight = BlockHeight(0);

    /// The height as a number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The next height.
    pub const fn next(self) -> BlockHeight {
        BlockHeight(self.0.saturating_add(1))
    }

    /// The previous height, `None` at genesis.
    pub const fn previous(self) -> Option<BlockHeight> {
        match self.0.checked_sub(1) {
            Some(height) => Some(BlockHeight(height)),
            None => None,
        }
    }
}

impl fmt::Display for BlockHeight {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.0)
    }
}

/// A reference to one output of an earlier transaction.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct OutPoint {
    /// The transaction that created the output.
    pub txid: Txid,
    /// The output's index in that transaction.
    pub vout: u32,
}

impl OutPoint {
    /// Encoded size in bytes.
    pub const ENCODED_BYTES: usize = 36;
}

impl fmt::Display for OutPoint {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}:{}", self.txid, self.vout)
    }
}

/// A 64-byte BIP-340 Schnorr signature.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Signature({})", hex::encode(&self.0))
    }
}

/// An input that spends an earlier output with a signature from the output's address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TxIn {
    /// The output spent.
    pub prevout: OutPoint,
    /// Signature over the transaction's signature hash for this input.
    pub signature: Signature,
}

impl TxIn {
    /// Encoded size in bytes.
    pub const ENCODED_BYTES: usize = OutPoint::ENCODED_BYTES + 64;
}

/// An output: an amount paid to an address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TxOut {
    /// How much.
    pub value: Amount,
    /// To whom.
    pub address: Address,
}

impl TxOut {
    /// Encoded size in bytes.
    pub const ENCODED_BYTES: usize = 8 + 32;
}

/// The input of a coinbase transaction: new coins, no outputs spent.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct CoinbaseInput {
    /// The height of the block the coinbase belongs to. Committing to it makes every
    /// coinbase, and so every txid, unique.
    pub height: BlockHeight,
    /// A short free-form note (the tutorial's block `data`), bounded by consensus.
    pub data: Vec<u8>,
}

/// Where a transaction's value comes from.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum TxInputs {
    /// New coins created by the block's miner.
    Coinbase(CoinbaseInput),
    /// Earlier outputs being spent.
    Spends(Vec<TxIn>),
}

/// A transaction.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Transaction {
    /// Format version; currently 1. Other values are valid (for future upgrades) but
    /// carry no different meaning.
    pub version: u32,
    /// The coinbase input or the spent outputs.
    pub inputs: TxInputs,
    /// The new outputs.
    pub outputs: Vec<TxOut>,
}

impl Transaction {
    /// The version this code writes.
    pub const CURRENT_VERSION: u32 = 1;

    /// A coinbase transaction.
    pub fn new_coinbase(height: BlockHeight, data: Vec<u8>, outputs: Vec<TxOut>) -> Transaction {
        Transaction {
            version: Transaction::CURRENT_VERSION,
            inputs: TxInputs::Coinbase(CoinbaseInput { height, data }),
            outputs,
        }
    }

    /// True for a coinbase transaction.
    pub fn is_coinbase(&self) -> bool {
        matches!(self.inputs, TxInputs::Coinbase(_))
    }

    /// The spending inputs (empty for a coinbase).
    pub fn spends(&self) -> &[TxIn] {
        match &self.inputs {
            TxInputs::Coinbase(_) => &[],
            TxInputs::Spends(inputs) => inputs,
        }
    }

    /// The coinbase input, if this is a coinbase.
    pub fn coinbase(&self) -> Option<&CoinbaseInput> {
        match &self.inputs {
            TxInputs::Coinbase(coinbase) => Some(coinbase),
            TxInputs::Spends(_) => None,
        }
    }

    /// SHA-256d of the encoding: hashes the whole transaction.
    pub fn compute_txid(&self) -> Txid {
        Txid(sha256d(&self.encode_to_vec()))
    }

    /// Encoded size in bytes (computed by encoding).
    pub fn compute_size(&self) -> usize {
        self.encode_to_vec().len()
    }

    /// Sum of the output values, `None` if it leaves the money range.
    pub fn output_total(&self) -> Option<Amount> {
        Amount::checked_sum(self.outputs.iter().map(|output| output.value))
    }
}

impl Encode for OutPoint {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.txid.0);
        out.extend_from_slice(&self.vout.to_le_bytes());
    }
}

impl Decode for OutPoint {
    fn decode_from(reader: &mut Reader<'_>) -> Result<OutPoint, DecodeError> {
        Ok(OutPoint {
            txid: Txid(reader.read_array()?),
            vout: reader.read_u32()?,
        })
    }
}

impl Encode for TxOut {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.value.to_units().to_le_bytes());
        out.extend_from_slice(&self.address.0);
    }
}

impl Decode for TxOut {
    fn decode_from(reader: &mut Reader<'_>) -> Result<TxOut, DecodeError> {
        let units = reader.read_u64()?;
        let value = Amount::from_units(units).map_err(|error| DecodeError::InvalidValue {
            what: "output value",
            reason: error.to_string(),
        })?;
        Ok(TxOut {
            value,
            address: Address(reader.read_array()?),
        })
    }
}

const COINBASE_TAG: u8 = 0;
const SPENDS_TAG: u8 = 1;

impl Encode for Transaction {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.version.to_le_bytes());
        match &self.inputs {
            TxInputs::Coinbase(coinbase) => {
                out.push(COINBASE_TAG);
                write_varint(out, coinbase.height.0);
                write_bytes(out, &coinbase.data);
            }
            TxInputs::Spends(inputs) => {
                out.push(SPENDS_TAG);
                write_varint(out, inputs.len() as u64);
                for input in inputs {
                    input.prevout.encode_to(out);
                    out.extend_from_slice(&input.signature.0);
                }
            }
        }
        write_varint(out, self.outputs.len() as u64);
        for output in &self.outputs {
            output.encode_to(out);
        }
    }
}

impl Decode for Transaction {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Transaction, DecodeError> {
        let start = reader.position();
        let version = reader.read_u32()?;
        let inputs = match reader.read_u8()? {
            COINBASE_TAG => {
                let height = BlockHeight(reader.read_varint()?);
                let data = reader.read_bytes("coinbase data", MAX_TX_BYTES)?.to_vec();
                TxInputs::Coinbase(CoinbaseInput { height, data })
            }
            SPENDS_TAG => {
                let count = reader.read_count("inputs", MAX_TX_BYTES, TxIn::ENCODED_BYTES)?;
                let mut inputs = Vec::with_capacity(count.min(PREALLOCATE_LIMIT));
                for _ in 0..count {
                    let prevout = OutPoint::decode_from(reader)?;
                    let signature = Signature(reader.read_array()?);
                    inputs.push(TxIn { prevout, signature });
                }
                TxInputs::Spends(inputs)
            }
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "transaction input kind",
                    tag,
                });
            }
        };
        let count = reader.read_count("outputs", MAX_TX_BYTES, TxOut::ENCODED_BYTES)?;
        let mut outputs = Vec::with_capacity(count.min(PREALLOCATE_LIMIT));
        for _ in 0..count {
            outputs.push(TxOut::decode_from(reader)?);
        }
        let size = reader.position() - start;
        if size > MAX_TX_BYTES {
            return Err(DecodeError::LengthTooLarge {
                what: "transaction",
                length: size as u64,
                max: MAX_TX_BYTES as u64,
            });
        }
        Ok(Transaction {
            version,
            inputs,
            outputs,
        })
    }
}
