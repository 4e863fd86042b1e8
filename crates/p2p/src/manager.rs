//! `P2p`: the peer registry, the listener, the dialers, relay, block downloads and bans.
//!
//! ```text
//!   TcpListener ──accept──▶ session (peer.rs) ◀──dial── dialer per address (backoff)
//!                              │   ▲
//!          register/unregister │   │ PeerCommand (bounded channel): send, announce, close
//!                              ▼   │
//!                     State { peers, bans, known addresses, blocks in flight }
//!   NodeEvent ──relay task──▶ announce the new tip / accepted transactions to every peer
//!   sync tick ──pump_downloads──▶ GetData to peers with room, towards the best header
//! ```
//!
//! Lock order: the node's core lock (inside `Node` calls) is never taken while this
//! module's `state` lock is held.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use powchain_consensus::{BlockHash, Transaction, Txid};
use powchain_node::{Node, NodeEvent, PeerError, PeerInfo, PeerManager};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::ban::{BanKey, BanList};
use crate::config::P2pConfig;
use crate::message::{InventoryItem, InventoryKind, MAX_INVENTORY, MAX_MESSAGE_BYTES, Message};
use crate::peer::{SessionEnd, run_session};
use crate::url::PeerUrl;

/// Blocks in flight from one peer at most. The peer streams them one by one, so this
/// bounds neither side's memory; it bounds how far a request runs ahead.
const MAX_BLOCKS_IN_FLIGHT_PER_PEER: usize = 64;
/// A peer with blocks in flight is asked for more only once this many slots are free, so
/// a sync sends one `getdata` per 32 blocks, not one per block: a peer serving a fast sync
/// (thousands of small blocks a second) sees far fewer requests than its rate limit
/// (500 messages a second), which would otherwise ban the syncing node as a flood.
const MIN_BLOCKS_PER_REQUEST: usize = 32;
/// A session must last this long for its end to reset the dial backoff: a peer that
/// closes at once (it banned us, say) is dialled less and less often, not every 250 ms.
const STABLE_SESSION: Duration = Duration::from_secs(10);
/// How far past the tip downloads reach.
const DOWNLOAD_WINDOW: usize = 1024;
/// Commands queued for one peer at most (requests and closes; announcements wait in the
/// peer's [`Announcements`]).
const PEER_COMMAND_CAPACITY: usize = 512;
/// Items waiting to be announced to one peer at most; beyond, the oldest are dropped (a
/// peer this far behind learns the pool again when it reconnects).
const MAX_PENDING_ANNOUNCEMENTS: usize = 100_000;
/// Transaction ids remembered as requested or refused.
const RECENT_TRANSACTIONS: usize = 50_000;
/// A dialer for a learned (not configured) address gives up after this many failures.
const MAX_LEARNED_FAILURES: u32 = 5;
/// Transactions held while a parent they spend is missing, at most (the oldest go first).
const MAX_ORPHAN_TRANSACTIONS: usize = 100;
/// Encoded bytes of the transactions held while a parent is missing, at most.
const MAX_ORPHAN_TRANSACTION_BYTES: usize = 5_000_000;

/// What a session task is told to do.
#[derive(Debug)]
pub(crate) enum PeerCommand {
    /// Send this message.
    Send(Message),
    /// Close the connection.
    Close(&'static str),
}

/// Items to announce to one peer. The session takes them all at once and sends them in
/// as few `inv` messages as it can, so a burst of transactions costs the peer a few
/// messages, not one each; and a session busy writing to a slow peer loses none (ids are
/// 33 bytes, bounded by [`MAX_PENDING_ANNOUNCEMENTS`]).
#[derive(Default)]
pub(crate) struct Announcements {
    items: Mutex<VecDeque<InventoryItem>>,
    ready: tokio::sync::Notify,
}

impl Announcements {
    fn push(&self, item: InventoryItem) {
        {
            let mut items = self.items.lock().unwrap_or_else(PoisonError::into_inner);
            if items.len() >= MAX_PENDING_ANNOUNCEMENTS {
                items.pop_front();
            }
            items.push_back(item);
        }
        self.ready.notify_one();
    }

    /// Waits until something is pending (returns at once if something was pushed since
    /// the last `take`).
    pub(crate) async fn ready(&self) {
        self.ready.notified().await;
    }

