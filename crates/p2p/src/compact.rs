//! Compact block relay (BIP-152): a new block crosses a link as its header, 6-byte short
//! ids of the transactions the receiver already has in its pool, and the few it lacks;
//! and the three peers that most recently brought us a new block first push theirs at
//! once, before validating it (high-bandwidth mode).
//!
//! ```text
//!   session start ──▶ sendcmpct(high-bandwidth: one of our 3?)
//!   a new block (ours, or a peer's whose header checks out and extends the best chain)
//!      └─▶ push_compact: cmpctblock to every peer that asked for pushes, once per block
//!      └─▶ a peer's: its header to the other peers that push to us and that we do not
//!          push to, so they do not push it to us too (announce_to_pushers)
//!   cmpctblock ──▶ header checked and stored ──▶ slots filled from the pool by short id
//!      ├─ all filled, Merkle root right ──▶ on_blocks (validate, connect, relay)
//!      ├─ some missing ──▶ getblocktxn(indexes) ──▶ blocktxn ──▶ filled ──▶ on_blocks
//!      └─ short ids collide, or the root is wrong ──▶ getdata(block): the whole block
//!   a peer whose block became our tip first ──▶ one of our 3 (sendcmpct(true)); the
//!      longest-serving of the 3 is told sendcmpct(false)
//! ```
//!
//! A block being reconstructed counts as in flight from its peer (download.rs), so the
//! download scheduler does not fetch it whole meanwhile; if the peer never answers, the
//! request times out and the block is fetched from another peer as usual.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, MutexGuard, PoisonError};

use powchain_chain::ChainError;
use powchain_consensus::merkle::compute_merkle_root;
use powchain_consensus::validation::validate_block_structure_with_txids;
use powchain_consensus::{Block, BlockHash, Header, Transaction, Txid};
use powchain_node::{NodeError, RelayedHeader};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, warn};

use crate::inventory::KnownInventory;
use crate::message::{CompactBlock, InventoryItem, Message, PrefilledTransaction};
use crate::registry::{PeerCommand, PeerId};
use crate::service::P2p;
use crate::session::Session;
use crate::session_end::{Misbehaviour, SessionEnd, Stop, node_error_misbehaviour};
use crate::short_id::ShortIdKey;

/// Compact blocks one session completes at once at most (each holds at most
/// `MAX_COMPACT_TRANSACTIONS` slots); beyond, the oldest is given up.
pub(crate) const MAX_PARTIAL_BLOCKS: usize = 4;
/// Blocks a session remembers having looked up in the pool for a compact block.
pub(crate) const MAX_TRIED_COMPACT_BLOCKS: usize = 16;
/// A `getblocktxn` for a block deeper than this below the tip is answered with the whole
/// block (Bitcoin Core's `MAX_BLOCKTXN_DEPTH`): a few transactions of an old block would
/// cost the node a decode of all of it for a reply of a few bytes, again and again.
pub(crate) const MAX_BLOCKTXN_DEPTH: u64 = 10;
/// A compact block asked for a block deeper than this is sent whole (Bitcoin Core's
/// `MAX_CMPCTBLOCK_DEPTH`): its short ids cost a hash of every transaction for a reply a
/// few percent of the block's size.
pub(crate) const MAX_COMPACT_BLOCK_DEPTH: u64 = 5;
/// Blocks remembered as pushed already, so a block is pushed once (before validation, or
/// when it becomes the tip, whichever comes first).
const PUSHED_BLOCKS: usize = 16;
/// A compact block made for a peer sends whole the transactions the peer is not known to
/// have only if they are at most one in this many of the block's (`ForPeers::for_peer`).
const MAX_UNKNOWN_DIVISOR: usize = 10;

/// The compact relay's shared state: whom we asked for pushes, what we pushed.
pub(crate) struct CompactRelay {
    /// How many peers are asked for pushes at most (`P2pConfig::high_bandwidth_peers`).
    limit: usize,
    /// The peers asked to push new blocks to us, longest-serving first.
    high_bandwidth: VecDeque<PeerId>,
    /// Blocks pushed to our peers, oldest first.
    pushed: VecDeque<BlockHash>,
    /// The last block passed on before validation (pushed, or announced to the peers that
    /// push to us): a peer completing it asks for its transactions at once, before it is
    /// stored here, and must get them, not `notfound` (which would strike this node off
    /// that block's sources). Bitcoin Core keeps `m_most_recent_block` for the same.
    most_recent: Option<(BlockHash, Arc<Block>)>,
}

impl CompactRelay {
    /// Asks at most `limit` peers for pushes.
    pub(crate) fn new(limit: usize) -> CompactRelay {
        CompactRelay {
            limit,
            high_bandwidth: VecDeque::new(),
            pushed: VecDeque::new(),
            most_recent: None,
        }
    }

