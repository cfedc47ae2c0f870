//! The signing keys: an RFC 7517 JWKS parsed once into ready-to-use verifying keys.
//!
//! Only asymmetric signature keys with an explicit `alg` of EdDSA (Ed25519), RS256 or ES256
//! (P-256) are kept. Symmetric (`oct`) keys are never loaded: a published HMAC secret would
//! let anyone mint tokens.
//!
//! Keys are held ready to verify (an Ed25519 key with its precomputed table, see `ed25519`;
//! an RSA public key; a P-256 point), built when the JWKS is installed. jsonwebtoken's
//! `DecodingKey` keeps raw bytes and rebuilds the verifying key on every token, which inside
//! Wasm costs a point decompression per Ed25519 token; verifying with the same RustCrypto
//! crates directly avoids that.

use std::collections::HashMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use signature::Verifier as _;

use crate::ed25519::Ed25519Key;

/// RSA moduli below 2048 bits are refused (NIST SP 800-57 minimum).
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// Algorithms Bulwark accepts, each tied to one key type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// Ed25519 (`kty: OKP`, `crv: Ed25519`).
    EdDsa,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (`kty: RSA`).
    Rs256,
    /// ECDSA P-256 with SHA-256 (`kty: EC`, `crv: P-256`).
    Es256,
}

impl KeyAlgorithm {
    /// Parses a JOSE `alg` value; anything but the three accepted algorithms is `None`.
    pub fn from_jose(alg: &str) -> Option<Self> {
        match alg {
            "EdDSA" => Some(Self::EdDsa),
            "RS256" => Some(Self::Rs256),
            "ES256" => Some(Self::Es256),
            _ => None,
        }
    }

    /// The JOSE `alg` value.
    pub fn as_jose(self) -> &'static str {
        match self {
            Self::EdDsa => "EdDSA",
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_jose())
    }
}

/// One usable key: its algorithm and the verifying key built from it.
#[derive(Debug, Clone)]
pub struct VerificationKey {
    /// The only algorithm this key verifies.
    pub algorithm: KeyAlgorithm,
    key: PreparedKey,
}

/// A verifying key ready to check signatures: nothing is parsed or decompressed per token.
#[derive(Debug, Clone)]
enum PreparedKey {
    Ed25519(Box<Ed25519Key>),
    Rs256(rsa::pkcs1v15::VerifyingKey<sha2::Sha256>),
    Es256(p256::ecdsa::VerifyingKey),
}

impl VerificationKey {
    /// Whether `signature` (the JWS signature bytes) signs `message` (the JWS signing
    /// input, `header.payload`) under this key and its algorithm.
    pub(crate) fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.key {
            PreparedKey::Ed25519(key) => key.verifies(message, signature),
            PreparedKey::Rs256(key) => rsa::pkcs1v15::Signature::try_from(signature)
                .is_ok_and(|sig| key.verify(message, &sig).is_ok()),
            // JWS carries R || S (RFC 7518 §3.4), 64 bytes for P-256, not DER.
            PreparedKey::Es256(key) => p256::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|sig| key.verify(message, &sig).is_ok()),
        }
    }
}

/// Why a JWKS document was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// Not JSON, or no `keys` array.
    #[error("JWKS is not a JSON object with a `keys` array: {0}")]
    NotAJwks(String),
    /// Every key was skipped (reasons in `skipped`).
    #[error("JWKS has no usable signing key ({})", .skipped.join("; "))]
    NoUsableKey {
        /// Why each key was skipped.
        skipped: Vec<String>,
    },
}

/// The keys a JWKS yields, plus why any other key was skipped (for the log).
#[derive(Debug, Clone)]
pub struct LoadedJwks {
    /// The usable keys.
    pub store: KeyStore,
    /// One line per skipped key.
    pub skipped: Vec<String>,
}