    /// Everything pending, oldest first.
    pub(crate) fn take(&self) -> Vec<InventoryItem> {
        let mut items = self.items.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut *items).into()
    }
}

pub(crate) struct PeerEntry {
    pub(crate) commands: mpsc::Sender<PeerCommand>,
    pub(crate) announcements: Arc<Announcements>,
    pub(crate) info: PeerInfo,
    pub(crate) node_nonce: u64,
    pub(crate) listen_url: Option<PeerUrl>,
    /// The highest block this peer is known to have (from its headers, announcements and
    /// blocks): blocks are asked only of peers whose chain holds them.
    pub(crate) best_known: Option<(BlockHash, u64)>,
    /// Blocks this peer said it does not have.
    pub(crate) not_found: HashSet<BlockHash>,
}

#[derive(Default)]
struct State {
    peers: HashMap<u64, PeerEntry>,
    bans: BanList,
    known_addresses: BTreeSet<PeerUrl>,
    dialing: HashSet<PeerUrl>,
    own_addresses: HashSet<PeerUrl>,
    in_flight: HashMap<BlockHash, (u64, Instant)>,
    recent_transactions: HashSet<Txid>,
    recent_order: VecDeque<Txid>,
    /// Transactions from peers that spend an output nobody here has seen yet (their parent
    /// may be in a block or pool still to come), oldest first: tried again whenever a
    /// transaction enters the pool or the tip moves.
    orphan_transactions: VecDeque<(Txid, Transaction)>,
}

/// The peer-to-peer layer of one node.
pub struct P2p {
    pub(crate) node: Arc<Node>,
    pub(crate) config: P2pConfig,
    pub(crate) node_nonce: u64,
    pub(crate) listen_port: u16,
    state: Mutex<State>,
    token: CancellationToken,
    tasks: TaskTracker,
    next_peer_id: AtomicU64,
}

/// How the rest of the node sees the P2P layer (weak, so the node and the layer do not
/// keep each other alive).
struct PeerManagerHandle(Weak<P2p>);

impl PeerManager for PeerManagerHandle {
    fn peers(&self) -> Vec<PeerInfo> {
        self.0.upgrade().map(|p2p| p2p.peers()).unwrap_or_default()
    }

    fn add_peer(&self, url: &str) -> Result<(), PeerError> {
        let p2p = self
            .0
            .upgrade()
            .ok_or_else(|| PeerError("the peer-to-peer layer has stopped".into()))?;
        let url = PeerUrl::parse(url).map_err(PeerError)?;
        p2p.dial(url, true);
        Ok(())
    }

    fn banned(&self) -> Vec<(String, String)> {
        self.0.upgrade().map(|p2p| p2p.banned()).unwrap_or_default()
    }
}

/// The WebSocket limits every connection uses: nothing larger than a message may be read.
pub(crate) fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
}

fn random_nonce() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // Only self-connection detection depends on it; the clock is a fine fallback.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos() as u64);
        bytes = now.to_le_bytes();
    }
    u64::from_le_bytes(bytes)
}

impl P2p {
    /// Starts the layer: binds the listener (if configured), dials the configured peers,
    /// and relays the node's events. The node learns of it through `PeerManager`. Every
    /// task it starts runs on `tasks` and ends when `shutdown` is cancelled: the node's one
    /// token and tracker, so stopping the node stops the peers with everything else.
    ///
    /// # Errors
    /// If the listening address cannot be bound.
    pub async fn start(
        node: Arc<Node>,
        config: P2pConfig,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> std::io::Result<Arc<P2p>> {
        let listener = match config.listen {
            Some(address) => Some(TcpListener::bind(address).await?),
            None => None,
        };
        let listen_port = match &listener {
            Some(listener) => listener.local_addr()?.port(),
            None => 0,
        };
        let p2p = Arc::new(P2p {
            node: Arc::clone(&node),
            config,
            node_nonce: random_nonce(),
            listen_port,
            state: Mutex::new(State::default()),
            token: shutdown,
            tasks,
            next_peer_id: AtomicU64::new(1),
        });
        node.set_peer_manager(Arc::new(PeerManagerHandle(Arc::downgrade(&p2p))));
        if let Some(listener) = listener {
            let address = listener.local_addr()?;
            info!(
                port = address.port(),
                "listening for peer to peer connection on port {}",
                address.port()
            );
            p2p.tasks.spawn(Arc::clone(&p2p).accept_loop(listener));
        }
        p2p.tasks.spawn(Arc::clone(&p2p).relay_loop());
        p2p.tasks.spawn(Arc::clone(&p2p).sync_loop());
        for peer in p2p.config.peers.clone() {
            if peer.trim().is_empty() {
                continue;
            }
            match PeerUrl::parse(&peer) {
                Ok(url) => p2p.dial(url, true),
                Err(error) => warn!(%error, "ignoring a configured peer"),
            }
        }
        Ok(p2p)
    }

    /// The port peers connect to (0 if not listening).
    pub fn listen_port(&self) -> u16 {
        self.listen_port
    }

    pub(crate) fn token(&self) -> &CancellationToken {
        &self.token
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs a node call on the blocking pool.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Node) -> T + Send + 'static,
    ) -> Option<T> {
        let node = Arc::clone(&self.node);
        tokio::task::spawn_blocking(move || work(&node)).await.ok()
    }

