//! A set of recent items that forgets by generations, each item held as a 64-bit hash
//! under a key of this process's drawing rather than whole.
//!
//! ```text
//!   insert ──▶ in either generation? ──▶ known
//!          └─▶ current full? ──▶ previous forgotten, current becomes previous
//!                           ──▶ into current
//! ```
//!
//! Every peer session keeps one (what its peer is known to have) and the relay keeps one
//! (transactions seen recently), so its size counts per peer and per node: a generation
//! of `n` items is one hash table of 8-byte slots with a control byte each, sized to hold
//! `n` before it would grow, and two of them are the whole cost, whatever passes through.
//! Bitcoin Core's rolling filters forget by generations too.
//!
//! A set that took one item for another would answer "known" for an item it never held;
//! that needs two items with the same keyed hash, which a peer cannot aim for without the
//! key, and which chance gives once in about 2^64 / m^2 sets of m items.

use std::collections::HashSet;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::marker::PhantomData;

/// The most items a hash table of `slots` slots takes before it grows (seven eighths).
pub(crate) const fn items_for_slots(slots: usize) -> usize {
    slots / 8 * 7
}

/// Recent items of type `T`: the newest `generation` to twice as many.
pub(crate) struct RollingSet<T> {
    generation: usize,
    current: HashSet<u64, BuildHasherDefault<KeyedHash>>,
    previous: HashSet<u64, BuildHasherDefault<KeyedHash>>,
    key: RandomState,
    items: PhantomData<fn(&T)>,
}

/// The hasher of a set of keyed hashes: the value is its own hash (it is uniform already,
/// and a peer cannot choose it without the key), so a lookup costs no second SipHash.
#[derive(Default)]
struct KeyedHash(u64);

impl Hasher for KeyedHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; any other input is folded in rather than dropped.
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

impl<T: Hash> RollingSet<T> {
    /// An empty set whose generations hold `generation` items each.
    pub(crate) fn new(generation: usize) -> RollingSet<T> {
        RollingSet {
            generation: generation.max(1),
            current: HashSet::default(),
            previous: HashSet::default(),
            key: RandomState::new(),
            items: PhantomData,
        }
    }

    fn hash(&self, item: &T) -> u64 {
        self.key.hash_one(item)
    }

    /// True if `item` is held.
    pub(crate) fn contains(&self, item: &T) -> bool {
        let hash = self.hash(item);
        self.current.contains(&hash) || self.previous.contains(&hash)
    }

    /// Holds `item` (forgetting the older generation whole when the current one is full);
    /// true if it was not held. An item held already is not made newer.
    pub(crate) fn insert(&mut self, item: &T) -> bool {
        let hash = self.hash(item);
        if self.previous.contains(&hash) {
            return false;
        }
        if self.current.len() >= self.generation && !self.current.contains(&hash) {
            // The older generation's table is reused: memory stays at two tables.
            std::mem::swap(&mut self.current, &mut self.previous);
            self.current.clear();
        }
        self.current.insert(hash)
    }

    /// Forgets `item`; true if it was held.
    pub(crate) fn remove(&mut self, item: &T) -> bool {
        let hash = self.hash(item);
        // Not short-circuited: an item is in one generation at most, but both are cleared.
        self.current.remove(&hash) | self.previous.remove(&hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_older_generation_goes_whole_and_the_newest_items_stay() {
        let generation = items_for_slots(1024) as u32;
        let mut set = RollingSet::new(generation as usize);
        for number in 0..2 * generation {
            assert!(set.insert(&number), "{number} is new");
        }
        assert!(set.contains(&0) && set.contains(&(2 * generation - 1)));
        assert!(!set.insert(&0), "an old item is still held, not made new");
        assert!(set.insert(&u32::MAX));
        assert!(!set.contains(&0) && !set.contains(&(generation - 1)));
        for number in generation..2 * generation {
            assert!(set.contains(&number), "{number} is in the newest two");
        }
        assert!(set.remove(&generation) && !set.remove(&generation));
        assert!(!set.contains(&generation));
        // Memory stays at two tables however many items pass.
        for number in 0..20 * generation {
            set.insert(&(number | 0x8000_0000));
        }
        assert!(set.current.capacity() <= items_for_slots(1024));
        assert!(set.previous.capacity() <= items_for_slots(1024));
    }

    #[test]
    fn two_sets_hash_under_different_keys() {
        let (a, b) = (RollingSet::<u32>::new(8), RollingSet::<u32>::new(8));
        let same = (0..64u32).filter(|n| a.hash(n) == b.hash(n)).count();
        assert!(same < 4, "{same} of 64 hashes agree");
    }
}
