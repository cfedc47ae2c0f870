//! GetMe and GetUser: who may read which user, and in which order the checks run.

use bulwark_kernel::tonic::{Code, Request};
use bulwark_proto::identity::v1::{GetMeRequest, GetUserRequest};

use crate::support::{TestApp, as_user, refusal};

#[tokio::test]
async fn get_me_returns_the_caller() {
    let app = TestApp::start().await;
    let user = app.register("me@example.com", "Me Myself").await;

    let me = app
        .client()
        .get_me(as_user(&user.id, GetMeRequest {}))
        .await
        .unwrap_or_else(|s| panic!("GetMe with a valid token: {s:?}"))
        .into_inner();
    assert_eq!(me, user, "GetMe did not return the registered user");
}

#[tokio::test]
async fn get_me_without_a_token_is_unauthenticated() {
    let app = TestApp::start().await;
    let (code, message) = refusal(app.client().get_me(Request::new(GetMeRequest {})).await);
    assert_eq!(code, Code::Unauthenticated, "{message}");

    let mut forged = Request::new(GetMeRequest {});
    forged.metadata_mut().insert(
        "authorization",
        "Bearer not.a.token"
            .parse()
            .unwrap_or_else(|e| panic!("header: {e}")),
    );
    let (code, message) = refusal(app.client().get_me(forged).await);
    assert_eq!(code, Code::Unauthenticated, "{message}");
}

#[tokio::test]
async fn get_me_for_a_token_of_no_user_is_not_found() {
    let app = TestApp::start().await;
    let ghost = uuid::Uuid::new_v4().to_string();
    let (code, message) = refusal(app.client().get_me(as_user(&ghost, GetMeRequest {})).await);
    assert_eq!(code, Code::NotFound, "{message}");
}

#[tokio::test]
async fn get_user_for_oneself_needs_no_permission() {
    let app = TestApp::start().await;
    let user = app.register("self@example.com", "Self").await;

    let fetched = app
        .client()
        .get_user(as_user(
            &user.id,
            GetUserRequest {
                id: user.id.clone(),
            },
        ))
        .await
        .unwrap_or_else(|s| panic!("GetUser on oneself: {s:?}"))
        .into_inner();
    assert_eq!(fetched, user);
    let checks = app.authz.checks.lock().map(|c| c.len()).unwrap_or_default();
    assert_eq!(checks, 0, "reading oneself must not ask Authz");
}

#[tokio::test]
async fn get_user_of_another_without_users_read_is_denied_whether_or_not_it_exists() {
    let app = TestApp::start().await;
    let caller = app.register("nosy@example.com", "Nosy").await;
    let other = app.register("private@example.com", "Private").await;
    let unknown = uuid::Uuid::new_v4().to_string();

    for id in [other.id.clone(), unknown] {
        let (code, message) = refusal(
            app.client()
                .get_user(as_user(&caller.id, GetUserRequest { id: id.clone() }))
                .await,
        );
        assert_eq!(
            code,
            Code::PermissionDenied,
            "GetUser({id}) without users:read: {message}"
        );
        assert_eq!(message, "requires permission users:read");
    }
}

#[tokio::test]
async fn get_user_of_another_with_users_read_is_allowed() {
    let app = TestApp::start().await;
    let reader = app.register("reader@example.com", "Reader").await;
    let other = app.register("subject@example.com", "Subject").await;
    app.authz
        .grant(reader.id.parse().unwrap_or_default(), "users:read");

    let fetched = app
        .client()
        .get_user(as_user(
            &reader.id,
            GetUserRequest {
                id: other.id.clone(),
            },
        ))
        .await
        .unwrap_or_else(|s| panic!("GetUser with users:read: {s:?}"))
        .into_inner();
    assert_eq!(fetched, other);
}

#[tokio::test]
async fn get_user_of_an_unknown_id_with_users_read_is_not_found() {
    let app = TestApp::start().await;
    let reader = app.register("reader@example.com", "Reader").await;
    app.authz
        .grant(reader.id.parse().unwrap_or_default(), "users:read");

    let (code, message) = refusal(
        app.client()
            .get_user(as_user(
                &reader.id,
                GetUserRequest {
                    id: uuid::Uuid::new_v4().to_string(),
                },
            ))
            .await,
    );
    assert_eq!(code, Code::NotFound, "{message}");
}

#[tokio::test]
async fn get_user_with_a_malformed_id_is_invalid_argument() {
    let app = TestApp::start().await;
    let caller = app.register("caller@example.com", "Caller").await;
    let (code, message) = refusal(
        app.client()
            .get_user(as_user(&caller.id, GetUserRequest { id: "42".into() }))
            .await,
    );
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert_eq!(message, "id: must be a UUID");
}

#[tokio::test]
async fn get_user_from_another_service_needs_no_token() {
    let app = TestApp::start().await;
    let user = app.register("mesh@example.com", "Mesh").await;

    // What Auth sends when it checks an account is still active: no token, not via the edge.
    let fetched = app
        .client()
        .get_user(Request::new(GetUserRequest {
            id: user.id.clone(),
        }))
        .await
        .unwrap_or_else(|s| panic!("a mesh-internal GetUser was refused: {s:?}"))
        .into_inner();
    assert_eq!(fetched, user);
}

#[tokio::test]
async fn get_user_without_a_token_through_the_edge_is_unauthenticated() {
    let app = TestApp::start().await;
    let user = app.register("edge@example.com", "Edge").await;

    let mut request = Request::new(GetUserRequest { id: user.id });
    request.metadata_mut().insert(
        "x-forwarded-for",
        "127.0.0.9"
            .parse()
            .unwrap_or_else(|e| panic!("header: {e}")),
    );
    let (code, message) = refusal(app.client().get_user(request).await);
    assert_eq!(code, Code::Unauthenticated, "{message}");
}
