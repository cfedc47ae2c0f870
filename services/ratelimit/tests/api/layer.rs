//! The tower layer: a service's own requests held to limits by the same limiter.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bulwark_kernel::config::RedisConfig;
use bulwark_kernel::redis::Redis;
use bulwark_ratelimit::domain::limits::Limits;
use bulwark_ratelimit::domain::request::Descriptor;
use bulwark_ratelimit::layer::{FailureMode, RateLimitLayer};
use bulwark_ratelimit::{Limiter, LimitsHandle};
use secrecy::SecretString;
use tower::{Layer as _, Service as _, ServiceExt as _};

use crate::support::{closed_redis_url, redis_url, unique_domain};

fn limiter(redis: &str, domain: &str) -> Arc<Limiter> {
    let limits = Limits::parse(
        "inline",
        &format!(
            "domain: {domain}\ndescriptors:\n  - key: user_id\n    rate_limit: {{ unit: minute, requests_per_unit: 2 }}\n"
        ),
    )
    .unwrap_or_else(|e| panic!("limits refused: {e}"));
    let redis = Redis::connect(&RedisConfig {
        url: Some(SecretString::from(redis.to_owned())),
        max_connections: 4,
    })
    .unwrap_or_else(|e| panic!("pool: {e}"));
    Arc::new(Limiter::new(
        redis.pool().clone(),
        LimitsHandle::new(limits),
        Duration::from_millis(300),
    ))
}

/// An inner service answering 200 "served", behind the layer; requests with an
/// `x-user` header are limited per user, others are not described.
fn guarded(
    limiter: Arc<Limiter>,
    domain: &str,
    failure_mode: FailureMode,
) -> impl tower::Service<
    http::Request<()>,
    Response = http::Response<String>,
    Error = Infallible,
    Future: Send,
> + Clone {
    let describe = |request: &http::Request<()>| {
        let user = request.headers().get("x-user")?.to_str().ok()?;
        Some(vec![Descriptor::new([("user_id", user)])])
    };
    RateLimitLayer::new(limiter, domain, describe, failure_mode).layer(tower::service_fn(
        |_request: http::Request<()>| async {
            Ok::<_, Infallible>(http::Response::new("served".to_owned()))
        },
    ))
}

fn from(user: Option<&str>) -> http::Request<()> {
    let mut request = http::Request::new(());
    if let Some(user) = user {
        request.headers_mut().insert(
            "x-user",
            http::HeaderValue::from_str(user).unwrap_or_else(|e| panic!("{e}")),
        );
    }
    request
}

fn header<'a>(response: &'a http::Response<String>, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn the_layer_refuses_over_the_limit_with_retry_after() {
    let domain = unique_domain("layer");
    let mut service = guarded(limiter(&redis_url(), &domain), &domain, FailureMode::Open);
    for remaining in ["1", "0"] {
        let response = service
            .ready()
            .await
            .unwrap_or_else(|e| match e {})
            .call(from(Some("u1")))
            .await
            .unwrap_or_else(|e| match e {});
        assert_eq!(response.body(), "served", "allowed request not served");
        assert_eq!(header(&response, "ratelimit-limit"), Some("2"));
        assert_eq!(header(&response, "ratelimit-remaining"), Some(remaining));
    }
    let refused = service
        .clone()
        .oneshot(from(Some("u1")))
        .await
        .unwrap_or_else(|e| match e {});
    assert_eq!(
        refused.body(),
        "",
        "the inner service ran for a refused request"
    );
    assert_eq!(
        header(&refused, "grpc-status"),
        Some("8"),
        "not RESOURCE_EXHAUSTED"
    );
    let retry_after: u64 = header(&refused, "retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no retry-after: {:?}", refused.headers()));
    assert!(
        (1..=30).contains(&retry_after),
        "retry-after {retry_after} s for 2/minute"
    );
    assert_eq!(header(&refused, "ratelimit-remaining"), Some("0"));
}

#[tokio::test]
async fn the_layer_passes_requests_it_does_not_describe() {
    let domain = unique_domain("layer-skip");
    let service = guarded(limiter(&redis_url(), &domain), &domain, FailureMode::Closed);
    for _ in 0..5 {
        let response = service
            .clone()
            .oneshot(from(None))
            .await
            .unwrap_or_else(|e| match e {});
        assert_eq!(response.body(), "served");
        assert!(header(&response, "ratelimit-remaining").is_none());
    }
}

#[tokio::test]
async fn the_layer_fails_open_or_closed_as_configured_when_redis_is_down() {
    let domain = unique_domain("layer-down");
    let down = limiter(&closed_redis_url(), &domain);
    let open = guarded(Arc::clone(&down), &domain, FailureMode::Open)
        .oneshot(from(Some("u1")))
        .await
        .unwrap_or_else(|e| match e {});
    assert_eq!(open.body(), "served", "fail-open refused the request");
    let closed = guarded(down, &domain, FailureMode::Closed)
        .oneshot(from(Some("u1")))
        .await
        .unwrap_or_else(|e| match e {});
    assert_eq!(
        header(&closed, "grpc-status"),
        Some("14"),
        "fail-closed did not answer UNAVAILABLE"
    );
}
