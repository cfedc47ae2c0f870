//! Verification of a compact JWS access token: size limit, header checks, key choice by
//! `kid`, signature, then the claims (see `claims`).
//!
//! The algorithm is taken from the key, never from the token: `none` and HMAC are refused
//! outright, and a token whose `alg` differs from its key's `alg` is refused before any
//! crypto runs. The signature is checked before the payload is parsed, with keys prepared
//! when the JWKS was loaded (see `jwks`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use crate::claims::{RawClaims, VerifiedClaims};
use crate::error::TokenError;
use crate::jwks::{KeyAlgorithm, KeyStore};

/// Tokens longer than this are refused before any parsing, unless configured otherwise.
/// Bulwark's tokens are well under 1 KiB; the limit bounds the work a forged one costs.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;

/// What a token must satisfy besides its signature: the deployment's issuer and
/// audiences, the tolerated clock skew and the size limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The only accepted `iss`.
    pub issuer: String,
    /// `aud` must name one of these.
    pub audiences: Vec<String>,
    /// Tolerated clock difference on `exp` and `nbf`, in seconds.
    pub clock_skew_seconds: u64,
    /// Longest accepted token, in bytes.
    pub max_token_bytes: usize,
}

/// A token whose header was read and checked, but whose signature and claims were not:
/// it tells which key to fetch before [`Policy::verify_parsed`] runs.
#[derive(Debug, Clone)]
pub struct UnverifiedToken<'a> {
    payload: &'a str,
    signature: &'a str,
    /// `header.payload`: the bytes the signature covers.
    signing_input: &'a str,
    alg: KeyAlgorithm,
    kid: String,
}

impl UnverifiedToken<'_> {
    /// The `kid` the header names.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm the header names (one Bulwark accepts).
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.alg
    }
}

#[derive(Deserialize)]
struct RawHeader {
    alg: Option<serde_json::Value>,
    kid: Option<serde_json::Value>,
    crit: Option<serde_json::Value>,
}

impl Policy {
    /// Verifies `token` against `keys` at time `now` (seconds since the Unix epoch).
    pub fn verify(
        &self,
        token: &str,
        keys: &KeyStore,
        now: u64,
    ) -> Result<VerifiedClaims, TokenError> {
        let token = self.parse(token)?;
        self.verify_parsed(&token, keys, now)
    }

    /// Refuses a token over the size limit; the cheapest check, run before anything else
    /// (the edge runs it before its cache lookup, so an oversized token is never hashed).
    pub fn check_size(&self, token: &str) -> Result<(), TokenError> {
        if token.len() > self.max_token_bytes {
            return Err(TokenError::TooLarge {
                len: token.len(),
                limit: self.max_token_bytes,
            });
        }
        Ok(())
    }

    /// Checks the size and the header: what can be refused before a key is needed.
    pub fn parse<'a>(&self, token: &'a str) -> Result<UnverifiedToken<'a>, TokenError> {
        self.check_size(token)?;
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed("not three dot-separated parts"));
        };
        if header.is_empty() || payload.is_empty() {
            return Err(TokenError::Malformed("empty header or payload"));
        }
        let is_b64url = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !(is_b64url(header) && is_b64url(payload) && is_b64url(signature)) {
            return Err(TokenError::Malformed("not base64url"));
        }
        let (alg, kid) = read_header(header)?;
        if signature.is_empty() {
            return Err(TokenError::Malformed("empty signature"));
        }
        Ok(UnverifiedToken {
            payload,
            signature,
            signing_input: &token[..header.len() + 1 + payload.len()],
            alg,
            kid,
        })
    }

    /// Checks a parsed token's key, signature and claims.
    pub fn verify_parsed(
        &self,
        token: &UnverifiedToken<'_>,
        keys: &KeyStore,
        now: u64,
    ) -> Result<VerifiedClaims, TokenError> {
        let key = keys
            .get(&token.kid)
            .ok_or_else(|| TokenError::UnknownKid(token.kid.clone()))?;
        if key.algorithm != token.alg {
            return Err(TokenError::AlgorithmMismatch {
                token: token.alg.to_string(),
                key: key.algorithm.to_string(),
            });
        }
        let signature = URL_SAFE_NO_PAD
            .decode(token.signature)
            .map_err(|_| TokenError::Malformed("signature is not base64url"))?;
        if !key.verifies(token.signing_input.as_bytes(), &signature) {
            return Err(TokenError::BadSignature);
        }
        let payload = URL_SAFE_NO_PAD
            .decode(token.payload)
            .map_err(|_| TokenError::Malformed("payload is not base64url"))?;
        let raw: RawClaims = serde_json::from_slice(&payload)
            .map_err(|_| TokenError::Malformed("payload is not a JSON object of claims"))?;
        raw.check(self, now)
    }
}

/// Reads the protected header: the accepted algorithm and the `kid`.
fn read_header(header: &str) -> Result<(KeyAlgorithm, String), TokenError> {
    let header_json = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| TokenError::Malformed("header is not base64url"))?;
    let raw: RawHeader = serde_json::from_slice(&header_json)
        .map_err(|_| TokenError::Malformed("header is not a JSON object"))?;
    let alg_name = match raw.alg {
        Some(serde_json::Value::String(s)) => s,
        _ => return Err(TokenError::Malformed("header has no alg")),
    };
    let alg =
        KeyAlgorithm::from_jose(&alg_name).ok_or(TokenError::UnsupportedAlgorithm(alg_name))?;
    let kid = match raw.kid {
        Some(serde_json::Value::String(s)) if !s.is_empty() => s,
        Some(_) | None => return Err(TokenError::MissingKid),
    };
    // RFC 7515 §4.1.11: a token with critical extensions we do not implement must be refused.
    if raw.crit.is_some() {
        return Err(TokenError::Malformed("header has crit extensions"));
    }
    Ok((alg, kid))
}
