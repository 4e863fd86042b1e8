//! Places counted per address group: what one group holds of a limited thing (event
//! streams, transaction streams, turns to wait for a place), each place given back when
//! its guard drops; and bytes one group's request bodies hold of a budget (`POST /txs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use powchain_node::AddressGroup;
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

/// How many places each address group holds.
#[derive(Clone, Debug, Default)]
pub(crate) struct GroupShares {
    held: Arc<Mutex<HashMap<AddressGroup, usize>>>,
}

/// One place of a group's, given back when dropped.
#[derive(Debug)]
pub(crate) struct GroupShare {
    group: AddressGroup,
    held: Arc<Mutex<HashMap<AddressGroup, usize>>>,
}

impl GroupShares {
    /// A place for `group` if it holds fewer than `max` (the operator's own group is never
    /// capped), and, if so, only once `also` gives what else the place needs (`None`:
    /// nothing is taken). Returns what the group holds when refused.
    pub(crate) fn try_take<T>(
        &self,
        group: AddressGroup,
        max: usize,
        also: impl FnOnce() -> Option<T>,
    ) -> Result<Option<(GroupShare, T)>, usize> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let count = held.get(&group).copied().unwrap_or(0);
        if group.is_capped() && count >= max {
            return Err(count);
        }
        let Some(other) = also() else {
            return Ok(None);
        };
        held.insert(group, count + 1);
        Ok(Some((
            GroupShare {
                group,
                held: Arc::clone(&self.held),
            },
            other,
        )))
    }
}

impl Drop for GroupShare {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = held.get_mut(&self.group) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.group);
            }
        }
    }
}

/// The bytes each address group's bodies may hold at once: `share` a group (the operator's
/// own group is never capped), waited for as a semaphore's permits. A group's semaphore is
/// made when one of its bodies begins and dropped when its last one ends, so the map holds
/// only the groups with a body in flight, never one entry for every group ever seen.
#[derive(Clone, Debug)]
pub(crate) struct GroupBudgets {
    share: usize,
    groups: Arc<Mutex<HashMap<AddressGroup, GroupBudget>>>,
}

/// One group's bytes, and how many of its bodies are in flight (holding bytes of it or
/// waiting for them).
#[derive(Debug)]
struct GroupBudget {
    bytes: Arc<Semaphore>,
    bodies: usize,
}

/// One body's part of its group's bytes: what it has taken, given back when dropped.
#[derive(Debug)]
pub(crate) struct GroupBytes {
    group: AddressGroup,
    /// The group's semaphore; `None` for a group that is not capped.
    budget: Option<Arc<Semaphore>>,
    held: Option<OwnedSemaphorePermit>,
    groups: Arc<Mutex<HashMap<AddressGroup, GroupBudget>>>,
}

impl GroupBudgets {
    /// At most `share` bytes held by one group's bodies at once.
    pub(crate) fn new(share: usize) -> GroupBudgets {
        GroupBudgets {
            share,
            groups: Arc::default(),
        }
    }

    /// A body of `group` begins: it holds nothing yet.
    pub(crate) fn enter(&self, group: AddressGroup) -> GroupBytes {
        let budget = group.is_capped().then(|| {
            let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
            let budget = groups.entry(group).or_insert_with(|| GroupBudget {
                bytes: Arc::new(Semaphore::new(self.share)),
                bodies: 0,
            });
            budget.bodies += 1;
            Arc::clone(&budget.bytes)
        });
        GroupBytes {
            group,
            budget,
            held: None,
            groups: Arc::clone(&self.groups),
        }
    }

    /// The bytes `group` has left, if one of its bodies is in flight.
    #[cfg(test)]
    pub(crate) fn left(&self, group: AddressGroup) -> Option<usize> {
        let groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        groups
            .get(&group)
            .map(|budget| budget.bytes.available_permits())
    }
}

impl GroupBytes {
    /// `count` more bytes of the group's, once its other bodies leave enough of them (at
    /// once for a group that is not capped). Cancelling the wait takes nothing.
    pub(crate) async fn take(&mut self, count: u32) -> Result<(), AcquireError> {
        let Some(budget) = &self.budget else {
            return Ok(());
        };
        let more = Arc::clone(budget).acquire_many_owned(count).await?;
        match &mut self.held {
            Some(held) => held.merge(more),
            None => self.held = Some(more),
        }
        Ok(())
    }
}

impl Drop for GroupBytes {
    fn drop(&mut self) {
        if self.budget.is_none() {
            return;
        }
        // The bytes go back before the body stops counting: the group's semaphore must
        // not be dropped while bytes of it are held, or the group's next body would find a
        // new one with the whole share free.
        self.held = None;
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(budget) = groups.get_mut(&self.group) {
            budget.bodies -= 1;
            if budget.bodies == 0 {
                groups.remove(&self.group);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    #[test]
    fn a_group_holds_at_most_its_places_and_gets_them_back() {
        let shares = GroupShares::default();
        let group = AddressGroup::V4([203, 0]);
        let first = shares.try_take(group, 2, || Some(())).expect("a place");
        let _second = shares.try_take(group, 2, || Some(())).expect("a place");
        assert_eq!(shares.try_take(group, 2, || Some(())).err(), Some(2));
        // Nothing else to be had: nothing is taken.
        assert!(matches!(
            shares.try_take(AddressGroup::V4([198, 51]), 2, || None::<()>),
            Ok(None)
        ));
        assert!(shares.try_take(AddressGroup::Local, 0, || Some(())).is_ok());
        drop(first);
        assert!(matches!(
            shares.try_take(group, 2, || Some(())),
            Ok(Some(_))
        ));
    }

    #[test]
    fn a_group_s_bodies_hold_at_most_its_share_and_it_is_forgotten_when_they_end() {
        let budgets = GroupBudgets::new(10);
        let group = AddressGroup::V4([203, 0]);
        let mut first = budgets.enter(group);
        let mut second = budgets.enter(group);
        assert_eq!(budgets.left(group), Some(10), "entering takes nothing");
        assert!(
            first
                .take(6)
                .now_or_never()
                .is_some_and(|taken| taken.is_ok())
        );
        assert_eq!(budgets.left(group), Some(4));
        // Past the share: the second waits for the first's bytes.
        assert!(second.take(5).now_or_never().is_none());
        // Other groups have their own share, and the operator's own is not capped.
        let mut other = budgets.enter(AddressGroup::V4([198, 51]));
        assert!(other.take(10).now_or_never().is_some());
        let mut own = budgets.enter(AddressGroup::Local);
        assert!(own.take(1_000).now_or_never().is_some());
        assert_eq!(budgets.left(AddressGroup::Local), None);
        drop(first);
        assert!(
            second
                .take(5)
                .now_or_never()
                .is_some_and(|taken| taken.is_ok())
        );
        assert_eq!(budgets.left(group), Some(5));
        // A group with no body in flight takes no room.
        drop((second, other, own));
        assert!(budgets.groups.lock().expect("not poisoned").is_empty());
    }
}
