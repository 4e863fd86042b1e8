//! One session per connected peer: the handshake, then a loop over the peer's messages,
//! commands from the manager, and pings.
//!
//! ```text
//!   Hello ⇄ Hello (network, genesis, tip, work, listen port, nonce)
//!   then: GetAddresses, GetHeaders if the peer has more work, our pool's txids
//!   loop: peer message ──handle──▶ node (blocking pool) ──▶ replies
//!         manager command ──▶ send / announce (once per item) / close
//!         ping timer ──▶ Ping, drop the peer if the last Pong is overdue
//! ```
//!
//! Written over any `AsyncRead + AsyncWrite` stream, so the same session runs on TCP or
//! on a simulated network. A peer that breaks a rule is banned and disconnected, and the
//! rule is logged; nothing it sent is stored or relayed.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use powchain_chain::{BlockOutcome, ChainError};
use powchain_consensus::{BlockHash, Txid};
use powchain_node::{NodeError, PeerBlock, PeerInfo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as Frame;
use tracing::{debug, info, trace, warn};

use crate::ban::BanKey;
use crate::manager::{Announcements, P2p, PeerCommand, PeerEntry};
use crate::message::{
    Hello, InventoryItem, InventoryKind, MAX_HEADERS, MAX_INVENTORY, Message, MessageError,
};
use crate::url::PeerUrl;

/// Inventory items remembered per peer as known to it.
const KNOWN_INVENTORY: usize = 20_000;
/// Transactions remembered as asked of one peer at most.
const MAX_REQUESTED_TRANSACTIONS: usize = 50_000;
/// Messages a peer may send in a burst; refilled at [`MESSAGES_PER_SECOND`].
const MESSAGE_BURST: f64 = 2_000.0;
/// Sustained messages per second a peer may send before it counts as flooding.
pub(crate) const MESSAGES_PER_SECOND: f64 = 500.0;

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// The handshake failed (timeout, bad first message, closed early).
    HandshakeFailed(String),
    /// The peer is on another network or chain.
    WrongNetwork(String),
    /// We connected to ourselves.
    SelfConnection,
    /// The node was already connected through another connection.
    Duplicate,
    /// No inbound slot was free.
    Full,
    /// The peer is banned.
    Banned,
    /// The peer broke a rule and was banned.
    Misbehaved(String),
    /// The connection closed or failed after the handshake.
    Closed(String),
    /// The node is shutting down.
    Shutdown,
}

impl SessionEnd {
    /// True if the session got past the handshake.
    pub fn was_established(&self) -> bool {
        matches!(
            self,
            SessionEnd::Closed(_) | SessionEnd::Misbehaved(_) | SessionEnd::Shutdown
        )
    }
}

/// A rule a peer broke.
#[derive(Debug)]
struct Misbehaviour {
    rule: String,
    detail: String,
}

impl Misbehaviour {
    fn new(rule: impl Into<String>, detail: impl Into<String>) -> Misbehaviour {
        Misbehaviour {
            rule: rule.into(),
            detail: detail.into(),
        }
    }
}

impl From<MessageError> for Misbehaviour {
    fn from(error: MessageError) -> Misbehaviour {
        Misbehaviour::new(error.rule(), error.to_string())
    }
}

/// Items a peer is known to have, bounded.
#[derive(Default)]
struct KnownInventory {
    items: HashSet<InventoryItem>,
    order: VecDeque<InventoryItem>,
}

impl KnownInventory {
    /// Records `item`; true if it was new.
    fn insert(&mut self, item: InventoryItem) -> bool {
        if !self.items.insert(item) {
            return false;
        }
        self.order.push_back(item);
        if self.order.len() > KNOWN_INVENTORY {
            if let Some(old) = self.order.pop_front() {
                self.items.remove(&old);
            }
        }
        true
    }

    /// Forgets `item` (announced, but we could not deliver it), so it is announced again
    /// when we have it.
    fn forget(&mut self, item: &InventoryItem) {
        self.items.remove(item);
    }
}

