//! The wire protocol's messages and their encoding.
//!
//! Every WebSocket binary message is one protocol message:
//!
//! ```text
//!   [protocol version: u8] [message type: u8] [payload: canonical encoding]
//! ```
//!
//! The payload uses the consensus crate's canonical encoding (LEB128 counts, little-endian
//! integers); every list has a hard maximum checked before anything is allocated, and the
//! WebSocket layer refuses frames above [`MAX_MESSAGE_BYTES`] before reading them.
//! `docs/PROTOCOL.md` describes each message.

use powchain_consensus::encode::{Decode, DecodeError, Encode, Reader, write_bytes, write_varint};
use powchain_consensus::{Block, BlockHash, Header, Transaction, TxIn, TxOut, Txid, Work};
use thiserror::Error;

use crate::short_id::{SHORT_ID_BYTES, SHORT_ID_MASK};

/// The protocol version this code speaks.
pub const PROTOCOL_VERSION: u8 = 1;
/// The largest message: a maximum-size block plus framing.
pub const MAX_MESSAGE_BYTES: usize = 2_000_000 + 1024;
/// Most hashes in a block locator.
pub const MAX_LOCATOR_HASHES: usize = 64;
/// Most headers in one `Headers` message.
pub const MAX_HEADERS: usize = 2000;
/// Most items in one `Inv`, `GetData` or `NotFound`.
pub const MAX_INVENTORY: usize = 1000;
/// Most addresses in one `Addr`.
pub const MAX_ADDRESSES: usize = 100;
/// Longest peer address or user agent, in bytes.
pub const MAX_TEXT_BYTES: usize = 128;
/// The smallest valid payment: version, tag, one input, one output, two counts.
const MIN_PAYMENT_BYTES: usize = 4 + 1 + 1 + TxIn::ENCODED_BYTES + 1 + TxOut::ENCODED_BYTES;
/// The smallest transaction that decodes (version, tag, two empty counts).
const MIN_TRANSACTION_BYTES: usize = 4 + 1 + 1 + 1;
/// Most transactions a `cmpctblock`, `getblocktxn` or `blocktxn` may name: the smallest
/// valid payments that fit in a maximum-size message, plus a coinbase (13,613). Checked
/// before anything is allocated, so a compact block cannot make a node reserve more
/// slots than a real block could fill.
pub const MAX_COMPACT_TRANSACTIONS: usize = MAX_MESSAGE_BYTES / MIN_PAYMENT_BYTES + 1;

/// A block as its header, short ids of the transactions the receiver probably has, and
/// the transactions it probably lacks (BIP-152's `cmpctblock`; `docs/PROTOCOL.md`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CompactBlock {
    /// The block's header.
    pub header: Header,
    /// Keys the short ids with the header (`short_id.rs`).
    pub nonce: u64,
    /// 48-bit short ids of the transactions not prefilled, in block order.
    pub short_ids: Vec<u64>,
    /// Transactions sent whole, by their index in the block, ascending.
    pub prefilled: Vec<PrefilledTransaction>,
}

impl CompactBlock {
    /// How many transactions the block holds.
    pub fn transaction_count(&self) -> usize {
        self.short_ids.len() + self.prefilled.len()
    }
}

/// A transaction a compact block carries whole.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PrefilledTransaction {
    /// Its index in the block.
    pub index: usize,
    /// The transaction.
    pub transaction: Transaction,
}

/// A block or a transaction, named by its hash (on the wire: a kind byte, 0 for a block,
/// 1 for a transaction and 2 for a block wanted as a compact block, then the 32-byte
/// hash).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum InventoryItem {
    /// A block, by hash.
    Block(BlockHash),
    /// A transaction, by txid.
    Transaction(Txid),
    /// A block asked for as a compact block (`getdata` only; BIP-152's low-bandwidth
    /// mode), or reported missing (`notfound`).
    CompactBlock(BlockHash),
}

impl InventoryItem {
    /// The block this item names, if it names one as a whole block (`Block`).
    pub fn block_hash(&self) -> Option<BlockHash> {
        match self {
            InventoryItem::Block(hash) => Some(*hash),
            InventoryItem::Transaction(_) | InventoryItem::CompactBlock(_) => None,
        }
    }