    /// The connected peers.
    pub fn peers(&self) -> Vec<PeerInfo> {
        let mut peers: Vec<PeerInfo> = self
            .state()
            .peers
            .values()
            .map(|entry| entry.info.clone())
            .collect();
        peers.sort_by(|a, b| a.url.cmp(&b.url));
        peers
    }

    /// Bans in force: who and the rule broken.
    pub fn banned(&self) -> Vec<(String, String)> {
        let now = self.node.now_ms();
        self.state()
            .bans
            .active(now)
            .into_iter()
            .map(|(key, ban)| (key.to_string(), ban.rule))
            .collect()
    }

    /// True if `key` is banned now.
    pub(crate) fn is_banned(&self, key: &BanKey) -> bool {
        let now = self.node.now_ms();
        self.state().bans.is_banned(key, now)
    }

    /// Bans `key` for breaking `rule`.
    pub(crate) fn ban(&self, key: BanKey, rule: &str) {
        let until = self
            .node
            .now_ms()
            .saturating_add(self.config.ban_duration.as_millis() as u64);
        self.state().bans.ban(key, until, rule);
    }

    fn inbound_count(&self) -> usize {
        self.state()
            .peers
            .values()
            .filter(|entry| !entry.info.outbound)
            .count()
    }

    fn outbound_count(&self) -> usize {
        self.state()
            .peers
            .values()
            .filter(|entry| entry.info.outbound)
            .count()
    }

    fn is_connected_to(&self, url: &PeerUrl) -> bool {
        self.state()
            .peers
            .values()
            .any(|entry| entry.listen_url.as_ref() == Some(url))
    }

    /// Records a finished handshake. Keeps one connection per node: if the node is
    /// already connected, the connection dialled by the node with the smaller nonce wins
    /// on both sides, so simultaneous dials settle on the same connection.
    pub(crate) fn register(
        &self,
        entry: PeerEntry,
    ) -> Result<(u64, mpsc::Receiver<PeerCommand>), SessionEnd> {
        let (sender, receiver) = mpsc::channel(PEER_COMMAND_CAPACITY);
        let mut state = self.state();
        let we_dial_preferred = self.node_nonce < entry.node_nonce;
        let new_is_preferred = entry.info.outbound == we_dial_preferred;
        let existing = state
            .peers
            .iter()
            .find(|(_, existing)| existing.node_nonce == entry.node_nonce)
            .map(|(id, existing)| (*id, existing.info.outbound == we_dial_preferred));
        if let Some((existing_id, existing_is_preferred)) = existing {
            if existing_is_preferred || !new_is_preferred {
                return Err(SessionEnd::Duplicate);
            }
            if let Some(replaced) = state.peers.remove(&existing_id) {
                let _ = replaced
                    .commands
                    .try_send(PeerCommand::Close("replaced by a preferred connection"));
            }
        }
        if !entry.info.outbound
            && state
                .peers
                .values()
                .filter(|peer| !peer.info.outbound)
                .count()
                >= self.config.max_inbound
        {
            return Err(SessionEnd::Full);
        }
        let id = self.next_peer_id.fetch_add(1, Ordering::Relaxed);
        if let Some(url) = &entry.listen_url {
            state.known_addresses.insert(url.clone());
        }
        state.peers.insert(
            id,
            PeerEntry {
                commands: sender,
                ..entry
            },
        );
        Ok((id, receiver))
    }

