//! powchain's peer-to-peer layer: nodes find each other through `PEERS` and `P2P_PORT`
//! (`ws://host:port`, as in the tutorial) and keep one chain.
//!
//! ```text
//!   P2p::start (service.rs)
//!     ├─▶ outbound.rs: free outbound slots filled from address_book.rs, every second
//!     ├─▶ connection.rs: accept loop, dialers (PEERS with backoff; a learned address once)
//!     │     │   pending.rs: connections before hello, capped in total and per group
//!     │     │   read_budget.rs: a few KiB may be read before hello
//!     │     │   stranger.rs: no binary hello first? a close frame with the reason
//!     │     └─▶ handshake.rs: hello ⇄ hello, one deadline ──▶ registry.rs: one entry
//!     │           per peer; inbound capped per address group (address_group.rs),
//!     │           the least useful inbound peer evicted when full (eviction.rs)
//!     │           └─▶ session.rs: one task per peer, message dispatch, pings
//!     │                 ├─▶ sync.rs: headers first, then blocks ──▶ Node
//!     │                 ├─▶ inventory.rs: inv, get_data; transaction_fetch.rs: tx
//!     │                 └─▶ addr ──▶ address_book.rs; session_end.rs: how it ends
//!     ├─▶ relay.rs: NodeEvent ──▶ announcements to peers that lack the item
//!     │     transaction_requests.rs: one peer asked per transaction; the next
//!     │     announcer asked on notfound, departure or timeout
//!     ├─▶ compact.rs: new blocks pushed as compact blocks, rebuilt from the pool
//!     │     short_id.rs: SipHash-2-4 short transaction ids
//!     └─▶ download.rs: missing blocks ──▶ getdata to the peers that hold them
//!   message.rs: the wire format and its limits (MAX_MESSAGE_BYTES, MAX_HEADERS, ...)
//!   ban.rs: who is refused, for which rule, until when
//!   traffic.rs: messages and bytes by type, sent and received
//!   console.rs: the lines a person follows at `info` (peers, blocks, syncs), rate-limited
//!   transport.rs: what it runs on (TCP or a simulated network, randomness, node calls)
//! ```
//!
//! Invariants: a message is size-checked by the WebSocket layer before it is read and
//! decoded with hard limits; a peer that sends invalid data, malformed or oversized
//! messages, or floods is banned and disconnected with the rule logged; invalid data is
//! never stored or relayed (the node validates before anything is announced). The layer
//! reaches the chain only through `Node`'s methods. The protocol is documented in
//! `docs/PROTOCOL.md`.

mod address_book;
pub mod address_group;
pub mod ban;
mod compact;
pub mod config;
mod connection;
mod console;
mod download;
mod eviction;
mod handshake;
mod inventory;
pub mod message;
mod outbound;
mod outbox;
pub mod pending;
mod rate_limit;
mod read_budget;
mod registry;
mod relay;
mod rolling_set;
mod service;
mod session;
mod session_end;
mod short_id;
mod stranger;
mod sync;
mod traffic;
mod transaction_fetch;
mod transaction_requests;
pub mod transport;
mod upload;
pub mod url;

pub use address_book::{
    MAX_ADDRESSES_PER_SOURCE, MAX_ANCHORS, MAX_KNOWN_ADDRESSES, MAX_LEARNED_DIALS, OWN_SOURCE,
    SavedAddress, SavedAddresses,
};
pub use config::P2pConfig;
pub use download::PushWaits;
pub use message::{
    CompactBlock, Hello, InventoryItem, MAX_COMPACT_TRANSACTIONS, MAX_INVENTORY, MAX_MESSAGE_BYTES,
    Message, MessageError, PROTOCOL_VERSION, PrefilledTransaction,
};
pub use service::P2p;
pub use session_end::{CloseReason, HandshakeFailure, SessionEnd};
pub use traffic::MessageTraffic;
pub use transaction_requests::MAX_ANNOUNCED_PER_PEER;
pub use transport::{
    BoxedStream, Environment, Listener, NodeCalls, PeerStream, Randomness, Tcp, Transport,
    ValidationDelay,
};
pub use upload::{HISTORICAL_BLOCK_AGE_MS, UPLOAD_CYCLE};
pub use url::{PeerUrl, PeerUrlError, PeerUrlProblem};
