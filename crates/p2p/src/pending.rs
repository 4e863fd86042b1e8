//! Pending connections: accepted, not yet through the protocol handshake.
//!
//! A connection holds a file and memory before it has said who it is, so pending
//! connections are counted and capped, in total and per address group; one that does not
//! finish its handshake by the deadline is closed (`handshake.rs`), and until its `hello`
//! it may send only [`PRE_HELLO_BYTES`] (`read_budget.rs`). Bitcoin Core has no pending
//! state to cap (its version message rides on the raw socket); its nearest rule is the
//! 60 s handshake timeout.
//!
//! ```text
//!   accept ──try_begin(group)──▶ PendingSlot (held through the handshake) ──drop──▶ freed
//!              ├─ the group holds its share ──▶ closed at once
//!              └─ all slots taken ──▶ the oldest pending connection of the most crowded
//!                 groups (this machine's own excepted) is told to close and the newcomer
//!                 takes its slot, if they hold at least two more than the newcomer's
//!                 group, or one each against its none; else it is closed instead
//! ```
//!
//! So strangers who keep every slot busy from many groups, even one from each, still
//! cannot keep out a peer from a group of its own, and two groups of near equal size do
//! not evict each other back and forth.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio_util::sync::CancellationToken;

use crate::address_group::AddressGroup;

/// Bytes a peer may send before its `hello` has been read: the WebSocket upgrade request
/// and the hello itself need well under 2 KiB.
pub const PRE_HELLO_BYTES: usize = 16 * 1024;

/// Why a connection was not admitted to the handshake.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum PendingRefusal {
    /// All pending slots are taken.
    #[error("{0} connections are already in their handshake")]
    Full(usize),
    /// The address group holds its share of pending slots.
    #[error("{0} connections from this address group are already in their handshake")]
    GroupFull(usize),
}

#[derive(Default)]
struct Counts {
    by_group: HashMap<AddressGroup, usize>,
    /// Every pending connection, oldest first.
    open: BTreeMap<u64, (AddressGroup, CancellationToken)>,
    next: u64,
}

impl Counts {
    fn remove(&mut self, sequence: u64) -> Option<(AddressGroup, CancellationToken)> {
        let (group, token) = self.open.remove(&sequence)?;
        if let Some(count) = self.by_group.get_mut(&group) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.by_group.remove(&group);
            }
        }
        Some((group, token))
    }
}

/// The pending connections, counted.
pub(crate) struct PendingConnections {
    counts: Mutex<Counts>,
    max_total: usize,
    max_per_group: usize,
}

