//! The protocol handshake: each side sends `hello` (network, genesis, tip, work, listen
//! port, nonce) first; the connection becomes a session only if the peer is on our
//! network, is not us, is not banned and has a slot.
//!
//! ```text
//!   send our hello ──▶ first frame by the deadline (set when the connection was accepted
//!   or dialled) ──▶ binary hello? ──▶ the pre-hello byte budget is lifted
//!     ├─ other message / undecodable ──▶ ban, close frame with the reason (stranger.rs)
//!     ├─ text or control frame, too many bytes ──▶ close frame with the reason, no ban
//!     ├─ other network or genesis ─────▶ end (WrongNetwork)
//!     ├─ our own nonce ────────────────▶ end (SelfConnection)
//!     ├─ banned / duplicate ───────────▶ end
//!     ├─ group full / full, nobody to evict ─▶ end
//!     ├─ registered, but its address was removed by the operator ─▶ end
//!     └─ register ──▶ Session::run (session.rs) ──▶ unregister, pump downloads
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use powchain_node::{DisconnectInfo, PeerInfo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as Frame;
use tracing::debug;

use crate::address_group::AddressGroup;
use crate::ban::BanKey;
use crate::download::STALLED;
use crate::message::{Hello, Message};
use crate::pending::PendingSlot;
use crate::read_budget::{BudgetHandle, OverBudget};
use crate::registry::{InboundLimits, PeerEntry, REMOVED, Refusal};
use crate::relay::Announcements;
use crate::service::P2p;
use crate::session::Session;
use crate::session_end::{CloseReason, HandshakeFailure, SessionEnd};
use crate::stranger::Stranger;
use crate::url::PeerUrl;

/// Writes one message as a binary frame.
pub(crate) async fn send_frame<S: AsyncRead + AsyncWrite + Unpin>(
    sink: &mut SplitSink<WebSocketStream<S>, Frame>,
    message: &Message,
) -> Result<usize, tokio_tungstenite::tungstenite::Error> {
    let bytes = message.to_bytes();
    let length = bytes.len();
    sink.send(Frame::binary(bytes)).await?;
    Ok(length)
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

/// A connection on its way to becoming a session.
pub(crate) struct Handshake {
    pub(crate) remote: SocketAddr,
    /// The address we dialled for an outbound connection, `None` for an inbound one.
    pub(crate) dialled: Option<PeerUrl>,
    /// When the peer's hello must have arrived by.
    pub(crate) deadline: tokio::time::Instant,
    /// Lifted once the hello is read.
    pub(crate) budget: BudgetHandle,
    /// The inbound connection's pending slot, freed once the hello is read.
    pub(crate) pending: Option<PendingSlot>,
}

/// Runs a session on an open WebSocket until it ends.
pub(crate) async fn run_session<S>(
    p2p: Arc<P2p>,
    websocket: WebSocketStream<S>,
    handshake: Handshake,
) -> SessionEnd
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Handshake {
        remote,
        dialled,
        deadline,
        budget,
        pending,
    } = handshake;
    let (mut sink, mut stream) = websocket.split();
    let Some(hello) = our_hello(&p2p).await else {
        return SessionEnd::Shutdown;
    };
    if let Err(error) = send_frame(&mut sink, &Message::Hello(hello)).await {
        return SessionEnd::HandshakeFailed(HandshakeFailure::Transport(error));
    }
    let evicted = pending.as_ref().map(PendingSlot::evicted);
    let evicted = async {
        match evicted {
            Some(token) => token.cancelled().await,
            None => std::future::pending().await,
        }
    };
    let first = tokio::select! {
        biased;
        () = p2p.token.cancelled() => return SessionEnd::Shutdown,
        () = evicted => return SessionEnd::HandshakeFailed(HandshakeFailure::Evicted),
        first = tokio::time::timeout_at(deadline, stream.next()) => first,
    };
    let provisional_key = BanKey::for_peer(remote.ip(), remote.port());
    let outbound = dialled.is_some();
    // Before a hello the peer's listening address is unknown: the dialled one, or where
    // it connected from.
    let who = dialled
        .as_ref()
        .map_or_else(|| remote.to_string(), PeerUrl::to_string);
    let first = match first {
        Err(_) => return SessionEnd::HandshakeFailed(HandshakeFailure::Timeout),
        Ok(None | Some(Ok(Frame::Close(_)))) => {
            return SessionEnd::HandshakeFailed(HandshakeFailure::ClosedEarly);
        }
        Ok(Some(Err(error))) => {
            let over_budget = matches!(
                &error,
                tokio_tungstenite::tungstenite::Error::Io(io) if OverBudget::caused(io)
            );
            let end = SessionEnd::HandshakeFailed(HandshakeFailure::Transport(error));
            if !over_budget {
                return end;
            }
            Err((Stranger::TooMuch, end))
        }
        Ok(Some(Ok(Frame::Binary(bytes)))) => match Message::from_bytes(&bytes) {
            Ok(Message::Hello(hello)) => Ok(hello),
            Ok(other) => Err((
                Stranger::OtherMessage(other.name()),
                SessionEnd::Misbehaved("expected-hello"),
            )),
            Err(error) => Err((
                Stranger::Undecodable(error.rule()),
                SessionEnd::Misbehaved(error.rule()),
            )),
        },
        Ok(Some(Ok(frame))) => Err((
            Stranger::of_frame(&frame),
            SessionEnd::HandshakeFailed(HandshakeFailure::NotBinary),
        )),
    };
    let theirs = match first {
        Ok(hello) => hello,
        Err((stranger, end)) => {
            if let Some(rule) = stranger.banned_for() {
                p2p.ban(provisional_key, rule);
            }
            p2p.refuse_stranger(&stranger, &who, outbound, &mut sink, &mut stream)
                .await;
            return end;
        }
    };
    budget.lift();
    drop(pending);
    let params = p2p.node.params();
    if theirs.network_magic != params.network.magic() || theirs.genesis != params.genesis_hash() {
        let end = SessionEnd::WrongNetwork {
            magic: theirs.network_magic,
            genesis: theirs.genesis,
        };
        p2p.say_connection(format_args!(
            "peer on another network: {who} ({end}); closed"
        ));
        debug!(peer = %remote, ours = %params.genesis_hash(), "disconnected a peer on another network");
        let _ = sink.close().await;
        return end;
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
    let announcements = Arc::new(Announcements::new(
        p2p.config.transaction_announcement_interval,
    ));
    let closing = Arc::new(crate::registry::Closing::default());
    let entry = PeerEntry {
        commands: tokio::sync::mpsc::channel(1).0,
        closing: Arc::clone(&closing),
        announcements: Arc::clone(&announcements),
        info: PeerInfo {
            url: label.clone(),
            outbound,
            best_height: theirs.best_height,
            connected_since_ms: p2p.node.now_ms(),
            ping_ms: None,
        },
        node_nonce: theirs.node_nonce,
        ip: match remote.ip() {
            std::net::IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
            v4 => v4,
        },
        listen_url: listen_url.clone(),
        best_known: None,
        group: AddressGroup::of(remote.ip()),
        min_ping_ms: None,
        last_block_ms: None,
        last_transaction_ms: None,
        relays_compact: false,
        push_compact: false,
    };
    let limits = InboundLimits {
        max_inbound: p2p.config.max_inbound,
        max_per_group: p2p.config.max_inbound_per_group,
    };
    let registered = p2p.registry.register(entry, p2p.node_nonce, limits);
    let (id, mut commands) = match registered {
        Ok(registered) => registered,
        Err(refusal) => {
            let end = match refusal {
                Refusal::Duplicate => SessionEnd::Duplicate,
                Refusal::Full => SessionEnd::Full,
                Refusal::GroupFull => SessionEnd::GroupFull,
            };
            if !matches!(end, SessionEnd::Duplicate) {
                // Listed before the peer sees the close, so whoever it tells finds the reason.
                p2p.say_connection(format_args!("refused an inbound peer: {label} ({end})"));
                p2p.registry.record_disconnect(DisconnectInfo {
                    url: label,
                    outbound: false,
                    reason: end.to_string(),
                    at_ms: p2p.node.now_ms(),
                });
            }
            let _ = sink.close().await;
            return end;
        }
    };
    // After registering: a removal marks the address before it searches the registry.
    if let Some(url) = &listen_url {
        if p2p.addresses().is_removed(url) {
            p2p.registry.unregister(id);
            let _ = sink.close().await;
            return SessionEnd::Closed(CloseReason::Told(REMOVED));
        }
        p2p.addresses().insert(url.clone());
    }
    p2p.say_connection(format_args!(
        "peer connected: {label} ({}, height {})",
        if outbound { "outbound" } else { "inbound" },
        theirs.best_height
    ));
    if p2p.note_new_download_peer(id, &ban_key) {
        debug!(peer = %label, "closed for stalling a download lately: asked for blocks last");
    }
    let mut session = Session::new(
        Arc::clone(&p2p),
        id,
        label,
        ban_key,
        sink,
        announcements,
        closing,
    );
    let end = session.run(&mut stream, &mut commands, &theirs).await;
    p2p.registry.unregister(id);
    if let Some(url) = &listen_url {
        p2p.addresses().session_ended(url);
    }
    let overdue = p2p.forget_peer_downloads(id);
    if overdue || matches!(end, SessionEnd::Closed(CloseReason::Told(reason)) if reason == STALLED)
    {
        p2p.remember_staller(ban_key);
    }
    p2p.forget_peer_transactions(id);
    p2p.forget_high_bandwidth(id);
    session.close(&end).await;
    p2p.say_connection(format_args!("peer left: {} ({end})", session.label()));
    p2p.registry.record_disconnect(DisconnectInfo {
        url: session.label().to_owned(),
        outbound: dialled.is_some(),
        reason: end.to_string(),
        at_ms: p2p.node.now_ms(),
    });
    // Blocks it had in flight go to other peers now.
    p2p.pump_downloads().await;
    end
}