    /// Forgets a closed session and releases its blocks in flight.
    pub(crate) fn unregister(&self, id: u64) {
        let mut state = self.state();
        state.peers.remove(&id);
        state.in_flight.retain(|_, (peer, _)| *peer != id);
    }

    /// Records that a peer has `hash` at `height` (and so its ancestors).
    pub(crate) fn note_peer_block(&self, id: u64, hash: BlockHash, height: u64) {
        if let Some(entry) = self.state().peers.get_mut(&id) {
            entry.info.best_height = entry.info.best_height.max(height);
            if entry.best_known.is_none_or(|(_, known)| height > known) {
                entry.best_known = Some((hash, height));
            }
        }
    }

    /// Records that a peer does not have a block we asked it for.
    pub(crate) fn note_not_found(&self, id: u64, hash: BlockHash) {
        let mut state = self.state();
        state.in_flight.remove(&hash);
        if let Some(entry) = state.peers.get_mut(&id) {
            entry.not_found.insert(hash);
        }
    }

    /// Addresses to share with a peer.
    pub(crate) fn shareable_addresses(&self) -> Vec<String> {
        self.state()
            .known_addresses
            .iter()
            .take(crate::message::MAX_ADDRESSES)
            .map(PeerUrl::to_string)
            .collect()
    }

    /// Remembers addresses a peer shared and dials some if outbound slots are free.
    pub(crate) fn learn_addresses(self: &Arc<Self>, addresses: &[String]) {
        let mut fresh = Vec::new();
        {
            let mut state = self.state();
            for text in addresses {
                if let Ok(url) = PeerUrl::parse(text) {
                    if !state.own_addresses.contains(&url)
                        && state.known_addresses.insert(url.clone())
                    {
                        fresh.push(url);
                    }
                }
            }
        }
        for url in fresh {
            if self.outbound_count() < self.config.max_outbound && !self.is_connected_to(&url) {
                self.dial(url, false);
            }
        }
    }

    /// Records that `url` reaches this very node, so it is never dialled again.
    pub(crate) fn note_own_address(&self, url: &PeerUrl) {
        let mut state = self.state();
        state.own_addresses.insert(url.clone());
        state.known_addresses.remove(url);
    }

    /// True the first time a transaction id is seen (requested or refused); later calls
    /// say false, so every transaction is fetched once.
    pub(crate) fn first_sight_of_transaction(&self, txid: Txid) -> bool {
        let mut state = self.state();
        if !state.recent_transactions.insert(txid) {
            return false;
        }
        state.recent_order.push_back(txid);
        while state.recent_order.len() > RECENT_TRANSACTIONS {
            if let Some(old) = state.recent_order.pop_front() {
                state.recent_transactions.remove(&old);
            }
        }
        true
    }

    /// Forgets that a transaction id was seen, so the next announcement of it is fetched
    /// (its request was answered with `notfound`).
    pub(crate) fn forget_transaction(&self, txid: &Txid) {
        // Its place in `recent_order` stays; popping it later removes nothing or a newer
        // sighting, which at worst fetches the transaction once more.
        self.state().recent_transactions.remove(txid);
    }

    /// Holds a transaction whose parent is missing, until the parent arrives (bounded:
    /// the oldest held go first).
    pub(crate) fn hold_orphan_transaction(&self, txid: Txid, transaction: Transaction) {
        let mut state = self.state();
        if state
            .orphan_transactions
            .iter()
            .any(|(held, _)| *held == txid)
        {
            return;
        }
        state.orphan_transactions.push_back((txid, transaction));
        let mut bytes: usize = state
            .orphan_transactions
            .iter()
            .map(|(_, held)| held.compute_size())
            .sum();
        while state.orphan_transactions.len() > MAX_ORPHAN_TRANSACTIONS
            || bytes > MAX_ORPHAN_TRANSACTION_BYTES
        {
            match state.orphan_transactions.pop_front() {
                // Forgotten as seen too: a later announcement of it is fetched again.
                Some((dropped_txid, dropped)) => {
                    bytes -= dropped.compute_size();
                    state.recent_transactions.remove(&dropped_txid);
                }
                None => break,
            }
        }
    }

