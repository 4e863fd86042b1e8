//! Choosing transactions for a block template: best-paying packages first, so a child can
//! pay for its parent (CPFP), parents always before their children.
//!
//! ```text
//!   heap of (ancestor-package rate, entry)          best first
//!     pop ─▶ stale or already taken? skip
//!         ─▶ package (entry + ancestors not yet taken) does not fit? skip
//!         ─▶ take the package, parents first
//!            └▶ each untaken descendant of a taken entry: its package shrinks,
//!               push it again with the new totals (the old heap item goes stale)
//! ```
//!
//! This is the greedy "ancestor score" algorithm of Bitcoin Core's block assembler. An
//! entry's ancestor totals change only when one of its ancestors is taken, and each entry
//! has at most `max_ancestors` ancestors, so with n entries and at most A ancestors each
//! the loop pushes at most n·A heap items: O(n·A·log n) time, O(n·A) memory.

use std::collections::{BinaryHeap, HashMap, HashSet};

use powchain_consensus::Txid;

use crate::entry::{PackageScore, PackageTotals, PoolEntry};
use crate::lineage::{Direction, collect_related, descendants_of};

/// Entries whose total encoded size is at most `max_bytes`, best ancestor-package fee rate
/// first, every entry after all of its pooled parents, none of `excluded` (which must hold
/// the pooled descendants of each of its members: an entry is taken only with all its
/// ancestors).
pub(crate) fn select_packages<'a>(
    entries: &'a HashMap<Txid, PoolEntry>,
    max_bytes: usize,
    excluded: &HashSet<Txid>,
) -> Vec<&'a PoolEntry> {
    let mut heap: BinaryHeap<PackageScore> = entries
        .values()
        .filter(|entry| !excluded.contains(&entry.txid))
        .map(PoolEntry::ancestor_score)
        .collect();
    // Ancestor totals minus the ancestors already taken, for entries that have lost some.
    let mut untaken_totals: HashMap<Txid, PackageTotals> = HashMap::new();
    let mut taken: HashSet<Txid> = HashSet::new();
    let mut taken_bytes = 0usize;
    let mut selected = Vec::new();

    while let Some(score) = heap.pop() {
        if taken_bytes >= max_bytes {
            break;
        }
        if taken.contains(&score.txid) {
            continue;
        }
        let Some(entry) = entries.get(&score.txid) else {
            continue;
        };
        let totals = untaken_totals
            .get(&score.txid)
            .copied()
            .unwrap_or(entry.ancestor_package);
        if totals.fee != score.fee || totals.size != score.size {
            // Pushed before one of its ancestors was taken; a fresher item is in the heap.
            continue;
        }
        if totals.size > max_bytes - taken_bytes {
            // A smaller package further down may still fit.
            continue;
        }
        let mut package: Vec<&PoolEntry> = collect_related(
            entries,
            entry.parents.iter().copied(),
            Direction::Parents,
            // An entry is taken only with all its ancestors, so the walk can stop at one.
            |txid| !taken.contains(txid),
        )
        .iter()
        .filter_map(|txid| entries.get(txid))
        .chain(std::iter::once(entry))
        .collect();
        package.sort_by_key(|member| member.sequence);
        debug_assert_eq!(
            package.iter().map(|member| member.size).sum::<usize>(),
            totals.size,
            "the untaken totals match the untaken ancestors"
        );

        for member in package {
            taken.insert(member.txid);
            taken_bytes += member.size;
            selected.push(member);
            let member_totals = PackageTotals::single(member.fee, member.size);
            for descendant_txid in descendants_of(entries, &member.txid) {
                if taken.contains(&descendant_txid) || excluded.contains(&descendant_txid) {
                    continue;
                }
                let Some(descendant) = entries.get(&descendant_txid) else {
                    continue;
                };
                let remaining = untaken_totals
                    .entry(descendant_txid)
                    .or_insert(descendant.ancestor_package);
                *remaining = remaining
                    .checked_sub(&member_totals)
                    .expect("an untaken descendant's totals include each untaken ancestor");
                heap.push(PackageScore::new(
                    remaining,
                    descendant.sequence,
                    descendant_txid,
                ));
            }
        }
    }
    selected
}
