//! powchain's peer-to-peer layer: nodes find each other through `PEERS` and `P2P_PORT`
//! (`ws://host:port`, as in the tutorial) and keep one chain.
//!
//! ```text
//!   P2p::start ──▶ listener ──▶ session per peer (peer.rs) ──▶ Node (blocks, headers, txs)
//!              └─▶ dialers (PEERS, learned addresses; reconnect with backoff)
//!              └─▶ relay: NodeEvent ──▶ Inventory to peers that lack the item
//!              └─▶ sync: headers first, then blocks from several peers in windows
//! ```
//!
//! Invariants: a message is size-checked by the WebSocket layer before it is read and
//! decoded with hard limits; a peer that sends invalid data, malformed or oversized
//! messages, or floods is banned and disconnected with the rule logged; invalid data is
//! never stored or relayed (the node validates before anything is announced). The protocol
//! is documented in `docs/PROTOCOL.md`.

pub mod ban;
pub mod config;
mod manager;
pub mod message;
mod peer;
pub mod url;

pub use config::P2pConfig;
pub use manager::P2p;
pub use message::{
    Hello, InventoryItem, InventoryKind, MAX_MESSAGE_BYTES, Message, MessageError, PROTOCOL_VERSION,
};
pub use peer::SessionEnd;
pub use url::PeerUrl;
