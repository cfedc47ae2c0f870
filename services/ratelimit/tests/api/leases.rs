//! What `LeaseService/Lease` answers: unlimited descriptors, exact decisions for slow
//! and shadow-mode limits, leases of fast ones (full, topped up, shrinking, refused),
//! buckets shared with `ShouldRateLimit`, batches, invalid requests and the metrics.
//!
//! Tests that count hits exactly use hour limits with a long `lease_seconds`, so the
//! bucket drains less than one hit while they run.

use std::time::Duration;

use bulwark_kernel::tonic::Code as GrpcCode;
use bulwark_proto::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::RateLimitOverride;
use bulwark_proto::envoy::service::ratelimit::v3::rate_limit_response::{Code, rate_limit::Unit};
use bulwark_proto::ratelimit::v1::grant::Mode;
use bulwark_proto::ratelimit::v1::{Grant, LeaseResponse};

use crate::support::{
    Service, descriptor, lease_item, lease_request, redis_url, request, unique_domain,
};

fn limits(domain: &str, descriptors: &str) -> String {
    format!("domain: {domain}\ndescriptors:\n{descriptors}")
}

/// Starts with hour limits leased (any limit of at least 0.0001/s) and leases of
/// `lease_seconds`: 200 s of 360/hour is 20 hits; 2000 s of 40/hour is capped at half
/// the limit, 20.
async fn start_slow(descriptors: &str, lease_seconds: f64) -> (Service, String) {
    let domain = unique_domain("lease");
    let service = Service::start_with(
        &redis_url(),
        &limits(&domain, descriptors),
        &[
            ("ratelimit.lease.min_rate_per_second", 0.0001.into()),
            ("ratelimit.lease.lease_seconds", lease_seconds.into()),
        ],
    )
    .await;
    (service, domain)
}

fn only_grant(response: &LeaseResponse) -> &Grant {
    assert_eq!(response.grants.len(), 1, "one grant per item: {response:?}");
    &response.grants[0]
}

fn code(grant: &Grant) -> Code {
    grant
        .status
        .as_ref()
        .unwrap_or_else(|| panic!("no status in {grant:?}"))
        .code()
}

fn remaining(grant: &Grant) -> u32 {
    grant
        .status
        .as_ref()
        .unwrap_or_else(|| panic!("no status in {grant:?}"))
        .limit_remaining
}

fn until_reset(grant: &Grant) -> Duration {
    let reset = grant
        .status
        .as_ref()
        .and_then(|status| status.duration_until_reset)
        .unwrap_or_else(|| panic!("no duration_until_reset in {grant:?}"));
    Duration::new(
        u64::try_from(reset.seconds).unwrap_or_else(|_| panic!("negative reset {reset:?}")),
        u32::try_from(reset.nanos).unwrap_or_else(|_| panic!("negative nanos {reset:?}")),
    )
}

fn valid_for(grant: &Grant) -> Option<Duration> {
    grant.valid_for.map(|valid| {
        Duration::new(
            u64::try_from(valid.seconds).unwrap_or_else(|_| panic!("negative {valid:?}")),
            u32::try_from(valid.nanos).unwrap_or_else(|_| panic!("negative {valid:?}")),
        )
    })
}

