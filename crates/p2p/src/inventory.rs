//! Inventory: what a peer is known to have, our announcements to it (blocks by headers
//! where it can follow, the rest in `inv`), its announcements to us (`inv`: blocks and
//! transactions to ask for) and its requests (`getdata`: served from the chain and the
//! pool, what we lack in one `notfound`).
//!
//! ```text
//!   Announcements (relay.rs) ──▶ announce: skip what the peer has ──▶ headers / inv
//!   inv ──▶ on_inventory ──▶ unknown block: getheaders, unless one to this peer is
//!                             unanswered (sync.rs); unseen transactions:
//!                             transaction_fetch.rs
//!   getdata ──▶ on_get_data ──▶ block, cmpctblock, tx ... then one notfound
//! ```

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use powchain_consensus::{BlockHash, Transaction, Txid};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::compact::{ForPeers, MAX_COMPACT_BLOCK_DEPTH};
use crate::message::{InventoryItem, MAX_INVENTORY, Message};
use crate::rolling_set::{RollingSet, items_for_slots};
use crate::service::StoredBlock;
use crate::session::Session;
use crate::session_end::{CloseReason, SessionEnd, Stop};
use crate::upload::UPLOAD_TARGET_REACHED;

/// The most bytes of pooled transactions a `getdata` copies from the pool at once; the
/// next window is copied once these are sent.
pub(crate) const GETDATA_WINDOW_BYTES: usize = 1024 * 1024;

/// Inventory items a generation of a peer's [`KnownInventory`] holds: a table of 16,384
/// slots, about 150 KB, so about 300 KB a peer for the last 14,336 to 28,672 items (an
/// exact oldest-first set of 20,000 took about 1.1 MB: a map and a queue of 32,768 slots
/// of 16 bytes each).
pub(crate) const KNOWN_GENERATION: usize = items_for_slots(16_384);

