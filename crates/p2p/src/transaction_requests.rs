//! Transaction requests: which peers announced a transaction we lack, which one of them
//! we asked for it, and until when.
//!
//! ```text
//!   inv from P ──▶ announced: P is asked now if nobody is, else remembered as a source
//!                  (P slow: it waits SLOW_PEER_DELAY; a peer that announces meanwhile is
//!                   asked instead, at once)
//!   the transaction arrives (or enters the pool) ──▶ done: forgotten
//!   notfound from P, P leaves, or P's deadline passes ──▶ the next source is asked
//!                                 (a deadline passed: P is slow for the rest of its session)
//! ```
//!
//! Slow peers: the first announcer is asked, so a peer that announces every transaction
//! first and never answers would hold each one back for the whole timeout, on every link
//! it wins (the relay-stalling Bitcoin Core's `TxRequestTracker` guards against by
//! preferring outbound peers and delaying inbound ones by 2 s). Here only a peer that let
//! a request time out is held back, so honest relay keeps its speed (a delay for every
//! inbound peer would cost a 3-second block interval payments it needs), and a staller
//! holds back each transaction at most [`SLOW_PEER_DELAY`] after its first timeout.
//!
//! One peer is asked at a time, so a transaction announced by eight peers crosses the
//! network once. Without the other sources, a transaction asked of a peer that then left
//! (or never answered) was lost to this node until someone announced it again; the
//! three-node bench once waited forever for such a payment. Bitcoin Core's
//! `TxRequestTracker` does the same, with preferences and delays this node does without.
//!
//! Bounded: a peer is remembered as a source of at most [`MAX_ANNOUNCED_PER_PEER`]
//! transactions at once, so the whole table holds at most that many entries per connected
//! peer. Announcements past that bound wait, in announcement order, in the session's
//! [`DeferredAnnouncements`] (at most [`MAX_DEFERRED_PER_PEER`] ids a peer and
//! [`MAX_DEFERRED`] in all, 32 bytes each) and are taken up as the peer's load falls.
//! Bitcoin Core ignores them, which is safe there because its peers announce at most a
//! thousand transactions every few seconds; a node here announces all it admitted every
//! 20 ms, and a burst of 20,000 payments submitted to one node once stopped at the
//! bound: its peers never heard of the rest, and the payments never left its pool.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, MutexGuard, PoisonError};
use std::time::Duration;

use powchain_consensus::Txid;
use tokio::time::Instant;
use tracing::debug;

use crate::message::{InventoryItem, MAX_INVENTORY, Message};
use crate::registry::{PeerCommand, PeerId};
use crate::service::P2p;

/// Transactions one peer may be the source of (asked or waiting) at once.
pub const MAX_ANNOUNCED_PER_PEER: usize = 5_000;

/// How long a slow peer's announcement waits for another announcer before it is asked.
pub(crate) const SLOW_PEER_DELAY: Duration = Duration::from_secs(2);

/// Announcements over a peer's bound kept for later, per peer.
pub(crate) const MAX_DEFERRED_PER_PEER: usize = 50_000;

/// Announcements over their peers' bounds kept for later, all peers together (6.4 MB of
/// ids); past that they are dropped, as Core drops them all.
pub(crate) const MAX_DEFERRED: usize = 200_000;

/// What [`TransactionRequests::announced`] made of an announcement.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Announced {
    /// To ask the announcing peer for now: nobody is asked for them yet.
    pub(crate) ask: Vec<Txid>,
    /// Not recorded: the peer is the source of [`MAX_ANNOUNCED_PER_PEER`] already.
    pub(crate) over_bound: Vec<Txid>,
}

/// One session's announcements that were over its peer's bound, oldest first. Counted in
/// a total shared by every session (released when this is dropped with its session).
#[derive(Debug)]
pub(crate) struct DeferredAnnouncements {
    ids: VecDeque<Txid>,
    total: Arc<AtomicUsize>,
}

impl DeferredAnnouncements {
    pub(crate) fn new(total: Arc<AtomicUsize>) -> DeferredAnnouncements {
        DeferredAnnouncements {
            ids: VecDeque::new(),
            total,
        }
    }