fn metric(lines: &[String], name: &str, labels: &[&str]) -> f64 {
    lines
        .iter()
        .find(|line| {
            line.starts_with(&format!("{name}{{")) && labels.iter().all(|l| line.contains(l))
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn unlimited_and_unknown_descriptors_are_unlimited_and_count_nothing() {
    let domain = unique_domain("lease-open");
    let service = Service::start(&limits(
        &domain,
        concat!(
            "  - key: user_id\n    rate_limit: { unit: second, requests_per_unit: 100 }\n",
            "  - key: user_id\n    value: admin\n    unlimited: true\n",
        ),
    ))
    .await;
    for (domain, entries) in [
        (domain.as_str(), [("user_id", "admin")]),
        (domain.as_str(), [("tenant", "t1")]),
        ("no-such-domain", [("user_id", "u1")]),
    ] {
        for spend in [1, 0, 1] {
            let response = service
                .lease(lease_request(domain, vec![lease_item(&entries, 0, spend)]))
                .await;
            let grant = only_grant(&response);
            assert_eq!(grant.mode(), Mode::Unlimited, "{entries:?}: {grant:?}");
            assert_eq!(grant.granted, 0, "{entries:?}: {grant:?}");
            assert_eq!(grant.lease_size, 0, "{entries:?}: {grant:?}");
            assert_eq!(code(grant), Code::Ok, "{entries:?}: {grant:?}");
            assert!(
                grant
                    .status
                    .as_ref()
                    .is_some_and(|s| s.current_limit.is_none()),
                "{entries:?}: an unlimited grant reports a limit: {grant:?}"
            );
            assert_eq!(
                valid_for(grant),
                Some(Duration::from_secs(2)),
                "{entries:?}: valid_for is not the default 2 s: {grant:?}"
            );
        }
    }
}

#[tokio::test]
async fn slow_limits_are_decided_exactly_and_a_spend_of_zero_counts_nothing() {
    let domain = unique_domain("lease-exact");
    let service = Service::start(&limits(
        &domain,
        "  - key: user_id\n    rate_limit: { unit: minute, requests_per_unit: 10 }\n",
    ))
    .await;
    let lease = |spend: u32| {
        service.lease(lease_request(
            &domain,
            vec![lease_item(&[("user_id", "u1")], 0, spend)],
        ))
    };
    let peek = lease(0).await;
    let grant = only_grant(&peek);
    assert_eq!(
        (grant.mode(), grant.granted, code(grant), remaining(grant)),
        (Mode::Exact, 0, Code::Ok, 10),
        "a spend of 0 on a fresh 10/minute: {grant:?}"
    );
    for expected in (0..10).rev() {
        let response = lease(1).await;
        let grant = only_grant(&response);
        assert_eq!(
            grant.mode(),
            Mode::Exact,
            "10/minute is below 50/s: {grant:?}"
        );
        assert_eq!(
            (grant.granted, code(grant), remaining(grant)),
            (1, Code::Ok, expected),
            "an exact hit under the limit: {grant:?}"
        );
        assert_eq!(grant.lease_size, 0, "{grant:?}");
        assert_eq!(
            valid_for(grant),
            None,
            "an exact answer has no validity: {grant:?}"
        );
        let limit = grant
            .status
            .as_ref()
            .and_then(|s| s.current_limit.clone())
            .unwrap_or_else(|| panic!("no current_limit: {grant:?}"));
        assert_eq!((limit.requests_per_unit, limit.unit()), (10, Unit::Minute));
        if expected == 5 {
            let peek = lease(0).await;
            assert_eq!(
                (only_grant(&peek).granted, remaining(only_grant(&peek))),
                (0, 5),
                "a spend of 0 was counted: {peek:?}"
            );
        }
    }
    let refused = lease(1).await;
    let grant = only_grant(&refused);
    assert_eq!(
        (grant.mode(), grant.granted, code(grant), remaining(grant)),
        (Mode::Exact, 0, Code::OverLimit, 0),
        "11th of 10/minute: {grant:?}"
    );
    let reset = until_reset(grant);
    assert!(
        reset > Duration::from_millis(5_900) && reset <= Duration::from_secs(6),
        "one hit of 10/minute fits again after ~6 s, not {reset:?}"
    );
    let peek = lease(0).await;
    assert_eq!(
        (only_grant(&peek).granted, code(only_grant(&peek))),
        (0, Code::Ok),
        "a spend of 0 on an exhausted exact limit is not a refusal: {peek:?}"
    );
}

#[tokio::test]
async fn shadow_limits_are_exact_even_when_fast_and_never_refuse() {
    let (service, domain) = start_slow(
        "  - key: user_id\n    rate_limit: { unit: hour, requests_per_unit: 3 }\n    shadow_mode: true\n",
        2_000.0,
    )
    .await;
    let mut remaining_after = Vec::new();
    for _ in 0..5 {
        let response = service
            .lease(lease_request(
                &domain,
                vec![lease_item(&[("user_id", "u1")], 0, 1)],
            ))
            .await;
        let grant = only_grant(&response);
        assert_eq!(
            (grant.mode(), grant.granted, code(grant)),
            (Mode::Exact, 1, Code::Ok),
            "a shadow limit (leasable by rate) must be exact and never refuse: {grant:?}"
        );
        remaining_after.push(remaining(grant));
    }
    assert_eq!(
        remaining_after,
        [2, 1, 0, 0, 0],
        "the shadow limit did not count"
    );
    let lines = service.metric_lines(&domain).await;
    let decisions = |decision: &str| {
        metric(
            &lines,
            "ratelimit_decisions_total",
            &[&format!("decision=\"{decision}\"")],
        )
    };
    assert_eq!(decisions("ok"), 3.0, "{}", lines.join("\n"));
    assert_eq!(decisions("shadow_over_limit"), 2.0, "{}", lines.join("\n"));
    assert_eq!(
        metric(
            &lines,
            "ratelimit_lease_grants_total",
            &["mode=\"exact\"", "outcome=\"ok\""]
        ),
        5.0,
        "exact grants not counted:\n{}",
        lines.join("\n")
    );
}

#[tokio::test]
async fn a_fast_limit_is_leased_lease_size_hits_at_a_time() {
    let domain = unique_domain("lease-full");
    let service = Service::start(&limits(
        &domain,
        concat!(
            "  - key: user_id\n    rate_limit: { unit: second, requests_per_unit: 100 }\n",
            "  - key: tenant\n    rate_limit: { unit: minute, requests_per_unit: 6000 }\n",
        ),
    ))
    .await;
    for (entries, limit) in [([("user_id", "u1")], 100), ([("tenant", "t1")], 6_000)] {
        let response = service
            .lease(lease_request(&domain, vec![lease_item(&entries, 0, 1)]))
            .await;
        let grant = only_grant(&response);
        assert_eq!(
            (grant.mode(), grant.lease_size, grant.granted),
            (Mode::Leased, 20, 20),
            "{entries:?}: 100/s leases 0.2 s of its rate, 20 hits: {grant:?}"
        );
        assert_eq!(code(grant), Code::Ok);
        assert_eq!(
            remaining(grant),
            limit - 20,
            "{entries:?}: the grant was not counted: {grant:?}"
        );
        assert_eq!(
            until_reset(grant),
            Duration::from_millis(200),
            "{entries:?}: 20 hits of 100/s drain in 200 ms: {grant:?}"
        );
        assert_eq!(valid_for(grant), Some(Duration::from_secs(2)), "{grant:?}");
    }
    let lines = service.metric_lines(&domain).await;
    assert_eq!(
        metric(
            &lines,
            "ratelimit_lease_grants_total",
            &[
                "descriptor=\"user_id\"",
                "mode=\"leased\"",
                "outcome=\"ok\""
            ]
        ),
        1.0,
        "{}",
        lines.join("\n")
    );
    assert_eq!(
        metric(
            &lines,
            "ratelimit_leased_hits_total",
            &["descriptor=\"user_id\""]
        ),
        20.0,
        "{}",
        lines.join("\n")
    );
    assert_eq!(
        metric(
            &lines,
            "ratelimit_decisions_total",
            &["descriptor=\"user_id\"", "decision=\"ok\""]
        ),
        1.0,
        "a lease call is one decision:\n{}",
        lines.join("\n")
    );
}

#[tokio::test]
async fn renewals_top_up_what_the_caller_holds() {
    let (service, domain) = start_slow(
        "  - key: user_id\n    rate_limit: { unit: hour, requests_per_unit: 360 }\n",
        200.0,
    )
    .await;
    // (held, spend) -> (granted, remaining)
    let mut left = 360;
    for (held, spend, granted) in [(15, 0, 5), (25, 1, 1), (20, 0, 0), (0, 0, 20), (3, 1, 17)] {
        let response = service
            .lease(lease_request(
                &domain,
                vec![lease_item(&[("user_id", "u1")], held, spend)],
            ))
            .await;
        let grant = only_grant(&response);
        left -= granted;
        assert_eq!(
            (
                grant.mode(),
                grant.lease_size,
                grant.granted,
                code(grant),
                remaining(grant)
            ),
            (Mode::Leased, 20, granted, Code::Ok, left),
            "holding {held}, spending {spend}: {grant:?}"
        );
    }
}

#[tokio::test]
async fn grants_halve_as_the_bucket_runs_out_then_refuse_until_a_hit_fits() {
    let (service, domain) = start_slow(
        "  - key: user_id\n    rate_limit: { unit: hour, requests_per_unit: 40 }\n",
        2_000.0,
    )
    .await;
    let lease = |spend: u32| {
        service.lease(lease_request(
            &domain,
            vec![lease_item(&[("user_id", "u1")], 0, spend)],
        ))
    };
    let mut grants = Vec::new();
    let mut remaining_after = Vec::new();
    for _ in 0..7 {
        let response = lease(0).await;
        let grant = only_grant(&response);
        assert_eq!(
            (grant.mode(), grant.lease_size, code(grant)),
            (Mode::Leased, 20, Code::Ok),
            "{grant:?}"
        );
        grants.push(grant.granted);
        remaining_after.push(remaining(grant));
    }
    assert_eq!(
        grants,
        [20, 10, 5, 2, 1, 1, 1],
        "grants must be at most half of what the bucket has (at least 1)"
    );
    assert_eq!(remaining_after, [20, 10, 5, 3, 2, 1, 0]);
    for spend in [1, 0] {
        let refused = lease(spend).await;
        let grant = only_grant(&refused);
        assert_eq!(
            (grant.mode(), grant.granted, code(grant), remaining(grant)),
            (Mode::Leased, 0, Code::OverLimit, 0),
            "spend {spend} on an empty bucket: {grant:?}"
        );
        let reset = until_reset(grant);
        assert!(
            reset > Duration::from_secs(89) && reset <= Duration::from_secs(90),
            "one hit of 40/hour fits again after ~90 s, not {reset:?}"
        );
    }
}

#[tokio::test]
async fn a_lease_and_should_rate_limit_count_in_the_same_bucket() {
    let (service, domain) = start_slow(
        "  - key: user_id\n    rate_limit: { unit: hour, requests_per_unit: 360 }\n",
        200.0,
    )
    .await;
    let ask = || service.ask(request(&domain, vec![descriptor(&[("user_id", "u1")])]));
    assert_eq!(ask().await.statuses[0].limit_remaining, 359);
    let response = service
        .lease(lease_request(
            &domain,
            vec![lease_item(&[("user_id", "u1")], 0, 0)],
        ))
        .await;
    let grant = only_grant(&response);
    assert_eq!((grant.granted, remaining(grant)), (20, 339), "{grant:?}");
    let after = ask().await;
    assert_eq!(
        after.statuses[0].limit_remaining, 338,
        "ShouldRateLimit does not see the 20 leased hits: {after:?}"
    );
}

#[tokio::test]
async fn items_are_granted_in_order_and_a_repeated_descriptor_sees_the_earlier_grant() {
    let (service, domain) = start_slow(concat!(
        "  - key: user_id\n    rate_limit: { unit: hour, requests_per_unit: 40 }\n",
        "  - key: user_id\n    value: admin\n    unlimited: true\n",
        "  - key: tenant\n    rate_limit: { unit: hour, requests_per_unit: 5 }\n    shadow_mode: true\n",
    ), 2_000.0)
    .await;
    let response = service
        .lease(lease_request(
            &domain,
            vec![
                lease_item(&[("user_id", "u1")], 0, 1),
                lease_item(&[("user_id", "admin")], 0, 1),
                lease_item(&[("user_id", "u2")], 0, 0),
                lease_item(&[("user_id", "u1")], 0, 0),
                lease_item(&[("tenant", "t1")], 0, 1),
                lease_item(&[("user_id", "u1")], 0, 1),
            ],
        ))
        .await;
    let answers: Vec<(Mode, u32, Code, u32)> = response
        .grants
        .iter()
        .map(|grant| (grant.mode(), grant.granted, code(grant), remaining(grant)))
        .collect();
    assert_eq!(
        answers,
        [
            (Mode::Leased, 20, Code::Ok, 20),
            (Mode::Unlimited, 0, Code::Ok, u32::MAX),
            (Mode::Leased, 20, Code::Ok, 20),
            (Mode::Leased, 10, Code::Ok, 10),
            (Mode::Exact, 1, Code::Ok, 4),
            (Mode::Leased, 5, Code::Ok, 5),
        ],
        "grants out of order, or a repeated descriptor did not see the earlier grant"
    );
}

#[tokio::test]
async fn invalid_lease_requests_name_the_field_and_the_rule() {
    let domain = unique_domain("lease-invalid");
    let service = Service::start(&limits(
        &domain,
        "  - key: user_id\n    rate_limit: { unit: second, requests_per_unit: 100 }\n",
    ))
    .await;
    let ok = || lease_item(&[("user_id", "u1")], 0, 1);
    let mut with_override = ok();
    if let Some(descriptor) = with_override.descriptor.as_mut() {
        descriptor.limit = Some(RateLimitOverride {
            requests_per_unit: 5,
            unit: 1, // SECOND
        });
    }
    let mut without_descriptor = ok();
    without_descriptor.descriptor = None;
    for (request, field) in [
        (lease_request(&domain, vec![]), "items"),
        (lease_request(&domain, vec![ok(); 65]), "items"),
        (lease_request(&domain, vec![ok(); 10_000]), "items"),
        (
            lease_request(&domain, vec![with_override]),
            "items[0].descriptor.limit",
        ),
        (
            lease_request(&domain, vec![ok(), lease_item(&[("user_id", "u1")], 0, 2)]),
            "items[1].spend",
        ),
        (lease_request("", vec![ok()]), "domain"),
        (
            lease_request(&domain, vec![without_descriptor]),
            "items[0].descriptor",
        ),
        (
            lease_request(&domain, vec![lease_item(&[], 0, 0)]),
            "items[0].descriptor.entries",
        ),
    ] {
        let status = service.lease_err(request).await;
        assert_eq!(
            status.code(),
            GrpcCode::InvalidArgument,
            "{field}: {status:?}"
        );
        assert!(
            status.message().starts_with(&format!("{field}: ")),
            "message does not name {field}: {:?}",
            status.message()
        );
    }
    let full = service.lease(lease_request(&domain, vec![ok(); 64])).await;
    assert_eq!(full.grants.len(), 64, "64 items are allowed by default");
}

#[tokio::test]
async fn the_lease_settings_shape_the_answers() {
    let domain = unique_domain("lease-settings");
    let service = Service::start_with(
        &redis_url(),
        &limits(
            &domain,
            concat!(
                "  - key: user_id\n    rate_limit: { unit: second, requests_per_unit: 20 }\n",
                "  - key: tenant\n    rate_limit: { unit: second, requests_per_unit: 9 }\n",
            ),
        ),
        &[
            ("ratelimit.lease.min_rate_per_second", 10.into()),
            ("ratelimit.lease.lease_seconds", 0.5.into()),
            ("ratelimit.lease.valid_for_ms", 750.into()),
            ("ratelimit.lease.max_items", 2.into()),
        ],
    )
    .await;
    let response = service
        .lease(lease_request(
            &domain,
            vec![
                lease_item(&[("user_id", "u1")], 0, 1),
                lease_item(&[("tenant", "t1")], 0, 1),
            ],
        ))
        .await;
    let user = &response.grants[0];
    assert_eq!(
        (user.mode(), user.lease_size, user.granted),
        (Mode::Leased, 10, 10),
        "0.5 s of 20/s is 10: {user:?}"
    );
    assert_eq!(
        valid_for(user),
        Some(Duration::from_millis(750)),
        "{user:?}"
    );
    let tenant = &response.grants[1];
    assert_eq!(tenant.mode(), Mode::Exact, "9/s is below 10/s: {tenant:?}");
    let status = service
        .lease_err(lease_request(
            &domain,
            vec![lease_item(&[("user_id", "u1")], 0, 0); 3],
        ))
        .await;
    assert_eq!(status.code(), GrpcCode::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .starts_with("items: must hold 1 to 2 items"),
        "max_items not applied: {:?}",
        status.message()
    );
}