/// Verification keys by `kid`.
#[derive(Debug, Clone, Default)]
pub struct KeyStore {
    keys: HashMap<String, VerificationKey>,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawJwk {
    kid: Option<String>,
    kty: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    public_key_use: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

impl KeyStore {
    /// Parses a JWKS document. Unusable keys are skipped (and reported), so one odd key
    /// from the issuer does not take the others down; a document with no usable key is
    /// an error, so that a bad fetch never replaces a good key set.
    pub fn from_jwks_json(bytes: &[u8]) -> Result<LoadedJwks, JwksError> {
        let raw: RawJwks =
            serde_json::from_slice(bytes).map_err(|e| JwksError::NotAJwks(e.to_string()))?;
        Self::from_jwks(raw.keys)
    }

    /// Parses the members of a JWKS's `keys` array, each an RFC 7517 JWK as JSON (the
    /// services receive the key set as API messages, not as one document), under the same
    /// rules as [`KeyStore::from_jwks_json`].
    pub fn from_jwks(jwks: Vec<serde_json::Value>) -> Result<LoadedJwks, JwksError> {
        let mut keys = HashMap::new();
        let mut skipped = Vec::new();
        for (index, value) in jwks.into_iter().enumerate() {
            match parse_key(value) {
                Ok((kid, key)) => {
                    if let std::collections::hash_map::Entry::Vacant(slot) = keys.entry(kid.clone())
                    {
                        slot.insert(key);
                    } else {
                        skipped.push(format!("keys[{index}] (kid {kid:?}): duplicate kid"));
                    }
                }
                Err((kid, reason)) => {
                    let kid = kid.map(|k| format!(" (kid {k:?})")).unwrap_or_default();
                    skipped.push(format!("keys[{index}]{kid}: {reason}"));
                }
            }
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey { skipped });
        }
        Ok(LoadedJwks {
            store: KeyStore { keys },
            skipped,
        })
    }

    /// The key with this `kid`.
    pub fn get(&self, kid: &str) -> Option<&VerificationKey> {
        self.keys.get(kid)
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is loaded (before the first successful fetch).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The loaded `kid`s, sorted (for logs).
    pub fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }
}

type KeyResult = Result<(String, VerificationKey), (Option<String>, String)>;

fn parse_key(value: serde_json::Value) -> KeyResult {
    let jwk: RawJwk =
        serde_json::from_value(value).map_err(|e| (None, format!("not a JWK object: {e}")))?;
    let kid = match jwk.kid.as_deref() {
        Some(k) if !k.is_empty() => k.to_owned(),
        _ => return Err((None, "no kid".to_owned())),
    };
    let fail = |reason: String| (Some(kid.clone()), reason);
    if let Some(u) = jwk.public_key_use.as_deref()
        && u != "sig"
    {
        return Err(fail(format!("use {u:?} is not \"sig\"")));
    }
    let alg_name = jwk
        .alg
        .as_deref()
        .ok_or_else(|| fail("no alg".to_owned()))?;
    let algorithm = KeyAlgorithm::from_jose(alg_name).ok_or_else(|| {
        fail(format!(
            "alg {alg_name:?} is not one of EdDSA, RS256, ES256"
        ))
    })?;
    let kty = jwk.kty.as_deref().unwrap_or_default();
    let crv = jwk.crv.as_deref().unwrap_or_default();
    let key = match algorithm {
        KeyAlgorithm::EdDsa => {
            if kty != "OKP" || crv != "Ed25519" {
                return Err(fail(format!(
                    "EdDSA needs kty OKP and crv Ed25519, got {kty:?}/{crv:?}"
                )));
            }
            let x = decode_component(&jwk.x, "x", 32).map_err(fail)?;
            let bytes: [u8; 32] = x
                .as_slice()
                .try_into()
                .map_err(|_| fail("x is not 32 bytes".to_owned()))?;
            let key = Ed25519Key::new(bytes).map_err(|e| fail(format!("x is {e}")))?;
            PreparedKey::Ed25519(Box::new(key))
        }
        KeyAlgorithm::Es256 => {
            if kty != "EC" || crv != "P-256" {
                return Err(fail(format!(
                    "ES256 needs kty EC and crv P-256, got {kty:?}/{crv:?}"
                )));
            }
            let x = decode_component(&jwk.x, "x", 32).map_err(fail)?;
            let y = decode_component(&jwk.y, "y", 32).map_err(fail)?;
            // SEC1 uncompressed point.
            let mut point = Vec::with_capacity(65);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point)
                .map_err(|_| fail("x, y is not a P-256 point".to_owned()))?;
            PreparedKey::Es256(key)
        }
        KeyAlgorithm::Rs256 => {
            if kty != "RSA" {
                return Err(fail(format!("RS256 needs kty RSA, got {kty:?}")));
            }
            let n = decode_component(&jwk.n, "n", 0).map_err(fail)?;
            let e = decode_component(&jwk.e, "e", 0).map_err(fail)?;
            let significant = n.iter().skip_while(|b| **b == 0).count();
            if significant < MIN_RSA_MODULUS_BYTES {
                return Err(fail(format!(
                    "RSA modulus of {} bits is below 2048",
                    significant * 8
                )));
            }
            let key = rsa::RsaPublicKey::new(
                rsa::BigUint::from_bytes_be(&n),
                rsa::BigUint::from_bytes_be(&e),
            )
            .map_err(|err| fail(format!("not a usable RSA public key: {err}")))?;
            PreparedKey::Rs256(rsa::pkcs1v15::VerifyingKey::new(key))
        }
    };
    Ok((kid, VerificationKey { algorithm, key }))
}

/// Decodes a base64url member; `exact_len` 0 means any non-empty length.
fn decode_component(
    value: &Option<String>,
    name: &str,
    exact_len: usize,
) -> Result<Vec<u8>, String> {
    let text = value.as_deref().ok_or_else(|| format!("no {name}"))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| format!("{name} is not base64url"))?;
    if bytes.is_empty() || (exact_len != 0 && bytes.len() != exact_len) {
        return Err(format!("{name} has {} bytes", bytes.len()));
    }
    Ok(bytes)
}