    /// Offers the pool the held transactions that spend an output of `parent` (all of them
    /// if `None`: a block may have brought their parents). Accepted ones leave the hold and
    /// are relayed as any accepted transaction; those still missing a parent stay.
    async fn retry_orphan_transactions(&self, parent: Option<Txid>) {
        let candidates: Vec<(Txid, Transaction)> = {
            let mut state = self.state();
            let (ready, waiting): (VecDeque<_>, VecDeque<_>) =
                std::mem::take(&mut state.orphan_transactions)
                    .into_iter()
                    .partition(|(_, transaction)| {
                        parent.is_none_or(|parent| {
                            transaction
                                .spends()
                                .iter()
                                .any(|input| input.prevout.txid == parent)
                        })
                    });
            state.orphan_transactions = waiting;
            ready.into_iter().collect()
        };
        for (txid, transaction) in candidates {
            let held = transaction.clone();
            let result = self
                .blocking(move |node| node.submit_transaction(transaction))
                .await;
            match result {
                Some(Err(powchain_node::NodeError::Mempool(error))) if error.is_missing_input() => {
                    self.state().orphan_transactions.push_back((txid, held));
                }
                Some(Ok(_)) => debug!(%txid, "a held transaction found its parent"),
                _ => {}
            }
        }
    }

    /// True if `hash` is a block we asked peer `id` for and still wait on.
    pub(crate) fn is_in_flight_from(&self, id: u64, hash: &BlockHash) -> bool {
        self.state()
            .in_flight
            .get(hash)
            .is_some_and(|(peer, _)| *peer == id)
    }

    /// A block arrived (or was reported missing): it is no longer in flight.
    pub(crate) fn block_done(&self, hash: &BlockHash) {
        self.state().in_flight.remove(hash);
    }

    /// Asks peers with room for the next missing blocks towards the best header, each
    /// block of a peer whose chain holds it.
    ///
    /// It runs after every block received, so its cost matters to sync speed: it looks at
    /// only as many heights past the tip as the blocks in flight and the free slots could
    /// use (plus a margin), up to the download window, and returns at once when no peer
    /// has room.
    pub(crate) async fn pump_downloads(&self) {
        let (peer_tips, scan) = {
            let mut state = self.state();
            let now = Instant::now();
            let timeout = self.config.block_timeout;
            state
                .in_flight
                .retain(|_, (_, since)| now.duration_since(*since) < timeout);
            let load = peer_loads(&state.in_flight);
            let peer_tips: Vec<(u64, BlockHash)> = state
                .peers
                .iter()
                .filter_map(|(id, entry)| entry.best_known.map(|(hash, _)| (*id, hash)))
                .collect();
            let in_flight = state.in_flight.len();
            let room: usize = peer_tips
                .iter()
                .map(|(id, _)| free_slots(load.get(id).copied().unwrap_or(0)))
                .sum();
            (
                peer_tips,
                (room > 0).then(|| (in_flight + 2 * room + 64).min(DOWNLOAD_WINDOW)),
            )
        };
        let Some(scan) = scan else {
            return;
        };
        if peer_tips.is_empty() {
            return;
        }
        let Some(wanted) = self
            .blocking(move |node| node.download_plan(&peer_tips, scan))
            .await
        else {
            return;
        };
        if wanted.is_empty() {
            return;
        }
        let now = Instant::now();
        let timeout = self.config.block_timeout;
        let mut requests: Vec<(mpsc::Sender<PeerCommand>, Vec<InventoryItem>)> = Vec::new();
        {
            let mut state = self.state();
            state
                .in_flight
                .retain(|_, (_, since)| now.duration_since(*since) < timeout);
            let mut load = peer_loads(&state.in_flight);
            // Who may be asked now: decided once, before this round's assignments.
            let eligible: HashSet<u64> = state
                .peers
                .keys()
                .filter(|id| free_slots(load.get(id).copied().unwrap_or(0)) > 0)
                .copied()
                .collect();
            let mut assigned: HashMap<u64, Vec<InventoryItem>> = HashMap::new();
            for (hash, holders) in wanted {
                if state.in_flight.contains_key(&hash) {
                    continue;
                }
                // The least loaded holder that has room and has not said it lacks the block.
                let chosen = holders
                    .iter()
                    .filter(|id| {
                        eligible.contains(id)
                            && state
                                .peers
                                .get(id)
                                .is_some_and(|entry| !entry.not_found.contains(&hash))
                            && load.get(id).copied().unwrap_or(0) < MAX_BLOCKS_IN_FLIGHT_PER_PEER
                    })
                    .min_by_key(|id| load.get(id).copied().unwrap_or(0))
                    .copied();
                let Some(id) = chosen else {
                    continue;
                };
                *load.entry(id).or_default() += 1;
                state.in_flight.insert(hash, (id, now));
                assigned.entry(id).or_default().push(InventoryItem {
                    kind: InventoryKind::Block,
                    hash: hash.0,
                });
            }
            for (id, items) in assigned {
                if let Some(entry) = state.peers.get(&id) {
                    requests.push((entry.commands.clone(), items));
                }
            }
        }
        for (sender, items) in requests {
            for chunk in items.chunks(MAX_INVENTORY) {
                if sender
                    .try_send(PeerCommand::Send(Message::GetData(chunk.to_vec())))
                    .is_err()
                {
                    debug!("a peer's queue is full; its blocks will be asked of others");
                }
            }
        }
    }

