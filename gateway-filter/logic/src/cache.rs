//! A bounded cache of verified tokens, so a token presented again costs a hash-map lookup
//! instead of a signature check. Only tokens that verified are kept (a forged token never
//! takes a slot), each until it expires, with the oldest evicted first when full.
//!
//! Keys are the tokens themselves (as Envoy's `jwt_authn` cache does): hashing a token with
//! the map's keyed SipHash and comparing it on a hit costs far less inside Wasm than a
//! cryptographic digest of it, and the random key keeps the map's buckets unpredictable.
//! Every operation is O(1) amortized: eviction pops the insertion-order queue, and a sweep
//! of expired entries runs at most once per `capacity / 2` inserts.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

/// Counters for the cache, exposed for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that needed a full verification.
    pub misses: u64,
    /// Entries held now.
    pub entries: usize,
}

#[derive(Debug)]
struct Entry<T> {
    claims: Rc<T>,
    /// Last second (inclusive) at which the token is still accepted: `exp` plus skew.
    valid_until: u64,
    /// Insertion number, to tell this entry's slot in `order` from a stale one.
    seq: u64,
}

/// What a lookup found.
#[derive(Debug)]
pub(crate) enum Lookup<T> {
    Hit(Rc<T>),
    /// The token was verified before but has expired since; the entry was dropped.
    Expired,
    Miss,
}

/// The cache, holding for each token what verifying it yielded (`T`, the claims).
#[derive(Debug)]
pub(crate) struct TokenCache<T> {
    capacity: usize,
    entries: HashMap<Rc<str>, Entry<T>>,
    /// Insertion order, oldest first. A slot whose entry was dropped (expired on lookup,
    /// swept) or replaced stays until it reaches the front or the queue is compacted.
    order: VecDeque<(Rc<str>, u64)>,
    next_seq: u64,
    inserts_since_sweep: usize,
    hits: u64,
    misses: u64,
}

