//! `P2pConfig`: limits and timings of the peer-to-peer layer.

use std::net::SocketAddr;
use std::time::Duration;

use crate::address_book::SavedAddresses;
pub use crate::relay::TRANSACTION_ANNOUNCEMENT_INTERVAL;
use crate::url::PeerUrl;

/// How long a new block announced by a peer that does not push to us waits for a push
/// (`P2pConfig::push_wait`). Measured in the simulation (`docs/SIMULATION.md`, "Waiting
/// briefly for a push"): at 30 nodes on WAN latencies, 50 ms brings 14-19% fewer compact
/// blocks and propagates as fast or faster, since the peers that push to a node stop
/// changing with every block.
pub const PUSH_WAIT: Duration = Duration::from_millis(50);

/// Peers asked to push new blocks at once (`P2pConfig::high_bandwidth_peers`): BIP-152
/// allows up to 3, and Bitcoin Core asks 3.
pub const HIGH_BANDWIDTH_PEERS: usize = 3;

/// Pooled transactions offered to a peer at its handshake (`P2pConfig::max_pool_offered`):
/// 30,000 of the 55,000 announcements a powchain peer keeps from one peer (5,000 asked for,
/// 50,000 deferred), leaving room for what is relayed while the offer is fetched. Before
/// this bound a handshake offered the whole pool (170,000 ids of a full one) from one copy
/// of its ids, held until sent.
pub const MAX_POOL_OFFERED: usize = crate::transaction_requests::MAX_ANNOUNCED_PER_PEER
    + crate::transaction_requests::MAX_DEFERRED_PER_PEER / 2;

/// Settings of the peer-to-peer layer.
#[derive(Clone, Debug)]
pub struct P2pConfig {
    /// Where to accept peers (`None`: outbound only).
    pub listen: Option<SocketAddr>,
    /// Peers to keep connecting to, the tutorial's `PEERS`.
    pub peers: Vec<PeerUrl>,
    /// Most inbound connections (when all are taken, the least useful inbound peer is
    /// evicted for a newcomer: `eviction.rs`).
    pub max_inbound: usize,
    /// Most inbound connections from one address group (`address_group.rs`; connections
    /// from `127.0.0.1` and `::1` are not limited by it).
    pub max_inbound_per_group: usize,
    /// Most connections in their handshake (accepted, no `hello` yet) at once.
    pub max_pending: usize,
    /// Most connections in their handshake from one address group.
    pub max_pending_per_group: usize,
    /// Most learned addresses dialled at once, connected or still connecting: the
    /// outbound slots the address book fills (`outbound.rs`). Configured peers are
    /// dialled apart and always, as Bitcoin Core's `-addnode` peers are, and take none.
    pub max_outbound: usize,
    /// How long a peer that broke a rule stays banned.
    pub ban_duration: Duration,
    /// Time between pings.
    pub ping_interval: Duration,
    /// A peer that does not answer a ping within this time is dropped.
    pub ping_timeout: Duration,
    /// Time allowed for the TCP connect (outbound), the WebSocket upgrade and the `hello`s,
    /// all together: one deadline from the moment a connection is accepted or dialled.
    pub handshake_timeout: Duration,
    /// Longest wait between reconnection attempts (10 s: after a network split heals, the
    /// halves find each other again within seconds; `docs/SIMULATION.md` measured 21 s
    /// with 30 s and 1.8 s with 10 s. A dial that fails costs the peer a refused TCP
    /// handshake).
    pub max_backoff: Duration,
    /// A block asked for and not delivered within this time is asked of another peer.
    pub block_timeout: Duration,
    /// A transaction asked for and not delivered within this time is asked of another peer
    /// that announced it (`transaction_requests.rs`).
    pub transaction_timeout: Duration,
    /// Relay new blocks as compact blocks (BIP-152, `compact.rs`): ask three peers to
    /// push them, push ours to peers that ask. Off, blocks go by `inv` and `getdata`
    /// only, as before compact relay (a simulation compares the two).
    pub compact_blocks: bool,
    /// Peers asked to push new blocks at once (BIP-152's high-bandwidth mode; it allows
    /// up to 3, Bitcoin Core asks 3). Each costs a redundant compact block now and then;
    /// fewer save bytes and give up some speed (`docs/SIMULATION.md` measures both).
    pub high_bandwidth_peers: usize,
    /// How long a new block announced by a peer that does not push to us waits before we
    /// ask that peer for it, while a peer that does push has not shown it to us yet: the
    /// push is usually on its way, and asking too brings the block twice ([`PUSH_WAIT`]).
    /// Zero asks at once, as Bitcoin Core does.
    pub push_wait: Duration,
    /// Transaction announcements leave to a peer at most once per this interval, each
    /// `inv` carrying all that gathered meanwhile (blocks are never held back; see
    /// `relay.rs`).
    pub transaction_announcement_interval: Duration,
    /// The most pooled transactions offered to a peer at its handshake, oldest first
    /// (parents before children; [`MAX_POOL_OFFERED`]). The relay announces only what is
    /// admitted after the handshake, so a larger pool's newer transactions reach the peer
    /// in blocks, or in another peer's offer.
    pub max_pool_offered: usize,
    /// Bytes sent to peers a day past which blocks more than a week older than the tip are
    /// no longer served (Bitcoin Core's `-maxuploadtarget`; `upload.rs`). None: no target.
    pub max_upload_bytes: Option<u64>,
    /// The address book of the last run ([`crate::P2p::saved_addresses`], kept by the
    /// launcher in `peers.json`): its addresses are learned ones again, from the sources
    /// that told them, and its anchors are dialled first. Empty: the book starts from
    /// `peers` alone. Taken out at the start (the layer's copy of its config holds none).
    pub saved_addresses: SavedAddresses,
}

impl Default for P2pConfig {
    fn default() -> P2pConfig {
        P2pConfig {
            listen: None,
            peers: Vec::new(),
            max_inbound: 32,
            max_inbound_per_group: 8,
            max_pending: 64,
            max_pending_per_group: 8,
            max_outbound: 8,
            ban_duration: Duration::from_secs(600),
            ping_interval: Duration::from_secs(15),
            ping_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            max_backoff: Duration::from_secs(10),
            block_timeout: Duration::from_secs(20),
            transaction_timeout: Duration::from_secs(30),
            compact_blocks: true,
            high_bandwidth_peers: HIGH_BANDWIDTH_PEERS,
            push_wait: PUSH_WAIT,
            transaction_announcement_interval: TRANSACTION_ANNOUNCEMENT_INTERVAL,
            max_pool_offered: MAX_POOL_OFFERED,
            max_upload_bytes: None,
            saved_addresses: SavedAddresses::default(),
        }
    }
}