    /// A new peer: asked for pushes if fewer than the limit are.
    fn admit(&mut self, peer: PeerId) -> bool {
        if self.high_bandwidth.len() < self.limit {
            self.high_bandwidth.push_back(peer);
            true
        } else {
            false
        }
    }

    /// `peer` brought us a new tip first: it becomes the latest of the three. Returns
    /// whether it must be asked for pushes (it was not one) and who, if anyone, no longer
    /// is.
    fn promote(&mut self, peer: PeerId) -> (bool, Option<PeerId>) {
        if self.limit == 0 {
            return (false, None);
        }
        if let Some(at) = self.high_bandwidth.iter().position(|id| *id == peer) {
            self.high_bandwidth.remove(at);
            self.high_bandwidth.push_back(peer);
            return (false, None);
        }
        self.high_bandwidth.push_back(peer);
        let dropped = if self.high_bandwidth.len() > self.limit {
            self.high_bandwidth.pop_front()
        } else {
            None
        };
        (true, dropped)
    }

    fn forget(&mut self, peer: PeerId) {
        self.high_bandwidth.retain(|id| *id != peer);
    }

    /// True the first time `hash` is pushed.
    fn first_push(&mut self, hash: BlockHash) -> bool {
        if self.pushed.contains(&hash) {
            return false;
        }
        if self.pushed.len() >= PUSHED_BLOCKS {
            self.pushed.pop_front();
        }
        self.pushed.push_back(hash);
        true
    }
}

/// `block` as a compact block under `nonce`: the coinbase and the transactions `prefill`
/// picks (by index) whole, the others as short ids.
#[cfg(test)]
pub(crate) fn compact_block(
    block: &Block,
    nonce: u64,
    prefill: impl Fn(usize) -> bool,
) -> CompactBlock {
    compact_block_with_txids(block, &block.compute_txids(), nonce, prefill)
}

/// [`compact_block`] with the block's transaction ids at hand (`txids`, in order).
fn compact_block_with_txids(
    block: &Block,
    txids: &[Txid],
    nonce: u64,
    prefill: impl Fn(usize) -> bool,
) -> CompactBlock {
    let key = ShortIdKey::new(&block.header, nonce);
    let mut short_ids = Vec::with_capacity(block.transactions.len());
    let mut prefilled = Vec::new();
    for (index, (transaction, txid)) in block.transactions.iter().zip(txids).enumerate() {
        if index == 0 || prefill(index) {
            prefilled.push(PrefilledTransaction {
                index,
                transaction: transaction.clone(),
            });
        } else {
            short_ids.push(key.short_id(txid));
        }
    }
    CompactBlock {
        header: block.header,
        nonce,
        short_ids,
        prefilled,
    }
}

/// A block to send as a compact block, made for each peer it goes to: besides the
/// coinbase and what `base` picks, the transactions the peer is not known to have (we
/// neither announced them to it nor heard them from it, so they may not have reached its
/// pool) go whole. Each such transaction saves the peer a `getblocktxn` round trip before
/// it can pass the block on, which is most of what a block waits for on the way to the
/// miners when payments flow (docs/SIMULATION.md, "What holds the stale rate").
#[derive(Debug)]
pub(crate) struct ForPeers {
    block: Block,
    txids: Vec<Txid>,
    nonce: u64,
    /// Transactions sent whole to every peer, by index.
    base: Vec<bool>,
}

impl ForPeers {
    /// `block` under `nonce`, with the transactions `base` picks whole for every peer.
    pub(crate) fn new(block: Block, nonce: u64, base: impl Fn(usize) -> bool) -> ForPeers {
        let txids = block.compute_txids();
        let base = (0..txids.len()).map(base).collect();
        ForPeers {
            block,
            txids,
            nonce,
            base,
        }
    }

    /// The compact block for a peer that is known to have what `known` holds; the
    /// transactions it gets whole for that reason are marked known.
    pub(crate) fn for_peer(&self, known: &mut KnownInventory) -> CompactBlock {
        let mut whole = self.base.clone();
        let unknown: Vec<usize> = (1..self.txids.len())
            .filter(|index| !whole[*index])
            .filter(|index| !known.contains(&InventoryItem::Transaction(self.txids[*index])))
            .collect();
        // A peer we know so little about (a new connection) may well have them all: what
        // we know of it says nothing of its pool then, and the block would go nearly whole.
        if unknown.len() * MAX_UNKNOWN_DIVISOR <= self.txids.len() {
            for index in unknown {
                whole[index] = true;
                known.insert(&InventoryItem::Transaction(self.txids[index]));
            }
        }
        compact_block_with_txids(&self.block, &self.txids, self.nonce, |index| whole[index])
    }
}

