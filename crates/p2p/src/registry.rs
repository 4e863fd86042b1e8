//! The peer registry: who is connected, in which direction, what each is known to have,
//! and the channels that reach its session task.
//!
//! ```text
//!   handshake done ──register──▶ PeerRegistry { id ─▶ PeerEntry } ◀──unregister── session end
//!        one connection per node: the dial of the smaller nonce wins
//!        inbound: at most max_inbound_per_group from one address group (AddressGroup);
//!                 when all max_inbound slots are taken, the least useful inbound peer is
//!                 evicted (eviction.rs), or the newcomer refused if every one is protected
//!   download pump ──tips()──▶ [(id, best block known)]     relay ──queues()──▶ announcements
//!   session end ──closed()──▶ the last DISCONNECT_HISTORY ends, with their reasons
//! ```
//!
//! The registry knows nothing of sessions or messages beyond the command channel: it is
//! the map the other parts of the layer (downloads, relay, the address book) consult.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use powchain_consensus::{BlockHash, Header};
use powchain_node::{DisconnectInfo, PeerInfo};
use tokio::sync::mpsc;

use crate::address_group::AddressGroup;
use crate::compact::ForPeers;
use crate::eviction::{Candidate, select_victim};
use crate::message::Message;
use crate::relay::Announcements;
use crate::url::PeerUrl;

/// Commands queued for one peer at most (requests and closes; announcements wait in the
/// peer's [`Announcements`]).
const PEER_COMMAND_CAPACITY: usize = 512;
/// Session ends remembered for `GET /peers/disconnected`.
pub(crate) const DISCONNECT_HISTORY: usize = 64;
/// What a session closed by the operator (`DELETE /peers/{url}`) is told.
pub(crate) const REMOVED: &str = "removed by the operator";
/// What an evicted peer's session is told.
pub(crate) const EVICTED: &str = "evicted: inbound slots were full and a new peer needed one";

/// A connected peer's number, unique for the life of the layer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub(crate) struct PeerId(u64);

impl PeerId {
    /// A peer id for unit tests.
    #[cfg(test)]
    pub(crate) fn for_test(number: u64) -> PeerId {
        PeerId(number)
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "peer#{}", self.0)
    }
}

/// What a session task is told to do.
#[derive(Debug)]
pub(crate) enum PeerCommand {
    /// Send this message.
    Send(Message),
    /// Close the connection.
    Close(&'static str),
    /// Send this block as a compact block unless the peer is known to have it.
    Push {
        /// The block's hash.
        hash: BlockHash,
        /// The block, shared by every peer it is pushed to; each gets a compact block of
        /// its own.
        block: Arc<ForPeers>,
    },
    /// Announce this header of a block we have whole and are validating, unless the peer
    /// is known to have it: a peer that pushes blocks to us then does not push this one.
    AnnounceHeader(Header),
}

/// A session's "you are closed" that reaches it wherever it waits, with why.
#[derive(Default)]
pub(crate) struct Closing {
    reason: std::sync::OnceLock<&'static str>,
    signal: tokio_util::sync::CancellationToken,
}

impl Closing {
    /// Marks the session closed for `reason` (the first reason stays).
    pub(crate) fn close(&self, reason: &'static str) {
        let _ = self.reason.set(reason);
        self.signal.cancel();
    }

    /// Resolves once the session was closed, with why.
    pub(crate) async fn closed(&self) -> &'static str {
        self.signal.cancelled().await;
        self.reason.get().copied().unwrap_or("closed by this node")
    }
}

