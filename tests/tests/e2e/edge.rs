//! What a client sees at the edge itself (CONTRACT "Every response"): security headers
//! on Envoy's own replies and on proxied ones, CORS preflight, body limit, gzip, and no
//! `server` header naming the proxy.

use bulwark_e2e::{Mesh, ServiceKind};
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{
    INVALID_REGISTRATION, assert_no_proxy_server_header, assert_security_headers, upstream_requests,
};

async fn edge_only() -> Mesh {
    Mesh::builder()
        .envoy()
        .start()
        .await
        .expect("starting envoy")
}

async fn identity_behind_envoy() -> Mesh {
    Mesh::builder()
        .service(ServiceKind::Identity)
        .envoy()
        .start()
        .await
        .expect("starting identity behind envoy")
}

async fn json_body(response: reqwest::Response) -> Value {
    let text = response.text().await.expect("reading the body");
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("body is not JSON ({err}): {text:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_route_answers_json_404_with_security_headers() {
    let mesh = edge_only().await;
    let response = mesh
        .http()
        .get(mesh.edge_url("/no/such/route"))
        .send()
        .await
        .expect("GET an unknown route");
    assert_eq!(
        response.status(),
        StatusCode::NOT_FOUND,
        "unknown route answered {}",
        response.status()
    );
    assert_security_headers(response.headers(), "Envoy's own 404");
    assert!(
        response.headers().contains_key("x-request-id"),
        "404 without x-request-id"
    );
    let body = json_body(response).await;
    assert_eq!(
        body["code"], 5,
        "404 body's code is not NOT_FOUND (5): {body}"
    );
    assert!(
        body["message"].is_string(),
        "404 body has no message: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxied_response_carries_security_headers_and_json_error() {
    let mesh = identity_behind_envoy().await;
    let before = upstream_requests(&mesh, "identity").await;
    let response = mesh
        .http()
        .post(mesh.edge_url("/v1/users"))
        .header("content-type", "application/json")
        .body(INVALID_REGISTRATION)
        .send()
        .await
        .expect("POST /v1/users");
    let after = upstream_requests(&mesh, "identity").await;
    assert!(
        after > before,
        "POST /v1/users never reached identity (answered {})",
        response.status()
    );
    assert_security_headers(response.headers(), "a response proxied from identity");
    assert_no_proxy_server_header(response.headers(), "a response proxied from identity");
    // The contract: a bad email and a short password are INVALID_ARGUMENT, 400, with
    // the gRPC code (3) and a message in the body.
    let status = response.status();
    let body = json_body(response).await;
    assert_eq!(
        status,
        reqwest::StatusCode::BAD_REQUEST,
        "an invalid registration answered {status}: {body}"
    );
    assert!(
        body["code"] == 3 && body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error body is not {{code: 3 (INVALID_ARGUMENT), message}}: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_is_answered_at_the_edge() {
    let mesh = edge_only().await;
    let preflight = |origin: &'static str| {
        mesh.http()
            .request(reqwest::Method::OPTIONS, mesh.edge_url("/v1/users"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type, authorization",
            )
            .send()
    };

    let allowed = preflight("http://localhost:3000")
        .await
        .expect("preflight from an allowed origin");
    assert_eq!(
        allowed.status(),
        StatusCode::OK,
        "preflight answered {}",
        allowed.status()
    );
    let header = |name: &str| {
        allowed
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(
        header("access-control-allow-origin"),
        "http://localhost:3000",
        "allow-origin of an allowed origin"
    );
    assert!(
        header("access-control-allow-methods").contains("POST"),
        "allow-methods lacks POST"
    );
    assert!(
        header("access-control-allow-headers").contains("authorization"),
        "allow-headers lacks authorization"
    );
    assert_security_headers(allowed.headers(), "a CORS preflight");

    let refused = preflight("https://evil.example")
        .await
        .expect("preflight from another origin");
    assert!(
        !refused
            .headers()
            .contains_key("access-control-allow-origin"),
        "an unlisted origin was allowed: {:?}",
        refused.headers()
    );
    // Answered by Envoy: the (closed) identity upstream was never tried.
    assert_eq!(
        upstream_requests(&mesh, "identity").await,
        0,
        "a preflight went upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_body_over_1_mib_answers_413() {
    let mesh = edge_only().await;
    let big = format!(
        r#"{{"email":"{}","password":"x","display_name":"x"}}"#,
        "a".repeat(1_200_000)
    );
    let response = mesh
        .http()
        .post(mesh.edge_url("/v1/users"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("POST a 1.2 MB body");
    assert_eq!(
        response.status(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "a 1.2 MB body answered {}",
        response.status()
    );
    assert_security_headers(response.headers(), "the 413");
    let body = json_body(response).await;
    assert!(
        body["code"].is_number() && body["message"].is_string(),
        "413 body is not {{code, message}}: {body}"
    );

    let small = mesh
        .http()
        .post(mesh.edge_url("/v1/users"))
        .header("content-type", "application/json")
        .body(format!(r#"{{"email":"{}"}}"#, "a".repeat(1000)))
        .send()
        .await
        .expect("POST a small body");
    assert_ne!(
        small.status(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "a 1 kB body was refused as too large"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_gzipped_when_the_client_accepts_it() {
    let mesh = edge_only().await;
    let gzipped = mesh
        .http()
        .get(mesh.edge_url("/no/such/route"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("GET with accept-encoding: gzip");
    assert_eq!(
        gzipped
            .headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("gzip"),
        "no gzip although accepted: {:?}",
        gzipped.headers()
    );
    assert_security_headers(gzipped.headers(), "a gzipped response");
    let bytes = gzipped.bytes().await.expect("reading the gzipped body");
    assert!(
        bytes.starts_with(&[0x1f, 0x8b]),
        "body is not gzip data: {bytes:?}"
    );

    let plain = mesh
        .http()
        .get(mesh.edge_url("/no/such/route"))
        .send()
        .await
        .expect("GET without gzip");
    assert!(
        !plain.headers().contains_key("content-encoding"),
        "compressed although the client did not accept it: {:?}",
        plain.headers()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_server_header_names_the_proxy() {
    let mesh = identity_behind_envoy().await;
    let http = mesh.http();
    let cases = [
        ("GET /healthz", http.get(mesh.edge_url("/healthz"))),
        (
            "GET of an unknown route",
            http.get(mesh.edge_url("/no/such/route")),
        ),
        (
            "POST /v1/users (proxied)",
            http.post(mesh.edge_url("/v1/users"))
                .header("content-type", "application/json")
                .body(INVALID_REGISTRATION),
        ),
    ];
    for (what, request) in cases {
        let response = request
            .send()
            .await
            .unwrap_or_else(|err| panic!("{what}: {err}"));
        assert_no_proxy_server_header(response.headers(), what);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_service_answers_json_503() {
    // Envoy alone: every service cluster points at a closed port.
    let mesh = edge_only().await;
    let response = mesh
        .http()
        .post(mesh.edge_url("/v1/auth/login"))
        .header("content-type", "application/json")
        .body(r#"{"email":"a@example.com","password":"whatever-it-is"}"#)
        .send()
        .await
        .expect("POST /v1/auth/login");
    assert_eq!(
        response.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "login with auth down answered {}",
        response.status()
    );
    assert_security_headers(response.headers(), "the 503 for a service that is down");
    let body = json_body(response).await;
    assert_eq!(
        body["code"], 14,
        "503 body's code is not UNAVAILABLE (14): {body}"
    );
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        !message.contains("upstream") && !message.contains("reset reason"),
        "the 503 leaks proxy internals: {message:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_answers_400_with_json_error() {
    let mesh = edge_only().await;
    let response = mesh
        .http()
        .post(mesh.edge_url("/v1/users"))
        .header("content-type", "application/json")
        .body(r#"{"email":"#)
        .send()
        .await
        .expect("POST a truncated JSON body");
    assert_eq!(
        response.status(),
        StatusCode::BAD_REQUEST,
        "truncated JSON answered {}",
        response.status()
    );
    assert_security_headers(response.headers(), "the transcoder's 400");
    let body = json_body(response).await;
    assert_eq!(
        body["code"], 3,
        "400 body's code is not INVALID_ARGUMENT (3): {body}"
    );
}
