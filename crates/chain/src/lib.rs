//! powchain's chain state: blocks, the block index, the UTXO set and the indexes the API
//! needs, on disk in redb, with the main chain always the most-work valid chain.
//!
//! ```text
//!   headers / blocks (any order) ──▶ ChainState ──▶ redb (one write transaction per step)
//!                                       │  └──────▶ ChainEvent (connected, disconnected, tip)
//!                                       ▼
//!                                   ChainReader ──▶ Snapshot (consistent reads for API, mempool)
//! ```
//!
//! Invariants:
//! - Only [`ChainState`] writes the store, and each connect or disconnect of a block is a
//!   single redb write transaction: UTXO set, undo data, indexes and tip change together.
//!   Each public call syncs its commits once before returning, so a process killed at any
//!   instant reopens at the end of a call that returned (or later), never inside a block.
//! - The main chain is the valid chain with the most work (ties: the first seen).
//! - A block that broke a rule is marked failed, with its descendants, and never
//!   validated again.
//! - Opening a store reads the block index, never replays blocks.

pub mod error;
pub mod event;
mod orphan;
pub mod reader;
pub mod state;
pub mod store;

pub use error::ChainError;
pub use event::ChainEvent;
pub use orphan::{MAX_ORPHAN_BLOCKS, MAX_ORPHAN_BYTES};
pub use reader::{ChainReader, ConsistencyReport, Snapshot, StoredTip};
pub use state::{
    BlockOutcome, ChainOptions, ChainState, ChainTip, DEFAULT_STORE_CACHE_BYTES,
    MAX_DEFERRED_SYNC_MS, StoreDurability,
};
pub use store::{AddressCoin, AddressTx, BlockStatus, IndexRecord, TxLocation};
