//! How the node core sees its peer-to-peer layer: a trait the P2P crate implements, so
//! the API can list, add and remove peers and lift bans without depending on it.

/// A connected peer, as `GET /peers` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// Its address (`ws://host:port`, the listening address it announced when known).
    pub url: String,
    /// True if we dialled it.
    pub outbound: bool,
    /// The best height it announced or that we saw from it.
    pub best_height: u64,
    /// When the connection was established, in ms since the epoch.
    pub connected_since_ms: u64,
    /// Its lowest ping round trip in ms, once it answered a ping.
    pub ping_ms: Option<u64>,
}

/// The upload target's state (`GET /status`; `P2pConfig::max_upload_bytes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UploadStatus {
    /// The target, bytes a cycle of 24 hours.
    pub target_bytes: u64,
    /// Bytes sent to peers in this cycle.
    pub sent_bytes: u64,
    /// Milliseconds until the cycle ends.
    pub cycle_left_ms: u64,
    /// True once the target is reached: blocks more than a week older than the tip are
    /// not served until the cycle ends.
    pub reached: bool,
}

/// A session that ended, and why (`GET /peers/disconnected`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisconnectInfo {
    /// Its address, as [`PeerInfo::url`] showed it.
    pub url: String,
    /// True if we dialled it.
    pub outbound: bool,
    /// Why it ended ("banned for breaking the rule bad-proof-of-work", "ping timeout",
    /// "evicted: ...").
    pub reason: String,
    /// When it ended, ms since the epoch.
    pub at_ms: u64,
}

/// A ban in force (`GET /peers/banned`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BanInfo {
    /// Who: an address, or `localhost port N` for a local peer.
    pub peer: String,
    /// The rule it broke.
    pub rule: String,
    /// When the ban ends, ms since the epoch.
    pub until_ms: u64,
}

/// A peer the operator removed (`DELETE /peers/{url}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerRemoval {
    /// Its address, as the peer-to-peer layer writes it.
    pub url: String,
    /// Connections to it that were closed (0 if it was only being dialled or known).
    pub disconnected: usize,
}

/// Sync progress, for `GET /status` and the progress bar.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SyncProgress {
    /// Height of the best header known.
    pub best_header_height: u64,
    /// True while blocks are being downloaded towards it.
    pub syncing: bool,
}

/// Why a peer could not be added.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The address is not a usable peer address (the source says why).
    #[error("{0}")]
    InvalidAddress(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// No peer is connected at this address, and none is dialled or known there.
    #[error("no peer at {0} is connected, dialled or known")]
    UnknownPeer(String),
    /// No ban on this peer is in force.
    #[error("no ban on {0} is in force")]
    NotBanned(String),
    /// The peer-to-peer layer has stopped.
    #[error("the peer-to-peer layer has stopped")]
    Stopped,
}

/// The peer-to-peer layer, as the rest of the node uses it.
pub trait PeerManager: Send + Sync {
    /// The connected peers.
    fn peers(&self) -> Vec<PeerInfo>;
    /// Starts connecting to `url` (`ws://host:port`) and keeps reconnecting to it.
    ///
    /// # Errors
    /// [`PeerError`] if the address is unusable.
    fn add_peer(&self, url: &str) -> Result<(), PeerError>;
    /// Disconnects the peer at `url` and stops dialling it (until [`PeerManager::add_peer`]
    /// names it again).
    ///
    /// # Errors
    /// [`PeerError::InvalidAddress`], [`PeerError::UnknownPeer`].
    fn remove_peer(&self, url: &str) -> Result<PeerRemoval, PeerError>;
    /// Lifts the ban on `peer`, named as [`BanInfo::peer`] shows it.
    ///
    /// # Errors
    /// [`PeerError::InvalidAddress`] if `peer` names no peer, [`PeerError::NotBanned`].
    fn unban(&self, peer: &str) -> Result<(), PeerError>;
    /// Peers banned for misbehaviour, with the rule they broke and until when.
    fn banned(&self) -> Vec<BanInfo> {
        Vec::new()
    }
    /// The last sessions that ended, newest first, with why.
    fn disconnected(&self) -> Vec<DisconnectInfo> {
        Vec::new()
    }
    /// The upload target's state, if one is set.
    fn upload(&self) -> Option<UploadStatus> {
        None
    }
}
