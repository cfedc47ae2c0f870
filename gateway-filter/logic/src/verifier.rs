//! JWT verification: size limit, header checks, key choice by `kid`, signature, then
//! claims (`iss`, `aud`, `exp`/`nbf` with skew), with a cache of verified tokens.
//!
//! The algorithm is taken from the key, never from the token: `none` and HMAC are refused
//! outright, and a token whose `alg` differs from its key's `alg` is refused before any
//! crypto runs. The signature is checked before the payload is parsed, with keys prepared
//! when the JWKS was installed (see `jwks`).

use std::rc::Rc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use crate::cache::{CacheStats, Lookup, TokenCache};
use crate::config::GatewayConfig;
use crate::error::AuthError;
use crate::jwks::{KeyAlgorithm, KeyStore};

/// What a verified token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedClaims {
    /// `sub`: the user id.
    pub sub: String,
    /// `roles`: empty when the claim is absent.
    pub roles: Vec<String>,
    /// `exp`, seconds since the Unix epoch.
    pub exp: u64,
    /// `jti`, when present.
    pub jti: Option<String>,
}

/// Verifies bearer tokens against the current key set.
#[derive(Debug)]
pub struct TokenVerifier {
    max_token_bytes: usize,
    clock_skew_seconds: u64,
    issuer: String,
    audiences: Vec<String>,
    keys: KeyStore,
    cache: TokenCache,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: Option<serde_json::Value>,
    kid: Option<serde_json::Value>,
    crit: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawClaims {
    iss: Option<serde_json::Value>,
    aud: Option<serde_json::Value>,
    sub: Option<serde_json::Value>,
    exp: Option<serde_json::Value>,
    nbf: Option<serde_json::Value>,
    roles: Option<serde_json::Value>,
    jti: Option<serde_json::Value>,
}

impl TokenVerifier {
    /// A verifier with no keys yet: every token fails with [`AuthError::UnknownKid`]
    /// until [`TokenVerifier::install_keys`] is called.
    pub fn new(config: &GatewayConfig) -> Self {
        Self {
            max_token_bytes: config.max_token_bytes,
            clock_skew_seconds: config.clock_skew_seconds,
            issuer: config.issuer.clone(),
            audiences: config.audiences.clone(),
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
        if token.len() > self.max_token_bytes {
            return Err(AuthError::TooLarge {
                len: token.len(),
                limit: self.max_token_bytes,
            });
        }
        match self.cache.lookup(token, now) {
            Lookup::Hit(claims) => return Ok(claims),
            Lookup::Expired => return Err(AuthError::Expired),
            Lookup::Miss => {}
        }
        let claims = Rc::new(self.verify_uncached(token, now)?);
        let valid_until = claims.exp.saturating_add(self.clock_skew_seconds);
        self.cache
            .insert(token, Rc::clone(&claims), valid_until, now);
        Ok(claims)
    }

    fn verify_uncached(&self, token: &str, now: u64) -> Result<VerifiedClaims, AuthError> {
        let parts = JwsParts::split(token)?;
        let (alg, kid) = read_header(parts.header)?;
        if parts.signature.is_empty() {
            return Err(AuthError::Malformed("empty signature"));
        }
        let key = self
            .keys
            .get(&kid)
            .ok_or_else(|| AuthError::UnknownKid(kid.clone()))?;
        if key.algorithm != alg {
            return Err(AuthError::AlgorithmMismatch {
                token: alg.to_string(),
                key: key.algorithm.to_string(),
            });
        }
        let signature = URL_SAFE_NO_PAD
            .decode(parts.signature)
            .map_err(|_| AuthError::Malformed("signature is not base64url"))?;
        if !key.verifies(parts.signing_input.as_bytes(), &signature) {
            return Err(AuthError::BadSignature);
        }
        let payload = URL_SAFE_NO_PAD
            .decode(parts.payload)
            .map_err(|_| AuthError::Malformed("payload is not base64url"))?;
        let raw: RawClaims = serde_json::from_slice(&payload)
            .map_err(|_| AuthError::Malformed("payload is not a JSON object of claims"))?;
        self.check_claims(raw, now)
    }

    /// RFC 7519 §4.1.3: `aud` is one string or an array of strings, and must name one of
    /// the configured audiences.
    fn audience_accepted(&self, aud: Option<&serde_json::Value>) -> bool {
        let accepted = |value: &serde_json::Value| {
            value
                .as_str()
                .is_some_and(|aud| self.audiences.iter().any(|a| a == aud))
        };
        match aud {
            Some(serde_json::Value::Array(items)) => items.iter().any(accepted),
            Some(value) => accepted(value),
            None => false,
        }
    }

    fn check_claims(&self, raw: RawClaims, now: u64) -> Result<VerifiedClaims, AuthError> {
        for (name, present) in [
            ("exp", raw.exp.is_some()),
            ("iss", raw.iss.is_some()),
            ("aud", raw.aud.is_some()),
            ("sub", raw.sub.is_some()),
        ] {
            if !present {
                return Err(AuthError::MissingClaim(name.to_owned()));
            }
        }
        if !matches!(&raw.iss, Some(serde_json::Value::String(iss)) if *iss == self.issuer) {
            return Err(AuthError::WrongIssuer);
        }
        if !self.audience_accepted(raw.aud.as_ref()) {
            return Err(AuthError::WrongAudience);
        }
        // Present (checked above); what is left to check is each value.
        let exp = raw
            .exp
            .as_ref()
            .and_then(numeric_date)
            .ok_or(AuthError::InvalidClaim("exp"))?;
        if now > exp.saturating_add(self.clock_skew_seconds) {
            return Err(AuthError::Expired);
        }
        if let Some(v) = raw.nbf {
            let nbf = numeric_date(&v).ok_or(AuthError::InvalidClaim("nbf"))?;
            if nbf > now.saturating_add(self.clock_skew_seconds) {
                return Err(AuthError::NotYetValid);
            }
        }
        let sub = match raw.sub {
            Some(serde_json::Value::String(s)) if is_header_safe(&s, false) => s,
            _ => return Err(AuthError::InvalidClaim("sub")),
        };
        let roles = match raw.roles {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(items)) => items
                .into_iter()
                .map(|item| match item {
                    // Roles travel comma-joined in one header, so a comma would forge a role.
                    serde_json::Value::String(s) if is_header_safe(&s, true) => Ok(s),
                    _ => Err(AuthError::InvalidClaim("roles")),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(AuthError::InvalidClaim("roles")),
        };
        let jti = match raw.jti {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s),
            Some(_) => return Err(AuthError::InvalidClaim("jti")),
        };
        Ok(VerifiedClaims {
            sub,
            roles,
            exp,
            jti,
        })
    }
}

/// The three parts of a JWS compact serialization, still base64url-encoded.
struct JwsParts<'a> {
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
    /// `header.payload`: the bytes the signature covers.
    signing_input: &'a str,
}

impl<'a> JwsParts<'a> {
    fn split(token: &'a str) -> Result<Self, AuthError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed("not three dot-separated parts"));
        };
        if header.is_empty() || payload.is_empty() {
            return Err(AuthError::Malformed("empty header or payload"));
        }
        let is_b64url = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !(is_b64url(header) && is_b64url(payload) && is_b64url(signature)) {
            return Err(AuthError::Malformed("not base64url"));
        }
        Ok(Self {
            header,
            payload,
            signature,
            signing_input: &token[..header.len() + 1 + payload.len()],
        })
    }
}

