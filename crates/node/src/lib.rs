//! powchain's node core: the chain state, the transaction pool, the wallet and the miner
//! behind one [`Node`] handle, with [`NodeEvent`]s for the HTTP API and the peer-to-peer
//! layer (which are adapters on this crate: they hold an `Arc<Node>`).
//!
//! ```text
//!   api ─┐                      ┌─▶ ChainState (powchain-chain) ──▶ redb
//!        ├─▶ Node ──────────────┼─▶ Mempool (powchain-mempool) ──▶ pool store (redb)
//!   p2p ─┘    │                 ├─▶ Wallet (powchain-wallet) ──▶ wallet.keys
//!             └─▶ NodeEvent     └─▶ miner (powchain-miner, OS threads)
//! ```
//!
//! Invariants: nothing here is async and nothing here touches a socket; the wall clock
//! is read only through [`Clock`].

pub mod address_group;
pub mod clock;
pub mod config;
mod data_dir;
pub mod error;
pub mod event;
pub mod faucet;
mod group_commit;
pub mod log_budget;
mod mining;
mod node;
mod parked;
pub mod peers;
mod pool;
mod pool_store;
mod reorg;
mod sync;
mod template;
#[cfg(test)]
mod testing;
mod wallet_history;
mod wallet_view;

pub use address_group::AddressGroup;
pub use clock::{Clock, SystemClock};
pub use config::NodeConfig;
pub use data_dir::{
    DirectoryLock, FileWriteError, PRIVATE_FILE_MODE, move_aside, replace_private_file,
};
pub use error::NodeError;
pub use event::NodeEvent;
pub use log_budget::{HeldBack, LogBudget};
pub use node::Node;
pub use peers::{
    BanInfo, DisconnectInfo, PeerError, PeerInfo, PeerManager, PeerRemoval, SyncProgress,
    UploadStatus,
};
pub use pool::{Admissions, PoolCursor};
/// The most mining threads a node runs (more are refused by the CLI, clamped here).
pub use powchain_miner::MAX_THREADS as MAX_MINER_THREADS;
pub use sync::{ChainSummary, PeerBlock, PeerHeaders, RelayedHeader};
pub use wallet_history::{
    MAX_WALLET_HISTORY_DEPTH, WalletHistoryError, WalletHistoryPage, WalletTransaction,
    WalletTxPlace,
};
pub use wallet_view::{SentPayment, WalletBalance};
