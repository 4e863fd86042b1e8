//! The redb tables and how rows are encoded. Only this crate opens them.
//!
//! ```text
//!   meta          "network" | "genesis" | "tip" | "schema"   -> bytes
//!   blocks        BlockHash                                   -> Block (canonical encoding)
//!   block_index   BlockHash                                   -> IndexRecord
//!   heights       height (u64 BE)                             -> BlockHash   (main chain)
//!   utxo          OutPoint (txid ‖ vout BE)                   -> Coin
//!   undo          BlockHash                                   -> spent coins, in order ‖ checksum
//!   tx_index      Txid                                        -> BlockHash ‖ position (main chain)
//!   address_utxo  Address ‖ OutPoint                          -> Coin        (unspent, per address)
//!   address_txs   Address ‖ height (u64 BE) ‖ Txid            -> ()          (main-chain history)
//! ```
//!
//! Keys that are scanned in order (heights, per-address ranges) are big-endian, so redb's
//! byte order is numeric order.

use powchain_consensus::encode::{Decode, DecodeError, Encode, Reader, write_varint};
use powchain_consensus::{
    Address, BlockHash, BlockHeight, Coin, Header, OutPoint, Params, TxOut, Txid, Work,
};
use redb::{ReadTransaction, TableDefinition};

use crate::error::ChainError;

pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub(crate) const BLOCKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("blocks");
pub(crate) const BLOCK_INDEX: TableDefinition<&[u8], &[u8]> = TableDefinition::new("block_index");
pub(crate) const HEIGHTS: TableDefinition<u64, &[u8]> = TableDefinition::new("heights");
pub(crate) const UTXO: TableDefinition<&[u8], &[u8]> = TableDefinition::new("utxo");
pub(crate) const UNDO: TableDefinition<&[u8], &[u8]> = TableDefinition::new("undo");
pub(crate) const TX_INDEX: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tx_index");
pub(crate) const ADDRESS_UTXO: TableDefinition<&[u8], &[u8]> = TableDefinition::new("address_utxo");
pub(crate) const ADDRESS_TXS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("address_txs");

pub(crate) const META_NETWORK: &str = "network";
pub(crate) const META_GENESIS: &str = "genesis";
pub(crate) const META_TIP: &str = "tip";
pub(crate) const META_SCHEMA: &str = "schema";
/// The main-chain block up to which the coin tables and the per-transaction indexes are
/// written (see `overlay`): blocks above it are re-applied from their data at open.
pub(crate) const META_FLUSHED: &str = "flushed";
/// Version 2 added [`META_FLUSHED`]; a version 1 store (written block by block) is
/// upgraded at open by recording its tip as flushed. Version 3 added the undo data's
/// checksum ([`encode_undo`]); a version 2 store's undo rows get theirs at open.
pub(crate) const SCHEMA_VERSION: u64 = 3;
pub(crate) const SCHEMA_WITHOUT_FLUSHED_TIP: u64 = 1;
pub(crate) const SCHEMA_WITHOUT_UNDO_CHECKSUMS: u64 = 2;

/// Validation progress of a block in the index.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BlockStatus {
    /// The header passed its checks; the block's transactions are not (yet) stored.
    HeaderValid,
    /// The block's transactions are stored; they have not failed validation.
    DataStored,
    /// The block broke a consensus rule.
    Failed,
    /// An ancestor broke a consensus rule.
    FailedAncestor,
}

impl BlockStatus {
    fn to_byte(self) -> u8 {
        match self {
            BlockStatus::HeaderValid => 1,
            BlockStatus::DataStored => 2,
            BlockStatus::Failed => 3,
            BlockStatus::FailedAncestor => 4,
        }
    }

