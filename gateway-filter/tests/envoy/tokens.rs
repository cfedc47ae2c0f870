//! Test keys (shared with the logic crate's tests) and token signing.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

pub const ISSUER: &str = "https://auth.bulwark.test";
pub const AUDIENCE: &str = "bulwark-api";

pub struct TestKey {
    kid: &'static str,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

impl TestKey {
    fn load(file: &str, kid: &'static str, alg: Algorithm) -> Self {
        let path = format!("{}/logic/tests/keys/{file}", env!("CARGO_MANIFEST_DIR"));
        let pem = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
        let encoding = match alg {
            Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
            _ => panic!("no test key for {alg:?}"),
        }
        .unwrap_or_else(|e| panic!("parsing {path}: {e}"));
        let mut jwk =
            serde_json::to_value(Jwk::from_encoding_key(&encoding, alg).unwrap()).unwrap();
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        Self {
            kid,
            alg,
            encoding,
            jwk,
        }
    }

    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with_kid(claims, self.kid)
    }

    pub fn sign_with_kid(&self, claims: &Value, kid: &str) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

pub struct TestKeys {
    pub ed_a: TestKey,
    pub ed_b: TestKey,
    pub rsa: TestKey,
}

impl TestKeys {
    pub fn load() -> Self {
        Self {
            ed_a: TestKey::load("ed25519_a.pem", "ed-a", Algorithm::EdDSA),
            ed_b: TestKey::load("ed25519_b.pem", "ed-b", Algorithm::EdDSA),
            rsa: TestKey::load("rsa2048.pem", "rsa-1", Algorithm::RS256),
        }
    }

    pub fn jwks(&self, keys: &[&TestKey]) -> Vec<u8> {
        let keys: Vec<&Value> = keys.iter().map(|k| &k.jwk).collect();
        serde_json::to_vec(&json!({ "keys": keys })).unwrap()
    }

    /// The key-confusion attack: HS256 keyed with the public key's bytes.
    pub fn hs256_with_public_key(&self, key: &TestKey) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key.kid.to_owned());
        let secret = key.jwk["x"].as_str().unwrap().as_bytes();
        jsonwebtoken::encode(&header, &claims(0), &EncodingKey::from_secret(secret)).unwrap()
    }
}

/// Claims of an access token issued `offset` seconds from now (negative: in the past),
/// valid for 15 minutes.
/// The user of the test tokens (a `sub` must be a canonical UUID or `client:<id>`).
pub const USER_ID: &str = "0192f0c4-7d4e-7b1a-9f00-00000000002a";

pub fn claims(offset: i64) -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + offset;
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": USER_ID,
        "roles": ["admin", "auditor"],
        "iat": now,
        "exp": now + 900,
        "jti": format!("jti-{now}"),
    })
}
