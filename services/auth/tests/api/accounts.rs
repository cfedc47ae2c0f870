//! The account flows (issue 11): email verification, password reset and password
//! change. Mailed tokens are single use, expire, and die when a newer one of their kind
//! is asked for; a reset request answers alike, in about the same time, whether or not
//! the email is known, and mails an address at most 3 times an hour; a reset ends every
//! session of the user, a change every session but the caller's.
//!
//! Mail stays in the outbox (the relay's SMTP server is a closed port), where the tests
//! read the token the way a user reads it from the message.

use std::time::{Duration, Instant};

use bulwark_auth::RESET_ANSWER_FLOOR;
use bulwark_kernel::tonic::{Code, Status};
use bulwark_proto::audit::v1::Outcome;
use bulwark_proto::auth::v1::{
    ChangePasswordRequest, ConfirmPasswordResetRequest, ListRevokedSessionsRequest,
    RequestEmailVerificationRequest, RequestPasswordResetRequest, TokenPair, VerifyEmailRequest,
};
use bulwark_proto::identity::v1::User;
use diesel::sql_types::Text;
use diesel_async::RunQueryDsl as _;
use uuid::Uuid;

use crate::support::{FakeUser, PASSWORD, TestApp, assert_code, claims, failure, with_bearer};

const NEW_PASSWORD: &str = "an entirely new passphrase";
const INVALID_TOKEN: &str = "token: invalid, expired or already used";

/// Auth whose mail never leaves the outbox: nothing listens on its SMTP port.
async fn app() -> TestApp {
    let port = bulwark_e2e::free_port().unwrap_or_else(|e| panic!("{e:#}"));
    TestApp::start_with(&[("auth.smtp_url", format!("smtp://127.0.0.1:{port}").into())]).await
}

#[derive(diesel::QueryableByName, Debug)]
struct QueuedMail {
    #[diesel(sql_type = Text)]
    body: String,
}

/// The tokens of the mails of `kind` queued for `to`, oldest first.
async fn mailed_tokens(app: &TestApp, to: &str, kind: &str) -> Vec<String> {
    let mut conn = app.db().await;
    let mails: Vec<QueuedMail> = diesel::sql_query(
        "SELECT body FROM mail_outbox WHERE recipient = $1 AND kind = $2 ORDER BY id",
    )
    .bind::<Text, _>(to)
    .bind::<Text, _>(kind)
    .load(&mut *conn)
    .await
    .unwrap_or_else(|e| panic!("reading the mail outbox: {e}"));
    mails
        .iter()
        .map(|mail| {
            let (_, rest) = mail
                .body
                .split_once("token=")
                .unwrap_or_else(|| panic!("a mail without a token link: {}", mail.body));
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect()
        })
        .collect()
}

/// The token of the one newest mail of `kind` for `to`.
async fn newest_token(app: &TestApp, to: &str, kind: &str) -> String {
    mailed_tokens(app, to, kind)
        .await
        .pop()
        .unwrap_or_else(|| panic!("no {kind} mail was queued for {to}"))
}

async fn request_verification(app: &TestApp, access_token: &str) -> Result<(), Status> {
    app.client
        .clone()
        .request_email_verification(with_bearer(
            RequestEmailVerificationRequest {},
            access_token,
        ))
        .await
        .map(|_| ())
}