/// A connected peer.
pub(crate) struct PeerEntry {
    /// Reaches its session task.
    pub(crate) commands: mpsc::Sender<PeerCommand>,
    /// Tells its session it was closed even while the session waits to send (answering a
    /// large `getdata` to a peer that reads slowly), which no command reaches.
    pub(crate) closing: Arc<Closing>,
    /// What to announce to it.
    pub(crate) announcements: Arc<Announcements>,
    /// What `GET /peers` shows.
    pub(crate) info: PeerInfo,
    /// The nonce of its hello: the same node over two connections has one nonce.
    pub(crate) node_nonce: u64,
    /// The address it is connected from or to (an IPv4-mapped IPv6 address as IPv4): two
    /// connections are one node's only if they share it as well as the nonce, which
    /// anyone who connects to that node hears in its hello.
    pub(crate) ip: IpAddr,
    /// Where it listens, when known.
    pub(crate) listen_url: Option<PeerUrl>,
    /// The highest block this peer is known to have (from its headers, announcements and
    /// blocks): blocks are asked only of peers whose chain holds them.
    pub(crate) best_known: Option<(BlockHash, u64)>,
    /// The address group it connected from.
    pub(crate) group: AddressGroup,
    /// Its lowest ping round trip, once it answered one.
    pub(crate) min_ping_ms: Option<u64>,
    /// When it last sent a block new to us.
    pub(crate) last_block_ms: Option<u64>,
    /// When it last sent a transaction we pooled.
    pub(crate) last_transaction_ms: Option<u64>,
    /// It relays compact blocks (it sent `sendcmpct`): blocks near the tip are asked of
    /// it as compact blocks.
    pub(crate) relays_compact: bool,
    /// It asked us to push new blocks as compact blocks (`sendcmpct`, high-bandwidth).
    pub(crate) push_compact: bool,
}

impl PeerEntry {
    /// Closes its session for `reason`: a command for its loop, and the closing signal for
    /// wherever else it waits.
    fn close(&self, reason: &'static str) {
        let _ = self.commands.try_send(PeerCommand::Close(reason));
        self.closing.close(reason);
    }
}

/// Why a finished handshake does not become a registered peer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Refusal {
    /// The node is already connected through a preferred connection.
    Duplicate,
    /// No inbound slot is free and every inbound peer is protected from eviction.
    Full,
    /// Its address group holds its share of inbound slots.
    GroupFull,
}

/// The inbound limits [`PeerRegistry::register`] enforces.
#[derive(Clone, Copy, Debug)]
pub(crate) struct InboundLimits {
    pub(crate) max_inbound: usize,
    pub(crate) max_per_group: usize,
}

/// The connected peers.
#[derive(Default)]
pub(crate) struct PeerRegistry {
    peers: Mutex<BTreeMap<PeerId, PeerEntry>>,
    next_id: AtomicU64,
    /// Keys the hash of address groups that eviction protects: drawn at random, so no
    /// stranger can tell which groups are protected.
    group_keys: RandomState,
    closed: Mutex<VecDeque<DisconnectInfo>>,
}

