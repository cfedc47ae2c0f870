//! Service accounts (CONTRACT "Service accounts"): clients created through the edge,
//! the OAuth 2.0 client-credentials grant per RFC 6749 §4.4 and §5.2, a client's token
//! on bearer routes, and — straight to each service's own port, past the edge — internal
//! RPCs that take nothing but a service token carrying their permission, whatever
//! headers a caller adds.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bulwark_e2e::{Mesh, ServiceKind};
use bulwark_proto::audit::v1::audit_service_client::AuditServiceClient;
use bulwark_proto::audit::v1::{AppendEventsRequest, AuditEvent, Outcome};
use bulwark_proto::auth::v1::auth_service_client::AuthServiceClient;
use bulwark_proto::authz::v1::authz_service_client::AuthzServiceClient;
use bulwark_proto::authz::v1::{ListUserRolesRequest, ResolveRolesRequest};
use bulwark_proto::google::api::HttpBody;
use bulwark_proto::identity::v1::VerifyCredentialsRequest;
use bulwark_proto::identity::v1::identity_service_client::IdentityServiceClient;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tonic::{Code, Request, Status};

use super::client::{Edge, PASSWORD, start_mesh};
use crate::gateway::{ADMIN_EMAIL, ADMIN_PASSWORD};

const FORM: &str = "application/x-www-form-urlencoded";

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

/// `POST /v1/oauth2/token` with a form body and, optionally, an `authorization` value.
async fn token_request(
    mesh: &Mesh,
    body: &str,
    authorization: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut request = mesh
        .http()
        .post(mesh.edge_url("/v1/oauth2/token"))
        .header("content-type", FORM)
        .body(body.to_owned());
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST /v1/oauth2/token: no answer: {e}"));
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!("POST /v1/oauth2/token answered {status} with non-JSON ({e}): {text}")
    });
    (status, headers, body)
}