/// Why a compact block cannot be reconstructed and the whole block is needed instead.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Unrecoverable {
    /// Two of its short ids are equal: no pool lookup can tell them apart.
    DuplicateShortIds,
    /// Every slot is filled but the Merkle root differs: a short id matched the wrong
    /// transaction (or the peer sent wrong ones).
    WrongMerkleRoot,
    /// The peer sent this compact block before, and it was looked up in the pool then.
    SentAgain,
}

/// A compact block being filled in.
pub(crate) struct PartialBlock {
    pub(crate) hash: BlockHash,
    header: Header,
    slots: Vec<Option<Transaction>>,
    /// Slots two candidates claimed: left for the peer to fill.
    ambiguous: HashSet<usize>,
}

impl PartialBlock {
    /// The compact block's prefilled transactions in place; with it, its key and the slot
    /// of each short id, to look the rest up by.
    pub(crate) fn new(
        compact: CompactBlock,
    ) -> Result<(PartialBlock, ShortIdKey, HashMap<u64, usize>), Unrecoverable> {
        let total = compact.transaction_count();
        let mut slots: Vec<Option<Transaction>> = vec![None; total];
        for prefilled in compact.prefilled {
            // Decoding checked each index is inside the block and ascending.
            if let Some(slot) = slots.get_mut(prefilled.index) {
                *slot = Some(prefilled.transaction);
            }
        }
        let mut wanted = HashMap::with_capacity(compact.short_ids.len());
        let mut ids = compact.short_ids.into_iter();
        for (index, slot) in slots.iter().enumerate() {
            if slot.is_some() {
                continue;
            }
            let Some(id) = ids.next() else { break };
            if wanted.insert(id, index).is_some() {
                return Err(Unrecoverable::DuplicateShortIds);
            }
        }
        let key = ShortIdKey::new(&compact.header, compact.nonce);
        Ok((
            PartialBlock {
                hash: compact.header.compute_hash(),
                header: compact.header,
                slots,
                ambiguous: HashSet::new(),
            },
            key,
            wanted,
        ))
    }

    /// Fills slots with `candidates` (slot, transaction): a slot two candidates claim is
    /// emptied and left for the peer to fill.
    pub(crate) fn offer(&mut self, candidates: Vec<(usize, Transaction)>) {
        for (index, transaction) in candidates {
            if self.ambiguous.contains(&index) {
                continue;
            }
            let Some(slot) = self.slots.get_mut(index) else {
                continue;
            };
            if slot.is_some() {
                *slot = None;
                self.ambiguous.insert(index);
            } else {
                *slot = Some(transaction);
            }
        }
    }

    /// The block it builds on.
    pub(crate) fn parent(&self) -> BlockHash {
        self.header.prev_hash
    }

    /// The indexes still empty, ascending.
    pub(crate) fn missing(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|index| self.slots[*index].is_none())
            .collect()
    }

    /// Fills the empty slots, in order, with the transactions a `blocktxn` brought.
    ///
    /// # Errors
    /// The number of transactions the slots needed, if `transactions` has another count.
    pub(crate) fn fill_missing(&mut self, transactions: Vec<Transaction>) -> Result<(), usize> {
        let missing = self.missing();
        if missing.len() != transactions.len() {
            return Err(missing.len());
        }
        for (index, transaction) in missing.into_iter().zip(transactions) {
            self.slots[index] = Some(transaction);
        }
        Ok(())
    }

    /// The block, once every slot is filled and the transactions match the header's
    /// Merkle root; `None` while slots are empty.
    pub(crate) fn finish(self) -> Option<Result<Block, Unrecoverable>> {
        let transactions: Option<Vec<Transaction>> = self.slots.into_iter().collect();
        let transactions = transactions?;
        let txids: Vec<_> = transactions.iter().map(Transaction::compute_txid).collect();
        if compute_merkle_root(&txids) != self.header.merkle_root {
            return Some(Err(Unrecoverable::WrongMerkleRoot));
        }
        Some(Ok(Block {
            header: self.header,
            transactions,
        }))
    }
}

impl P2p {
    fn compact(&self) -> MutexGuard<'_, CompactRelay> {
        self.compact.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a new peer is asked to push blocks to us (one of the first three).
    pub(crate) fn admit_high_bandwidth(&self, peer: PeerId) -> bool {
        self.compact().admit(peer)
    }

    /// The peers we asked to push new blocks to us.
    pub(crate) fn high_bandwidth_peers(&self) -> Vec<PeerId> {
        self.compact().high_bandwidth.iter().copied().collect()
    }

    /// Announces a new block we have whole, before we validate it, to `pushers`, the peers
    /// we asked for pushes (but `from`), so that those that get it after us do not push it too:
    /// a large block's validation takes tens of ms, and the pushes that crossed
    /// meanwhile were most of its duplicates. Peers we push to are left out: our push
    /// tells them.
    fn announce_to_pushers(&self, pushers: &[PeerId], from: PeerId, header: Header) {
        for commands in self.registry.commands_unless_pushed_to(pushers, from) {
            // A full queue: the peer may push it, as before.
            let _ = commands.try_send(PeerCommand::AnnounceHeader(header));
        }
    }

