//! TOTP MFA: enrolment, confirmation with recovery codes, the two-step login with a code
//! accepted once and recovery codes used once, the mfa_token's lifetime and tries, and
//! disable.

use bulwark_auth::domain::totp::{self, TotpSecret};
use bulwark_kernel::tonic::{Code, Status};
use bulwark_proto::auth::v1::{
    ConfirmTotpRequest, DisableTotpRequest, EnrollTotpRequest, LoginMfaRequest, TokenPair,
};
use chrono::Utc;

use crate::support::{FakeUser, PASSWORD, TestApp, assert_code, claims, failure, with_bearer};

/// The secret an authenticator app would hold, from the enrolment's answer.
fn secret_of(base32: &str) -> TotpSecret {
    let bytes = data_encoding::BASE32_NOPAD
        .decode(base32.as_bytes())
        .unwrap_or_else(|e| panic!("secret {base32:?} is not base32: {e}"));
    TotpSecret::from_bytes(&bytes).unwrap_or_else(|e| panic!("not a TOTP secret: {e}"))
}

/// The code of the step `offset` steps from now.
fn code(secret: &TotpSecret, offset: i64) -> String {
    let step = totp::step_at(Utc::now()).expect("a step after the epoch");
    let step = step.checked_add_signed(offset).expect("a valid step");
    totp::code_at_step(secret, step).as_str().to_owned()
}

async fn enroll(app: &TestApp, access: &str) -> Result<(TotpSecret, String), Status> {
    let answer = app
        .client
        .clone()
        .enroll_totp(with_bearer(EnrollTotpRequest {}, access))
        .await?
        .into_inner();
    Ok((secret_of(&answer.secret), answer.otpauth_uri))
}

async fn confirm(app: &TestApp, access: &str, code: &str) -> Result<Vec<String>, Status> {
    app.client
        .clone()
        .confirm_totp(with_bearer(
            ConfirmTotpRequest {
                code: code.to_owned(),
            },
            access,
        ))
        .await
        .map(|r| r.into_inner().recovery_codes)
}

async fn disable(app: &TestApp, access: &str, code: &str) -> Result<(), Status> {
    app.client
        .clone()
        .disable_totp(with_bearer(
            DisableTotpRequest {
                code: code.to_owned(),
            },
            access,
        ))
        .await
        .map(|_| ())
}

async fn login_mfa(app: &TestApp, mfa_token: &str, code: &str) -> Result<TokenPair, Status> {
    app.client
        .clone()
        .login_mfa(LoginMfaRequest {
            mfa_token: mfa_token.to_owned(),
            code: code.to_owned(),
        })
        .await
        .map(|r| r.into_inner())
}

/// Logs in with the password; the answer must ask for the second factor.
async fn mfa_token(app: &TestApp, user: &FakeUser) -> String {
    let answer = app
        .login_answer(&user.email, PASSWORD)
        .await
        .unwrap_or_else(|s| panic!("login: {s:?}"));
    assert_eq!(answer.mfa_required, Some(true), "{answer:?}");
    assert_eq!(
        answer.access_token, None,
        "no pair before the second factor"
    );
    assert_eq!(answer.refresh_token, None);
    answer.mfa_token.expect("an mfa_token")
}

/// A user with MFA on; returns the secret, the recovery codes and the user's tokens.
async fn with_mfa(app: &TestApp, email: &str) -> (FakeUser, TotpSecret, Vec<String>, TokenPair) {
    let user = app.user(email);
    let pair = app.logged_in(&user).await;
    let (secret, uri) = enroll(app, &pair.access_token)
        .await
        .unwrap_or_else(|s| panic!("enrol: {s:?}"));
    assert!(
        uri.starts_with("otpauth://totp/Bulwark:") && uri.contains("&issuer=Bulwark"),
        "{uri}"
    );
    let codes = confirm(app, &pair.access_token, &code(&secret, 0))
        .await
        .unwrap_or_else(|s| panic!("confirm: {s:?}"));
    (user, secret, codes, pair)
}

fn actions(events: &[bulwark_proto::audit::v1::AuditEvent], action: &str) -> usize {
    events.iter().filter(|e| e.action == action).count()
}

