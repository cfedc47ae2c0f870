//! The edge in every trace: Envoy's OpenTelemetry tracer and the services export to one
//! OTLP receiver (a tonic server of the official OTLP protos, since no collector runs on
//! these machines; see `bulwark_e2e::otlp`). A request through the edge is one trace whose
//! root span is Envoy's and whose other spans are the services', every parent id in the
//! trace; requests the edge answers itself are traced too, with the gateway filter's
//! decision as attributes; the access-log line of a request carries its trace id.

use std::time::Duration;

use bulwark_e2e::{Mesh, OtlpReceiver, ReceivedSpan, poll_until};
use reqwest::StatusCode;
use serde_json::{Value, json};

const SPAN_TIMEOUT: Duration = Duration::from_secs(30);
const LOG_TIMEOUT: Duration = Duration::from_secs(10);
const EDGE_SERVICE: &str = "bulwark-edge";
const GET_ME: &str = "/bulwark.identity.v1.IdentityService/GetMe";

async fn traced_mesh() -> (OtlpReceiver, Mesh) {
    let receiver = OtlpReceiver::start()
        .await
        .expect("starting the OTLP receiver");
    let mesh = Mesh::builder()
        .all_services()
        .envoy()
        .otlp(&receiver.endpoint())
        .start()
        .await
        .expect("starting the mesh with OTLP export");
    (receiver, mesh)
}

fn post_json(http: &reqwest::Client, url: &str, body: &Value) -> reqwest::RequestBuilder {
    http.post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
}

/// A request's status and `x-request-id`.
async fn send(request: reqwest::RequestBuilder, what: &str) -> (StatusCode, String) {
    let response = request
        .send()
        .await
        .unwrap_or_else(|err| panic!("{what}: {err}"));
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("{what}: the answer has no x-request-id"))
        .to_owned();
    (response.status(), request_id)
}

/// The edge's access-log line of the request `request_id` (JSON lines of envoy.log).
async fn access_log_line(mesh: &Mesh, request_id: &str) -> Value {
    let log = mesh.dir().join("logs/envoy.log");
    poll_until(
        &format!("the access-log line of request {request_id}"),
        LOG_TIMEOUT,
        || async {
            let text = std::fs::read_to_string(&log).map_err(|e| e.to_string())?;
            text.lines()
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                .find(|line| line["request_id"] == request_id)
                .ok_or_else(|| format!("no line with request_id {request_id} in {}", log.display()))
        },
    )
    .await
    .unwrap_or_else(|err| panic!("{err:#}"))
}

/// The trace id the access log gives for `request_id`: 32 hex digits.
async fn logged_trace_id(mesh: &Mesh, request_id: &str) -> String {
    let line = access_log_line(mesh, request_id).await;
    let trace_id = line["trace_id"].as_str().unwrap_or_default().to_owned();
    assert!(
        trace_id.len() == 32 && trace_id.chars().all(|c| c.is_ascii_hexdigit()),
        "the access-log line of {request_id} carries no trace id: {line}"
    );
    trace_id
}

/// Waits for the edge's span of trace `trace_id`, which must be its root.
async fn edge_span(receiver: &OtlpReceiver, trace_id: &str, what: &str) -> ReceivedSpan {
    receiver
        .wait_for(
            &format!("the edge span of {what} (trace {trace_id})"),
            SPAN_TIMEOUT,
            |spans| {
                let edge: Vec<&ReceivedSpan> = spans
                    .iter()
                    .filter(|s| s.trace_id == trace_id && s.service == EDGE_SERVICE)
                    .collect();
                match edge.as_slice() {
                    [] => Err("no edge span yet".to_owned()),
                    [span] if span.parent_span_id.is_none() => Ok((*span).clone()),
                    [span] => Err(format!(
                        "the edge span is not the root: parent {:?}",
                        span.parent_span_id
                    )),
                    more => Err(format!("{} edge spans in one trace", more.len())),
                }
            },
        )
        .await
        .unwrap_or_else(|err| panic!("{err:#}"))
}

fn assert_attribute(span: &ReceivedSpan, key: &str, expected: &str, what: &str) {
    assert_eq!(
        span.attribute(key),
        Some(expected),
        "{what}: edge span attribute {key}: {:?}",
        span.attributes
    );
}

