//! One session per connected peer, after the handshake: a loop over the peer's messages,
//! commands from the rest of the layer, announcements and pings. How it ends is
//! session_end.rs.
//!
//! ```text
//!   peer frame ──size cap (WebSocket)──▶ rate limit ──▶ decode ──▶ dispatch (handle)
//!        headers, blocks, get_headers ──▶ sync.rs (headers-first sync)
//!        cmpctblock, getblocktxn, ... ──▶ compact.rs
//!        inv, get_data ─────────────────▶ inventory.rs
//!        tx ────────────────────────────▶ transaction_fetch.rs; addr: the address book
//!   PeerCommand ──▶ send / close          Announcements ──▶ inventory.rs (once per item)
//!   ping timer ──▶ ping; no pong in time ──▶ end
//! ```
//!
//! Written over any `AsyncRead + AsyncWrite` stream, so the same session runs on TCP or
//! on a simulated network. A peer that breaks a rule is banned and disconnected, and the
//! rule is logged; nothing it sent is stored or relayed.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, StreamExt};
use powchain_consensus::BlockHash;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tracing::trace;

use crate::ban::BanKey;
use crate::compact::PartialBlock;
use crate::console::preview;
use crate::inventory::{KNOWN_GENERATION, KnownInventory};
use crate::message::{Hello, InventoryItem, MAX_MESSAGE_BYTES, Message};
use crate::outbox::Outbox;
use crate::rate_limit::RateLimit;
use crate::registry::{PeerCommand, PeerId};
use crate::relay::Announcements;
use crate::service::P2p;
use crate::session_end::{CloseReason, Misbehaviour, SessionEnd, Stop};
use crate::sync::HeadersRequest;
use crate::transaction_requests::DeferredAnnouncements;

/// How long closing a session may take: a peer that does not read cannot hold it open.
const CLOSE_WITHIN: Duration = Duration::from_secs(1);
/// Transactions already read off the connection that are admitted in one call.
const MAX_TRANSACTION_BATCH: usize = 64;
/// Blocks already read off the connection that are handed to the node in one call.
const MAX_BLOCK_BATCH: usize = 16;

/// Why the session's writer stopped; pending forever while it runs (or if there is none).
async fn writer_stopped(failure: Option<impl Future<Output = CloseReason>>) -> CloseReason {
    match failure {
        Some(failure) => failure.await,
        None => std::future::pending().await,
    }
}

/// A branch a peer is showing us with too little work so far: counted, not stored.
pub(crate) struct Presync {
    /// The branch's first header: the first of the first batch counted that the node did
    /// not have (where the branch leaves the node's chain).
    pub(crate) first: BlockHash,
    /// The last header counted.
    pub(crate) last: BlockHash,
    /// The branch's chain work at it.
    pub(crate) work: powchain_consensus::Work,
    /// Headers counted.
    pub(crate) headers: u64,
}

/// A pre-synced branch that has the work, being downloaded again to be stored.
pub(crate) struct Redownload {
    /// The branch's first header (where it leaves the node's chain): the first batch taken
    /// without the work check must hold it.
    pub(crate) first: BlockHash,
    /// The last header of the batch before, once one was taken: the next must build on it.
    pub(crate) next_parent: Option<BlockHash>,
    /// The branch's last pre-synced header.
    pub(crate) target: BlockHash,
    /// Headers the peer may still send without the work check.
    pub(crate) remaining: u64,
}

