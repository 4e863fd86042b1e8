//! Places counted per address group: what one group holds of a limited thing (event
//! streams, transaction streams, turns to wait for a place), each place given back when
//! its guard drops.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use powchain_node::AddressGroup;

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

#[cfg(test)]
mod tests {
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
}
