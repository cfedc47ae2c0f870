//! VerifyCredentials: right, wrong and unknown, the same work for the last two, and
//! only for a service account whose token carries `credentials:verify`.

use bulwark_identity::INVALID_CREDENTIALS;
use bulwark_kernel::bootstrap::admin_user_id;
use bulwark_kernel::tonic::{Code, Request};
use bulwark_proto::identity::v1::{DeactivateUserRequest, VerifyCredentialsRequest};
use uuid::Uuid;

use crate::support::{
    ADMIN_EMAIL, PASSWORD, TestApp, as_auth, as_service, as_user, refusal, with_edge_headers,
};

const PATH: &str = "/bulwark.identity.v1.IdentityService/VerifyCredentials";

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
            .verify_credentials(as_auth(credentials(email, PASSWORD)))
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
            .verify_credentials(as_auth(credentials(
                "known@example.com",
                "not the password",
            )))
            .await,
    );
    let unknown = refusal(
        app.client()
            .verify_credentials(as_auth(credentials("unknown@example.com", PASSWORD)))
            .await,
    );
    let malformed = refusal(
        app.client()
            .verify_credentials(as_auth(credentials("not-an-email", PASSWORD)))
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
        .verify_credentials(as_auth(credentials("unknown@example.com", PASSWORD)))
        .await;
    let after_unknown = app.passwords.verifications();
    let _ = app
        .client()
        .verify_credentials(as_auth(credentials(
            "known@example.com",
            "not the password",
        )))
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
            .verify_credentials(as_auth(credentials("a@example.com", &"p".repeat(129))))
            .await,
    );
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert_eq!(message, "password: must be at most 128 characters");
    let (code, message) = refusal(
        app.client()
            .verify_credentials(as_auth(credentials(&"e".repeat(255), PASSWORD)))
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
        .verify_credentials(as_auth(credentials("gone@example.com", PASSWORD)))
        .await
        .unwrap_or_else(|s| panic!("right password of a deactivated user: {s:?}"))
        .into_inner();
    assert_eq!(verified.user_id, user.id);
    assert!(!verified.active, "a deactivated user reported active");

    let wrong = refusal(
        app.client()
            .verify_credentials(as_auth(credentials("gone@example.com", "not the password")))
            .await,
    );
    assert_eq!(
        wrong.0,
        Code::Unauthenticated,
        "a wrong password must still fail"
    );
}

#[tokio::test]
async fn verify_credentials_requires_a_service_token_with_credentials_verify() {
    let app = TestApp::start().await;
    let user = app.register("known@example.com", "Known").await;
    let user_id = Uuid::parse_str(&user.id).unwrap_or_else(|e| panic!("user id: {e}"));
    let admin = admin_user_id(ADMIN_EMAIL);
    // People Authz would allow credentials:verify (and everything else the admin has):
    // no grant to a person opens an internal RPC.
    for person in [user_id, admin] {
        app.authz.grant(person, "credentials:verify");
    }
    let right = || credentials("known@example.com", PASSWORD);
    let service_only = "requires a service account with permission credentials:verify";
    let before = app.passwords.verifications();

    let refused = [
        (
            "no token",
            Request::new(right()),
            Code::Unauthenticated,
            "missing or invalid bearer token",
        ),
        (
            "no token, every edge and identity header",
            with_edge_headers(Request::new(right()), PATH, admin),
            Code::Unauthenticated,
            "missing or invalid bearer token",
        ),
        (
            "the user's own token",
            as_user(&user.id, right()),
            Code::PermissionDenied,
            service_only,
        ),
        (
            "the admin's token, via the edge",
            with_edge_headers(as_user(&admin.to_string(), right()), PATH, admin),
            Code::PermissionDenied,
            service_only,
        ),
        (
            "a service token without credentials:verify",
            as_service(
                "identity",
                &["audit:append", "roles:read", "users:read"],
                right(),
            ),
            Code::PermissionDenied,
            service_only,
        ),
    ];
    for (what, request, code, message) in refused {
        let result = app.client().verify_credentials(request).await;
        assert_eq!(refusal(result), (code, message.to_owned()), "{what}");
    }
    assert_eq!(
        app.passwords.verifications(),
        before,
        "a refused caller got a password hashed"
    );
    let asked: Vec<_> = app
        .authz
        .checks
        .lock()
        .map(|c| c.clone())
        .unwrap_or_default();
    assert!(
        asked.is_empty(),
        "Authz was asked about an internal RPC's caller: {asked:?}"
    );

    let verified = app
        .client()
        .verify_credentials(as_service("auth", &["credentials:verify"], right()))
        .await
        .unwrap_or_else(|s| panic!("a service token with credentials:verify: {s:?}"))
        .into_inner();
    assert_eq!(verified.user_id, user.id);
    assert_eq!(app.passwords.verifications(), before + 1);
}