    /// The transaction this item names, if it names one.
    pub fn transaction_id(&self) -> Option<Txid> {
        match self {
            InventoryItem::Transaction(txid) => Some(*txid),
            InventoryItem::Block(_) | InventoryItem::CompactBlock(_) => None,
        }
    }
}

/// The first message each side sends.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Hello {
    /// The sender's network (see `Network::magic`).
    pub network_magic: u8,
    /// The sender's genesis block.
    pub genesis: BlockHash,
    /// The sender's tip.
    pub best_hash: BlockHash,
    /// The sender's tip height.
    pub best_height: u64,
    /// The sender's chain work.
    pub best_work: Work,
    /// The port the sender accepts peers on (0: it does not).
    pub listen_port: u16,
    /// A random number fixed for the sender's lifetime: detects connections to ourselves
    /// and second connections to the same node.
    pub node_nonce: u64,
    /// Free text naming the software.
    pub user_agent: String,
}

/// A protocol message.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Message {
    /// Handshake.
    Hello(Hello),
    /// Liveness check; answered with `Pong` and the same nonce.
    Ping(u64),
    /// Answer to `Ping`.
    Pong(u64),
    /// Asks for main-chain headers after the first locator hash the receiver knows, up to
    /// `stop` (zero: no stop) or [`MAX_HEADERS`].
    GetHeaders {
        /// Hashes from the sender's tip back to genesis, sparser further back.
        locator: Vec<BlockHash>,
        /// Last header wanted, or zero.
        stop: BlockHash,
    },
    /// Headers, each the child of the one before.
    Headers(Vec<Header>),
    /// Announces blocks or transactions the sender has.
    Inventory(Vec<InventoryItem>),
    /// Asks for blocks or transactions.
    GetData(Vec<InventoryItem>),
    /// Items asked for that the sender does not have.
    NotFound(Vec<InventoryItem>),
    /// A block.
    Block(Box<Block>),
    /// A transaction.
    Transaction(Box<Transaction>),
    /// Asks for peer addresses.
    GetAddresses,
    /// Peer addresses (`ws://host:port`).
    Addresses(Vec<String>),
    /// Says the sender relays compact blocks, and whether it asks to be sent new blocks
    /// as `cmpctblock` at once, before they are fully validated (high-bandwidth mode).
    SendCompact {
        /// True: push new blocks to the sender unasked.
        high_bandwidth: bool,
    },
    /// A block as header, short ids and prefilled transactions.
    CompactBlock(Box<CompactBlock>),
    /// Asks for the transactions of a compact block at these indexes.
    GetBlockTransactions {
        /// The block.
        block: BlockHash,
        /// Indexes in the block, ascending.
        indexes: Vec<usize>,
    },
    /// The transactions a `getblocktxn` asked for, in its order.
    BlockTransactions {
        /// The block.
        block: BlockHash,
        /// The transactions.
        transactions: Vec<Transaction>,
    },
}

/// Why bytes are not a message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MessageError {
    /// Empty input.
    #[error("empty message")]
    Empty,
    /// Another protocol version.
    #[error("protocol version {got}, this node speaks {expected}")]
    WrongVersion {
        /// The version byte.
        got: u8,
        /// Ours.
        expected: u8,
    },
    /// An unknown message type.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// Larger than any message may be.
    #[error("message of {size} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The payload does not decode.
    #[error("malformed {kind} message: {source}")]
    Malformed {
        /// The message type.
        kind: &'static str,
        /// Why.
        source: DecodeError,
    },
}

impl MessageError {
    /// The rule name used for bans and logs.
    pub fn rule(&self) -> &'static str {
        match self {
            MessageError::Empty | MessageError::Malformed { .. } => "malformed-message",
            MessageError::WrongVersion { .. } => "wrong-protocol-version",
            MessageError::UnknownType(_) => "unknown-message-type",
            MessageError::TooLarge { .. } => "oversized-message",
        }
    }
}

