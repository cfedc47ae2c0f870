//! UpdateDisplayName and DeactivateUser: permissions, effects and audit events.

use bulwark_kernel::bootstrap::admin_user_id;
use bulwark_kernel::tonic::Code;
use bulwark_proto::audit::v1::Outcome;
use bulwark_proto::identity::v1::{DeactivateUserRequest, UpdateDisplayNameRequest};

use crate::support::{ADMIN_EMAIL, TestApp, as_user, refusal};

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
async fn deactivation_through_the_edge_is_refused() {
    let app = TestApp::start().await;
    let operator = app.register("operator@example.com", "Operator").await;
    let user = app.register("target@example.com", "Target").await;
    app.authz
        .grant(operator.id.parse().unwrap_or_default(), "users:write");
    let mut request = as_user(
        &operator.id,
        DeactivateUserRequest {
            id: user.id.clone(),
        },
    );
    request.metadata_mut().insert(
        "x-envoy-original-path",
        "/bulwark.identity.v1.IdentityService/DeactivateUser"
            .parse()
            .unwrap_or_else(|e| panic!("header: {e}")),
    );
    let (code, message) = refusal(app.client().deactivate_user(request).await);
    assert_eq!(code, Code::PermissionDenied, "{message}");
}