    fn from_byte(byte: u8) -> Result<BlockStatus, DecodeError> {
        Ok(match byte {
            1 => BlockStatus::HeaderValid,
            2 => BlockStatus::DataStored,
            3 => BlockStatus::Failed,
            4 => BlockStatus::FailedAncestor,
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "block status",
                    tag,
                });
            }
        })
    }

    /// True for [`BlockStatus::Failed`] and [`BlockStatus::FailedAncestor`].
    pub fn is_failed(self) -> bool {
        matches!(self, BlockStatus::Failed | BlockStatus::FailedAncestor)
    }
}

/// One row of the block index: a header and what the chain knows of it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct IndexRecord {
    /// The header.
    pub header: Header,
    /// Its height.
    pub height: BlockHeight,
    /// Work of the chain from genesis up to and including this block.
    pub chain_work: Work,
    /// How far validation got.
    pub status: BlockStatus,
    /// Order of arrival; among branches of equal work the first seen wins.
    pub sequence: u64,
}

impl IndexRecord {
    /// The record of `params`' genesis block: height 0, its own work, data stored, first
    /// seen. `None` if the genesis bits are not a valid target (a broken `Params`).
    pub fn genesis(params: &Params) -> Option<IndexRecord> {
        let header = params.genesis().header;
        Some(IndexRecord {
            header,
            height: BlockHeight::GENESIS,
            chain_work: header.bits.to_target().ok()?.to_work(),
            status: BlockStatus::DataStored,
            sequence: 0,
        })
    }
}

impl Encode for IndexRecord {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.header.encode_to(out);
        out.extend_from_slice(&self.height.0.to_le_bytes());
        out.extend_from_slice(&self.chain_work.to_be_bytes());
        out.push(self.status.to_byte());
        out.extend_from_slice(&self.sequence.to_le_bytes());
    }
}

impl Decode for IndexRecord {
    fn decode_from(reader: &mut Reader<'_>) -> Result<IndexRecord, DecodeError> {
        Ok(IndexRecord {
            header: Header::decode_from(reader)?,
            height: BlockHeight(reader.read_u64()?),
            chain_work: Work::from_be_bytes(reader.read_array()?),
            status: BlockStatus::from_byte(reader.read_u8()?)?,
            sequence: reader.read_u64()?,
        })
    }
}

/// The key of an outpoint: txid then vout big-endian (so a transaction's outputs sort together).
pub(crate) fn outpoint_key(outpoint: &OutPoint) -> [u8; 36] {
    let mut key = [0u8; 36];
    key[..32].copy_from_slice(&outpoint.txid.0);
    key[32..].copy_from_slice(&outpoint.vout.to_be_bytes());
    key
}

pub(crate) fn outpoint_from_key(key: &[u8]) -> Result<OutPoint, DecodeError> {
    let mut reader = Reader::new(key);
    let txid = Txid(reader.read_array()?);
    let vout = u32::from_be_bytes(reader.read_array()?);
    reader.finish()?;
    Ok(OutPoint { txid, vout })
}

pub(crate) fn encode_coin(coin: &Coin, out: &mut Vec<u8>) {
    coin.output.encode_to(out);
    out.extend_from_slice(&coin.height.0.to_le_bytes());
    out.push(u8::from(coin.is_coinbase));
}

pub(crate) fn decode_coin(reader: &mut Reader<'_>) -> Result<Coin, DecodeError> {
    let output = TxOut::decode_from(reader)?;
    let height = BlockHeight(reader.read_u64()?);
    let is_coinbase = match reader.read_u8()? {
        0 => false,
        1 => true,
        tag => {
            return Err(DecodeError::UnknownTag {
                what: "coinbase flag",
                tag,
            });
        }
    };
    Ok(Coin {
        output,
        height,
        is_coinbase,
    })
}

pub(crate) fn coin_bytes(coin: &Coin) -> Vec<u8> {
    let mut out = Vec::with_capacity(49);
    encode_coin(coin, &mut out);
    out
}

pub(crate) fn coin_from_bytes(bytes: &[u8]) -> Result<Coin, DecodeError> {
    let mut reader = Reader::new(bytes);
    let coin = decode_coin(&mut reader)?;
    reader.finish()?;
    Ok(coin)
}

