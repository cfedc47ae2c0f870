//! Test keys, a test configuration and token signing.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bulwark_gateway_logic::{GatewayConfig, TokenVerifier};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// The fixed "current time" of the tests.
pub const NOW: u64 = 1_750_000_000;
pub const ISSUER: &str = "https://auth.bulwark.test";
pub const AUDIENCE: &str = "bulwark-api";
/// The user of the test tokens (a `sub` must be a canonical UUID or `client:<id>`).
pub const USER_ID: &str = "0192f0c4-7d4e-7b1a-9f00-00000000002a";

/// A private key for signing and its public JWK.
pub struct TestKey {
    pub kid: &'static str,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    pub jwk: Value,
}

fn load(file: &str, kid: &'static str, alg: Algorithm) -> TestKey {
    let path = format!("{}/tests/keys/{file}", env!("CARGO_MANIFEST_DIR"));
    let pem = std::fs::read(&path).unwrap_or_else(|e| panic!("reading test key {path}: {e}"));
    let encoding = match alg {
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        other => panic!("no test key for {other:?}"),
    }
    .unwrap_or_else(|e| panic!("parsing test key {path}: {e}"));
    let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&encoding, alg).unwrap()).unwrap();
    jwk["kid"] = json!(kid);
    jwk["use"] = json!("sig");
    TestKey {
        kid,
        alg,
        encoding,
        jwk,
    }
}

pub fn ed25519_a() -> TestKey {
    load("ed25519_a.pem", "ed-a", Algorithm::EdDSA)
}

pub fn ed25519_b() -> TestKey {
    load("ed25519_b.pem", "ed-b", Algorithm::EdDSA)
}

pub fn rsa() -> TestKey {
    load("rsa2048.pem", "rsa-1", Algorithm::RS256)
}

pub fn p256() -> TestKey {
    load("p256.pem", "ec-1", Algorithm::ES256)
}

/// A JWKS document holding these keys' public halves.
pub fn jwks(keys: &[&TestKey]) -> Vec<u8> {
    let keys: Vec<&Value> = keys.iter().map(|k| &k.jwk).collect();
    serde_json::to_vec(&json!({ "keys": keys })).unwrap()
}

/// The smallest valid configuration, with defaults everywhere else.
pub fn config_json() -> Value {
    json!({
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "jwks": { "cluster": "bulwark_auth" },
    })
}

pub fn config() -> GatewayConfig {
    GatewayConfig::from_json(&serde_json::to_vec(&config_json()).unwrap()).unwrap()
}

/// A verifier holding `keys`.
pub fn verifier(keys: &[&TestKey]) -> TokenVerifier {
    let mut verifier = TokenVerifier::new(&config());
    let loaded = bulwark_gateway_logic::KeyStore::from_jwks_json(&jwks(keys)).unwrap();
    assert!(
        loaded.skipped.is_empty(),
        "test keys skipped: {:?}",
        loaded.skipped
    );
    verifier.install_keys(loaded.store);
    verifier
}

/// Claims of a valid access token at [`NOW`].
pub fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": USER_ID,
        "iat": NOW,
        "exp": NOW + 900,
        "jti": "jti-1",
        "roles": ["admin", "auditor"],
    })
}

/// Signs `claims` with `key`, naming its kid and algorithm in the header.
pub fn sign(key: &TestKey, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.to_owned());
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

/// Base64url of a JSON value, as in a JWS part.
pub fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

/// The three parts of a compact token.
pub fn parts(token: &str) -> (String, String, String) {
    let mut it = token.split('.').map(str::to_owned);
    (it.next().unwrap(), it.next().unwrap(), it.next().unwrap())
}
