//! The run's Ed25519 key, the JWKS that publishes it, and the tokens the cases send: one
//! repeated token (cases d and the floors, as in bench-edge) and one per user (f, h).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signer as _;
use serde_json::{Value, json};

use crate::bench_edge::{AUDIENCE, ISSUER};

const KID: &str = "edge-costs-ed25519";

/// The key's JWKS and the signed tokens.
#[derive(Debug)]
pub struct Tokens {
    pub jwks: Vec<u8>,
    /// bench-edge's repeated token: the same claims, the same subject length.
    pub repeated: String,
    /// One token per user, each its own subject.
    pub users: Vec<String>,
}

impl Tokens {
    pub fn generate(users: usize) -> anyhow::Result<Self> {
        let key = ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng);
        let jwks = json!({ "keys": [{
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": KID,
            "x": URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes()),
        }]});
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let token = |sub: &str, jti: &str| {
            sign(
                &key,
                &json!({
                    "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "roles": ["user"],
                    "iat": now, "exp": now + 7_200, "jti": jti,
                }),
            )
        };
        Ok(Self {
            jwks: serde_json::to_vec(&jwks)?,
            repeated: token("0192f0c4-7d4e-7b1a-9f00-00000000be0c", "EdDSA-0"),
            users: (0..users)
                .map(|i| {
                    token(
                        &format!("0192f0c4-7d4e-7b1a-9f00-{i:012x}"),
                        &format!("user-{i}"),
                    )
                })
                .collect(),
        })
    }
}

fn sign(key: &ed25519_dalek::SigningKey, claims: &Value) -> String {
    let header = json!({ "alg": "EdDSA", "typ": "JWT", "kid": KID });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = key.sign(input.as_bytes()).to_bytes();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}
