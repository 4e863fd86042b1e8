//! Relay: what the node accepted goes out to every peer once, and transactions whose
//! parent is still missing wait here until it comes.
//!
//! ```text
//!   NodeEvent::TipChanged ─────────▶ announce the block to every peer's Announcements
//!   NodeEvent::TransactionAccepted ─▶ announce the txid; retry held children of it
//!   each session: Announcements ──▶ inv messages, skipping what its peer is known to have
//!   a peer's transaction with a missing parent ──▶ held (bounded) ──▶ retried later
//! ```
//!
//! A transaction delivered, accepted or refused is remembered in a bounded set, so its
//! later announcements are not fetched; one still on its way is asked of one announcer
//! at a time (transaction_requests.rs), so the same transaction announced by eight peers
//! crosses once.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use powchain_consensus::{BlockHash, OutPoint, Transaction, Txid};
use powchain_node::{NodeError, NodeEvent};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use tracing::debug;

use crate::message::InventoryItem;
use crate::rolling_set::{RollingSet, items_for_slots};
use crate::service::P2p;

/// Items waiting to be announced to one peer at most; beyond, the oldest are dropped (a
/// peer this far behind learns the pool again when it reconnects).
const MAX_PENDING_ANNOUNCEMENTS: usize = 100_000;
/// Transaction ids a generation of the relay's recent ones holds: a table of 65,536 slots,
/// about 590 KB, so about 1.2 MB for the last 57,344 to 114,688 (an exact oldest-first set of
/// 50,000 whole ids took about 5.3 MB).
const RECENT_GENERATION: usize = items_for_slots(65_536);
/// Transactions held while a parent they spend is missing, at most (the oldest go first).
const MAX_ORPHAN_TRANSACTIONS: usize = 100;
/// Encoded bytes of the transactions held while a parent is missing, at most.
const MAX_ORPHAN_TRANSACTION_BYTES: usize = 5_000_000;

/// Transaction announcements leave at most once per interval (this one unless
/// `P2pConfig::transaction_announcement_interval` says otherwise), each `inv` carrying all
/// that gathered meanwhile: a node relaying thousands of transactions a second sent one
/// `inv` per batch it admitted, and its peer's `getdata` answers came as fast, until the
/// peer banned it as a flood (found by `powchain bench` at 20,000 payments). Blocks are
/// never held back.
pub const TRANSACTION_ANNOUNCEMENT_INTERVAL: Duration = Duration::from_millis(20);

/// Items to announce to one peer. The session takes them all at once and sends them in
/// as few `inv` messages as it can, so a burst of transactions costs the peer a few
/// messages, not one each; and a session busy writing to a slow peer loses none (ids are
/// 33 bytes, bounded by [`MAX_PENDING_ANNOUNCEMENTS`]).
pub(crate) struct Announcements {
    pending: Mutex<Pending>,
    ready: tokio::sync::Notify,
    /// [`TRANSACTION_ANNOUNCEMENT_INTERVAL`] unless configured otherwise.
    transaction_interval: Duration,
}

#[derive(Default)]
struct Pending {
    items: VecDeque<InventoryItem>,
    /// A block is among `items`: they are due at once.
    has_block: bool,
    /// Transactions are not due before this (`None`: none announced yet).
    next_transactions: Option<Instant>,
}

impl Announcements {
    /// Nothing pending; transactions leave at most once per `transaction_interval`.
    pub(crate) fn new(transaction_interval: Duration) -> Announcements {
        Announcements {
            pending: Mutex::default(),
            ready: tokio::sync::Notify::new(),
            transaction_interval,
        }
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, item: InventoryItem) {
        {
            let mut pending = self.pending();
            if pending.items.len() >= MAX_PENDING_ANNOUNCEMENTS {
                pending.items.pop_front();
            }
            pending.has_block |= !matches!(item, InventoryItem::Transaction(_));
            pending.items.push_back(item);
        }
        self.ready.notify_one();
    }

