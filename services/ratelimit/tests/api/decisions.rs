//! What `ShouldRateLimit` answers: counting down, refusing, no burst at window
//! boundaries, several descriptors, shadow mode, unlimited and unknown descriptors.

use std::time::{Duration, Instant};

use bulwark_kernel::tonic::Code as GrpcCode;
use bulwark_proto::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::RateLimitOverride;
use bulwark_proto::envoy::service::ratelimit::v3::RateLimitResponse;
use bulwark_proto::envoy::service::ratelimit::v3::rate_limit_response::{
    Code, DescriptorStatus, rate_limit::Unit,
};

use crate::support::{Service, descriptor, request, unique_domain};

fn limits(domain: &str, descriptors: &str) -> String {
    format!("domain: {domain}\ndescriptors:\n{descriptors}")
}

fn only_status(response: &RateLimitResponse) -> &DescriptorStatus {
    assert_eq!(
        response.statuses.len(),
        1,
        "one status per descriptor: {response:?}"
    );
    &response.statuses[0]
}

fn reset_after(status: &DescriptorStatus) -> Duration {
    let reset = status
        .duration_until_reset
        .unwrap_or_else(|| panic!("no duration_until_reset in {status:?}"));
    Duration::new(
        u64::try_from(reset.seconds).unwrap_or_else(|_| panic!("negative reset {reset:?}")),
        u32::try_from(reset.nanos).unwrap_or_else(|_| panic!("negative nanos {reset:?}")),
    )
}

#[tokio::test]
async fn under_the_limit_is_ok_and_remaining_counts_down() {
    let domain = unique_domain("countdown");
    let service = Service::start(&limits(
        &domain,
        "  - key: user_id\n    rate_limit: { unit: minute, requests_per_unit: 5 }\n",
    ))
    .await;
    for expected_remaining in (0..5).rev() {
        let response = service
            .ask(request(&domain, vec![descriptor(&[("user_id", "u1")])]))
            .await;
        assert_eq!(
            response.overall_code(),
            Code::Ok,
            "request refused under the limit: {response:?}"
        );
        let status = only_status(&response);
        assert_eq!(status.code(), Code::Ok);
        assert_eq!(
            status.limit_remaining, expected_remaining,
            "remaining did not count down: {status:?}"
        );
        let limit = status
            .current_limit
            .as_ref()
            .unwrap_or_else(|| panic!("no current_limit: {status:?}"));
        assert_eq!((limit.requests_per_unit, limit.unit()), (5, Unit::Minute));
        let reset = reset_after(status);
        assert!(
            reset > Duration::ZERO && reset <= Duration::from_secs(60),
            "time until the quota is back should be within the minute: {reset:?}"
        );
    }
}

#[tokio::test]
async fn over_the_limit_is_refused_with_the_time_until_the_next_request_fits() {
    let domain = unique_domain("over");
    let service = Service::start(&limits(
        &domain,
        "  - key: user_id\n    rate_limit: { unit: minute, requests_per_unit: 3 }\n",
    ))
    .await;
    let ask = || service.ask(request(&domain, vec![descriptor(&[("user_id", "u1")])]));
    for _ in 0..3 {
        assert_eq!(ask().await.overall_code(), Code::Ok);
    }
    let refused = ask().await;
    assert_eq!(
        refused.overall_code(),
        Code::OverLimit,
        "4th of 3/minute allowed: {refused:?}"
    );
    let status = only_status(&refused);
    assert_eq!(status.code(), Code::OverLimit);
    assert_eq!(status.limit_remaining, 0);
    let reset = reset_after(status);
    // One request's share of the minute is 20 s; the next request fits after that.
    assert!(
        reset > Duration::from_secs(19) && reset <= Duration::from_secs(20),
        "duration_until_reset should be the ~20 s until one request fits again: {reset:?}"
    );
    let other_user = service
        .ask(request(&domain, vec![descriptor(&[("user_id", "u2")])]))
        .await;
    assert_eq!(
        other_user.overall_code(),
        Code::Ok,
        "users must not share a counter"
    );
}