#[tokio::test]
async fn a_confirmed_authenticator_makes_login_two_steps_and_a_code_counts_once() {
    let app = TestApp::start().await;
    let (user, secret, codes, _) = with_mfa(&app, "mfa@example.com").await;
    assert_eq!(codes.len(), 10);
    let mut distinct = codes.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 10, "{codes:?}");

    let token = mfa_token(&app, &user).await;
    // The code the confirmation used is spent: the login needs a later step's.
    let status = failure(
        login_mfa(&app, &token, &code(&secret, 0)).await,
        "spent code",
    );
    assert_code(&status, Code::Unauthenticated, "spent code");
    let pair = login_mfa(&app, &token, &code(&secret, 1))
        .await
        .unwrap_or_else(|s| panic!("second step: {s:?}"));
    assert!(claims(&pair.access_token)["sid"].is_string());
    assert!(app.refresh(&pair.refresh_token).await.is_ok());

    // The same code again, with a fresh mfa_token: refused.
    let again = mfa_token(&app, &user).await;
    let status = failure(
        login_mfa(&app, &again, &code(&secret, 1)).await,
        "code reused",
    );
    assert_code(&status, Code::Unauthenticated, "code reused");
    // A used mfa_token is done, whatever the code.
    let status = failure(
        login_mfa(&app, &token, &code(&secret, 1)).await,
        "token reused",
    );
    assert_code(&status, Code::Unauthenticated, "token reused");

    let events = app.outbox().await;
    assert_eq!(actions(&events, "auth.mfa_enable"), 1, "{events:?}");
    let mfa_logins: Vec<_> = events
        .iter()
        .filter(|e| e.action == "auth.mfa_login")
        .collect();
    assert_eq!(mfa_logins.len(), 4, "one per try: {mfa_logins:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_recovery_code_logs_in_once() {
    let app = TestApp::start().await;
    let (user, _, codes, _) = with_mfa(&app, "recovery@example.com").await;
    let token = mfa_token(&app, &user).await;
    // Typed in lower case with spaces: still the code.
    let typed = format!(" {} ", codes[3].to_lowercase());
    login_mfa(&app, &token, &typed)
        .await
        .unwrap_or_else(|s| panic!("recovery code: {s:?}"));
    let token = mfa_token(&app, &user).await;
    let status = failure(
        login_mfa(&app, &token, &codes[3]).await,
        "recovery code reused",
    );
    assert_code(&status, Code::Unauthenticated, "recovery code reused");
    login_mfa(&app, &token, &codes[4])
        .await
        .unwrap_or_else(|s| panic!("another recovery code: {s:?}"));
    app.stop().await;
}

#[tokio::test]
async fn an_mfa_token_allows_five_tries_and_lives_five_minutes() {
    let app = TestApp::start().await;
    let (user, secret, _, _) = with_mfa(&app, "tries@example.com").await;
    let token = mfa_token(&app, &user).await;
    for _ in 0..5 {
        let status = failure(login_mfa(&app, &token, "000000").await, "wrong code");
        assert_code(&status, Code::Unauthenticated, "wrong code");
    }
    let status = failure(
        login_mfa(&app, &token, &code(&secret, 1)).await,
        "right code after five tries",
    );
    assert_code(
        &status,
        Code::Unauthenticated,
        "right code after five tries",
    );

    let token = mfa_token(&app, &user).await;
    app.sql("UPDATE mfa_challenges SET expires_at = now() - interval '1 second'")
        .await;
    let status = failure(
        login_mfa(&app, &token, &code(&secret, 1)).await,
        "expired token",
    );
    assert_code(&status, Code::Unauthenticated, "expired token");
    let status = failure(
        login_mfa(&app, "not-a-token", &code(&secret, 1)).await,
        "unknown",
    );
    assert_code(&status, Code::Unauthenticated, "unknown");
    app.stop().await;
}