impl PendingConnections {
    pub(crate) fn new(max_total: usize, max_per_group: usize) -> Arc<PendingConnections> {
        Arc::new(PendingConnections {
            counts: Mutex::new(Counts::default()),
            max_total,
            max_per_group,
        })
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a slot for a connection from `group`, held until the slot is dropped; when
    /// all are taken, evicts the oldest pending connection of the most crowded groups if
    /// they hold more than the newcomer's does (so 64 strangers from 64 groups cannot keep
    /// out a newcomer from a group of its own: the oldest of them goes).
    pub(crate) fn try_begin(
        self: &Arc<Self>,
        group: AddressGroup,
    ) -> Result<PendingSlot, PendingRefusal> {
        let mut counts = self.counts();
        let in_group = counts.by_group.get(&group).copied().unwrap_or(0);
        if group.is_capped() && in_group >= self.max_per_group {
            return Err(PendingRefusal::GroupFull(in_group));
        }
        if counts.open.len() >= self.max_total {
            // This machine's own nodes are not strangers to make room from.
            let most = counts
                .by_group
                .iter()
                .filter(|(group, _)| group.is_capped())
                .map(|(_, count)| *count)
                .max()
                .unwrap_or(0);
            // Oldest first: the open connections are kept by sequence.
            let victim = (most > in_group + 1 || (most == 1 && in_group == 0))
                .then(|| {
                    counts
                        .open
                        .iter()
                        .find(|(_, (victim_group, _))| {
                            victim_group.is_capped()
                                && counts.by_group.get(victim_group) == Some(&most)
                        })
                        .map(|(sequence, _)| *sequence)
                })
                .flatten();
            match victim.and_then(|sequence| counts.remove(sequence)) {
                Some((_, token)) => token.cancel(),
                None => return Err(PendingRefusal::Full(counts.open.len())),
            }
        }
        let sequence = counts.next;
        counts.next += 1;
        let evicted = CancellationToken::new();
        counts.open.insert(sequence, (group, evicted.clone()));
        *counts.by_group.entry(group).or_insert(0) += 1;
        Ok(PendingSlot {
            pending: Arc::clone(self),
            sequence,
            evicted,
        })
    }

    /// Connections in their handshake now.
    pub(crate) fn count(&self) -> usize {
        self.counts().open.len()
    }
}

/// One pending connection's slot; dropping it frees the slot.
pub(crate) struct PendingSlot {
    pending: Arc<PendingConnections>,
    sequence: u64,
    evicted: CancellationToken,
}

impl PendingSlot {
    /// Cancelled if a newcomer took this connection's slot: the handshake must end.
    pub(crate) fn evicted(&self) -> CancellationToken {
        self.evicted.clone()
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        self.pending.counts().remove(self.sequence);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRANGER: AddressGroup = AddressGroup::V4([203, 0]);

    #[test]
    fn slots_are_capped_per_group_and_in_total_and_freed_on_drop() {
        let pending = PendingConnections::new(3, 2);
        let first = pending.try_begin(STRANGER).expect("a slot");
        let _second = pending.try_begin(STRANGER).expect("a slot");
        assert_eq!(
            pending.try_begin(STRANGER).err(),
            Some(PendingRefusal::GroupFull(2))
        );
        let _other = pending
            .try_begin(AddressGroup::V4([198, 51]))
            .expect("another group has room");
        // Full: a third group's newcomer takes the slot of the crowded group's oldest.
        let _third = pending
            .try_begin(AddressGroup::V4([192, 0]))
            .expect("evicts the crowd's oldest");
        assert!(first.evicted().is_cancelled());
        drop(first);
        assert_eq!(pending.count(), 3);
        assert_eq!(
            pending.try_begin(AddressGroup::V4([192, 0])).err(),
            Some(PendingRefusal::Full(3)),
            "no group holds more than the newcomer's would"
        );
    }

    #[test]
    fn strangers_from_as_many_groups_as_slots_do_not_keep_out_a_group_of_its_own() {
        let pending = PendingConnections::new(64, 8);
        let strangers: Vec<PendingSlot> = (0..64u8)
            .map(|group| {
                pending
                    .try_begin(AddressGroup::V4([10, group]))
                    .expect("a slot")
            })
            .collect();
        let _newcomer = pending
            .try_begin(STRANGER)
            .expect("the oldest stranger's slot");
        assert!(strangers[0].evicted().is_cancelled(), "the oldest went");
        assert!(
            strangers[1..]
                .iter()
                .all(|slot| !slot.evicted().is_cancelled())
        );
    }

    #[test]
    fn two_groups_of_near_equal_size_do_not_evict_each_other_and_local_nodes_are_kept() {
        let pending = PendingConnections::new(3, 8);
        let _first = pending.try_begin(STRANGER).expect("a slot");
        let _second = pending.try_begin(STRANGER).expect("a slot");
        let _other = pending
            .try_begin(AddressGroup::V4([198, 51]))
            .expect("a slot");
        // Its group holds one, the crowd two: taking a slot would only swap them.
        assert_eq!(
            pending.try_begin(AddressGroup::V4([198, 51])).err(),
            Some(PendingRefusal::Full(3))
        );
        let local = PendingConnections::new(1, 8);
        let _own = local.try_begin(AddressGroup::Local).expect("a slot");
        assert_eq!(
            local.try_begin(STRANGER).err(),
            Some(PendingRefusal::Full(1)),
            "this machine's own node is not evicted for a stranger"
        );
    }

    #[test]
    fn a_newcomer_of_another_group_evicts_the_oldest_of_the_most_crowded() {
        let pending = PendingConnections::new(4, 3);
        let crowd: Vec<PendingSlot> = (0..3)
            .map(|_| pending.try_begin(STRANGER).expect("a slot"))
            .collect();
        let other = pending
            .try_begin(AddressGroup::V4([198, 51]))
            .expect("a slot");
        let newcomer = pending
            .try_begin(AddressGroup::Local)
            .expect("the newcomer takes a crowded group's slot");
        assert!(crowd[0].evicted().is_cancelled(), "the oldest of the crowd");
        assert!(!crowd[1].evicted().is_cancelled());
        assert!(!other.evicted().is_cancelled());
        assert_eq!(pending.count(), 4);
        // The crowd's group and the newcomer's now hold 2 and 1: a third group's newcomer
        // still evicts the crowd; one more of the crowd's own is refused.
        assert_eq!(
            pending.try_begin(STRANGER).err(),
            Some(PendingRefusal::Full(4))
        );
        drop(crowd);
        assert_eq!(pending.count(), 2, "evicted slots are not freed twice");
        drop((other, newcomer));
        assert_eq!(pending.count(), 0);
    }

    #[test]
    fn local_connections_are_capped_only_in_total() {
        let pending = PendingConnections::new(4, 1);
        let slots: Vec<PendingSlot> = (0..4)
            .map(|_| pending.try_begin(AddressGroup::Local).expect("a slot"))
            .collect();
        assert_eq!(
            pending.try_begin(AddressGroup::Local).err(),
            Some(PendingRefusal::Full(4))
        );
        drop(slots);
        assert_eq!(pending.count(), 0);
    }
}