    /// Waits until what is pending is due: at once if it holds a block, else no earlier
    /// than the transaction interval after the last `take` that took a transaction.
    /// Cancel-safe: the pending items stay until `take`.
    pub(crate) async fn due(&self) {
        loop {
            let wait = {
                let pending = self.pending();
                if pending.items.is_empty() {
                    None
                } else if pending.has_block {
                    return;
                } else {
                    match pending.next_transactions {
                        Some(at) if at > Instant::now() => Some(at),
                        _ => return,
                    }
                }
            };
            match wait {
                None => self.ready.notified().await,
                // A block pushed meanwhile wakes it early.
                Some(at) => {
                    tokio::select! {
                        // In this order every time: a simulation replays it.
                        biased;
                        () = self.ready.notified() => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
            }
        }
    }

    /// Everything pending, oldest first; starts the interval if it holds a transaction.
    pub(crate) fn take(&self) -> Vec<InventoryItem> {
        let mut pending = self.pending();
        if pending
            .items
            .iter()
            .any(|item| matches!(item, InventoryItem::Transaction(_)))
        {
            pending.next_transactions = Some(Instant::now() + self.transaction_interval);
        }
        pending.has_block = false;
        std::mem::take(&mut pending.items).into()
    }
}

/// A transaction held for a missing parent.
pub(crate) struct Orphan {
    txid: Txid,
    transaction: Transaction,
    /// Its encoded size, counted once when it is held.
    size: usize,
    /// The output it lacked when it was last tried: it is tried again only once that
    /// output can be spent, so a held transaction of 1,000 inputs costs one lookup a block,
    /// not a thousand (it did, under the node's lock, for each held one at every block).
    lacking: OutPoint,
}

/// Transactions seen recently, and those held for a missing parent.
pub(crate) struct TransactionRelay {
    /// The newest [`RECENT_GENERATION`] to twice as many seen.
    recent: RollingSet<Txid>,
    /// Transactions from peers that spend an output nobody here has seen yet (their parent
    /// may be in a block or pool still to come), or a coinbase not mature here yet (the
    /// sender may be the block ahead that makes it mature), oldest first: tried again once
    /// the output each lacked appears (its transaction enters the pool, or the tip moves
    /// and it is in the UTXO set, where an immature coinbase already is: tried at each new
    /// tip). Without the hold, a premature spend stayed seen and was never fetched again.
    orphans: VecDeque<Orphan>,
    /// The encoded bytes of `orphans`.
    orphan_bytes: usize,
}

impl TransactionRelay {
    pub(crate) fn new() -> TransactionRelay {
        TransactionRelay {
            recent: RollingSet::new(RECENT_GENERATION),
            orphans: VecDeque::new(),
            orphan_bytes: 0,
        }
    }

    /// True the first time `txid` is seen; later calls say false.
    fn first_sight(&mut self, txid: Txid) -> bool {
        self.recent.insert(&txid)
    }

    /// Holds `transaction`, which lacked `lacking` (its size counted once, not the whole
    /// hold's again), then drops the oldest held while over either limit.
    fn hold(&mut self, txid: Txid, transaction: Transaction, lacking: OutPoint) {
        if self.orphans.iter().any(|held| held.txid == txid) {
            return;
        }
        let size = transaction.compute_size();
        self.put_back(Orphan {
            txid,
            transaction,
            size,
            lacking,
        });
        while self.orphans.len() > MAX_ORPHAN_TRANSACTIONS
            || self.orphan_bytes > MAX_ORPHAN_TRANSACTION_BYTES
        {
            match self.orphans.pop_front() {
                // Forgotten as seen too: a later announcement of it is fetched again.
                Some(dropped) => {
                    self.orphan_bytes -= dropped.size;
                    self.recent.remove(&dropped.txid);
                }
                None => break,
            }
        }
    }

    /// Holds again a transaction taken by [`TransactionRelay::take_ready`] (it was within
    /// the limits when taken).
    fn put_back(&mut self, orphan: Orphan) {
        self.orphan_bytes += orphan.size;
        self.orphans.push_back(orphan);
    }

    /// What the held transactions lack, oldest first.
    fn lacking(&self) -> Vec<OutPoint> {
        self.orphans.iter().map(|held| held.lacking).collect()
    }

    /// Takes the held transactions whose lacking output `ready` says can be spent now.
    fn take_ready(&mut self, ready: impl Fn(&OutPoint) -> bool) -> Vec<Orphan> {
        let (ready, waiting): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut self.orphans)
            .into_iter()
            .partition(|held| ready(&held.lacking));
        self.orphans = waiting;
        self.orphan_bytes -= ready.iter().map(|held| held.size).sum::<usize>();
        ready.into_iter().collect()
    }
}

impl P2p {
    fn transactions(&self) -> MutexGuard<'_, TransactionRelay> {
        self.transactions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers a transaction id as seen (delivered, accepted or refused): announcements
    /// of it are not fetched. True the first time.
    pub(crate) fn first_sight_of_transaction(&self, txid: Txid) -> bool {
        self.transactions().first_sight(txid)
    }

