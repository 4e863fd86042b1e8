//! Low-work headers: a branch's headers are stored only while it could still overtake the
//! active chain.
//!
//! Storing a header costs memory and disk for as long as the node runs, and a header far
//! below the tip costs its sender almost nothing (the difficulty there may be that of
//! genesis). So a batch of headers is stored only if the chain it ends in has at least
//! [`ChainState::anti_dos_work_threshold`]: the active tip's work less
//! [`ANTI_DOS_BLOCKS`] blocks at the tip's difficulty (Bitcoin Core's
//! `GetAntiDoSWorkThreshold`, same 144 blocks). An honest branch that forks deeper than
//! one batch reaches (2,000 headers) is first counted without being stored ("pre-sync",
//! [`presync_work`]: each header's proof of work checked, nothing kept but the last hash
//! and the running total), then downloaded again and stored once its total passes the
//! threshold; the peer layer drives that (`crates/p2p/src/sync.rs`).
//!
//! ```text
//!   headers ──▶ chain work at the last one (parent's work + each header's own)
//!      ≥ tip work − 144 blocks' work ──▶ validate and store
//!      <  ────────────────────────────▶ nothing stored; a full batch is pre-synced
//! ```

use powchain_consensus::{BlockHash, ConsensusError, Header, Target, Work};

use crate::error::ChainError;
use crate::state::ChainState;

/// How many blocks' worth of work below the active tip a header chain may end and still be
/// stored.
pub const ANTI_DOS_BLOCKS: u64 = 144;

/// The work one header claims (its target's), or the rule its bits break.
fn claimed_work(header: &Header, pow_limit: Target) -> Result<Work, ChainError> {
    let hash = header.compute_hash();
    let bad_bits = || ChainError::Invalid {
        hash,
        error: ConsensusError::BadBits {
            got: header.bits,
            expected: pow_limit.to_compact_lossy(),
        },
    };
    let target = header.bits.to_target().map_err(|_| bad_bits())?;
    if target > pow_limit {
        return Err(bad_bits());
    }
    if !target.is_met_by(hash) {
        return Err(ChainError::Invalid {
            hash,
            error: ConsensusError::BadProofOfWork {
                hash,
                bits: header.bits,
            },
        });
    }
    Ok(target.to_work())
}

/// The work of the chain `headers` extends, from `start_work` at the block `prev`: each
/// header must build on the one before (the first on `prev`) and meet its own target.
/// Needs nothing stored, so it can count a branch that is not kept.
///
/// # Errors
/// [`ChainError::NotContinuous`] for a header that does not build on the one before;
/// [`ChainError::Invalid`] for a header whose hash misses its target or whose target is
/// easier than the network allows.
pub fn presync_work(
    prev: BlockHash,
    start_work: Work,
    headers: &[Header],
    pow_limit: Target,
) -> Result<Work, ChainError> {
    let mut expected = prev;
    let mut work = start_work;
    for header in headers {
        if header.prev_hash != expected {
            return Err(ChainError::NotContinuous {
                hash: header.compute_hash(),
                expected,
            });
        }
        work = work.saturating_add(claimed_work(header, pow_limit)?);
        expected = header.compute_hash();
    }
    Ok(work)
}

impl ChainState {
    /// The least work a header chain must end with to be stored: the active tip's work
    /// less [`ANTI_DOS_BLOCKS`] blocks at the tip's difficulty.
    pub fn anti_dos_work_threshold(&self) -> Work {
        let tip = self.tip();
        let per_block = tip
            .header
            .bits
            .to_target()
            .map_or(Work::ZERO, Target::to_work);
        per_block
            .to_u256()
            .checked_mul_u64(ANTI_DOS_BLOCKS)
            .and_then(|margin| tip.work.to_u256().checked_sub(margin))
            .map_or(Work::ZERO, Work::from_u256)
    }

    /// The work of the chain that ends in the last of `headers` (a batch from a peer,
    /// each building on the one before, the first on a known block), checked as
    /// [`presync_work`] checks. `None` if every header is already known (nothing new).
    ///
    /// A batch with a new header is counted whole even when it ends in a known one: new
    /// low-work headers followed by the genesis header must not pass for nothing new
    /// (`presync_work` refuses the broken link instead).
    ///
    /// # Errors
    /// [`ChainError::UnknownParent`] if the first header's parent is unknown; otherwise as
    /// [`presync_work`].
    pub fn headers_chain_work(&self, headers: &[Header]) -> Result<Option<Work>, ChainError> {
        let Some(first) = headers.first() else {
            return Ok(None);
        };
        if headers
            .iter()
            .all(|header| self.record(&header.compute_hash()).is_some())
        {
            return Ok(None);
        }
        let parent = self
            .record(&first.prev_hash)
            .ok_or(ChainError::UnknownParent {
                hash: first.compute_hash(),
                parent: first.prev_hash,
            })?;
        presync_work(
            first.prev_hash,
            parent.chain_work,
            headers,
            self.params().pow_limit_target(),
        )
        .map(Some)
    }
}