/// Items a peer is known to have (announced to it, received from it, sent to it).
pub(crate) type KnownInventory = RollingSet<InventoryItem>;

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Session<S> {
    /// Announces `items` the peer is not known to have: blocks by headers where it can,
    /// the rest in `inv` messages.
    pub(crate) async fn announce(&mut self, items: Vec<InventoryItem>) -> Result<(), SessionEnd> {
        // Blocks the peer has are dropped before their headers are looked up; the rest
        // are checked once, by the insert that marks them known.
        let mut items: Vec<InventoryItem> = items
            .into_iter()
            .filter(|item| item.block_hash().is_none() || !self.known.contains(item))
            .collect();
        self.announce_blocks_by_headers(&mut items).await?;
        items.retain(|item| self.known.insert(item));
        for chunk in items.chunks(MAX_INVENTORY) {
            self.send(&Message::Inventory(chunk.to_vec())).await?;
        }
        Ok(())
    }

    pub(crate) async fn on_inventory(&mut self, mut items: Vec<InventoryItem>) -> Result<(), Stop> {
        // A compact block is something to ask for, not to announce: ignored.
        items.retain(|item| !matches!(item, InventoryItem::CompactBlock(_)));
        for item in &items {
            self.known.insert(item);
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
        let (mut unknown_block, mut peer_went_higher) = (false, false);
        for (hash, height) in blocks.iter().zip(&known_blocks) {
            match height {
                Some(height) => {
                    peer_went_higher |= self.p2p.registry.note_block(self.id, *hash, height.0)
                }
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
        if unknown_block {
            self.request_announced_headers().await?;
        } else if peer_went_higher {
            // The peer has blocks it was not known to have: it may be asked for them. An
            // announcement of blocks it was known to have (made under the node's lock,
            // the download plan would be made again for every such `inv`) changes nothing.
            self.p2p.pump_downloads().await;
        }
        Ok(())
    }

    /// Ends the session if `stored` is a historical block and the upload target is
    /// reached (upload.rs): what every path that sends a stored block to a peer asks.
    pub(crate) fn may_upload(&self, stored: &StoredBlock) -> Result<(), SessionEnd> {
        if self.p2p.upload.serves_block(
            stored.block.header.time_ms,
            stored.tip_time_ms,
            tokio::time::Instant::now(),
        ) {
            Ok(())
        } else {
            Err(SessionEnd::Closed(CloseReason::Told(UPLOAD_TARGET_REACHED)))
        }
    }

    pub(crate) async fn on_get_data(&mut self, mut items: Vec<InventoryItem>) -> Result<(), Stop> {
        // An item named twice is sent once: a thousand copies of one large block or
        // transaction would be a thousand reads and copies for 33 bytes each.
        let mut named = HashSet::with_capacity(items.len());
        items.retain(|item| named.insert(*item));
        let mut missing = Vec::new();
        // The transactions asked for, copied from the pool a window of bytes at a time as
        // they are sent (a getdata names up to 1,000 of up to 100 kB each).
        let txids: Vec<Txid> = items
            .iter()
            .filter_map(InventoryItem::transaction_id)
            .collect();
        // txids[..fetched] have been looked up; those not yet sent wait in `pooled`.
        let mut fetched = 0;
        let mut pooled: VecDeque<Option<Transaction>> = VecDeque::new();
        for item in items {
            let found = match item {
                // Passed on before validation (announced to the peers that push to us,
                // which may ask for it at once): perhaps not stored yet. Served as a
                // compact block only, which a receiver does not hold against its sender
                // if validation fails (BIP-152); a `notfound` made the asker leave it,
                // and when we were its only source, its tip stopped below the block.
                InventoryItem::CompactBlock(hash)
                    if let Some(recent) = self.p2p.passed_on(&hash) =>
                {
                    Some(Message::CompactBlock(Box::new(
                        ForPeers::new(Arc::unwrap_or_clone(recent), self.p2p.random(), |_| false)
                            .for_peer(&mut self.known),
                    )))
                }
                InventoryItem::Block(hash) | InventoryItem::CompactBlock(hash) => {
                    let block = self
                        .p2p
                        .stored_block_and_depth(hash)
                        .await
                        .ok_or(SessionEnd::Shutdown)?;
                    if let Some(stored) = &block {
                        self.may_upload(stored)?;
                    }
                    let block = block.map(|stored| (stored.block, stored.depth));
                    if let Some(height) = block
                        .as_ref()
                        .and_then(|(block, _)| block.coinbase_height())
                    {
                        // A peer that asked for a block will have it: keeps its height
                        // current.
                        self.p2p.registry.note_block(self.id, hash, height.0);
                    }
                    block.map(|(block, depth)| match item {
                        // Served after it joined our chain: its transactions have left
                        // our pool; those the peer is not known to have go whole. Deep
                        // below the tip it goes whole (MAX_COMPACT_BLOCK_DEPTH).
                        InventoryItem::CompactBlock(_) if depth <= MAX_COMPACT_BLOCK_DEPTH => {
                            Message::CompactBlock(Box::new(
                                ForPeers::new(block, self.p2p.random(), |_| false)
                                    .for_peer(&mut self.known),
                            ))
                        }
                        _ => Message::Block(Box::new(block)),
                    })
                }
                InventoryItem::Transaction(_) => {
                    if pooled.is_empty() && fetched < txids.len() {
                        let rest = txids[fetched..].to_vec();
                        let found = self
                            .p2p
                            .blocking(move |node| {
                                node.pool_transactions_by_id(&rest, GETDATA_WINDOW_BYTES)
                            })
                            .await
                            .ok_or(SessionEnd::Shutdown)?;
                        fetched += found.len();
                        pooled.extend(found);
                    }
                    pooled
                        .pop_front()
                        .flatten()
                        .map(|transaction| Message::Transaction(Box::new(transaction)))
                }
            };
            match found {
                Some(message) => {
                    self.known.insert(&match item {
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
    use powchain_consensus::{BlockHash, Txid};

    use super::*;

    #[test]
    fn a_peer_is_known_to_have_each_kind_of_item_apart() {
        let mut known = KnownInventory::new(KNOWN_GENERATION);
        let bytes = [7; 32];
        let block = InventoryItem::Block(BlockHash(bytes));
        let transaction = InventoryItem::Transaction(Txid(bytes));
        assert!(known.insert(&block));
        assert!(!known.insert(&block), "known already");
        // The same 32 bytes as another kind of item are another item.
        assert!(known.contains(&block) && !known.contains(&transaction));
        assert!(!known.contains(&InventoryItem::CompactBlock(BlockHash(bytes))));
        assert!(known.insert(&transaction));
        assert!(known.remove(&block) && !known.remove(&block));
        assert!(!known.contains(&block) && known.contains(&transaction));
    }
}