const HELLO: u8 = 0;
const PING: u8 = 1;
const PONG: u8 = 2;
const GET_HEADERS: u8 = 3;
const HEADERS: u8 = 4;
const INVENTORY: u8 = 5;
const GET_DATA: u8 = 6;
const NOT_FOUND: u8 = 7;
const BLOCK: u8 = 8;
const TRANSACTION: u8 = 9;
const GET_ADDRESSES: u8 = 10;
const ADDRESSES: u8 = 11;
const SEND_COMPACT: u8 = 12;
const COMPACT_BLOCK: u8 = 13;
const GET_BLOCK_TRANSACTIONS: u8 = 14;
const BLOCK_TRANSACTIONS: u8 = 15;
/// Message types there are (type bytes 0 to 15).
pub(crate) const MESSAGE_TYPES: usize = 16;

/// The name of the message with type byte `kind`, if there is one.
pub(crate) fn type_name(kind: u8) -> Option<&'static str> {
    Some(match kind {
        HELLO => "hello",
        PING => "ping",
        PONG => "pong",
        GET_HEADERS => "getheaders",
        HEADERS => "headers",
        INVENTORY => "inv",
        GET_DATA => "getdata",
        NOT_FOUND => "notfound",
        BLOCK => "block",
        TRANSACTION => "tx",
        GET_ADDRESSES => "getaddr",
        ADDRESSES => "addr",
        SEND_COMPACT => "sendcmpct",
        COMPACT_BLOCK => "cmpctblock",
        GET_BLOCK_TRANSACTIONS => "getblocktxn",
        BLOCK_TRANSACTIONS => "blocktxn",
        _ => return None,
    })
}

/// Ascending transaction indexes as BIP-152 writes them: each as its distance from the one
/// before plus one, so runs of neighbours take a byte each. One cursor serves a list of
/// indexes (`getblocktxn`) and indexes interleaved with transactions (`cmpctblock`).
#[derive(Default)]
struct IndexGaps {
    /// The smallest index the next one may be.
    next: u64,
}

impl IndexGaps {
    fn write(&mut self, out: &mut Vec<u8>, index: usize) {
        write_varint(out, (index as u64).saturating_sub(self.next));
        self.next = index as u64 + 1;
    }

    /// Reads the next index; it must stay below `limit`.
    fn read(
        &mut self,
        reader: &mut Reader<'_>,
        limit: usize,
        what: &'static str,
    ) -> Result<usize, DecodeError> {
        let index = self.next.saturating_add(reader.read_varint()?);
        if index >= limit as u64 {
            return Err(DecodeError::InvalidValue {
                what,
                reason: format!("{index} is past the block's {limit} transactions"),
            });
        }
        self.next = index + 1;
        Ok(index as usize)
    }
}

/// Writes ascending indexes (see [`IndexGaps`]).
fn write_indexes(out: &mut Vec<u8>, indexes: impl Iterator<Item = usize>) {
    let mut gaps = IndexGaps::default();
    for index in indexes {
        gaps.write(out, index);
    }
}

/// Reads `count` indexes written by [`write_indexes`]; each must stay below `limit`.
fn read_indexes(
    reader: &mut Reader<'_>,
    count: usize,
    limit: usize,
) -> Result<Vec<usize>, DecodeError> {
    let mut gaps = IndexGaps::default();
    (0..count)
        .map(|_| gaps.read(reader, limit, "transaction index"))
        .collect()
}