#[tokio::test]
async fn enrolment_needs_the_right_code_and_happens_once() {
    let app = TestApp::start().await;
    let user = app.user("enrol@example.com");
    let pair = app.logged_in(&user).await;
    let status = failure(
        confirm(&app, &pair.access_token, "123456").await,
        "nothing pending",
    );
    assert_code(&status, Code::FailedPrecondition, "nothing pending");

    let (first, _) = enroll(&app, &pair.access_token).await.expect("enrol");
    // Enrolling again replaces the pending secret.
    let (second, _) = enroll(&app, &pair.access_token).await.expect("enrol again");
    let status = failure(
        confirm(&app, &pair.access_token, &code(&first, 0)).await,
        "the replaced secret's code",
    );
    assert_code(&status, Code::InvalidArgument, "the replaced secret's code");
    let status = failure(
        confirm(&app, &pair.access_token, "12345").await,
        "malformed",
    );
    assert_code(&status, Code::InvalidArgument, "malformed");
    // Before confirmation, login needs no second factor.
    assert!(app.login(&user.email, PASSWORD).await.is_ok());

    confirm(&app, &pair.access_token, &code(&second, 0))
        .await
        .expect("confirm");
    let status = failure(
        enroll(&app, &pair.access_token).await,
        "enrol while enabled",
    );
    assert_code(&status, Code::FailedPrecondition, "enrol while enabled");
    app.stop().await;
}

#[tokio::test]
async fn disabling_needs_a_code_and_makes_login_one_step_again() {
    let app = TestApp::start().await;
    let (user, secret, codes, pair) = with_mfa(&app, "disable@example.com").await;
    let status = failure(
        disable(&app, &pair.access_token, "000000").await,
        "wrong code",
    );
    assert_code(&status, Code::InvalidArgument, "wrong code");
    disable(&app, &pair.access_token, &code(&secret, 1))
        .await
        .unwrap_or_else(|s| panic!("disable: {s:?}"));
    assert!(
        app.login(&user.email, PASSWORD).await.is_ok(),
        "one step again"
    );
    let status = failure(
        disable(&app, &pair.access_token, &codes[0]).await,
        "disabled twice",
    );
    assert_code(&status, Code::FailedPrecondition, "disabled twice");
    assert_eq!(
        app.sql("SELECT 1 FROM recovery_codes").await,
        0,
        "the recovery codes went with the secret"
    );
    assert_eq!(actions(&app.outbox().await, "auth.mfa_disable"), 1);

    // A recovery code disables too.
    let (_, _, codes, pair) = with_mfa(&app, "disable-recovery@example.com").await;
    disable(&app, &pair.access_token, &codes[9])
        .await
        .unwrap_or_else(|s| panic!("disable with a recovery code: {s:?}"));
    app.stop().await;
}

#[tokio::test]
async fn the_secret_is_sealed_at_rest() {
    let app = TestApp::start().await;
    let (_, secret, _, _) = with_mfa(&app, "sealed@example.com").await;
    let plain = hex(secret.as_bytes());
    assert_eq!(
        app.sql(&format!(
            "SELECT 1 FROM totp_secrets WHERE position('\\x{plain}'::bytea IN secret) > 0"
        ))
        .await,
        0,
        "the secret's bytes are in the table"
    );
    app.stop().await;
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn wrong_second_factors_lock_the_account_like_wrong_passwords() {
    let app = TestApp::start_with_redis(&[]).await;
    let email = format!("mfa-lock-{}@example.com", uuid::Uuid::new_v4().simple());
    let (user, secret, _, _) = with_mfa(&app, &email).await;
    let token = mfa_token(&app, &user).await;
    let pending = mfa_token(&app, &user).await;
    for _ in 0..5 {
        let status = failure(login_mfa(&app, &token, "000000").await, "wrong code");
        assert_code(&status, Code::Unauthenticated, "wrong code");
    }
    let status = failure(app.login_answer(&user.email, PASSWORD).await, "locked");
    assert_code(&status, Code::ResourceExhausted, "locked");
    assert!(status.metadata().get("retry-after").is_some(), "{status:?}");
    // A second step started before the lock is refused as locked, right code or not.
    let status = failure(
        login_mfa(&app, &pending, &code(&secret, 1)).await,
        "pending",
    );
    assert_code(&status, Code::ResourceExhausted, "pending");
    let locks = app
        .outbox()
        .await
        .into_iter()
        .filter(|e| e.action == "auth.account_lock")
        .count();
    assert_eq!(locks, 1);
    app.stop().await;
}
