//! What several targets share: the token contract's test keys and policy, a fixed
//! clock, and the configuration files Bulwark ships.

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bulwark_token::testing;
use bulwark_token::{KeyStore, Policy};

/// The clock of every token target: the agreement table's tokens are made for it.
pub const NOW: u64 = 1_700_000_000;

/// The gateway filter's configuration as shipped in `envoy/edge.yaml`.
pub const EDGE_YAML: &str = include_str!("../../envoy/edge.yaml");
/// The rate-limit service's limits as shipped.
pub const LIMITS_YAML: &str = include_str!("../../services/ratelimit/limits.yaml");
/// The limits of the services benchmark (a second real file).
pub const BENCH_LIMITS_YAML: &str = include_str!("../../xtask/src/bench_services/limits.yaml");

/// The agreement table's policy (issuer `bulwark`, audience `bulwark-api`, 60 s skew).
pub fn policy() -> Policy {
    testing::policy()
}

/// The agreement table's key set: one Ed25519 key, `testing::KID`.
pub fn keys() -> &'static KeyStore {
    static KEYS: OnceLock<KeyStore> = OnceLock::new();
    KEYS.get_or_init(|| match KeyStore::from_jwks_json(&testing::jwks_json()) {
        Ok(loaded) => loaded.store,
        Err(error) => panic!("the agreement table's JWKS does not load: {error}"),
    })
}

/// The published key as ed25519-dalek reads it: the reference verifier.
pub fn reference_key() -> &'static ed25519_dalek::VerifyingKey {
    static KEY: OnceLock<ed25519_dalek::VerifyingKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let jwk = testing::jwks().into_iter().next();
        let x = jwk
            .as_ref()
            .and_then(|jwk| jwk["x"].as_str())
            .and_then(|x| URL_SAFE_NO_PAD.decode(x).ok())
            .and_then(|x| <[u8; 32]>::try_from(x).ok());
        match x.map(|x| ed25519_dalek::VerifyingKey::from_bytes(&x)) {
            Some(Ok(key)) => key,
            _ => panic!("the agreement table's JWK has no usable x"),
        }
    })
}

/// The `configuration` strings of every Wasm filter in `envoy/edge.yaml`.
pub fn edge_filter_configs() -> Vec<String> {
    let doc: serde_yaml_ng::Value = match serde_yaml_ng::from_str(EDGE_YAML) {
        Ok(doc) => doc,
        Err(error) => panic!("envoy/edge.yaml does not parse: {error}"),
    };
    let mut found = Vec::new();
    collect_configurations(&doc, &mut found);
    assert!(
        !found.is_empty(),
        "envoy/edge.yaml names no filter configuration"
    );
    found
}

fn collect_configurations(value: &serde_yaml_ng::Value, found: &mut Vec<String>) {
    use serde_yaml_ng::Value;
    match value {
        Value::Mapping(map) => {
            for (key, child) in map {
                if key.as_str() == Some("configuration")
                    && let Some(text) = child.get("value").and_then(Value::as_str)
                {
                    found.push(text.to_owned());
                }
                collect_configurations(child, found);
            }
        }
        Value::Sequence(items) => items.iter().for_each(|v| collect_configurations(v, found)),
        Value::Tagged(tagged) => collect_configurations(&tagged.value, found),
        _ => {}
    }
}

/// Whether a claim value may be forwarded in a header, as the token contract requires
/// of `sub`, `jti`, roles and permissions: 1 to 256 bytes of printable ASCII without
/// spaces (and without commas in a list).
pub fn header_safe(value: &str, forbid_comma: bool) -> bool {
    !value.is_empty()
        && value.len() <= 256
        && value
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && !(forbid_comma && b == b','))
}
