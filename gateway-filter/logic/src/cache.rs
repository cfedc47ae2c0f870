//! A bounded cache of verified tokens, so a token presented again costs a hash instead of
//! a signature check. Entries are keyed by the token's SHA-256 (the token itself is a
//! credential and is not kept) and live until the token expires.

use std::collections::{HashMap, VecDeque};

use sha2::{Digest, Sha256};

use crate::verifier::VerifiedClaims;

/// SHA-256 of a token.
pub(crate) type TokenDigest = [u8; 32];

pub(crate) fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

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
struct Entry {
    claims: VerifiedClaims,
    /// Last second (inclusive) at which the token is still accepted: `exp` plus skew.
    valid_until: u64,
}

/// What a lookup found.
#[derive(Debug)]
pub(crate) enum Lookup {
    Hit(VerifiedClaims),
    /// The token was verified before but has expired since; the entry was dropped.
    Expired,
    Miss,
}

#[derive(Debug)]
pub(crate) struct TokenCache {
    capacity: usize,
    entries: HashMap<TokenDigest, Entry>,
    /// Insertion order, oldest first, to evict when full.
    order: VecDeque<TokenDigest>,
    hits: u64,
    misses: u64,
}

impl TokenCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: HashMap::with_capacity(capacity.min(1024)),
            order: VecDeque::with_capacity(capacity.min(1024)),
            hits: 0,
            misses: 0,
        }
    }

    pub(crate) fn lookup(&mut self, key: &TokenDigest, now: u64) -> Lookup {
        match self.entries.get(key) {
            Some(entry) if now <= entry.valid_until => {
                self.hits += 1;
                Lookup::Hit(entry.claims.clone())
            }
            Some(_) => {
                self.entries.remove(key);
                self.order.retain(|k| k != key);
                self.hits += 1;
                Lookup::Expired
            }
            None => {
                self.misses += 1;
                Lookup::Miss
            }
        }
    }

    pub(crate) fn insert(
        &mut self,
        key: TokenDigest,
        claims: VerifiedClaims,
        valid_until: u64,
        now: u64,
    ) {
        if self.capacity == 0 || self.entries.contains_key(&key) {
            return;
        }
        if self.entries.len() >= self.capacity {
            self.evict_expired(now);
        }
        while self.entries.len() >= self.capacity {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.entries.remove(&oldest);
                }
                None => break,
            }
        }
        self.entries.insert(
            key,
            Entry {
                claims,
                valid_until,
            },
        );
        self.order.push_back(key);
    }

    fn evict_expired(&mut self, now: u64) {
        self.entries.retain(|_, e| now <= e.valid_until);
        let entries = &self.entries;
        self.order.retain(|k| entries.contains_key(k));
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

    fn claims(sub: &str) -> VerifiedClaims {
        VerifiedClaims {
            sub: sub.to_owned(),
            roles: Vec::new(),
            exp: 0,
            jti: None,
        }
    }

    #[test]
    fn full_cache_evicts_expired_entries_before_live_ones() {
        let mut cache = TokenCache::new(2);
        cache.insert(digest("old"), claims("old"), 10, 0);
        cache.insert(digest("live"), claims("live"), 1_000, 0);
        cache.insert(digest("new"), claims("new"), 1_000, 50);
        assert!(matches!(cache.lookup(&digest("live"), 50), Lookup::Hit(_)));
        assert!(matches!(cache.lookup(&digest("new"), 50), Lookup::Hit(_)));
        assert!(matches!(cache.lookup(&digest("old"), 50), Lookup::Miss));
    }

    #[test]
    fn full_cache_of_live_entries_evicts_the_oldest() {
        let mut cache = TokenCache::new(2);
        cache.insert(digest("a"), claims("a"), 1_000, 0);
        cache.insert(digest("b"), claims("b"), 1_000, 0);
        cache.insert(digest("c"), claims("c"), 1_000, 0);
        assert!(matches!(cache.lookup(&digest("a"), 1), Lookup::Miss));
        assert!(matches!(cache.lookup(&digest("b"), 1), Lookup::Hit(_)));
        assert!(matches!(cache.lookup(&digest("c"), 1), Lookup::Hit(_)));
        assert_eq!(cache.stats().entries, 2);
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let mut cache = TokenCache::new(0);
        cache.insert(digest("a"), claims("a"), 1_000, 0);
        assert!(matches!(cache.lookup(&digest("a"), 1), Lookup::Miss));
    }
}