    /// Queues `items` for announcement to every peer (each session skips what its peer
    /// is known to have).
    fn announce_to_all(&self, items: &[InventoryItem]) {
        let queues: Vec<Arc<Announcements>> = self
            .state()
            .peers
            .values()
            .map(|entry| Arc::clone(&entry.announcements))
            .collect();
        for queue in queues {
            for item in items {
                queue.push(*item);
            }
        }
    }

    /// Starts a dialer for `url` unless one runs. A `persistent` dialer (configured peers)
    /// retries forever; others give up after a few failures.
    pub(crate) fn dial(self: &Arc<Self>, url: PeerUrl, persistent: bool) {
        {
            let mut state = self.state();
            if state.own_addresses.contains(&url) || !state.dialing.insert(url.clone()) {
                return;
            }
            state.known_addresses.insert(url.clone());
        }
        let p2p = Arc::clone(self);
        self.tasks.spawn(async move {
            p2p.dial_loop(&url, persistent).await;
            p2p.state().dialing.remove(&url);
        });
    }

    async fn dial_loop(self: &Arc<Self>, url: &PeerUrl, persistent: bool) {
        let initial_backoff = Duration::from_millis(250);
        let mut backoff = initial_backoff;
        let mut failures = 0u32;
        loop {
            if self.token.is_cancelled() || self.state().own_addresses.contains(url) {
                return;
            }
            let connected = self.is_connected_to(url);
            let room = persistent || self.outbound_count() < self.config.max_outbound;
            if !connected && room {
                let dialled = Instant::now();
                match self.connect(url).await {
                    Ok(end) => {
                        debug!(peer = %url, ?end, "session ended");
                        match end {
                            SessionEnd::SelfConnection => {
                                self.note_own_address(url);
                                return;
                            }
                            SessionEnd::WrongNetwork(_) => {
                                warn!(peer = %url, "peer is on another network; not dialling it again");
                                return;
                            }
                            SessionEnd::Duplicate => backoff = self.config.max_backoff,
                            end if end.was_established() && dialled.elapsed() >= STABLE_SESSION => {
                                backoff = initial_backoff;
                                failures = 0;
                            }
                            end if end.was_established() => {}
                            _ => failures += 1,
                        }
                    }
                    Err(error) => {
                        failures += 1;
                        debug!(peer = %url, %error, "could not connect");
                    }
                }
                if !persistent && failures >= MAX_LEARNED_FAILURES {
                    debug!(peer = %url, "giving up on a learned address");
                    return;
                }
            }
            // Jitter keeps restarted nodes from reconnecting in lockstep.
            let jitter = Duration::from_millis(random_nonce() % 100);
            tokio::select! {
                () = self.token.cancelled() => return,
                () = tokio::time::sleep(backoff + jitter) => {}
            }
            if !connected {
                backoff = (backoff * 2).min(self.config.max_backoff);
            }
        }
    }

