//! Block downloads: which missing block is asked of which peer, and when.
//!
//! ```text
//!   trigger (a block, headers, an inv, a peer leaving, a 1 s tick)
//!      └─▶ pump_downloads: room? ──▶ Node::download_plan(peer tips, window)
//!            └─▶ near the tip, Downloads::hold_for_pushes: a new block a pushing peer
//!                has not shown us waits `P2pConfig::push_wait` for its push
//!            └─▶ Downloads::assign: each block to the least loaded peer holding it
//!                  └─▶ one getdata per peer (batches of at least MIN_BLOCKS_PER_REQUEST)
//! ```
//!
//! The chain decides *what* is missing and which peers' chains hold it (a walk of the
//! block index, `powchain-chain`'s sync.rs); this file keeps who was asked for what, so a
//! block is asked of one peer at a time, a peer never has more than
//! [`MAX_BLOCKS_IN_FLIGHT_PER_PEER`] outstanding, and a block not delivered within
//! `block_timeout` goes to another peer, while the peer that let it time out is closed
//! (not banned) and never asked again in that session.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use powchain_consensus::BlockHash;
use tracing::debug;

use crate::ban::BanKey;
use crate::message::{InventoryItem, MAX_INVENTORY, Message};
use crate::registry::{PeerCommand, PeerId};
use crate::service::P2p;

/// Blocks in flight from one peer at most. The peer streams them one by one, so this
/// bounds neither side's memory; it bounds how far a request runs ahead.
pub(crate) const MAX_BLOCKS_IN_FLIGHT_PER_PEER: usize = 64;
/// A peer with blocks in flight is asked for more only once this many slots are free, so
/// a sync sends one `getdata` per 32 blocks, not one per block: a peer serving a fast sync
/// (thousands of small blocks a second) sees far fewer requests than its rate limit
/// (500 messages a second), which would otherwise ban the syncing node as a flood.
pub(crate) const MIN_BLOCKS_PER_REQUEST: usize = 32;
/// How far past the tip downloads reach.
pub(crate) const DOWNLOAD_WINDOW: usize = 1024;
/// Why a peer that let a block request time out is closed (not banned: a slow link is no
/// misbehaviour).
pub(crate) const STALLED: &str = "stalled a block download";
/// Blocks missing at most for a download to count as following the tip (not a sync):
/// such blocks are asked for as compact blocks.
const NEAR_TIP_BLOCKS: u64 = 2;
/// How long a peer that said it lacks a block we asked it for is not asked for it again.
/// Not for the session: a peer answers `notfound` for a block it holds whole but has not
/// stored yet (one it announced before validating it, to the peers that push to it), and
/// when it was the block's only source, the block was never asked for again and our tip
/// stopped below it.
const NOT_FOUND_MEMORY: Duration = Duration::from_secs(5);
/// Blocks remembered as lacking from one peer, at most: past this the oldest is forgotten
/// (a peer answering `notfound` to every request would otherwise fill the set with every
/// block of a sync).
const MAX_NOT_FOUND_PER_PEER: usize = 1_024;

/// Who was asked for which block, and which blocks peers said they lack.
#[derive(Default)]
pub(crate) struct Downloads {
    in_flight: HashMap<BlockHash, (PeerId, Instant)>,
    /// Blocks each peer said it lacks, with when ([`NOT_FOUND_MEMORY`]).
    not_found: HashMap<PeerId, HashMap<BlockHash, Instant>>,
    /// When each new block held back for a push was first wanted
    /// ([`Downloads::hold_for_pushes`]), and whether its wait is over.
    first_wanted: HashMap<BlockHash, (Instant, bool)>,
    /// When a held-back block falls due and downloads must be pumped again.
    wake_at: Option<Instant>,
    /// What the holds came to, so far.
    push_waits: PushWaits,
    /// Peers that let a block request time out: never asked again, and closed, as Bitcoin
    /// Core closes a peer that stalls a block download (until they leave).
    stalled: HashSet<PeerId>,
    /// Of those, the ones not closed yet, in the order they stalled.
    to_close: Vec<PeerId>,
    /// Who was closed for stalling lately (their ban key: address, or port on loopback),
    /// and when: a staller that reconnects comes back as a new peer, and would otherwise
    /// be handed the oldest missing blocks again at once (a fresh peer is the least
    /// loaded), holding the sync 20 s each time.
    stallers: HashMap<BanKey, Instant>,
    /// Connected peers that stalled lately under an earlier connection, with when: asked
    /// for a block only when no other peer has it, until [`STALLER_MEMORY`] has passed.
    suspects: HashMap<PeerId, Instant>,
}