/// A token bucket counting a peer's messages.
struct RateLimit {
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    fn new() -> RateLimit {
        RateLimit {
            tokens: MESSAGE_BURST,
            last: Instant::now(),
        }
    }

    /// Takes one token; false when the peer is over its rate.
    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * MESSAGES_PER_SECOND;
        self.tokens = (self.tokens + refill).min(MESSAGE_BURST);
        self.last = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }

    /// Gives back the token of a message that answered our own request (a block we asked
    /// this peer for): a fast sync must not look like a flood.
    fn refund(&mut self) {
        self.tokens = (self.tokens + 1.0).min(MESSAGE_BURST);
    }
}

struct Session<S> {
    p2p: Arc<P2p>,
    id: u64,
    label: String,
    ban_key: BanKey,
    sink: SplitSink<WebSocketStream<S>, Frame>,
    known: KnownInventory,
    /// What to announce to this peer, filled by the manager.
    announcements: Arc<Announcements>,
    /// Transactions asked of this peer and not yet received: their arrival does not count
    /// against its rate limit.
    requested_transactions: HashSet<Txid>,
}

async fn send_frame<S: AsyncRead + AsyncWrite + Unpin>(
    sink: &mut SplitSink<WebSocketStream<S>, Frame>,
    message: &Message,
) -> Result<(), String> {
    sink.send(Frame::binary(message.to_bytes()))
        .await
        .map_err(|error| error.to_string())
}

async fn our_hello(p2p: &P2p) -> Option<Hello> {
    let tip = p2p.blocking(|node| node.tip()).await?;
    let params = p2p.node.params();
    Some(Hello {
        network_magic: params.network.magic(),
        genesis: params.genesis_hash(),
        best_hash: tip.hash,
        best_height: tip.height.0,
        best_work: tip.work,
        listen_port: p2p.listen_port,
        node_nonce: p2p.node_nonce,
        user_agent: format!("powchain/{}", env!("CARGO_PKG_VERSION")),
    })
}