    /// Keeps `txids` after those kept before, while both bounds allow; returns how many
    /// were dropped.
    pub(crate) fn defer(&mut self, txids: Vec<Txid>) -> usize {
        let mut dropped = 0;
        for txid in txids {
            let reserved = self.ids.len() < MAX_DEFERRED_PER_PEER
                && self
                    .total
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |total| {
                        (total < MAX_DEFERRED).then_some(total + 1)
                    })
                    .is_ok();
            if reserved {
                self.ids.push_back(txid);
            } else {
                dropped += 1;
            }
        }
        dropped
    }

    /// Takes up to `count` of the oldest.
    pub(crate) fn take(&mut self, count: usize) -> Vec<Txid> {
        let taken: Vec<Txid> = self.ids.drain(..count.min(self.ids.len())).collect();
        self.total.fetch_sub(taken.len(), Ordering::Relaxed);
        taken
    }

    /// Puts back, as the oldest, what [`DeferredAnnouncements::take`] gave and could not
    /// be recorded after all.
    pub(crate) fn put_back(&mut self, txids: Vec<Txid>) {
        // They were counted before they were taken: no bound is passed by taking them back.
        self.total.fetch_add(txids.len(), Ordering::Relaxed);
        for txid in txids.into_iter().rev() {
            self.ids.push_front(txid);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

impl Drop for DeferredAnnouncements {
    fn drop(&mut self) {
        self.total.fetch_sub(self.ids.len(), Ordering::Relaxed);
    }
}

/// A transaction we lack and are fetching.
#[derive(Debug)]
struct Wanted {
    /// The peer asked for it (or, while `sent` is false, to be asked at `deadline`).
    asked: PeerId,
    /// False while a slow peer's announcement waits for another announcer.
    sent: bool,
    /// When the asked peer's time is up (or the slow peer's wait ends).
    deadline: Instant,
    /// Peers that announced it too and have not been asked, in announcement order.
    sources: Vec<PeerId>,
}

/// The transactions being fetched, and from whom.
#[derive(Debug)]
pub(crate) struct TransactionRequests {
    wanted: HashMap<Txid, Wanted>,
    /// Entries naming each peer (asked or as a source).
    load: HashMap<PeerId, usize>,
    /// Connected peers that let a request time out: never asked first again.
    slow: HashSet<PeerId>,
    /// How long an asked peer has to deliver.
    timeout: Duration,
}

impl TransactionRequests {
    pub(crate) fn new(timeout: Duration) -> TransactionRequests {
        TransactionRequests {
            wanted: HashMap::new(),
            load: HashMap::new(),
            slow: HashSet::new(),
            timeout,
        }
    }

    /// `peer` announced `txids` (ones this node lacks): those to ask it for now, because
    /// nobody is asked for them yet. It is remembered as a source of the others, up to
    /// [`MAX_ANNOUNCED_PER_PEER`].
    pub(crate) fn announced(&mut self, peer: PeerId, txids: &[Txid], now: Instant) -> Announced {
        let mut ask = Vec::new();
        let mut over_bound = Vec::new();
        let mut load = self.load.get(&peer).copied().unwrap_or(0);
        let slow = self.slow.contains(&peer);
        for &txid in txids {
            if load >= MAX_ANNOUNCED_PER_PEER {
                over_bound.push(txid);
                continue;
            }
            match self.wanted.entry(txid) {
                Entry::Vacant(entry) => {
                    entry.insert(Wanted {
                        asked: peer,
                        sent: !slow,
                        deadline: now + if slow { SLOW_PEER_DELAY } else { self.timeout },
                        sources: Vec::new(),
                    });
                    load += 1;
                    if !slow {
                        ask.push(txid);
                    }
                }
                Entry::Occupied(mut entry) => {
                    let wanted = entry.get_mut();
                    if wanted.asked == peer || wanted.sources.contains(&peer) {
                        continue;
                    }
                    load += 1;
                    if !wanted.sent && !slow {
                        // A slow peer's announcement was waiting: this peer is asked
                        // instead, and the slow one becomes its first fallback.
                        wanted.sources.insert(0, wanted.asked);
                        wanted.asked = peer;
                        wanted.sent = true;
                        wanted.deadline = now + self.timeout;
                        ask.push(txid);
                    } else {
                        wanted.sources.push(peer);
                    }
                }
            }
        }
        if load > 0 {
            self.load.insert(peer, load);
        }
        Announced { ask, over_bound }
    }

    /// How many more transactions `peer` may be the source of now.
    pub(crate) fn room(&self, peer: PeerId) -> usize {
        MAX_ANNOUNCED_PER_PEER.saturating_sub(self.load.get(&peer).copied().unwrap_or(0))
    }

    /// True if `txid` is asked of `peer` and not yet delivered.
    pub(crate) fn is_asked_of(&self, peer: PeerId, txid: &Txid) -> bool {
        self.wanted
            .get(txid)
            .is_some_and(|wanted| wanted.asked == peer && wanted.sent)
    }

    /// `txid` arrived (from anyone) or entered the pool: nobody needs asking.
    pub(crate) fn done(&mut self, txid: &Txid) {
        if let Some(wanted) = self.wanted.remove(txid) {
            self.release(wanted.asked);
            for source in wanted.sources {
                self.release(source);
            }
        }
    }

    /// `peer` answered `notfound` for `txid`: the next source is asked, if any (returned).
    pub(crate) fn not_found(
        &mut self,
        peer: PeerId,
        txid: &Txid,
        now: Instant,
    ) -> Option<(PeerId, Txid)> {
        let wanted = self.wanted.get_mut(txid)?;
        if wanted.asked == peer {
            self.ask_next(*txid, now)
        } else {
            // A source that no longer has it (or never did) is not asked later.
            let before = wanted.sources.len();
            wanted.sources.retain(|source| *source != peer);
            if wanted.sources.len() < before {
                self.release(peer);
            }
            None
        }
    }

    /// `peer` left: what it was asked for goes to the next source of each, oldest
    /// announcement first (returned, sorted so a simulation replays them in order).
    pub(crate) fn forget_peer(&mut self, peer: PeerId, now: Instant) -> Vec<(PeerId, Txid)> {
        let mut asked = Vec::new();
        for (txid, wanted) in &mut self.wanted {
            if wanted.asked == peer {
                asked.push(*txid);
            } else {
                wanted.sources.retain(|source| *source != peer);
            }
        }
        asked.sort_unstable();
        let next = asked
            .into_iter()
            .filter_map(|txid| self.ask_next(txid, now))
            .collect();
        self.load.remove(&peer);
        self.slow.remove(&peer);
        next
    }

    /// Requests whose deadline has passed: the next source of each is asked (returned,
    /// sorted); the peer that let it pass is not asked for it again, and is slow from now
    /// on. A slow peer's announcement nobody else made in its wait is asked of it now.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<(PeerId, Txid)> {
        let mut late: Vec<Txid> = self
            .wanted
            .iter()
            .filter(|(_, wanted)| wanted.deadline <= now)
            .map(|(txid, _)| *txid)
            .collect();
        late.sort_unstable();
        let mut asks = Vec::new();
        for txid in late {
            let Some(wanted) = self.wanted.get_mut(&txid) else {
                continue;
            };
            if !wanted.sent {
                wanted.sent = true;
                wanted.deadline = now + self.timeout;
                asks.push((wanted.asked, txid));
                continue;
            }
            self.slow.insert(wanted.asked);
            asks.extend(self.ask_next(txid, now));
        }
        asks
    }

    /// Transactions being fetched.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.wanted.len()
    }

    /// Drops the asked peer of `txid` and asks its next source; with none left, the
    /// transaction is forgotten (a later announcement starts over).
    fn ask_next(&mut self, txid: Txid, now: Instant) -> Option<(PeerId, Txid)> {
        let wanted = self.wanted.get_mut(&txid)?;
        let previous = wanted.asked;
        let next = if wanted.sources.is_empty() {
            None
        } else {
            Some(wanted.sources.remove(0))
        };
        match next {
            Some(next) => {
                wanted.asked = next;
                wanted.sent = true;
                wanted.deadline = now + self.timeout;
                self.release(previous);
                Some((next, txid))
            }
            None => {
                self.wanted.remove(&txid);
                self.release(previous);
                None
            }
        }
    }

    fn release(&mut self, peer: PeerId) {
        if let Entry::Occupied(mut entry) = self.load.entry(peer) {
            *entry.get_mut() -= 1;
            if *entry.get() == 0 {
                entry.remove();
            }
        }
    }
}