impl PeerRegistry {
    fn peers(&self) -> MutexGuard<'_, BTreeMap<PeerId, PeerEntry>> {
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a finished handshake (`entry.commands` is replaced by the returned
    /// channel's sender). Keeps one connection per node: if the node is already connected,
    /// the connection dialled by the node with the smaller nonce wins on both sides, so
    /// simultaneous dials settle on the same connection; the loser is told to close. A
    /// node is known by its nonce and its address together: a stranger that repeats a
    /// node's nonce from elsewhere is another peer, and takes nobody's place. An
    /// inbound peer is refused if its group has its share of slots; if all slots are
    /// taken, the least useful inbound peer is evicted to make room (told to close), or,
    /// if all are protected, the newcomer is refused.
    pub(crate) fn register(
        &self,
        entry: PeerEntry,
        our_nonce: u64,
        limits: InboundLimits,
    ) -> Result<(PeerId, mpsc::Receiver<PeerCommand>), Refusal> {
        let (sender, receiver) = mpsc::channel(PEER_COMMAND_CAPACITY);
        let mut peers = self.peers();
        let we_dial_preferred = our_nonce < entry.node_nonce;
        let new_is_preferred = entry.info.outbound == we_dial_preferred;
        let existing = peers
            .iter()
            .find(|(_, existing)| {
                existing.node_nonce == entry.node_nonce && existing.ip == entry.ip
            })
            .map(|(id, existing)| (*id, existing.info.outbound == we_dial_preferred));
        let mut replacing = None;
        if let Some((existing_id, existing_is_preferred)) = existing {
            if existing_is_preferred || !new_is_preferred {
                return Err(Refusal::Duplicate);
            }
            replacing = Some(existing_id);
        }
        // The connection this one replaces is closed only once this one is sure to be
        // registered: a refusal below must not lose both. It goes the other way (that is
        // what makes this one preferred), so the inbound checks do not count it.
        let mut evicting = None;
        if !entry.info.outbound {
            let in_group = peers
                .values()
                .filter(|peer| !peer.info.outbound && peer.group == entry.group)
                .count();
            if entry.group.is_capped() && in_group >= limits.max_per_group {
                return Err(Refusal::GroupFull);
            }
            let inbound = peers.values().filter(|peer| !peer.info.outbound).count();
            if inbound >= limits.max_inbound {
                let candidates = peers
                    .iter()
                    .filter(|(_, peer)| !peer.info.outbound)
                    .map(|(id, peer)| self.candidate(*id, peer))
                    .collect();
                evicting = Some(select_victim(candidates).ok_or(Refusal::Full)?);
            }
        }
        if let Some(replaced) = replacing.and_then(|id| peers.remove(&id)) {
            replaced.close("replaced by a preferred connection");
        }
        if let Some(evicted) = evicting.and_then(|id| peers.remove(&id)) {
            evicted.close(EVICTED);
        }
        let id = PeerId(self.next_id.fetch_add(1, Ordering::Relaxed));
        peers.insert(
            id,
            PeerEntry {
                commands: sender,
                ..entry
            },
        );
        Ok((id, receiver))
    }

    fn candidate(&self, id: PeerId, peer: &PeerEntry) -> Candidate {
        Candidate {
            id,
            group: peer.group,
            group_key: self.group_keys.hash_one(peer.group),
            connected_ms: peer.info.connected_since_ms,
            min_ping_ms: peer.min_ping_ms,
            last_block_ms: peer.last_block_ms,
            last_transaction_ms: peer.last_transaction_ms,
        }
    }

    /// Forgets a closed session.
    pub(crate) fn unregister(&self, id: PeerId) {
        self.peers().remove(&id);
    }

    /// Remembers how a session ended (the last [`DISCONNECT_HISTORY`]).
    pub(crate) fn record_disconnect(&self, disconnect: DisconnectInfo) {
        let mut closed = self.closed.lock().unwrap_or_else(PoisonError::into_inner);
        if closed.len() >= DISCONNECT_HISTORY {
            closed.pop_front();
        }
        closed.push_back(disconnect);
    }

    /// The last sessions that ended, newest first.
    pub(crate) fn disconnected(&self) -> Vec<DisconnectInfo> {
        let closed = self.closed.lock().unwrap_or_else(PoisonError::into_inner);
        closed.iter().rev().cloned().collect()
    }

    /// Records a ping round trip of `rtt_ms`.
    pub(crate) fn note_ping(&self, id: PeerId, rtt_ms: u64) {
        if let Some(entry) = self.peers().get_mut(&id) {
            let lowest = entry.min_ping_ms.map_or(rtt_ms, |min| min.min(rtt_ms));
            entry.min_ping_ms = Some(lowest);
            entry.info.ping_ms = Some(lowest);
        }
    }

    /// Records that a peer sent a block new to us at `now_ms`.
    pub(crate) fn note_useful_block(&self, id: PeerId, now_ms: u64) {
        if let Some(entry) = self.peers().get_mut(&id) {
            entry.last_block_ms = Some(now_ms);
        }
    }

    /// Records that a peer sent a transaction we pooled at `now_ms`.
    pub(crate) fn note_useful_transaction(&self, id: PeerId, now_ms: u64) {
        if let Some(entry) = self.peers().get_mut(&id) {
            entry.last_transaction_ms = Some(now_ms);
        }
    }

    /// Forgets every connected peer that listens at `url` or is shown as `url`, and tells
    /// its session to close with `reason`; how many there were.
    pub(crate) fn close_matching(&self, url: &PeerUrl, reason: &'static str) -> usize {
        let shown = url.to_string();
        let mut peers = self.peers();
        let matching: Vec<PeerId> = peers
            .iter()
            .filter(|(_, entry)| entry.listen_url.as_ref() == Some(url) || entry.info.url == shown)
            .map(|(id, _)| *id)
            .collect();
        for id in &matching {
            if let Some(closed) = peers.remove(id) {
                closed.close(reason);
            }
        }
        matching.len()
    }

    /// Where the connected peers listen (those that said); with `outbound_only`, the
    /// addresses this node dialled and is connected to (an inbound peer's is only what it
    /// claims).
    pub(crate) fn listen_urls(&self, outbound_only: bool) -> std::collections::HashSet<PeerUrl> {
        self.peers()
            .values()
            .filter(|entry| !outbound_only || entry.info.outbound)
            .filter_map(|entry| entry.listen_url.clone())
            .collect()
    }

    /// The addresses of the peers this node dialled and is connected to, the longest
    /// connected first.
    pub(crate) fn outbound_by_age(&self) -> Vec<PeerUrl> {
        let mut outbound: Vec<(u64, PeerUrl)> = self
            .peers()
            .values()
            .filter(|entry| entry.info.outbound)
            .filter_map(|entry| Some((entry.info.connected_since_ms, entry.listen_url.clone()?)))
            .collect();
        outbound.sort_unstable();
        outbound.into_iter().map(|(_, url)| url).collect()
    }

    /// True if a connected peer listens at `url`.
    pub(crate) fn is_connected_to(&self, url: &PeerUrl) -> bool {
        self.peers()
            .values()
            .any(|entry| entry.listen_url.as_ref() == Some(url))
    }

    /// The connected peers as `GET /peers` shows them, by address.
    pub(crate) fn infos(&self) -> Vec<PeerInfo> {
        let mut peers: Vec<PeerInfo> = self
            .peers()
            .values()
            .map(|entry| entry.info.clone())
            .collect();
        peers.sort_by(|a, b| a.url.cmp(&b.url));
        peers
    }

    /// Records that a peer has `hash` at `height` (and so its ancestors).
    ///
    /// True if it is higher than any block the peer was known to have: only then may it
    /// be asked for more blocks than before.
    pub(crate) fn note_block(&self, id: PeerId, hash: BlockHash, height: u64) -> bool {
        let mut peers = self.peers();
        let Some(entry) = peers.get_mut(&id) else {
            return false;
        };
        entry.info.best_height = entry.info.best_height.max(height);
        let higher = entry.best_known.is_none_or(|(_, known)| height > known);
        if higher {
            entry.best_known = Some((hash, height));
        }
        higher
    }

    /// Each connected peer's best known block, for peers that have shown one.
    pub(crate) fn tips(&self) -> Vec<(PeerId, BlockHash)> {
        self.peers()
            .iter()
            .filter_map(|(id, entry)| entry.best_known.map(|(hash, _)| (*id, hash)))
            .collect()
    }

    /// The command channel of a connected peer.
    /// Closes peer `id`'s session for `reason`, wherever it waits; it stays registered
    /// until its session ends.
    pub(crate) fn close(&self, id: PeerId, reason: &'static str) {
        if let Some(entry) = self.peers().get(&id) {
            entry.close(reason);
        }
    }

    pub(crate) fn commands(&self, id: PeerId) -> Option<mpsc::Sender<PeerCommand>> {
        self.peers().get(&id).map(|entry| entry.commands.clone())
    }

    /// Records that a peer relays compact blocks, and whether it asked us to push new
    /// blocks.
    pub(crate) fn set_compact_relay(&self, id: PeerId, push: bool) {
        if let Some(entry) = self.peers().get_mut(&id) {
            entry.relays_compact = true;
            entry.push_compact = push;
        }
    }

    /// True if the peer relays compact blocks.
    pub(crate) fn relays_compact(&self, id: PeerId) -> bool {
        self.peers()
            .get(&id)
            .is_some_and(|entry| entry.relays_compact)
    }

    /// The command channels of the peers that asked us to push new blocks.
    pub(crate) fn push_targets(&self) -> Vec<mpsc::Sender<PeerCommand>> {
        self.peers()
            .values()
            .filter(|entry| entry.push_compact)
            .map(|entry| entry.commands.clone())
            .collect()
    }

    /// The command channels of `peers` but `from`, leaving out those that asked us to
    /// push new blocks (our push tells them we have a block).
    pub(crate) fn commands_unless_pushed_to(
        &self,
        peers: &[PeerId],
        from: PeerId,
    ) -> Vec<mpsc::Sender<PeerCommand>> {
        let entries = self.peers();
        peers
            .iter()
            .filter(|peer| **peer != from)
            .filter_map(|peer| entries.get(peer))
            .filter(|entry| !entry.push_compact)
            .map(|entry| entry.commands.clone())
            .collect()
    }

    /// True if any peer asked us to push new blocks.
    pub(crate) fn has_push_targets(&self) -> bool {
        self.peers().values().any(|entry| entry.push_compact)
    }

    /// Every connected peer's announcement queue.
    pub(crate) fn announcement_queues(&self) -> Vec<Arc<Announcements>> {
        self.peers()
            .values()
            .map(|entry| Arc::clone(&entry.announcements))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const LIMITS: InboundLimits = InboundLimits {
        max_inbound: 32,
        max_per_group: 8,
    };

    fn entry(nonce: u64, ip: [u8; 4], outbound: bool) -> PeerEntry {
        let ip = IpAddr::from(ip);
        PeerEntry {
            commands: mpsc::channel(1).0,
            closing: Arc::default(),
            announcements: Arc::new(Announcements::new(Duration::from_millis(20))),
            info: PeerInfo {
                url: format!("ws://{ip}:3000"),
                outbound,
                best_height: 0,
                connected_since_ms: 0,
                ping_ms: None,
            },
            node_nonce: nonce,
            ip,
            listen_url: None,
            best_known: None,
            group: AddressGroup::of(ip),
            min_ping_ms: None,
            last_block_ms: None,
            last_transaction_ms: None,
            relays_compact: false,
            push_compact: false,
        }
    }

    #[test]
    fn a_peer_s_best_block_is_news_only_when_it_is_higher() {
        let registry = PeerRegistry::default();
        let (id, _commands) = registry
            .register(entry(5, [10, 0, 0, 1], true), 9, LIMITS)
            .expect("registered");
        let block = |byte| BlockHash([byte; 32]);
        assert!(registry.note_block(id, block(1), 10), "its first block");
        assert!(registry.note_block(id, block(2), 11), "higher");
        // An `inv` of blocks it was known to have: nothing to plan downloads for again.
        assert!(!registry.note_block(id, block(2), 11));
        assert!(!registry.note_block(id, block(1), 10));
        assert_eq!(registry.tips(), vec![(id, block(2))]);
        assert!(
            !registry.note_block(PeerId(999), block(3), 12),
            "not connected"
        );
    }

    #[test]
    fn a_node_s_nonce_repeated_from_elsewhere_takes_nobody_s_place() {
        let registry = PeerRegistry::default();
        // Our nonce is the larger: the node's own dial to us (inbound here) is preferred.
        let ours = 9;
        let (dialled, mut dialled_commands) = registry
            .register(entry(5, [10, 0, 0, 1], true), ours, LIMITS)
            .expect("registered");
        // A stranger that heard node 5's hello claims its nonce from another address.
        let (stranger, _) = registry
            .register(entry(5, [10, 9, 0, 1], false), ours, LIMITS)
            .expect("another peer, not node 5");
        assert_ne!(dialled, stranger);
        assert!(
            dialled_commands.try_recv().is_err(),
            "the real connection is not told to close"
        );
        assert_eq!(registry.peers().len(), 2);
        // Node 5 itself dialling us from its own address: the preferred connection wins.
        registry
            .register(entry(5, [10, 0, 0, 1], false), ours, LIMITS)
            .expect("the preferred connection");
        assert!(matches!(
            dialled_commands.try_recv(),
            Ok(PeerCommand::Close("replaced by a preferred connection"))
        ));
    }

    #[test]
    fn a_preferred_connection_refused_by_the_inbound_limits_replaces_nothing() {
        let registry = PeerRegistry::default();
        let ours = 9;
        let (_dialled, mut dialled_commands) = registry
            .register(entry(5, [10, 0, 0, 1], true), ours, LIMITS)
            .expect("registered");
        // Node 5's own (preferred) dial to us, refused because its group is full.
        let no_room = InboundLimits {
            max_inbound: 32,
            max_per_group: 0,
        };
        assert!(matches!(
            registry.register(entry(5, [10, 0, 0, 1], false), ours, no_room),
            Err(Refusal::GroupFull)
        ));
        assert!(
            dialled_commands.try_recv().is_err(),
            "the connection it would have replaced is kept"
        );
        assert_eq!(registry.peers().len(), 1);
    }
}