async fn register_and_log_in(mesh: &Mesh) -> String {
    let email = format!("traced-{}@example.com", uuid::Uuid::new_v4().simple());
    let password = "tracing-password-1";
    let http = mesh.http();
    let (status, _) = send(
        post_json(
            http,
            &mesh.edge_url("/v1/users"),
            &json!({"email": email, "password": password, "display_name": "Traced"}),
        ),
        "registering",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "registering through the edge");
    let response = post_json(
        http,
        &mesh.edge_url("/v1/auth/login"),
        &json!({"email": email, "password": password}),
    )
    .send()
    .await
    .expect("logging in");
    assert_eq!(response.status(), StatusCode::OK, "logging in");
    let text = response.text().await.expect("reading the login answer");
    let body: Value = serde_json::from_str(&text).expect("the login answer is JSON");
    body["access_token"]
        .as_str()
        .expect("the login answer has an access token")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_through_the_edge_is_one_trace_rooted_at_the_edge() {
    let (receiver, mesh) = traced_mesh().await;
    let token = register_and_log_in(&mesh).await;

    // No traceparent from the client: the edge starts the trace.
    let (status, request_id) = send(
        mesh.http()
            .get(mesh.edge_url("/v1/users/me"))
            .bearer_auth(&token),
        "GET /v1/users/me",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "GET /v1/users/me with the token");
    let line = access_log_line(&mesh, &request_id).await;
    // The filter records only what differs from allowed-with-a-cached-token: allowed is
    // a null decision here, and the token's first use a miss.
    assert_eq!(
        (
            line["decision"].as_str(),
            line["token_cache"].as_str(),
            line["route"].as_str()
        ),
        (None, Some("miss"), Some("identity")),
        "the access-log line gives the filter's decision, its cache and the route: {line}"
    );
    let trace_id = logged_trace_id(&mesh, &request_id).await;

    let edge = edge_span(&receiver, &trace_id, "GET /v1/users/me").await;
    assert_attribute(&edge, "bulwark.decision", "allowed", "GET /v1/users/me");
    assert_attribute(&edge, "bulwark.route", "identity", "GET /v1/users/me");
    assert_attribute(&edge, "rpc.path", GET_ME, "GET /v1/users/me");
    assert_attribute(&edge, "http.status_code", "200", "GET /v1/users/me");
    assert_eq!(
        edge.attribute("bulwark.token_cache"),
        Some("miss"),
        "the token's first use at the edge is verified in full: {:?}",
        edge.attributes
    );

    // Identity's server span is the edge span's child, and every span of the trace
    // (identity's database spans, its calls to Authz or Audit) hangs off a span of it.
    let trace = receiver
        .wait_for(
            &format!("identity's span of GetMe under the edge span (trace {trace_id})"),
            SPAN_TIMEOUT,
            |spans| {
                let trace: Vec<ReceivedSpan> = spans
                    .iter()
                    .filter(|s| s.trace_id == trace_id)
                    .cloned()
                    .collect();
                let child = trace.iter().find(|s| {
                    s.service == "bulwark-identity"
                        && s.parent_span_id.as_deref() == Some(edge.span_id.as_str())
                });
                match child {
                    Some(_) => Ok(trace),
                    None => Err("identity's server span has not arrived yet".to_owned()),
                }
            },
        )
        .await
        .unwrap_or_else(|err| panic!("{err:#}"));
    let server = trace
        .iter()
        .find(|s| s.parent_span_id.as_deref() == Some(edge.span_id.as_str()))
        .expect("found above");
    assert!(
        server.name.contains("GetMe"),
        "the edge span's child is not identity's GetMe: {server:?}"
    );
    let roots: Vec<&ReceivedSpan> = trace
        .iter()
        .filter(|s| s.parent_span_id.is_none())
        .collect();
    assert_eq!(roots.len(), 1, "one root in the trace: {trace:#?}");
    for span in &trace {
        if let Some(parent) = &span.parent_span_id {
            assert!(
                trace.iter().any(|s| &s.span_id == parent),
                "span {:?} of {} has parent {parent}, which is not in the trace: {trace:#?}",
                span.name,
                span.service
            );
        }
    }

    // The same token again: answered from the filter's cache. The client also sends the
    // headers the filter records its facts in: the edge drops them, so they cannot
    // speak for the filter in the span.
    let (status, request_id) = send(
        mesh.http()
            .get(mesh.edge_url("/v1/users/me"))
            .bearer_auth(&token)
            .header("x-bulwark-decision", "rate_limited")
            .header("x-bulwark-token-cache", "miss")
            .header("x-bulwark-reason", "forged"),
        "GET /v1/users/me again",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let trace_id = logged_trace_id(&mesh, &request_id).await;
    let again = edge_span(&receiver, &trace_id, "GET /v1/users/me again").await;
    assert_attribute(
        &again,
        "bulwark.token_cache",
        "hit",
        "the second GET /v1/users/me",
    );
    assert_attribute(
        &again,
        "bulwark.decision",
        "allowed",
        "the second GET /v1/users/me",
    );
    assert_eq!(
        again.attribute("bulwark.reason"),
        None,
        "a client's x-bulwark-reason reached the span: {:?}",
        again.attributes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_the_edge_gives_itself_are_traced_with_the_filters_decision() {
    let (receiver, mesh) = traced_mesh().await;
    let http = mesh.http();

    // 401 without a token, and with a malformed one.
    let (status, request_id) = send(http.get(mesh.edge_url("/v1/users/me")), "no token").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let trace_id = logged_trace_id(&mesh, &request_id).await;
    let span = edge_span(&receiver, &trace_id, "the 401 without a token").await;
    assert_attribute(&span, "bulwark.decision", "unauthenticated", "no token");
    assert_attribute(&span, "bulwark.reason", "missing_token", "no token");
    assert_attribute(&span, "http.status_code", "401", "no token");

    let (status, request_id) = send(
        http.get(mesh.edge_url("/v1/users/me"))
            .bearer_auth("not.a-token.at-all"),
        "a malformed token",
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let trace_id = logged_trace_id(&mesh, &request_id).await;
    let span = edge_span(&receiver, &trace_id, "the 401 for a malformed token").await;
    assert_attribute(&span, "bulwark.reason", "malformed", "a malformed token");
    assert_attribute(&span, "bulwark.token_cache", "miss", "a malformed token");

    // 429: logins from one address over 10 a minute. A new "email" each time, refused at
    // once by Auth, so that the per-account lockout does not answer first.
    let mut refused = None;
    for attempt in 1..=11 {
        let body = json!({
            "email": format!("not-an-email-{}", uuid::Uuid::new_v4().simple()),
            "password": "whatever-it-is",
        });
        let (status, request_id) = send(
            post_json(http, &mesh.edge_url("/v1/auth/login"), &body),
            &format!("login attempt {attempt}"),
        )
        .await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(request_id);
            break;
        }
    }
    let request_id = refused.expect("the 11th login in a minute is refused with 429");
    let trace_id = logged_trace_id(&mesh, &request_id).await;
    let span = edge_span(&receiver, &trace_id, "the 429").await;
    assert_attribute(&span, "bulwark.decision", "rate_limited", "the 429");
    assert_attribute(&span, "http.status_code", "429", "the 429");

    // 413 from the body limit and a CORS preflight: answered before the filter decides,
    // traced all the same.
    let (status, request_id) = send(
        http.post(mesh.edge_url("/v1/users"))
            .header("content-type", "application/json")
            .body(vec![b' '; 1_100_000]),
        "a body over 1 MiB",
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let trace_id = logged_trace_id(&mesh, &request_id).await;
    let span = edge_span(&receiver, &trace_id, "the 413").await;
    assert_attribute(&span, "http.status_code", "413", "the 413");

    let (status, request_id) = send(
        http.request(reqwest::Method::OPTIONS, mesh.edge_url("/v1/users/me"))
            .header("origin", "http://localhost:3000")
            .header("access-control-request-method", "GET"),
        "a CORS preflight",
    )
    .await;
    assert!(status.is_success(), "the preflight answered {status}");
    let trace_id = logged_trace_id(&mesh, &request_id).await;
    edge_span(&receiver, &trace_id, "the CORS preflight").await;

    // None of these reached a service: their traces hold the edge span alone.
    let spans = receiver.spans();
    assert!(
        spans
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .all(|s| s.service == EDGE_SERVICE),
        "the preflight's trace has spans of services"
    );
}