impl P2p {
    fn transaction_requests(&self) -> MutexGuard<'_, TransactionRequests> {
        self.transaction_requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// `peer` announced `txids`, ones this node has neither pooled nor seen: those to ask
    /// it for now, and those over its bound (the others are asked of another peer
    /// already).
    pub(crate) fn transactions_announced(&self, peer: PeerId, txids: &[Txid]) -> Announced {
        self.transaction_requests()
            .announced(peer, txids, Instant::now())
    }

    /// How many more transactions `peer` may be the source of now.
    pub(crate) fn transaction_room(&self, peer: PeerId) -> usize {
        self.transaction_requests().room(peer)
    }

    /// True if `txid` was asked of `peer` and is still awaited.
    pub(crate) fn is_transaction_asked_of(&self, peer: PeerId, txid: &Txid) -> bool {
        self.transaction_requests().is_asked_of(peer, txid)
    }

    /// `txid` arrived, or entered the pool another way: nobody needs asking for it.
    pub(crate) fn transaction_arrived(&self, txid: &Txid) {
        self.transaction_requests().done(txid);
    }

    /// `peer` does not have `txid` (`notfound`): its next source is asked.
    pub(crate) fn transaction_not_found(&self, peer: PeerId, txid: &Txid) {
        let next = self
            .transaction_requests()
            .not_found(peer, txid, Instant::now());
        self.ask_for_transactions(next.into_iter().collect());
    }

