//! gRPC clients through the edge: routing to the service and trace continuation.

use std::time::Duration;

use bulwark_e2e::{Mesh, ServiceKind, poll_until};
use bulwark_proto::identity::v1::CreateUserRequest;
use bulwark_proto::identity::v1::identity_service_client::IdentityServiceClient;
use serde_json::Value;
use tonic::Code;

use crate::support::{new_trace_id, upstream_requests};

fn invalid_registration() -> CreateUserRequest {
    CreateUserRequest {
        email: "not-an-email".to_owned(),
        password: "short".to_owned(),
        display_name: String::new(),
    }
}

async fn identity_behind_envoy() -> Mesh {
    Mesh::builder()
        .service(ServiceKind::Identity)
        .envoy()
        .start()
        .await
        .expect("starting identity behind envoy")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_call_through_envoy_reaches_a_service() {
    let mesh = identity_behind_envoy().await;
    let before = upstream_requests(&mesh, "identity").await;
    let mut client = IdentityServiceClient::connect(mesh.edge_url(""))
        .await
        .expect("connecting to the edge over HTTP/2");

    // A public RPC with input the service rejects: it must come back from identity itself.
    let (code, message, request_id) = match client.create_user(invalid_registration()).await {
        Ok(response) => (
            Code::Ok,
            String::new(),
            response.metadata().get("x-request-id").cloned(),
        ),
        Err(status) => (
            status.code(),
            status.message().to_owned(),
            status.metadata().get("x-request-id").cloned(),
        ),
    };
    assert!(
        code != Code::Unavailable && !message.contains("no route"),
        "the edge answered itself instead of routing to identity: {code:?} {message:?}"
    );
    let after = upstream_requests(&mesh, "identity").await;
    assert!(
        after > before,
        "Envoy sent nothing to the identity cluster (upstream_rq_total {before} -> {after})"
    );
    assert!(
        request_id.is_some(),
        "the edge's answer carries no x-request-id"
    );

    let metrics = mesh
        .http()
        .get(mesh.service(ServiceKind::Identity).admin_url("/metrics"))
        .send()
        .await
        .expect("GET identity /metrics")
        .text()
        .await
        .expect("reading /metrics");
    assert!(
        metrics.contains(r#"function="CreateUser""#),
        "identity did not count the CreateUser call that went through the edge; /metrics:\n{metrics}"
    );
}

/// True if `value` holds, at any depth, a `trace_id` equal to `trace_id`.
fn has_trace_id(value: &Value, trace_id: &str) -> bool {
    match value {
        Value::Object(map) => map.iter().any(|(key, v)| {
            (key == "trace_id" && v.as_str() == Some(trace_id)) || has_trace_id(v, trace_id)
        }),
        Value::Array(items) => items.iter().any(|v| has_trace_id(v, trace_id)),
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_line_of_a_call_carries_its_trace_id() {
    let mesh = identity_behind_envoy().await;
    let trace_id = new_trace_id();
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let mut client = IdentityServiceClient::connect(mesh.edge_url(""))
        .await
        .expect("connecting to the edge over HTTP/2");
    let mut request = tonic::Request::new(invalid_registration());
    request.metadata_mut().insert(
        "traceparent",
        traceparent
            .parse()
            .expect("a valid traceparent header value"),
    );
    let _ = client.create_user(request).await;

    let log = mesh.service(ServiceKind::Identity).log().to_path_buf();
    let found = poll_until(
        "a log line of identity with the caller's trace_id",
        Duration::from_secs(10),
        || {
            let log = log.clone();
            let trace_id = trace_id.clone();
            async move {
                let text = std::fs::read_to_string(&log).map_err(|err| err.to_string())?;
                let lines = text.lines().count();
                text.lines()
                    .find(|line| {
                        serde_json::from_str::<Value>(line)
                            .is_ok_and(|json| has_trace_id(&json, &trace_id))
                    })
                    .map(str::to_owned)
                    .ok_or_else(|| format!("none among {lines} lines"))
            }
        },
    )
    .await
    .unwrap_or_else(|err| panic!("sent traceparent {traceparent} through the edge: {err:#}"));
    assert!(
        found.contains("timestamp") && found.contains("level"),
        "the line with the trace id is not a structured log line: {found}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_rpcs_are_not_reachable_from_the_edge() {
    use bulwark_proto::identity::v1::VerifyCredentialsRequest;

    let mesh = identity_behind_envoy().await;
    let before = upstream_requests(&mesh, "identity").await;
    let mut client = IdentityServiceClient::connect(mesh.edge_url(""))
        .await
        .expect("connecting to the edge over HTTP/2");
    let status = client
        .verify_credentials(VerifyCredentialsRequest {
            email: "admin@bulwark.local".to_owned(),
            password: "bulwark-admin-change-me".to_owned(),
        })
        .await
        .expect_err("VerifyCredentials answered through the edge");
    assert_eq!(
        status.code(),
        Code::Unimplemented,
        "the edge should answer an internal RPC as a missing route (HTTP 404 → UNIMPLEMENTED): {status:?}"
    );
    let after = upstream_requests(&mesh, "identity").await;
    assert_eq!(
        after, before,
        "the internal RPC reached identity (upstream_rq_total {before} -> {after})"
    );
}