/// Bytes of the checksum that ends a block's undo data.
const UNDO_CHECKSUM_BYTES: usize = 32;

/// Undo data of block `hash`: the coins it spent, so disconnecting it can restore them,
/// then a checksum of the block's hash and those bytes, as Bitcoin Core's undo files
/// carry. What else reads the row checks that it names the block's inputs in order
/// (`check_undo`); only the checksum sees a coin's value or address damaged, which would
/// otherwise go back into the UTXO set at a disconnect.
pub(crate) fn encode_undo(hash: &BlockHash, spent: &[(OutPoint, Coin)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + spent.len() * 85 + UNDO_CHECKSUM_BYTES);
    write_varint(&mut out, spent.len() as u64);
    for (outpoint, coin) in spent {
        outpoint.encode_to(&mut out);
        encode_coin(coin, &mut out);
    }
    let checksum = undo_checksum(hash, &out);
    out.extend_from_slice(&checksum);
    out
}

/// The checksum of block `hash`'s undo data `body`: the double SHA-256 of the two.
fn undo_checksum(hash: &BlockHash, body: &[u8]) -> [u8; UNDO_CHECKSUM_BYTES] {
    powchain_consensus::hash::sha256d_parts(&[&hash.0, body])
}

/// `row` (undo data of a version 2 store, without a checksum) with the checksum of block
/// `hash` added: the schema upgrade's step.
///
/// # Errors
/// [`ChainError::CorruptRow`] if the row does not decode as undo data without a checksum
/// (a row that has one already, in a store whose schema number was damaged, never does:
/// its checksum is left over), so a damaged row is not given a checksum that vouches
/// for it.
pub(crate) fn undo_with_checksum(hash: &BlockHash, row: &[u8]) -> Result<Vec<u8>, ChainError> {
    decode_undo_body(row).map_err(crate::error::corrupt("undo data"))?;
    let mut out = row.to_vec();
    out.extend_from_slice(&undo_checksum(hash, row));
    Ok(out)
}

/// Block `hash`'s undo data read back from `bytes`.
///
/// # Errors
/// [`ChainError::Corrupt`] naming the block if the checksum does not match (damage on
/// disk), [`ChainError::CorruptRow`] if the bytes do not decode.
pub(crate) fn decode_undo(
    hash: &BlockHash,
    bytes: &[u8],
) -> Result<Vec<(OutPoint, Coin)>, ChainError> {
    let damaged = || {
        ChainError::Corrupt(format!(
            "the undo data of block {hash} does not match its checksum"
        ))
    };
    let body_length = bytes
        .len()
        .checked_sub(UNDO_CHECKSUM_BYTES)
        .ok_or_else(damaged)?;
    let (body, checksum) = bytes.split_at(body_length);
    if undo_checksum(hash, body) != checksum {
        return Err(damaged());
    }
    decode_undo_body(body).map_err(crate::error::corrupt("undo data"))
}

fn decode_undo_body(bytes: &[u8]) -> Result<Vec<(OutPoint, Coin)>, DecodeError> {
    let mut reader = Reader::new(bytes);
    let count = reader.read_count("undo entries", usize::MAX, 36 + 49)?;
    let mut spent = Vec::with_capacity(count);
    for _ in 0..count {
        let outpoint = OutPoint::decode_from(&mut reader)?;
        spent.push((outpoint, decode_coin(&mut reader)?));
    }
    reader.finish()?;
    Ok(spent)
}

/// Where a confirmed transaction sits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TxLocation {
    /// The block that holds it.
    pub block_hash: BlockHash,
    /// Its position in the block.
    pub position: u32,
}

pub(crate) fn tx_location_bytes(location: &TxLocation) -> [u8; 36] {
    let mut bytes = [0u8; 36];
    bytes[..32].copy_from_slice(&location.block_hash.0);
    bytes[32..].copy_from_slice(&location.position.to_le_bytes());
    bytes
}

