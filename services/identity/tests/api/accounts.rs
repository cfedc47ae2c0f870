//! The account RPCs of Auth's verification, recovery and MFA flows: `FindUserByEmail`,
//! `SetPassword`, `MarkEmailVerified`, `SetMfaEnabled`. Each answers only a service
//! account whose token carries `accounts:manage` (Auth's), never a person, whatever
//! Authz would grant them.

use bulwark_kernel::bootstrap::admin_user_id;
use bulwark_kernel::tonic::{Code, Request};
use bulwark_proto::identity::v1::{
    FindUserByEmailRequest, GetMeRequest, MarkEmailVerifiedRequest, SetMfaEnabledRequest,
    SetPasswordRequest, User, VerifyCredentialsRequest,
};
use uuid::Uuid;

use crate::support::{ADMIN_EMAIL, PASSWORD, TestApp, as_auth, as_service, as_user, refusal};

const NEW_PASSWORD: &str = "a brand new passphrase";

fn find(email: &str) -> FindUserByEmailRequest {
    FindUserByEmailRequest {
        email: email.to_owned(),
    }
}

fn set_password(user_id: &str, password: &str) -> SetPasswordRequest {
    SetPasswordRequest {
        user_id: user_id.to_owned(),
        password: password.to_owned(),
    }
}

fn verified(user_id: &str) -> MarkEmailVerifiedRequest {
    MarkEmailVerifiedRequest {
        user_id: user_id.to_owned(),
    }
}

fn mfa(user_id: &str, enabled: bool) -> SetMfaEnabledRequest {
    SetMfaEnabledRequest {
        user_id: user_id.to_owned(),
        enabled,
    }
}

/// Whether `password` logs `email` in, asked as Auth.
async fn password_works(app: &TestApp, email: &str, password: &str) -> bool {
    app.client()
        .verify_credentials(as_auth(VerifyCredentialsRequest {
            email: email.to_owned(),
            password: password.to_owned(),
        }))
        .await
        .is_ok()
}

async fn me(app: &TestApp, user: &User) -> User {
    app.client()
        .get_me(as_user(&user.id, GetMeRequest {}))
        .await
        .unwrap_or_else(|s| panic!("GetMe: {s:?}"))
        .into_inner()
}

/// A caller the account RPCs must refuse.
#[derive(Debug, Clone, Copy)]
enum Refused {
    Nobody,
    TheUser,
    TheAdmin,
    ServiceWithoutPermission,
}

impl Refused {
    fn dress<T>(self, user: &str, admin: &str, message: T) -> Request<T> {
        match self {
            Self::Nobody => Request::new(message),
            Self::TheUser => as_user(user, message),
            Self::TheAdmin => as_user(admin, message),
            // Auth's permissions before the account flows, without accounts:manage.
            Self::ServiceWithoutPermission => as_service(
                "auth",
                &["credentials:verify", "users:read", "roles:read"],
                message,
            ),
        }
    }
}

#[tokio::test]
async fn account_rpcs_answer_only_a_service_token_with_accounts_manage() {
    let app = TestApp::start().await;
    let user = app.register("owner@example.com", "Owner").await;
    let user_id = Uuid::parse_str(&user.id).unwrap_or_else(|e| panic!("user id: {e}"));
    let admin = admin_user_id(ADMIN_EMAIL);
    // People Authz would allow accounts:manage: no grant to a person opens these.
    for person in [user_id, admin] {
        app.authz.grant(person, "accounts:manage");
    }
    let admin = admin.to_string();
    let service_only = "requires a service account with permission accounts:manage";
    for (caller, code, message) in [
        (
            Refused::Nobody,
            Code::Unauthenticated,
            "missing or invalid bearer token",
        ),
        (Refused::TheUser, Code::PermissionDenied, service_only),
        (Refused::TheAdmin, Code::PermissionDenied, service_only),
        (
            Refused::ServiceWithoutPermission,
            Code::PermissionDenied,
            service_only,
        ),
    ] {
        let expected = (code, message.to_owned());
        let dress = |m| caller.dress(&user.id, &admin, m);
        let found = app
            .client()
            .find_user_by_email(dress(find(&user.email)))
            .await;
        assert_eq!(refusal(found), expected, "FindUserByEmail, {caller:?}");
        let set = app
            .client()
            .set_password(caller.dress(&user.id, &admin, set_password(&user.id, NEW_PASSWORD)))
            .await;
        assert_eq!(refusal(set), expected, "SetPassword, {caller:?}");
        let marked = app
            .client()
            .mark_email_verified(caller.dress(&user.id, &admin, verified(&user.id)))
            .await;
        assert_eq!(refusal(marked), expected, "MarkEmailVerified, {caller:?}");
        let mfa_set = app
            .client()
            .set_mfa_enabled(caller.dress(&user.id, &admin, mfa(&user.id, true)))
            .await;
        assert_eq!(refusal(mfa_set), expected, "SetMfaEnabled, {caller:?}");
    }
    assert!(
        password_works(&app, &user.email, PASSWORD).await,
        "a refused SetPassword changed the password"
    );
    let now = me(&app, &user).await;
    assert!(
        !now.email_verified && !now.mfa_enabled,
        "a refused call changed the user: {now:?}"
    );
}