    /// Forgets `txid` as seen: a transaction delivered that the node never got to judge
    /// (its batch stopped at an invalid one before it), so a later announcement of it is
    /// fetched.
    pub(crate) fn forget_seen_transaction(&self, txid: &Txid) {
        self.transactions().recent.remove(txid);
    }

    /// True if a transaction id was seen (delivered, accepted or refused) recently.
    pub(crate) fn has_seen_transaction(&self, txid: &Txid) -> bool {
        self.transactions().recent.contains(txid)
    }

    /// How many peers' transactions wait in the hold for an output they lack.
    pub fn held_orphan_transactions(&self) -> usize {
        self.transactions().orphans.len()
    }

    /// Holds a transaction that lacked the output `lacking`, until that output appears
    /// (bounded: the oldest held go first).
    pub(crate) fn hold_orphan_transaction(
        &self,
        txid: Txid,
        transaction: Transaction,
        lacking: OutPoint,
    ) {
        self.transactions().hold(txid, transaction, lacking);
    }

    /// Offers the pool the held transactions whose lacking output appeared: one of
    /// `parent`'s (a transaction that entered the pool), or, with `None` (the tip moved),
    /// any that can now be spent. Accepted ones leave the hold and are relayed as any
    /// accepted transaction; those that lack another output stay, waiting for that one.
    async fn retry_orphan_transactions(&self, parent: Option<Txid>) {
        let candidates = match parent {
            Some(parent) => self
                .transactions()
                .take_ready(|lacking| lacking.txid == parent),
            None => {
                let lacking = self.transactions().lacking();
                if lacking.is_empty() {
                    return;
                }
                let asked = lacking.clone();
                let Some(available) = self
                    .blocking(move |node| node.outputs_available(&asked))
                    .await
                else {
                    return;
                };
                let appeared: HashSet<OutPoint> = lacking
                    .into_iter()
                    .zip(available)
                    .filter_map(|(outpoint, available)| available.then_some(outpoint))
                    .collect();
                self.transactions()
                    .take_ready(|lacking| appeared.contains(lacking))
            }
        };
        for orphan in candidates {
            let transaction = orphan.transaction.clone();
            let result = self
                .blocking(move |node| node.submit_peer_transaction(transaction))
                .await;
            match result {
                Some(Err(NodeError::Mempool(error))) => {
                    if let Some(lacking) = error.awaited_input() {
                        self.transactions().put_back(Orphan { lacking, ..orphan });
                    }
                }
                Some(Ok(_)) => debug!(txid = %orphan.txid, "a held transaction found its parent"),
                _ => {}
            }
        }
    }

    /// Queues `items` for announcement to every peer (each session skips what its peer
    /// is known to have).
    fn announce_to_all(&self, items: &[InventoryItem]) {
        for queue in self.registry.announcement_queues() {
            for item in items {
                queue.push(*item);
            }
        }
    }

    /// Pushes and announces a stored block to every peer not known to have it, whether or
    /// not it is our tip. A node relays its tips only; a miner racing a tie sends its own
    /// block of equal work as well, so that the peers that have not heard of the other one
    /// take it (the simulation's selfish miner, `crates/sim/src/selfish.rs`: Eyal and
    /// Sirer's γ). Peers that have the other block keep it: a block that ties their tip
    /// is a side branch to them.
    pub async fn relay_block(&self, hash: BlockHash) {
        if let Some(Some(block)) = self.stored_block(hash).await {
            self.push_compact(&block, |_| false);
            self.announce_to_all(&[InventoryItem::Block(hash)]);
        }
    }

