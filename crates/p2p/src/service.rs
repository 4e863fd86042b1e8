//! `P2p`: the peer-to-peer layer of one node, and what it starts.
//!
//! ```text
//!   P2p::start ──▶ accept loop (connection.rs) ──▶ handshake ──▶ session per peer
//!              ├─▶ dialers for PEERS and learned addresses (connection.rs)
//!              ├─▶ relay loop: node events ──▶ announcements (relay.rs)
//!              ├─▶ download loop: missing blocks ──▶ getdata (download.rs)
//!              └─▶ console loop: the last line of a sync (console.rs)
//!   shared state: PeerRegistry (registry.rs), AddressBook (address_book.rs),
//!                 Downloads (download.rs), TransactionRelay (relay.rs),
//!                 TransactionRequests (transaction_requests.rs), BanList (ban.rs)
//! ```
//!
//! Each part of the shared state has its own lock, held only for in-memory bookkeeping
//! and never across an `.await`. Where two are held at once it is always in one order:
//! the outbound fill's `filling` lock, then the address book, then the registry (a
//! removal holds the book while it closes the address's sessions); the registry takes
//! no other lock.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use powchain_node::{
    BanInfo, DisconnectInfo, LogBudget, Node, PeerError, PeerInfo, PeerManager, PeerRemoval,
};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::address_book::{AddressBook, SavedAddresses};
use crate::ban::{BanKey, BanList};
use crate::compact::CompactRelay;
use crate::config::P2pConfig;
use crate::console::{BlockLog, CONNECTION_LINE_INTERVAL_MS, CONNECTION_LINES_BURST};
use crate::download::Downloads;
use crate::message::MAX_MESSAGE_BYTES;
use crate::pending::PendingConnections;
use crate::registry::{PeerRegistry, REMOVED};
use crate::relay::TransactionRelay;
use crate::traffic::{MessageTraffic, Traffic};
use crate::transaction_requests::TransactionRequests;
use crate::transport::{Environment, Listener, NodeCalls};
use crate::upload::UploadTarget;
use crate::url::PeerUrl;

/// The peer-to-peer layer of one node.
pub struct P2p {
    pub(crate) node: Arc<Node>,
    pub(crate) config: P2pConfig,
    /// Identifies this node in hellos, to detect connections to itself and duplicates.
    pub(crate) node_nonce: u64,
    pub(crate) listen_port: u16,
    pub(crate) registry: PeerRegistry,
    pub(crate) addresses: Mutex<AddressBook>,
    /// Held while outbound slots are filled, so two fills do not both take the last slot
    /// (outbound.rs).
    pub(crate) filling: Mutex<()>,
    pub(crate) downloads: Mutex<Downloads>,
    /// Wakes the download loop when a block held back for a push gets a sooner due time
    /// (download.rs).
    pub(crate) download_wake: tokio::sync::Notify,
    pub(crate) transactions: Mutex<TransactionRelay>,
    /// Transactions being fetched, and from whom (transaction_requests.rs).
    pub(crate) transaction_requests: Mutex<TransactionRequests>,
    /// Announcements over their peers' bounds that sessions keep for later, all sessions
    /// together (transaction_requests.rs, `DeferredAnnouncements`).
    pub(crate) deferred_announcements: Arc<std::sync::atomic::AtomicUsize>,
    /// Messages and bytes by type (traffic.rs).
    pub(crate) traffic: Traffic,
    /// Bytes sent today against the upload target (upload.rs).
    pub(crate) upload: UploadTarget,
    /// Compact block relay: whom we asked for pushes, what we pushed (compact.rs).
    pub(crate) compact: Mutex<CompactRelay>,
    pub(crate) bans: Mutex<BanList>,
    pub(crate) pending: Arc<PendingConnections>,
    /// Which block lines are logged (console.rs).
    pub(crate) block_log: Mutex<BlockLog>,
    /// Keeps connection lines (connected, left, refused, strangers, bans) from flooding
    /// the console: any stranger can connect and leave at will.
    pub(crate) connection_lines: LogBudget,
    pub(crate) token: CancellationToken,
    pub(crate) tasks: TaskTracker,
    /// Streams, randomness and node calls (transport.rs).
    pub(crate) environment: Environment,
}

