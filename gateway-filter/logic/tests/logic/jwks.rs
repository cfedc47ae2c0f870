//! Parsing RFC 7517 key sets: which keys are kept and which are skipped.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bulwark_gateway_logic::{JwksError, KeyAlgorithm, KeyStore};
use serde_json::{Value, json};

use crate::support::{ed25519_a, p256, rsa};

fn load(keys: Vec<Value>) -> Result<bulwark_gateway_logic::jwks::LoadedJwks, JwksError> {
    KeyStore::from_jwks_json(&serde_json::to_vec(&json!({ "keys": keys })).unwrap())
}

#[test]
fn eddsa_rs256_and_es256_keys_are_loaded_with_their_algorithms() {
    let loaded = load(vec![ed25519_a().jwk, rsa().jwk, p256().jwk]).unwrap();
    assert!(loaded.skipped.is_empty(), "{:?}", loaded.skipped);
    assert_eq!(loaded.store.kids(), ["ec-1", "ed-a", "rsa-1"]);
    assert_eq!(
        loaded.store.get("ed-a").unwrap().algorithm,
        KeyAlgorithm::EdDsa
    );
    assert_eq!(
        loaded.store.get("rsa-1").unwrap().algorithm,
        KeyAlgorithm::Rs256
    );
    assert_eq!(
        loaded.store.get("ec-1").unwrap().algorithm,
        KeyAlgorithm::Es256
    );
}

#[test]
fn symmetric_key_is_never_loaded() {
    let oct = json!({"kty": "oct", "kid": "hmac", "alg": "HS256", "k": "c2VjcmV0"});
    let loaded = load(vec![oct, ed25519_a().jwk]).unwrap();
    assert!(loaded.store.get("hmac").is_none());
    assert!(loaded.skipped[0].contains("hmac"), "{:?}", loaded.skipped);
}

#[test]
fn keys_without_kid_or_alg_or_for_encryption_are_skipped() {
    let mut no_kid = ed25519_a().jwk;
    no_kid.as_object_mut().unwrap().remove("kid");
    let mut no_alg = ed25519_a().jwk;
    no_alg["kid"] = json!("no-alg");
    no_alg.as_object_mut().unwrap().remove("alg");
    let mut enc = ed25519_a().jwk;
    enc["kid"] = json!("enc");
    enc["use"] = json!("enc");
    let loaded = load(vec![no_kid, no_alg, enc, p256().jwk]).unwrap();
    assert_eq!(loaded.store.kids(), ["ec-1"]);
    assert_eq!(loaded.skipped.len(), 3, "{:?}", loaded.skipped);
}

#[test]
fn key_whose_type_does_not_fit_its_alg_is_skipped() {
    let mut liar = p256().jwk;
    liar["alg"] = json!("EdDSA");
    let loaded = load(vec![liar, rsa().jwk]).unwrap();
    assert!(loaded.store.get("ec-1").is_none());
    assert!(loaded.skipped[0].contains("OKP"), "{:?}", loaded.skipped);
}

#[test]
fn rsa_key_below_2048_bits_is_skipped() {
    let mut short = rsa().jwk;
    let n = URL_SAFE_NO_PAD
        .decode(short["n"].as_str().unwrap())
        .unwrap();
    short["n"] = json!(URL_SAFE_NO_PAD.encode(&n[..128]));
    let loaded = load(vec![short, ed25519_a().jwk]).unwrap();
    assert!(loaded.store.get("rsa-1").is_none());
    assert!(loaded.skipped[0].contains("2048"), "{:?}", loaded.skipped);
}

#[test]
fn key_material_that_is_not_a_valid_public_key_is_skipped_at_load() {
    // The identity point (small order): it would accept signatures made without a secret.
    let mut weak = ed25519_a().jwk;
    weak["kid"] = json!("weak");
    let mut identity = [0u8; 32];
    identity[0] = 1;
    weak["x"] = json!(URL_SAFE_NO_PAD.encode(identity));
    // y = 0 is not on P-256 for this x.
    let mut off_curve = p256().jwk;
    off_curve["y"] = json!(URL_SAFE_NO_PAD.encode([0u8; 32]));
    let loaded = load(vec![weak, off_curve, rsa().jwk]).unwrap();
    assert_eq!(loaded.store.kids(), ["rsa-1"]);
    assert!(loaded.skipped[0].contains("weak"), "{:?}", loaded.skipped);
    assert!(loaded.skipped[1].contains("P-256"), "{:?}", loaded.skipped);
}

#[test]
fn duplicate_kid_keeps_the_first_key() {
    let first = ed25519_a().jwk;
    let mut second = p256().jwk;
    second["kid"] = json!("ed-a");
    let loaded = load(vec![first, second]).unwrap();
    assert_eq!(
        loaded.store.get("ed-a").unwrap().algorithm,
        KeyAlgorithm::EdDsa
    );
    assert!(loaded.skipped[0].contains("duplicate"));
}

#[test]
fn key_set_without_usable_key_is_an_error() {
    let oct = json!({"kty": "oct", "kid": "hmac", "alg": "HS256", "k": "c2VjcmV0"});
    assert!(matches!(
        load(vec![oct]),
        Err(JwksError::NoUsableKey { .. })
    ));
    assert!(matches!(load(vec![]), Err(JwksError::NoUsableKey { .. })));
}

#[test]
fn document_that_is_not_a_jwks_is_an_error() {
    for doc in [&b"<html>"[..], b"{}", b"{\"keys\": {}}", b"[]"] {
        assert!(
            matches!(KeyStore::from_jwks_json(doc), Err(JwksError::NotAJwks(_))),
            "{doc:?}"
        );
    }
}
