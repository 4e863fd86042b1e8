//! Inventory: what a peer is known to have, our announcements to it (blocks by headers
//! where it can follow, the rest in `inv`), its announcements to us (`inv`: blocks and
//! transactions to ask for) and its requests (`getdata`: served from the chain and the
//! pool, what we lack in one `notfound`).
//!
//! ```text
//!   Announcements (relay.rs) ──▶ announce: skip what the peer has ──▶ headers / inv
//!   inv ──▶ on_inventory ──▶ unknown block: getheaders (sync.rs); unseen transactions:
//!                             transaction_fetch.rs
//!   getdata ──▶ on_get_data ──▶ block, cmpctblock, tx ... then one notfound
//! ```

use std::collections::HashSet;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

use powchain_consensus::{Block, BlockHash, Txid};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::compact::compact_block;
use crate::message::{InventoryItem, MAX_INVENTORY, Message};
use crate::session::Session;
use crate::session_end::{SessionEnd, Stop};

/// Inventory items a generation of a peer's [`KnownInventory`] holds: as many as a table of
/// 16,384 slots takes before it grows (seven eighths of them).
const KNOWN_GENERATION: usize = 14_336;

/// Items a peer is known to have: the newest [`KNOWN_GENERATION`] to twice as many, each
/// held as a 64-bit hash under a key of this process's drawing rather than whole.
///
/// Every session keeps one, so its size counts per peer. Items go into the current
/// generation; when it is full, the previous one is forgotten and the current one takes
/// its place (Bitcoin Core's rolling filters forget by generations too). Two tables of
/// 16,384 slots of 8 bytes (and a control byte each) take about 300 KB whatever the
/// traffic, against about 1.1 MB for the exact oldest-first set of 20,000 this replaced
/// (a map and a queue of 32,768 slots of 16 bytes each) and 3.2 MB for whole items.
///
/// A session that took one item for another would not announce the second to the peer,
/// nor take it from the peer's announcement as held; that needs two items with the same
/// hash, which the peer cannot aim for without the key, and which chance gives once in
/// 2^64 / 28,672^2 (about 2.2 × 10^10) full sets.
pub(crate) struct KnownInventory {
    current: HashSet<u64, BuildHasherDefault<KeyedHash>>,
    previous: HashSet<u64, BuildHasherDefault<KeyedHash>>,
    key: RandomState,
}

/// The hasher of a set of keyed hashes: the value is its own hash (it is uniform already,
/// and a peer cannot choose it without the key), so a lookup costs no second SipHash.
#[derive(Default)]
struct KeyedHash(u64);

impl Hasher for KeyedHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; any other input is folded in rather than dropped.
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

impl KnownInventory {
    /// An empty memory of what a peer has.
    pub(crate) fn new() -> KnownInventory {
        KnownInventory {
            current: HashSet::default(),
            previous: HashSet::default(),
            key: RandomState::new(),
        }
    }

    fn hash(&self, item: &InventoryItem) -> u64 {
        self.key.hash_one(item)
    }

    /// True if the peer is known to have `item`.
    pub(crate) fn contains(&self, item: &InventoryItem) -> bool {
        let hash = self.hash(item);
        self.current.contains(&hash) || self.previous.contains(&hash)
    }

    /// Remembers that the peer has `item` (a whole generation of the oldest is forgotten
    /// when the current one is full); true if it was not known.
    pub(crate) fn insert(&mut self, item: InventoryItem) -> bool {
        let hash = self.hash(&item);
        if self.previous.contains(&hash) {
            return false;
        }
        if self.current.len() >= KNOWN_GENERATION && !self.current.contains(&hash) {
            // The previous generation's table is reused: memory stays at two tables.
            std::mem::swap(&mut self.current, &mut self.previous);
            self.current.clear();
        }
        self.current.insert(hash)
    }