impl Message {
    /// The message's name, for logs.
    pub fn name(&self) -> &'static str {
        type_name(self.type_byte()).unwrap_or("unknown")
    }

    /// The message's type byte.
    pub(crate) fn type_byte(&self) -> u8 {
        match self {
            Message::Hello(_) => HELLO,
            Message::Ping(_) => PING,
            Message::Pong(_) => PONG,
            Message::GetHeaders { .. } => GET_HEADERS,
            Message::Headers(_) => HEADERS,
            Message::Inventory(_) => INVENTORY,
            Message::GetData(_) => GET_DATA,
            Message::NotFound(_) => NOT_FOUND,
            Message::Block(_) => BLOCK,
            Message::Transaction(_) => TRANSACTION,
            Message::GetAddresses => GET_ADDRESSES,
            Message::Addresses(_) => ADDRESSES,
            Message::SendCompact { .. } => SEND_COMPACT,
            Message::CompactBlock(_) => COMPACT_BLOCK,
            Message::GetBlockTransactions { .. } => GET_BLOCK_TRANSACTIONS,
            Message::BlockTransactions { .. } => BLOCK_TRANSACTIONS,
        }
    }

    /// The bytes of one WebSocket binary message.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![PROTOCOL_VERSION, self.type_byte()];
        match self {
            Message::Hello(hello) => {
                out.push(hello.network_magic);
                out.extend_from_slice(&hello.genesis.0);
                out.extend_from_slice(&hello.best_hash.0);
                out.extend_from_slice(&hello.best_height.to_le_bytes());
                out.extend_from_slice(&hello.best_work.to_be_bytes());
                out.extend_from_slice(&hello.listen_port.to_le_bytes());
                out.extend_from_slice(&hello.node_nonce.to_le_bytes());
                write_bytes(&mut out, hello.user_agent.as_bytes());
            }
            Message::Ping(nonce) | Message::Pong(nonce) => {
                out.extend_from_slice(&nonce.to_le_bytes())
            }
            Message::GetHeaders { locator, stop } => {
                write_varint(&mut out, locator.len() as u64);
                for hash in locator {
                    out.extend_from_slice(&hash.0);
                }
                out.extend_from_slice(&stop.0);
            }
            Message::Headers(headers) => {
                write_varint(&mut out, headers.len() as u64);
                for header in headers {
                    header.encode_to(&mut out);
                }
            }
            Message::Inventory(items) | Message::GetData(items) | Message::NotFound(items) => {
                write_varint(&mut out, items.len() as u64);
                for item in items {
                    let (tag, hash) = match item {
                        InventoryItem::Block(hash) => (0, &hash.0),
                        InventoryItem::Transaction(txid) => (1, &txid.0),
                        InventoryItem::CompactBlock(hash) => (2, &hash.0),
                    };
                    out.push(tag);
                    out.extend_from_slice(hash);
                }
            }
            Message::Block(block) => block.encode_to(&mut out),
            Message::Transaction(transaction) => transaction.encode_to(&mut out),
            Message::GetAddresses => {}
            Message::Addresses(addresses) => {
                write_varint(&mut out, addresses.len() as u64);
                for address in addresses {
                    write_bytes(&mut out, address.as_bytes());
                }
            }
            Message::SendCompact { high_bandwidth } => out.push(u8::from(*high_bandwidth)),
            Message::CompactBlock(compact) => {
                compact.header.encode_to(&mut out);
                out.extend_from_slice(&compact.nonce.to_le_bytes());
                write_varint(&mut out, compact.short_ids.len() as u64);
                for id in &compact.short_ids {
                    out.extend_from_slice(&id.to_le_bytes()[..SHORT_ID_BYTES]);
                }
                write_varint(&mut out, compact.prefilled.len() as u64);
                let mut gaps = IndexGaps::default();
                for prefilled in &compact.prefilled {
                    gaps.write(&mut out, prefilled.index);
                    prefilled.transaction.encode_to(&mut out);
                }
            }
            Message::GetBlockTransactions { block, indexes } => {
                out.extend_from_slice(&block.0);
                write_varint(&mut out, indexes.len() as u64);
                write_indexes(&mut out, indexes.iter().copied());
            }
            Message::BlockTransactions {
                block,
                transactions,
            } => {
                out.extend_from_slice(&block.0);
                write_varint(&mut out, transactions.len() as u64);
                for transaction in transactions {
                    transaction.encode_to(&mut out);
                }
            }
        }
        out
    }

    /// Reads one message.
    ///
    /// # Errors
    /// [`MessageError`] naming what is wrong.
    pub fn from_bytes(bytes: &[u8]) -> Result<Message, MessageError> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(MessageError::TooLarge {
                size: bytes.len(),
                max: MAX_MESSAGE_BYTES,
            });
        }
        let [version, kind, payload @ ..] = bytes else {
            return Err(MessageError::Empty);
        };
        if *version != PROTOCOL_VERSION {
            return Err(MessageError::WrongVersion {
                got: *version,
                expected: PROTOCOL_VERSION,
            });
        }
        let mut reader = Reader::new(payload);
        let name = type_name(*kind).ok_or(MessageError::UnknownType(*kind))?;
        let malformed = |source| MessageError::Malformed { kind: name, source };
        let message = Self::decode_payload(*kind, &mut reader).map_err(malformed)?;
        reader.finish().map_err(malformed)?;
        Ok(message)
    }

    fn decode_payload(kind: u8, reader: &mut Reader<'_>) -> Result<Message, DecodeError> {
        Ok(match kind {
            HELLO => {
                let network_magic = reader.read_u8()?;
                let genesis = BlockHash(reader.read_array()?);
                let best_hash = BlockHash(reader.read_array()?);
                let best_height = reader.read_u64()?;
                let best_work = Work::from_be_bytes(reader.read_array()?);
                let listen_port = u16::from_le_bytes(reader.read_array()?);
                let node_nonce = reader.read_u64()?;
                let user_agent =
                    std::str::from_utf8(reader.read_bytes("user agent", MAX_TEXT_BYTES)?)
                        .map_err(|_| DecodeError::InvalidValue {
                            what: "user agent",
                            reason: "not UTF-8".into(),
                        })?
                        .to_owned();
                Message::Hello(Hello {
                    network_magic,
                    genesis,
                    best_hash,
                    best_height,
                    best_work,
                    listen_port,
                    node_nonce,
                    user_agent,
                })
            }
            PING => Message::Ping(reader.read_u64()?),
            PONG => Message::Pong(reader.read_u64()?),
            GET_HEADERS => {
                let count = reader.read_count("locator", MAX_LOCATOR_HASHES, 32)?;
                let mut locator = Vec::with_capacity(count);
                for _ in 0..count {
                    locator.push(BlockHash(reader.read_array()?));
                }
                Message::GetHeaders {
                    locator,
                    stop: BlockHash(reader.read_array()?),
                }
            }
            HEADERS => {
                let count = reader.read_count("headers", MAX_HEADERS, 88)?;
                let mut headers = Vec::with_capacity(count);
                for _ in 0..count {
                    headers.push(Header::decode_from(reader)?);
                }
                Message::Headers(headers)
            }
            INVENTORY | GET_DATA | NOT_FOUND => {
                let count = reader.read_count("inventory", MAX_INVENTORY, 33)?;
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    let item: fn([u8; 32]) -> InventoryItem = match reader.read_u8()? {
                        0 => |hash| InventoryItem::Block(BlockHash(hash)),
                        1 => |hash| InventoryItem::Transaction(Txid(hash)),
                        2 => |hash| InventoryItem::CompactBlock(BlockHash(hash)),
                        tag => {
                            return Err(DecodeError::UnknownTag {
                                what: "inventory kind",
                                tag,
                            });
                        }
                    };
                    items.push(item(reader.read_array()?));
                }
                match kind {
                    INVENTORY => Message::Inventory(items),
                    GET_DATA => Message::GetData(items),
                    _ => Message::NotFound(items),
                }
            }
            // No valid block holds more transactions than a compact block may name.
            BLOCK => Message::Block(Box::new(Block::decode_bounded(
                reader,
                MAX_COMPACT_TRANSACTIONS,
            )?)),
            TRANSACTION => Message::Transaction(Box::new(Transaction::decode_from(reader)?)),
            GET_ADDRESSES => Message::GetAddresses,
            ADDRESSES => {
                let count = reader.read_count("addresses", MAX_ADDRESSES, 1)?;
                let mut addresses = Vec::with_capacity(count);
                for _ in 0..count {
                    let bytes = reader.read_bytes("address", MAX_TEXT_BYTES)?;
                    let text =
                        std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidValue {
                            what: "address",
                            reason: "not UTF-8".into(),
                        })?;
                    addresses.push(text.to_owned());
                }
                Message::Addresses(addresses)
            }
            SEND_COMPACT => Message::SendCompact {
                high_bandwidth: match reader.read_u8()? {
                    0 => false,
                    1 => true,
                    tag => {
                        return Err(DecodeError::UnknownTag {
                            what: "high-bandwidth flag",
                            tag,
                        });
                    }
                },
            },
            COMPACT_BLOCK => Message::CompactBlock(Box::new(decode_compact_block(reader)?)),
            GET_BLOCK_TRANSACTIONS => {
                let block = BlockHash(reader.read_array()?);
                let count = reader.read_count("indexes", MAX_COMPACT_TRANSACTIONS, 1)?;
                let indexes = read_indexes(reader, count, MAX_COMPACT_TRANSACTIONS)?;
                Message::GetBlockTransactions { block, indexes }
            }
            BLOCK_TRANSACTIONS => {
                let block = BlockHash(reader.read_array()?);
                let count = reader.read_count(
                    "transactions",
                    MAX_COMPACT_TRANSACTIONS,
                    MIN_TRANSACTION_BYTES,
                )?;
                // Grown as they decode: a decoded transaction takes more memory than its
                // bytes, so the claimed count is not reserved up front.
                let mut transactions = Vec::with_capacity(count.min(1024));
                for _ in 0..count {
                    transactions.push(Transaction::decode_from(reader)?);
                }
                Message::BlockTransactions {
                    block,
                    transactions,
                }
            }
            other => {
                return Err(DecodeError::UnknownTag {
                    what: "message type",
                    tag: other,
                });
            }
        })
    }
}