/// How long a peer closed for stalling is asked last when it reconnects.
const STALLER_MEMORY: Duration = Duration::from_secs(10 * 60);
/// Most stallers remembered (the oldest forgotten first when full).
const MAX_STALLERS: usize = 1_024;

/// What holding new blocks back for a push came to ([`P2p::push_waits`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PushWaits {
    /// Blocks held back: a pushing peer had not shown them when they were first wanted.
    pub held: u64,
    /// Of those, blocks asked of an announcer once the wait was over (the others came by
    /// push, or were not wanted any more).
    pub asked_after_wait: u64,
    /// The longest any of those was asked past its due time: how late the pump that
    /// asked for it ran. The download loop is woken at the due time, so this stays at
    /// the scheduling's granularity (the 1 s tick alone would make it up to a second),
    /// unless no peer that has the block was left to ask at that time.
    pub most_past_due: Duration,
}

impl Downloads {
    /// Forgets requests older than `timeout`, so their blocks can be asked of others; the
    /// peers that let them time out are never asked again and are to be closed
    /// ([`Downloads::take_to_close`]).
    fn expire(&mut self, now: Instant, timeout: Duration) {
        let mut stalled = Vec::new();
        self.in_flight.retain(|hash, (peer, since)| {
            let waiting = now.duration_since(*since) < timeout;
            if !waiting {
                debug!(%peer, block = %hash, "a block request timed out; asking others");
                stalled.push(*peer);
            }
            waiting
        });
        // In the order of their ids, whatever the map's: a simulation replays it.
        stalled.sort_unstable();
        for peer in stalled {
            if self.stalled.insert(peer) {
                self.to_close.push(peer);
            }
        }
        let stalled = &self.stalled;
        self.in_flight
            .retain(|_, (peer, _)| !stalled.contains(peer));
        self.first_wanted
            .retain(|_, (since, _)| now.duration_since(*since) < timeout);
    }

    /// Near the tip, holds back for `wait` after it is first wanted each new block that a
    /// peer asked to push blocks to us (one of `pushers`) has not shown us yet: its push
    /// is likely on the way, and asking the announcer too would bring the block twice.
    /// Returns the blocks to ask for now, and when the earliest held one falls due.
    fn hold_for_pushes(
        &mut self,
        plan: Vec<(BlockHash, Vec<PeerId>)>,
        pushers: &[PeerId],
        now: Instant,
        wait: Duration,
    ) -> (Vec<(BlockHash, Vec<PeerId>)>, Option<Instant>) {
        let mut wake: Option<Instant> = None;
        let kept = plan
            .into_iter()
            .filter(|(hash, holders)| {
                if self.in_flight.contains_key(hash)
                    || pushers.iter().all(|pusher| holders.contains(pusher))
                {
                    return true;
                }
                let (first, released) = self.first_wanted.entry(*hash).or_insert_with(|| {
                    self.push_waits.held += 1;
                    (now, false)
                });
                let due = *first + wait;
                if now >= due {
                    if !*released {
                        *released = true;
                        let waits = &mut self.push_waits;
                        waits.asked_after_wait += 1;
                        waits.most_past_due = waits.most_past_due.max(now.duration_since(due));
                    }
                    return true;
                }
                wake = Some(wake.map_or(due, |earliest| earliest.min(due)));
                false
            })
            .collect();
        (kept, wake)
    }

    /// Asks for a pump at `at`, unless one is due sooner; true if the time moved.
    fn wake_by(&mut self, at: Instant) -> bool {
        if self.wake_at.is_some_and(|earlier| earlier <= at) {
            return false;
        }
        self.wake_at = Some(at);
        true
    }

    /// Blocks in flight per peer.
    fn loads(&self) -> HashMap<PeerId, usize> {
        let mut load: HashMap<PeerId, usize> = HashMap::new();
        for (peer, _) in self.in_flight.values() {
            *load.entry(*peer).or_default() += 1;
        }
        load
    }

    /// True if `hash` was asked of `peer` and is still awaited.
    pub(crate) fn is_in_flight_from(&self, peer: PeerId, hash: &BlockHash) -> bool {
        self.in_flight
            .get(hash)
            .is_some_and(|(asked, _)| *asked == peer)
    }

