//! One edge policy whatever the method (issue 8): every method on every gRPC path of
//! every service, and REST path tricks, through the real edge and the real services.
//!
//! A service routes on the path alone, so what the edge lets through must not depend
//! on the method either: gRPC calls are POST and anything else on a gRPC path is
//! answered by the edge; public calls meet their per-IP limit, bearer calls need a token,
//! internal RPCs never answer; a path written another way (trailing slash, `//`, case,
//! escapes, dot segments, `;`) reaches no bearer route without a token and skips no limit.
//!
//! Requests are sent raw (HTTP/2 through a tonic channel, HTTP/1.1 over a plain socket) so
//! that method and path reach Envoy exactly as written: an HTTP client library would
//! normalize the path first.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::pin::Pin;
use std::time::Duration;

use bulwark_e2e::{Mesh, ServiceKind};
use tonic::codegen::Body as _;
use tonic::codegen::Service as _;
use tonic::codegen::http;
use tonic::transport::{Channel, Endpoint};

use super::{ADMIN_EMAIL, ADMIN_PASSWORD, bearer, login, start_mesh};
use crate::support::upstream_requests;

/// What a gRPC path is at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Public and limited per client IP.
    Limited,
    /// Public, not limited (the JWKS).
    Public,
    /// Needs a bearer token.
    Bearer,
    /// Service-to-service only: never answered through the edge.
    Internal,
}

/// Every RPC of every service (proto/proto/bulwark/*/v1/*.proto), with `CreateClient`,
/// `IssueToken` and `ResolveRoles` of issue 8: the cluster it is routed to and its kind.
const RPCS: &[(&str, &str, Kind)] = &[
    (
        "/bulwark.identity.v1.IdentityService/CreateUser",
        "identity",
        Kind::Limited,
    ),
    (
        "/bulwark.identity.v1.IdentityService/GetMe",
        "identity",
        Kind::Bearer,
    ),
    (
        "/bulwark.identity.v1.IdentityService/GetUser",
        "identity",
        Kind::Bearer,
    ),
    (
        "/bulwark.identity.v1.IdentityService/UpdateDisplayName",
        "identity",
        Kind::Bearer,
    ),
    (
        "/bulwark.identity.v1.IdentityService/DeactivateUser",
        "identity",
        Kind::Bearer,
    ),
    (
        "/bulwark.identity.v1.IdentityService/VerifyCredentials",
        "identity",
        Kind::Internal,
    ),
    (
        "/bulwark.identity.v1.IdentityService/FindUserByEmail",
        "identity",
        Kind::Internal,
    ),
    (
        "/bulwark.identity.v1.IdentityService/SetPassword",
        "identity",
        Kind::Internal,
    ),
    (
        "/bulwark.identity.v1.IdentityService/MarkEmailVerified",
        "identity",
        Kind::Internal,
    ),
    (
        "/bulwark.identity.v1.IdentityService/SetMfaEnabled",
        "identity",
        Kind::Internal,
    ),
    ("/bulwark.auth.v1.AuthService/Login", "auth", Kind::Limited),
    (
        "/bulwark.auth.v1.AuthService/Refresh",
        "auth",
        Kind::Limited,
    ),
    (
        "/bulwark.auth.v1.AuthService/IssueToken",
        "auth",
        Kind::Limited,
    ),
    (
        "/bulwark.auth.v1.AuthService/VerifyEmail",
        "auth",
        Kind::Limited,
    ),
    (
        "/bulwark.auth.v1.AuthService/RequestPasswordReset",
        "auth",
        Kind::Limited,
    ),
    (
        "/bulwark.auth.v1.AuthService/ConfirmPasswordReset",
        "auth",
        Kind::Limited,
    ),
    (
        "/bulwark.auth.v1.AuthService/RequestEmailVerification",
        "auth",
        Kind::Bearer,
    ),
    (
        "/bulwark.auth.v1.AuthService/ChangePassword",
        "auth",
        Kind::Bearer,
    ),
    ("/bulwark.auth.v1.AuthService/GetJwks", "auth", Kind::Public),
    ("/bulwark.auth.v1.AuthService/Logout", "auth", Kind::Bearer),
    (
        "/bulwark.auth.v1.AuthService/LoginMfa",
        "auth",
        Kind::Limited,
    ),
    (
        "/bulwark.auth.v1.AuthService/EnrollTotp",
        "auth",
        Kind::Bearer,
    ),
    (
        "/bulwark.auth.v1.AuthService/ConfirmTotp",
        "auth",
        Kind::Bearer,
    ),
    (
        "/bulwark.auth.v1.AuthService/DisableTotp",
        "auth",
        Kind::Bearer,
    ),
    (
        "/bulwark.auth.v1.AuthService/ListSessions",
        "auth",
        Kind::Bearer,
    ),
    (
        "/bulwark.auth.v1.AuthService/RevokeSession",
        "auth",
        Kind::Bearer,
    ),
    (
        "/bulwark.auth.v1.AuthService/ListRevokedSessions",
        "auth",
        Kind::Internal,
    ),
    (
        "/bulwark.auth.v1.AuthService/RotateSigningKey",
        "auth",
        Kind::Bearer,
    ),
    (
        "/bulwark.auth.v1.AuthService/CreateClient",
        "auth",
        Kind::Bearer,
    ),
    (
        "/bulwark.auth.v1.AuthService/DeleteClient",
        "auth",
        Kind::Bearer,
    ),
    (
        "/bulwark.authz.v1.AuthzService/Check",
        "authz",
        Kind::Bearer,
    ),
    (
        "/bulwark.authz.v1.AuthzService/CreateRole",
        "authz",
        Kind::Bearer,
    ),
    (
        "/bulwark.authz.v1.AuthzService/GrantRole",
        "authz",
        Kind::Bearer,
    ),
    (
        "/bulwark.authz.v1.AuthzService/RevokeRole",
        "authz",
        Kind::Bearer,
    ),
    (
        "/bulwark.authz.v1.AuthzService/ListUserRoles",
        "authz",
        Kind::Internal,
    ),
    (
        "/bulwark.authz.v1.AuthzService/ResolveRoles",
        "authz",
        Kind::Internal,
    ),
    (
        "/bulwark.audit.v1.AuditService/AppendEvents",
        "audit",
        Kind::Internal,
    ),
    (
        "/bulwark.audit.v1.AuditService/ListEvents",
        "audit",
        Kind::Bearer,
    ),
    (
        "/bulwark.audit.v1.AuditService/VerifyChain",
        "audit",
        Kind::Bearer,
    ),
    (
        "/bulwark.audit.v1.AuditService/ListCheckpoints",
        "audit",
        Kind::Bearer,
    ),
];

