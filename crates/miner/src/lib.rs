//! powchain's miner: assembles block templates and searches nonces on OS threads.
//!
//! ```text
//!   TemplateRequest (parent, bits, times, payout, note, pooled txs) ──build_template──▶ Block
//!   Block ──search(threads, stop flag, clock)──▶ Found block | Stopped
//!            each thread: HeaderHasher (midstate of the first 64 header bytes),
//!            its own nonce range, the time refreshed between chunks
//! ```
//!
//! Invariants: the search never runs on an async runtime's worker threads (it spawns its
//! own scoped OS threads and returns when they end); it checks the stop flag at least every
//! [`NONCES_PER_CHUNK`] hashes per thread, so a tip change stops it within milliseconds.

mod search;
mod template;

pub use search::{HashCounter, MAX_THREADS, NONCES_PER_CHUNK, SearchOutcome, search};
pub use template::{TemplateRequest, build_template, coinbase_size_estimate};
