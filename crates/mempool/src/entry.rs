//! `PoolEntry`: a pooled transaction with its fee, size and the totals of its package.
//!
//! A transaction's *ancestor package* is itself plus every pooled transaction it depends
//! on; its *descendant package* is itself plus every pooled transaction that depends on it.
//! The pool keeps both totals up to date on every accept and removal, so that ordering
//! (child-pays-for-parent) and eviction never walk the pool to price a package.
//!
//! ```text
//!        A          ancestor package of C:   {A, B, C}
//!        │          descendant package of A: {A, B, C, D}
//!        B
//!       ╱ ╲
//!      C   D
//! ```

use std::cmp::Ordering;
use std::collections::HashSet;

use powchain_consensus::{Amount, FeeRate, Transaction, Txid};

/// The count, fees and encoded size of a set of pooled transactions.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PackageTotals {
    /// How many transactions.
    pub count: usize,
    /// Their fees summed.
    pub fee: Amount,
    /// Their encoded sizes summed, in bytes.
    pub size: usize,
}

impl PackageTotals {
    /// The totals of one transaction.
    pub fn single(fee: Amount, size: usize) -> PackageTotals {
        PackageTotals {
            count: 1,
            fee,
            size,
        }
    }

    /// What the package pays per byte, rounded down.
    pub fn fee_rate(&self) -> FeeRate {
        FeeRate::from_fee_and_size(self.fee, self.size)
    }

    /// These totals with `other`'s added; `None` if the fees leave the money range.
    pub fn checked_add(&self, other: &PackageTotals) -> Option<PackageTotals> {
        Some(PackageTotals {
            count: self.count + other.count,
            fee: self.fee.checked_add(other.fee)?,
            size: self.size + other.size,
        })
    }

    /// These totals with `other`'s taken out; `None` if `other` is not part of them.
    pub fn checked_sub(&self, other: &PackageTotals) -> Option<PackageTotals> {
        Some(PackageTotals {
            count: self.count.checked_sub(other.count)?,
            fee: self.fee.checked_sub(other.fee)?,
            size: self.size.checked_sub(other.size)?,
        })
    }
}

/// A transaction in the pool.
///
/// Only the pool builds entries; callers see them by reference.
#[derive(Clone, Debug)]
pub struct PoolEntry {
    /// The transaction.
    pub transaction: Transaction,
    /// Its txid.
    pub txid: Txid,
    /// Inputs minus outputs.
    pub fee: Amount,
    /// Encoded size in bytes.
    pub size: usize,
    /// `fee` per byte of `size`, rounded down.
    pub fee_rate: FeeRate,
    /// When it entered the pool, on the caller's clock.
    pub time_ms: u64,
    /// Totals of the transaction and all its pooled ancestors: what a miner must include
    /// to include it.
    pub ancestor_package: PackageTotals,
    /// Totals of the transaction and all its pooled descendants: what leaves the pool if
    /// it is evicted.
    pub descendant_package: PackageTotals,
    /// Pooled transactions whose outputs this one spends.
    pub(crate) parents: HashSet<Txid>,
    /// Pooled transactions that spend outputs of this one.
    pub(crate) children: HashSet<Txid>,
    /// Arrival number, unique in the pool. A parent always arrived before its children,
    /// so ordering by it is a topological order.
    pub(crate) sequence: u64,
}

impl PoolEntry {
    /// The rate of the ancestor package: what including this transaction in a block
    /// earns per byte, parents included (the child-pays-for-parent rate).
    pub fn ancestor_fee_rate(&self) -> FeeRate {
        self.ancestor_package.fee_rate()
    }

    /// The rate of the descendant package: what evicting this transaction gives up per
    /// byte freed.
    pub fn descendant_fee_rate(&self) -> FeeRate {
        self.descendant_package.fee_rate()
    }

    /// Pooled transactions whose outputs this one spends.
    pub fn parents(&self) -> impl Iterator<Item = &Txid> {
        self.parents.iter()
    }

    /// Pooled transactions that spend outputs of this one.
    pub fn children(&self) -> impl Iterator<Item = &Txid> {
        self.children.iter()
    }

    /// The entry's rank among packages by the rate of its ancestor package.
    pub(crate) fn ancestor_score(&self) -> PackageScore {
        PackageScore::new(&self.ancestor_package, self.sequence, self.txid)
    }

    /// The entry's rank among packages by the rate of its descendant package.
    pub(crate) fn descendant_score(&self) -> PackageScore {
        PackageScore::new(&self.descendant_package, self.sequence, self.txid)
    }
}

/// A package's rank: a higher exact fee rate ranks higher, and at equal rates the earlier
/// arrival ranks higher (it has waited longer, and keeps orders stable).
///
/// Rates are compared exactly, `fee_a / size_a` against `fee_b / size_b` by
/// cross-multiplying, not as rounded [`FeeRate`]s, so a package paying a fraction more
/// never ties with one paying less.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PackageScore {
    /// The package's fees.
    pub(crate) fee: Amount,
    /// The package's encoded size.
    pub(crate) size: usize,
    /// The arrival number of the entry the package is named after.
    pub(crate) sequence: u64,
    /// The txid of that entry.
    pub(crate) txid: Txid,
}

impl PackageScore {
    pub(crate) fn new(totals: &PackageTotals, sequence: u64, txid: Txid) -> PackageScore {
        PackageScore {
            fee: totals.fee,
            size: totals.size,
            sequence,
            txid,
        }
    }

    /// The package's rate, rounded down, for messages.
    pub(crate) fn fee_rate(&self) -> FeeRate {
        FeeRate::from_fee_and_size(self.fee, self.size)
    }

    /// Compares the exact rates `fee / size` of two packages.
    pub(crate) fn compare_rate(
        fee: Amount,
        size: usize,
        other_fee: Amount,
        other_size: usize,
    ) -> Ordering {
        // Amounts are below 2^51 and sizes below 2^64: the products fit in u128.
        let left = u128::from(fee.to_units()) * other_size as u128;
        let right = u128::from(other_fee.to_units()) * size as u128;
        left.cmp(&right)
    }
}

impl Ord for PackageScore {
    fn cmp(&self, other: &PackageScore) -> Ordering {
        PackageScore::compare_rate(self.fee, self.size, other.fee, other.size)
            .then_with(|| other.sequence.cmp(&self.sequence))
    }
}

impl PartialOrd for PackageScore {
    fn partial_cmp(&self, other: &PackageScore) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

// Equality follows the order: the pool holds one score per entry and sequences are unique,
// so two scores are equal only if they name the same entry at the same totals.
impl PartialEq for PackageScore {
    fn eq(&self, other: &PackageScore) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for PackageScore {}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(units: u64, size: usize, sequence: u64) -> PackageScore {
        let totals = PackageTotals::single(Amount::from_units(units).expect("in range"), size);
        PackageScore::new(&totals, sequence, Txid([sequence as u8; 32]))
    }

    #[test]
    fn scores_order_by_exact_rate_then_earlier_arrival() {
        // Both round down to 999 units per kilobyte; compared exactly, 1000/1001 is more.
        let (higher, lower) = (score(1000, 1001, 1), score(999, 1000, 0));
        assert_eq!(higher.fee_rate(), lower.fee_rate());
        assert!(higher > lower);
        assert!(score(2, 3, 5) > score(1, 2, 0), "2/3 beats 1/2");
        assert!(
            score(1, 2, 0) > score(2, 4, 1),
            "equal rates: earlier ranks higher"
        );
        assert_eq!(score(1, 2, 7), score(2, 4, 7));
    }
}
