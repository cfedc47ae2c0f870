//! JWT verification: size limit, header checks, key choice by `kid`, signature, then
//! claims (`iss`, `aud`, `exp`/`nbf` with skew), with a cache of verified tokens.
//!
//! The header is read here before jsonwebtoken sees the token so that the algorithm is
//! taken from the key, never from the token: `none` and HMAC are refused outright, and a
//! token whose `alg` differs from its key's `alg` is refused before any crypto runs.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Validation;
use jsonwebtoken::errors::ErrorKind;
use serde::Deserialize;

use crate::cache::{self, CacheStats, Lookup, TokenCache};
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
    keys: KeyStore,
    validations: Validations,
    cache: TokenCache,
}

/// One prepared jsonwebtoken validation per accepted algorithm, built once.
#[derive(Debug)]
struct Validations {
    eddsa: Validation,
    rs256: Validation,
    es256: Validation,
}

impl Validations {
    fn new(config: &GatewayConfig) -> Self {
        let build = |alg: KeyAlgorithm| {
            let mut v = Validation::new(alg.jsonwebtoken());
            v.set_issuer(&[config.issuer.as_str()]);
            v.set_audience(&config.audiences);
            v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            // Time is checked against the host clock below, not the wall clock jsonwebtoken
            // would read, so that tests control it and the proxy's clock is the one used.
            v.validate_exp = false;
            v.validate_nbf = false;
            v.leeway = 0;
            v
        };
        Self {
            eddsa: build(KeyAlgorithm::EdDsa),
            rs256: build(KeyAlgorithm::Rs256),
            es256: build(KeyAlgorithm::Es256),
        }
    }

    fn get(&self, alg: KeyAlgorithm) -> &Validation {
        match alg {
            KeyAlgorithm::EdDsa => &self.eddsa,
            KeyAlgorithm::Rs256 => &self.rs256,
            KeyAlgorithm::Es256 => &self.es256,
        }
    }
}

#[derive(Deserialize)]
struct RawHeader {
    alg: Option<serde_json::Value>,
    kid: Option<serde_json::Value>,
    crit: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawClaims {
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
            keys: KeyStore::default(),
            validations: Validations::new(config),
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
    pub fn verify(&mut self, token: &str, now: u64) -> Result<VerifiedClaims, AuthError> {
        if token.len() > self.max_token_bytes {
            return Err(AuthError::TooLarge {
                len: token.len(),
                limit: self.max_token_bytes,
            });
        }
        let digest = cache::digest(token);
        match self.cache.lookup(&digest, now) {
            Lookup::Hit(claims) => return Ok(claims),
            Lookup::Expired => return Err(AuthError::Expired),
            Lookup::Miss => {}
        }
        let claims = self.verify_uncached(token, now)?;
        let valid_until = claims.exp.saturating_add(self.clock_skew_seconds);
        self.cache.insert(digest, claims.clone(), valid_until, now);
        Ok(claims)
    }

    fn verify_uncached(&self, token: &str, now: u64) -> Result<VerifiedClaims, AuthError> {
        let (alg, kid) = read_header(token)?;
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
        let data = jsonwebtoken::decode::<RawClaims>(token, &key.key, self.validations.get(alg))
            .map_err(map_jwt_error)?;
        self.check_claims(data.claims, now)
    }

    fn check_claims(&self, raw: RawClaims, now: u64) -> Result<VerifiedClaims, AuthError> {
        let exp = match raw.exp {
            Some(v) => numeric_date(&v).ok_or(AuthError::InvalidClaim("exp"))?,
            None => return Err(AuthError::MissingClaim("exp".to_owned())),
        };
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
            Some(_) => return Err(AuthError::InvalidClaim("sub")),
            None => return Err(AuthError::MissingClaim("sub".to_owned())),
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

/// Reads the protected header: the accepted algorithm and the `kid`.
fn read_header(token: &str) -> Result<(KeyAlgorithm, String), AuthError> {
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
    if signature.is_empty() {
        return Err(AuthError::Malformed("empty signature"));
    }
    Ok((alg, kid))
}

fn map_jwt_error(err: jsonwebtoken::errors::Error) -> AuthError {
    match err.into_kind() {
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim(claim),
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
            AuthError::UnsupportedAlgorithm("(rejected by verifier)".to_owned())
        }
        // A key that cannot verify anything: the client cannot tell it from a bad signature.
        ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => {
            log::warn!("a JWKS key was rejected by the crypto provider while verifying a token");
            AuthError::BadSignature
        }
        _ => AuthError::Malformed("payload is not a JSON object of claims"),
    }
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