pub(crate) fn tx_location_from_bytes(bytes: &[u8]) -> Result<TxLocation, DecodeError> {
    let mut reader = Reader::new(bytes);
    let block_hash = BlockHash(reader.read_array()?);
    let position = reader.read_u32()?;
    reader.finish()?;
    Ok(TxLocation {
        block_hash,
        position,
    })
}

pub(crate) fn address_utxo_key(address: &Address, outpoint: &OutPoint) -> [u8; 68] {
    let mut key = [0u8; 68];
    key[..32].copy_from_slice(&address.0);
    key[32..].copy_from_slice(&outpoint_key(outpoint));
    key
}

/// A history row as (address, height, txid): ordered as the history table's keys are.
pub(crate) type HistoryKey = (Address, BlockHeight, Txid);

pub(crate) fn address_tx_key(address: &Address, height: BlockHeight, txid: &Txid) -> [u8; 72] {
    let mut key = [0u8; 72];
    key[..32].copy_from_slice(&address.0);
    key[32..40].copy_from_slice(&height.0.to_be_bytes());
    key[40..].copy_from_slice(&txid.0);
    key
}

/// The key range holding every row of `address` in an address table: from the bare
/// address (below every longer key it prefixes) to the address followed by more `0xff`
/// bytes than any key holds (above every such key, even one whose txid starts with `0xff`).
pub(crate) fn address_range(address: &Address) -> ([u8; 32], [u8; 73]) {
    let mut end = [0xffu8; 73];
    end[..32].copy_from_slice(&address.0);
    (address.0, end)
}

/// An unspent output of an address, as the API shows it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AddressCoin {
    /// Where it is.
    pub outpoint: OutPoint,
    /// What it is.
    pub coin: Coin,
}

/// One main-chain transaction that paid or spent from an address.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AddressTx {
    /// Height of its block.
    pub height: BlockHeight,
    /// The transaction.
    pub txid: Txid,
}

/// A 32-byte hash stored as a row's key or value; `what` names it in the error.
pub(crate) fn hash_from_row(bytes: &[u8], what: &str) -> Result<BlockHash, ChainError> {
    bytes
        .try_into()
        .map(BlockHash)
        .map_err(|_| ChainError::Corrupt(format!("{what} is not a 32-byte hash")))
}

/// The block hash recorded under `key` in the META table (the tip, the flushed tip).
pub(crate) fn read_meta_hash(
    read: &ReadTransaction,
    key: &str,
    what: &str,
) -> Result<BlockHash, ChainError> {
    let bytes = read
        .open_table(META)?
        .get(key)?
        .ok_or_else(|| ChainError::Corrupt(format!("no {what} recorded")))?
        .value()
        .to_vec();
    hash_from_row(&bytes, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_range_includes_outpoints_whose_txid_starts_with_ff() {
        let address = Address([0x42; 32]);
        let (start, end) = address_range(&address);
        let range = start.as_slice()..end.as_slice();
        for first_byte in [0x00, 0x7f, 0xff] {
            let mut txid = [first_byte; 32];
            txid[1] = 0xff;
            let outpoint = OutPoint {
                txid: Txid(txid),
                vout: u32::MAX,
            };
            let coin_key = address_utxo_key(&address, &outpoint);
            assert!(range.contains(&coin_key.as_slice()), "{first_byte:#x}");
            let tx_key = address_tx_key(&address, BlockHeight(u64::MAX), &Txid(txid));
            assert!(range.contains(&tx_key.as_slice()), "{first_byte:#x}");
        }
        let mut next = address.0;
        next[31] += 1;
        let zero = OutPoint {
            txid: Txid([0; 32]),
            vout: 0,
        };
        let other = address_utxo_key(&Address(next), &zero);
        assert!(!range.contains(&other.as_slice()));
    }
}
