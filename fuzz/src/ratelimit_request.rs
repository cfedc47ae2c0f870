//! Envoy's `RateLimitRequest` as the rate-limit service receives it (protobuf bytes),
//! through `check_request`, then looked up in the shipped limits.
//!
//! Checked: an accepted request keeps to the documented bounds (domain, descriptor and
//! entry counts, key and value sizes, a caller's own limit of at least one request) and
//! counts at least one hit; its descriptors' lookup in `services/ratelimit/limits.yaml`
//! names that file's domain.

use std::sync::OnceLock;

use bulwark_limiter::limits::{DomainLimits, Lookup};
use bulwark_proto::envoy::extensions::common::ratelimit::v3::{
    RateLimitDescriptor, rate_limit_descriptor,
};
use bulwark_proto::envoy::service::ratelimit::v3::RateLimitRequest;
use prost::Message as _;

use crate::fixtures;

fn shipped_limits() -> &'static DomainLimits {
    static LIMITS: OnceLock<DomainLimits> = OnceLock::new();
    LIMITS.get_or_init(
        || match DomainLimits::parse("limits.yaml", fixtures::LIMITS_YAML) {
            Ok(limits) => limits,
            Err(error) => panic!("services/ratelimit/limits.yaml: {error}"),
        },
    )
}

/// Checks one encoded `RateLimitRequest`.
pub fn check(data: &[u8]) {
    let Ok(request) = RateLimitRequest::decode(data) else {
        return;
    };
    let hits = request.hits_addend;
    let Ok(checked) = bulwark_ratelimit::check_request(request) else {
        return;
    };
    assert!(
        (1..=256).contains(&checked.domain.len()),
        "domain of {} bytes",
        checked.domain.len()
    );
    assert!((1..=16).contains(&checked.descriptors.len()));
    assert_eq!(checked.hits, hits.max(1));
    for descriptor in &checked.descriptors {
        assert!((1..=16).contains(&descriptor.entries.len()));
        for entry in &descriptor.entries {
            assert!((1..=128).contains(&entry.key.len()), "key {:?}", entry.key);
            assert!(
                entry.value.len() <= 1024,
                "value of {} bytes",
                entry.value.len()
            );
        }
        if let Some(rate) = descriptor.limit_override {
            assert!(rate.requests_per_unit >= 1);
        }
        if let Lookup::Rule(rule) = shipped_limits().find(&descriptor.entries) {
            assert_eq!(rule.domain, shipped_limits().name());
        }
    }
}

/// What the gateway filter sends: a public route per client IP, and a user.
pub fn seeds() -> Vec<crate::Seed> {
    let entry = |key: &str, value: &str| rate_limit_descriptor::Entry {
        key: key.to_owned(),
        value: value.to_owned(),
    };
    let request = |entries| RateLimitRequest {
        domain: "bulwark-edge".to_owned(),
        descriptors: vec![RateLimitDescriptor {
            entries,
            limit: None,
        }],
        hits_addend: 1,
    };
    vec![
        (
            "login_per_client_ip".to_owned(),
            request(vec![
                entry("route", "/v1/auth/login"),
                entry("client_ip", "203.0.113.7"),
            ])
            .encode_to_vec(),
        ),
        (
            "per_user".to_owned(),
            request(vec![entry(
                "user_id",
                "0192f0c4-7d4e-7b1a-9f00-000000000001",
            )])
            .encode_to_vec(),
        ),
    ]
}