impl<T> TokenCache<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: HashMap::with_capacity(capacity.min(1024)),
            order: VecDeque::with_capacity(capacity.min(1024)),
            next_seq: 0,
            inserts_since_sweep: 0,
            hits: 0,
            misses: 0,
        }
    }

    pub(crate) fn lookup(&mut self, token: &str, now: u64) -> Lookup<T> {
        match self.entries.get(token) {
            Some(entry) if now <= entry.valid_until => {
                self.hits += 1;
                Lookup::Hit(Rc::clone(&entry.claims))
            }
            Some(_) => {
                self.entries.remove(token);
                self.hits += 1;
                Lookup::Expired
            }
            None => {
                self.misses += 1;
                Lookup::Miss
            }
        }
    }

    pub(crate) fn insert(&mut self, token: &str, claims: Rc<T>, valid_until: u64, now: u64) {
        if self.capacity == 0 || self.entries.contains_key(token) {
            return;
        }
        if self.entries.len() >= self.capacity {
            self.make_room(now);
        }
        let key: Rc<str> = Rc::from(token);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.inserts_since_sweep += 1;
        self.entries.insert(
            Rc::clone(&key),
            Entry {
                claims,
                valid_until,
                seq,
            },
        );
        self.order.push_back((key, seq));
        // Dropped entries leave slots behind; keep the queue within twice the capacity.
        if self.order.len() > self.capacity.saturating_mul(2) {
            self.compact();
        }
    }

    /// Frees at least one slot: expired entries go first, then the oldest live one.
    fn make_room(&mut self, now: u64) {
        // Tokens of one issuer share a lifetime, so the oldest are usually the expired ones.
        while let Some((key, seq)) = self.order.front() {
            match self.entries.get(key) {
                Some(entry) if entry.seq == *seq && now <= entry.valid_until => break,
                Some(entry) if entry.seq == *seq => {
                    self.entries.remove(key);
                }
                _ => {}
            }
            self.order.pop_front();
        }
        if self.entries.len() >= self.capacity && self.inserts_since_sweep >= self.capacity / 2 {
            self.entries.retain(|_, e| now <= e.valid_until);
            self.compact();
            self.inserts_since_sweep = 0;
        }
        while self.entries.len() >= self.capacity {
            let Some((key, seq)) = self.order.pop_front() else {
                break;
            };
            if self.entries.get(&key).is_some_and(|e| e.seq == seq) {
                self.entries.remove(&key);
            }
        }
    }

    /// Drops the queue slots of entries no longer held.
    fn compact(&mut self) {
        let entries = &self.entries;
        self.order
            .retain(|(key, seq)| entries.get(key).is_some_and(|e| e.seq == *seq));
    }

    /// Drops every entry: used when the key set changes, so a token signed by a key
    /// that was withdrawn stops being accepted at once.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits,
            misses: self.misses,
            entries: self.entries.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sub: &str) -> Rc<String> {
        Rc::new(sub.to_owned())
    }

    fn hit(cache: &mut TokenCache<String>, token: &str, now: u64) -> bool {
        matches!(cache.lookup(token, now), Lookup::Hit(_))
    }

    #[test]
    fn full_cache_evicts_expired_entries_before_live_ones() {
        let mut cache = TokenCache::new(2);
        cache.insert("old", claims("old"), 10, 0);
        cache.insert("live", claims("live"), 1_000, 0);
        cache.insert("new", claims("new"), 1_000, 50);
        assert!(hit(&mut cache, "live", 50));
        assert!(hit(&mut cache, "new", 50));
        assert!(matches!(cache.lookup("old", 50), Lookup::Miss));
    }

    #[test]
    fn expired_entry_behind_a_live_one_is_swept_before_the_live_one_is_evicted() {
        let mut cache = TokenCache::new(2);
        cache.insert("live", claims("live"), 1_000, 0);
        cache.insert("old", claims("old"), 10, 0);
        cache.insert("new", claims("new"), 1_000, 50);
        assert!(hit(&mut cache, "live", 50));
        assert!(hit(&mut cache, "new", 50));
        assert_eq!(cache.stats().entries, 2);
    }

    #[test]
    fn full_cache_of_live_entries_evicts_the_oldest() {
        let mut cache = TokenCache::new(2);
        cache.insert("a", claims("a"), 1_000, 0);
        cache.insert("b", claims("b"), 1_000, 0);
        cache.insert("c", claims("c"), 1_000, 0);
        assert!(matches!(cache.lookup("a", 1), Lookup::Miss));
        assert!(hit(&mut cache, "b", 1));
        assert!(hit(&mut cache, "c", 1));
        assert_eq!(cache.stats().entries, 2);
    }

    #[test]
    fn expired_lookup_drops_the_entry_and_a_reinserted_token_keeps_its_new_slot() {
        let mut cache = TokenCache::new(2);
        cache.insert("a", claims("a"), 10, 0);
        assert!(matches!(cache.lookup("a", 20), Lookup::Expired));
        assert!(matches!(cache.lookup("a", 20), Lookup::Miss));
        // The stale slot of the first "a" must not evict the second one.
        cache.insert("a", claims("a2"), 1_000, 20);
        cache.insert("b", claims("b"), 1_000, 20);
        assert!(hit(&mut cache, "a", 21));
        assert!(hit(&mut cache, "b", 21));
        cache.insert("c", claims("c"), 1_000, 21);
        assert!(matches!(cache.lookup("a", 22), Lookup::Miss));
        assert!(hit(&mut cache, "b", 22));
        assert!(hit(&mut cache, "c", 22));
    }

    #[test]
    fn the_order_queue_stays_bounded_when_entries_expire_on_lookup() {
        let mut cache = TokenCache::new(4);
        for i in 0..1_000u64 {
            let token = format!("t{i}");
            cache.insert(&token, claims(&token), i, i);
            assert!(matches!(cache.lookup(&token, i + 1), Lookup::Expired));
        }
        assert_eq!(cache.stats().entries, 0);
        assert!(cache.order.len() <= 8, "queue of {}", cache.order.len());
    }

    #[test]
    fn many_fresh_tokens_keep_the_cache_at_capacity() {
        let mut cache = TokenCache::new(64);
        for i in 0..10_000u64 {
            let token = format!("t{i}");
            cache.insert(&token, claims(&token), 1_000_000, i / 100);
        }
        assert_eq!(cache.stats().entries, 64);
        assert!(hit(&mut cache, "t9999", 200));
        assert!(hit(&mut cache, "t9936", 200));
        assert!(matches!(cache.lookup("t9935", 200), Lookup::Miss));
        assert!(cache.order.len() <= 128);
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let mut cache = TokenCache::new(0);
        cache.insert("a", claims("a"), 1_000, 0);
        assert!(matches!(cache.lookup("a", 1), Lookup::Miss));
    }
}