    /// Marks `hash` as in flight from `peer` (a compact block it is completing), unless
    /// another peer was asked for it; true if it is now `peer`'s to deliver.
    fn claim(&mut self, peer: PeerId, hash: BlockHash, now: Instant) -> bool {
        let (asked, _) = *self.in_flight.entry(hash).or_insert((peer, now));
        asked == peer
    }

    /// The block arrived (or was reported missing): it is no longer in flight. True if it
    /// was (a place for another request is free).
    pub(crate) fn done(&mut self, hash: &BlockHash) -> bool {
        self.in_flight.remove(hash).is_some()
    }

    /// `peer` said at `now` it does not have `hash`, which it was asked for: not asked
    /// again for [`NOT_FOUND_MEMORY`]. A `notfound` for a block not asked of that peer
    /// changes nothing: it must not cancel another peer's request.
    pub(crate) fn not_found(&mut self, peer: PeerId, hash: BlockHash, now: Instant) -> bool {
        if !self.is_in_flight_from(peer, &hash) {
            return false;
        }
        self.in_flight.remove(&hash);
        let lacking = self.not_found.entry(peer).or_default();
        lacking.retain(|_, at| now.duration_since(*at) < NOT_FOUND_MEMORY);
        if lacking.len() >= MAX_NOT_FOUND_PER_PEER
            && let Some(oldest) = lacking.iter().min_by_key(|(_, at)| **at).map(|(h, _)| *h)
        {
            lacking.remove(&oldest);
        }
        lacking.insert(hash, now);
        true
    }

    /// A peer left: its blocks in flight go to others.
    pub(crate) fn forget_peer(&mut self, peer: PeerId) {
        self.in_flight.retain(|_, (asked, _)| *asked != peer);
        self.not_found.remove(&peer);
        self.stalled.remove(&peer);
        self.suspects.remove(&peer);
        self.to_close.retain(|stalled| *stalled != peer);
    }

    /// The peer known by `key` was closed for stalling a block download at `now`.
    fn remember_staller(&mut self, key: BanKey, now: Instant) {
        self.stallers
            .retain(|_, since| now.duration_since(*since) < STALLER_MEMORY);
        if self.stallers.len() >= MAX_STALLERS
            && let Some(oldest) = self
                .stallers
                .iter()
                .min_by_key(|(key, since)| (**since, key.to_string()))
                .map(|(key, _)| *key)
        {
            self.stallers.remove(&oldest);
        }
        self.stallers.insert(key, now);
    }

    /// A new peer known by `key` connected as `peer`: if it stalled lately, it is asked
    /// for a block only when no other peer has it, until the stall is
    /// [`STALLER_MEMORY`] old. True if so.
    fn note_new_peer(&mut self, peer: PeerId, key: &BanKey, now: Instant) -> bool {
        match self.stallers.get(key) {
            Some(since) if now.duration_since(*since) < STALLER_MEMORY => {
                self.suspects.insert(peer, *since);
                true
            }
            _ => false,
        }
    }

    /// True if `peer` stalled lately (under an earlier connection), as of `now`.
    fn is_suspect(&self, peer: &PeerId, now: Instant) -> bool {
        self.suspects
            .get(peer)
            .is_some_and(|since| now.duration_since(*since) < STALLER_MEMORY)
    }

    /// True if `peer` has a block in flight asked half a block timeout ago or more: a peer
    /// that leaves then was most likely stalling, and leaving just before its requests
    /// time out must not spare it the memory of a stall.
    fn has_overdue_request(&self, peer: PeerId, now: Instant, timeout: Duration) -> bool {
        self.in_flight
            .values()
            .any(|(asked, since)| *asked == peer && now.duration_since(*since) >= timeout / 2)
    }

    /// The peers that stalled a download since the last call, to be closed.
    fn take_to_close(&mut self) -> Vec<PeerId> {
        std::mem::take(&mut self.to_close)
    }

    /// How many more blocks `peers` may be asked for now, after expiring old requests.
    fn room(&mut self, peers: &[PeerId], now: Instant, timeout: Duration) -> usize {
        self.expire(now, timeout);
        let load = self.loads();
        peers
            .iter()
            .filter(|peer| !self.stalled.contains(peer))
            .map(|peer| free_slots(load.get(peer).copied().unwrap_or(0)))
            .sum()
    }

