//! The shipped `limits.yaml` holds the edge contract: public auth routes 10 per minute
//! per client IP and route, bearer routes 100 per second per user.

use bulwark_proto::envoy::service::ratelimit::v3::rate_limit_response::{Code, rate_limit::Unit};

use crate::support::{Service, descriptor, request};

const EDGE_DOMAIN: &str = "bulwark-edge";

async fn shipped() -> Service {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/limits.yaml");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    Service::start(&text).await
}

/// A client IP (or user id) no earlier run has used, since the domain is shared.
fn fresh(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn public_routes_allow_ten_per_minute_per_client_ip_and_route() {
    let service = shipped().await;
    let ip = fresh("ip");
    for route in [
        "/v1/auth/login",
        "/v1/auth/refresh",
        "/v1/users",
        "/v1/oauth2/token",
        "/v1/users/verify-email",
        "/v1/auth/password-reset",
        "/v1/auth/password-reset/confirm",
        "/v1/auth/login/mfa",
    ] {
        let ask = || {
            service.ask(request(
                EDGE_DOMAIN,
                vec![descriptor(&[("route", route), ("client_ip", ip.as_str())])],
            ))
        };
        for i in 0..10 {
            let response = ask().await;
            assert_eq!(
                response.overall_code(),
                Code::Ok,
                "{route}: request {i} refused"
            );
            let limit = response.statuses[0]
                .current_limit
                .clone()
                .unwrap_or_else(|| panic!("{route}: no limit"));
            assert_eq!(
                (limit.requests_per_unit, limit.unit()),
                (10, Unit::Minute),
                "{route}"
            );
        }
        assert_eq!(
            ask().await.overall_code(),
            Code::OverLimit,
            "{route}: 11th request in a minute allowed"
        );
    }
    let other_ip = service
        .ask(request(
            EDGE_DOMAIN,
            vec![descriptor(&[
                ("route", "/v1/auth/login"),
                ("client_ip", fresh("ip").as_str()),
            ])],
        ))
        .await;
    assert_eq!(
        other_ip.overall_code(),
        Code::Ok,
        "client IPs must not share a counter"
    );
}

#[tokio::test]
async fn bearer_routes_allow_a_hundred_per_second_per_user() {
    let service = shipped().await;
    let user = fresh("user");
    let ask = |hits: u32| {
        let mut request = request(EDGE_DOMAIN, vec![descriptor(&[("user_id", user.as_str())])]);
        request.hits_addend = hits;
        service.ask(request)
    };
    let started = std::time::Instant::now();
    let burst = ask(100).await;
    assert_eq!(
        burst.overall_code(),
        Code::Ok,
        "a burst of 100 refused: {burst:?}"
    );
    let limit = burst.statuses[0]
        .current_limit
        .clone()
        .unwrap_or_else(|| panic!("no limit"));
    assert_eq!((limit.requests_per_unit, limit.unit()), (100, Unit::Second));
    let more = ask(5).await;
    // At 100/s, 5 more requests fit only once 50 ms have passed since the burst.
    if started.elapsed() < std::time::Duration::from_millis(50) {
        assert_eq!(
            more.overall_code(),
            Code::OverLimit,
            "105 requests within 50 ms allowed"
        );
    }
}
