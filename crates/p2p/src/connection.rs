//! Connections: accepting peers on the listener and dialling addresses, with the
//! WebSocket handshake under a deadline, reconnection with backoff, and the slots that
//! cap inbound and learned outbound connections.
//!
//! ```text
//!   accept loop ──(banned? a pending slot for its group?)──▶ WebSocket accept ──▶ handshake.rs
//!   dial(url) ──one dialler per address──▶ TCP connect + WebSocket ──▶ handshake.rs
//!        both under one deadline (handshake_timeout) and a pre-hello byte budget
//!        └─ session ended ─▶ a configured peer (PEERS): backoff (250 ms doubling to
//!           max_backoff, jitter) ─▶ again, until the operator removes it; a learned
//!           address: once, the book remembers how it went (outbound.rs picks the next)
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, warn};

use crate::address_book::DialOutcome;
use crate::address_group::AddressGroup;
use crate::ban::BanKey;
use crate::handshake::{Handshake, run_session};
use crate::pending::PRE_HELLO_BYTES;
use crate::read_budget::BudgetedStream;
use crate::service::{P2p, websocket_config};
use crate::session_end::SessionEnd;
use crate::transport::Listener;
use crate::url::PeerUrl;

/// A session must last this long for its end to reset the dial backoff: a peer that
/// closes at once (it banned us, say) is dialled less and less often, not every 250 ms.
const STABLE_SESSION: Duration = Duration::from_secs(10);
/// The first wait before dialling an address again.
const INITIAL_BACKOFF: Duration = Duration::from_millis(250);