    /// Follows the node's events: announces new tips and pooled transactions. The chain's
    /// events come on a channel of their own and go first, so a new block is pushed and
    /// announced at once, not after the transactions accepted before it, and a burst of
    /// transactions cannot make the relay miss a block.
    pub(crate) async fn relay_loop(self: Arc<Self>) {
        let mut chain_events = self.node.subscribe_chain();
        let mut events = self.node.subscribe();
        loop {
            let event = tokio::select! {
                biased;
                () = self.token.cancelled() => return,
                event = chain_events.recv() => event,
                event = events.recv() => match event {
                    // The chain's events are taken from their own channel.
                    Ok(event) if event.is_chain_event() => continue,
                    other => other,
                },
            };
            match event {
                Ok(NodeEvent::TipChanged { hash, .. }) => {
                    // Pushes first: a session serves its commands before announcements,
                    // so a peer that asked for pushes gets the compact block, not the inv.
                    self.push_tip(hash).await;
                    self.announce_to_all(&[InventoryItem::Block(hash)]);
                    self.pump_downloads().await;
                    self.retry_orphan_transactions(None).await;
                }
                Ok(NodeEvent::TransactionAccepted { txid }) => {
                    self.first_sight_of_transaction(txid);
                    self.transaction_arrived(&txid);
                    self.announce_to_all(&[InventoryItem::Transaction(txid)]);
                    self.retry_orphan_transactions(Some(txid)).await;
                }
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => {
                    // Announcements among the missed events would be lost: announce the
                    // tip and the whole pool again (sessions skip what peers have).
                    debug!(
                        missed,
                        "relay fell behind the node's events; announcing the pool"
                    );
                    let Some((tip, pool)) =
                        self.blocking(|node| (node.tip(), node.pool_txids())).await
                    else {
                        // The node is shutting down (or the read failed): nothing to send.
                        continue;
                    };
                    let mut items = vec![InventoryItem::Block(tip.hash)];
                    items.extend(pool.into_iter().map(InventoryItem::Transaction));
                    self.announce_to_all(&items);
                    self.pump_downloads().await;
                }
                Err(RecvError::Closed) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use powchain_consensus::{BlockHash, OutPoint, Txid};
    use tokio::time::Instant;

    use super::{
        Announcements, MAX_ORPHAN_TRANSACTION_BYTES, MAX_PENDING_ANNOUNCEMENTS,
        TRANSACTION_ANNOUNCEMENT_INTERVAL, TransactionRelay,
    };
    use crate::message::InventoryItem;

    /// A transaction spending output 0 of `parent`, with `outputs` outputs: about 40 bytes
    /// an output.
    fn orphan(parent: u8, outputs: usize) -> (powchain_consensus::Transaction, Txid) {
        use powchain_consensus::testkit::test_address;
        use powchain_consensus::{Amount, Signature, Transaction, TxIn, TxInputs, TxOut};
        let transaction = Transaction {
            version: Transaction::CURRENT_VERSION,
            inputs: TxInputs::Spends(vec![TxIn {
                prevout: OutPoint {
                    txid: Txid([parent; 32]),
                    vout: 0,
                },
                signature: Signature([0; 64]),
            }]),
            outputs: vec![
                TxOut {
                    value: Amount::from_units(1).expect("in range"),
                    address: test_address(1),
                };
                outputs
            ],
        };
        let txid = transaction.compute_txid();
        (transaction, txid)
    }

    /// Output 0 of the transaction `parent`: what [`orphan`]'s spends.
    fn parent_output(parent: u8) -> OutPoint {
        OutPoint {
            txid: Txid([parent; 32]),
            vout: 0,
        }
    }

    #[test]
    fn held_orphans_are_counted_once_and_the_oldest_go_past_the_byte_limit() {
        let mut relay = TransactionRelay::new();
        let mut sizes = Vec::new();
        for parent in 0..4u8 {
            let (transaction, txid) = orphan(parent, 100);
            sizes.push(transaction.compute_size());
            relay.hold(txid, transaction, parent_output(parent));
        }
        assert_eq!(relay.orphan_bytes, sizes.iter().sum::<usize>());
        let ready = relay.take_ready(|lacking| lacking.txid == Txid([2; 32]));
        assert_eq!(ready.len(), 1);
        assert_eq!(relay.orphan_bytes, sizes.iter().sum::<usize>() - sizes[2]);
        for orphan in ready {
            relay.put_back(orphan);
        }
        assert_eq!(relay.orphan_bytes, sizes.iter().sum::<usize>());

        // Large ones: each about a fifth of the limit, so the sixth pushes the oldest out.
        let outputs = MAX_ORPHAN_TRANSACTION_BYTES / 5 / 41;
        let mut relay = TransactionRelay::new();
        let mut held = Vec::new();
        for parent in 10..16u8 {
            let (transaction, txid) = orphan(parent, outputs);
            held.push(txid);
            relay.hold(txid, transaction, parent_output(parent));
        }
        assert!(relay.orphan_bytes <= MAX_ORPHAN_TRANSACTION_BYTES);
        let kept: Vec<Txid> = relay.orphans.iter().map(|held| held.txid).collect();
        assert_eq!(kept, held[held.len() - kept.len()..], "the newest stay");
        assert!(kept.len() < held.len(), "the oldest went");
        let recount: usize = relay
            .orphans
            .iter()
            .map(|held| held.transaction.compute_size())
            .sum();
        assert_eq!(relay.orphan_bytes, recount);
    }

    #[test]
    fn a_held_transaction_is_ready_only_once_the_output_it_lacked_appears() {
        let mut relay = TransactionRelay::new();
        for parent in 0..3u8 {
            let (transaction, txid) = orphan(parent, 1);
            relay.hold(txid, transaction, parent_output(parent));
        }
        assert_eq!(
            relay.lacking(),
            (0..3u8).map(parent_output).collect::<Vec<_>>(),
            "oldest first"
        );
        // The output parent 1's child lacked appears: that child alone is ready.
        let appeared = [parent_output(1)];
        let ready = relay.take_ready(|lacking| appeared.contains(lacking));
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].lacking, parent_output(1));
        assert_eq!(relay.lacking(), vec![parent_output(0), parent_output(2)]);
        assert!(
            relay.take_ready(|_| false).is_empty(),
            "nothing else appeared"
        );
    }

    fn transaction(number: u32) -> InventoryItem {
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&number.to_le_bytes());
        InventoryItem::Transaction(Txid(bytes))
    }