async fn verify_email(app: &TestApp, token: &str) -> Result<User, Status> {
    app.client
        .clone()
        .verify_email(VerifyEmailRequest {
            token: token.to_owned(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn request_reset(app: &TestApp, email: &str) -> Result<(), Status> {
    app.client
        .clone()
        .request_password_reset(RequestPasswordResetRequest {
            email: email.to_owned(),
        })
        .await
        .map(|_| ())
}

async fn confirm_reset(app: &TestApp, token: &str, new_password: &str) -> Result<(), Status> {
    app.client
        .clone()
        .confirm_password_reset(ConfirmPasswordResetRequest {
            token: token.to_owned(),
            new_password: new_password.to_owned(),
        })
        .await
        .map(|_| ())
}

async fn change_password(
    app: &TestApp,
    access_token: &str,
    current: &str,
    new: &str,
) -> Result<(), Status> {
    app.client
        .clone()
        .change_password(with_bearer(
            ChangePasswordRequest {
                current_password: current.to_owned(),
                new_password: new.to_owned(),
            },
            access_token,
        ))
        .await
        .map(|_| ())
}

/// The outbox's events of `action`, as (actor, target, outcome, details).
async fn events(app: &TestApp, action: &str) -> Vec<(String, String, Outcome, serde_json::Value)> {
    app.outbox()
        .await
        .into_iter()
        .filter(|e| e.action == action)
        .map(|e| {
            let details = serde_json::from_str(&e.details).unwrap_or(serde_json::Value::Null);
            (e.actor_id.clone(), e.target.clone(), e.outcome(), details)
        })
        .collect()
}

/// Asserts that `token` is refused by `use_it` with the one answer for bad tokens.
fn assert_refused_token<T: std::fmt::Debug>(result: Result<T, Status>, what: &str) {
    let status = failure(result, what);
    assert_code(&status, Code::InvalidArgument, what);
    assert_eq!(status.message(), INVALID_TOKEN, "{what}");
}

fn sid(pair: &TokenPair) -> Uuid {
    claims(&pair.access_token)["sid"]
        .as_str()
        .and_then(|s| Uuid::parse_str(s).ok())
        .unwrap_or_else(|| panic!("an access token without a sid"))
}

async fn revoked_sessions(app: &TestApp) -> Vec<Uuid> {
    app.client
        .clone()
        .list_revoked_sessions(ListRevokedSessionsRequest { since_unix_ms: 0 })
        .await
        .unwrap_or_else(|s| panic!("ListRevokedSessions: {s:?}"))
        .into_inner()
        .sessions
        .iter()
        .filter_map(|s| Uuid::from_slice(&s.id).ok())
        .collect()
}

#[tokio::test]
async fn a_verification_token_verifies_the_email_once() {
    let app = app().await;
    let user = app.user("verify@example.com");
    let pair = app.logged_in(&user).await;

    request_verification(&app, &pair.access_token)
        .await
        .unwrap_or_else(|s| panic!("asking for a verification mail: {s:?}"));
    let token = newest_token(&app, &user.email, "email_verification").await;
    // A verification token is no reset token.
    assert_refused_token(
        confirm_reset(&app, &token, NEW_PASSWORD).await,
        "a verification token used for a reset",
    );

    let verified = verify_email(&app, &token)
        .await
        .unwrap_or_else(|s| panic!("verifying with the mailed token: {s:?}"));
    assert_eq!(verified.id, user.id.to_string());
    assert!(verified.email_verified, "the answer: {verified:?}");
    assert!(
        app.identity.get(user.id).email_verified,
        "Identity was not told"
    );

    assert_refused_token(verify_email(&app, &token).await, "the same token again");
    assert_refused_token(verify_email(&app, "never-mailed").await, "an unknown token");
    let status = failure(
        request_verification(&app, &pair.access_token).await,
        "asking again once verified",
    );
    assert_code(
        &status,
        Code::FailedPrecondition,
        "asking again once verified",
    );

    let id = user.id.to_string();
    assert_eq!(
        events(&app, "auth.email_verification_send").await,
        vec![(
            id.clone(),
            id.clone(),
            Outcome::Success,
            serde_json::json!({})
        )]
    );
    assert_eq!(
        events(&app, "auth.email_verify").await,
        vec![(id.clone(), id, Outcome::Success, serde_json::json!({}))]
    );
    let stored: Vec<String> = app
        .outbox()
        .await
        .iter()
        .map(|e| e.details.clone())
        .collect();
    assert!(
        stored.iter().all(|d| !d.contains(&token)),
        "a token reached the audit trail"
    );
}

#[tokio::test]
async fn a_newer_request_makes_the_older_unused_token_invalid() {
    let app = app().await;
    let user = app.user("twice@example.com");
    let pair = app.logged_in(&user).await;

    for _ in 0..2 {
        request_reset(&app, &user.email)
            .await
            .unwrap_or_else(|s| panic!("reset request: {s:?}"));
        request_verification(&app, &pair.access_token)
            .await
            .unwrap_or_else(|s| panic!("verification request: {s:?}"));
    }
    let resets = mailed_tokens(&app, &user.email, "password_reset").await;
    let verifications = mailed_tokens(&app, &user.email, "email_verification").await;
    assert_eq!((resets.len(), verifications.len()), (2, 2));

    assert_refused_token(
        confirm_reset(&app, &resets[0], NEW_PASSWORD).await,
        "the older reset token",
    );
    assert_refused_token(
        verify_email(&app, &verifications[0]).await,
        "the older verification token",
    );
    // The newer request of one kind left the other kind's token alone.
    verify_email(&app, &verifications[1])
        .await
        .unwrap_or_else(|s| panic!("the newer verification token: {s:?}"));
    confirm_reset(&app, &resets[1], NEW_PASSWORD)
        .await
        .unwrap_or_else(|s| panic!("the newer reset token: {s:?}"));
    assert_eq!(app.identity.get(user.id).password, NEW_PASSWORD);
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let app = app().await;
    let user = app.user("late@example.com");
    let pair = app.logged_in(&user).await;
    request_reset(&app, &user.email)
        .await
        .unwrap_or_else(|s| panic!("reset request: {s:?}"));
    request_verification(&app, &pair.access_token)
        .await
        .unwrap_or_else(|s| panic!("verification request: {s:?}"));

    // The lifetimes as stored: 30 minutes and 24 hours.
    let lifetimes = app
        .sql(
            "UPDATE account_tokens SET expires_at = now() - interval '1 second' \
             WHERE (kind = 'password_reset' AND expires_at - created_at = interval '30 minutes') \
                OR (kind = 'email_verification' AND expires_at - created_at = interval '24 hours')",
        )
        .await;
    assert_eq!(lifetimes, 2, "a token's lifetime is not the contract's");

    let reset = newest_token(&app, &user.email, "password_reset").await;
    let verification = newest_token(&app, &user.email, "email_verification").await;
    assert_refused_token(
        confirm_reset(&app, &reset, NEW_PASSWORD).await,
        "an expired reset token",
    );
    assert_refused_token(
        verify_email(&app, &verification).await,
        "an expired verification token",
    );
    assert_eq!(app.identity.get(user.id).password, PASSWORD);
}

#[tokio::test]
async fn an_address_gets_at_most_three_reset_mails_an_hour() {
    let app = app().await;
    let user = app.user("often@example.com");
    for i in 0..5 {
        request_reset(&app, "Often@Example.com")
            .await
            .unwrap_or_else(|s| panic!("reset request {i}: {s:?}"));
    }
    assert_eq!(
        mailed_tokens(&app, &user.email, "password_reset")
            .await
            .len(),
        3,
        "reset mails queued within the hour"
    );
    let mailed: Vec<_> = events(&app, "auth.password_reset_request")
        .await
        .into_iter()
        .map(|(_, target, _, details)| (target, details["mailed"].clone()))
        .collect();
    let id = user.id.to_string();
    assert_eq!(
        mailed,
        [true, true, true, false, false]
            .map(|m| (id.clone(), serde_json::Value::Bool(m)))
            .to_vec(),
        "one event per request"
    );

    // An hour later the address may be mailed again.
    app.sql("UPDATE account_tokens SET created_at = created_at - interval '61 minutes'")
        .await;
    request_reset(&app, &user.email)
        .await
        .unwrap_or_else(|s| panic!("reset request an hour later: {s:?}"));
    assert_eq!(
        mailed_tokens(&app, &user.email, "password_reset")
            .await
            .len(),
        4
    );
}

#[tokio::test]
async fn the_hourly_limit_holds_under_concurrent_requests() {
    let app = app().await;
    let user = app.user("burst@example.com");
    let requests = (0..8).map(|_| request_reset(&app, &user.email));
    for result in futures::future::join_all(requests).await {
        result.unwrap_or_else(|s| panic!("a concurrent reset request: {s:?}"));
    }
    assert_eq!(
        mailed_tokens(&app, &user.email, "password_reset")
            .await
            .len(),
        3
    );
}

#[tokio::test]
async fn a_reset_sets_the_password_and_ends_every_session() {
    let app = app().await;
    let user = app.user("reset@example.com");
    let other = app.user("bystander@example.com");
    let first = app.logged_in(&user).await;
    let second = app.logged_in(&user).await;
    let bystander = app.logged_in(&other).await;

    request_reset(&app, &user.email)
        .await
        .unwrap_or_else(|s| panic!("reset request: {s:?}"));
    let token = newest_token(&app, &user.email, "password_reset").await;

    // A refused password leaves the token usable and the sessions alive.
    let status = failure(confirm_reset(&app, &token, "too short").await, "short");
    assert_code(&status, Code::InvalidArgument, "a short new password");
    assert_eq!(
        status.message(),
        "new_password: must be at least 12 characters"
    );
    assert!(revoked_sessions(&app).await.is_empty());

    confirm_reset(&app, &token, NEW_PASSWORD)
        .await
        .unwrap_or_else(|s| panic!("confirming the reset: {s:?}"));
    assert_eq!(app.identity.get(user.id).password, NEW_PASSWORD);

    let revoked = revoked_sessions(&app).await;
    for pair in [&first, &second] {
        assert!(
            revoked.contains(&sid(pair)),
            "a session of the user is not in the edge's feed"
        );
        let status = failure(
            app.refresh(&pair.refresh_token).await,
            "refresh after reset",
        );
        assert_code(&status, Code::Unauthenticated, "refresh after reset");
    }
    assert!(
        !revoked.contains(&sid(&bystander)),
        "another user's session ended"
    );
    app.refresh(&bystander.refresh_token)
        .await
        .unwrap_or_else(|s| panic!("another user's session: {s:?}"));

    assert_refused_token(
        confirm_reset(&app, &token, "yet another passphrase").await,
        "a used reset token",
    );
    let id = user.id.to_string();
    assert_eq!(
        events(&app, "auth.password_reset").await,
        vec![(
            id.clone(),
            id,
            Outcome::Success,
            serde_json::json!({ "sessions_ended": 2 })
        )]
    );
}

#[tokio::test]
async fn a_change_keeps_the_callers_session_and_ends_the_others() {
    let app = app().await;
    let user = app.user("change@example.com");
    let caller = app.logged_in(&user).await;
    let elsewhere = app.logged_in(&user).await;

    let wrong = failure(
        change_password(&app, &caller.access_token, "not my password", NEW_PASSWORD).await,
        "a wrong current password",
    );
    assert_code(&wrong, Code::Unauthenticated, "a wrong current password");
    assert_eq!(wrong.message(), "invalid password");
    let short = failure(
        change_password(&app, &caller.access_token, PASSWORD, "short").await,
        "a short new password",
    );
    assert_code(&short, Code::InvalidArgument, "a short new password");
    assert_eq!(app.identity.get(user.id).password, PASSWORD);
    assert!(revoked_sessions(&app).await.is_empty());

    change_password(&app, &caller.access_token, PASSWORD, NEW_PASSWORD)
        .await
        .unwrap_or_else(|s| panic!("changing the password: {s:?}"));
    assert_eq!(app.identity.get(user.id).password, NEW_PASSWORD);

    assert_eq!(revoked_sessions(&app).await, vec![sid(&elsewhere)]);
    let status = failure(
        app.refresh(&elsewhere.refresh_token).await,
        "the other session's refresh",
    );
    assert_code(
        &status,
        Code::Unauthenticated,
        "the other session's refresh",
    );
    app.refresh(&caller.refresh_token)
        .await
        .unwrap_or_else(|s| panic!("the caller's session ended: {s:?}"));

    let id = user.id.to_string();
    let changes = events(&app, "auth.password_change").await;
    assert_eq!(
        changes,
        vec![
            (
                id.clone(),
                id.clone(),
                Outcome::Failure,
                serde_json::json!({ "reason": "wrong_password" })
            ),
            (
                id.clone(),
                id,
                Outcome::Success,
                serde_json::json!({ "sessions_ended": 1 })
            ),
        ]
    );
}

/// The median of `samples`, sorted in place.
fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::test]
async fn a_reset_request_answers_alike_for_known_and_unknown_emails() {
    let app = app().await;
    let user: FakeUser = app.user("known@example.com");
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for i in 0..8 {
        for (email, samples) in [
            (user.email.clone(), &mut known),
            (format!("nobody-{i}@example.com"), &mut unknown),
        ] {
            let started = Instant::now();
            let answer = app
                .client
                .clone()
                .request_password_reset(RequestPasswordResetRequest {
                    email: email.clone(),
                })
                .await
                .unwrap_or_else(|s| panic!("reset request for {email}: {s:?}"))
                .into_inner();
            samples.push(started.elapsed());
            assert_eq!(
                answer,
                Default::default(),
                "{email}: the answer is not empty"
            );
        }
    }
    let (known, unknown) = (median(&mut known), median(&mut unknown));
    assert!(
        known >= RESET_ANSWER_FLOOR && unknown >= RESET_ANSWER_FLOOR,
        "an answer came before the floor: known {known:?}, unknown {unknown:?}"
    );
    let gap = known.abs_diff(unknown);
    assert!(
        gap < Duration::from_millis(20),
        "median answer times differ by {gap:?}: known {known:?}, unknown {unknown:?}"
    );
    // The known address was mailed (up to its limit), the unknown ones not at all.
    assert_eq!(
        mailed_tokens(&app, &user.email, "password_reset")
            .await
            .len(),
        3
    );
    let unknown_targets = events(&app, "auth.password_reset_request")
        .await
        .into_iter()
        .filter(|(_, target, _, _)| target.starts_with("email:"))
        .count();
    assert_eq!(unknown_targets, 8, "one event per unknown-email request");
}
