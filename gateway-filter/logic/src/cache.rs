//! A bounded cache of verified tokens, so a token presented again costs a hash-map lookup
//! instead of a signature check. Only tokens that verified are kept (a forged token never
//! takes a slot), each until it expires, with the oldest evicted first when full.
//!
//! Entries are found by a keyed hash (SipHash, the map's random key) of the token's length
//! and last [`HASHED_TAIL`] bytes, and a hit is the whole token compared eight bytes at a
//! time. Every request on a bearer route looks its token up, and inside Wasm both halves
//! are worth sparing: hashing the whole token costs about as much as the rest of the
//! lookup, and the byte-at-a-time `memcmp` the map's `==` calls costs more still. The tail
//! of a signed token is its signature, which an attacker cannot choose for a token that
//! verifies, and only verified tokens are inserted: the random key keeps the map's buckets
//! unpredictable as before. Two cached tokens with one hash cannot both be held; the second
//! is verified every time, which costs time, never a wrong answer.
//!
//! Every operation is O(1) amortized: eviction pops the insertion-order queue, and a sweep
//! of expired entries runs at most once per `capacity / 2` inserts.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::rc::Rc;

/// Bytes at the end of a token that its hash covers: 24 bytes of any signature.
const HASHED_TAIL: usize = 32;

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
    token: Box<str>,
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

/// The map's keys are already keyed hashes: it uses them as they are.
#[derive(Debug, Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key;
    }
}

/// Whether two tokens are the same, eight bytes at a time.
fn same_token(a: &[u8], b: &[u8]) -> bool {
    let (a_words, a_rest) = a.as_chunks::<8>();
    let (b_words, b_rest) = b.as_chunks::<8>();
    a.len() == b.len()
        && a_words
            .iter()
            .zip(b_words)
            .all(|(x, y)| u64::from_ne_bytes(*x) == u64::from_ne_bytes(*y))
        && a_rest.iter().zip(b_rest).all(|(x, y)| x == y)
}

/// The cache, holding for each token what verifying it yielded (`T`, the claims).
#[derive(Debug)]
pub(crate) struct TokenCache<T> {
    capacity: usize,
    hasher: RandomState,
    entries: HashMap<u64, Entry<T>, BuildHasherDefault<KeyHasher>>,
    /// Insertion order, oldest first, by key. A slot whose entry was dropped (expired on
    /// lookup, swept) or replaced stays until it reaches the front or the queue is
    /// compacted.
    order: VecDeque<(u64, u64)>,
    next_seq: u64,
    inserts_since_sweep: usize,
    hits: u64,
    misses: u64,
}

impl<T> TokenCache<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            hasher: RandomState::new(),
            entries: HashMap::with_capacity_and_hasher(
                capacity.min(1024),
                BuildHasherDefault::default(),
            ),
            order: VecDeque::with_capacity(capacity.min(1024)),
            next_seq: 0,
            inserts_since_sweep: 0,
            hits: 0,
            misses: 0,
        }
    }

    fn key(&self, token: &[u8]) -> u64 {
        let tail = token.len().saturating_sub(HASHED_TAIL);
        let mut hasher = self.hasher.build_hasher();
        hasher.write_usize(token.len());
        hasher.write(token.get(tail..).unwrap_or_default());
        hasher.finish()
    }

    /// The entry of a token as the client sent it (bytes: a cached token is text).
    pub(crate) fn lookup(&mut self, token: &[u8], now: u64) -> Lookup<T> {
        let key = self.key(token);
        match self.entries.get(&key) {
            Some(entry) if !same_token(entry.token.as_bytes(), token) => {
                self.misses += 1;
                Lookup::Miss
            }
            Some(entry) if now <= entry.valid_until => {
                self.hits += 1;
                Lookup::Hit(Rc::clone(&entry.claims))
            }
            Some(_) => {
                self.entries.remove(&key);
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
        let key = self.key(token.as_bytes());
        // Held already, or another token with the same hash is: that one keeps its slot.
        if self.capacity == 0 || self.entries.contains_key(&key) {
            return;
        }
        if self.entries.len() >= self.capacity {
            self.make_room(now);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.inserts_since_sweep += 1;
        self.entries.insert(
            key,
            Entry {
                token: Box::from(token),
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
        matches!(cache.lookup(token.as_bytes(), now), Lookup::Hit(_))
    }

    #[test]
    fn full_cache_evicts_expired_entries_before_live_ones() {
        let mut cache = TokenCache::new(2);
        cache.insert("old", claims("old"), 10, 0);
        cache.insert("live", claims("live"), 1_000, 0);
        cache.insert("new", claims("new"), 1_000, 50);
        assert!(hit(&mut cache, "live", 50));
        assert!(hit(&mut cache, "new", 50));
        assert!(matches!(cache.lookup(b"old", 50), Lookup::Miss));
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
        assert!(matches!(cache.lookup(b"a", 1), Lookup::Miss));
        assert!(hit(&mut cache, "b", 1));
        assert!(hit(&mut cache, "c", 1));
        assert_eq!(cache.stats().entries, 2);
    }

    #[test]
    fn expired_lookup_drops_the_entry_and_a_reinserted_token_keeps_its_new_slot() {
        let mut cache = TokenCache::new(2);
        cache.insert("a", claims("a"), 10, 0);
        assert!(matches!(cache.lookup(b"a", 20), Lookup::Expired));
        assert!(matches!(cache.lookup(b"a", 20), Lookup::Miss));
        // The stale slot of the first "a" must not evict the second one.
        cache.insert("a", claims("a2"), 1_000, 20);
        cache.insert("b", claims("b"), 1_000, 20);
        assert!(hit(&mut cache, "a", 21));
        assert!(hit(&mut cache, "b", 21));
        cache.insert("c", claims("c"), 1_000, 21);
        assert!(matches!(cache.lookup(b"a", 22), Lookup::Miss));
        assert!(hit(&mut cache, "b", 22));
        assert!(hit(&mut cache, "c", 22));
    }

    #[test]
    fn the_order_queue_stays_bounded_when_entries_expire_on_lookup() {
        let mut cache = TokenCache::new(4);
        for i in 0..1_000u64 {
            let token = format!("t{i}");
            cache.insert(&token, claims(&token), i, i);
            assert!(matches!(
                cache.lookup(token.as_bytes(), i + 1),
                Lookup::Expired
            ));
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
        assert!(matches!(cache.lookup(b"t9935", 200), Lookup::Miss));
        assert!(cache.order.len() <= 128);
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let mut cache = TokenCache::new(0);
        cache.insert("a", claims("a"), 1_000, 0);
        assert!(matches!(cache.lookup(b"a", 1), Lookup::Miss));
    }
}
