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
//!   single redb write transaction: the block's undo data, its height and the tip change
//!   together. Each public call syncs its commits once before returning, so a process
//!   killed at any instant reopens at the end of a call that returned (or later), never
//!   inside a block.
//! - The coin tables and the per-transaction indexes (UTXO set, address index, transaction
//!   index, history) are complete at the recorded *flushed tip*, a main-chain block at or
//!   below the tip; the changes of the blocks above it are in the write-back coin cache,
//!   which every snapshot reads with the tables, and are written in one transaction when
//!   the cache is over its budget. Opening a store rebuilds the cache from those blocks'
//!   data and undo data: the UTXO set a reader sees always equals a rebuild from the main
//!   chain.
//! - The main chain is the valid chain with the most work (ties: the first seen).
//! - A block that broke a rule is marked failed, with its descendants, and never
//!   validated again.
//! - Opening a store reads the block index and re-applies only the unflushed blocks (at
//!   most the cache's block budget); it never replays the chain.

pub mod check;
pub mod error;
pub mod event;
mod index;
pub mod low_work;
mod memory_backend;
mod orphan;
mod overlay;
pub mod reader;
pub mod state;
pub mod store;
mod sync;

pub use error::ChainError;
pub use event::ChainEvent;
pub use low_work::{ANTI_DOS_BLOCKS, presync_work};
pub use orphan::{MAX_ORPHAN_BLOCKS, MAX_ORPHAN_BYTES};
pub use reader::{BlockSpends, BlockSummary, ChainReader, ConsistencyReport, Snapshot, StoredTip};
pub use state::{
    BlockOutcome, ChainOptions, ChainState, ChainTip, DEFAULT_COIN_CACHE_BLOCKS,
    DEFAULT_COIN_CACHE_BYTES, DEFAULT_STORE_CACHE_BYTES, MAX_DEFERRED_SYNC_MS, StoreDurability,
};
pub use store::{AddressCoin, AddressTx, BlockStatus, IndexRecord, TxLocation};