    /// Gives each wanted block to the least loaded peer that holds it, has room and has
    /// not said it lacks it; returns each peer's share. Who may be asked is decided once,
    /// before this round's assignments, so a peer is sent whole batches.
    fn assign(
        &mut self,
        plan: Vec<(BlockHash, Vec<PeerId>)>,
        now: Instant,
        timeout: Duration,
    ) -> BTreeMap<PeerId, Vec<BlockHash>> {
        self.expire(now, timeout);
        let mut load = self.loads();
        let eligible: HashSet<PeerId> = plan
            .iter()
            .flat_map(|(_, holders)| holders.iter().copied())
            .filter(|peer| {
                !self.stalled.contains(peer) && free_slots(load.get(peer).copied().unwrap_or(0)) > 0
            })
            .collect();
        let mut assigned: BTreeMap<PeerId, Vec<BlockHash>> = BTreeMap::new();
        for (hash, holders) in plan {
            if self.in_flight.contains_key(&hash) {
                continue;
            }
            let lacks = |peer: &PeerId| {
                self.not_found
                    .get(peer)
                    .and_then(|lacking| lacking.get(&hash))
                    .is_some_and(|at| now.duration_since(*at) < NOT_FOUND_MEMORY)
            };
            let chosen = holders
                .iter()
                .filter(|peer| {
                    eligible.contains(peer)
                        && !lacks(peer)
                        && load.get(peer).copied().unwrap_or(0) < MAX_BLOCKS_IN_FLIGHT_PER_PEER
                })
                .min_by_key(|peer| {
                    (
                        self.is_suspect(peer, now),
                        load.get(peer).copied().unwrap_or(0),
                    )
                })
                .copied();
            let Some(peer) = chosen else {
                continue;
            };
            // A peer that stalled lately gets a block only if no other peer has it: one
            // busy now gets it when it has room.
            if self.is_suspect(&peer, now)
                && holders.iter().any(|holder| {
                    !self.is_suspect(holder, now)
                        && !self.stalled.contains(holder)
                        && !lacks(holder)
                })
            {
                continue;
            }
            *load.entry(peer).or_default() += 1;
            self.in_flight.insert(hash, (peer, now));
            assigned.entry(peer).or_default().push(hash);
        }
        assigned
    }
}

/// Slots a peer with `load` blocks in flight may be asked to fill now: all of them when it
/// has none in flight, else only once at least [`MIN_BLOCKS_PER_REQUEST`] are free.
fn free_slots(load: usize) -> usize {
    let free = MAX_BLOCKS_IN_FLIGHT_PER_PEER.saturating_sub(load);
    if load == 0 || free >= MIN_BLOCKS_PER_REQUEST {
        free
    } else {
        0
    }
}

impl P2p {
    fn downloads(&self) -> MutexGuard<'_, Downloads> {
        self.downloads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// What holding new blocks back for a push came to, since the start.
    pub fn push_waits(&self) -> PushWaits {
        self.downloads().push_waits
    }

    /// True if `hash` is a block we asked `peer` for and still wait on.
    pub(crate) fn is_in_flight_from(&self, peer: PeerId, hash: &BlockHash) -> bool {
        self.downloads().is_in_flight_from(peer, hash)
    }

    /// Marks a block `peer` is completing as in flight from it (so the scheduler does not
    /// fetch it whole meanwhile); false if another peer was asked for it already.
    pub(crate) fn claim_download(&self, peer: PeerId, hash: BlockHash) -> bool {
        self.downloads().claim(peer, hash, Instant::now())
    }

    /// A block arrived: it is no longer in flight.
    pub(crate) fn block_done(&self, hash: &BlockHash) -> bool {
        self.downloads().done(hash)
    }

    /// A peer does not have a block we asked it for. True if the block was in flight
    /// from it (and is now free for others).
    pub(crate) fn note_not_found(&self, peer: PeerId, hash: BlockHash) -> bool {
        self.downloads().not_found(peer, hash, Instant::now())
    }

    /// A peer left: its blocks go to others at the next pump. True if it had a request
    /// overdue (half a block timeout or older): as good as a stall.
    pub(crate) fn forget_peer_downloads(&self, peer: PeerId) -> bool {
        let mut downloads = self.downloads();
        let overdue =
            downloads.has_overdue_request(peer, Instant::now(), self.config.block_timeout);
        downloads.forget_peer(peer);
        overdue
    }

    /// The peer known by `key` was closed for stalling a block download.
    pub(crate) fn remember_staller(&self, key: BanKey) {
        self.downloads().remember_staller(key, Instant::now());
    }

    /// A new peer `peer`, known by `key`, connected; true if it stalled lately.
    pub(crate) fn note_new_download_peer(&self, peer: PeerId, key: &BanKey) -> bool {
        self.downloads().note_new_peer(peer, key, Instant::now())
    }

