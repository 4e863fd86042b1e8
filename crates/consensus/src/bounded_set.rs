//! A set that holds at most a fixed number of members and forgets the oldest first.
//!
//! Not a rule: the memory that the signature cache keeps of what it has seen, so that a
//! stranger who sends a million distinct items costs a bounded amount of memory. (The peer
//! layer's sets forget by generations instead: `powchain-p2p`'s `rolling_set.rs`.)
//!
//! ```text
//!   insert(x) ──new?──▶ members[x] = n; order.push_back((x, n)); n += 1
//!                          └─ more than capacity: pop order's front (y, m);
//!                             forget y only if members[y] is still m
//!   remove(x) ──▶ members.remove(x); its order entry stays, stale, until it is popped
//!                 or the queue is compacted (it never holds more than 2 × len + 1,024)
//! ```
//!
//! **Invariant:** `order` holds one entry `(x, members[x])` for each member, oldest first,
//! so eviction takes the member inserted longest ago. Entries whose number no longer
//! matches (removed, or removed and inserted again since) are skipped: removing a member
//! and inserting it again makes it the newest, not one due for eviction.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// Stale entries tolerated in the order queue beyond twice the members.
const COMPACTION_SLACK: usize = 1024;

/// A set of at most `capacity` members; inserting past it forgets the oldest member.
#[derive(Clone, Debug)]
pub struct BoundedSet<T> {
    capacity: usize,
    /// Each member with the number of its insertion.
    members: HashMap<T, u64>,
    /// Insertions, oldest first, some stale (see the module documentation).
    order: VecDeque<(T, u64)>,
    next: u64,
}

impl<T: Eq + Hash + Clone> BoundedSet<T> {
    /// An empty set that holds at most `capacity` members (none if 0).
    pub fn new(capacity: usize) -> BoundedSet<T> {
        BoundedSet {
            capacity,
            members: HashMap::new(),
            order: VecDeque::new(),
            next: 0,
        }
    }

    /// The most members the set holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Members held.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True if nothing is held.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// True if `item` is held.
    pub fn contains(&self, item: &T) -> bool {
        self.members.contains_key(item)
    }

    /// Adds `item` as the newest member, forgetting the oldest if the set is full. True if
    /// it was not held (with a capacity of 0 it is forgotten at once, and still true).
    pub fn insert(&mut self, item: T) -> bool {
        // One hash of the item to test and insert, one of the oldest to evict it: this
        // runs for every item each peer announces.
        let number = self.next;
        match self.members.entry(item.clone()) {
            Entry::Occupied(_) => return false,
            Entry::Vacant(vacant) => vacant.insert(number),
        };
        self.next += 1;
        self.order.push_back((item, number));
        while self.members.len() > self.capacity {
            let Some((oldest, number)) = self.order.pop_front() else {
                break;
            };
            if let Entry::Occupied(member) = self.members.entry(oldest)
                && *member.get() == number
            {
                member.remove();
            }
        }
        true
    }

    /// Forgets `item`; true if it was held.
    pub fn remove(&mut self, item: &T) -> bool {
        if self.members.remove(item).is_none() {
            return false;
        }
        if self.order.len() > 2 * self.members.len() + COMPACTION_SLACK {
            let members = &self.members;
            self.order
                .retain(|(item, number)| members.get(item) == Some(number));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_oldest_member_goes_first() {
        let mut set = BoundedSet::new(2);
        assert!(set.insert(1));
        assert!(set.insert(2));
        assert!(!set.insert(1), "held already");
        assert!(set.insert(3));
        assert!(!set.contains(&1) && set.contains(&2) && set.contains(&3));
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn a_member_removed_and_inserted_again_is_the_newest() {
        let mut set = BoundedSet::new(2);
        set.insert(1);
        set.insert(2);
        assert!(set.remove(&1));
        assert!(!set.remove(&1), "gone already");
        set.insert(1);
        set.insert(3);
        // 2 is now the oldest: the stale entry of 1's first insertion must not evict it.
        assert!(set.contains(&1) && !set.contains(&2) && set.contains(&3));
    }

    #[test]
    fn a_set_of_no_capacity_holds_nothing() {
        let mut set = BoundedSet::new(0);
        assert!(set.insert(1));
        assert!(set.is_empty() && !set.contains(&1));
    }

    #[test]
    fn removals_do_not_grow_the_order_queue_without_bound() {
        let mut set = BoundedSet::new(10);
        for item in 0..100_000u32 {
            set.insert(item);
            set.remove(&item);
        }
        assert!(set.is_empty());
        assert!(
            set.order.len() <= COMPACTION_SLACK + 1,
            "{}",
            set.order.len()
        );
    }

    /// What a bounded set must hold: the newest `capacity` of the items inserted and not
    /// removed since, by a plain list kept alongside.
    fn model_members(capacity: usize, operations: &[(bool, u8)]) -> Vec<u8> {
        let mut members: Vec<u8> = Vec::new(); // oldest first
        for &(insert, item) in operations {
            if insert {
                if !members.contains(&item) {
                    members.push(item);
                    if members.len() > capacity {
                        members.remove(0);
                    }
                }
            } else {
                members.retain(|member| *member != item);
            }
        }
        members
    }

    proptest! {
        #[test]
        fn it_holds_what_a_plain_list_would(
            capacity in 0usize..8,
            operations in proptest::collection::vec((any::<bool>(), 0u8..16), 0..200),
        ) {
            let mut set = BoundedSet::new(capacity);
            for &(insert, item) in &operations {
                if insert {
                    set.insert(item);
                } else {
                    set.remove(&item);
                }
            }
            let expected = model_members(capacity, &operations);
            prop_assert_eq!(set.len(), expected.len());
            for item in 0u8..16 {
                prop_assert_eq!(set.contains(&item), expected.contains(&item), "item {}", item);
            }
        }
    }
}