    async fn connect(self: &Arc<Self>, url: &PeerUrl) -> Result<SessionEnd, String> {
        let handshake = async {
            let stream = TcpStream::connect(url.authority())
                .await
                .map_err(|error| error.to_string())?;
            let remote = stream.peer_addr().map_err(|error| error.to_string())?;
            let _ = stream.set_nodelay(true);
            let (websocket, _) = tokio_tungstenite::client_async_with_config(
                url.to_string(),
                stream,
                Some(websocket_config()),
            )
            .await
            .map_err(|error| error.to_string())?;
            Ok::<_, String>((websocket, remote))
        };
        let (websocket, remote) = tokio::time::timeout(self.config.handshake_timeout, handshake)
            .await
            .map_err(|_| "handshake timed out".to_owned())??;
        Ok(run_session(Arc::clone(self), websocket, remote, Some(url.clone())).await)
    }

    async fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        loop {
            let accepted = tokio::select! {
                () = self.token.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let (stream, remote): (TcpStream, SocketAddr) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    warn!(%error, "accepting a peer failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if !remote.ip().is_loopback() && self.is_banned(&BanKey::Address(remote.ip())) {
                debug!(%remote, "refused a banned peer");
                continue;
            }
            if self.inbound_count() >= self.config.max_inbound {
                debug!(%remote, "refused a peer: inbound slots are full");
                continue;
            }
            let _ = stream.set_nodelay(true);
            let p2p = Arc::clone(&self);
            self.tasks.spawn(async move {
                let handshake =
                    tokio_tungstenite::accept_async_with_config(stream, Some(websocket_config()));
                match tokio::time::timeout(p2p.config.handshake_timeout, handshake).await {
                    Ok(Ok(websocket)) => {
                        let end = run_session(Arc::clone(&p2p), websocket, remote, None).await;
                        debug!(%remote, ?end, "inbound session ended");
                    }
                    Ok(Err(error)) => debug!(%remote, %error, "WebSocket handshake failed"),
                    Err(_) => debug!(%remote, "WebSocket handshake timed out"),
                }
            });
        }
    }

    async fn relay_loop(self: Arc<Self>) {
        let mut events = self.node.subscribe();
        loop {
            let event = tokio::select! {
                () = self.token.cancelled() => return,
                event = events.recv() => event,
            };
            match event {
                Ok(NodeEvent::TipChanged { hash, .. }) => {
                    self.announce_to_all(&[InventoryItem {
                        kind: InventoryKind::Block,
                        hash: hash.0,
                    }]);
                    self.pump_downloads().await;
                    self.retry_orphan_transactions(None).await;
                }
                Ok(NodeEvent::TransactionAccepted { txid }) => {
                    self.first_sight_of_transaction(txid);
                    self.announce_to_all(&[InventoryItem {
                        kind: InventoryKind::Transaction,
                        hash: txid.0,
                    }]);
                    self.retry_orphan_transactions(Some(txid)).await;
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    // Announcements among the missed events would be lost: announce the
                    // tip and the whole pool again (sessions skip what peers have).
                    debug!(
                        missed,
                        "relay fell behind the node's events; announcing the pool"
                    );
                    let Some((tip, pool)) = self
                        .blocking(|node| (node.tip(), node.pool_transactions()))
                        .await
                    else {
                        // The node is shutting down (or the read failed): nothing to send.
                        continue;
                    };
                    let mut items = vec![InventoryItem {
                        kind: InventoryKind::Block,
                        hash: tip.hash.0,
                    }];
                    items.extend(pool.iter().map(|pooled| InventoryItem {
                        kind: InventoryKind::Transaction,
                        hash: pooled.txid.0,
                    }));
                    self.announce_to_all(&items);
                    self.pump_downloads().await;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    async fn sync_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                () = self.token.cancelled() => return,
                _ = tick.tick() => self.pump_downloads().await,
            }
        }
    }
}

/// Blocks in flight per peer.
fn peer_loads(in_flight: &HashMap<BlockHash, (u64, Instant)>) -> HashMap<u64, usize> {
    let mut load: HashMap<u64, usize> = HashMap::new();
    for (peer, _) in in_flight.values() {
        *load.entry(*peer).or_default() += 1;
    }
    load
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(requests_per_second < crate::peer::MESSAGES_PER_SECOND * 0.75);
    }
}