/// A block read from the store to be sent to a peer.
pub(crate) struct StoredBlock {
    pub(crate) block: powchain_consensus::Block,
    /// How far below the tip's height it is (0 at the tip or above).
    pub(crate) depth: u64,
    /// The tip's time: a block a week older is historical (upload.rs).
    pub(crate) tip_time_ms: u64,
}

/// How the rest of the node sees the P2P layer (weak, so the node and the layer do not
/// keep each other alive).
struct PeerManagerHandle(Weak<P2p>);

impl PeerManager for PeerManagerHandle {
    fn peers(&self) -> Vec<PeerInfo> {
        self.0.upgrade().map(|p2p| p2p.peers()).unwrap_or_default()
    }

    fn add_peer(&self, url: &str) -> Result<(), PeerError> {
        let p2p = self.0.upgrade().ok_or(PeerError::Stopped)?;
        let url =
            PeerUrl::parse(url).map_err(|error| PeerError::InvalidAddress(Box::new(error)))?;
        p2p.ask_for(url);
        // A learned dial of this address has become a configured peer's, and its slot is
        // free.
        p2p.fill_outbound();
        Ok(())
    }

    fn remove_peer(&self, url: &str) -> Result<PeerRemoval, PeerError> {
        let p2p = self.0.upgrade().ok_or(PeerError::Stopped)?;
        let url =
            PeerUrl::parse(url).map_err(|error| PeerError::InvalidAddress(Box::new(error)))?;
        p2p.remove_peer(&url)
    }

    fn unban(&self, peer: &str) -> Result<(), PeerError> {
        let p2p = self.0.upgrade().ok_or(PeerError::Stopped)?;
        let key: BanKey = peer
            .parse()
            .map_err(|error| PeerError::InvalidAddress(Box::new(error)))?;
        if p2p.unban(&key) {
            Ok(())
        } else {
            Err(PeerError::NotBanned(key.to_string()))
        }
    }

    fn banned(&self) -> Vec<BanInfo> {
        self.0
            .upgrade()
            .map(|p2p| p2p.bans_in_force())
            .unwrap_or_default()
    }

    fn upload(&self) -> Option<powchain_node::UploadStatus> {
        self.0
            .upgrade()
            .and_then(|p2p| p2p.upload.status(tokio::time::Instant::now()))
    }

    fn disconnected(&self) -> Vec<DisconnectInfo> {
        self.0
            .upgrade()
            .map(|p2p| p2p.registry.disconnected())
            .unwrap_or_default()
    }
}