/// Why dialling a peer did not reach the protocol handshake.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DialError {
    /// The TCP connection failed.
    #[error("cannot connect: {0}")]
    Connect(#[source] std::io::Error),
    /// The WebSocket upgrade failed.
    #[error("WebSocket handshake failed: {0}")]
    WebSocket(#[source] tokio_tungstenite::tungstenite::Error),
    /// Connecting and upgrading took longer than the handshake timeout.
    #[error("connecting timed out")]
    Timeout,
}

impl P2p {
    /// Learns `addresses` from `source` (see [`crate::address_book::Source`]) and fills
    /// free outbound slots from the book (`outbound.rs`).
    pub(crate) fn learn_addresses(
        self: &Arc<Self>,
        addresses: &[String],
        source: crate::address_book::Source,
    ) {
        let fresh = self.addresses().learn(addresses, source);
        if !fresh.is_empty() {
            self.fill_outbound();
        }
    }

    /// Starts a dialer for `url` unless one runs; true if it started. A `persistent`
    /// dialer (configured peers) retries forever; a learned address is dialled once.
    pub(crate) fn dial(self: &Arc<Self>, url: PeerUrl, persistent: bool) -> bool {
        if !self.addresses().begin_dial(&url, persistent) {
            return false;
        }
        self.spawn_dialler(url, persistent);
        true
    }

    /// The operator asks for `url` (`POST /peers`): readmitted if it was removed, and
    /// dialled as a configured peer, in one step under the book's lock, so a removal
    /// cannot fall between the two and leave the request answered and dialled by no one.
    pub(crate) fn ask_for(self: &Arc<Self>, url: PeerUrl) {
        let started = {
            let mut book = self.addresses();
            book.readmit(&url);
            book.begin_dial(&url, true)
        };
        if started {
            self.spawn_dialler(url, true);
        }
    }

    /// Runs the dialler of `url`, which the address book (`begin_dial`) marked as dialled.
    fn spawn_dialler(self: &Arc<Self>, url: PeerUrl, persistent: bool) {
        let p2p = Arc::clone(self);
        self.tasks.spawn(async move {
            if !persistent {
                let lasted = p2p.dial_once(&url).await == Some(DialOutcome::Lasted);
                // Unless the operator asked for this address while its learned dial ran:
                // from then on it is dialled as a configured peer.
                if !p2p.addresses().finish_learned_dial(&url) {
                    // A peer that left frees its slot for another at once; after a failed
                    // dial the next waits for the outbound loop's tick, so addresses that
                    // refuse at once are not dialled in a tight loop.
                    if lasted && !p2p.token.is_cancelled() {
                        p2p.fill_outbound();
                    }
                    return;
                }
            }
            loop {
                // Only a dialler that stopped for a removal may go on: a request noted
                // while it ran is for that stop, not for one of another network, say.
                let removed = p2p.dial_loop(&url).await;
                let go_on = removed && !p2p.token.is_cancelled();
                if !p2p.addresses().end_dial(&url, go_on) {
                    return;
                }
            }
        });
    }

    /// One dial of the learned address `url` for an outbound slot, and its session if it
    /// connects; the book remembers how it went, which is returned (none if the dial did
    /// not happen, or reached this very node).
    async fn dial_once(self: &Arc<Self>, url: &PeerUrl) -> Option<DialOutcome> {
        if self.token.is_cancelled()
            || self.stops_dialling(url)
            || self.registry.is_connected_to(url)
        {
            return None;
        }
        let dialled = Instant::now();
        let attempt = self.connect(url).await;
        if self.token.is_cancelled() {
            return None;
        }
        let outcome = match attempt {
            Ok(SessionEnd::SelfConnection) => {
                self.addresses().note_own(url);
                return None;
            }
            Ok(SessionEnd::WrongNetwork { .. }) => {
                debug!(peer = %url, "a learned address is on another network");
                DialOutcome::WrongNetwork
            }
            Ok(SessionEnd::Duplicate) => DialOutcome::Duplicate,
            Ok(end) if end.was_established() && dialled.elapsed() >= STABLE_SESSION => {
                debug!(peer = %url, ?end, "session ended");
                DialOutcome::Lasted
            }
            Ok(end) => {
                debug!(peer = %url, ?end, "session ended at once, or never began");
                DialOutcome::Failed
            }
            Err(error) => {
                debug!(peer = %url, %error, "could not connect");
                DialOutcome::Failed
            }
        };
        let forgotten =
            self.addresses()
                .dial_ended(url, outcome, Instant::now(), self.config.max_backoff);
        if forgotten {
            debug!(peer = %url, "giving up on a learned address");
        }
        Some(outcome)
    }

    /// Dials the configured peer `url` whenever it is not connected, with backoff, until
    /// the layer stops or the operator removes it; true if it stopped for a removal (or
    /// found the address marked as ours before dialling it).
    async fn dial_loop(self: &Arc<Self>, url: &PeerUrl) -> bool {
        let mut backoff = INITIAL_BACKOFF;
        loop {
            if self.token.is_cancelled() {
                return false;
            }
            if self.stops_dialling(url) {
                return true;
            }
            let connected = self.registry.is_connected_to(url);
            if !connected {
                let dialled = Instant::now();
                // Not raced with the token: `connect` watches it, and a session it runs
                // closes with a close frame when the node stops.
                let attempt = self.connect(url).await;
                if self.token.is_cancelled() {
                    return false;
                }
                match attempt {
                    Ok(end) => {
                        debug!(peer = %url, ?end, "session ended");
                        match end {
                            SessionEnd::SelfConnection => {
                                self.addresses().note_own(url);
                                return false;
                            }
                            SessionEnd::WrongNetwork { .. } => {
                                warn!(peer = %url, "peer is on another network; not dialling it again");
                                return false;
                            }
                            SessionEnd::Duplicate => backoff = self.config.max_backoff,
                            end if end.was_established() && dialled.elapsed() >= STABLE_SESSION => {
                                backoff = INITIAL_BACKOFF;
                            }
                            _ => {}
                        }
                    }
                    Err(error) => debug!(peer = %url, %error, "could not connect"),
                }
                if self.stops_dialling(url) {
                    return true;
                }
            }
            // Jitter keeps restarted nodes from reconnecting in lockstep.
            let jitter = Duration::from_millis(self.random() % 100);
            tokio::select! {
                biased;
                () = self.token.cancelled() => return false,
                () = tokio::time::sleep(backoff + jitter) => {}
            }
            if !connected {
                backoff = (backoff * 2).min(self.config.max_backoff);
            }
        }
    }

    /// True if `url` is this node or the operator removed it.
    fn stops_dialling(&self, url: &PeerUrl) -> bool {
        let addresses = self.addresses();
        addresses.is_own(url) || addresses.is_removed(url)
    }

    async fn connect(self: &Arc<Self>, url: &PeerUrl) -> Result<SessionEnd, DialError> {
        let deadline = tokio::time::Instant::now() + self.config.handshake_timeout;
        let handshake = async {
            let authority = url.authority();
            let (stream, remote) = self
                .environment
                .transport
                .connect(&authority)
                .await
                .map_err(DialError::Connect)?;
            let (stream, budget) = BudgetedStream::new(stream, PRE_HELLO_BYTES);
            let (websocket, _) = tokio_tungstenite::client_async_with_config(
                url.to_string(),
                stream,
                Some(websocket_config()),
            )
            .await
            .map_err(DialError::WebSocket)?;
            Ok::<_, DialError>((websocket, remote, budget))
        };
        let connected = tokio::select! {
            biased;
            () = self.token.cancelled() => return Ok(SessionEnd::Shutdown),
            connected = tokio::time::timeout_at(deadline, handshake) => connected,
        };
        let (websocket, remote, budget) = connected.map_err(|_| DialError::Timeout)??;
        let handshake = Handshake {
            remote,
            dialled: Some(url.clone()),
            deadline,
            budget,
            pending: None,
        };
        Ok(run_session(Arc::clone(self), websocket, handshake).await)
    }

    /// Accepts peers until the layer stops.
    pub(crate) async fn accept_loop(self: Arc<Self>, mut listener: Box<dyn Listener>) {
        loop {
            let accepted = tokio::select! {
                biased;
                () = self.token.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let (stream, remote): (_, SocketAddr) = match accepted {
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
            // Inbound slots are not checked here: a full node still lets a newcomer
            // through its handshake, and evicts for it if it deserves a slot.
            let pending = match self.pending.try_begin(AddressGroup::of(remote.ip())) {
                Ok(slot) => slot,
                Err(refusal) => {
                    debug!(%remote, %refusal, "refused a connection");
                    continue;
                }
            };
            let p2p = Arc::clone(&self);
            self.tasks.spawn(async move {
                let deadline = tokio::time::Instant::now() + p2p.config.handshake_timeout;
                let (stream, budget) = BudgetedStream::new(stream, PRE_HELLO_BYTES);
                let upgrade =
                    tokio_tungstenite::accept_async_with_config(stream, Some(websocket_config()));
                let evicted = pending.evicted();
                let upgraded = tokio::select! {
                    biased;
                    () = p2p.token.cancelled() => return,
                    () = evicted.cancelled() => {
                        debug!(%remote, "a pending connection made room for a newcomer");
                        return;
                    }
                    upgraded = tokio::time::timeout_at(deadline, upgrade) => upgraded,
                };
                match upgraded {
                    Ok(Ok(websocket)) => {
                        let handshake = Handshake {
                            remote,
                            dialled: None,
                            deadline,
                            budget,
                            pending: Some(pending),
                        };
                        let end = run_session(Arc::clone(&p2p), websocket, handshake).await;
                        debug!(%remote, ?end, "inbound session ended");
                    }
                    Ok(Err(error)) => debug!(%remote, %error, "WebSocket handshake failed"),
                    Err(_) => debug!(%remote, "WebSocket handshake timed out"),
                }
            });
        }
    }
}