    /// Asks peers with room for the next missing blocks towards the best header, each
    /// block of a peer whose chain holds it.
    ///
    /// It runs after every block received, so its cost matters to sync speed: it looks at
    /// only as many heights past the tip as the blocks in flight and the free slots could
    /// use (plus a margin), up to the download window, and returns at once when no peer
    /// has room.
    pub(crate) async fn pump_downloads(&self) {
        let peer_tips = self.registry.tips();
        if peer_tips.is_empty() {
            return;
        }
        let timeout = self.config.block_timeout;
        let (room, in_flight, stalled) = {
            let peers: Vec<PeerId> = peer_tips.iter().map(|(peer, _)| *peer).collect();
            let mut downloads = self.downloads();
            let room = downloads.room(&peers, Instant::now(), timeout);
            (room, downloads.in_flight.len(), downloads.take_to_close())
        };
        for peer in stalled {
            self.registry.close(peer, STALLED);
        }
        if room == 0 {
            return;
        }
        let scan = (in_flight + 2 * room + 64).min(DOWNLOAD_WINDOW);
        let Some((plan, summary)) = self
            .blocking(move |node| (node.download_plan(&peer_tips, scan), node.chain_summary()))
            .await
        else {
            return;
        };
        // Near the tip (a new block or two, not a sync), blocks are asked of peers that
        // relay compact blocks as compact blocks: the peer's pool-mates cross as short
        // ids (BIP-152's low-bandwidth mode).
        let near_tip = self.config.compact_blocks
            && summary.best_header_height.0 <= summary.tip.height.0 + NEAR_TIP_BLOCKS;
        let plan = if near_tip {
            self.hold_for_pushes(plan)
        } else {
            plan
        };
        if plan.is_empty() {
            return;
        }
        let assigned = self.downloads().assign(plan, Instant::now(), timeout);
        for (peer, hashes) in assigned {
            let Some(commands) = self.registry.commands(peer) else {
                // It left while we chose: its share goes to others at the next pump.
                self.forget_peer_downloads(peer);
                continue;
            };
            let as_item = if near_tip && self.registry.relays_compact(peer) {
                InventoryItem::CompactBlock
            } else {
                InventoryItem::Block
            };
            debug!(%peer, blocks = hashes.len(), compact = near_tip, "asking for blocks");
            for chunk in hashes.chunks(MAX_INVENTORY) {
                let items = chunk.iter().copied().map(as_item).collect();
                if commands
                    .try_send(PeerCommand::Send(Message::GetData(items)))
                    .is_err()
                {
                    // Not asked: free for others at the next pump, not after the timeout.
                    let mut downloads = self.downloads();
                    for hash in chunk {
                        downloads.done(hash);
                    }
                    debug!(%peer, "a peer's queue is full; its blocks will be asked of others");
                }
            }
        }
    }

    /// [`Downloads::hold_for_pushes`] with this node's wait and pushers, and a pump booked
    /// for when the first held block falls due.
    fn hold_for_pushes(
        &self,
        plan: Vec<(BlockHash, Vec<PeerId>)>,
    ) -> Vec<(BlockHash, Vec<PeerId>)> {
        let wait = self.config.push_wait;
        if wait.is_zero() {
            return plan;
        }
        let pushers = self.high_bandwidth_peers();
        if pushers.is_empty() {
            return plan;
        }
        let mut downloads = self.downloads();
        let (plan, wake) = downloads.hold_for_pushes(plan, &pushers, Instant::now(), wait);
        if let Some(at) = wake
            && downloads.wake_by(at)
        {
            self.download_wake.notify_one();
        }
        plan
    }

    /// Pumps downloads once a second, so timed-out requests (of blocks and of
    /// transactions) move on without new traffic, and when a block held back for a push
    /// falls due.
    pub(crate) async fn download_loop(self: std::sync::Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            let wake_at = self.downloads().wake_at;
            tokio::select! {
                biased;
                () = self.token.cancelled() => return,
                _ = tick.tick() => {
                    self.expire_transaction_requests();
                    self.pump_downloads().await;
                }
                // A sooner wake-up was booked: wait for it instead.
                () = self.download_wake.notified() => {}
                () = sleep_until(wake_at) => {
                    self.downloads().wake_at = None;
                    self.pump_downloads().await;
                }
            }
        }
    }
}