const SERVICES: [ServiceKind; 4] = [
    ServiceKind::Identity,
    ServiceKind::Auth,
    ServiceKind::Authz,
    ServiceKind::Audit,
];

/// Every method the issue names except POST, the only one gRPC uses.
const NOT_POST: [&str; 5] = ["GET", "PUT", "PATCH", "OPTIONS", "DELETE"];

/// gRPC `RESOURCE_EXHAUSTED`, `UNIMPLEMENTED`, `UNAUTHENTICATED`.
const RESOURCE_EXHAUSTED: &str = "8";
const UNIMPLEMENTED: &str = "12";
const UNAUTHENTICATED: &str = "16";

/// How many RPCs each service has served from the edge's side (its
/// `function_calls_total`), leaving out what runs on its own schedule: `GetJwks` (the
/// gateway filter fetches the JWKS through the edge) and the internal RPCs (services
/// relay audit events in the background; the edge never routes these, which the tests
/// check by their answers), and Envoy's gRPC health checks (`grpc.health.v1.Health`,
/// every second). Then how many calls the rate-limit service has had from the edge (the
/// filter's callouts).
async fn served_counts(mesh: &Mesh) -> Vec<(&'static str, u64)> {
    let mut counts = Vec::new();
    for kind in SERVICES {
        let text = super::service_metrics(mesh, kind).await;
        let served: f64 = text
            .lines()
            .filter(|line| line.starts_with("function_calls_total{"))
            .filter(|line| !line.contains(super::HEALTH_MODULE))
            .filter(|line| {
                !RPCS
                    .iter()
                    .filter(|(_, _, kind)| *kind == Kind::Internal)
                    .map(|(path, _, _)| path.rsplit('/').next().unwrap_or(path))
                    .chain(["GetJwks"])
                    .any(|function| line.contains(&format!("function=\"{function}\"")))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        // Counters are whole numbers.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        counts.push((kind.name(), served as u64));
    }
    counts.push(("ratelimit", upstream_requests(mesh, "ratelimit").await));
    counts
}

/// The services' counts of [`served_counts`], without the rate-limit service's.
fn service_counts(counts: &[(&str, u64)]) -> Vec<u64> {
    counts
        .iter()
        .filter(|(c, _)| *c != "ratelimit")
        .map(|(_, n)| *n)
        .collect()
}

/// A gRPC answer: HTTP status, headers and the trailers (when the answer has a body).
#[derive(Debug)]
struct GrpcReply {
    status: http::StatusCode,
    headers: http::HeaderMap,
    trailers: Option<http::HeaderMap>,
}

impl GrpcReply {
    /// `grpc-status`, from the headers of a trailers-only answer or from the trailers.
    fn grpc_status(&self) -> Option<&str> {
        self.headers
            .get("grpc-status")
            .or_else(|| self.trailers.as_ref()?.get("grpc-status"))
            .and_then(|v| v.to_str().ok())
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// An HTTP/2 channel to the edge from `ip`.
async fn channel(mesh: &Mesh, ip: Ipv4Addr) -> Channel {
    Endpoint::from_shared(mesh.edge_url(""))
        .expect("the edge URL is a valid endpoint")
        .local_address(Some(IpAddr::V4(ip)))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("connecting to the edge over HTTP/2")
}

/// Sends `method path` as a gRPC request (HTTP/2, `application/grpc`, no message) and
/// reads the whole answer.
async fn grpc_raw(
    channel: &mut Channel,
    mesh: &Mesh,
    method: &str,
    path: &str,
    authorization: Option<&str>,
) -> GrpcReply {
    let mut request = http::Request::builder()
        .method(method)
        .uri(mesh.edge_url(path))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let request = request
        .body(tonic::body::Body::empty())
        .unwrap_or_else(|err| panic!("building {method} {path}: {err}"));
    std::future::poll_fn(|cx| channel.poll_ready(cx))
        .await
        .unwrap_or_else(|err| panic!("{method} {path}: channel not ready: {err}"));
    let response = channel
        .call(request)
        .await
        .unwrap_or_else(|err| panic!("{method} {path} over HTTP/2: {err}"));
    let (parts, mut body) = response.into_parts();
    let mut trailers = None;
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.unwrap_or_else(|err| panic!("{method} {path}: reading: {err}"));
        if let Ok(map) = frame.into_trailers() {
            trailers = Some(map);
        }
    }
    GrpcReply {
        status: parts.status,
        headers: parts.headers,
        trailers,
    }
}

/// An HTTP/1.1 answer.
#[derive(Debug)]
struct RawReply {
    status: u16,
    head: String,
    body: String,
}

impl RawReply {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }
}

/// Sends one HTTP/1.1 request with the method and path exactly as given.
fn http1_raw(mesh: &Mesh, method: &str, path: &str, headers: &[(&str, &str)]) -> RawReply {
    let mut stream = TcpStream::connect(("127.0.0.1", mesh.envoy().port()))
        .unwrap_or_else(|err| panic!("{method} {path}: connecting: {err}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap_or_else(|err| panic!("setting a read timeout: {err}"));
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: bulwark.test\r\nconnection: close\r\ncontent-length: 2\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n{}");
    stream
        .write_all(head.as_bytes())
        .unwrap_or_else(|err| panic!("{method} {path}: sending: {err}"));
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream
            .read(&mut buf)
            .unwrap_or_else(|err| panic!("{method} {path}: reading: {err}"));
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            });
            if length.is_some_and(|len| body.len() >= len) {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {path}: no header end in {text:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: no status in {text:?}"));
    RawReply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_method_but_post_on_a_grpc_path_reaches_a_service_or_the_filter() {
    let mesh = start_mesh(None).await;
    let admin = login(&mesh, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let token = bearer(&admin.access_token);
    let mut grpc = channel(&mesh, Ipv4Addr::LOCALHOST).await;
    let before = served_counts(&mesh).await;

    for (path, _, kind) in RPCS {
        for method in NOT_POST {
            // gRPC, with a valid token: before issue 8, `PUT` with a token turned login's
            // per-IP limit into the bearer limit.
            let what = format!("gRPC {method} {path} with the admin's token");
            let reply = grpc_raw(&mut grpc, &mesh, method, path, Some(&token)).await;
            assert_eq!(
                reply.grpc_status(),
                Some(UNIMPLEMENTED),
                "{what}: not refused as UNIMPLEMENTED by the edge: {reply:?}"
            );
            assert!(
                reply.header("ratelimit-remaining").is_none(),
                "{what}: the gateway filter ran (it answered RateLimit-*): {reply:?}"
            );

            assert_eq!(reply.status, http::StatusCode::OK, "{what}: {reply:?}");

            // Any other content type (JSON, none): 405, POST is the only method; an
            // internal RPC has no route at all, whatever the method.
            for content_type in [Some("application/json"), None] {
                let what = format!("HTTP/1.1 {method} {path} ({content_type:?})");
                let mut headers = vec![("authorization", token.as_str())];
                if let Some(value) = content_type {
                    headers.push(("content-type", value));
                }
                let reply = http1_raw(&mesh, method, path, &headers);
                if *kind == Kind::Internal {
                    assert_eq!(reply.status, 404, "{what}: {reply:?}");
                    assert!(reply.body.contains("\"code\":5"), "{what}: {reply:?}");
                } else {
                    assert_eq!(reply.status, 405, "{what}: {reply:?}");
                    assert_eq!(reply.header("allow"), Some("POST"), "{what}: {reply:?}");
                    assert!(
                        reply.body.contains("\"code\""),
                        "{what}: not the edge's JSON error: {reply:?}"
                    );
                }
            }
        }
    }

    // A non-preflight OPTIONS (an Origin but no Access-Control-Request-Method) is an
    // ordinary request: refused like any other method.
    let login_path = "/bulwark.auth.v1.AuthService/Login";
    let reply = http1_raw(
        &mesh,
        "OPTIONS",
        login_path,
        &[
            ("origin", "http://localhost:3000"),
            ("access-control-request-method", ""),
        ],
    );
    assert_eq!(reply.status, 405, "OPTIONS with an empty ACRM: {reply:?}");
    // A real preflight is answered by the cors filter, without a token.
    let reply = http1_raw(
        &mesh,
        "OPTIONS",
        login_path,
        &[
            ("origin", "http://localhost:3000"),
            ("access-control-request-method", "POST"),
        ],
    );
    assert_eq!(
        reply.status, 200,
        "CORS preflight on a gRPC path: {reply:?}"
    );
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("http://localhost:3000"),
        "CORS preflight on a gRPC path: {reply:?}"
    );

    assert_eq!(
        served_counts(&mesh).await,
        before,
        "a request with another method than POST reached a service or the rate-limit service"
    );
}

/// The REST path of a limited RPC (its `google.api.http` binding).
fn rest_form(grpc_path: &str) -> &'static str {
    match grpc_path.rsplit('/').next() {
        Some("CreateUser") => "/v1/users",
        Some("Login") => "/v1/auth/login",
        Some("Refresh") => "/v1/auth/refresh",
        Some("IssueToken") => "/v1/oauth2/token",
        Some("VerifyEmail") => "/v1/users/verify-email",
        Some("RequestPasswordReset") => "/v1/auth/password-reset",
        Some("ConfirmPasswordReset") => "/v1/auth/password-reset/confirm",
        Some("LoginMfa") => "/v1/auth/login/mfa",
        _ => panic!("{grpc_path} has no limited REST form"),
    }
}

/// A client IP of its own for each limited RPC, so that their budgets stay apart.
fn limited_ip(index: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 8, index)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_on_every_grpc_path_meets_its_limit_or_its_token() {
    let mesh = start_mesh(None).await;
    let admin = login(&mesh, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let token = bearer(&admin.access_token);
    let limited: Vec<_> = RPCS.iter().filter(|r| r.2 == Kind::Limited).collect();
    assert_eq!(
        limited.len(),
        8,
        "CreateUser, Login, Refresh, IssueToken, VerifyEmail, RequestPasswordReset, \
         ConfirmPasswordReset, LoginMfa"
    );

    for (index, (path, cluster, _)) in limited.into_iter().enumerate() {
        let ip = limited_ip(u8::try_from(index + 1).unwrap_or(1));
        let mut grpc = channel(&mesh, ip).await;
        for call in 1..=10u64 {
            let what = format!("POST {path} #{call} from {ip}");
            let reply = grpc_raw(&mut grpc, &mesh, "POST", path, None).await;
            assert_eq!(
                reply.header("ratelimit-remaining"),
                Some((10 - call).to_string().as_str()),
                "{what}: not counted against the per-IP limit: {reply:?}"
            );
        }
        let served = served_counts(&mesh).await;
        let what = format!("POST {path} #11 from {ip}");
        let reply = grpc_raw(&mut grpc, &mesh, "POST", path, None).await;
        assert_eq!(
            reply.header("ratelimit-remaining"),
            Some("0"),
            "{what}: not refused by the limit: {reply:?}"
        );
        assert!(reply.header("retry-after").is_some(), "{what}: {reply:?}");
        assert_eq!(
            reply.grpc_status(),
            Some(RESOURCE_EXHAUSTED),
            "{what}: a gRPC client must see RESOURCE_EXHAUSTED (not UNAVAILABLE, which clients retry): {reply:?}"
        );
        assert_eq!(
            reply.header("grpc-message"),
            Some("rate limit exceeded, retry later"),
            "{what}: {reply:?}"
        );
        // With a token, and written another way: the same per-IP budget.
        for variant in [format!("{path}?x=1"), path.to_lowercase()] {
            let reply = grpc_raw(&mut grpc, &mesh, "POST", &variant, Some(&token)).await;
            assert_ne!(
                reply.grpc_status(),
                Some("0"),
                "POST {variant} with a token from {ip} after the limit: {reply:?}"
            );
        }
        // The REST form of the call counts against the same budget.
        let rest = rest_form(path);
        let rest_client = bulwark_e2e::http_client()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .local_address(IpAddr::V4(ip))
            .build()
            .unwrap_or_else(|err| panic!("a client bound to {ip}: {err}"));
        let reply = super::Reply::of(
            rest_client
                .post(mesh.edge_url(rest))
                .header("content-type", "application/json")
                .body("{}"),
            &format!("POST {rest} from {ip}"),
        )
        .await;
        assert_eq!(
            reply.status,
            reqwest::StatusCode::TOO_MANY_REQUESTS,
            "POST {rest} from {ip} after {path}'s limit was used up over gRPC: {reply:?}"
        );
        let now = served_counts(&mesh).await;
        assert_eq!(
            now.iter().find(|(name, _)| name == cluster),
            served.iter().find(|(name, _)| name == cluster),
            "{what}: a call over the limit reached {cluster}"
        );
    }

    let mut grpc = channel(&mesh, Ipv4Addr::new(127, 0, 8, 20)).await;
    let before = served_counts(&mesh).await;
    for (path, _, kind) in RPCS {
        match kind {
            Kind::Bearer => {
                let reply = grpc_raw(&mut grpc, &mesh, "POST", path, None).await;
                assert_eq!(
                    reply.grpc_status(),
                    Some(UNAUTHENTICATED),
                    "POST {path} without a token: {reply:?}"
                );
                assert!(
                    reply
                        .header("www-authenticate")
                        .is_some_and(|v| v.starts_with("Bearer")),
                    "POST {path} without a token: no Bearer challenge: {reply:?}"
                );
            }
            Kind::Internal => {
                for authorization in [None, Some(token.as_str())] {
                    let reply = grpc_raw(&mut grpc, &mesh, "POST", path, authorization).await;
                    assert_eq!(
                        reply.grpc_status(),
                        Some(UNIMPLEMENTED),
                        "internal POST {path} (token: {}): {reply:?}",
                        authorization.is_some()
                    );
                }
            }
            Kind::Limited | Kind::Public => {}
        }
    }
    // Path tricks on bearer gRPC paths: no token, no service.
    for trick in [
        "/bulwark.identity.v1.IdentityService/GetMe/",
        "/bulwark.identity.v1.IdentityService//GetMe",
        "//bulwark.identity.v1.IdentityService/GetMe",
        "/bulwark.identity.v1.IdentityService/getme",
        "/bulwark.identity.v1.IdentityService/%47etMe",
        "/bulwark.identity.v1.IdentityService%2FGetMe",
        "/bulwark.identity.v1.IdentityService/./GetMe",
        "/bulwark.identity.v1.IdentityService/x/../GetMe",
        "/bulwark.identity.v1.IdentityService/GetMe;x=1",
        "/bulwark.identity.v1.IdentityService/CreateUser/../GetMe",
        "/bulwark.identity.v1.IdentityService/CreateUser;/../GetMe",
    ] {
        let reply = grpc_raw(&mut grpc, &mesh, "POST", trick, None).await;
        let status = reply.grpc_status();
        assert!(
            status == Some(UNAUTHENTICATED) || status == Some(UNIMPLEMENTED),
            "POST {trick} without a token was not refused at the edge: {reply:?}"
        );
    }
    let after = served_counts(&mesh).await;
    assert_eq!(
        service_counts(&after),
        service_counts(&before),
        "a bearer call without a token, an internal RPC or a path trick reached a service"
    );
}

/// REST routes that need a token (CONTRACT "Routes", "Service accounts").
const BEARER_REST: &[(&str, &str)] = &[
    ("GET", "/v1/users/me"),
    ("GET", "/v1/audit/events"),
    ("GET", "/v1/audit/checkpoints"),
    ("POST", "/v1/audit/chain/verify"),
    ("POST", "/v1/auth/logout"),
    ("POST", "/v1/authz/check"),
    ("POST", "/v1/authz/roles"),
    ("POST", "/v1/auth/clients"),
    (
        "DELETE",
        "/v1/auth/clients/0192f0c4-7d4e-7b1a-9f00-000000000001",
    ),
];

/// The path tricks of the issue, applied to a REST path.
fn tricks(path: &str) -> Vec<String> {
    let (head, last) = path.rsplit_once('/').unwrap_or(("", path));
    let first = last.chars().next().map_or(0, u32::from);
    vec![
        format!("{path}/"),
        format!("{head}//{last}"),
        format!("/{path}"),
        path.to_uppercase(),
        format!("{head}/%{first:02X}{}", &last[1..]),
        format!("{head}%2F{last}"),
        format!("{head}/./{last}"),
        format!("{head}/x/../{last}"),
        format!("{head}/x/%2e%2e/{last}"),
        format!("{path};x=1"),
        format!("{head}/{last};/"),
        format!("/v1/auth/login/../..{path}"),
        format!("/v1/auth/login;/..{path}"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_path_tricks_never_reach_a_bearer_route_without_a_token() {
    let mesh = start_mesh(None).await;
    let before = served_counts(&mesh).await;
    for (method, path) in BEARER_REST {
        for trick in tricks(path) {
            let what = format!("{method} {trick} without a token");
            let reply = http1_raw(
                &mesh,
                method,
                &trick,
                &[("content-type", "application/json")],
            );
            match reply.status {
                401 => assert!(
                    reply
                        .header("www-authenticate")
                        .is_some_and(|v| v.starts_with("Bearer")),
                    "{what}: a 401 without the Bearer challenge: {reply:?}"
                ),
                404 => assert!(
                    reply.body.contains("\"code\":5"),
                    "{what}: a 404 that is not the edge's: {reply:?}"
                ),
                _ => panic!("{what}: neither refused (401) nor unrouted (404): {reply:?}"),
            }
        }
        // A method the transcoder does not bind for the path reaches nothing either.
        for other in NOT_POST.into_iter().chain(["POST", "HEAD"]) {
            if other == *method {
                continue;
            }
            let reply = http1_raw(&mesh, other, path, &[("content-type", "application/json")]);
            assert!(
                reply.status == 401 || reply.status == 404,
                "{other} {path} without a token: neither refused (401) nor unrouted (404): {reply:?}"
            );
        }
    }
    let after = served_counts(&mesh).await;
    assert_eq!(
        service_counts(&after),
        service_counts(&before),
        "a REST call without a token reached a service"
    );
}