/// A connected peer's session.
pub(crate) struct Session<S> {
    pub(crate) p2p: Arc<P2p>,
    pub(crate) id: PeerId,
    pub(crate) label: String,
    ban_key: BanKey,
    /// Where messages to the peer go (taken when the session closes).
    outbox: Option<Outbox>,
    /// The connection's type: its writing half is the outbox's, its reading half `run`'s.
    _stream: std::marker::PhantomData<S>,
    pub(crate) known: KnownInventory,
    /// What to announce to this peer, filled by the relay.
    announcements: Arc<Announcements>,
    /// Set when this node closes the session (see `registry::Closing`).
    closing: Arc<crate::registry::Closing>,
    /// How many more addresses this peer may share now.
    address_budget: RateLimit,
    /// True once the peer's `getaddr` was answered: later ones are ignored, as Bitcoin
    /// Core answers one a connection (each answer is up to 100 addresses, some 3 KB, for a
    /// message of one byte).
    addresses_given: bool,
    /// A low-work branch this peer is showing us.
    pub(crate) presync: Option<Presync>,
    /// A pre-synced branch being stored.
    pub(crate) redownload: Option<Redownload>,
    /// Compact blocks waiting for the transactions we asked this peer for, oldest first
    /// (at most `compact::MAX_PARTIAL_BLOCKS`).
    pub(crate) compact_in_progress: VecDeque<PartialBlock>,
    /// The last blocks this peer's compact blocks were looked up in the pool for (at most
    /// `compact::MAX_TRIED_COMPACT_BLOCKS`): a block is rebuilt once a session.
    pub(crate) compact_tried: VecDeque<BlockHash>,
    /// When we last asked for headers because an announcement did not connect: at most
    /// one such request a second (sync.rs).
    pub(crate) last_unconnected_request: Option<Instant>,
    /// Our last `getheaders`, until answered: one at a time for announced blocks (sync.rs).
    pub(crate) headers_request: HeadersRequest,
    /// A compact block whose parent we did not know: rebuilt when headers bring the
    /// parent (compact.rs, sync.rs).
    pub(crate) unplaced_compact: Option<crate::message::CompactBlock>,
    /// Transactions the peer announced past its bound in the request tracker, asked for
    /// as its load falls (transaction_requests.rs).
    pub(crate) deferred_transactions: DeferredAnnouncements,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Session<S> {
    pub(crate) fn new(
        p2p: Arc<P2p>,
        id: PeerId,
        label: String,
        ban_key: BanKey,
        sink: SplitSink<WebSocketStream<S>, Frame>,
        announcements: Arc<Announcements>,
        closing: Arc<crate::registry::Closing>,
    ) -> Session<S> {
        // A write that waits this long for the peer to read ends the session: the ping
        // timeout, since no pong can come through a connection that stuck.
        let p2p_write_timeout = p2p.config.ping_timeout;
        let p2p_tasks = p2p.tasks.clone();
        let deferred_transactions =
            DeferredAnnouncements::new(Arc::clone(&p2p.deferred_announcements));
        Session {
            p2p,
            id,
            label,
            ban_key,
            outbox: Some(Outbox::start(sink, p2p_write_timeout, &p2p_tasks)),
            _stream: std::marker::PhantomData,
            known: KnownInventory::new(KNOWN_GENERATION),
            announcements,
            closing,
            address_budget: RateLimit::addresses(),
            addresses_given: false,
            presync: None,
            redownload: None,
            compact_in_progress: VecDeque::new(),
            compact_tried: VecDeque::new(),
            last_unconnected_request: None,
            headers_request: HeadersRequest::default(),
            unplaced_compact: None,
            deferred_transactions,
        }
    }

    /// Who this peer is as a source of addresses: its address group, or, for a local
    /// peer, its port (`address_book::Source`).
    fn address_source(&self) -> crate::address_book::Source {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        match self.ban_key {
            BanKey::Address(ip) => {
                std::hash::Hash::hash(&crate::address_group::AddressGroup::of(ip), &mut hasher)
            }
            local @ BanKey::LocalPort(_) => std::hash::Hash::hash(&local, &mut hasher),
        }
        std::hash::Hasher::finish(&hasher)
    }

    /// The peer's address as logs show it.
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// Closes the connection (best effort, within [`CLOSE_WITHIN`]), telling the peer why
    /// in the close frame when the reason is ours to give.
    pub(crate) async fn close(&mut self, end: &SessionEnd) {
        let told = match end {
            SessionEnd::Shutdown => Some((CloseCode::Away, "the node is shutting down".to_owned())),
            SessionEnd::Misbehaved(rule) => Some((
                CloseCode::Policy,
                format!("banned for breaking the rule {rule}"),
            )),
            SessionEnd::Closed(CloseReason::Told(reason)) => {
                Some((CloseCode::Normal, (*reason).to_owned()))
            }
            SessionEnd::Closed(CloseReason::PingTimeout) => {
                Some((CloseCode::Policy, "no answer to a ping in time".to_owned()))
            }
            _ => None,
        };
        let frame = told.map(|(code, reason)| CloseFrame {
            code,
            reason: reason.into(),
        });
        if let Some(outbox) = self.outbox.take() {
            outbox.close(frame, CLOSE_WITHIN).await;
        }
    }

    /// Queues `message` for the writer (outbox.rs), waiting only while the peer has 2 MiB
    /// not yet taken; an error once the writer stopped (a write failed, or the peer stopped
    /// reading for the ping timeout).
    pub(crate) async fn send(&mut self, message: &Message) -> Result<(), SessionEnd> {
        trace!(peer = %self.label, message = message.name(), "send");
        let Some(outbox) = &self.outbox else {
            return Err(SessionEnd::Closed(CloseReason::Dropped));
        };
        let bytes = message.to_bytes();
        let length = bytes.len();
        // Closed by this node while waiting for room (evicted, replaced, removed): end now,
        // not when a slow reader has taken the rest of a large answer.
        tokio::select! {
            sent = outbox.send(bytes) => sent.map_err(SessionEnd::Closed)?,
            reason = self.closing.closed() => {
                return Err(SessionEnd::Closed(CloseReason::Told(reason)));
            }
        }
        self.p2p.traffic.sent(message.type_byte(), length);
        self.p2p.upload.sent(length, tokio::time::Instant::now());
        Ok(())
    }

    /// Runs the session until it ends.
    pub(crate) async fn run(
        &mut self,
        stream: &mut SplitStream<WebSocketStream<S>>,
        commands: &mut mpsc::Receiver<PeerCommand>,
        theirs: &Hello,
    ) -> SessionEnd {
        if let Err(end) = self.start(theirs).await {
            return end;
        }
        let mut limiter = RateLimit::messages();
        let announcements = Arc::clone(&self.announcements);
        // The first ping goes at once: its round trip is what protects a live peer from
        // eviction (eviction.rs).
        let mut ping = tokio::time::interval(self.p2p.config.ping_interval);
        let mut awaiting_pong: Option<(u64, Instant)> = None;
        // Made once, not once a message: each ends the session the first time it fires.
        let cancelled = self.p2p.token.clone().cancelled_owned();
        let writer_stopped = writer_stopped(self.outbox.as_ref().map(Outbox::failure));
        tokio::pin!(cancelled, writer_stopped);
        loop {
            tokio::select! {
                // In this order, every time: the same events give the same messages (a
                // simulation replays them), our own commands and announcements leave before
                // more is read (a peer that keeps sending cannot starve them), and a flood
                // of commands cannot starve reading: the queue is bounded and drains.
                biased;
                () = &mut cancelled => return SessionEnd::Shutdown,
                reason = &mut writer_stopped => return SessionEnd::Closed(reason),
                command = commands.recv() => {
                    let result = match command {
                        None => return SessionEnd::Closed(CloseReason::Dropped),
                        Some(PeerCommand::Close(reason)) => return SessionEnd::Closed(CloseReason::Told(reason)),
                        Some(PeerCommand::Send(message)) => self.send(&message).await,
                        Some(PeerCommand::Push { hash, block }) => self.send_pushed(hash, &block).await,
                        Some(PeerCommand::AnnounceHeader(header)) => self.announce_header(header).await,
                    };
                    if let Err(end) = result {
                        return end;
                    }
                }
                () = announcements.due() => {
                    if let Err(end) = self.announce(announcements.take()).await {
                        return end;
                    }
                }
                _ = ping.tick() => {
                    // A peer that sends nothing more still gets its deferred announcements
                    // asked for as other peers deliver them (its load falls without a
                    // message of its own).
                    if let Err(Stop::End(end)) = self.ask_for_deferred_transactions().await {
                        return end;
                    }
                    if let Some((_, sent)) = awaiting_pong {
                        if sent.elapsed() > self.p2p.config.ping_timeout {
                            return SessionEnd::Closed(CloseReason::PingTimeout);
                        }
                    } else {
                        // Drawn, not counted from the nonce our hello sent: a peer that
                        // could predict it would answer before it was asked and show a
                        // round trip of 0 ms, winning a place eviction protects.
                        let nonce = self.p2p.random();
                        awaiting_pong = Some((nonce, Instant::now()));
                        if let Err(end) = self.send(&Message::Ping(nonce)).await {
                            return end;
                        }
                    }
                }
                frame = stream.next() => {
                    let message = match self.read_frame(frame, &mut limiter) {
                        Ok(Some(message)) => message,
                        Ok(None) => continue,
                        Err(end) => return end,
                    };
                    let mut messages = VecDeque::from([message]);
                    let batch_of = match messages[0] {
                        Message::Transaction(_) => MAX_TRANSACTION_BATCH,
                        Message::Block(_) => MAX_BLOCK_BATCH,
                        _ => 1,
                    };
                    // A peer answering our requests sends transactions, or blocks, back to
                    // back: those already read off the connection join one call to the
                    // node (one hand-off to a blocking thread) instead of one each. The
                    // first message of another kind ends the batch and is handled after
                    // it, in order.
                    while messages.len() < batch_of {
                        let Some(frame) = stream.next().now_or_never() else {
                            break;
                        };
                        match self.read_frame(frame, &mut limiter) {
                            Ok(Some(message)) => {
                                let more = std::mem::discriminant(&message)
                                    == std::mem::discriminant(&messages[0]);
                                messages.push_back(message);
                                if !more {
                                    break;
                                }
                            }
                            Ok(None) => {}
                            Err(end) => return end,
                        }
                    }
                    let mut transactions = Vec::new();
                    let mut blocks = Vec::new();
                    let kind = std::mem::discriminant(&messages[0]);
                    while messages
                        .front()
                        .is_some_and(|message| std::mem::discriminant(message) == kind)
                    {
                        match messages.pop_front() {
                            Some(Message::Transaction(transaction)) => transactions.push(*transaction),
                            Some(Message::Block(block)) => blocks.push(*block),
                            Some(other) => {
                                messages.push_front(other);
                                break;
                            }
                            None => break,
                        }
                    }
                    let mut outcome = if !transactions.is_empty() {
                        self.on_transactions(transactions).await
                    } else if !blocks.is_empty() {
                        self.on_blocks(blocks, false).await
                    } else {
                        Ok(())
                    };
                    for message in messages {
                        if outcome.is_err() {
                            break;
                        }
                        if let Message::Pong(nonce) = message {
                            if let Some((expected, sent)) = awaiting_pong
                                && expected == nonce
                            {
                                let rtt = u64::try_from(sent.elapsed().as_millis()).unwrap_or(u64::MAX);
                                self.p2p.registry.note_ping(self.id, rtt);
                                awaiting_pong = None;
                            }
                            continue;
                        }
                        trace!(peer = %self.label, message = message.name(), "received");
                        outcome = self.handle(message).await;
                    }
                    match outcome {
                        Ok(()) => {}
                        Err(Stop::Misbehaved(misbehaviour)) => return self.punish(misbehaviour),
                        Err(Stop::End(end)) => return end,
                    }
                }
            }
        }
    }

    /// The message in `frame`, checked against the rate limit (answers to our own requests
    /// are refunded); `None` for a frame that carries none (WebSocket pings and pongs).
    ///
    /// # Errors
    /// The session's end: the connection closed or failed, or the peer broke a rule (it is
    /// banned).
    fn read_frame(
        &mut self,
        frame: Option<Result<Frame, tokio_tungstenite::tungstenite::Error>>,
        limiter: &mut RateLimit,
    ) -> Result<Option<Message>, SessionEnd> {
        let message = match frame {
            None => return Err(SessionEnd::Closed(CloseReason::Lost)),
            Some(Err(tokio_tungstenite::tungstenite::Error::Capacity(error))) => {
                // The WebSocket layer refuses frames above the size limit before reading
                // them.
                return Err(self.punish(Misbehaviour::new(
                    "oversized-message",
                    format!("{error} (limit {MAX_MESSAGE_BYTES} bytes)"),
                )));
            }
            Some(Err(tokio_tungstenite::tungstenite::Error::Protocol(
                ProtocolError::ResetWithoutClosingHandshake,
            ))) => return Err(SessionEnd::Closed(CloseReason::Lost)),
            Some(Err(error)) => return Err(SessionEnd::Closed(CloseReason::Transport(error))),
            Some(Ok(Frame::Binary(bytes))) => {
                if !limiter.take() {
                    return Err(self.punish(Misbehaviour::new(
                        "flood",
                        "more messages than the rate limit allows",
                    )));
                }
                match Message::from_bytes(&bytes) {
                    Ok(message) => {
                        self.p2p.traffic.received(message.type_byte(), bytes.len());
                        message
                    }
                    Err(error) => return Err(self.punish(error.into())),
                }
            }
            Some(Ok(Frame::Text(_))) => {
                return Err(self.punish(Misbehaviour::new(
                    "malformed-message",
                    "text frame; the protocol is binary",
                )));
            }
            Some(Ok(Frame::Close(frame))) => {
                let reason = frame
                    .map(|frame| preview(frame.reason.as_str()))
                    .filter(|reason| !reason.is_empty());
                return Err(SessionEnd::Closed(CloseReason::ByPeer(reason)));
            }
            Some(Ok(_)) => {
                if !limiter.take() {
                    return Err(self.punish(Misbehaviour::new(
                        "flood",
                        "more frames than the rate limit allows",
                    )));
                }
                return Ok(None);
            }
        };
        // Answers to our own requests do not count against the limit.
        let requested = match &message {
            Message::Block(block) => self.p2p.is_in_flight_from(self.id, &block.compute_hash()),
            Message::Transaction(transaction) => self
                .p2p
                .is_transaction_asked_of(self.id, &transaction.compute_txid()),
            Message::CompactBlock(compact) => self
                .p2p
                .is_in_flight_from(self.id, &compact.header.compute_hash()),
            Message::BlockTransactions { block, .. } => self
                .compact_in_progress
                .iter()
                .any(|partial| partial.hash == *block),
            _ => false,
        };
        if requested {
            limiter.refund();
        }
        Ok(Some(message))
    }

    fn punish(&mut self, misbehaviour: Misbehaviour) -> SessionEnd {
        self.p2p.ban(self.ban_key, misbehaviour.rule);
        self.p2p.warn_connection(format_args!(
            "banned a misbehaving peer: {} broke the rule {} ({})",
            self.label, misbehaviour.rule, misbehaviour.detail
        ));
        SessionEnd::Misbehaved(misbehaviour.rule)
    }

    /// Handles one message.
    async fn handle(&mut self, message: Message) -> Result<(), Stop> {
        match message {
            Message::Hello(_) => {
                Err(Misbehaviour::new("unexpected-hello", "a second hello").into())
            }
            Message::Ping(nonce) => Ok(self.send(&Message::Pong(nonce)).await?),
            Message::Pong(_) => Ok(()),
            Message::GetHeaders { locator, stop } => self.on_get_headers(locator, stop).await,
            Message::Headers(headers) => self.on_headers(headers).await,
            Message::Inventory(items) => self.on_inventory(items).await,
            Message::GetData(items) => self.on_get_data(items).await,
            Message::NotFound(items) => {
                let mut freed_block = false;
                for item in &items {
                    match item {
                        InventoryItem::Block(hash) | InventoryItem::CompactBlock(hash) => {
                            freed_block |= self.p2p.note_not_found(self.id, *hash);
                        }
                        // Gone from its pool before we asked (a block took it): asked of
                        // another announcer, or again when announced again (a
                        // reorganisation may bring it back).
                        InventoryItem::Transaction(txid) => {
                            self.p2p.transaction_not_found(self.id, txid);
                        }
                    }
                }
                // A download plan is made under the node's lock: only when a block we
                // asked of this peer is free for others, not for every `notfound`.
                if freed_block {
                    self.p2p.pump_downloads().await;
                }
                // The peer's load fell by what it lacked.
                self.ask_for_deferred_transactions().await
            }
            Message::Block(block) => self.on_block(*block).await,
            Message::Transaction(transaction) => self.on_transactions(vec![*transaction]).await,
            Message::GetAddresses if self.addresses_given => Ok(()),
            Message::GetAddresses => {
                self.addresses_given = true;
                let addresses = self.p2p.addresses().shareable(
                    crate::message::MAX_ADDRESSES,
                    self.ban_key.is_public(),
                    self.p2p.random(),
                );
                Ok(self.send(&Message::Addresses(addresses)).await?)
            }
            Message::SendCompact { high_bandwidth } => {
                let push = high_bandwidth && self.p2p.config.compact_blocks;
                self.p2p.registry.set_compact_relay(self.id, push);
                Ok(())
            }
            Message::CompactBlock(compact) => self.on_compact_block(*compact).await,
            Message::GetBlockTransactions { block, indexes } => {
                self.on_get_block_transactions(block, indexes).await
            }
            Message::BlockTransactions {
                block,
                transactions,
            } => self.on_block_transactions(block, transactions).await,
            Message::Addresses(mut addresses) => {
                // Beyond the peer's address budget the rest is ignored, not punished; so
                // is what a stranger on the internet may not make us dial.
                addresses.truncate(self.address_budget.take_up_to(addresses.len()));
                let public = self.ban_key.is_public();
                addresses.retain(|text| {
                    crate::url::PeerUrl::parse(text)
                        .is_ok_and(|url| crate::address_group::may_share(public, &url.host))
                });
                if !addresses.is_empty() {
                    self.p2p.learn_addresses(&addresses, self.address_source());
                }
                Ok(())
            }
        }
    }
}
