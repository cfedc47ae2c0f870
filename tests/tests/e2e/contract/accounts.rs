//! `POST /v1/users` over REST, and `CreateUser` from a gRPC client on the same port.

use bulwark_proto::identity::v1::CreateUserRequest;
use bulwark_proto::identity::v1::identity_service_client::IdentityServiceClient;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::client::{Edge, PASSWORD, assert_leaks_nothing, start_mesh};

/// Checks the contract's user object: exactly `{id, email, display_name, created_at}`
/// (plus `active`) and the booleans `email_verified` and `mfa_enabled`, snake_case, never
/// anything about credentials. A new user has neither proven the email nor turned on MFA.
#[track_caller]
fn assert_user(user: &Value, email: &str, display_name: &str, what: &str) {
    let id = user["id"].as_str().unwrap_or_default();
    assert!(
        id.len() == 36 && id.chars().filter(|c| *c == '-').count() == 4,
        "{what}: id is not a UUID: {user}"
    );
    assert_eq!(user["email"], email, "{what}: email differs: {user}");
    assert_eq!(
        user["display_name"], display_name,
        "{what}: display_name differs: {user}"
    );
    let created_at = user["created_at"].as_str().unwrap_or_default();
    assert!(
        created_at.len() >= 20 && created_at.ends_with('Z') && created_at.contains('T'),
        "{what}: created_at is not an RFC 3339 UTC time: {user}"
    );
    for flag in ["email_verified", "mfa_enabled"] {
        assert_eq!(
            user[flag],
            Value::Bool(false),
            "{what}: `{flag}` is not the boolean false for a new user: {user}"
        );
    }
    let fields: Vec<&String> = user
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    for field in &fields {
        assert!(
            [
                "id",
                "email",
                "display_name",
                "created_at",
                "active",
                "email_verified",
                "mfa_enabled",
            ]
            .contains(&field.as_str()),
            "{what}: unexpected field `{field}` in the user: {user}"
        );
    }
    assert_leaks_nothing(&user.to_string(), what);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_returns_the_user_and_refuses_taken_emails_and_short_passwords() {
    let mesh = start_mesh().await;
    let edge = Edge::new(&mesh);

    let user = edge
        .register("Ada.Lovelace@Example.com", "Ada Lovelace")
        .await;
    assert_user(
        &user,
        "Ada.Lovelace@Example.com",
        "Ada Lovelace",
        "POST /v1/users",
    );
    assert!(
        !user.to_string().contains(PASSWORD),
        "the registration answer echoes the password: {user}"
    );

    // Emails are unique case-insensitively.
    let message = edge
        .post(
            "/v1/users",
            json!({"email": "ada.lovelace@EXAMPLE.com", "password": PASSWORD, "display_name": "Imposter"}),
        )
        .send()
        .await
        .error(StatusCode::CONFLICT, 6);
    assert!(
        message.to_lowercase().contains("email"),
        "the 409 for a taken email does not say it is the email: {message:?}"
    );

    // Passwords shorter than 12 characters: 11 is refused, 12 accepted.
    let message = edge
        .post(
            "/v1/users",
            json!({"email": "short@example.com", "password": "elevenchars", "display_name": "Short"}),
        )
        .send()
        .await
        .error(StatusCode::BAD_REQUEST, 3);
    assert!(
        message.to_lowercase().contains("password"),
        "the 400 for a short password does not name the password: {message:?}"
    );
    assert!(
        !message.contains("elevenchars"),
        "the 400 echoes the password: {message:?}"
    );
    edge.post(
        "/v1/users",
        json!({"email": "short@example.com", "password": "twelve-chars", "display_name": "Short"}),
    )
    .send()
    .await
    .ok();

    // Other malformed input is a 400 with a JSON body too, never an internal error.
    edge.post(
        "/v1/users",
        json!({"email": "not-an-email", "password": PASSWORD, "display_name": "X"}),
    )
    .send()
    .await
    .error(StatusCode::BAD_REQUEST, 3);

    // The user just registered can log in with its password, in any email case.
    edge.login("ADA.LOVELACE@example.com", PASSWORD).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_create_user_works_on_the_edge_port() {
    let mesh = start_mesh().await;
    let edge = Edge::new(&mesh);
    let mut client = IdentityServiceClient::connect(mesh.edge_url(""))
        .await
        .expect("connecting a gRPC client to the edge port");

    let user = client
        .create_user(CreateUserRequest {
            email: "grace@example.com".to_owned(),
            password: PASSWORD.to_owned(),
            display_name: "Grace Hopper".to_owned(),
        })
        .await
        .unwrap_or_else(|status| panic!("CreateUser through the edge failed: {status:?}"))
        .into_inner();
    assert_eq!(
        user.email, "grace@example.com",
        "CreateUser answered {user:?}"
    );
    assert_eq!(
        user.display_name, "Grace Hopper",
        "CreateUser answered {user:?}"
    );
    assert!(
        user.created_at.is_some() && !user.id.is_empty(),
        "CreateUser answered {user:?}"
    );

    // A taken email over gRPC is ALREADY_EXISTS, with a message that leaks nothing.
    let status = client
        .create_user(CreateUserRequest {
            email: "GRACE@example.com".to_owned(),
            password: PASSWORD.to_owned(),
            display_name: "Grace".to_owned(),
        })
        .await
        .expect_err("a second CreateUser with the same email (other case) succeeded");
    assert_eq!(
        status.code(),
        tonic::Code::AlreadyExists,
        "taken email over gRPC: {status:?}"
    );
    assert_leaks_nothing(status.message(), "CreateUser's ALREADY_EXISTS");

    // The same port serves REST: the user made over gRPC logs in and reads itself.
    let tokens = edge.login("grace@example.com", PASSWORD).await;
    let me = edge
        .get("/v1/users/me")
        .bearer(&tokens.access)
        .send()
        .await
        .ok();
    assert_eq!(
        me["id"], user.id,
        "GET /v1/users/me of the gRPC-created user: {me}"
    );
}
