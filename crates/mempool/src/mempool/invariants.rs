//! The pool's invariants, recomputed from scratch for tests: after every operation, the
//! indexes and package totals must say what a slow, obvious computation says.

use std::collections::HashSet;

use powchain_consensus::Txid;

use super::Mempool;
use crate::entry::PackageTotals;
use crate::lineage::{ancestors_of, descendants_of};

impl Mempool {
    /// Recomputes everything the indexes and totals claim and panics on any difference.
    pub(crate) fn assert_consistent(&self) {
        let mut total_bytes = 0;
        let mut spent_count = 0;
        for (txid, entry) in &self.entries {
            assert_eq!(*txid, entry.txid);
            assert_eq!(entry.transaction.compute_txid(), entry.txid);
            total_bytes += entry.size;
            for input in entry.transaction.spends() {
                spent_count += 1;
                assert_eq!(
                    self.spenders.get(&input.prevout),
                    Some(txid),
                    "spender index"
                );
                if let Some(parent) = self.entries.get(&input.prevout.txid) {
                    assert!(
                        (input.prevout.vout as usize) < parent.transaction.outputs.len(),
                        "a pooled input names an output its pooled parent has"
                    );
                }
            }
            assert_eq!(
                entry.parents,
                self.pooled_parents(&entry.transaction),
                "parents"
            );
            for parent_txid in &entry.parents {
                let parent = &self.entries[parent_txid];
                assert!(parent.children.contains(txid), "parent links back");
                assert!(parent.sequence < entry.sequence, "parents arrived first");
            }
            for child_txid in &entry.children {
                let child = self.entries.get(child_txid).expect("children are pooled");
                assert!(child.parents.contains(txid), "child links back");
            }
            let ancestors = ancestors_of(&self.entries, txid);
            let descendants = descendants_of(&self.entries, txid);
            let sum = |members: &HashSet<Txid>| {
                members.iter().fold(
                    PackageTotals::single(entry.fee, entry.size),
                    |totals, member| {
                        let member = &self.entries[member];
                        totals
                            .checked_add(&PackageTotals::single(member.fee, member.size))
                            .expect("test fees are small")
                    },
                )
            };
            assert_eq!(entry.ancestor_package, sum(&ancestors), "ancestor totals");
            assert_eq!(
                entry.descendant_package,
                sum(&descendants),
                "descendant totals"
            );
            assert!(ancestors.len() < self.options.max_ancestors.max(1));
            assert_eq!(self.arrival_order.get(&entry.sequence), Some(txid));
            assert!(
                self.entry_times
                    .contains(&(entry.time_ms, entry.sequence, *txid))
            );
            assert!(self.eviction_order.contains(&entry.descendant_score()));
            assert!(self.listing_order.contains(&entry.ancestor_score()));
        }
        assert_eq!(self.total_bytes, total_bytes, "total bytes");
        assert!(self.total_bytes <= self.options.max_bytes, "within budget");
        assert_eq!(self.spenders.len(), spent_count, "no stale spenders");
        assert_eq!(self.arrival_order.len(), self.entries.len());
        assert_eq!(self.entry_times.len(), self.entries.len());
        assert_eq!(self.eviction_order.len(), self.entries.len());
        assert_eq!(self.listing_order.len(), self.entries.len());
    }
}