/// Checks an RFC 6749 §5.2 error answer.
fn assert_oauth_error(
    answer: &(StatusCode, reqwest::header::HeaderMap, Value),
    status: StatusCode,
    error: &str,
    what: &str,
) {
    let (got, headers, body) = answer;
    assert_eq!(*got, status, "{what}: expected {status}, got {got}: {body}");
    assert_eq!(
        body["error"], error,
        "{what}: the RFC 6749 `error` is wrong: {body}"
    );
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{what}: no error_description: {body}"
    );
    assert!(
        body.get("code").is_none(),
        "{what}: the gRPC error body leaked through: {body}"
    );
    assert_eq!(
        headers.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store"),
        "{what}: token answers must not be cached"
    );
    if status == StatusCode::UNAUTHORIZED {
        let challenge = headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            challenge.starts_with("Basic"),
            "{what}: 401 without a Basic challenge: {headers:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_client_gets_tokens_by_the_client_credentials_grant_and_uses_them() {
    let mesh = start_mesh().await;
    let edge = Edge::new(&mesh);
    let admin = mesh.admin().access.clone();
    edge.post(
        "/v1/authz/roles",
        json!({"name": "log-reader", "permissions": ["audit:read"]}),
    )
    .bearer(&admin)
    .send()
    .await
    .ok();

    // Creating a client needs a token and `clients:write`.
    edge.post(
        "/v1/auth/clients",
        json!({"name": "x", "roles": ["log-reader"]}),
    )
    .send()
    .await
    .error(StatusCode::UNAUTHORIZED, 16);
    edge.register("plain@example.com", "Plain").await;
    let plain = edge.login("plain@example.com", PASSWORD).await.access;
    edge.post(
        "/v1/auth/clients",
        json!({"name": "x", "roles": ["log-reader"]}),
    )
    .bearer(&plain)
    .send()
    .await
    .error(StatusCode::FORBIDDEN, 7);
    edge.post(
        "/v1/auth/clients",
        json!({"name": "x", "roles": ["no-such-role"]}),
    )
    .bearer(&admin)
    .send()
    .await
    .error(StatusCode::BAD_REQUEST, 3);

    let created = edge
        .post(
            "/v1/auth/clients",
            json!({"name": "log shipper", "roles": ["log-reader"]}),
        )
        .bearer(&admin)
        .send()
        .await
        .ok();
    let client_id = created["client_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no client_id: {created}"))
        .to_owned();
    let secret = created["client_secret"]
        .as_str()
        .unwrap_or_else(|| panic!("no client_secret: {created}"))
        .to_owned();
    assert_eq!(created["name"], "log shipper");
    assert_eq!(created["roles"], json!(["log-reader"]));

    // RFC 6749 §4.4.2: HTTP Basic, or the credentials in the form body.
    let (status, headers, token) = token_request(
        &mesh,
        "grant_type=client_credentials",
        Some(&basic(&client_id, &secret)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "Basic credentials refused: {token}");
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["expires_in"], 900);
    assert_eq!(
        headers.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let access = token["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token: {token}"))
        .to_owned();
    let form =
        format!("grant_type=client_credentials&client_id={client_id}&client_secret={secret}");
    let (status, _, body) = token_request(&mesh, &form, None).await;
    assert_eq!(status, StatusCode::OK, "form credentials refused: {body}");

    // RFC 6749 §5.2 errors.
    let wrong = token_request(
        &mesh,
        "grant_type=client_credentials",
        Some(&basic(&client_id, "not-the-secret")),
    )
    .await;
    assert_oauth_error(
        &wrong,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "a wrong secret",
    );
    let none = token_request(&mesh, "grant_type=client_credentials", None).await;
    assert_oauth_error(
        &none,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "no credentials",
    );
    let grant = token_request(
        &mesh,
        "grant_type=password&username=a&password=b",
        Some(&basic(&client_id, &secret)),
    )
    .await;
    assert_oauth_error(
        &grant,
        StatusCode::BAD_REQUEST,
        "unsupported_grant_type",
        "the password grant",
    );
    let missing = token_request(&mesh, "", Some(&basic(&client_id, &secret))).await;
    assert_oauth_error(
        &missing,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "no grant_type",
    );

    // The client's token works on bearer routes with exactly its roles' permissions.
    edge.get("/v1/audit/events")
        .bearer(&access)
        .send()
        .await
        .ok();
    edge.get("/v1/users/me")
        .bearer(&access)
        .send()
        .await
        .error(StatusCode::NOT_FOUND, 5);
    edge.post(
        "/v1/authz/roles",
        json!({"name": "escalate", "permissions": ["*:*"]}),
    )
    .bearer(&access)
    .send()
    .await
    .error(StatusCode::FORBIDDEN, 7);

    // A leaked client is deleted and gets no more tokens.
    let deleted = mesh
        .http()
        .delete(mesh.edge_url(&format!("/v1/auth/clients/{client_id}")))
        .header("authorization", format!("Bearer {admin}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("DELETE /v1/auth/clients/{client_id}: {e}"));
    assert_eq!(
        deleted.status(),
        StatusCode::OK,
        "{:?}",
        deleted.text().await
    );
    let after = token_request(
        &mesh,
        "grant_type=client_credentials",
        Some(&basic(&client_id, &secret)),
    )
    .await;
    assert_oauth_error(
        &after,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "the deleted client",
    );
}

/// A tonic request with `authorization: Bearer <token>` when given, and every header
/// that once marked a call as internal or as coming from the edge when `spoof`.
fn request<T>(message: T, token: Option<&str>, spoof: bool) -> Request<T> {
    let mut request = Request::new(message);
    let metadata = request.metadata_mut();
    if let Some(token) = token {
        let value = format!("Bearer {token}")
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        metadata.insert("authorization", value);
    }
    if spoof {
        for (name, value) in [
            ("x-bulwark-user-id", "00000000-0000-0000-0000-000000000001"),
            ("x-bulwark-roles", "admin"),
            ("x-forwarded-for", "127.0.0.1"),
            ("x-envoy-original-path", "/v1/users/me"),
            ("x-envoy-internal", "true"),
        ] {
            metadata.insert(name, value.parse().unwrap_or_else(|e| panic!("{e}")));
        }
    }
    request
}

/// A service's own token, from Auth's token endpoint on Auth's port.
async fn service_token(mesh: &Mesh, kind: ServiceKind) -> String {
    let (id, secret) = mesh.service_credentials(kind);
    let mut auth = AuthServiceClient::connect(mesh.service(ServiceKind::Auth).grpc_url())
        .await
        .unwrap_or_else(|e| panic!("connecting to Auth: {e}"));
    let mut request = Request::new(HttpBody {
        content_type: FORM.to_owned(),
        data: b"grant_type=client_credentials".to_vec(),
        extensions: Vec::new(),
    });
    request.metadata_mut().insert(
        "authorization",
        basic(&id, &secret)
            .parse()
            .unwrap_or_else(|e| panic!("{e}")),
    );
    auth.issue_token(request)
        .await
        .unwrap_or_else(|s| panic!("{id}'s own token was refused: {s:?}"))
        .into_inner()
        .access_token
}

/// The admin's access token, by login at Auth's port.
async fn admin_token(mesh: &Mesh) -> String {
    let reply = Edge::new(mesh).login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    reply.access
}

/// Asserts the outcome of one direct call.
fn expect<T: std::fmt::Debug>(result: Result<T, Status>, want: Result<(), Code>, what: &str) {
    match (result, want) {
        (Ok(_), Ok(())) => {}
        (Err(status), Err(code)) if status.code() == code => {}
        (got, want) => panic!("{what}: expected {want:?}, got {got:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_rpcs_on_service_ports_need_a_service_token_with_their_permission() {
    let mesh = start_mesh().await;
    let admin = admin_token(&mesh).await;
    let auth = service_token(&mesh, ServiceKind::Auth).await;
    let identity_token = service_token(&mesh, ServiceKind::Identity).await;
    let authz_token = service_token(&mesh, ServiceKind::Authz).await;

    let mut identity =
        IdentityServiceClient::connect(mesh.service(ServiceKind::Identity).grpc_url())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    let mut authz = AuthzServiceClient::connect(mesh.service(ServiceKind::Authz).grpc_url())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut audit = AuditServiceClient::connect(mesh.service(ServiceKind::Audit).grpc_url())
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let credentials = || VerifyCredentialsRequest {
        email: ADMIN_EMAIL.to_owned(),
        password: ADMIN_PASSWORD.to_owned(),
    };
    let admin_id = admin_user_id(&mesh, &admin).await;
    let roles = || ListUserRolesRequest {
        user_id: admin_id.clone(),
    };
    let resolve = || ResolveRolesRequest {
        roles: vec!["admin".to_owned()],
    };
    let event = || AppendEventsRequest {
        events: vec![AuditEvent {
            id: uuid::Uuid::new_v4().to_string(),
            occurred_at: Some(prost_types::Timestamp {
                seconds: 1_800_000_000,
                nanos: 0,
            }),
            service: "identity".to_owned(),
            actor_id: String::new(),
            action: "test.forged".to_owned(),
            target: "nothing".to_owned(),
            outcome: Outcome::Success as i32,
            trace_id: String::new(),
            details: "{}".to_owned(),
        }],
    };

    // Every internal RPC, asked by: nobody, nobody with every edge header, the admin
    // user, a service without the permission, and the one service that has it.
    let audit_token = service_token(&mesh, ServiceKind::Audit).await;
    for who in [
        Who::Nobody,
        Who::NobodySpoofing,
        Who::Admin,
        Who::WrongService,
        Who::RightService,
    ] {
        let want = who.expected();
        // Identity and Authz: Auth's token is the right one, Authz's (audit:append only)
        // the wrong one; Audit: Identity's is right, Audit's own (roles:read) wrong.
        let token = |right: &str, wrong: &str| match who {
            Who::Nobody | Who::NobodySpoofing => None,
            Who::Admin => Some(admin.clone()),
            Who::WrongService => Some(wrong.to_owned()),
            Who::RightService => Some(right.to_owned()),
        };
        let spoof = who.spoofs();
        let t = token(&auth, &authz_token);
        expect(
            identity
                .verify_credentials(request(credentials(), t.as_deref(), spoof))
                .await,
            want,
            &format!("VerifyCredentials by {who:?}"),
        );
        expect(
            authz
                .list_user_roles(request(roles(), t.as_deref(), spoof))
                .await,
            want,
            &format!("ListUserRoles by {who:?}"),
        );
        expect(
            authz
                .resolve_roles(request(resolve(), t.as_deref(), spoof))
                .await,
            want,
            &format!("ResolveRoles by {who:?}"),
        );
        let t = token(&identity_token, &audit_token);
        expect(
            audit
                .append_events(request(event(), t.as_deref(), spoof))
                .await,
            want,
            &format!("AppendEvents by {who:?}"),
        );
    }

    // A service token is no key to everything: Identity's cannot check passwords.
    expect(
        identity
            .verify_credentials(request(credentials(), Some(&identity_token), false))
            .await,
        Err(Code::PermissionDenied),
        "VerifyCredentials with identity's own token",
    );
}

/// Who calls an internal RPC in [`internal_rpcs_on_service_ports_need_a_service_token_with_their_permission`].
#[derive(Debug, Clone, Copy)]
enum Who {
    Nobody,
    NobodySpoofing,
    Admin,
    WrongService,
    RightService,
}

impl Who {
    fn expected(self) -> Result<(), Code> {
        match self {
            Self::Nobody | Self::NobodySpoofing => Err(Code::Unauthenticated),
            Self::Admin | Self::WrongService => Err(Code::PermissionDenied),
            Self::RightService => Ok(()),
        }
    }

    /// Every caller but the right service also sends every edge and identity header.
    fn spoofs(self) -> bool {
        !matches!(self, Self::Nobody | Self::RightService)
    }
}

async fn admin_user_id(mesh: &Mesh, admin: &str) -> String {
    let me = Edge::new(mesh)
        .get("/v1/users/me")
        .bearer(admin)
        .send()
        .await
        .ok();
    me["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {me}"))
        .to_owned()
}