    /// Forgets that the peer has `item`; true if it was known.
    pub(crate) fn remove(&mut self, item: &InventoryItem) -> bool {
        let hash = self.hash(item);
        // Not short-circuited: an item is in one generation at most, but both are cleared.
        self.current.remove(&hash) | self.previous.remove(&hash)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Session<S> {
    /// Announces `items` the peer is not known to have: blocks by headers where it can,
    /// the rest in `inv` messages.
    pub(crate) async fn announce(&mut self, items: Vec<InventoryItem>) -> Result<(), SessionEnd> {
        let mut items: Vec<InventoryItem> = items
            .into_iter()
            .filter(|item| !self.known.contains(item))
            .collect();
        self.announce_blocks_by_headers(&mut items).await?;
        items.retain(|item| self.known.insert(*item));
        for chunk in items.chunks(MAX_INVENTORY) {
            self.send(&Message::Inventory(chunk.to_vec())).await?;
        }
        Ok(())
    }

    pub(crate) async fn on_inventory(&mut self, mut items: Vec<InventoryItem>) -> Result<(), Stop> {
        // A compact block is something to ask for, not to announce: ignored.
        items.retain(|item| !matches!(item, InventoryItem::CompactBlock(_)));
        for item in &items {
            self.known.insert(*item);
        }
        let blocks: Vec<BlockHash> = items.iter().filter_map(InventoryItem::block_hash).collect();
        let transactions: Vec<Txid> = items
            .iter()
            .filter_map(InventoryItem::transaction_id)
            .collect();
        let (known_blocks, pooled) = {
            let (blocks, transactions) = (blocks.clone(), transactions.clone());
            self.p2p
                .blocking(move |node| {
                    (
                        node.block_heights(&blocks),
                        node.pool_contains(&transactions),
                    )
                })
                .await
                .ok_or(SessionEnd::Shutdown)?
        };
        let mut unknown_block = false;
        for (hash, height) in blocks.iter().zip(&known_blocks) {
            match height {
                Some(height) => self.p2p.registry.note_block(self.id, *hash, height.0),
                None => unknown_block = true,
            }
        }
        let unseen: Vec<Txid> = transactions
            .iter()
            .zip(pooled)
            .filter(|(txid, in_pool)| !in_pool && !self.p2p.has_seen_transaction(txid))
            .map(|(txid, _)| *txid)
            .collect();
        // Older announcements over the bound first, so parents are asked before children.
        self.ask_for_deferred_transactions().await?;
        let announced = self.p2p.transactions_announced(self.id, &unseen);
        self.defer_transactions(announced.over_bound);
        self.ask_for_transactions(announced.ask).await?;
        // Ask again even if a request is under way: its answer may end before this block.
        if unknown_block {
            self.request_headers(None).await?;
        } else if known_blocks.iter().any(Option::is_some) {
            self.p2p.pump_downloads().await;
        }
        Ok(())
    }

    pub(crate) async fn on_get_data(&mut self, items: Vec<InventoryItem>) -> Result<(), Stop> {
        let mut missing = Vec::new();
        // Every transaction asked for, looked up in one call (a getdata names up to 1,000).
        let txids: Vec<Txid> = items
            .iter()
            .filter_map(InventoryItem::transaction_id)
            .collect();
        let mut pooled = if txids.is_empty() {
            Vec::new()
        } else {
            self.p2p
                .blocking(move |node| node.pool_transactions_by_id(&txids))
                .await
                .ok_or(SessionEnd::Shutdown)?
        }
        .into_iter();
        for item in items {
            let found = match item {
                InventoryItem::Block(hash) | InventoryItem::CompactBlock(hash) => {
                    let block = self
                        .p2p
                        .stored_block(hash)
                        .await
                        .ok_or(SessionEnd::Shutdown)?;
                    if let Some(height) = block.as_ref().and_then(Block::coinbase_height) {
                        // A peer that asked for a block will have it: keeps its height
                        // current.
                        self.p2p.registry.note_block(self.id, hash, height.0);
                    }
                    block.map(|block| match item {
                        // Served after it joined our chain: its transactions have left
                        // our pool, and the peer's pool likely holds them.
                        InventoryItem::CompactBlock(_) => Message::CompactBlock(Box::new(
                            compact_block(&block, self.p2p.random(), |_| false),
                        )),
                        _ => Message::Block(Box::new(block)),
                    })
                }
                InventoryItem::Transaction(_) => pooled
                    .next()
                    .flatten()
                    .map(|transaction| Message::Transaction(Box::new(transaction))),
            };
            match found {
                Some(message) => {
                    self.known.insert(match item {
                        InventoryItem::CompactBlock(hash) => InventoryItem::Block(hash),
                        other => other,
                    });
                    self.send(&message).await?;
                }
                None => missing.push(item),
            }
        }
        if !missing.is_empty() {
            // The peer does not have what we could not send: announce it again if we get it.
            for item in &missing {
                self.known.remove(item);
            }
            self.send(&Message::NotFound(missing)).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_known_to_have_each_item_apart_and_the_oldest_is_forgotten_first() {
        let mut known = KnownInventory::new();
        let bytes = [7; 32];
        let block = InventoryItem::Block(BlockHash(bytes));
        let transaction = InventoryItem::Transaction(Txid(bytes));
        assert!(known.insert(block));
        assert!(!known.insert(block), "known already");
        // The same 32 bytes as another kind of item are another item.
        assert!(known.contains(&block) && !known.contains(&transaction));
        assert!(!known.contains(&InventoryItem::CompactBlock(BlockHash(bytes))));
        assert!(known.insert(transaction));
        assert!(known.remove(&block) && !known.remove(&block));
        assert!(!known.contains(&block) && known.contains(&transaction));
        // Full: the oldest generation goes as a whole, never the newest items.
        let item = |number: u32| {
            let mut hash = [0; 32];
            hash[..4].copy_from_slice(&number.to_le_bytes());
            InventoryItem::Transaction(Txid(hash))
        };
        let generation = KNOWN_GENERATION as u32;
        for number in 0..2 * generation - 1 {
            assert!(known.insert(item(number)), "{number} is new");
        }
        // `transaction` and the first generation - 1 numbers filled the first generation.
        assert!(known.contains(&transaction) && known.contains(&item(0)));
        assert!(
            !known.insert(item(0)),
            "an old item is still known, not made new"
        );
        known.insert(item(u32::MAX));
        assert!(!known.contains(&transaction), "the oldest generation went");
        assert!(!known.contains(&item(generation - 2)));
        for number in generation - 1..2 * generation - 1 {
            assert!(
                known.contains(&item(number)),
                "{number} is in the newest two"
            );
        }
        assert!(known.contains(&item(u32::MAX)));
        // Memory stays at two tables however many items pass.
        for number in 0..10 * generation {
            known.insert(item(number ^ 0x8000_0000));
        }
        assert!(known.current.capacity() <= 16_384 * 7 / 8);
        assert!(known.previous.capacity() <= 16_384 * 7 / 8);
        assert!(known.current.len() + known.previous.len() <= 2 * KNOWN_GENERATION);
    }
}
