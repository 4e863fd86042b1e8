//! How a session ends: the reasons a handshake fails or an established session closes,
//! the rules a peer can break (each a ban), and what handling a message can end in.

use powchain_chain::ChainError;
use powchain_consensus::BlockHash;
use powchain_node::NodeError;

use crate::message::MessageError;

/// How a session ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionEnd {
    /// The handshake failed (timeout, bad first frame, closed early).
    #[error("handshake failed: {0}")]
    HandshakeFailed(HandshakeFailure),
    /// The peer is on another network or chain.
    #[error("peer is on another network (magic {magic:#04x}, genesis {genesis})")]
    WrongNetwork {
        /// The network magic of its hello.
        magic: u8,
        /// The genesis block of its hello.
        genesis: BlockHash,
    },
    /// We connected to ourselves.
    #[error("connected to this node itself")]
    SelfConnection,
    /// The node was already connected through another connection.
    #[error("already connected to this node")]
    Duplicate,
    /// No inbound slot was free and no inbound peer could be evicted.
    #[error("no inbound slot was free and every inbound peer is protected from eviction")]
    Full,
    /// Its address group holds its share of inbound slots.
    #[error("its address group holds its share of inbound slots")]
    GroupFull,
    /// The peer is banned.
    #[error("the peer is banned")]
    Banned,
    /// The peer broke a rule and was banned.
    #[error("banned for breaking the rule {0}")]
    Misbehaved(&'static str),
    /// The connection closed or failed after the handshake.
    #[error("{}", closed_text(.0))]
    Closed(CloseReason),
    /// The node is shutting down.
    #[error("the node is shutting down")]
    Shutdown,
}

/// `closed: ping timeout`, but `closed by peer: <its reason>` and `connection lost ...`
/// as they are.
fn closed_text(reason: &CloseReason) -> String {
    match reason {
        CloseReason::ByPeer(_) | CloseReason::Lost => reason.to_string(),
        other => format!("closed: {other}"),
    }
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

/// Why a handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeFailure {
    /// No hello within the handshake timeout.
    #[error("no hello in time")]
    Timeout,
    /// The connection closed before the peer's hello.
    #[error("closed before hello")]
    ClosedEarly,
    /// A newcomer took its pending slot (all were taken, its group the most crowded).
    #[error("made room for a newcomer while waiting for hello")]
    Evicted,
    /// The first frame was not a binary frame.
    #[error("first frame was not binary")]
    NotBinary,
    /// The WebSocket failed.
    #[error("{0}")]
    Transport(#[source] tokio_tungstenite::tungstenite::Error),
}

/// Why an established session closed without a broken rule.
#[derive(Debug, thiserror::Error)]
pub enum CloseReason {
    /// The peer closed the connection, with the start of its close frame's reason (made
    /// printable) if it gave one.
    #[error("closed by peer{}", .0.as_ref().map_or_else(String::new, |reason| format!(": {reason}")))]
    ByPeer(Option<String>),
    /// The connection ended without a close frame (the peer's process or network went).
    #[error("connection lost without a close frame")]
    Lost,
    /// The peer did not answer a ping in time.
    #[error("ping timeout")]
    PingTimeout,
    /// A message could not be written within the ping timeout: the peer stopped reading,
    /// or the network between us went.
    #[error("write timeout: the peer stopped reading")]
    WriteTimeout,
    /// The layer told the session to close (the reason says why).
    #[error("{0}")]
    Told(&'static str),
    /// The layer dropped the session's command queue.
    #[error("dropped by the peer layer")]
    Dropped,
    /// The WebSocket failed.
    #[error("{0}")]
    Transport(#[source] tokio_tungstenite::tungstenite::Error),
}

/// A rule a peer broke.
#[derive(Debug)]
pub(crate) struct Misbehaviour {
    pub(crate) rule: &'static str,
    pub(crate) detail: String,
}

impl Misbehaviour {
    pub(crate) fn new(rule: &'static str, detail: impl Into<String>) -> Misbehaviour {
        Misbehaviour {
            rule,
            detail: detail.into(),
        }
    }
}

impl From<MessageError> for Misbehaviour {
    fn from(error: MessageError) -> Misbehaviour {
        Misbehaviour::new(error.rule(), error.to_string())
    }
}

/// What handling a message can end in: a broken rule (ban) or the end of the session.
pub(crate) enum Stop {
    Misbehaved(Misbehaviour),
    End(SessionEnd),
}

impl From<SessionEnd> for Stop {
    fn from(end: SessionEnd) -> Stop {
        Stop::End(end)
    }
}

impl From<Misbehaviour> for Stop {
    fn from(misbehaviour: Misbehaviour) -> Stop {
        Stop::Misbehaved(misbehaviour)
    }
}

/// The misbehaviour a node error stands for; `unconnected` names the rule for headers or
/// blocks that do not connect. `None` for an error of our own (the store failed, the node
/// is stopping): the peer sent nothing wrong, and is not banned for it.
pub(crate) fn node_error_misbehaviour(
    error: &NodeError,
    unconnected: &'static str,
) -> Option<Misbehaviour> {
    if !error.is_rejection() {
        return None;
    }
    Some(match error {
        NodeError::Chain(ChainError::UnknownParent { .. }) => {
            Misbehaviour::new(unconnected, error.to_string())
        }
        other => Misbehaviour::new(other.rule().unwrap_or("invalid-data"), other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_error_of_our_own_bans_nobody() {
        let ours = NodeError::Chain(ChainError::Corrupt("a page failed its checksum".into()));
        assert!(node_error_misbehaviour(&ours, "headers-do-not-connect").is_none());
        let unconnected = NodeError::Chain(ChainError::UnknownParent {
            hash: BlockHash([1; 32]),
            parent: BlockHash([2; 32]),
        });
        let misbehaviour = node_error_misbehaviour(&unconnected, "headers-do-not-connect")
            .expect("a header that does not connect is the peer's");
        assert_eq!(misbehaviour.rule, "headers-do-not-connect");
    }

    #[test]
    fn a_session_end_reads_as_a_short_reason() {
        let by_peer = SessionEnd::Closed(CloseReason::ByPeer(Some(
            "the node is shutting down".into(),
        )));
        assert_eq!(
            by_peer.to_string(),
            "closed by peer: the node is shutting down"
        );
        assert_eq!(
            SessionEnd::Closed(CloseReason::ByPeer(None)).to_string(),
            "closed by peer"
        );
        assert_eq!(
            SessionEnd::Closed(CloseReason::Lost).to_string(),
            "connection lost without a close frame"
        );
        assert_eq!(
            SessionEnd::Closed(CloseReason::PingTimeout).to_string(),
            "closed: ping timeout"
        );
        assert_eq!(
            SessionEnd::Closed(CloseReason::WriteTimeout).to_string(),
            "closed: write timeout: the peer stopped reading"
        );
        assert_eq!(
            SessionEnd::Misbehaved("flood").to_string(),
            "banned for breaking the rule flood"
        );
    }
}