/// Runs a session on an open WebSocket until it ends. `dialled` is the address we dialled
/// for an outbound connection, `None` for an inbound one.
pub(crate) async fn run_session<S>(
    p2p: Arc<P2p>,
    websocket: WebSocketStream<S>,
    remote: SocketAddr,
    dialled: Option<PeerUrl>,
) -> SessionEnd
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = websocket.split();
    let Some(hello) = our_hello(&p2p).await else {
        return SessionEnd::Shutdown;
    };
    if let Err(error) = send_frame(&mut sink, &Message::Hello(hello)).await {
        return SessionEnd::HandshakeFailed(error);
    }
    let first = tokio::select! {
        () = p2p.token().cancelled() => return SessionEnd::Shutdown,
        first = tokio::time::timeout(p2p.config.handshake_timeout, stream.next()) => first,
    };
    let provisional_key = BanKey::for_peer(remote.ip(), remote.port());
    let theirs = match first {
        Err(_) => return SessionEnd::HandshakeFailed("no hello in time".into()),
        Ok(None) => return SessionEnd::HandshakeFailed("closed before hello".into()),
        Ok(Some(Err(error))) => return SessionEnd::HandshakeFailed(error.to_string()),
        Ok(Some(Ok(Frame::Binary(bytes)))) => match Message::from_bytes(&bytes) {
            Ok(Message::Hello(hello)) => hello,
            Ok(other) => {
                let rule = "expected-hello";
                p2p.ban(provisional_key, rule);
                warn!(peer = %remote, rule, got = other.name(), "banned a peer: first message was not hello");
                return SessionEnd::Misbehaved(rule.into());
            }
            Err(error) => {
                p2p.ban(provisional_key, error.rule());
                warn!(peer = %remote, rule = error.rule(), %error, "banned a peer: bad hello");
                return SessionEnd::Misbehaved(error.rule().into());
            }
        },
        Ok(Some(Ok(_))) => return SessionEnd::HandshakeFailed("first frame was not binary".into()),
    };
    let params = p2p.node.params();
    if theirs.network_magic != params.network.magic() || theirs.genesis != params.genesis_hash() {
        let reason = format!(
            "peer network {:#04x} genesis {}, ours {:#04x} genesis {}",
            theirs.network_magic,
            theirs.genesis,
            params.network.magic(),
            params.genesis_hash()
        );
        info!(peer = %remote, %reason, "disconnected a peer on another network");
        let _ = sink.close().await;
        return SessionEnd::WrongNetwork(reason);
    }
    if theirs.node_nonce == p2p.node_nonce {
        let _ = sink.close().await;
        return SessionEnd::SelfConnection;
    }
    let ban_key = BanKey::for_peer(
        remote.ip(),
        if theirs.listen_port != 0 {
            theirs.listen_port
        } else {
            remote.port()
        },
    );
    if p2p.is_banned(&ban_key) {
        let _ = sink.close().await;
        return SessionEnd::Banned;
    }
    let listen_url = match &dialled {
        Some(url) => Some(url.clone()),
        None => (theirs.listen_port != 0).then(|| PeerUrl {
            host: remote.ip().to_string(),
            port: theirs.listen_port,
        }),
    };
    let label = listen_url
        .as_ref()
        .map_or_else(|| format!("ws://{remote}"), PeerUrl::to_string);
    let announcements = Arc::new(Announcements::default());
    let entry = PeerEntry {
        commands: tokio::sync::mpsc::channel(1).0,
        announcements: Arc::clone(&announcements),
        info: PeerInfo {
            url: label.clone(),
            outbound: dialled.is_some(),
            best_height: theirs.best_height,
            connected_since_ms: p2p.node.now_ms(),
        },
        node_nonce: theirs.node_nonce,
        listen_url,
        best_known: None,
        not_found: HashSet::new(),
    };
    let (id, mut commands) = match p2p.register(entry) {
        Ok(registered) => registered,
        Err(end) => {
            let _ = sink.close().await;
            return end;
        }
    };
    info!(peer = %label, direction = if dialled.is_some() { "outbound" } else { "inbound" }, height = theirs.best_height, "socket connected");
    let mut session = Session {
        p2p: Arc::clone(&p2p),
        id,
        label,
        ban_key,
        sink,
        known: KnownInventory::default(),
        announcements,
        requested_transactions: HashSet::new(),
    };
    let end = session.run(&mut stream, &mut commands, &theirs).await;
    p2p.unregister(id);
    let _ = session.sink.close().await;
    info!(peer = %session.label, ?end, "peer disconnected");
    // Blocks it had in flight go to other peers now.
    p2p.pump_downloads().await;
    end
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Session<S> {
    async fn send(&mut self, message: &Message) -> Result<(), SessionEnd> {
        trace!(peer = %self.label, message = message.name(), "send");
        send_frame(&mut self.sink, message)
            .await
            .map_err(SessionEnd::Closed)
    }

    async fn run(
        &mut self,
        stream: &mut futures_util::stream::SplitStream<WebSocketStream<S>>,
        commands: &mut tokio::sync::mpsc::Receiver<PeerCommand>,
        theirs: &Hello,
    ) -> SessionEnd {
        if let Err(end) = self.start(theirs).await {
            return end;
        }
        let mut limiter = RateLimit::new();
        let announcements = Arc::clone(&self.announcements);
        let mut ping = tokio::time::interval(self.p2p.config.ping_interval);
        ping.tick().await;
        let mut awaiting_pong: Option<(u64, Instant)> = None;
        let mut ping_counter = 0u64;
        loop {
            tokio::select! {
                () = self.p2p.token().cancelled() => return SessionEnd::Shutdown,
                frame = stream.next() => {
                    let message = match frame {
                        None => return SessionEnd::Closed("closed by peer".into()),
                        Some(Err(error)) => {
                            // The WebSocket layer refuses frames above the size limit
                            // before reading them.
                            let text = error.to_string();
                            if text.contains("too long") || text.contains("Space limit") {
                                return self.punish(Misbehaviour::new("oversized-message", text));
                            }
                            return SessionEnd::Closed(text);
                        }
                        Some(Ok(Frame::Binary(bytes))) => {
                            if !limiter.take() {
                                return self.punish(Misbehaviour::new("flood", "more messages than the rate limit allows"));
                            }
                            match Message::from_bytes(&bytes) {
                                Ok(message) => message,
                                Err(error) => return self.punish(error.into()),
                            }
                        }
                        Some(Ok(Frame::Text(_))) => {
                            return self.punish(Misbehaviour::new("malformed-message", "text frame; the protocol is binary"));
                        }
                        Some(Ok(Frame::Close(_))) => return SessionEnd::Closed("closed by peer".into()),
                        Some(Ok(_)) => {
                            if !limiter.take() {
                                return self.punish(Misbehaviour::new("flood", "more frames than the rate limit allows"));
                            }
                            continue;
                        }
                    };
                    // Answers to our own requests do not count against the limit.
                    let requested = match &message {
                        Message::Block(block) => {
                            self.p2p.is_in_flight_from(self.id, &block.compute_hash())
                        }
                        Message::Transaction(transaction) => {
                            self.requested_transactions.remove(&transaction.compute_txid())
                        }
                        _ => false,
                    };
                    if requested {
                        limiter.refund();
                    }
                    if let Message::Pong(nonce) = message {
                        if awaiting_pong.is_some_and(|(expected, _)| expected == nonce) {
                            awaiting_pong = None;
                        }
                        continue;
                    }
                    trace!(peer = %self.label, message = message.name(), "received");
                    match self.handle(message).await {
                        Ok(()) => {}
                        Err(Ok(misbehaviour)) => return self.punish(misbehaviour),
                        Err(Err(end)) => return end,
                    }
                }
                command = commands.recv() => {
                    let result = match command {
                        None => return SessionEnd::Closed("dropped by the manager".into()),
                        Some(PeerCommand::Close(reason)) => return SessionEnd::Closed(reason.into()),
                        Some(PeerCommand::Send(message)) => self.send(&message).await,
                    };
                    if let Err(end) = result {
                        return end;
                    }
                }
                () = announcements.ready() => {
                    let items: Vec<InventoryItem> = announcements
                        .take()
                        .into_iter()
                        .filter(|item| self.known.insert(*item))
                        .collect();
                    for chunk in items.chunks(MAX_INVENTORY) {
                        if let Err(end) = self.send(&Message::Inventory(chunk.to_vec())).await {
                            return end;
                        }
                    }
                }
                _ = ping.tick() => {
                    if let Some((_, sent)) = awaiting_pong {
                        if sent.elapsed() > self.p2p.config.ping_timeout {
                            return SessionEnd::Closed("ping timeout".into());
                        }
                    } else {
                        ping_counter += 1;
                        let nonce = self.p2p.node_nonce ^ ping_counter;
                        awaiting_pong = Some((nonce, Instant::now()));
                        if let Err(end) = self.send(&Message::Ping(nonce)).await {
                            return end;
                        }
                    }
                }
            }
        }
    }

    /// What a new session asks for and offers.
    async fn start(&mut self, theirs: &Hello) -> Result<(), SessionEnd> {
        self.send(&Message::GetAddresses).await?;
        let their_tip = theirs.best_hash;
        let (our_best_work, their_tip_height) = self
            .p2p
            .blocking(move |node| {
                (
                    node.chain_summary().best_header_work,
                    node.block_height(&their_tip),
                )
            })
            .await
            .ok_or(SessionEnd::Shutdown)?;
        if let Some(height) = their_tip_height {
            self.p2p.note_peer_block(self.id, their_tip, height.0);
            // Blocks we know by header and this peer has: ask now, not at the next tick
            // (a node restarted in the middle of a sync resumes at once).
            self.p2p.pump_downloads().await;
        }
        if theirs.best_work > our_best_work {
            self.request_headers(None).await?;
        }
        let pool: Vec<InventoryItem> = self
            .p2p
            .blocking(|node| node.pool_transactions())
            .await
            .unwrap_or_default()
            .iter()
            .map(|pooled| InventoryItem {
                kind: InventoryKind::Transaction,
                hash: pooled.txid.0,
            })
            .collect();
        for chunk in pool.chunks(MAX_INVENTORY) {
            for item in chunk {
                self.known.insert(*item);
            }
            self.send(&Message::Inventory(chunk.to_vec())).await?;
        }
        Ok(())
    }

    /// Asks the peer for headers after our best header chain (or after `from`).
    async fn request_headers(&mut self, from: Option<BlockHash>) -> Result<(), SessionEnd> {
        let mut locator = self
            .p2p
            .blocking(|node| node.header_locator())
            .await
            .ok_or(SessionEnd::Shutdown)?;
        if let Some(from) = from {
            locator.insert(0, from);
        }
        locator.truncate(crate::message::MAX_LOCATOR_HASHES);
        self.send(&Message::GetHeaders {
            locator,
            stop: BlockHash::ZERO,
        })
        .await
    }

    fn punish(&mut self, misbehaviour: Misbehaviour) -> SessionEnd {
        self.p2p.ban(self.ban_key, &misbehaviour.rule);
        warn!(peer = %self.label, rule = %misbehaviour.rule, detail = %misbehaviour.detail, "banned a misbehaving peer");
        SessionEnd::Misbehaved(misbehaviour.rule)
    }

    /// Handles one message. `Err(Ok(_))` is a broken rule; `Err(Err(_))` ends the session.
    async fn handle(&mut self, message: Message) -> Result<(), Result<Misbehaviour, SessionEnd>> {
        match message {
            Message::Hello(_) => Err(Ok(Misbehaviour::new("unexpected-hello", "a second hello"))),
            Message::Ping(nonce) => self.send(&Message::Pong(nonce)).await.map_err(Err),
            Message::Pong(_) => Ok(()),
            Message::GetHeaders { locator, stop } => {
                let stop = (stop != BlockHash::ZERO).then_some(stop);
                // The locator starts at the peer's best block: a fresh view of its height.
                let their_best = locator.first().copied();
                let (headers, their_height) = self
                    .p2p
                    .blocking(move |node| node.headers_for_peer(&locator, stop, MAX_HEADERS))
                    .await
                    .ok_or(Err(SessionEnd::Shutdown))?;
                if let (Some(hash), Some(height)) = (their_best, their_height) {
                    self.p2p.note_peer_block(self.id, hash, height.0);
                }
                self.send(&Message::Headers(headers)).await.map_err(Err)
            }
            Message::Headers(headers) => self.on_headers(headers).await,
            Message::Inventory(items) => self.on_inventory(items).await,
            Message::GetData(items) => self.on_get_data(items).await,
            Message::NotFound(items) => {
                for item in &items {
                    match item.kind {
                        InventoryKind::Block => {
                            self.p2p.note_not_found(self.id, BlockHash(item.hash));
                        }
                        // Gone from its pool before we asked (a block took it): ask again
                        // if it is announced again (a reorganisation may bring it back).
                        InventoryKind::Transaction => {
                            self.requested_transactions.remove(&Txid(item.hash));
                            self.p2p.forget_transaction(&Txid(item.hash));
                        }
                    }
                }
                self.p2p.pump_downloads().await;
                Ok(())
            }
            Message::Block(block) => self.on_block(*block).await,
            Message::Transaction(transaction) => self.on_transaction(*transaction).await,
            Message::GetAddresses => {
                let addresses = self.p2p.shareable_addresses();
                self.send(&Message::Addresses(addresses)).await.map_err(Err)
            }
            Message::Addresses(addresses) => {
                self.p2p.learn_addresses(&addresses);
                Ok(())
            }
        }
    }

    async fn on_headers(
        &mut self,
        headers: Vec<powchain_consensus::Header>,
    ) -> Result<(), Result<Misbehaviour, SessionEnd>> {
        let Some(last) = headers.last().map(powchain_consensus::Header::compute_hash) else {
            return Ok(());
        };
        let full = headers.len() == MAX_HEADERS;
        let result = self
            .p2p
            .blocking(move |node| node.accept_peer_headers(&headers))
            .await
            .ok_or(Err(SessionEnd::Shutdown))?;
        match result {
            Ok(height) => {
                if let Some(height) = height {
                    self.p2p.note_peer_block(self.id, last, height.0);
                }
                if full {
                    self.request_headers(Some(last)).await.map_err(Err)?;
                }
                self.p2p.pump_downloads().await;
                Ok(())
            }
            Err(error) => Err(Ok(node_error_misbehaviour(
                &error,
                "headers-do-not-connect",
            ))),
        }
    }

    async fn on_inventory(
        &mut self,
        items: Vec<InventoryItem>,
    ) -> Result<(), Result<Misbehaviour, SessionEnd>> {
        let mut wanted_transactions = Vec::new();
        let mut unknown_block = false;
        for item in &items {
            self.known.insert(*item);
        }
        let blocks: Vec<BlockHash> = items
            .iter()
            .filter(|item| item.kind == InventoryKind::Block)
            .map(|item| BlockHash(item.hash))
            .collect();
        let transactions: Vec<Txid> = items
            .iter()
            .filter(|item| item.kind == InventoryKind::Transaction)
            .map(|item| Txid(item.hash))
            .collect();
        let (known_blocks, pooled) = self
            .p2p
            .blocking(move |node| {
                (
                    node.block_heights(&blocks),
                    node.pool_contains(&transactions),
                )
            })
            .await
            .ok_or(Err(SessionEnd::Shutdown))?;
        let block_items = items
            .iter()
            .filter(|item| item.kind == InventoryKind::Block);
        for (item, height) in block_items.zip(&known_blocks) {
            match height {
                Some(height) => self
                    .p2p
                    .note_peer_block(self.id, BlockHash(item.hash), height.0),
                None => unknown_block = true,
            }
        }
        let transaction_items = items
            .iter()
            .filter(|item| item.kind == InventoryKind::Transaction);
        for (item, in_pool) in transaction_items.zip(pooled) {
            if !in_pool && self.p2p.first_sight_of_transaction(Txid(item.hash)) {
                wanted_transactions.push(*item);
            }
        }
        if !wanted_transactions.is_empty() {
            if self.requested_transactions.len() + wanted_transactions.len()
                > MAX_REQUESTED_TRANSACTIONS
            {
                // A peer that never answers: forget the old requests (their answers
                // would count against its rate limit, nothing worse).
                self.requested_transactions.clear();
            }
            self.requested_transactions
                .extend(wanted_transactions.iter().map(|item| Txid(item.hash)));
            self.send(&Message::GetData(wanted_transactions))
                .await
                .map_err(Err)?;
        }
        // Ask again even if a request is under way: its answer may end before this block.
        if unknown_block {
            self.request_headers(None).await.map_err(Err)?;
        } else if known_blocks.iter().any(Option::is_some) {
            self.p2p.pump_downloads().await;
        }
        Ok(())
    }

    async fn on_get_data(
        &mut self,
        items: Vec<InventoryItem>,
    ) -> Result<(), Result<Misbehaviour, SessionEnd>> {
        let mut missing = Vec::new();
        for item in items {
            let hash = item.hash;
            let found = match item.kind {
                InventoryKind::Block => {
                    self.p2p
                        .blocking(move |node| {
                            node.reader().snapshot().ok().and_then(|snapshot| {
                                snapshot.block(&BlockHash(hash)).ok().flatten()
                            })
                        })
                        .await
                        .ok_or(Err(SessionEnd::Shutdown))?
                        .map(|block| Message::Block(Box::new(block)))
                }
                InventoryKind::Transaction => self
                    .p2p
                    .blocking(move |node| node.pool_transaction(&Txid(hash)))
                    .await
                    .ok_or(Err(SessionEnd::Shutdown))?
                    .map(|pooled| Message::Transaction(Box::new(pooled.transaction))),
            };
            match found {
                Some(message) => {
                    self.known.insert(item);
                    // A peer that asked for a block will have it: keeps its height current.
                    if let Message::Block(block) = &message {
                        if let Some(height) = block.coinbase_height() {
                            self.p2p.note_peer_block(self.id, BlockHash(hash), height.0);
                        }
                    }
                    self.send(&message).await.map_err(Err)?;
                }
                None => missing.push(item),
            }
        }
        if !missing.is_empty() {
            // The peer does not have what we could not send: announce it again if we get it.
            for item in &missing {
                self.known.forget(item);
            }
            self.send(&Message::NotFound(missing)).await.map_err(Err)?;
        }
        Ok(())
    }

    async fn on_block(
        &mut self,
        block: powchain_consensus::Block,
    ) -> Result<(), Result<Misbehaviour, SessionEnd>> {
        let hash = block.compute_hash();
        self.known.insert(InventoryItem {
            kind: InventoryKind::Block,
            hash: hash.0,
        });
        let result = self
            .p2p
            .blocking(move |node| node.submit_peer_block(block))
            .await
            .ok_or(Err(SessionEnd::Shutdown))?;
        self.p2p.block_done(&hash);
        match result {
            Ok(PeerBlock { outcome, height }) => {
                if let Some(height) = height {
                    self.p2p.note_peer_block(self.id, hash, height.0);
                }
                if let BlockOutcome::Orphan { missing_parent } = outcome {
                    debug!(peer = %self.label, block = %hash, parent = %missing_parent, "orphan block; asking for headers");
                    self.request_headers(None).await.map_err(Err)?;
                }
                self.p2p.pump_downloads().await;
                Ok(())
            }
            Err(error) if error.is_rejection() => {
                Err(Ok(node_error_misbehaviour(&error, "invalid-block")))
            }
            Err(error) => {
                warn!(peer = %self.label, %error, "could not store a block");
                Ok(())
            }
        }
    }

    async fn on_transaction(
        &mut self,
        transaction: powchain_consensus::Transaction,
    ) -> Result<(), Result<Misbehaviour, SessionEnd>> {
        let txid = transaction.compute_txid();
        self.known.insert(InventoryItem {
            kind: InventoryKind::Transaction,
            hash: txid.0,
        });
        self.p2p.first_sight_of_transaction(txid);
        let held = transaction.clone();
        let result = self
            .p2p
            .blocking(move |node| node.submit_transaction(transaction))
            .await
            .ok_or(Err(SessionEnd::Shutdown))?;
        match result {
            Ok(_) => Ok(()),
            Err(NodeError::Mempool(error)) => {
                // Consensus violations are the sender's fault; policy refusals (fees, a
                // conflict, a parent not yet seen, a full pool) are not.
                if error.is_invalid() {
                    Err(Ok(Misbehaviour::new(
                        error.rule(),
                        format!("invalid transaction {txid}: {error}"),
                    )))
                } else if error.is_missing_input() {
                    // Its parent may still come (in a block, or after a reorganisation
                    // returns it to a pool): held and tried again, never asked for again.
                    debug!(peer = %self.label, %txid, "holding a transaction until its parent arrives");
                    self.p2p.hold_orphan_transaction(txid, held);
                    Ok(())
                } else {
                    debug!(peer = %self.label, %txid, reason = %error, "transaction not pooled");
                    Ok(())
                }
            }
            Err(error) => {
                warn!(peer = %self.label, %txid, %error, "could not pool a transaction");
                Ok(())
            }
        }
    }
}

/// The misbehaviour a node error stands for; `unconnected` names the rule for headers or
/// blocks that do not connect.
fn node_error_misbehaviour(error: &NodeError, unconnected: &str) -> Misbehaviour {
    match error {
        NodeError::Chain(ChainError::UnknownParent { .. }) => {
            Misbehaviour::new(unconnected, error.to_string())
        }
        other => Misbehaviour::new(other.rule().unwrap_or("invalid-data"), other.to_string()),
    }
}
