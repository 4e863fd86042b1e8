//! Walking the graph of pooled transactions: parents (whose outputs an entry spends) and
//! children (that spend an entry's outputs).
//!
//! The graph is acyclic (a transaction can only spend outputs of transactions that exist
//! before it), so a walk ends; each walk visits an entry once however many paths lead to
//! it (diamonds are common: a child spending two outputs of one parent's two children).

use std::collections::{HashMap, HashSet};

use powchain_consensus::Txid;

use crate::entry::PoolEntry;

/// Which links a walk follows.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Direction {
    /// Towards ancestors.
    Parents,
    /// Towards descendants.
    Children,
}

/// Every pooled entry reachable from `start` (included) along `direction`, except those
/// `follow` refuses (the walk does not go through them either).
pub(crate) fn collect_related(
    entries: &HashMap<Txid, PoolEntry>,
    start: impl IntoIterator<Item = Txid>,
    direction: Direction,
    mut follow: impl FnMut(&Txid) -> bool,
) -> HashSet<Txid> {
    let mut found = HashSet::new();
    let mut pending: Vec<Txid> = start.into_iter().collect();
    while let Some(txid) = pending.pop() {
        if found.contains(&txid) || !follow(&txid) {
            continue;
        }
        let Some(entry) = entries.get(&txid) else {
            continue;
        };
        found.insert(txid);
        let links = match direction {
            Direction::Parents => &entry.parents,
            Direction::Children => &entry.children,
        };
        pending.extend(links.iter().filter(|linked| !found.contains(*linked)));
    }
    found
}

/// The pooled ancestors of `txid`, itself excluded.
pub(crate) fn ancestors_of(entries: &HashMap<Txid, PoolEntry>, txid: &Txid) -> HashSet<Txid> {
    let parents = entries
        .get(txid)
        .map(|entry| entry.parents.iter().copied().collect::<Vec<_>>())
        .unwrap_or_default();
    collect_related(entries, parents, Direction::Parents, |_| true)
}

/// The pooled descendants of `txid`, itself excluded.
pub(crate) fn descendants_of(entries: &HashMap<Txid, PoolEntry>, txid: &Txid) -> HashSet<Txid> {
    let children = entries
        .get(txid)
        .map(|entry| entry.children.iter().copied().collect::<Vec<_>>())
        .unwrap_or_default();
    collect_related(entries, children, Direction::Children, |_| true)
}
