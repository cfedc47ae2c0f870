//! A JWKS document as the edge fetches it (and, member by member, as the services
//! receive it): `KeyStore::from_jwks_json`.
//!
//! Checked: every member of `keys` is either loaded or reported as skipped, exactly
//! once; the document and its members alone (`KeyStore::from_jwks`) give the same keys
//! and reasons; a loaded key is loaded alone too, with the same algorithm (one odd key
//! never changes what another means); every loaded `kid` can be looked up.

use bulwark_token::jwks::{JwksError, KeyStore, LoadedJwks};
use serde_json::Value;

/// The public halves of the gateway filter's test keys (`gateway-filter/logic/tests/keys`:
/// Ed25519 twice, RSA-2048, P-256), as Auth would publish them.
const TEST_KEYS_JWKS: &str = include_str!("jwks_test_keys.json");

/// Checks one JWKS document.
pub fn check(data: &[u8]) {
    let result = KeyStore::from_jwks_json(data);
    let members = match serde_json::from_slice::<Value>(data) {
        Ok(Value::Object(doc)) => match doc.get("keys") {
            Some(Value::Array(members)) => Some(members.clone()),
            _ => None,
        },
        _ => None,
    };
    let Some(members) = members else {
        return;
    };
    match &result {
        Ok(loaded) => {
            check_loaded(loaded);
            assert_eq!(
                loaded.store.len() + loaded.skipped.len(),
                members.len(),
                "a member was neither loaded nor skipped, or counted twice: {:?}",
                loaded.skipped
            );
            check_members_alone(&members, Some(loaded));
        }
        Err(JwksError::NoUsableKey { skipped }) => {
            assert_eq!(skipped.len(), members.len(), "reasons {skipped:?}");
            check_members_alone(&members, None);
        }
        // A document whose `keys` is an array but which serde refuses (a duplicate
        // `keys` member, say) has no members to compare.
        Err(JwksError::NotAJwks(_)) => return,
    }
    let from_members = KeyStore::from_jwks(members);
    match (&result, &from_members) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.store.kids(), b.store.kids());
            assert_eq!(a.skipped, b.skipped);
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("the document and its members disagree: {result:?} / {from_members:?}"),
    }
}

fn check_loaded(loaded: &LoadedJwks) {
    assert!(!loaded.store.is_empty(), "an Ok key set with no key");
    let kids = loaded.store.kids();
    assert!(
        kids.windows(2).all(|w| w[0] < w[1]),
        "kids not sorted and unique"
    );
    for kid in kids {
        assert!(!kid.is_empty(), "a key with an empty kid");
        assert!(
            loaded.store.get(kid).is_some(),
            "kid {kid:?} listed but not found"
        );
    }
}

/// Each member, alone, loads exactly when it adds a key to the set: the set's kids are
/// those of the members that load alone, and the first such member of each kid decides
/// the key's algorithm.
fn check_members_alone(members: &[Value], loaded: Option<&LoadedJwks>) {
    let mut kids_alone: Vec<String> = Vec::new();
    for member in members {
        let Ok(alone) = KeyStore::from_jwks(vec![member.clone()]) else {
            continue;
        };
        let kids = alone.store.kids();
        assert_eq!(kids.len(), 1, "one member gave {kids:?}");
        let kid = kids[0].to_owned();
        let Some(loaded) = loaded else {
            panic!("kid {kid:?} loads alone but the set has no usable key");
        };
        if kids_alone.contains(&kid) {
            continue;
        }
        let (Some(key), Some(in_set)) = (alone.store.get(&kid), loaded.store.get(&kid)) else {
            panic!("kid {kid:?} loads alone but is not in the set");
        };
        assert_eq!(key.algorithm, in_set.algorithm, "kid {kid:?}");
        kids_alone.push(kid);
    }
    if let Some(loaded) = loaded {
        kids_alone.sort_unstable();
        assert_eq!(loaded.store.kids(), kids_alone, "the set's kids");
    }
}

/// Real key sets: the agreement table's, the test keys', and sets with odd members.
pub fn seeds() -> Vec<crate::Seed> {
    let table = bulwark_token::testing::jwks_json();
    let mut odd: Value = match serde_json::from_str(TEST_KEYS_JWKS) {
        Ok(doc) => doc,
        Err(error) => panic!("jwks_test_keys.json: {error}"),
    };
    if let Some(keys) = odd["keys"].as_array_mut() {
        keys.push(
            serde_json::json!({"kty": "oct", "alg": "HS256", "kid": "hmac", "k": "c2VjcmV0"}),
        );
        keys.push(serde_json::json!({"kty": "RSA", "alg": "RS256", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"}));
        keys.push(serde_json::json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": "ed-a", "x": "AAAA"}));
        keys.push(serde_json::json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "kid": "weak", "x": "AA", "y": "AA"}));
        keys.push(serde_json::json!("not a key"));
    }
    vec![
        ("agreement_table".to_owned(), table),
        ("test_keys".to_owned(), TEST_KEYS_JWKS.as_bytes().to_vec()),
        ("odd_members".to_owned(), odd.to_string().into_bytes()),
        ("empty".to_owned(), br#"{"keys": []}"#.to_vec()),
    ]
}
