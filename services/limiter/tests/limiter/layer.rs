//! The tower layer: a service's own requests held to limits by the same limiter, and a
//! generated tonic server behind it served by the kernel.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bulwark_kernel::config::{KernelConfig, RedisConfig};
use bulwark_kernel::redis::Redis;
use bulwark_kernel::testing::{settings, start_stateless};
use bulwark_kernel::{GrpcServices, ServiceSpec};
use bulwark_limiter::{Descriptor, FailureMode, Limiter, Limits, LimitsHandle, RateLimitLayer};
use bulwark_proto::audit::v1::audit_service_client::AuditServiceClient;
use bulwark_proto::audit::v1::audit_service_server::{AuditService, AuditServiceServer};
use bulwark_proto::audit::v1::{
    AppendEventsRequest, AppendEventsResponse, ListCheckpointsRequest, ListCheckpointsResponse,
    ListEventsRequest, ListEventsResponse, VerifyChainRequest, VerifyChainResponse,
};
use secrecy::SecretString;
use tonic::{Code, Request, Response, Status};
use tower::{Layer as _, Service as _, ServiceExt as _};

use super::{closed_redis_url, redis_url, unique_domain};

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
        &redis,
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

/// Audit's API answering only AppendEvents, as a generated server to put behind the layer.
struct Appends;

#[tonic::async_trait]
impl AuditService for Appends {
    async fn append_events(
        &self,
        _: Request<AppendEventsRequest>,
    ) -> Result<Response<AppendEventsResponse>, Status> {
        Ok(Response::new(AppendEventsResponse {
            appended: 0,
            duplicates: 0,
        }))
    }
    async fn list_events(
        &self,
        _: Request<ListEventsRequest>,
    ) -> Result<Response<ListEventsResponse>, Status> {
        Err(Status::unimplemented("not used"))
    }
    async fn verify_chain(
        &self,
        _: Request<VerifyChainRequest>,
    ) -> Result<Response<VerifyChainResponse>, Status> {
        Err(Status::unimplemented("not used"))
    }
    async fn list_checkpoints(
        &self,
        _: Request<ListCheckpointsRequest>,
    ) -> Result<Response<ListCheckpointsResponse>, Status> {
        Err(Status::unimplemented("not used"))
    }
}

#[tokio::test]
async fn a_generated_server_behind_the_layer_is_limited_when_the_kernel_serves_it() {
    const SPEC: ServiceSpec = ServiceSpec::new("ratelimit-layer-test", 0, 0);
    let domain = unique_domain("layer-grpc");
    let layer = RateLimitLayer::new(
        limiter(&redis_url(), &domain),
        domain,
        |request: &http::Request<tonic::body::Body>| {
            let user = request.headers().get("x-user")?.to_str().ok()?;
            Some(vec![Descriptor::new([("user_id", user)])])
        },
        FailureMode::Closed,
    );
    let database = KernelConfig::defaults(&SPEC).database;
    let (running, _kernel) = start_stateless(
        settings(&SPEC, database, |_| {}, &[]),
        move |_kernel| async move {
            Ok(GrpcServices::new().with(layer.layer(AuditServiceServer::new(Appends))))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("start: {e:#}"));
    let mut client = AuditServiceClient::connect(format!("http://{}", running.grpc_addr))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let append = || {
        let mut request = Request::new(AppendEventsRequest { events: Vec::new() });
        request
            .metadata_mut()
            .insert("x-user", tonic::metadata::MetadataValue::from_static("u1"));
        request
    };
    for remaining in ["1", "0"] {
        let response = client
            .append_events(append())
            .await
            .unwrap_or_else(|status| panic!("allowed call refused: {status:?}"));
        assert_eq!(
            response
                .metadata()
                .get("ratelimit-remaining")
                .and_then(|v| v.to_str().ok()),
            Some(remaining),
            "no ratelimit-remaining on an allowed call: {:?}",
            response.metadata()
        );
    }
    let refused = match client.append_events(append()).await {
        Ok(response) => panic!("3rd call of 2/minute allowed: {response:?}"),
        Err(status) => status,
    };
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.metadata().get("retry-after").is_some(),
        "no retry-after on the refused call: {refused:?}"
    );
    running.shutdown().await;
}
