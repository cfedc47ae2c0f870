//! UpdateDisplayName and DeactivateUser: permissions, effects and audit events.

use bulwark_kernel::bootstrap::admin_user_id;
use bulwark_kernel::tonic::{Code, Request};
use bulwark_proto::audit::v1::Outcome;
use bulwark_proto::identity::v1::{DeactivateUserRequest, UpdateDisplayNameRequest};

use crate::support::{ADMIN_EMAIL, TestApp, as_service, as_user, refusal, with_edge_headers};

const DEACTIVATE_PATH: &str = "/bulwark.identity.v1.IdentityService/DeactivateUser";

fn rename(id: &str, display_name: &str) -> UpdateDisplayNameRequest {
    UpdateDisplayNameRequest {
        id: id.to_owned(),
        display_name: display_name.to_owned(),
    }
}

#[tokio::test]
async fn users_can_rename_themselves_and_the_change_is_audited() {
    let app = TestApp::start().await;
    let user = app.register("rename@example.com", "Old Name").await;

    let renamed = app
        .client()
        .update_display_name(as_user(&user.id, rename(&user.id, "  New Name ")))
        .await
        .unwrap_or_else(|s| panic!("renaming oneself: {s:?}"))
        .into_inner();
    assert_eq!(renamed.display_name, "New Name");
    assert_eq!(renamed.email, user.email);

    let events = app.outbox_events_with("user.update").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].actor_id, user.id);
    assert_eq!(events[0].target, format!("user:{}", user.id));
    assert_eq!(events[0].outcome, Outcome::Success as i32);
}

#[tokio::test]
async fn renaming_another_user_needs_users_write() {
    let app = TestApp::start().await;
    let caller = app.register("caller@example.com", "Caller").await;
    let other = app.register("other@example.com", "Other").await;

    let (code, message) = refusal(
        app.client()
            .update_display_name(as_user(&caller.id, rename(&other.id, "Hijacked")))
            .await,
    );
    assert_eq!(code, Code::PermissionDenied, "{message}");
    assert_eq!(message, "requires permission users:write");
    let denied = app.outbox_events_with("user.update").await;
    assert_eq!(denied.len(), 1, "the refusal was not audited: {denied:?}");
    assert_eq!(denied[0].outcome, Outcome::Denied as i32);

    app.authz
        .grant(caller.id.parse().unwrap_or_default(), "users:write");
    let renamed = app
        .client()
        .update_display_name(as_user(&caller.id, rename(&other.id, "Renamed")))
        .await
        .unwrap_or_else(|s| panic!("renaming with users:write: {s:?}"))
        .into_inner();
    assert_eq!(renamed.display_name, "Renamed");
}

#[tokio::test]
async fn renaming_to_an_invalid_name_is_invalid_argument() {
    let app = TestApp::start().await;
    let user = app.register("rename@example.com", "Name").await;
    let (code, message) = refusal(
        app.client()
            .update_display_name(as_user(&user.id, rename(&user.id, &"n".repeat(101))))
            .await,
    );
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert_eq!(message, "display_name: must be at most 100 characters");
}

#[tokio::test]
async fn deactivation_needs_users_write_even_for_oneself() {
    let app = TestApp::start().await;
    let user = app.register("self@example.com", "Self").await;
    let (code, message) = refusal(
        app.client()
            .deactivate_user(as_user(
                &user.id,
                DeactivateUserRequest {
                    id: user.id.clone(),
                },
            ))
            .await,
    );
    assert_eq!(code, Code::PermissionDenied, "{message}");
}

