//! Redis down: decisions that need it fail fast with UNAVAILABLE (the caller's failure
//! mode decides), those that do not still answer, and readiness says why.

use std::time::{Duration, Instant};

use bulwark_kernel::tonic::Code as GrpcCode;
use bulwark_proto::envoy::service::ratelimit::v3::rate_limit_response::Code;

use bulwark_proto::ratelimit::v1::grant::Mode;

use crate::support::{
    Service, closed_redis_url, descriptor, lease_item, lease_request, request, unique_domain,
};

fn limits(domain: &str) -> String {
    format!(
        "domain: {domain}\ndescriptors:\n  - key: user_id\n    rate_limit: {{ unit: minute, requests_per_unit: 10 }}\n  - key: user_id\n    value: admin\n    unlimited: true\n"
    )
}

#[tokio::test]
async fn redis_down_answers_unavailable_quickly() {
    let domain = unique_domain("down");
    let service = Service::start_on(&closed_redis_url(), &limits(&domain)).await;
    for _ in 0..3 {
        let started = Instant::now();
        let status = service
            .ask_err(request(&domain, vec![descriptor(&[("user_id", "u1")])]))
            .await;
        let took = started.elapsed();
        assert_eq!(status.code(), GrpcCode::Unavailable, "{status:?}");
        assert!(
            took < Duration::from_millis(1_500),
            "UNAVAILABLE took {took:?}; the caller's own deadline would expire first"
        );
        assert!(
            !status.message().contains("127.0.0.1"),
            "the message leaks internals: {:?}",
            status.message()
        );
    }
}

#[tokio::test]
async fn unlimited_and_unknown_descriptors_need_no_redis() {
    let domain = unique_domain("noredis");
    let service = Service::start_on(&closed_redis_url(), &limits(&domain)).await;
    for entries in [[("user_id", "admin")], [("tenant", "t1")]] {
        let response = service
            .ask(request(&domain, vec![descriptor(&entries)]))
            .await;
        assert_eq!(
            response.overall_code(),
            Code::Ok,
            "{entries:?}: {response:?}"
        );
    }
}

#[tokio::test]
async fn a_lease_with_redis_down_answers_unavailable_quickly() {
    let domain = unique_domain("lease-down");
    let service = Service::start_on(&closed_redis_url(), &limits(&domain)).await;
    for items in [
        vec![lease_item(&[("user_id", "u1")], 0, 1)],
        // One counted item fails the whole call, unlimited ones with it.
        vec![
            lease_item(&[("user_id", "admin")], 0, 1),
            lease_item(&[("user_id", "u1")], 0, 0),
        ],
    ] {
        let started = Instant::now();
        let status = service.lease_err(lease_request(&domain, items)).await;
        let took = started.elapsed();
        assert_eq!(status.code(), GrpcCode::Unavailable, "{status:?}");
        assert!(
            took < Duration::from_millis(1_500),
            "UNAVAILABLE took {took:?}; the caller's own deadline would expire first"
        );
        assert!(
            !status.message().contains("127.0.0.1"),
            "the message leaks internals: {:?}",
            status.message()
        );
    }
    let (_, metrics) = service.admin_get("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("ratelimit_redis_errors_total{kind=\"unavailable\"}")),
        "the outage was not counted:\n{metrics}"
    );
}

#[tokio::test]
async fn unlimited_lease_items_need_no_redis() {
    let domain = unique_domain("lease-noredis");
    let service = Service::start_on(&closed_redis_url(), &limits(&domain)).await;
    let response = service
        .lease(lease_request(
            &domain,
            vec![
                lease_item(&[("user_id", "admin")], 0, 1),
                lease_item(&[("tenant", "t1")], 0, 1),
            ],
        ))
        .await;
    let modes: Vec<Mode> = response.grants.iter().map(|grant| grant.mode()).collect();
    assert_eq!(modes, [Mode::Unlimited, Mode::Unlimited], "{response:?}");
}

#[tokio::test]
async fn readiness_checks_redis() {
    let domain = unique_domain("ready");
    let up = Service::start(&limits(&domain)).await;
    let (status, body) = up.admin_get("/ready").await;
    assert_eq!(status, 200, "not ready with Redis up: {body}");
    assert!(
        body.contains("redis"),
        "readiness does not check Redis: {body}"
    );

    let down = Service::start_on(&closed_redis_url(), &limits(&domain)).await;
    let (status, body) = down.admin_get("/ready").await;
    assert_eq!(status, 503, "ready with Redis down: {body}");
    assert!(
        body.contains("redis"),
        "the failed check is not named: {body}"
    );
}