/// The read buffer of a connection. tungstenite zeroes up to this much of it on every read,
/// one that finds nothing included: with its default, 128 KiB, a profile of a simulated
/// network (many small reads) spent a fifth of its time there, and with 16 KiB still 6%
/// (`memset` under `FrameCodec::read_frame`). Most messages are far smaller; 4 KiB reads a
/// 250 KB block in 62 reads instead of 16, and keeps 124 KiB less per connection.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// The WebSocket limits every connection uses: nothing larger than a message may be read.
pub(crate) fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
        .read_buffer_size(READ_BUFFER_BYTES)
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
        P2p::start_on(node, config, listener, shutdown, tasks)
    }

    /// [`P2p::start`] on a listener bound already (`config.listen` is then ignored): a
    /// launcher binds its ports before it opens or creates anything, so a port in use
    /// leaves no trace.
    ///
    /// # Errors
    /// If the listener's address cannot be read.
    pub fn start_on(
        node: Arc<Node>,
        config: P2pConfig,
        listener: Option<TcpListener>,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> std::io::Result<Arc<P2p>> {
        let listener = listener.map(|listener| Box::new(listener) as Box<dyn Listener>);
        P2p::start_in(
            node,
            config,
            listener,
            Environment::default(),
            shutdown,
            tasks,
        )
    }

    /// [`P2p::start_on`] in an [`Environment`] of the caller's: a simulation's network,
    /// seeded randomness and inline node calls.
    ///
    /// # Errors
    /// If the listener's address cannot be read.
    pub fn start_in(
        node: Arc<Node>,
        mut config: P2pConfig,
        listener: Option<Box<dyn Listener>>,
        environment: Environment,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> std::io::Result<Arc<P2p>> {
        let listen_port = match &listener {
            Some(listener) => listener.local_addr()?.port(),
            None => 0,
        };
        let pending = PendingConnections::new(config.max_pending, config.max_pending_per_group);
        let compact = Mutex::new(CompactRelay::new(config.high_bandwidth_peers));
        let transaction_requests = Mutex::new(TransactionRequests::new(config.transaction_timeout));
        let upload = UploadTarget::new(config.max_upload_bytes);
        // Taken out of the config, which the layer keeps: the book holds them from now on.
        let (book, anchors) = AddressBook::restore(&std::mem::take(&mut config.saved_addresses));
        let p2p = Arc::new(P2p {
            node: Arc::clone(&node),
            config,
            node_nonce: environment.randomness.next_u64(),
            listen_port,
            registry: PeerRegistry::default(),
            addresses: Mutex::new(book),
            filling: Mutex::new(()),
            downloads: Mutex::new(Downloads::default()),
            download_wake: tokio::sync::Notify::new(),
            transactions: Mutex::new(TransactionRelay::new()),
            transaction_requests,
            deferred_announcements: Arc::default(),
            compact,
            traffic: Traffic::default(),
            upload,
            bans: Mutex::new(BanList::default()),
            pending,
            block_log: Mutex::new(BlockLog::default()),
            connection_lines: LogBudget::new(CONNECTION_LINES_BURST, CONNECTION_LINE_INTERVAL_MS),
            token: shutdown,
            tasks,
            environment,
        });
        node.set_peer_manager(Arc::new(PeerManagerHandle(Arc::downgrade(&p2p))));
        if let Some(listener) = listener {
            let port = listener.local_addr()?.port();
            info!(port, "listening for peer to peer connection on port {port}");
            p2p.tasks.spawn(Arc::clone(&p2p).accept_loop(listener));
        }
        p2p.tasks.spawn(Arc::clone(&p2p).relay_loop());
        p2p.tasks.spawn(Arc::clone(&p2p).download_loop());
        p2p.tasks.spawn(Arc::clone(&p2p).console_loop());
        for url in p2p.config.peers.clone() {
            p2p.dial(url, true);
        }
        // The last run's anchors before any other learned address (a configured peer
        // among them is dialled as one, and takes no slot), so a restart does not hand the
        // outbound slots to whoever gossips first. At most 2: within the 4 dials that may
        // connect at once.
        for url in anchors {
            if p2p.addresses().learned_dials().len() >= p2p.config.max_outbound {
                break;
            }
            p2p.dial(url, false);
        }
        p2p.tasks.spawn(Arc::clone(&p2p).outbound_loop());
        Ok(p2p)
    }

    /// The port peers connect to (0 if not listening).
    pub fn listen_port(&self) -> u16 {
        self.listen_port
    }

    /// The connected peers.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.registry.infos()
    }

    /// Disconnects every peer at `url` and stops dialling it; until `POST /peers` names it
    /// again it is neither dialled, learned from gossip, nor let in (see the address book).
    ///
    /// # Errors
    /// [`PeerError::UnknownPeer`] if no peer is connected at `url` and the address book
    /// neither knows nor dials it.
    pub fn remove_peer(&self, url: &PeerUrl) -> Result<PeerRemoval, PeerError> {
        // Marked removed before the registry is searched: a session that registers after the
        // search finds the mark (handshake.rs), so none slips through. The book stays
        // locked until the mark is settled, so no request for the same address (`POST
        // /peers`, another removal) falls between (the registry never takes the book).
        let disconnected = {
            let mut book = self.addresses();
            let already_removed = book.is_removed(url);
            let was_known = book.remove(url);
            let disconnected = self.registry.close_matching(url, REMOVED);
            if !was_known && disconnected == 0 {
                // Nothing to remove: the mark goes, unless an earlier removal set it (a
                // second DELETE must not undo the first).
                if !already_removed {
                    book.readmit(url);
                }
                return Err(PeerError::UnknownPeer(url.to_string()));
            }
            disconnected
        };
        info!(peer = %url, disconnected, "removed a peer at the operator's request");
        Ok(PeerRemoval {
            url: url.to_string(),
            disconnected,
        })
    }

    /// Messages and bytes sent and received over every session since the start, by
    /// message type (only types that crossed a connection).
    pub fn traffic(&self) -> Vec<MessageTraffic> {
        self.traffic.snapshot()
    }

    /// How many peer addresses the address book holds.
    pub fn known_addresses(&self) -> usize {
        self.addresses().len()
    }

    /// What of the address book to keep for the next start (`P2pConfig::saved_addresses`):
    /// the known addresses with their sources, and the learned peers connected outbound
    /// longest as anchors (removals last until the node stops: they are not kept).
    pub fn saved_addresses(&self) -> SavedAddresses {
        // The registry first and alone: the lock order puts the book before it.
        let outbound = self.registry.outbound_by_age();
        self.addresses().saved(outbound)
    }

    /// How many connections are in their handshake now.
    pub fn pending_connections(&self) -> usize {
        self.pending.count()
    }

    /// The last sessions that ended, newest first, with why.
    pub fn disconnected(&self) -> Vec<DisconnectInfo> {
        self.registry.disconnected()
    }

    /// How many learned (not configured) addresses are being dialled and not connected
    /// yet (at most [`crate::MAX_LEARNED_DIALS`]). A dial counts as connected only by an
    /// outbound session to its address: an inbound peer could claim any address as its
    /// own.
    pub fn learned_dials(&self) -> usize {
        let learned: Vec<PeerUrl> = self.addresses().learned_dials().cloned().collect();
        let connected = self.registry.listen_urls(true);
        learned
            .iter()
            .filter(|url| !connected.contains(*url))
            .count()
    }

    pub(crate) fn addresses(&self) -> MutexGuard<'_, AddressBook> {
        self.addresses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs a node call on the blocking pool; `None` if the call panicked or the runtime
    /// is shutting down. In a simulation (transport.rs) it runs inline, and a panic ends
    /// the simulated host, which fails the run.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Node) -> T + Send + 'static,
    ) -> Option<T> {
        match self.environment.node_calls {
            NodeCalls::BlockingPool => {
                let node = Arc::clone(&self.node);
                tokio::task::spawn_blocking(move || work(&node)).await.ok()
            }
            NodeCalls::Inline => Some(work(&self.node)),
        }
    }

    /// Waits as long as validating `blocks` blocks of `payments` payments in all and
    /// `transactions` lone transactions would take, in a simulation (transport.rs's
    /// `ValidationDelay`); returns at once otherwise.
    pub(crate) async fn simulated_validation(&self, blocks: u32, payments: u32, transactions: u32) {
        if let Some(delay) = self.environment.validation_delay {
            let wait = delay.per_block * blocks
                + delay.per_payment * payments
                + delay.per_transaction * transactions;
            tokio::time::sleep(wait).await;
        }
    }

    /// A stored block, how far below the tip's height it is (0 at the tip or above) and
    /// the tip's time (`None` inside if it is not stored); `None` if the node is shutting
    /// down.
    pub(crate) async fn stored_block_and_depth(
        &self,
        hash: powchain_consensus::BlockHash,
    ) -> Option<Option<StoredBlock>> {
        self.blocking(move |node| {
            let snapshot = node.reader().snapshot().ok()?;
            let block = snapshot.block(&hash).ok().flatten()?;
            let height = snapshot.index_record(&hash).ok().flatten()?.height;
            let tip = snapshot.tip().ok()?.record;
            Some(StoredBlock {
                block,
                depth: tip.height.0.saturating_sub(height.0),
                tip_time_ms: tip.header.time_ms,
            })
        })
        .await
    }

    /// A stored block, by hash (`None` inside if it is not stored); `None` if the node
    /// is shutting down.
    pub(crate) async fn stored_block(
        &self,
        hash: powchain_consensus::BlockHash,
    ) -> Option<Option<powchain_consensus::Block>> {
        self.blocking(move |node| {
            node.reader()
                .snapshot()
                .ok()
                .and_then(|snapshot| snapshot.block(&hash).ok().flatten())
        })
        .await
    }

    /// A random number (transport.rs: the system's, or a simulation's seeded one).
    pub(crate) fn random(&self) -> u64 {
        self.environment.randomness.next_u64()
    }
}
