//! GetMe and GetUser: who may read which user (a token is always needed, a user's or a
//! service account's), and in which order the checks run.

use bulwark_kernel::tonic::{Code, Request};
use bulwark_proto::identity::v1::{GetMeRequest, GetUserRequest};

use crate::support::{TestApp, as_auth, as_service, as_user, refusal, with_edge_headers};

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
async fn get_me_with_a_service_token_is_not_found() {
    // A service account is no user: it has no record to return.
    let app = TestApp::start().await;
    let (code, message) = refusal(
        app.client()
            .get_me(as_service("ops", &["users:read"], GetMeRequest {}))
            .await,
    );
    assert_eq!(code, Code::NotFound, "{message}");
}

#[tokio::test]
async fn get_user_without_a_token_is_unauthenticated_whatever_the_headers() {
    let app = TestApp::start().await;
    let user = app.register("mesh@example.com", "Mesh").await;

    // What a mesh-internal caller once sent (no token, not via the edge), and the same
    // call dressed up with every edge and identity header naming the user itself.
    let bare = Request::new(GetUserRequest {
        id: user.id.clone(),
    });
    let dressed = with_edge_headers(
        Request::new(GetUserRequest {
            id: user.id.clone(),
        }),
        "/bulwark.identity.v1.IdentityService/GetUser",
        &user.id,
    );
    for (what, request) in [("bare", bare), ("with edge headers", dressed)] {
        let (code, message) = refusal(app.client().get_user(request).await);
        assert_eq!(code, Code::Unauthenticated, "{what}: {message}");
        assert_eq!(message, "missing or invalid bearer token", "{what}");
    }
}

#[tokio::test]
async fn get_user_with_a_service_token_needs_users_read_in_it() {
    let app = TestApp::start().await;
    let user = app.register("active@example.com", "Active").await;

    // Auth's client carries users:read: it confirms an account is still active.
    let fetched = app
        .client()
        .get_user(as_auth(GetUserRequest {
            id: user.id.clone(),
        }))
        .await
        .unwrap_or_else(|s| panic!("GetUser with a users:read service token: {s:?}"))
        .into_inner();
    assert_eq!(fetched, user);
    let (code, message) = refusal(
        app.client()
            .get_user(as_auth(GetUserRequest {
                id: uuid::Uuid::new_v4().to_string(),
            }))
            .await,
    );
    assert_eq!(code, Code::NotFound, "{message}");

    // Without it, existing and unknown ids are refused alike.
    for id in [user.id.clone(), uuid::Uuid::new_v4().to_string()] {
        let (code, message) = refusal(
            app.client()
                .get_user(as_service(
                    "identity",
                    &["audit:append", "roles:read"],
                    GetUserRequest { id: id.clone() },
                ))
                .await,
        );
        assert_eq!(code, Code::PermissionDenied, "GetUser({id}): {message}");
        assert_eq!(message, "requires permission users:read");
    }
    let asked = app.authz.checks.lock().map(|c| c.len()).unwrap_or_default();
    assert_eq!(
        asked, 0,
        "a service account's permissions are its token's, not Authz's"
    );
}