/// A `cmpctblock` payload: at most [`MAX_COMPACT_TRANSACTIONS`] transactions in all, at
/// least one, prefilled indexes ascending and inside the block.
fn decode_compact_block(reader: &mut Reader<'_>) -> Result<CompactBlock, DecodeError> {
    let header = Header::decode_from(reader)?;
    let nonce = reader.read_u64()?;
    let count = reader.read_count("short ids", MAX_COMPACT_TRANSACTIONS, SHORT_ID_BYTES)?;
    let mut short_ids = Vec::with_capacity(count);
    for _ in 0..count {
        let mut bytes = [0u8; 8];
        bytes[..SHORT_ID_BYTES].copy_from_slice(reader.read_slice(SHORT_ID_BYTES)?);
        short_ids.push(u64::from_le_bytes(bytes) & SHORT_ID_MASK);
    }
    let room = MAX_COMPACT_TRANSACTIONS - short_ids.len();
    let prefilled_count = reader.read_count("prefilled", room, 1 + MIN_TRANSACTION_BYTES)?;
    let total = short_ids.len() + prefilled_count;
    if total == 0 {
        return Err(DecodeError::InvalidValue {
            what: "compact block",
            reason: "it names no transaction".into(),
        });
    }
    let mut prefilled = Vec::with_capacity(prefilled_count.min(1024));
    let mut gaps = IndexGaps::default();
    for _ in 0..prefilled_count {
        let index = gaps.read(reader, total, "prefilled index")?;
        prefilled.push(PrefilledTransaction {
            index,
            transaction: Transaction::decode_from(reader)?,
        });
    }
    Ok(CompactBlock {
        header,
        nonce,
        short_ids,
        prefilled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use powchain_consensus::testkit::TestChain;
    use powchain_consensus::{Amount, Network};
    use proptest::prelude::*;

    fn samples() -> Vec<Message> {
        let mut chain = TestChain::regtest_with_mature_coins(1);
        chain.mine_empty(1);
        let block = chain.tip().clone();
        vec![
            Message::Hello(Hello {
                network_magic: Network::Regtest.magic(),
                genesis: chain.blocks[0].compute_hash(),
                best_hash: block.compute_hash(),
                best_height: 3,
                best_work: Work::ZERO,
                listen_port: 5001,
                node_nonce: 42,
                user_agent: "powchain/0.1".into(),
            }),
            Message::Ping(7),
            Message::Pong(7),
            Message::GetHeaders {
                locator: vec![block.compute_hash(), BlockHash::ZERO],
                stop: BlockHash::ZERO,
            },
            Message::Headers(chain.blocks.iter().map(|block| block.header).collect()),
            Message::Inventory(vec![InventoryItem::Block(BlockHash([1; 32]))]),
            Message::GetData(vec![
                InventoryItem::Transaction(Txid([2; 32])),
                InventoryItem::CompactBlock(BlockHash([3; 32])),
            ]),
            Message::NotFound(vec![]),
            Message::Block(Box::new(chain.build(vec![], Amount::ZERO))),
            Message::Transaction(Box::new(block.transactions[0].clone())),
            Message::GetAddresses,
            Message::Addresses(vec!["ws://127.0.0.1:5001".into()]),
            Message::SendCompact {
                high_bandwidth: true,
            },
            Message::CompactBlock(Box::new(CompactBlock {
                header: block.header,
                nonce: 9,
                short_ids: vec![SHORT_ID_MASK, 1, 0x0102_0304_0506],
                prefilled: vec![
                    PrefilledTransaction {
                        index: 0,
                        transaction: block.transactions[0].clone(),
                    },
                    PrefilledTransaction {
                        index: 3,
                        transaction: block.transactions[0].clone(),
                    },
                ],
            })),
            Message::GetBlockTransactions {
                block: block.compute_hash(),
                indexes: vec![1, 2, 200, 13_000],
            },
            Message::BlockTransactions {
                block: block.compute_hash(),
                transactions: block.transactions.clone(),
            },
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for message in samples() {
            let bytes = message.to_bytes();
            assert_eq!(
                Message::from_bytes(&bytes),
                Ok(message.clone()),
                "{}",
                message.name()
            );
        }
    }

    #[test]
    fn framing_errors_are_named() {
        assert_eq!(Message::from_bytes(&[]), Err(MessageError::Empty));
        assert_eq!(
            Message::from_bytes(&[PROTOCOL_VERSION]),
            Err(MessageError::Empty)
        );
        assert!(matches!(
            Message::from_bytes(&[9, PING, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(MessageError::WrongVersion { got: 9, .. })
        ));
        assert_eq!(
            Message::from_bytes(&[PROTOCOL_VERSION, 200]),
            Err(MessageError::UnknownType(200))
        );
        let mut trailing = Message::Ping(1).to_bytes();
        trailing.push(0);
        assert_eq!(
            Message::from_bytes(&trailing).map_err(|error| error.rule()),
            Err("malformed-message")
        );
        let huge = vec![PROTOCOL_VERSION; MAX_MESSAGE_BYTES + 1];
        assert!(matches!(
            Message::from_bytes(&huge),
            Err(MessageError::TooLarge { .. })
        ));
        // A block of more transactions than a valid block can hold (the smallest that
        // decode are 7 bytes, a valid payment 147) is refused before any is read.
        let tiny = Transaction {
            version: 1,
            inputs: powchain_consensus::TxInputs::Spends(Vec::new()),
            outputs: Vec::new(),
        };
        let block = |count: usize| {
            Message::Block(Box::new(Block {
                header: Header::decode_from(&mut Reader::new(&[0; 88])).expect("a header"),
                transactions: vec![tiny.clone(); count],
            }))
            .to_bytes()
        };
        assert!(Message::from_bytes(&block(MAX_COMPACT_TRANSACTIONS)).is_ok());
        assert_eq!(
            Message::from_bytes(&block(MAX_COMPACT_TRANSACTIONS + 1)).map_err(|error| error.rule()),
            Err("malformed-message")
        );
        // A headers message claiming more than the limit is refused before allocating.
        let mut claim = vec![PROTOCOL_VERSION, HEADERS];
        write_varint(&mut claim, 1 << 40);
        assert_eq!(
            Message::from_bytes(&claim).map_err(|error| error.rule()),
            Err("malformed-message")
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Message::from_bytes(&bytes);
        }

        #[test]
        fn mutated_messages_never_panic(index in 0usize..16, position in any::<usize>(), value in any::<u8>(), cut in any::<usize>()) {
            let samples = samples();
            let mut bytes = samples[index % samples.len()].to_bytes();
            let at = position % bytes.len();
            bytes[at] = value;
            bytes.truncate(cut % (bytes.len() + 1));
            if let Ok(message) = Message::from_bytes(&bytes) {
                // Whatever decodes re-encodes to the same bytes: one encoding per message.
                prop_assert_eq!(message.to_bytes(), bytes);
            }
        }
    }
}
