//! `MempoolOptions`: the node operator's limits on the pool.
//!
//! None of these are consensus rules: they decide what this node keeps and relays, never
//! what a valid block may hold.

use powchain_consensus::FeeRate;

/// The default byte budget of the pool: 32 MiB of encoded transactions, a few minutes of
/// full blocks at the largest block size.
pub const DEFAULT_MAX_POOL_BYTES: usize = 32 * 1024 * 1024;

/// The default age after which a transaction leaves the pool unconfirmed: 24 hours. A
/// transaction no miner took in a day is unlikely to be taken; its sender can rebroadcast.
pub const DEFAULT_EXPIRY_MS: u64 = 24 * 60 * 60 * 1000;

/// The default lowest fee rate admitted: 1 base unit per byte. Without a floor, free
/// transactions would cost every relaying node bandwidth and memory for nothing.
pub const DEFAULT_MIN_FEE_RATE: FeeRate = FeeRate::from_units_per_byte(1);

/// The default largest number of pooled ancestors a transaction may have, itself included.
/// Bounds the work of every accept (aggregates of at most this many entries change) and
/// the depth of unconfirmed chains.
pub const DEFAULT_MAX_ANCESTORS: usize = 25;

/// The default largest number of pooled descendants a transaction may have, itself
/// included, when a transaction is admitted (Bitcoin Core's `-limitdescendantcount`).
/// With the ancestor limit, it bounds the work of removals, evictions and block
/// templates: without it one transaction could have 170,000 pooled descendants, each
/// walked and re-sorted when a block confirms any of their 24 ancestors. A
/// reorganisation's re-admissions may pass it ([`Mempool::readmit`](crate::Mempool::readmit)).
pub const DEFAULT_MAX_DESCENDANTS: usize = 25;

/// Limits on what the pool holds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MempoolOptions {
    /// The most encoded bytes of transactions the pool holds; past it, the lowest-paying
    /// packages are evicted.
    pub max_bytes: usize,
    /// How long a transaction may wait in the pool, in milliseconds.
    pub expiry_ms: u64,
    /// The lowest fee rate admitted.
    pub min_fee_rate: FeeRate,
    /// The most pooled ancestors a transaction may have, itself included.
    pub max_ancestors: usize,
    /// The most pooled descendants a transaction may have, itself included.
    pub max_descendants: usize,
}

impl Default for MempoolOptions {
    fn default() -> MempoolOptions {
        MempoolOptions {
            max_bytes: DEFAULT_MAX_POOL_BYTES,
            expiry_ms: DEFAULT_EXPIRY_MS,
            min_fee_rate: DEFAULT_MIN_FEE_RATE,
            max_ancestors: DEFAULT_MAX_ANCESTORS,
            max_descendants: DEFAULT_MAX_DESCENDANTS,
        }
    }
}
