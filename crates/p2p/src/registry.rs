//! The peer registry: who is connected, in which direction, what each is known to have,
//! and the channels that reach its session task.
//!
//! ```text
//!   handshake done ──register──▶ PeerRegistry { id ─▶ PeerEntry } ◀──unregister── session end
//!        (one connection per node: the dial of the smaller nonce wins; inbound slots capped)
//!   download pump ──tips()──▶ [(id, best block known)]     relay ──queues()──▶ announcements
//! ```
//!
//! The registry knows nothing of sessions or messages beyond the command channel: it is
//! the map the other parts of the layer (downloads, relay, the address book) consult.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use powchain_consensus::BlockHash;
use powchain_node::PeerInfo;
use tokio::sync::mpsc;

use crate::message::Message;
use crate::relay::Announcements;
use crate::url::PeerUrl;

/// Commands queued for one peer at most (requests and closes; announcements wait in the
/// peer's [`Announcements`]).
const PEER_COMMAND_CAPACITY: usize = 512;

/// A connected peer's number, unique for the life of the layer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub(crate) struct PeerId(u64);

impl PeerId {
    /// The number behind the id.
    pub(crate) fn number(self) -> u64 {
        self.0
    }

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
}

/// A connected peer.
pub(crate) struct PeerEntry {
    /// Reaches its session task.
    pub(crate) commands: mpsc::Sender<PeerCommand>,
    /// What to announce to it.
    pub(crate) announcements: Arc<Announcements>,
    /// What `GET /peers` shows.
    pub(crate) info: PeerInfo,
    /// The nonce of its hello: the same node over two connections has one nonce.
    pub(crate) node_nonce: u64,
    /// Where it listens, when known.
    pub(crate) listen_url: Option<PeerUrl>,
    /// The highest block this peer is known to have (from its headers, announcements and
    /// blocks): blocks are asked only of peers whose chain holds them.
    pub(crate) best_known: Option<(BlockHash, u64)>,
}

/// Why a finished handshake does not become a registered peer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Refusal {
    /// The node is already connected through a preferred connection.
    Duplicate,
    /// No inbound slot is free.
    Full,
}

/// The connected peers.
#[derive(Default)]
pub(crate) struct PeerRegistry {
    peers: Mutex<HashMap<PeerId, PeerEntry>>,
    next_id: AtomicU64,
}

impl PeerRegistry {
    fn peers(&self) -> MutexGuard<'_, HashMap<PeerId, PeerEntry>> {
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a finished handshake (`entry.commands` is replaced by the returned
    /// channel's sender). Keeps one connection per node: if the node is already connected,
    /// the connection dialled by the node with the smaller nonce wins on both sides, so
    /// simultaneous dials settle on the same connection; the loser is told to close.
    pub(crate) fn register(
        &self,
        entry: PeerEntry,
        our_nonce: u64,
        max_inbound: usize,
    ) -> Result<(PeerId, mpsc::Receiver<PeerCommand>), Refusal> {
        let (sender, receiver) = mpsc::channel(PEER_COMMAND_CAPACITY);
        let mut peers = self.peers();
        let we_dial_preferred = our_nonce < entry.node_nonce;
        let new_is_preferred = entry.info.outbound == we_dial_preferred;
        let existing = peers
            .iter()
            .find(|(_, existing)| existing.node_nonce == entry.node_nonce)
            .map(|(id, existing)| (*id, existing.info.outbound == we_dial_preferred));
        if let Some((existing_id, existing_is_preferred)) = existing {
            if existing_is_preferred || !new_is_preferred {
                return Err(Refusal::Duplicate);
            }
            if let Some(replaced) = peers.remove(&existing_id) {
                let _ = replaced
                    .commands
                    .try_send(PeerCommand::Close("replaced by a preferred connection"));
            }
        }
        let inbound = peers.values().filter(|peer| !peer.info.outbound).count();
        if !entry.info.outbound && inbound >= max_inbound {
            return Err(Refusal::Full);
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

    /// Forgets a closed session.
    pub(crate) fn unregister(&self, id: PeerId) {
        self.peers().remove(&id);
    }

    /// Connected peers we accepted.
    pub(crate) fn inbound_count(&self) -> usize {
        self.peers()
            .values()
            .filter(|entry| !entry.info.outbound)
            .count()
    }

    /// Connected peers we dialled.
    pub(crate) fn outbound_count(&self) -> usize {
        self.peers()
            .values()
            .filter(|entry| entry.info.outbound)
            .count()
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
    pub(crate) fn note_block(&self, id: PeerId, hash: BlockHash, height: u64) {
        if let Some(entry) = self.peers().get_mut(&id) {
            entry.info.best_height = entry.info.best_height.max(height);
            if entry.best_known.is_none_or(|(_, known)| height > known) {
                entry.best_known = Some((hash, height));
            }
        }
    }

    /// Each connected peer's best known block, for peers that have shown one.
    pub(crate) fn tips(&self) -> Vec<(PeerId, BlockHash)> {
        self.peers()
            .iter()
            .filter_map(|(id, entry)| entry.best_known.map(|(hash, _)| (*id, hash)))
            .collect()
    }

    /// The command channel of a connected peer.
    pub(crate) fn commands(&self, id: PeerId) -> Option<mpsc::Sender<PeerCommand>> {
        self.peers().get(&id).map(|entry| entry.commands.clone())
    }

    /// Every connected peer's announcement queue.
    pub(crate) fn announcement_queues(&self) -> Vec<Arc<Announcements>> {
        self.peers()
            .values()
            .map(|entry| Arc::clone(&entry.announcements))
            .collect()
    }
}
