//! Service accounts: `CreateClient` and the client-credentials grant of `IssueToken`
//! (RFC 6749 §4.4 and §5.2), for built-in and created clients.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bulwark_kernel::tonic::{Code, Request, Status};
use bulwark_proto::auth::v1::{
    AccessToken, CreateClientRequest, CreateClientResponse, DeleteClientRequest,
};
use bulwark_proto::google::api::HttpBody;

use crate::support::{TestApp, assert_code, claims, failure, with_bearer};

const FORM: &str = "application/x-www-form-urlencoded";
const IDENTITY_SECRET: &str = "identity-secret-0123456789abcdefghijkl";

async fn app() -> TestApp {
    TestApp::start_with(&[(
        "auth.service_clients",
        serde_json::json!({ "identity": IDENTITY_SECRET }),
    )])
    .await
}

fn form(body: &str) -> HttpBody {
    HttpBody {
        content_type: FORM.to_owned(),
        data: body.as_bytes().to_vec(),
        extensions: Vec::new(),
    }
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

async fn issue(
    app: &TestApp,
    body: HttpBody,
    authorization: Option<&str>,
) -> Result<AccessToken, Status> {
    let mut request = Request::new(body);
    if let Some(value) = authorization {
        let value = value.parse().unwrap_or_else(|e| panic!("metadata: {e}"));
        request.metadata_mut().insert("authorization", value);
    }
    app.client
        .clone()
        .issue_token(request)
        .await
        .map(|r| r.into_inner())
}

async fn create(
    app: &TestApp,
    token: &str,
    name: &str,
    roles: &[&str],
) -> Result<CreateClientResponse, Status> {
    let request = CreateClientRequest {
        name: name.to_owned(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
    };
    app.client
        .clone()
        .create_client(with_bearer(request, token))
        .await
        .map(|r| r.into_inner())
}

fn assert_oauth_error(status: &Status, code: Code, error: &str, what: &str) {
    assert_code(status, code, what);
    assert!(
        status.message().starts_with(&format!("{error}: ")),
        "{what}: the message must start with the RFC 6749 code `{error}`: {}",
        status.message()
    );
}

#[tokio::test]
async fn a_builtin_client_gets_a_token_with_its_fixed_permissions() {
    let app = app().await;
    let token = issue(
        &app,
        form("grant_type=client_credentials"),
        Some(&basic("identity", IDENTITY_SECRET)),
    )
    .await
    .unwrap_or_else(|s| panic!("refused: {s:?}"));
    assert_eq!(token.token_type, "Bearer");
    assert_eq!(token.expires_in, 900);
    let caller = app.verify(&token.access_token).await;
    assert!(caller.is_service(), "sub is not a client: {caller:?}");
    assert_eq!(caller.actor_id(), "client:identity");
    assert_eq!(caller.permissions, vec!["audit:append", "roles:read"]);
    assert_eq!(claims(&token.access_token)["sub"], "client:identity");

    // The same credentials in the form body work too.
    let in_body = issue(
        &app,
        form(&format!(
            "grant_type=client_credentials&client_id=identity&client_secret={IDENTITY_SECRET}"
        )),
        None,
    )
    .await;
    assert!(in_body.is_ok(), "form credentials refused: {in_body:?}");
    app.stop().await;
}

#[tokio::test]
async fn wrong_secrets_unknown_clients_and_unconfigured_builtins_are_invalid_client() {
    let app = app().await;
    for (id, secret, what) in [
        (
            "identity",
            "identity-secret-0123456789abcdefghijkX",
            "wrong secret",
        ),
        ("nobody", IDENTITY_SECRET, "unknown client"),
        (
            "audit",
            IDENTITY_SECRET,
            "a built-in client with no configured secret",
        ),
        (
            "0192f0c4-7d4e-7b1a-9f00-000000000001",
            IDENTITY_SECRET,
            "unknown uuid",
        ),
    ] {
        let status = failure(
            issue(
                &app,
                form("grant_type=client_credentials"),
                Some(&basic(id, secret)),
            )
            .await,
            what,
        );
        assert_oauth_error(&status, Code::Unauthenticated, "invalid_client", what);
    }
    let refused = app
        .outbox()
        .await
        .into_iter()
        .filter(|e| e.action == "auth.client_token" && e.actor_id.is_empty())
        .count();
    assert_eq!(refused, 4, "every refused token request is audited");
    app.stop().await;
}

#[tokio::test]
async fn other_grants_and_malformed_requests_are_refused_with_their_rfc_code() {
    let app = app().await;
    let auth = basic("identity", IDENTITY_SECRET);
    let status = failure(
        issue(&app, form("grant_type=password"), Some(&auth)).await,
        "password grant",
    );
    assert_oauth_error(
        &status,
        Code::InvalidArgument,
        "unsupported_grant_type",
        "password grant",
    );
    let status = failure(issue(&app, form(""), Some(&auth)).await, "no grant_type");
    assert_oauth_error(
        &status,
        Code::InvalidArgument,
        "invalid_request",
        "no grant_type",
    );
    let status = failure(
        issue(&app, form("grant_type=client_credentials"), None).await,
        "no client authentication",
    );
    assert_oauth_error(
        &status,
        Code::Unauthenticated,
        "invalid_client",
        "no client authentication",
    );
    app.stop().await;
}

#[tokio::test]
async fn a_created_client_gets_the_permissions_of_its_roles() {
    let app = app().await;
    let admin = app.admin_token().await;
    let created = create(&app, &admin, "reports backend", &["reporter"])
        .await
        .unwrap_or_else(|s| panic!("CreateClient failed: {s:?}"));
    assert_eq!(created.name, "reports backend");
    assert_eq!(created.roles, vec!["reporter"]);
    assert!(uuid::Uuid::parse_str(&created.client_id).is_ok());
    assert!(created.client_secret.len() >= 43, "a short secret");

    // Only the hash is stored.
    let stored = app
        .sql(&format!(
            "SELECT 1 FROM clients WHERE id = '{}' AND position(convert_to('{}', 'UTF8') in secret_hash) = 0 \
             AND octet_length(secret_hash) = 32",
            created.client_id, created.client_secret
        ))
        .await;
    assert_eq!(stored, 1, "the client row is missing or holds the secret");

    let token = issue(
        &app,
        form("grant_type=client_credentials"),
        Some(&basic(&created.client_id, &created.client_secret)),
    )
    .await
    .unwrap_or_else(|s| panic!("the new client's token was refused: {s:?}"));
    let caller = app.verify(&token.access_token).await;
    assert_eq!(caller.actor_id(), format!("client:{}", created.client_id));
    assert_eq!(caller.permissions, vec!["audit:read", "users:read"]);
    assert_eq!(caller.roles, vec!["reporter"]);

    let events = app.outbox().await;
    let create_event = events
        .iter()
        .find(|e| e.action == "auth.client_create")
        .unwrap_or_else(|| panic!("no auth.client_create event in {events:?}"));
    assert!(
        !create_event.details.contains(&created.client_secret),
        "the secret leaked into the audit log"
    );
    app.stop().await;
}

#[tokio::test]
async fn creating_a_client_needs_clients_write_and_existing_roles() {
    let app = app().await;
    let status = failure(
        create(&app, "not-a-token", "x", &["auditor"]).await,
        "no valid token",
    );
    assert_code(&status, Code::Unauthenticated, "no valid token");

    let user = app.user("plain@example.com");
    let plain = app.logged_in(&user).await.access_token;
    let status = failure(
        create(&app, &plain, "x", &["auditor"]).await,
        "without clients:write",
    );
    assert_code(&status, Code::PermissionDenied, "without clients:write");

    let writer = app.user("writer@example.com");
    app.authz.grant_permission(writer.id, "clients:write");
    app.authz.grant_permission(writer.id, "audit:read");
    let writer = app.logged_in(&writer).await.access_token;
    assert!(create(&app, &writer, "ok", &["auditor"]).await.is_ok());
    // No escalation: `reporter` also grants users:read, which the writer lacks, and
    // `admin` grants everything.
    for role in ["reporter", "admin"] {
        let status = failure(create(&app, &writer, "x", &[role]).await, role);
        assert_code(&status, Code::PermissionDenied, role);
        assert!(
            status.message().contains("creator"),
            "{role}: the refusal does not say why: {}",
            status.message()
        );
    }
    let status = failure(
        create(&app, &writer, "x", &["no-such-role"]).await,
        "unknown role",
    );
    assert_code(&status, Code::InvalidArgument, "unknown role");
    assert!(
        status.message().contains("no-such-role"),
        "{}",
        status.message()
    );
    let status = failure(create(&app, &writer, " ", &["auditor"]).await, "empty name");
    assert_code(&status, Code::InvalidArgument, "empty name");
    let status = failure(create(&app, &writer, "x", &[]).await, "no roles");
    assert_code(&status, Code::InvalidArgument, "no roles");
    app.stop().await;
}

#[tokio::test]
async fn a_client_token_is_refused_where_a_service_or_user_is_needed_but_may_hold_permissions() {
    let app = app().await;
    let admin = app.admin_token().await;
    let created = create(&app, &admin, "rotator", &["admin"])
        .await
        .unwrap_or_else(|s| panic!("{s:?}"));
    let token = issue(
        &app,
        form("grant_type=client_credentials"),
        Some(&basic(&created.client_id, &created.client_secret)),
    )
    .await
    .unwrap_or_else(|s| panic!("{s:?}"))
    .access_token;
    // `admin` resolves to `*:*`: the client may rotate keys with its own token.
    let rotated = app.rotate(&token).await;
    assert!(
        rotated.is_ok(),
        "a client holding keys:write could not rotate: {rotated:?}"
    );
    // It has no refresh tokens; logout changes nothing and still succeeds.
    assert!(app.logout(&token, "whatever-refresh-token").await.is_ok());
    app.stop().await;
}

#[tokio::test]
async fn a_deleted_client_gets_no_more_tokens() {
    let app = app().await;
    let admin = app.admin_token().await;
    let created = create(&app, &admin, "leaked", &["auditor"])
        .await
        .unwrap_or_else(|s| panic!("{s:?}"));
    let delete = |token: &str, id: &str| {
        let request = with_bearer(
            DeleteClientRequest {
                client_id: id.to_owned(),
            },
            token,
        );
        let mut client = app.client.clone();
        async move { client.delete_client(request).await.map(|r| r.into_inner()) }
    };

    let user = app.user("someone@example.com");
    let plain = app.logged_in(&user).await.access_token;
    let status = failure(
        delete(&plain, &created.client_id).await,
        "without clients:write",
    );
    assert_code(&status, Code::PermissionDenied, "without clients:write");

    delete(&admin, &created.client_id)
        .await
        .unwrap_or_else(|s| panic!("DeleteClient failed: {s:?}"));
    let status = failure(
        issue(
            &app,
            form("grant_type=client_credentials"),
            Some(&basic(&created.client_id, &created.client_secret)),
        )
        .await,
        "a token for the deleted client",
    );
    assert_oauth_error(
        &status,
        Code::Unauthenticated,
        "invalid_client",
        "deleted client",
    );

    for id in [created.client_id.as_str(), "identity", "not-a-uuid"] {
        let status = failure(delete(&admin, id).await, id);
        assert_code(&status, Code::NotFound, id);
    }
    assert!(
        app.outbox()
            .await
            .iter()
            .any(|e| e.action == "auth.client_delete"
                && e.target == format!("client:{}", created.client_id)),
        "no auth.client_delete event"
    );
    app.stop().await;
}