#[tokio::test]
async fn a_window_boundary_gives_no_fresh_quota() {
    let domain = unique_domain("boundary");
    let service = Service::start(&limits(
        &domain,
        "  - key: user_id\n    rate_limit: { unit: second, requests_per_unit: 5 }\n",
    ))
    .await;
    let ask = || service.ask(request(&domain, vec![descriptor(&[("user_id", "u1")])]));
    let started = Instant::now();
    for i in 0..5 {
        assert_eq!(
            ask().await.overall_code(),
            Code::Ok,
            "request {i} of the first burst refused"
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut allowed = 0;
    for _ in 0..5 {
        if ask().await.overall_code() == Code::Ok {
            allowed += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // GCRA admits the burst plus the rate times the time passed; a fixed window would
    // admit a fresh 5 whenever a second boundary fell inside the sleep.
    let bound = (5.0 * elapsed).floor() as u32;
    assert!(
        allowed <= bound,
        "{allowed} of the second burst allowed after {elapsed:.3} s; at 5/s at most {bound} may be"
    );
    assert!(
        allowed >= 2,
        "half a second at 5/s frees 2 requests, only {allowed} allowed"
    );
}

#[tokio::test]
async fn one_descriptor_over_its_limit_refuses_the_request_and_drains_nothing() {
    let domain = unique_domain("pair");
    let service = Service::start(&limits(
        &domain,
        concat!(
            "  - key: tenant\n    rate_limit: { unit: minute, requests_per_unit: 100 }\n",
            "  - key: user_id\n    rate_limit: { unit: minute, requests_per_unit: 1 }\n",
        ),
    ))
    .await;
    let both = || {
        request(
            &domain,
            vec![
                descriptor(&[("tenant", "t1")]),
                descriptor(&[("user_id", "u1")]),
            ],
        )
    };
    let first = service.ask(both()).await;
    assert_eq!(first.overall_code(), Code::Ok, "{first:?}");
    assert_eq!(first.statuses[0].limit_remaining, 99);

    let second = service.ask(both()).await;
    assert_eq!(
        second.overall_code(),
        Code::OverLimit,
        "user over 1/minute not refused: {second:?}"
    );
    assert_eq!(
        second.statuses[0].code(),
        Code::Ok,
        "the tenant limit itself is not exceeded"
    );
    assert_eq!(second.statuses[1].code(), Code::OverLimit);

    let tenant_only = service
        .ask(request(&domain, vec![descriptor(&[("tenant", "t1")])]))
        .await;
    assert_eq!(
        tenant_only.statuses[0].limit_remaining, 98,
        "the refused request drained the tenant's bucket: {tenant_only:?}"
    );
}

#[tokio::test]
async fn shadow_mode_answers_ok_but_counts_and_reports() {
    let domain = unique_domain("shadow");
    let service = Service::start(&limits(
        &domain,
        "  - key: user_id\n    rate_limit: { unit: minute, requests_per_unit: 2 }\n    shadow_mode: true\n",
    ))
    .await;
    let mut remaining = Vec::new();
    for _ in 0..4 {
        let response = service
            .ask(request(&domain, vec![descriptor(&[("user_id", "u1")])]))
            .await;
        assert_eq!(
            response.overall_code(),
            Code::Ok,
            "shadow mode refused: {response:?}"
        );
        assert_eq!(only_status(&response).code(), Code::Ok);
        remaining.push(only_status(&response).limit_remaining);
    }
    assert_eq!(remaining, [1, 0, 0, 0], "shadow limit did not count");
    let lines = service.metric_lines(&domain).await;
    let count = |decision: &str| {
        lines
            .iter()
            .find(|l| {
                l.starts_with("ratelimit_decisions_total")
                    && l.contains(&format!("decision=\"{decision}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert_eq!(
        count("ok"),
        2.0,
        "ok decisions not counted:\n{}",
        lines.join("\n")
    );
    assert_eq!(
        count("shadow_over_limit"),
        2.0,
        "shadow decisions not counted:\n{}",
        lines.join("\n")
    );
    assert!(
        lines.iter().any(|l| l.contains("descriptor=\"user_id\"")),
        "decisions not labelled by descriptor:\n{}",
        lines.join("\n")
    );
    let (_, metrics) = service.admin_get("/metrics").await;
    assert!(
        metrics.contains("ratelimit_redis_duration_seconds_bucket"),
        "Redis latency histogram missing"
    );
}

#[tokio::test]
async fn unlimited_unknown_descriptors_and_unknown_domains_are_ok() {
    let domain = unique_domain("open");
    let service = Service::start(&limits(
        &domain,
        concat!(
            "  - key: user_id\n    rate_limit: { unit: minute, requests_per_unit: 1 }\n",
            "  - key: user_id\n    value: admin\n    unlimited: true\n",
        ),
    ))
    .await;
    for _ in 0..5 {
        let admin = service
            .ask(request(&domain, vec![descriptor(&[("user_id", "admin")])]))
            .await;
        assert_eq!(
            admin.overall_code(),
            Code::Ok,
            "unlimited descriptor refused: {admin:?}"
        );
        let status = only_status(&admin);
        assert_eq!(status.limit_remaining, u32::MAX);
        assert!(status.current_limit.is_none());
    }
    for (domain, entries) in [
        (domain.as_str(), [("tenant", "t1")]),
        (domain.as_str(), [("user_id", "u1")]),
        ("no-such-domain", [("user_id", "u1")]),
    ] {
        let response = service
            .ask(request(domain, vec![descriptor(&entries)]))
            .await;
        assert_eq!(
            response.overall_code(),
            Code::Ok,
            "{domain} {entries:?}: {response:?}"
        );
    }
    let unknown = service
        .ask(request(&domain, vec![descriptor(&[("tenant", "t1")])]))
        .await;
    assert!(
        only_status(&unknown).current_limit.is_none(),
        "no limit applies: {unknown:?}"
    );
}

#[tokio::test]
async fn hits_addend_counts_several_requests_at_once() {
    let domain = unique_domain("hits");
    let service = Service::start(&limits(
        &domain,
        "  - key: user_id\n    rate_limit: { unit: hour, requests_per_unit: 10 }\n",
    ))
    .await;
    let ask = |hits: u32| {
        let mut request = request(&domain, vec![descriptor(&[("user_id", "u1")])]);
        request.hits_addend = hits;
        service.ask(request)
    };
    assert_eq!(only_status(&ask(4).await).limit_remaining, 6);
    assert_eq!(only_status(&ask(4).await).limit_remaining, 2);
    let refused = ask(4).await;
    assert_eq!(
        refused.overall_code(),
        Code::OverLimit,
        "4 hits fit in 2: {refused:?}"
    );
    let last = ask(2).await;
    assert_eq!(
        last.overall_code(),
        Code::Ok,
        "the refused hits were counted: {last:?}"
    );
    assert_eq!(only_status(&last).limit_remaining, 0);
}

#[tokio::test]
async fn a_limit_sent_by_the_caller_overrides_the_file() {
    let domain = unique_domain("override");
    let service = Service::start(&limits(
        &domain,
        "  - key: user_id\n    rate_limit: { unit: hour, requests_per_unit: 100 }\n",
    ))
    .await;
    let mut limited = descriptor(&[("user_id", "u1")]);
    limited.limit = Some(RateLimitOverride {
        requests_per_unit: 2,
        unit: 3, // HOUR
    });
    for _ in 0..2 {
        let response = service.ask(request(&domain, vec![limited.clone()])).await;
        assert_eq!(response.overall_code(), Code::Ok);
        let limit = only_status(&response)
            .current_limit
            .clone()
            .unwrap_or_else(|| panic!("no limit"));
        assert_eq!(
            limit.requests_per_unit, 2,
            "override not applied: {response:?}"
        );
    }
    let refused = service.ask(request(&domain, vec![limited])).await;
    assert_eq!(
        refused.overall_code(),
        Code::OverLimit,
        "3rd of an override of 2 allowed"
    );
}

#[tokio::test]
async fn invalid_requests_name_the_field_and_the_rule() {
    let domain = unique_domain("invalid");
    let service = Service::start(&limits(&domain, "  - key: user_id\n")).await;
    let mut bad_override = descriptor(&[("user_id", "u1")]);
    bad_override.limit = Some(RateLimitOverride {
        requests_per_unit: 5,
        unit: 0,
    });
    for (request, field) in [
        (
            request("", vec![descriptor(&[("user_id", "u1")])]),
            "domain",
        ),
        (request(&domain, vec![]), "descriptors"),
        (
            request(&domain, vec![descriptor(&[])]),
            "descriptors[0].entries",
        ),
        (
            request(
                &domain,
                vec![descriptor(&[("user_id", "u1")]), descriptor(&[("", "x")])],
            ),
            "descriptors[1].entries[0].key",
        ),
        (
            request(&domain, vec![bad_override]),
            "descriptors[0].limit.unit",
        ),
    ] {
        let status = service.ask_err(request).await;
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
}
