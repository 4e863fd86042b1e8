//! Block headers and blocks.
//!
//! The header is a fixed 88 bytes:
//!
//! ```text
//!   offset  size  field
//!        0     4  version        (u32 LE)
//!        4    32  prev_hash      the parent's BlockHash
//!       36    32  merkle_root    commits to every transaction
//!       68     8  time_ms        milliseconds since the Unix epoch (u64 LE)
//!       76     4  bits           CompactTarget (u32 LE)
//!       80     8  nonce          (u64 LE)
//!   ──────────────────────────── SHA-256 block boundary at 64: bytes 0..64 are the first
//!   block (version, prev_hash, merkle_root[..28]); bytes 64..88 (merkle_root[28..], time,
//!   bits, nonce) plus padding are the last. A miner hashes the first block once (the
//!   midstate) and then only the last block per nonce, plus the outer SHA-256.
//! ```

use crate::encode::{Decode, DecodeError, Encode, Reader, write_varint};
use crate::hash::{BlockHash, MerkleRoot, Txid, sha256d};
use crate::merkle::compute_merkle_root;
use crate::target::CompactTarget;
use crate::transaction::{BlockHeight, Transaction};

/// Size of an encoded header.
pub const HEADER_BYTES: usize = 88;

/// A block header: everything the proof of work covers.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Header {
    /// Format version; currently 1.
    pub version: u32,
    /// Hash of the parent block's header (zero for genesis).
    pub prev_hash: BlockHash,
    /// Merkle root of the block's transaction ids.
    pub merkle_root: MerkleRoot,
    /// Block time in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The target this block's hash must meet, in compact form.
    pub bits: CompactTarget,
    /// The value miners vary to search for a hash that meets the target.
    pub nonce: u64,
}

impl Header {
    /// The version this code writes.
    pub const CURRENT_VERSION: u32 = 1;

    /// The fixed-size encoding.
    pub fn to_bytes(&self) -> [u8; HEADER_BYTES] {
        let mut bytes = [0u8; HEADER_BYTES];
        bytes[0..4].copy_from_slice(&self.version.to_le_bytes());
        bytes[4..36].copy_from_slice(&self.prev_hash.0);
        bytes[36..68].copy_from_slice(&self.merkle_root.0);
        bytes[68..76].copy_from_slice(&self.time_ms.to_le_bytes());
        bytes[76..80].copy_from_slice(&self.bits.0.to_le_bytes());
        bytes[80..88].copy_from_slice(&self.nonce.to_le_bytes());
        bytes
    }

    /// Reads the fixed-size encoding.
    pub fn from_bytes(bytes: &[u8; HEADER_BYTES]) -> Header {
        let field = |start: usize, end: usize| &bytes[start..end];
        let array32 = |start: usize| {
            let mut array = [0u8; 32];
            array.copy_from_slice(field(start, start + 32));
            array
        };
        let mut u32_bytes = [0u8; 4];
        let mut u64_bytes = [0u8; 8];
        u32_bytes.copy_from_slice(field(0, 4));
        let version = u32::from_le_bytes(u32_bytes);
        u64_bytes.copy_from_slice(field(68, 76));
        let time_ms = u64::from_le_bytes(u64_bytes);
        u32_bytes.copy_from_slice(field(76, 80));
        let bits = CompactTarget(u32::from_le_bytes(u32_bytes));
        u64_bytes.copy_from_slice(field(80, 88));
        let nonce = u64::from_le_bytes(u64_bytes);
        Header {
            version,
            prev_hash: BlockHash(array32(4)),
            merkle_root: MerkleRoot(array32(36)),
            time_ms,
            bits,
            nonce,
        }
    }

    /// SHA-256d of the header: the block's hash.
    pub fn compute_hash(&self) -> BlockHash {
        BlockHash(sha256d(&self.to_bytes()))
    }
}

impl Encode for Header {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes());
    }
}

impl Decode for Header {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Header, DecodeError> {
        Ok(Header::from_bytes(&reader.read_array()?))
    }
}

/// A block: a header and the transactions its Merkle root commits to.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Block {
    /// The header.
    pub header: Header,
    /// The transactions; the first must be the coinbase.
    pub transactions: Vec<Transaction>,
}

/// Most elements reserved up front while decoding a list.
const PREALLOCATE_LIMIT: usize = 1024;

/// Smallest possible encoded transaction: version, tag, two empty counts.
const MIN_TX_BYTES: usize = 4 + 1 + 1 + 1;

/// Hard cap on a block's transaction count while decoding. The real bound is the size
/// limit, enforced by the caller's message size limit and by validation.
const MAX_BLOCK_TRANSACTIONS: usize = 1_000_000;

impl Block {
    /// The block's hash (its header's).
    pub fn compute_hash(&self) -> BlockHash {
        self.header.compute_hash()
    }

    /// The txid of every transaction, in order.
    pub fn compute_txids(&self) -> Vec<Txid> {
        self.transactions
            .iter()
            .map(Transaction::compute_txid)
            .collect()
    }

    /// The Merkle root of the transactions (to compare with the header's).
    pub fn compute_merkle_root(&self) -> MerkleRoot {
        compute_merkle_root(&self.compute_txids())
    }

    /// Encoded size in bytes.
    pub fn compute_size(&self) -> usize {
        self.encode_to_vec().len()
    }

    /// The height its coinbase claims, if the first transaction is a coinbase.
    pub fn coinbase_height(&self) -> Option<BlockHeight> {
        self.transactions
            .first()
            .and_then(Transaction::coinbase)
            .map(|coinbase| coinbase.height)
    }
}

impl Encode for Block {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.header.encode_to(out);
        write_varint(out, self.transactions.len() as u64);
        for transaction in &self.transactions {
            transaction.encode_to(out);
        }
    }
}

impl Block {
    /// Decodes a block of at most `max_transactions` transactions, refusing a larger count
    /// before any transaction is read. A decoded transaction takes several times its
    /// encoded size in memory (a 2 MB block of the smallest transactions that decode, 7
    /// bytes each, would make some 285,000), so a caller that knows a tighter bound than
    /// [`Decode::decode_from`]'s (the peer-to-peer layer: the most payments a valid block
    /// can hold) passes it here.
    ///
    /// # Errors
    /// As [`Decode::decode_from`], and for a count above `max_transactions`.
    pub fn decode_bounded(
        reader: &mut Reader<'_>,
        max_transactions: usize,
    ) -> Result<Block, DecodeError> {
        let header = Header::decode_from(reader)?;
        let count = reader.read_count(
            "transactions",
            max_transactions.min(MAX_BLOCK_TRANSACTIONS),
            MIN_TX_BYTES,
        )?;
        // Grow as transactions really decode: a decoded transaction takes several times its
        // encoded size in memory, so reserving for the claimed count would multiply the input.
        let mut transactions = Vec::with_capacity(count.min(PREALLOCATE_LIMIT));
        for _ in 0..count {
            transactions.push(Transaction::decode_from(reader)?);
        }
        Ok(Block {
            header,
            transactions,
        })
    }
}

impl Decode for Block {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Block, DecodeError> {
        Block::decode_bounded(reader, MAX_BLOCK_TRANSACTIONS)
    }
}
