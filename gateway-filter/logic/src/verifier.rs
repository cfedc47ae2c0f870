//! The edge's token verifier: the token contract's rules (`bulwark_token::Policy`) with
//! the filter's configuration, the current key set, and a cache of verified tokens.
//!
//! Every rule (size, header, algorithm from the key, signature, claims) is the contract's,
//! the same code the services run; this module only decides when a token can be answered
//! from the cache instead.

use std::rc::Rc;

use bulwark_token::{KeyStore, Policy};

use crate::cache::{CacheStats, Lookup, TokenCache};
use crate::config::GatewayConfig;
use crate::error::AuthError;

/// What a verified token says about its bearer: the contract's claims.
pub use bulwark_token::VerifiedClaims;

/// Whether the verified-token cache answered a verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheAnswer {
    /// The cache answered: the token's claims, or that it has expired since.
    Hit,
    /// The token was verified in full.
    Miss,
    /// No token was looked up (no or an unreadable token, a public route).
    NotAsked,
}

/// Verifies bearer tokens against the current key set.
#[derive(Debug)]
pub struct TokenVerifier {
    policy: Policy,
    keys: KeyStore,
    cache: TokenCache<VerifiedClaims>,
}

impl TokenVerifier {
    /// A verifier with no keys yet: every token fails with [`AuthError::UnknownKid`]
    /// until [`TokenVerifier::install_keys`] is called.
    pub fn new(config: &GatewayConfig) -> Self {
        Self {
            policy: Policy {
                issuer: config.issuer.clone(),
                audiences: config.audiences.clone(),
                clock_skew_seconds: config.clock_skew_seconds,
                max_token_bytes: config.max_token_bytes,
            },
            keys: KeyStore::default(),
            cache: TokenCache::new(config.token_cache_size),
        }
    }

    /// Replaces the key set and forgets every cached token.
    pub fn install_keys(&mut self, keys: KeyStore) {
        self.keys = keys;
        self.cache.clear();
    }

    /// The current key set.
    pub fn keys(&self) -> &KeyStore {
        &self.keys
    }

    /// Cache counters.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// Verifies `token` at time `now` (seconds since the Unix epoch, from the host clock).
    /// A token verified before is answered from the cache until it expires.
    pub fn verify(&mut self, token: &str, now: u64) -> Result<Rc<VerifiedClaims>, AuthError> {
        self.verify_raw(token.as_bytes(), now)
    }

    /// [`TokenVerifier::verify`] for a token as the client sent it, read as text (bytes
    /// that are not UTF-8 as U+FFFD) only when the cache does not answer: every cached
    /// token verified, so is ASCII, and bytes equal to it are that text.
    pub fn verify_raw(&mut self, token: &[u8], now: u64) -> Result<Rc<VerifiedClaims>, AuthError> {
        self.verify_raw_answered(token, now).0
    }

    /// [`TokenVerifier::verify_raw`], with whether the cache answered: the request's
    /// cache fact, without reading the cache's counters around the call.
    pub fn verify_raw_answered(
        &mut self,
        token: &[u8],
        now: u64,
    ) -> (Result<Rc<VerifiedClaims>, AuthError>, CacheAnswer) {
        // Before the lookup, so an oversized token is never hashed. As text a token is no
        // shorter than its bytes, so only a token over the limit needs reading for the
        // error, which gives its length as text.
        if token.len() > self.policy.max_token_bytes
            && let Err(e) = self.policy.check_size(&String::from_utf8_lossy(token))
        {
            return (Err(e), CacheAnswer::NotAsked);
        }
        match self.cache.lookup(token, now) {
            Lookup::Hit(claims) => (Ok(claims), CacheAnswer::Hit),
            // Counted as a hit: the cache answered, with the token's expiry.
            Lookup::Expired => (Err(AuthError::Expired), CacheAnswer::Hit),
            Lookup::Miss => (self.verify_uncached(token, now), CacheAnswer::Miss),
        }
    }

    /// Verifies a token the cache did not answer, and caches it if it verifies.
    fn verify_uncached(&mut self, token: &[u8], now: u64) -> Result<Rc<VerifiedClaims>, AuthError> {
        let token = String::from_utf8_lossy(token);
        let claims = Rc::new(self.policy.verify(&token, &self.keys, now)?);
        // The contract accepts a token until `exp` plus the skew; the cache holds it as long.
        let valid_until = claims.exp.saturating_add(self.policy.clock_skew_seconds);
        self.cache
            .insert(&token, Rc::clone(&claims), valid_until, now);
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_MAX_TOKEN_BYTES;

    fn verifier() -> TokenVerifier {
        let config = GatewayConfig::from_json(
            br#"{"issuer": "https://auth.test", "audiences": ["api"], "jwks": {"cluster": "auth"}}"#,
        );
        match config {
            Ok(config) => TokenVerifier::new(&config),
            Err(e) => unreachable!("a valid configuration: {e}"),
        }
    }

    #[test]
    fn a_raw_token_is_refused_as_its_text_is() {
        let oversized = [b'a', 0xff].repeat(DEFAULT_MAX_TOKEN_BYTES / 2 + 1);
        let long_as_text = [b'a', 0xff].repeat(DEFAULT_MAX_TOKEN_BYTES / 3);
        for token in [
            &b"abc.def.ghi"[..],
            b"ab\xffc.def.ghi",
            &oversized,
            &long_as_text,
        ] {
            let text = String::from_utf8_lossy(token);
            assert_eq!(
                verifier().verify_raw(token, 1_000),
                verifier().verify(&text, 1_000),
                "{} bytes refused differently",
                token.len()
            );
        }
    }
}
