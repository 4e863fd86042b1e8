//! Eviction: making room in a full pool for a better-paying newcomer.
//!
//! ```text
//!   bid = the newcomer's rate, or its package's with its pooled ancestors if lower
//!   while the newcomer does not fit:
//!     lowest descendant-package score that is not the newcomer's ancestor
//!       pays at least the pool's minimum rate a byte less than the bid?
//!         ─yes─▶ evict it with its descendants, look again
//!         ─no──▶ put back everything evicted, PoolFull
//! ```
//!
//! The increment (the pool's minimum fee rate, as Bitcoin Core's `-incrementalrelayfee`
//! defaults to its `-minrelaytxfee`) makes room cost something: without it, one unit of
//! fee more than the lowest package bought its place, so a stranger holding a few coins
//! could evict its own payment with a new one, and that one with the first again plus a
//! unit, for ever, each a new transaction every node validates and relays, none of them
//! ever mined. Now each such round costs the increment on every byte again.
//!
//! A package is a transaction with all its pooled descendants: evicting a parent without
//! its children would leave them spending outputs that no longer exist. Pricing by the
//! descendant package means a low-fee parent whose child pays well is protected by the
//! child, and a low-fee child of a well-paying parent goes alone. Each step is a lookup
//! in `eviction_order` (O(log n), skipping at most `max_ancestors` ancestors) plus the
//! removal of the package; the pool is never scanned.

use std::cmp::Ordering;
use std::collections::HashSet;

use powchain_consensus::{FeeRate, Txid};
use tracing::debug;

use super::Mempool;
use crate::entry::{PackageScore, PackageTotals, PoolEntry};
use crate::error::MempoolError;

impl Mempool {
    /// The rate a newcomer with `own` totals and pooled `ancestors` bids for room: its own,
    /// or that of the package it joins (itself and its ancestors) if that pays less. Its
    /// ancestors cannot be evicted for it, so bidding its own rate alone would let a
    /// well-paying child of a large parent paying almost nothing push out a package that
    /// pays more than the two together: the pool would then hold less fee for its bytes
    /// (Bitcoin Core's trim, which prices the child within its parent's package, would
    /// evict the pair instead).
    pub(super) fn bid_for_room(
        &self,
        own: &PackageTotals,
        ancestors: &HashSet<Txid>,
    ) -> PackageTotals {
        let joined = ancestors
            .iter()
            .filter_map(|ancestor| self.entries.get(ancestor))
            .try_fold(*own, |totals, entry| {
                totals.checked_add(&PackageTotals::single(entry.fee, entry.size))
            });
        match joined {
            Some(joined)
                if PackageScore::compare_rate(joined.fee, joined.size, own.fee, own.size)
                    == Ordering::Less =>
            {
                joined
            }
            _ => *own,
        }
    }

    /// The first step of [`Mempool::make_room`] without changing anything: refuses with
    /// [`MempoolError::PoolFull`] if `incoming` does not fit and the first package that
    /// would have to go does not pay less than its `bid`.
    pub(super) fn check_room_can_be_made(
        &self,
        incoming: &PackageScore,
        bid: &PackageTotals,
        ancestors: &HashSet<Txid>,
        increment: FeeRate,
    ) -> Result<(), MempoolError> {
        if self.total_bytes + incoming.size <= self.options.max_bytes {
            return Ok(());
        }
        let candidate = self.lowest_evictable(ancestors);
        if candidate.is_some_and(|candidate| outbids(bid, &candidate, increment)) {
            Ok(())
        } else {
            Err(self.pool_full_error(bid, candidate, increment))
        }
    }

    /// The package eviction would take first: the lowest descendant-package score whose
    /// entry is not an ancestor of the newcomer (evicting one would orphan it).
    fn lowest_evictable(&self, ancestors: &HashSet<Txid>) -> Option<PackageScore> {
        self.eviction_order
            .iter()
            .find(|score| !ancestors.contains(&score.txid))
            .copied()
    }

    /// The refusal of a newcomer that bid `bid`, naming the rate of `candidate`, the
    /// package that would have had to go.
    fn pool_full_error(
        &self,
        bid: &PackageTotals,
        candidate: Option<PackageScore>,
        increment: FeeRate,
    ) -> MempoolError {
        // Without a candidate, everything left is an ancestor of the newcomer; the
        // cheapest of those is what would have to go.
        let lowest = candidate
            .or_else(|| self.eviction_order.first().copied())
            .map_or(FeeRate::ZERO, |score| score.fee_rate());
        MempoolError::PoolFull {
            fee_rate: bid.fee_rate(),
            lowest,
            needed: FeeRate::from_units_per_kilobyte(
                lowest
                    .to_units_per_kilobyte()
                    .saturating_add(increment.to_units_per_kilobyte()),
            ),
        }
    }

    /// Evicts the lowest-paying descendant packages until `incoming` fits, as long as each
    /// pays a lower rate than its `bid` ([`Mempool::bid_for_room`]) by `increment` at
    /// least. If one that must go
    /// does not, puts everything back and refuses with [`MempoolError::PoolFull`].
    ///
    /// Removing a package lowers its ancestors' descendant totals and so moves them in
    /// `eviction_order`; evicting for real, one package at a time, and undoing on refusal
    /// keeps every choice made on the pool as it then is.
    pub(super) fn make_room(
        &mut self,
        incoming: &PackageScore,
        bid: &PackageTotals,
        ancestors: &HashSet<Txid>,
        increment: FeeRate,
    ) -> Result<Vec<Txid>, MempoolError> {
        let mut evicted: Vec<PoolEntry> = Vec::new();
        while self.total_bytes + incoming.size > self.options.max_bytes {
            let candidate = self.lowest_evictable(ancestors);
            match candidate {
                Some(candidate) if outbids(bid, &candidate, increment) => {
                    let package = self.with_descendants([candidate.txid]);
                    evicted.extend(self.remove_entries(&package));
                }
                _ => {
                    let error = self.pool_full_error(bid, candidate, increment);
                    evicted.sort_by_key(|entry| entry.sequence);
                    for entry in evicted {
                        self.link_entry(entry);
                    }
                    return Err(error);
                }
            }
        }
        evicted.sort_by_key(|entry| entry.sequence);
        if !evicted.is_empty() {
            debug!(
                evicted = evicted.len(),
                for_txid = %incoming.txid,
                "pool full: evicted the lowest-paying packages"
            );
        }
        Ok(evicted.into_iter().map(|entry| entry.txid).collect())
    }
}

/// True if `bid` pays at least `increment` a byte more than `candidate`'s package
/// (exactly, and strictly more with no increment): a newcomer's increment is the pool's
/// minimum fee rate (see the module documentation), a returning transaction's none.
fn outbids(bid: &PackageTotals, candidate: &PackageScore, increment: FeeRate) -> bool {
    // The candidate's fee raised by the increment on its bytes (rounded up); past the
    // money range, nothing outbids it.
    let Some(raised) = increment
        .fee_for(candidate.size)
        .and_then(|extra| candidate.fee.checked_add(extra))
    else {
        return false;
    };
    match PackageScore::compare_rate(raised, candidate.size, bid.fee, bid.size) {
        Ordering::Less => true,
        Ordering::Equal => increment > FeeRate::ZERO,
        Ordering::Greater => false,
    }
}
