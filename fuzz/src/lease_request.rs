//! The lease protocol's untrusted bytes, both ways: a `LeaseRequest` as the rate-limit
//! service receives it (through `lease_request`), a `LeaseResponse` as the gateway
//! filter reads it (`lease_call::decode`), and a lease slot as a worker reads it from
//! shared data (`Slot::decode`).
//!
//! Checked: an accepted request keeps to the documented bounds (domain, 1 to 64 items,
//! `spend` 0 or 1, no limit override, entry counts and sizes); the filter never takes
//! more or fewer grants than it asked for; a slot that decodes encodes back to the same
//! bytes' meaning.

use bulwark_gateway_logic::lease::Slot;
use bulwark_gateway_logic::lease_call;
use bulwark_proto::envoy::extensions::common::ratelimit::v3::{
    RateLimitDescriptor, rate_limit_descriptor,
};
use bulwark_proto::ratelimit::v1::{LeaseItem, LeaseRequest};
use prost::Message as _;

/// Most items the shipped service takes in one call (`ratelimit.lease.max_items`).
const MAX_ITEMS: usize = 64;

/// Checks one input as each of the three.
pub fn check(data: &[u8]) {
    if let Ok(request) = LeaseRequest::decode(data)
        && let Ok(checked) = bulwark_ratelimit::lease_request(request, MAX_ITEMS)
    {
        assert!(
            (1..=256).contains(&checked.domain.len()),
            "domain of {} bytes",
            checked.domain.len()
        );
        assert!((1..=MAX_ITEMS).contains(&checked.items.len()));
        for item in &checked.items {
            assert!(item.spend <= 1, "spend {}", item.spend);
            assert!(item.descriptor.limit_override.is_none());
            assert!((1..=16).contains(&item.descriptor.entries.len()));
            for entry in &item.descriptor.entries {
                assert!((1..=128).contains(&entry.key.len()), "key {:?}", entry.key);
                assert!(entry.value.len() <= 1024, "value of {} bytes", entry.value.len());
            }
        }
    }
    for items in 0..3 {
        if let Ok(grants) = lease_call::decode(data, items) {
            assert_eq!(grants.len(), items);
        }
    }
    if let Some(slot) = Slot::decode(data) {
        assert_eq!(Slot::decode(&slot.encode()), Some(slot));
    }
}

/// A renewal batch and a waiting request's call, as the filter sends them.
pub fn seeds() -> Vec<crate::Seed> {
    let item = |key: &str, value: &str, held, spend| LeaseItem {
        descriptor: Some(RateLimitDescriptor {
            entries: vec![rate_limit_descriptor::Entry {
                key: key.to_owned(),
                value: value.to_owned(),
            }],
            limit: None,
        }),
        held,
        spend,
    };
    let request = |items| LeaseRequest {
        domain: "bulwark-edge".to_owned(),
        items,
    };
    vec![
        (
            "waiting_request".to_owned(),
            request(vec![item(
                "user_id",
                "0192f0c4-7d4e-7b1a-9f00-0000000000a1",
                0,
                1,
            )])
            .encode_to_vec(),
        ),
        (
            "renewal_batch".to_owned(),
            request(vec![
                item("user_id", "0192f0c4-7d4e-7b1a-9f00-0000000000a1", 10, 0),
                item("user_id", "0192f0c4-7d4e-7b1a-9f00-0000000000a2", 3, 0),
            ])
            .encode_to_vec(),
        ),
    ]
}