#[tokio::test]
async fn find_user_by_email_matches_any_case_and_knows_no_one_else() {
    let app = TestApp::start().await;
    let user = app.register("Reset.Me@Example.com", "Reset").await;
    let found = app
        .client()
        .find_user_by_email(as_auth(find("reset.me@EXAMPLE.com")))
        .await
        .unwrap_or_else(|s| panic!("FindUserByEmail of a known email: {s:?}"))
        .into_inner();
    assert_eq!(
        (found.user_id.as_str(), found.email.as_str(), found.active),
        (user.id.as_str(), "Reset.Me@Example.com", true)
    );
    let unknown = app
        .client()
        .find_user_by_email(as_auth(find("nobody@example.com")))
        .await;
    assert_eq!(refusal(unknown).0, Code::NotFound);
    let empty = app.client().find_user_by_email(as_auth(find(""))).await;
    assert_eq!(
        refusal(empty),
        (Code::InvalidArgument, "email: is required".to_owned())
    );
}

#[tokio::test]
async fn set_password_replaces_the_password_with_registrations_rule() {
    let app = TestApp::start().await;
    let user = app.register("change@example.com", "Change").await;

    let short = app
        .client()
        .set_password(as_auth(set_password(&user.id, "elevenchars")))
        .await;
    assert_eq!(
        refusal(short),
        (
            Code::InvalidArgument,
            "password: must be at least 12 characters".to_owned()
        )
    );
    assert!(password_works(&app, &user.email, PASSWORD).await);

    app.client()
        .set_password(as_auth(set_password(&user.id, NEW_PASSWORD)))
        .await
        .unwrap_or_else(|s| panic!("SetPassword with a good password: {s:?}"));
    assert!(
        password_works(&app, &user.email, NEW_PASSWORD).await,
        "the new password does not log in"
    );
    assert!(
        !password_works(&app, &user.email, PASSWORD).await,
        "the old password still logs in"
    );

    let unknown = app
        .client()
        .set_password(as_auth(set_password(
            &Uuid::new_v4().to_string(),
            NEW_PASSWORD,
        )))
        .await;
    assert_eq!(refusal(unknown).0, Code::NotFound);
}

#[tokio::test]
async fn email_verified_and_mfa_enabled_start_false_and_are_set_by_auth() {
    let app = TestApp::start().await;
    let user = app.register("flags@example.com", "Flags").await;
    assert!(
        !user.email_verified && !user.mfa_enabled,
        "a new user: {user:?}"
    );

    for _ in 0..2 {
        let marked = app
            .client()
            .mark_email_verified(as_auth(verified(&user.id)))
            .await
            .unwrap_or_else(|s| panic!("MarkEmailVerified: {s:?}"))
            .into_inner();
        assert!(marked.email_verified, "{marked:?}");
    }
    assert!(
        me(&app, &user).await.email_verified,
        "GetMe after verifying"
    );

    for enabled in [true, false, true] {
        let set = app
            .client()
            .set_mfa_enabled(as_auth(mfa(&user.id, enabled)))
            .await
            .unwrap_or_else(|s| panic!("SetMfaEnabled({enabled}): {s:?}"))
            .into_inner();
        assert_eq!(set.mfa_enabled, enabled);
        assert_eq!(me(&app, &user).await.mfa_enabled, enabled, "GetMe");
    }

    let nobody = Uuid::new_v4().to_string();
    let unknown = app
        .client()
        .mark_email_verified(as_auth(verified(&nobody)))
        .await;
    assert_eq!(refusal(unknown).0, Code::NotFound);
    let unknown = app
        .client()
        .set_mfa_enabled(as_auth(mfa(&nobody, true)))
        .await;
    assert_eq!(refusal(unknown).0, Code::NotFound);
}
