//! powchain's transaction pool: the valid, unconfirmed transactions this node keeps,
//! relays and offers to its miner.
//!
//! ```text
//!   peer / wallet / API ──tx──▶ Mempool::accept(tx, chain coins, next height, now)
//!                                 │  validate_transaction over PoolOverlay
//!                                 │  (chain coins + pooled outputs − pooled spends)
//!                                 ▼
//!   miner ◀── select_for_block ── Mempool ──▶ entries_by_fee_rate, unspent_pool_outputs
//!                                 ▲   │
//!   chain: block connected ──remove_for_block    expire(now) ──▶ removed txids
//!          reorg ──take_all, then re-accept
//! ```
//!
//! The pool is synchronous and does no I/O. The caller asks [`Mempool::coins_to_fetch`]
//! which confirmed coins a transaction needs, looks them up in the chain's UTXO set, and
//! passes them to [`Mempool::accept`] as a [`UtxoView`](powchain_consensus::UtxoView).
//!
//! Rules:
//! - **Validity.** A transaction is checked by
//!   [`validate_transaction`](powchain_consensus::validation::validate_transaction) as if
//!   it were in the next block. It may spend outputs of pooled transactions (chains of
//!   unconfirmed transactions); those count as non-coinbase coins at the next height.
//! - **No replacement.** An input already spent by a pooled transaction is a
//!   [`MempoolError::Conflict`] naming that transaction. The first spend the node sees
//!   stays until a block confirms it or a conflicting spend, or it expires or is evicted.
//!   (Replace-by-fee would need its own rules against free relay; powchain has none yet.)
//! - **Policy.** A fee rate of at least [`MempoolOptions::min_fee_rate`], at most
//!   [`MempoolOptions::max_ancestors`] pooled ancestors counting itself, none of which
//!   would pass [`MempoolOptions::max_descendants`] pooled descendants counting itself,
//!   no larger than the pool.
//! - **Bounded.** The pool holds at most [`MempoolOptions::max_bytes`] of encoded
//!   transactions. When a newcomer does not fit, the packages (a transaction with all its
//!   pooled descendants) with the lowest package fee rate are evicted while they pay a
//!   lower rate than the newcomer; otherwise the newcomer is refused with
//!   [`MempoolError::PoolFull`] and the pool is left as it was.
//! - **Order.** By ancestor-package fee rate, so a child paying a high fee lifts its
//!   parents (child-pays-for-parent); [`Mempool::select_for_block`] takes the best
//!   packages first, parents before children.
//! - **Leaving.** Confirmed transactions leave when their block connects, with every
//!   pooled transaction that conflicts with the block and the descendants of those;
//!   transactions older than [`MempoolOptions::expiry_ms`] expire with their descendants.
//!
//! **Invariant:** nothing outside the node's own rules empties the pool. There is no
//! public "clear": only [`Mempool::take_all`], which the node calls after a reorg to
//! re-admit everything, parents first, against the new chain.
//!
//! Modules: [`mempool`] (the pool), [`entry`] (entries and package totals), [`options`],
//! [`error`]; inside, `overlay` (the UTXO view validation sees), `lineage` (walking
//! parents and children), `selection` (the block-template algorithm).

pub mod entry;
pub mod error;
mod lineage;
pub mod mempool;
pub mod options;
mod overlay;
mod selection;

pub use entry::{PackageTotals, PoolEntry};
pub use error::MempoolError;
pub use mempool::{Accepted, Mempool};
pub use options::{
    DEFAULT_EXPIRY_MS, DEFAULT_MAX_ANCESTORS, DEFAULT_MAX_DESCENDANTS, DEFAULT_MAX_POOL_BYTES,
    DEFAULT_MIN_FEE_RATE, MempoolOptions,
};
