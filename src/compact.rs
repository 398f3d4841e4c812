//! Giving back what a burst took. A hash map or queue keeps its largest capacity after its entries
//! are gone: the gateway's pending writes and waiting reads, the batcher's intents, the ledger's
//! written statuses all fill to the fleet's size while 10,000 resources converge, then hold a
//! handful in steady state. Their empty tables stayed resident, megabytes of them (measured with
//! heaptrack at 10,000 resources: about 8 MB of the 53 MB live in steady state).
//!
//! [`Compact::compact`] shrinks a collection once it is less than a quarter full, to twice what it
//! holds (never below [`KEEP`] slots). A shrink copies what is left, and the next one needs the
//! collection to empty by another factor of four first, so its cost is a constant per removal.
//! Callers compact after removing entries; the per-resource maps that hold one entry per resource
//! (the cache, the ledger) stay as they are.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hash};

/// Capacity a collection keeps even when empty: small ones are never worth a shrink.
pub const KEEP: usize = 64;

/// A collection that can give back capacity it no longer needs.
pub trait Compact {
    /// Shrinks when less than a quarter of the capacity is used; see the module documentation.
    fn compact(&mut self);
}

/// The capacity to shrink to, or `None` to leave the collection as it is.
fn shrink_target(len: usize, capacity: usize) -> Option<usize> {
    (capacity > KEEP && len.saturating_mul(4) < capacity).then(|| len.saturating_mul(2).max(KEEP))
}

impl<K: Eq + Hash, V, S: BuildHasher> Compact for HashMap<K, V, S> {
    fn compact(&mut self) {
        if let Some(to) = shrink_target(self.len(), self.capacity()) {
            self.shrink_to(to);
        }
    }
}

impl<T: Eq + Hash, S: BuildHasher> Compact for HashSet<T, S> {
    fn compact(&mut self) {
        if let Some(to) = shrink_target(self.len(), self.capacity()) {
            self.shrink_to(to);
        }
    }
}

impl<T> Compact for VecDeque<T> {
    fn compact(&mut self) {
        if let Some(to) = shrink_target(self.len(), self.capacity()) {
            self.shrink_to(to);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrinks_only_a_big_collection_less_than_a_quarter_full() {
        // (len, capacity, shrink to)
        let cases = [
            (0, 0, None),
            (0, KEEP, None),
            (0, KEEP + 1, Some(KEEP)),
            (10, 16_384, Some(KEEP)),
            (1_000, 16_384, Some(2_000)),
            (4_095, 16_384, Some(8_190)),
            (4_096, 16_384, None),
            (10_000, 16_384, None),
            (100, 1_000, Some(200)),
        ];
        for (len, capacity, want) in cases {
            assert_eq!(
                shrink_target(len, capacity),
                want,
                "len {len}, capacity {capacity}"
            );
        }
    }

    #[test]
    fn a_drained_map_gives_its_table_back_and_keeps_what_is_left() {
        let mut map: HashMap<u32, String> = (0..10_000).map(|i| (i, i.to_string())).collect();
        let full = map.capacity();
        map.retain(|k, _| *k < 10);
        map.compact();
        assert!(
            map.capacity() < full / 16,
            "capacity {} of {full}",
            map.capacity()
        );
        assert!(map.capacity() >= 10);
        assert_eq!(map.len(), 10);
        assert_eq!(map.get(&7).map(String::as_str), Some("7"));
        // A second compact of the same map changes nothing.
        let capacity = map.capacity();
        map.compact();
        assert_eq!(map.capacity(), capacity);
    }

    #[test]
    fn a_map_still_in_use_keeps_its_capacity() {
        let mut map: HashMap<u32, u32> = HashMap::with_capacity(10_000);
        let full = map.capacity();
        map.extend((0..5_000).map(|i| (i, i)));
        map.compact();
        assert_eq!(map.capacity(), full);
    }

    #[test]
    fn sets_and_queues_shrink_too() {
        let mut set: HashSet<u32> = (0..10_000).collect();
        set.retain(|k| *k < 3);
        set.compact();
        assert!(set.capacity() < 1_000, "set capacity {}", set.capacity());
        assert!(set.contains(&2));

        let mut queue: VecDeque<u32> = (0..10_000).collect();
        queue.drain(..9_990);
        queue.compact();
        assert!(
            queue.capacity() < 1_000,
            "queue capacity {}",
            queue.capacity()
        );
        assert_eq!(queue.front(), Some(&9_990));
    }
}