    /// A peer left: no longer one of our three.
    pub(crate) fn forget_high_bandwidth(&self, peer: PeerId) {
        self.compact().forget(peer);
    }

    /// True if `hash` was pushed already.
    pub(crate) fn was_pushed(&self, hash: &BlockHash) -> bool {
        self.compact().pushed.contains(hash)
    }

    /// Remembers `block` (`hash`), passed on before validation, until the next one.
    fn remember_passed_on(&self, hash: BlockHash, block: &Block) {
        self.compact().most_recent = Some((hash, Arc::new(block.clone())));
    }

    /// The last block passed on before validation, if it is `hash`.
    pub(crate) fn passed_on(&self, hash: &BlockHash) -> Option<Arc<Block>> {
        self.compact()
            .most_recent
            .as_ref()
            .filter(|(passed_on, _)| passed_on == hash)
            .map(|(_, block)| Arc::clone(block))
    }

    /// Pushes `block` as a compact block to every peer that asked for pushes and is not
    /// known to have it, once per block. `prefill` picks transactions to send whole (the
    /// coinbase always is).
    pub(crate) fn push_compact(&self, block: &Block, prefill: impl Fn(usize) -> bool) {
        if !self.config.compact_blocks {
            return;
        }
        let hash = block.compute_hash();
        let targets = self.registry.push_targets();
        if targets.is_empty() || !self.compact().first_push(hash) {
            return;
        }
        let block = Arc::new(ForPeers::new(block.clone(), self.random(), prefill));
        for commands in targets {
            let push = PeerCommand::Push {
                hash,
                block: Arc::clone(&block),
            };
            if commands.try_send(push).is_err() {
                debug!(block = %hash, "a peer's queue is full; it learns the block by inv");
            }
        }
    }

