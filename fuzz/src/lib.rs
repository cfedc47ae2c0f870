//! The checks behind Bulwark's fuzz targets: each module takes one kind of untrusted
//! input, hands it to the real parser or validator and asserts what must hold of the
//! answer, beyond "no panic" wherever a property is cheap to state.
//!
//! A target in `fuzz_targets/` is one line that calls its module's `check`; each module
//! also makes the hand-written seed inputs of its target (`seeds`, written to
//! `seeds/<target>/` by `examples/seeds.rs`).

#![forbid(unsafe_code)]

pub mod fixtures;

pub mod audit_request;
pub mod auth_request;
pub mod authz_request;
pub mod descriptors;
pub mod filter_config;
pub mod identity_request;
pub mod jwks;
pub mod jwt_claims;
pub mod jwt_verify;
pub mod lease_request;
pub mod limits_yaml;
pub mod ratelimit_request;

/// A named seed input of one target.
pub type Seed = (String, Vec<u8>);

/// Every target, with its seeds: `examples/seeds.rs` writes these.
pub fn all_seeds() -> Vec<(&'static str, Vec<Seed>)> {
    vec![
        ("jwt_verify", jwt_verify::seeds()),
        ("jwt_claims", jwt_claims::seeds()),
        ("jwks", jwks::seeds()),
        ("filter_config", filter_config::seeds()),
        ("limits_yaml", limits_yaml::seeds()),
        ("descriptors", descriptors::seeds()),
        ("identity_request", identity_request::seeds()),
        ("auth_request", auth_request::seeds()),
        ("authz_request", authz_request::seeds()),
        ("audit_request", audit_request::seeds()),
        ("lease_request", lease_request::seeds()),
        ("ratelimit_request", ratelimit_request::seeds()),
    ]
}

/// `selector` byte, then the encoded message: the framing of the service targets,
/// whose first byte picks which request message the rest is.
pub fn framed(selector: u8, message: &impl prost::Message) -> Vec<u8> {
    let mut bytes = vec![selector];
    bytes.extend(message.encode_to_vec());
    bytes
}