    /// How long `due` takes to return, in paused time.
    async fn wait_for_due(announcements: &Announcements) -> Duration {
        let start = Instant::now();
        tokio::time::timeout(Duration::from_secs(5), announcements.due())
            .await
            .expect("due within 5 s");
        start.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn transactions_are_due_once_per_interval_and_blocks_at_once() {
        let announcements = Announcements::new(TRANSACTION_ANNOUNCEMENT_INTERVAL);
        announcements.push(transaction(1));
        assert_eq!(wait_for_due(&announcements).await, Duration::ZERO);
        assert_eq!(announcements.take(), vec![transaction(1)]);

        // The next transactions wait out the interval, gathered into one take.
        announcements.push(transaction(2));
        announcements.push(transaction(3));
        assert_eq!(
            wait_for_due(&announcements).await,
            TRANSACTION_ANNOUNCEMENT_INTERVAL
        );
        assert_eq!(announcements.take(), vec![transaction(2), transaction(3)]);

        // A block does not wait, and takes the transactions pending with it along.
        announcements.push(transaction(4));
        let block = InventoryItem::Block(BlockHash([7; 32]));
        announcements.push(block);
        assert_eq!(wait_for_due(&announcements).await, Duration::ZERO);
        assert_eq!(announcements.take(), vec![transaction(4), block]);

        // A block pushed while transactions wait out the interval wakes the wait early.
        announcements.push(transaction(5));
        let (elapsed, ()) = tokio::join!(wait_for_due(&announcements), async {
            tokio::time::sleep(TRANSACTION_ANNOUNCEMENT_INTERVAL / 4).await;
            announcements.push(block);
        });
        assert_eq!(elapsed, TRANSACTION_ANNOUNCEMENT_INTERVAL / 4);
    }

    #[test]
    fn pending_announcements_are_bounded_and_the_oldest_go_first() {
        let announcements = Announcements::new(TRANSACTION_ANNOUNCEMENT_INTERVAL);
        let total = u32::try_from(MAX_PENDING_ANNOUNCEMENTS).expect("fits") + 5;
        for number in 0..total {
            announcements.push(transaction(number));
        }
        let taken = announcements.take();
        assert_eq!(taken.len(), MAX_PENDING_ANNOUNCEMENTS);
        assert_eq!(taken[0], transaction(5));
    }
}
