//! The bounded maps that hold codes and tokens: oldest entries forgotten past a cap,
//! and sharded by the keys' random bits so that concurrent requests rarely share a lock.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use uuid::Uuid;

/// A map that forgets its oldest entries past a cap.
pub(super) struct Bounded<V> {
    pub(super) map: HashMap<Uuid, V, foldhash::fast::RandomState>,
    order: VecDeque<Uuid>,
    cap: usize,
}

impl<V> Bounded<V> {
    pub(super) fn new(cap: usize) -> Self {
        Self {
            map: HashMap::default(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    pub(super) fn insert(&mut self, key: Uuid, value: V) {
        while self.map.len() >= self.cap {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        if self.order.len() > 2 * self.cap {
            let map = &self.map;
            self.order.retain(|k| map.contains_key(k));
        }
        self.order.push_back(key);
        self.map.insert(key, value);
    }
}

/// A [`Bounded`] map split into shards by a random byte of the key.
///
/// A small cap keeps one shard and exact oldest-first eviction. A large one has 16
/// shards, each holding an eighth more than its share: random keys then fill the
/// shards evenly enough that none evicts before the map holds `cap` entries (at
/// 100,000, the margin is about ten standard deviations of a shard's count).
pub(super) struct Shards<V> {
    shards: Box<[Mutex<Bounded<V>>]>,
}

impl<V> Shards<V> {
    const SHARDED_FROM: usize = 16 * 4096;

    pub(super) fn new(cap: usize) -> Self {
        let (n, per) = if cap >= Self::SHARDED_FROM {
            let share = cap.div_ceil(16);
            (16, share + share / 8)
        } else {
            (1, cap)
        };
        Self {
            shards: (0..n).map(|_| Mutex::new(Bounded::new(per))).collect(),
        }
    }

    /// The shard of `key`. Byte 0 is random in the version 4 UUIDs the mock makes.
    pub(super) fn of(&self, key: &Uuid) -> MutexGuard<'_, Bounded<V>> {
        lock(&self.shards[usize::from(key.as_bytes()[0]) % self.shards.len()])
    }

    pub(super) fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).map.len()).sum()
    }
}

/// Locks `m`, taking the data of a poisoned lock: every update leaves it consistent.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_id() -> Uuid {
        Uuid::new_v4()
    }

    #[test]
    fn bounded_map_evicts_the_oldest() {
        let mut m = Bounded::new(2);
        let [a, b, c] = [random_id(), random_id(), random_id()];
        m.insert(a, 1);
        m.insert(b, 2);
        m.insert(c, 3);
        assert!(!m.map.contains_key(&a));
        assert_eq!(m.map.len(), 2);
    }

    /// Keys removed from the map (spent, revoked) leave stale entries in the eviction
    /// order; they are swept once the order passes twice the cap, and not before, so
    /// the sweep's cost is spread over many inserts and memory stays bounded.
    #[test]
    fn stale_order_entries_are_swept_past_twice_the_cap() {
        let cap = 4;
        let mut m = Bounded::new(cap);
        let mut longest = 0;
        for i in 0..100 {
            let k = random_id();
            m.insert(k, i);
            m.map.remove(&k);
            longest = longest.max(m.order.len());
        }
        assert_eq!(longest, 2 * cap + 1);
    }

    #[test]
    fn maps_under_16_times_4096_have_one_shard() {
        assert_eq!(Shards::<()>::new(16 * 4096 - 1).shards.len(), 1);
        assert_eq!(Shards::<()>::new(16 * 4096).shards.len(), 16);
    }

    #[test]
    fn a_sharded_map_holds_at_least_its_cap() {
        let cap = 100_000;
        let shards = Shards::new(cap);
        assert_eq!(shards.shards.len(), 16);
        let first = random_id();
        shards.of(&first).insert(first, ());
        for _ in 1..cap {
            let k = random_id();
            shards.of(&k).insert(k, ());
        }
        assert_eq!(shards.len(), cap, "no shard evicted before the cap");
        assert!(shards.of(&first).map.contains_key(&first));
    }
}