/// Sleeps until `at`, or forever if there is nothing to wake for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(number: u64) -> PeerId {
        PeerId::for_test(number)
    }

    fn hash(byte: u8) -> BlockHash {
        BlockHash([byte; 32])
    }

    #[test]
    fn a_busy_peer_is_asked_only_when_a_whole_batch_is_free() {
        assert_eq!(free_slots(0), MAX_BLOCKS_IN_FLIGHT_PER_PEER);
        assert_eq!(free_slots(MAX_BLOCKS_IN_FLIGHT_PER_PEER), 0);
        let busy = MAX_BLOCKS_IN_FLIGHT_PER_PEER - MIN_BLOCKS_PER_REQUEST + 1;
        assert_eq!(free_slots(busy), 0, "fewer than a batch free");
        let ready = MAX_BLOCKS_IN_FLIGHT_PER_PEER - MIN_BLOCKS_PER_REQUEST;
        assert_eq!(free_slots(ready), MIN_BLOCKS_PER_REQUEST);
    }

    #[test]
    fn a_sync_of_ten_thousand_blocks_a_second_stays_under_the_peers_rate_limit() {
        // A node syncing from one peer sends one getdata per batch; the serving peer counts
        // each against MESSAGES_PER_SECOND (found by `powchain bench`: a 100,000-block sync
        // of small blocks was banned as a flood with one getdata per 4 blocks).
        let requests_per_second = 10_000.0 / MIN_BLOCKS_PER_REQUEST as f64;
        assert!(requests_per_second < crate::rate_limit::MESSAGES_PER_SECOND * 0.75);
    }

    #[test]
    fn a_notfound_for_a_block_not_asked_of_that_peer_changes_nothing() {
        let mut downloads = Downloads::default();
        let now = Instant::now();
        let timeout = Duration::from_secs(20);
        let asked = downloads.assign(vec![(hash(1), vec![peer(1)])], now, timeout);
        assert_eq!(asked[&peer(1)], vec![hash(1)]);
        // Another peer says it lacks the block asked of peer 1, and a thousand more: no
        // block is freed, so no download plan is made again.
        assert!(!downloads.not_found(peer(2), hash(1), now));
        for number in 0..1_000u32 {
            let mut bytes = [0xee; 32];
            bytes[..4].copy_from_slice(&number.to_le_bytes());
            assert!(!downloads.not_found(peer(2), BlockHash(bytes), now));
        }
        assert!(
            downloads.is_in_flight_from(peer(1), &hash(1)),
            "peer 1's request stands"
        );
        assert!(downloads.not_found.is_empty(), "nothing remembered");
        // Peer 2 may still be asked for any of them.
        let plan = vec![(hash(2), vec![peer(2)])];
        assert_eq!(
            downloads.assign(plan, now, timeout)[&peer(2)],
            vec![hash(2)]
        );
        // Peer 1 lacking its block frees it, once.
        assert!(downloads.not_found(peer(1), hash(1), now));
        assert!(!downloads.not_found(peer(1), hash(1), now));
    }

    #[test]
    fn a_peer_that_lacked_a_block_is_asked_for_it_again_later_and_remembers_few() {
        let mut downloads = Downloads::default();
        let now = Instant::now();
        let timeout = Duration::from_secs(20);
        let plan = || vec![(hash(1), vec![peer(1)])];
        assert_eq!(
            downloads.assign(plan(), now, timeout)[&peer(1)],
            vec![hash(1)]
        );
        // Its only holder lacks it for now (it has the block whole and is validating it,
        // say): not asked again at once, but later, while the session lasts.
        assert!(downloads.not_found(peer(1), hash(1), now));
        assert!(downloads.assign(plan(), now, timeout).is_empty());
        let later = now + NOT_FOUND_MEMORY;
        assert_eq!(
            downloads.assign(plan(), later, timeout)[&peer(1)],
            vec![hash(1)]
        );
        // A peer that lacks every block it is asked for is remembered for a bounded few.
        for number in 0..2 * MAX_NOT_FOUND_PER_PEER as u32 {
            let mut bytes = [0xdd; 32];
            bytes[..4].copy_from_slice(&number.to_le_bytes());
            let block = BlockHash(bytes);
            downloads.assign(vec![(block, vec![peer(2)])], later, timeout);
            assert!(downloads.not_found(peer(2), block, later));
        }
        assert_eq!(downloads.not_found[&peer(2)].len(), MAX_NOT_FOUND_PER_PEER);
    }

    /// A peer closed for stalling reconnects as a new peer, the least loaded of all:
    /// it was handed the oldest missing blocks again at once, and held the sync 20 s
    /// each time it came back. Now, for 10 minutes, it gets only what no other peer has.
    #[test]
    fn a_staller_that_reconnects_is_asked_only_for_what_no_other_peer_has() {
        let mut downloads = Downloads::default();
        let now = Instant::now();
        let timeout = Duration::from_secs(20);
        let key = BanKey::Address(std::net::IpAddr::V4(std::net::Ipv4Addr::new(
            203, 0, 113, 7,
        )));
        let other = BanKey::Address(std::net::IpAddr::V4(std::net::Ipv4Addr::new(
            203, 0, 113, 8,
        )));
        downloads.remember_staller(key, now);
        assert!(
            downloads.note_new_peer(peer(2), &key, now),
            "the staller, back"
        );
        assert!(!downloads.note_new_peer(peer(1), &other, now));

        // Peer 1 is busy: its blocks wait for it rather than go to the staller.
        let busy: Vec<(BlockHash, Vec<PeerId>)> = (0..MAX_BLOCKS_IN_FLIGHT_PER_PEER)
            .map(|index| (hash(100 + index as u8), vec![peer(1)]))
            .collect();
        assert_eq!(
            downloads.assign(busy, now, timeout)[&peer(1)].len(),
            MAX_BLOCKS_IN_FLIGHT_PER_PEER
        );
        let plan = vec![(hash(1), vec![peer(1), peer(2)]), (hash(2), vec![peer(2)])];
        assert_eq!(
            downloads.assign(plan, now, timeout),
            BTreeMap::from([(peer(2), vec![hash(2)])]),
            "only the block no one else has"
        );

        // Ten minutes on, it is a peer like any other.
        let later = now + STALLER_MEMORY;
        assert!(!downloads.note_new_peer(peer(3), &key, later));
        downloads.forget_peer(peer(2));
        assert!(downloads.suspects.is_empty(), "forgotten with its session");
        // A suspect connected within the ten minutes is one only until they are over.
        assert!(downloads.note_new_peer(peer(4), &key, now + STALLER_MEMORY / 2));
        assert!(downloads.is_suspect(&peer(4), now + STALLER_MEMORY / 2));
        assert!(
            !downloads.is_suspect(&peer(4), later),
            "ten minutes after the stall"
        );

        // A peer that leaves just before its request times out stalled all the same.
        let asked = downloads.assign(vec![(hash(9), vec![peer(5)])], now, timeout);
        assert_eq!(asked[&peer(5)], vec![hash(9)]);
        assert!(!downloads.has_overdue_request(peer(5), now + timeout / 4, timeout));
        assert!(downloads.has_overdue_request(peer(5), now + timeout / 2, timeout));
    }

    #[test]
    fn blocks_go_to_the_least_loaded_holder_once_and_not_to_a_peer_that_lacks_them() {
        let mut downloads = Downloads::default();
        let now = Instant::now();
        let timeout = Duration::from_secs(20);
        let asked = downloads.assign(vec![(hash(3), vec![peer(2)])], now, timeout);
        assert_eq!(asked[&peer(2)], vec![hash(3)]);
        downloads.not_found(peer(2), hash(3), now);
        let plan = vec![
            (hash(1), vec![peer(1), peer(2)]),
            (hash(2), vec![peer(1), peer(2)]),
            (hash(3), vec![peer(2)]),
            (hash(4), vec![peer(3)]),
        ];
        let assigned = downloads.assign(plan.clone(), now, timeout);
        let total: usize = assigned.values().map(Vec::len).sum();
        assert_eq!(total, 3, "hash 3 is held only by a peer that lacks it");
        assert_eq!(assigned[&peer(1)].len(), 1, "spread over the holders");
        assert_eq!(assigned[&peer(2)].len(), 1);
        assert_eq!(assigned[&peer(3)], vec![hash(4)]);
        assert!(
            downloads.assign(plan, now, timeout).is_empty(),
            "nothing is asked twice while in flight"
        );
        downloads.forget_peer(peer(3));
        let again = downloads.assign(vec![(hash(4), vec![peer(1)])], now, timeout);
        assert_eq!(
            again[&peer(1)],
            vec![hash(4)],
            "a departed peer's block goes to another holder"
        );
        let later = now + timeout;
        let again = downloads.assign(
            vec![(hash(1), vec![peer(1), peer(2), peer(5)])],
            later,
            timeout,
        );
        assert_eq!(
            again,
            BTreeMap::from([(peer(5), vec![hash(1)])]),
            "a block not delivered in time is asked of another peer than those that let \
             theirs time out"
        );
    }

    #[test]
    fn a_new_block_waits_for_a_push_while_a_pusher_has_not_shown_it() {
        let mut downloads = Downloads::default();
        let now = Instant::now();
        let wait = Duration::from_millis(50);
        let pushers = [peer(1), peer(2)];
        let announced = vec![(hash(1), vec![peer(3)])];
        let (kept, wake) = downloads.hold_for_pushes(announced.clone(), &pushers, now, wait);
        assert!(
            kept.is_empty(),
            "announced by a peer that does not push: held"
        );
        assert_eq!(wake, Some(now + wait));

        let shown_by_all = vec![(hash(2), vec![peer(3), peer(1), peer(2)])];
        let (kept, wake) = downloads.hold_for_pushes(shown_by_all.clone(), &pushers, now, wait);
        assert_eq!(
            kept, shown_by_all,
            "every pusher has it and did not push: no push to wait for"
        );
        assert_eq!(wake, None);

        let almost = now + wait - Duration::from_millis(1);
        let (kept, wake) = downloads.hold_for_pushes(announced.clone(), &pushers, almost, wait);
        assert!(kept.is_empty());
        assert_eq!(
            wake,
            Some(now + wait),
            "the wait runs from when it was first wanted"
        );
        let late = now + wait + Duration::from_millis(7);
        let (kept, _) = downloads.hold_for_pushes(announced.clone(), &pushers, late, wait);
        assert_eq!(kept, announced, "due: asked of its announcer");
        // Not assigned (the peer's queue was full, say): asked again at the next pump,
        // counted once, at its first release.
        let (kept, _) = downloads.hold_for_pushes(announced.clone(), &pushers, late + wait, wait);
        assert_eq!(kept, announced);
        assert_eq!(
            downloads.push_waits,
            PushWaits {
                held: 1,
                asked_after_wait: 1,
                most_past_due: Duration::from_millis(7),
            }
        );

        let timeout = Duration::from_secs(20);
        let assigned = downloads.assign(vec![(hash(3), vec![peer(3)])], now, timeout);
        assert_eq!(assigned[&peer(3)], vec![hash(3)]);
        let (kept, _) =
            downloads.hold_for_pushes(vec![(hash(3), vec![peer(3)])], &pushers, now, wait);
        assert_eq!(
            kept.len(),
            1,
            "in flight already: left to assign, which skips it"
        );

        downloads.expire(now + timeout, timeout);
        assert!(
            downloads.first_wanted.is_empty(),
            "forgotten with the requests' timeout"
        );
    }

    #[test]
    fn a_peer_that_lets_a_request_time_out_is_closed_and_never_asked_again() {
        let mut downloads = Downloads::default();
        let now = Instant::now();
        let timeout = Duration::from_secs(20);
        let assigned = downloads.assign(
            vec![(hash(1), vec![peer(1)]), (hash(2), vec![peer(1)])],
            now,
            timeout,
        );
        assert_eq!(assigned[&peer(1)], vec![hash(1), hash(2)]);
        assert!(downloads.take_to_close().is_empty(), "not yet late");

        let later = now + timeout;
        let assigned = downloads.assign(
            vec![(hash(1), vec![peer(1), peer(2)]), (hash(2), vec![peer(1)])],
            later,
            timeout,
        );
        assert_eq!(downloads.take_to_close(), vec![peer(1)]);
        assert!(downloads.take_to_close().is_empty(), "closed once");
        assert_eq!(
            assigned.get(&peer(2)),
            Some(&vec![hash(1)]),
            "its block goes to another peer"
        );
        assert!(
            !assigned.contains_key(&peer(1)),
            "a block only it holds waits for another"
        );
        assert_eq!(downloads.room(&[peer(1)], later, timeout), 0);

        downloads.forget_peer(peer(1));
        assert_eq!(
            downloads.room(&[peer(1)], later, timeout),
            MAX_BLOCKS_IN_FLIGHT_PER_PEER,
            "forgotten once it left: a new session starts afresh"
        );
    }

    #[test]
    fn the_download_loop_is_woken_for_the_earliest_held_block() {
        let mut downloads = Downloads::default();
        let now = Instant::now();
        assert!(downloads.wake_by(now + Duration::from_millis(80)));
        assert!(
            !downloads.wake_by(now + Duration::from_millis(90)),
            "a later time changes nothing"
        );
        assert!(
            downloads.wake_by(now + Duration::from_millis(30)),
            "a sooner one moves it"
        );
        assert_eq!(downloads.wake_at, Some(now + Duration::from_millis(30)));
    }
}
