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
//!              └─ full (in total or for the group) ──▶ closed at once
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

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
    total: usize,
    by_group: HashMap<AddressGroup, usize>,
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

    /// Takes a slot for a connection from `group`, held until the slot is dropped.
    pub(crate) fn try_begin(
        self: &Arc<Self>,
        group: AddressGroup,
    ) -> Result<PendingSlot, PendingRefusal> {
        let mut counts = self.counts();
        if counts.total >= self.max_total {
            return Err(PendingRefusal::Full(counts.total));
        }
        let in_group = counts.by_group.get(&group).copied().unwrap_or(0);
        if group.is_capped() && in_group >= self.max_per_group {
            return Err(PendingRefusal::GroupFull(in_group));
        }
        counts.total += 1;
        counts.by_group.insert(group, in_group + 1);
        Ok(PendingSlot {
            pending: Arc::clone(self),
            group,
        })
    }

    /// Connections in their handshake now.
    pub(crate) fn count(&self) -> usize {
        self.counts().total
    }
}

/// One pending connection's slot; dropping it frees the slot.
pub(crate) struct PendingSlot {
    pending: Arc<PendingConnections>,
    group: AddressGroup,
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut counts = self.pending.counts();
        counts.total = counts.total.saturating_sub(1);
        if let Some(count) = counts.by_group.get_mut(&self.group) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.by_group.remove(&self.group);
            }
        }
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
        assert_eq!(
            pending.try_begin(AddressGroup::V4([192, 0])).err(),
            Some(PendingRefusal::Full(3))
        );
        drop(first);
        assert_eq!(pending.count(), 2);
        pending.try_begin(STRANGER).expect("the freed slot");
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