    /// Pushes our new tip to the peers that asked for pushes, if it was not pushed before
    /// it was validated (a block this node mined, or one that came whole).
    pub(crate) async fn push_tip(&self, hash: BlockHash) {
        if !self.config.compact_blocks || self.was_pushed(&hash) {
            return;
        }
        if let Some(Some(block)) = self.stored_block(hash).await {
            // Its transactions have left our pool by now: only the coinbase goes whole.
            self.push_compact(&block, |_| false);
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Session<S> {
    /// Tells the peer we relay compact blocks, and whether it is one of the three we ask
    /// to push new blocks at once.
    pub(crate) async fn announce_compact_relay(&mut self) -> Result<(), SessionEnd> {
        if !self.p2p.config.compact_blocks {
            return Ok(());
        }
        let high_bandwidth = self.p2p.admit_high_bandwidth(self.id);
        self.send(&Message::SendCompact { high_bandwidth }).await
    }

    /// The peer brought us a new tip first: it becomes one of our three (and the
    /// longest-serving one stops being asked).
    pub(crate) async fn promote_high_bandwidth(&mut self) -> Result<(), SessionEnd> {
        if !self.p2p.config.compact_blocks {
            return Ok(());
        }
        let (ask, dropped) = self.p2p.compact().promote(self.id);
        if let Some(dropped) = dropped
            && let Some(commands) = self.p2p.registry.commands(dropped)
        {
            let _ = commands.try_send(PeerCommand::Send(Message::SendCompact {
                high_bandwidth: false,
            }));
        }
        if ask {
            self.send(&Message::SendCompact {
                high_bandwidth: true,
            })
            .await?;
        }
        Ok(())
    }

    /// Sends a pushed block as a compact block made for this peer, unless the peer is
    /// known to have the block.
    pub(crate) async fn send_pushed(
        &mut self,
        hash: BlockHash,
        block: &ForPeers,
    ) -> Result<(), SessionEnd> {
        // A peer that cannot place it yet (its parent still on the way) asks for headers
        // and rebuilds it then: no announcement needs to follow.
        if self.known.insert(&InventoryItem::Block(hash)) {
            let compact = block.for_peer(&mut self.known);
            self.send(&Message::CompactBlock(Box::new(compact))).await?;
        }
        Ok(())
    }

    /// Announces a block we have whole but not validated yet by its header, if the peer
    /// is not known to have it and can place it ([`P2p::announce_to_pushers`]). The
    /// announcement after validation then skips this peer. Asked for the block before
    /// it is stored, we answer `notfound`, as for any block we lack.
    pub(crate) async fn announce_header(&mut self, header: Header) -> Result<(), SessionEnd> {
        let hash = header.compute_hash();
        if self.known.contains(&InventoryItem::Block(header.prev_hash))
            && self.known.insert(&InventoryItem::Block(hash))
        {
            self.send(&Message::Headers(vec![header])).await?;
        }
        Ok(())
    }

    /// Pushes a block that just came whole, before validating it, if its header checks
    /// out and it builds on our tip: what makes high-bandwidth relay fast (each hop
    /// costs a header check, not a full validation). The block is validated next, as
    /// any; a peer is not banned for an invalid block pushed this way (BIP-152), since
    /// its header carried real proof of work. The peers that push to us and that we do
    /// not push to hear of it by its header at the same time
    /// ([`P2p::announce_to_pushers`]).
    pub(crate) async fn push_before_validation(&mut self, block: &Block) -> Result<(), Stop> {
        let hash = block.compute_hash();
        if !self.p2p.config.compact_blocks || self.p2p.was_pushed(&hash) {
            return Ok(());
        }
        let push = self.p2p.registry.has_push_targets();
        let pushers = self.p2p.high_bandwidth_peers();
        if !push && pushers.is_empty() {
            return Ok(());
        }
        let txids: Vec<_> = block.compute_txids();
        let header = block.header;
        let lookup = if push { txids.clone() } else { Vec::new() };
        let (verdict, in_pool) = self
            .p2p
            .blocking(move |node| {
                (
                    node.accept_relayed_header(&header),
                    node.pool_contains(&lookup),
                )
            })
            .await
            .ok_or(SessionEnd::Shutdown)?;
        // Only a block on our tip, as Bitcoin Core does: a peer that cannot place it asks
        // us for headers, and our main chain must then lead to its parent.
        let Ok(RelayedHeader::Known {
            height,
            have_block: false,
            extends_best: true,
            extends_tip: true,
        }) = verdict
        else {
            return Ok(());
        };
        // The checks that need no chain state (a coinbase first, sizes, the Merkle root,
        // each transaction's form), as Bitcoin Core makes before it pushes: a block that
        // fails them is judged by validation next and never pushed.
        let params = self.p2p.node.params();
        if validate_block_structure_with_txids(params, block, height, &txids).is_err() {
            return Ok(());
        }
        self.p2p.remember_passed_on(hash, block);
        self.p2p.announce_to_pushers(&pushers, self.id, header);
        if push {
            // What we lacked, the next peer probably lacks too: sent whole.
            self.p2p
                .push_compact(block, |index| !in_pool.get(index).copied().unwrap_or(false));
        }
        Ok(())
    }

    /// A compact block: checks and stores its header, then rebuilds the block from the
    /// pool, asking the peer for what is missing.
    pub(crate) async fn on_compact_block(&mut self, compact: CompactBlock) -> Result<(), Stop> {
        let hash = compact.header.compute_hash();
        self.known.insert(&InventoryItem::Block(hash));
        if self
            .compact_in_progress
            .iter()
            .any(|partial| partial.hash == hash)
        {
            // Sent again while we wait for its transactions: one pool lookup is enough.
            return Ok(());
        }
        // Asked of this peer (low-bandwidth mode), or pushed unasked.
        let requested = self.p2p.is_in_flight_from(self.id, &hash);
        let header = compact.header;
        let verdict = self
            .p2p
            .blocking(move |node| node.accept_relayed_header(&header))
            .await
            .ok_or(SessionEnd::Shutdown)?;
        if requested
            && !matches!(
                verdict,
                Ok(RelayedHeader::Known {
                    have_block: false,
                    ..
                })
            )
        {
            // Not going to be rebuilt here: no longer awaited from this peer.
            self.p2p.block_done(&hash);
        }
        match verdict {
            Ok(RelayedHeader::LowWork) => {
                debug!(peer = %self.label, block = %hash, "ignored a compact block of a chain with too little work");
                return Ok(());
            }
            Ok(RelayedHeader::Known {
                height,
                have_block,
                extends_best,
                ..
            }) => {
                self.p2p.registry.note_block(self.id, hash, height.0);
                if have_block {
                    return Ok(());
                }
                if !extends_best && !requested {
                    // A side branch pushed to us: fetched if it ever leads, like any block.
                    self.p2p.pump_downloads().await;
                    return Ok(());
                }
            }
            Err(error) if error.is_premature() => {
                debug!(peer = %self.label, block = %hash, %error, "ignored a compact block from the future");
                return Ok(());
            }
            Err(NodeError::Chain(ChainError::UnknownParent { .. })) => {
                // We are behind: headers first; the block is rebuilt once its parent's
                // header has come (sync.rs), so the pusher need not announce it again.
                self.unplaced_compact = Some(compact);
                self.request_unconnected_headers().await?;
                return Ok(());
            }
            // This very block was found invalid here. A peer may push a block before it
            // validates it (BIP-152), so its push crosses our verdict: no misbehaviour, as
            // Bitcoin Core exempts a cached-invalid block that comes as a compact block.
            // (A block building on an invalid one is another matter: nobody honest pushes
            // a child of a block it has not validated.)
            Err(NodeError::Chain(ChainError::KnownInvalid { hash: failed })) if failed == hash => {
                debug!(peer = %self.label, block = %hash, "a compact block already found invalid; not punished (pushed before validation)");
                return Ok(());
            }
            Err(error) => {
                return match node_error_misbehaviour(&error, "headers-do-not-connect") {
                    Some(misbehaviour) => Err(misbehaviour.into()),
                    None => {
                        warn!(peer = %self.label, block = %hash, %error, "could not check a compact block's header");
                        Ok(())
                    }
                };
            }
        }
        let claimed = self.p2p.claim_download(self.id, hash);
        // A block is looked up in the pool once a session: a peer sending the same compact
        // block again (each a pass over the whole pool under the node's lock, at no cost
        // to it, and exempt from the message rate while the block is asked of it) gets the
        // whole block asked for instead.
        if self.compact_tried.contains(&hash) {
            return self
                .fetch_whole(hash, claimed, Unrecoverable::SentAgain)
                .await;
        }
        if self.compact_tried.len() >= MAX_TRIED_COMPACT_BLOCKS {
            self.compact_tried.pop_front();
        }
        self.compact_tried.push_back(hash);
        let (mut partial, key, wanted) = match PartialBlock::new(compact) {
            Ok(parts) => parts,
            Err(why) => return self.fetch_whole(hash, claimed, why).await,
        };
        let parent = partial.parent();
        let (from_pool, confirmed, stored) = self
            .p2p
            .blocking(move |node| {
                let from_pool =
                    node.pool_transactions_by(|txid| wanted.get(&key.short_id(txid)).copied());
                // A rival of our tip holds payments our own latest blocks confirmed and
                // took out of the pool: those are looked for there, not asked for.
                let confirmed = if from_pool.len() < wanted.len() && parent != node.tip().hash {
                    let offered: HashSet<usize> = from_pool.iter().map(|(slot, _)| *slot).collect();
                    node.main_chain_transactions_above(&parent, |txid| {
                        wanted
                            .get(&key.short_id(txid))
                            .filter(|slot| !offered.contains(slot))
                            .copied()
                    })
                    .unwrap_or_else(|error| {
                        // Only a lookup lost: the peer is asked for them instead.
                        debug!(%error, "could not read our latest blocks for a rival's payments");
                        Vec::new()
                    })
                } else {
                    Vec::new()
                };
                (from_pool, confirmed, node.has_block(&hash))
            })
            .await
            .ok_or(SessionEnd::Shutdown)?;
        if stored {
            // Another peer's copy was connected meanwhile (and took its payments out of
            // the pool): nothing to rebuild, nothing to ask for.
            if claimed {
                self.p2p.block_done(&hash);
            }
            return Ok(());
        }
        partial.offer(from_pool);
        partial.offer(confirmed);
        let missing = partial.missing();
        if missing.is_empty() {
            return self.finish_compact(partial, claimed).await;
        }
        if !claimed && !self.p2p.high_bandwidth_peers().contains(&self.id) {
            // Another peer is sending it already.
            return Ok(());
        }
        // Also when another peer claimed the block: a peer we asked to push blocks to us is
        // asked for what is missing all the same (Bitcoin Core completes a block from up
        // to three peers at once), so a stranger that claimed it with an unasked compact
        // block and never answers holds it back by nothing.
        debug!(peer = %self.label, block = %hash, missing = missing.len(), claimed, "asking for the transactions a compact block needs");
        if self.compact_in_progress.len() >= MAX_PARTIAL_BLOCKS {
            // The oldest is given up: whoever is asked next may send it whole.
            if let Some(oldest) = self.compact_in_progress.pop_front()
                && self.p2p.is_in_flight_from(self.id, &oldest.hash)
            {
                self.p2p.block_done(&oldest.hash);
            }
        }
        self.compact_in_progress.push_back(partial);
        self.send(&Message::GetBlockTransactions {
            block: hash,
            indexes: missing,
        })
        .await?;
        Ok(())
    }

    /// The transactions we asked for to complete a compact block.
    pub(crate) async fn on_block_transactions(
        &mut self,
        block: BlockHash,
        transactions: Vec<Transaction>,
    ) -> Result<(), Stop> {
        let position = self
            .compact_in_progress
            .iter()
            .position(|partial| partial.hash == block);
        let Some(mut partial) = position.and_then(|at| self.compact_in_progress.remove(at)) else {
            debug!(peer = %self.label, %block, "ignored transactions of a block we are not rebuilding");
            return Ok(());
        };
        if let Err(needed) = partial.fill_missing(transactions) {
            return Err(Misbehaviour::new(
                "bad-blocktxn",
                format!("blocktxn for {block} does not carry the {needed} transactions asked for"),
            )
            .into());
        }
        self.finish_compact(partial, true).await
    }

    /// Answers `getblocktxn` with the block's transactions at the indexes asked.
    pub(crate) async fn on_get_block_transactions(
        &mut self,
        block: BlockHash,
        indexes: Vec<usize>,
    ) -> Result<(), Stop> {
        let found = match self.p2p.passed_on(&block) {
            // Passed on before validation: not stored yet, perhaps.
            Some(recent) => Some((recent, 0)),
            None => match self
                .p2p
                .stored_block_and_depth(block)
                .await
                .ok_or(SessionEnd::Shutdown)?
            {
                Some(stored) => {
                    self.may_upload(&stored)?;
                    Some((Arc::new(stored.block), stored.depth))
                }
                None => None,
            },
        };
        let Some((found, depth)) = found else {
            self.send(&Message::NotFound(vec![InventoryItem::Block(block)]))
                .await?;
            return Ok(());
        };
        if depth > MAX_BLOCKTXN_DEPTH {
            self.send(&Message::Block(Box::new(Arc::unwrap_or_clone(found))))
                .await?;
            return Ok(());
        }
        let count = found.transactions.len();
        if let Some(index) = indexes.iter().find(|index| **index >= count) {
            return Err(Misbehaviour::new(
                "bad-getblocktxn",
                format!("asked for transaction {index} of block {block}, which has {count}"),
            )
            .into());
        }
        // Indexes are ascending (decoding checked it) and each is below the count.
        let picked = indexes
            .iter()
            .filter_map(|index| found.transactions.get(*index).cloned())
            .collect();
        self.send(&Message::BlockTransactions {
            block,
            transactions: picked,
        })
        .await?;
        Ok(())
    }

    /// A rebuilt block goes on like any block; one that cannot be rebuilt is fetched
    /// whole.
    async fn finish_compact(&mut self, partial: PartialBlock, claimed: bool) -> Result<(), Stop> {
        let hash = partial.hash;
        match partial.finish() {
            Some(Ok(block)) => self.on_blocks(vec![block], true).await,
            Some(Err(why)) => self.fetch_whole(hash, claimed, why).await,
            None => Ok(()),
        }
    }

    /// Asks the peer for the whole block (if it is ours to fetch).
    async fn fetch_whole(
        &mut self,
        hash: BlockHash,
        claimed: bool,
        why: Unrecoverable,
    ) -> Result<(), Stop> {
        debug!(peer = %self.label, block = %hash, ?why, "fetching a compact block whole");
        if claimed {
            self.send(&Message::GetData(vec![InventoryItem::Block(hash)]))
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use powchain_consensus::testkit::TestChain;

    /// A block of `count` payments, each spending one of the miner's mature coins.
    fn block_with_payments(count: usize) -> Block {
        let chain = TestChain::regtest_with_mature_coins(count);
        let payments = (0..count as u64)
            .map(|index| {
                let (outpoint, coin) = chain.mature_coin(index);
                chain.spend(
                    &[outpoint],
                    vec![coin.output],
                    std::slice::from_ref(&chain.miner),
                    &std::collections::HashMap::new(),
                )
            })
            .collect();
        chain.build(payments, powchain_consensus::Amount::ZERO)
    }

    #[test]
    fn a_block_rebuilds_from_its_short_ids_and_a_pool_that_has_every_transaction() {
        let block = block_with_payments(5);
        let compact = compact_block(&block, 7, |_| false);
        assert_eq!(compact.prefilled.len(), 1, "the coinbase goes whole");
        assert_eq!(compact.short_ids.len(), 5);
        let (mut partial, key, wanted) = PartialBlock::new(compact).expect("no duplicates");
        assert_eq!(partial.missing(), vec![1, 2, 3, 4, 5]);
        let pool: Vec<(usize, Transaction)> = block.transactions[1..]
            .iter()
            .filter_map(|transaction| {
                wanted
                    .get(&key.short_id(&transaction.compute_txid()))
                    .map(|slot| (*slot, transaction.clone()))
            })
            .collect();
        partial.offer(pool);
        assert!(partial.missing().is_empty());
        assert_eq!(partial.finish(), Some(Ok(block)));
    }

    #[test]
    fn missing_transactions_come_by_index_and_a_wrong_one_fails_the_merkle_root() {
        let block = block_with_payments(4);
        let compact = compact_block(&block, 1, |index| index == 2);
        assert_eq!(compact.prefilled.len(), 2);
        let (mut partial, _, _) = PartialBlock::new(compact.clone()).expect("parts");
        assert_eq!(partial.missing(), vec![1, 3, 4]);
        assert_eq!(
            partial.fill_missing(vec![]),
            Err(3),
            "a short answer is refused"
        );
        let mut answer: Vec<Transaction> = [1, 3, 4]
            .iter()
            .map(|index| block.transactions[*index].clone())
            .collect();
        partial
            .fill_missing(answer.clone())
            .expect("three for three");
        assert_eq!(partial.finish(), Some(Ok(block.clone())));

        let (mut partial, _, _) = PartialBlock::new(compact).expect("parts");
        answer.swap(0, 1);
        partial.fill_missing(answer).expect("three for three");
        assert_eq!(partial.finish(), Some(Err(Unrecoverable::WrongMerkleRoot)));
    }

    #[test]
    fn a_peer_gets_whole_the_transactions_it_is_not_known_to_have() {
        let block = block_with_payments(20);
        let txids = block.compute_txids();
        let for_peers = ForPeers::new(block.clone(), 5, |index| index == 3);
        let whole = |compact: &CompactBlock| -> Vec<usize> {
            compact
                .prefilled
                .iter()
                .map(|prefilled| prefilled.index)
                .collect()
        };
        // Known to have every payment: the coinbase and what every peer gets.
        let mut known = KnownInventory::new(64);
        for txid in &txids[1..] {
            known.insert(&InventoryItem::Transaction(*txid));
        }
        let compact = for_peers.for_peer(&mut known);
        assert_eq!(whole(&compact), [0, 3]);
        assert_eq!(compact.short_ids.len(), 19);
        // Not known to have two of them (a tenth of 21 at most): those go whole too, and
        // are known to it from now on.
        let mut known = KnownInventory::new(64);
        for txid in txids[1..]
            .iter()
            .filter(|txid| **txid != txids[7] && **txid != txids[12])
        {
            known.insert(&InventoryItem::Transaction(*txid));
        }
        let compact = for_peers.for_peer(&mut known);
        assert_eq!(whole(&compact), [0, 3, 7, 12]);
        assert!(known.contains(&InventoryItem::Transaction(txids[7])));
        assert_eq!(compact.short_ids.len(), 17);
        // Rebuilt from a pool holding the others, the peer needs nothing more.
        let (mut partial, key, wanted) = PartialBlock::new(compact).expect("no duplicates");
        assert_eq!(partial.missing().len(), 17);
        let pool: Vec<(usize, Transaction)> = block
            .transactions
            .iter()
            .enumerate()
            .filter(|(index, _)| ![0, 3, 7, 12].contains(index))
            .filter_map(|(_, transaction)| {
                wanted
                    .get(&key.short_id(&transaction.compute_txid()))
                    .map(|slot| (*slot, transaction.clone()))
            })
            .collect();
        partial.offer(pool);
        assert_eq!(partial.finish(), Some(Ok(block)));
        // A peer we know almost nothing of (a new connection) gets what every peer gets.
        let mut known = KnownInventory::new(64);
        known.insert(&InventoryItem::Transaction(txids[1]));
        let compact = for_peers.for_peer(&mut known);
        assert_eq!(whole(&compact), [0, 3]);
        assert!(!known.contains(&InventoryItem::Transaction(txids[2])));
    }

    #[test]
    fn two_candidates_for_one_slot_leave_it_to_the_peer() {
        let block = block_with_payments(2);
        let (mut partial, _, _) =
            PartialBlock::new(compact_block(&block, 3, |_| false)).expect("parts");
        partial.offer(vec![
            (1, block.transactions[1].clone()),
            (1, block.transactions[2].clone()),
            (1, block.transactions[1].clone()),
            (2, block.transactions[2].clone()),
        ]);
        assert_eq!(partial.missing(), vec![1]);
    }

    #[test]
    fn duplicate_short_ids_need_the_whole_block() {
        let block = block_with_payments(2);
        let mut compact = compact_block(&block, 3, |_| false);
        compact.short_ids[1] = compact.short_ids[0];
        assert!(matches!(
            PartialBlock::new(compact),
            Err(Unrecoverable::DuplicateShortIds)
        ));
    }

    #[test]
    fn the_three_latest_block_bringers_are_asked_for_pushes() {
        let peer = PeerId::for_test;
        let mut relay = CompactRelay::new(3);
        assert!(relay.admit(peer(1)));
        assert!(relay.admit(peer(2)));
        assert!(relay.admit(peer(3)));
        assert!(!relay.admit(peer(4)), "three at most");
        assert_eq!(relay.promote(peer(1)), (false, None), "already one");
        assert_eq!(
            relay.promote(peer(4)),
            (true, Some(peer(2))),
            "the longest-serving goes"
        );
        relay.forget(peer(3));
        assert_eq!(relay.promote(peer(5)), (true, None), "a free place");
        assert!(relay.first_push(BlockHash([1; 32])));
        assert!(!relay.first_push(BlockHash([1; 32])));
        let mut none = CompactRelay::new(0);
        assert!(!none.admit(peer(1)));
        assert_eq!(none.promote(peer(1)), (false, None), "nobody is asked");
    }
}