    /// `peer` left: what it was asked for is asked of the next source of each.
    pub(crate) fn forget_peer_transactions(&self, peer: PeerId) {
        let next = self
            .transaction_requests()
            .forget_peer(peer, Instant::now());
        self.ask_for_transactions(next);
    }

    /// Requests past their deadline go to the next source (the download loop calls this
    /// once a second).
    pub(crate) fn expire_transaction_requests(&self) {
        let next = self.transaction_requests().expire(Instant::now());
        self.ask_for_transactions(next);
    }

    /// Sends each peer one `getdata` (per [`MAX_INVENTORY`] items) for its share. A peer
    /// that left meanwhile, or whose queue is full, keeps its share until its deadline.
    fn ask_for_transactions(&self, requests: Vec<(PeerId, Txid)>) {
        let mut by_peer: BTreeMap<PeerId, Vec<InventoryItem>> = BTreeMap::new();
        for (peer, txid) in requests {
            by_peer
                .entry(peer)
                .or_default()
                .push(InventoryItem::Transaction(txid));
        }
        for (peer, items) in by_peer {
            let Some(commands) = self.registry.commands(peer) else {
                continue;
            };
            for chunk in items.chunks(MAX_INVENTORY) {
                if commands
                    .try_send(PeerCommand::Send(Message::GetData(chunk.to_vec())))
                    .is_err()
                {
                    debug!(%peer, "a peer's queue is full; its transactions wait for their deadline");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(number: u64) -> PeerId {
        PeerId::for_test(number)
    }

    fn txid(byte: u8) -> Txid {
        Txid([byte; 32])
    }

    const TIMEOUT: Duration = Duration::from_secs(30);

    /// The load table agrees with the entries: each peer counted once per entry naming it.
    fn assert_consistent(requests: &TransactionRequests) {
        let mut counted: HashMap<PeerId, usize> = HashMap::new();
        for wanted in requests.wanted.values() {
            *counted.entry(wanted.asked).or_default() += 1;
            for source in &wanted.sources {
                assert_ne!(*source, wanted.asked, "the asked peer is not also a source");
                *counted.entry(*source).or_default() += 1;
            }
        }
        assert_eq!(counted, requests.load);
    }

    #[test]
    fn one_peer_is_asked_and_the_others_wait_as_sources() {
        let mut requests = TransactionRequests::new(TIMEOUT);
        let now = Instant::now();
        assert_eq!(
            requests.announced(peer(1), &[txid(1)], now).ask,
            vec![txid(1)]
        );
        assert!(requests.announced(peer(2), &[txid(1)], now).ask.is_empty());
        assert!(requests.announced(peer(1), &[txid(1)], now).ask.is_empty());
        assert_eq!(requests.announced(peer(3), &[], now), Announced::default());
        assert!(requests.is_asked_of(peer(1), &txid(1)));
        assert!(!requests.is_asked_of(peer(2), &txid(1)));
        assert_consistent(&requests);
        requests.done(&txid(1));
        assert_eq!(requests.len(), 0);
        assert!(requests.load.is_empty());
        // Done means forgotten: a new announcement is asked again.
        assert_eq!(
            requests.announced(peer(2), &[txid(1)], now).ask,
            vec![txid(1)]
        );
    }

    #[test]
    fn a_peer_that_leaves_hands_its_requests_to_the_next_source() {
        let mut requests = TransactionRequests::new(TIMEOUT);
        let now = Instant::now();
        requests.announced(peer(1), &[txid(1), txid(2), txid(3)], now);
        requests.announced(peer(2), &[txid(2)], now);
        requests.announced(peer(3), &[txid(1), txid(2)], now);
        let next = requests.forget_peer(peer(1), now);
        assert_eq!(
            next,
            vec![(peer(3), txid(1)), (peer(2), txid(2))],
            "the oldest source of each, in txid order"
        );
        assert_eq!(requests.len(), 2, "txid 3 had no other source: forgotten");
        assert!(!requests.load.contains_key(&peer(1)));
        assert_consistent(&requests);
        // Peer 3 leaves: txid 1 (asked of it, no source left) is forgotten, and it is no
        // longer a source of txid 2.
        assert!(requests.forget_peer(peer(3), now).is_empty());
        assert_eq!(requests.len(), 1);
        assert_eq!(requests.not_found(peer(2), &txid(2), now), None);
        assert_eq!(requests.len(), 0);
        assert_consistent(&requests);
    }

    #[test]
    fn notfound_from_the_asked_peer_moves_on_and_from_a_source_drops_it() {
        let mut requests = TransactionRequests::new(TIMEOUT);
        let now = Instant::now();
        requests.announced(peer(1), &[txid(1)], now);
        requests.announced(peer(2), &[txid(1)], now);
        requests.announced(peer(3), &[txid(1)], now);
        assert_eq!(requests.not_found(peer(3), &txid(1), now), None);
        assert_eq!(
            requests.not_found(peer(1), &txid(1), now),
            Some((peer(2), txid(1)))
        );
        assert_consistent(&requests);
        assert_eq!(requests.not_found(peer(2), &txid(1), now), None);
        assert_eq!(requests.len(), 0, "no source left");
        assert!(requests.load.is_empty());
    }

    #[test]
    fn a_request_past_its_deadline_goes_to_the_next_source() {
        let mut requests = TransactionRequests::new(TIMEOUT);
        let start = Instant::now();
        requests.announced(peer(1), &[txid(1), txid(2)], start);
        requests.announced(peer(2), &[txid(1)], start);
        assert!(requests.expire(start + TIMEOUT / 2).is_empty());
        let later = start + TIMEOUT;
        assert_eq!(requests.expire(later), vec![(peer(2), txid(1))]);
        assert_eq!(requests.len(), 1, "txid 2 had no other source");
        assert!(requests.is_asked_of(peer(2), &txid(1)));
        assert!(
            requests.expire(later + TIMEOUT / 2).is_empty(),
            "the new deadline counts from the new request"
        );
        assert_consistent(&requests);
    }

    #[test]
    fn a_peer_that_let_a_request_time_out_is_never_asked_first_again() {
        let mut requests = TransactionRequests::new(TIMEOUT);
        let start = Instant::now();
        // Peer 1 announces first and never answers.
        requests.announced(peer(1), &[txid(1)], start);
        let later = start + TIMEOUT;
        assert!(
            requests.expire(later).is_empty(),
            "no other source: forgotten"
        );
        assert!(requests.slow.contains(&peer(1)));
        // Its next announcement waits; peer 2's, a moment later, is asked at once.
        let announced = requests.announced(peer(1), &[txid(2), txid(3)], later);
        assert!(announced.ask.is_empty(), "a slow peer is not asked first");
        assert!(
            !requests.is_asked_of(peer(1), &txid(2)),
            "nor exempt from the rate limit"
        );
        let moment = later + Duration::from_millis(100);
        assert_eq!(
            requests.announced(peer(2), &[txid(2)], moment).ask,
            vec![txid(2)]
        );
        assert!(requests.is_asked_of(peer(2), &txid(2)));
        assert_consistent(&requests);
        // What nobody else announced is asked of the slow peer after its wait, and it
        // stays the fallback of what another peer was asked for.
        assert!(requests.expire(later + SLOW_PEER_DELAY / 2).is_empty());
        assert_eq!(
            requests.expire(later + SLOW_PEER_DELAY),
            vec![(peer(1), txid(3))]
        );
        assert!(requests.is_asked_of(peer(1), &txid(3)));
        assert_eq!(
            requests.not_found(peer(2), &txid(2), moment),
            Some((peer(1), txid(2)))
        );
        assert_consistent(&requests);
        // A new connection of the same node starts afresh.
        requests.forget_peer(peer(1), moment);
        assert!(!requests.slow.contains(&peer(1)));
        assert_consistent(&requests);
    }

    #[test]
    fn a_peer_is_the_source_of_a_bounded_number_of_transactions() {
        let mut requests = TransactionRequests::new(TIMEOUT);
        let now = Instant::now();
        let many: Vec<Txid> = (0..MAX_ANNOUNCED_PER_PEER + 10)
            .map(|n| {
                let mut bytes = [0u8; 32];
                bytes[..8].copy_from_slice(&(n as u64).to_le_bytes());
                Txid(bytes)
            })
            .collect();
        let announced = requests.announced(peer(1), &many, now);
        assert_eq!(announced.ask.len(), MAX_ANNOUNCED_PER_PEER);
        assert_eq!(
            announced.over_bound,
            many[MAX_ANNOUNCED_PER_PEER..].to_vec(),
            "in order"
        );
        assert_eq!(requests.room(peer(1)), 0);
        assert_eq!(requests.len(), MAX_ANNOUNCED_PER_PEER);
        // Others still get through, and the first peer again once its load falls.
        assert_eq!(requests.announced(peer(2), &[txid(200)], now).ask.len(), 1);
        requests.done(&many[0]);
        assert_eq!(requests.room(peer(1)), 1);
        assert_eq!(
            requests
                .announced(peer(1), &many[MAX_ANNOUNCED_PER_PEER..], now)
                .ask,
            vec![many[MAX_ANNOUNCED_PER_PEER]]
        );
        assert_consistent(&requests);
    }

    #[test]
    fn announcements_over_the_bound_wait_in_order_within_their_own_bounds() {
        let total = Arc::new(AtomicUsize::new(0));
        let mut first = DeferredAnnouncements::new(Arc::clone(&total));
        assert_eq!(first.defer(vec![txid(1), txid(2), txid(3)]), 0);
        assert_eq!(first.take(2), vec![txid(1), txid(2)]);
        assert_eq!(total.load(Ordering::Relaxed), 1);
        first.put_back(vec![txid(2)]);
        assert_eq!(total.load(Ordering::Relaxed), 2);
        assert_eq!(first.take(10), vec![txid(2), txid(3)]);
        assert!(first.is_empty());
        // A peer keeps at most its share...
        let many = |count: usize| -> Vec<Txid> {
            (0..count)
                .map(|n| {
                    let mut bytes = [0u8; 32];
                    bytes[..8].copy_from_slice(&(n as u64).to_le_bytes());
                    Txid(bytes)
                })
                .collect()
        };
        assert_eq!(first.defer(many(MAX_DEFERRED_PER_PEER + 5)), 5);
        // ...and all peers together at most the total.
        let mut others: Vec<DeferredAnnouncements> = (0..MAX_DEFERRED / MAX_DEFERRED_PER_PEER)
            .map(|_| DeferredAnnouncements::new(Arc::clone(&total)))
            .collect();
        let dropped: usize = others
            .iter_mut()
            .map(|other| other.defer(many(MAX_DEFERRED_PER_PEER)))
            .sum();
        assert_eq!(dropped, MAX_DEFERRED_PER_PEER);
        assert_eq!(total.load(Ordering::Relaxed), MAX_DEFERRED);
        // A session's ids are released with it.
        drop(first);
        drop(others);
        assert_eq!(total.load(Ordering::Relaxed), 0);
    }
}