/// Reads the protected header: the accepted algorithm and the `kid`.
fn read_header(header: &str) -> Result<(KeyAlgorithm, String), AuthError> {
    let header_json = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| AuthError::Malformed("header is not base64url"))?;
    let raw: RawHeader = serde_json::from_slice(&header_json)
        .map_err(|_| AuthError::Malformed("header is not a JSON object"))?;
    let alg_name = match raw.alg {
        Some(serde_json::Value::String(s)) => s,
        _ => return Err(AuthError::Malformed("header has no alg")),
    };
    let alg =
        KeyAlgorithm::from_jose(&alg_name).ok_or(AuthError::UnsupportedAlgorithm(alg_name))?;
    let kid = match raw.kid {
        Some(serde_json::Value::String(s)) if !s.is_empty() => s,
        Some(_) | None => return Err(AuthError::MissingKid),
    };
    // RFC 7515 §4.1.11: a token with critical extensions we do not implement must be refused.
    if raw.crit.is_some() {
        return Err(AuthError::Malformed("header has crit extensions"));
    }
    Ok((alg, kid))
}

/// An RFC 7519 NumericDate: a non-negative number of seconds (fractions are truncated).
fn numeric_date(value: &serde_json::Value) -> Option<u64> {
    let number = value.as_number()?;
    if let Some(n) = number.as_u64() {
        return Some(n);
    }
    let f = number.as_f64()?;
    // The upper bound keeps the cast exact and excludes NaN and infinities.
    (f.is_finite() && (0.0..9.0e15).contains(&f)).then_some(f as u64)
}

/// Whether a claim value can be forwarded in a header: printable ASCII, no spaces.
fn is_header_safe(value: &str, forbid_comma: bool) -> bool {
    !value.is_empty()
        && value.len() <= 256
        && value
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && !(forbid_comma && b == b','))
}