#[tokio::test]
async fn deactivation_turns_the_user_inactive_once_and_is_audited() {
    let app = TestApp::start().await;
    let operator = app.register("operator@example.com", "Operator").await;
    let user = app.register("leaving@example.com", "Leaving").await;
    app.authz
        .grant(operator.id.parse().unwrap_or_default(), "users:write");

    for round in ["first", "repeated"] {
        let deactivated = app
            .client()
            .deactivate_user(as_user(
                &operator.id,
                DeactivateUserRequest {
                    id: user.id.clone(),
                },
            ))
            .await
            .unwrap_or_else(|s| panic!("{round} deactivation: {s:?}"))
            .into_inner();
        assert!(
            !deactivated.active,
            "{round} deactivation left the user active"
        );
    }

    let events = app.outbox_events_with("user.deactivate").await;
    assert_eq!(events.len(), 2, "one event per call: {events:?}");
    assert_eq!(events[0].actor_id, operator.id);
    assert_eq!(events[0].target, format!("user:{}", user.id));
    assert!(
        events[0].details.contains(r#""was_active":true"#),
        "{}",
        events[0].details
    );
    assert!(
        events[1].details.contains(r#""was_active":false"#),
        "{}",
        events[1].details
    );
}

#[tokio::test]
async fn deactivating_an_unknown_user_is_not_found() {
    let app = TestApp::start().await;
    let operator = app.register("operator@example.com", "Operator").await;
    app.authz
        .grant(operator.id.parse().unwrap_or_default(), "users:write");
    let (code, message) = refusal(
        app.client()
            .deactivate_user(as_user(
                &operator.id,
                DeactivateUserRequest {
                    id: uuid::Uuid::new_v4().to_string(),
                },
            ))
            .await,
    );
    assert_eq!(code, Code::NotFound, "{message}");
}

#[tokio::test]
async fn the_bootstrap_admin_can_not_be_deactivated() {
    let app = TestApp::start().await;
    let admin = admin_user_id(ADMIN_EMAIL);
    app.authz.grant(admin, "users:write");
    let (code, message) = refusal(
        app.client()
            .deactivate_user(as_user(
                &admin.to_string(),
                DeactivateUserRequest {
                    id: admin.to_string(),
                },
            ))
            .await,
    );
    assert_eq!(code, Code::FailedPrecondition, "{message}");
}

#[tokio::test]
async fn deactivation_by_a_holder_of_users_write_does_not_depend_on_edge_headers() {
    // DeactivateUser is an admin RPC, not an internal one: a user with users:write may
    // call it over gRPC, through the edge or not.
    let app = TestApp::start().await;
    let operator = app.register("operator@example.com", "Operator").await;
    let user = app.register("target@example.com", "Target").await;
    app.authz
        .grant(operator.id.parse().unwrap_or_default(), "users:write");
    let request = with_edge_headers(
        as_user(
            &operator.id,
            DeactivateUserRequest {
                id: user.id.clone(),
            },
        ),
        DEACTIVATE_PATH,
        &operator.id,
    );
    let deactivated = app
        .client()
        .deactivate_user(request)
        .await
        .unwrap_or_else(|s| panic!("deactivation with users:write via the edge: {s:?}"))
        .into_inner();
    assert!(!deactivated.active, "the user is still active");
}

#[tokio::test]
async fn deactivation_without_a_token_is_unauthenticated_whatever_the_headers() {
    let app = TestApp::start().await;
    let operator = app.register("operator@example.com", "Operator").await;
    let user = app.register("target@example.com", "Target").await;
    app.authz
        .grant(operator.id.parse().unwrap_or_default(), "users:write");
    let bare = Request::new(DeactivateUserRequest {
        id: user.id.clone(),
    });
    // Headers naming the operator, as the edge once set them, authenticate nobody.
    let dressed = with_edge_headers(
        Request::new(DeactivateUserRequest {
            id: user.id.clone(),
        }),
        DEACTIVATE_PATH,
        &operator.id,
    );
    for (what, request) in [("bare", bare), ("with edge headers", dressed)] {
        let (code, message) = refusal(app.client().deactivate_user(request).await);
        assert_eq!(code, Code::Unauthenticated, "{what}: {message}");
    }
    assert!(
        app.outbox_events_with("user.deactivate").await.is_empty(),
        "an unauthenticated call left a deactivation event"
    );
}

#[tokio::test]
async fn a_service_account_deactivates_only_with_users_write_in_its_token() {
    let app = TestApp::start().await;
    let user = app.register("target@example.com", "Target").await;
    let deactivate = || DeactivateUserRequest {
        id: user.id.clone(),
    };

    let (code, message) = refusal(
        app.client()
            .deactivate_user(as_service("ops", &["users:read"], deactivate()))
            .await,
    );
    assert_eq!(code, Code::PermissionDenied, "{message}");
    assert_eq!(message, "requires permission users:write");

    let deactivated = app
        .client()
        .deactivate_user(as_service("ops", &["users:write"], deactivate()))
        .await
        .unwrap_or_else(|s| panic!("deactivation by a client with users:write: {s:?}"))
        .into_inner();
    assert!(!deactivated.active, "the user is still active");

    let events = app.outbox_events_with("user.deactivate").await;
    let seen: Vec<(&str, i32)> = events
        .iter()
        .map(|e| (e.actor_id.as_str(), e.outcome))
        .collect();
    assert_eq!(
        seen,
        [
            ("client:ops", Outcome::Denied as i32),
            ("client:ops", Outcome::Success as i32)
        ],
        "the service account is the audited actor"
    );
    let asked = app.authz.checks.lock().map(|c| c.len()).unwrap_or_default();
    assert_eq!(
        asked, 0,
        "a service account's permissions are its token's, not Authz's"
    );
}
