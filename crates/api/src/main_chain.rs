//! The main chain as handlers read it from one [`Snapshot`]: the tip's height, the block at
//! a height, a block's index record and data, and how many confirmations a block has.
//!
//! A snapshot is consistent, so a main-chain height without a hash, or a main-chain block
//! without its record or data, is a bug or a damaged store: a 500 naming what is missing.
//! What a client asked for and the chain does not have (an unknown hash, a height above the
//! tip) is the handler's 404, not these functions'.

use powchain_chain::{IndexRecord, Snapshot};
use powchain_consensus::{Block, BlockHash, BlockHeight};

use crate::error::ApiError;

/// The height of the snapshot's tip.
///
/// # Errors
/// The store's read error.
pub(crate) fn tip_height(snapshot: &Snapshot) -> Result<BlockHeight, ApiError> {
    Ok(snapshot.tip()?.record.height)
}

/// The hash of the main-chain block at `height`, at or below the tip.
///
/// # Errors
/// A 500 if the main chain has no block there.
pub(crate) fn main_chain_hash(
    snapshot: &Snapshot,
    height: BlockHeight,
) -> Result<BlockHash, ApiError> {
    snapshot
        .hash_at(height)?
        .ok_or_else(|| ApiError::internal(format!("no block at main-chain height {height}")))
}

/// The index record of a block the snapshot knows.
///
/// # Errors
/// A 500 if the block index has no record of it.
pub(crate) fn indexed_record(
    snapshot: &Snapshot,
    hash: &BlockHash,
) -> Result<IndexRecord, ApiError> {
    snapshot
        .index_record(hash)?
        .ok_or_else(|| ApiError::internal(format!("block {hash} is not indexed")))
}

/// The data of a block the snapshot has stored (every main-chain block's).
///
/// # Errors
/// A 500 if the block's data is missing.
pub(crate) fn stored_block(snapshot: &Snapshot, hash: &BlockHash) -> Result<Block, ApiError> {
    snapshot
        .block(hash)?
        .ok_or_else(|| ApiError::internal(format!("block {hash} has no data")))
}

/// Confirmations of the main-chain block at `height` when the tip is at `tip`: the blocks
/// on top of it plus one (1 for the tip itself).
pub(crate) fn confirmations(tip: BlockHeight, height: BlockHeight) -> u64 {
    tip.0.saturating_sub(height.0) + 1
}
