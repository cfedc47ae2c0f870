//! Ed25519 signing keys: generation, the PKCS#8 form stored in `signing_keys`, and
//! the public half as an RFC 7517 JWK whose `kid` is its RFC 7638 thumbprint.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use rand::TryRngCore as _;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroize as _;

use crate::error::Error;

/// The JWS algorithm of every key Auth generates.
pub const ALGORITHM: &str = "EdDSA";

/// The Authz permission that allows rotating the signing key (`admin` holds it too).
pub const ROTATE_PERMISSION: &str = "keys:write";

/// The public half of a signing key, exactly as published in the JWKS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicJwk {
    pub kid: String,
    pub kty: String,
    pub crv: String,
    pub x: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub key_use: String,
}

impl PublicJwk {
    /// An Ed25519 public key (32 bytes) as an OKP JWK; the kid is its thumbprint, so
    /// the same key always gets the same id.
    fn ed25519(public_key: &[u8; 32]) -> Self {
        let x = URL_SAFE_NO_PAD.encode(public_key);
        // RFC 7638: the required members, lexicographically ordered, no whitespace.
        let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
        Self {
            kid,
            kty: "OKP".to_owned(),
            crv: "Ed25519".to_owned(),
            x,
            alg: ALGORITHM.to_owned(),
            key_use: "sig".to_owned(),
        }
    }

    /// The API's JWK message.
    pub fn to_proto(&self) -> bulwark_proto::auth::v1::Jwk {
        bulwark_proto::auth::v1::Jwk {
            kid: self.kid.clone(),
            kty: self.kty.clone(),
            alg: self.alg.clone(),
            r#use: self.key_use.clone(),
            crv: Some(self.crv.clone()),
            x: Some(self.x.clone()),
            y: None,
            n: None,
            e: None,
        }
    }

    /// jsonwebtoken's JWK, to check a key round-trips through it.
    #[cfg(test)]
    pub fn to_jwt(&self) -> Result<jsonwebtoken::jwk::Jwk, String> {
        serde_json::to_value(self)
            .and_then(serde_json::from_value)
            .map_err(|e| format!("JWK {}: {e}", self.kid))
    }
}

/// A freshly generated key pair, ready to be stored.
pub struct NewSigningKey {
    /// PKCS#8 v1 DER of the private key, the form jsonwebtoken signs with.
    pub private_der: Vec<u8>,
    pub public: PublicJwk,
}

impl std::fmt::Debug for NewSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSigningKey")
            .field("kid", &self.public.kid)
            .finish_non_exhaustive()
    }
}

impl NewSigningKey {
    /// A new Ed25519 key from the operating system's random source.
    pub fn generate() -> Result<Self, Error> {
        let mut seed = [0u8; 32];
        OsRng
            .try_fill_bytes(&mut seed)
            .map_err(|e| Error::Crypto(format!("OS random source failed: {e}")))?;
        let key = SigningKey::from_bytes(&seed);
        seed.zeroize();
        let der = key
            .to_pkcs8_der()
            .map_err(|e| Error::Crypto(format!("PKCS#8 encoding failed: {e}")))?;
        Ok(Self {
            private_der: der.as_bytes().to_vec(),
            public: PublicJwk::ed25519(&key.verifying_key().to_bytes()),
        })
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

    use super::*;

    #[test]
    fn generated_key_signs_tokens_its_jwk_verifies() {
        let Ok(key) = NewSigningKey::generate() else {
            panic!("key generation failed");
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.public.kid.clone());
        let claims = serde_json::json!({"sub": "x", "exp": 4_000_000_000_i64});
        let token = jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_ed_der(&key.private_der),
        )
        .unwrap_or_else(|e| panic!("signing with the stored PKCS#8 form failed: {e}"));
        let jwk = key
            .public
            .to_jwt()
            .unwrap_or_else(|e| panic!("JWK not understood by jsonwebtoken: {e}"));
        let decoding =
            DecodingKey::from_jwk(&jwk).unwrap_or_else(|e| panic!("JWK not usable: {e}"));
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_required_spec_claims(&["exp"]);
        assert!(
            jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation).is_ok(),
            "the published JWK does not verify what the private key signed"
        );
    }

    #[test]
    fn jwk_has_the_published_members_and_a_thumbprint_kid() {
        let Ok(key) = NewSigningKey::generate() else {
            panic!("key generation failed");
        };
        let json = serde_json::to_value(&key.public).unwrap_or_default();
        for (member, value) in [
            ("kty", "OKP"),
            ("crv", "Ed25519"),
            ("alg", "EdDSA"),
            ("use", "sig"),
        ] {
            assert_eq!(json[member], value, "member {member}");
        }
        assert_eq!(key.public.kid.len(), 43, "base64url SHA-256 thumbprint");
        let jwk = key.public.to_jwt().unwrap_or_else(|e| panic!("{e}"));
        let thumbprint = jwk.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256);
        assert_eq!(thumbprint.ok().as_deref(), Some(key.public.kid.as_str()));
    }
}
