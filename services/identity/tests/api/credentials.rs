//! VerifyCredentials: right, wrong and unknown, and the same work for the last two.

use bulwark_identity::INVALID_CREDENTIALS;
use bulwark_kernel::tonic::{Code, Request};
use bulwark_proto::identity::v1::{DeactivateUserRequest, VerifyCredentialsRequest};

use crate::support::{PASSWORD, TestApp, as_user, refusal};

fn credentials(email: &str, password: &str) -> VerifyCredentialsRequest {
    VerifyCredentialsRequest {
        email: email.to_owned(),
        password: password.to_owned(),
    }
}

#[tokio::test]
async fn right_password_returns_the_user_in_any_email_case() {
    let app = TestApp::start().await;
    let user = app.register("Login@Example.com", "Login").await;

    for email in [
        "Login@Example.com",
        "login@example.com",
        "LOGIN@EXAMPLE.COM",
    ] {
        let verified = app
            .client()
            .verify_credentials(credentials(email, PASSWORD))
            .await
            .unwrap_or_else(|s| panic!("{email} with the right password: {s:?}"))
            .into_inner();
        assert_eq!(verified.user_id, user.id, "{email}");
        assert!(verified.active, "{email}: an active user reported inactive");
    }
}

#[tokio::test]
async fn wrong_password_and_unknown_email_are_the_same_unauthenticated() {
    let app = TestApp::start().await;
    app.register("known@example.com", "Known").await;

    let wrong = refusal(
        app.client()
            .verify_credentials(credentials("known@example.com", "not the password"))
            .await,
    );
    let unknown = refusal(
        app.client()
            .verify_credentials(credentials("unknown@example.com", PASSWORD))
            .await,
    );
    let malformed = refusal(
        app.client()
            .verify_credentials(credentials("not-an-email", PASSWORD))
            .await,
    );
    assert_eq!(
        wrong,
        (Code::Unauthenticated, INVALID_CREDENTIALS.to_owned())
    );
    assert_eq!(unknown, wrong, "unknown email answered differently");
    assert_eq!(malformed, wrong, "a malformed email answered differently");
}

#[tokio::test]
async fn unknown_email_runs_one_argon2_verification_like_a_wrong_password() {
    // Equal timing is shown by equal work, not by a stopwatch: both paths must run
    // exactly one argon2 verification with the same parameters (the dummy hash's
    // parameters are checked in the credentials unit tests).
    let app = TestApp::start().await;
    app.register("known@example.com", "Known").await;

    let before = app.passwords.verifications();
    let _ = app
        .client()
        .verify_credentials(credentials("unknown@example.com", PASSWORD))
        .await;
    let after_unknown = app.passwords.verifications();
    let _ = app
        .client()
        .verify_credentials(credentials("known@example.com", "not the password"))
        .await;
    let after_wrong = app.passwords.verifications();

    assert_eq!(
        after_unknown - before,
        1,
        "an unknown email must cost one argon2 verification (of the dummy hash)"
    );
    assert_eq!(
        after_wrong - after_unknown,
        1,
        "a wrong password must cost one argon2 verification"
    );
}

#[tokio::test]
async fn oversized_input_is_refused_before_any_hashing() {
    let app = TestApp::start().await;
    let before = app.passwords.verifications();
    let (code, message) = refusal(
        app.client()
            .verify_credentials(credentials("a@example.com", &"p".repeat(129)))
            .await,
    );
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert_eq!(message, "password: must be at most 128 characters");
    let (code, message) = refusal(
        app.client()
            .verify_credentials(credentials(&"e".repeat(255), PASSWORD))
            .await,
    );
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert_eq!(
        app.passwords.verifications(),
        before,
        "oversized input was hashed"
    );
}

#[tokio::test]
async fn deactivated_users_credentials_verify_with_active_false() {
    // The proto's contract: Identity reports the state, Auth refuses the login.
    let app = TestApp::start().await;
    let operator = app.register("operator@example.com", "Operator").await;
    let user = app.register("gone@example.com", "Gone").await;
    app.authz
        .grant(operator.id.parse().unwrap_or_default(), "users:write");
    app.client()
        .deactivate_user(as_user(
            &operator.id,
            DeactivateUserRequest {
                id: user.id.clone(),
            },
        ))
        .await
        .unwrap_or_else(|s| panic!("deactivating: {s:?}"));

    let verified = app
        .client()
        .verify_credentials(credentials("gone@example.com", PASSWORD))
        .await
        .unwrap_or_else(|s| panic!("right password of a deactivated user: {s:?}"))
        .into_inner();
    assert_eq!(verified.user_id, user.id);
    assert!(!verified.active, "a deactivated user reported active");

    let wrong = refusal(
        app.client()
            .verify_credentials(credentials("gone@example.com", "not the password"))
            .await,
    );
    assert_eq!(
        wrong.0,
        Code::Unauthenticated,
        "a wrong password must still fail"
    );
}

#[tokio::test]
async fn credential_checks_forwarded_by_the_edge_are_refused_unhashed() {
    let app = TestApp::start().await;
    app.register("known@example.com", "Known").await;
    let before = app.passwords.verifications();
    let mut request = Request::new(credentials("known@example.com", PASSWORD));
    request.metadata_mut().insert(
        "x-forwarded-for",
        "203.0.113.7"
            .parse()
            .unwrap_or_else(|e| panic!("header: {e}")),
    );
    let (code, message) = refusal(app.client().verify_credentials(request).await);
    assert_eq!(code, Code::PermissionDenied, "{message}");
    assert_eq!(
        app.passwords.verifications(),
        before,
        "an edge call was hashed"
    );
}
