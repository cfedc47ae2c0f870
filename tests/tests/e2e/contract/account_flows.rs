//! Email verification, password reset and password change through the real edge, with
//! the real SMTP server: the tokens are read from the delivered messages; a used token
//! is refused; a reset ends every session of the user (their access tokens answer 401
//! at the edge within 5 seconds), a change every session but the caller's; each step
//! leaves one audit event.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::client::{ContractMesh, Edge, PASSWORD, Tokens, exactly, start_mesh};
use super::sessions::{WITHIN, refused_after};

const NEW_PASSWORD: &str = "a-completely-new-passphrase";
/// How long a mail may take from the request to the SMTP server's maildir.
const DELIVERY: Duration = Duration::from_secs(30);

/// The token of the next message to `to`.
async fn mailed_token(mesh: &ContractMesh, to: &str) -> String {
    let message = mesh
        .mail()
        .wait_for(to, DELIVERY)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    message.token().unwrap_or_else(|e| panic!("{e:#}"))
}

/// Waits until exactly one event of `action` targets `target`, with `outcome`.
async fn one_event(edge: &Edge<'_>, admin: &str, action: &str, target: &str) {
    edge.await_audit(
        admin,
        &[("action", action)],
        &format!("one {action} event for {target}"),
        |events| {
            exactly(
                events,
                &[("target", target), ("outcome", "OUTCOME_SUCCESS")],
                1,
            )
        },
    )
    .await;
}

/// Asserts `access` still works on `GET /v1/users/me`.
async fn still_works(edge: &Edge<'_>, access: &str, what: &str) {
    let reply = edge.get("/v1/users/me").bearer(access).send().await;
    assert_eq!(reply.status, StatusCode::OK, "{what}: {}", reply.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_and_reset_tokens_come_by_mail_work_once_and_a_reset_ends_every_session() {
    let mesh = start_mesh().await;
    let edge = Edge::new(&mesh);
    let admin = mesh.admin().access.clone();
    let email = "recover-me@example.com";
    let user = edge.register(email, "Recover Me").await;
    let user_id = user["id"].as_str().unwrap_or_default().to_owned();
    let phone = edge.login(email, PASSWORD).await;

    // Verification: mailed to the caller, the user comes back verified.
    let reply = edge
        .post("/v1/users/me/verification", json!({}))
        .bearer(&phone.access)
        .send()
        .await
        .ok();
    assert_eq!(reply, json!({}));
    let token = mailed_token(&mesh, email).await;
    let verified = edge
        .post("/v1/users/verify-email", json!({"token": token}))
        .send()
        .await
        .ok();
    assert_eq!(verified["id"], user_id.as_str(), "{verified}");
    assert_eq!(verified["email_verified"], true, "{verified}");
    let me = edge
        .get("/v1/users/me")
        .bearer(&phone.access)
        .send()
        .await
        .ok();
    assert_eq!(me["email_verified"], true, "GET /v1/users/me: {me}");
    let message = edge
        .post("/v1/users/verify-email", json!({"token": token}))
        .send()
        .await
        .error(StatusCode::BAD_REQUEST, 3);
    assert_eq!(message, "token: invalid, expired or already used");

    // Reset: the same answer for an unknown email; the known one gets a mail.
    let laptop = edge.login(email, PASSWORD).await;
    let mut answers: Vec<Value> = Vec::new();
    for asked in [email, "nobody-here@example.com"] {
        let reply = edge
            .post("/v1/auth/password-reset", json!({"email": asked}))
            .send()
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{asked}: {}", reply.text);
        answers.push(reply.json());
    }
    assert_eq!(answers, [json!({}), json!({})]);
    let token = mailed_token(&mesh, email).await;

    let started = Instant::now();
    let reply = edge
        .post(
            "/v1/auth/password-reset/confirm",
            json!({"token": token, "new_password": NEW_PASSWORD}),
        )
        .send()
        .await
        .ok();
    assert_eq!(reply, json!({}));
    for (what, session) in [("phone", &phone), ("laptop", &laptop)] {
        let took = refused_after(&edge, &session.access, started).await;
        eprintln!("after a reset the {what}'s access token answered 401 after {took:?}");
        assert!(took <= WITHIN, "{what}: refused only after {took:?}");
        edge.post(
            "/v1/auth/refresh",
            json!({"refresh_token": session.refresh}),
        )
        .send()
        .await
        .error(StatusCode::UNAUTHORIZED, 16);
    }
    edge.post(
        "/v1/auth/password-reset/confirm",
        json!({"token": token, "new_password": "yet-another-passphrase"}),
    )
    .send()
    .await
    .error(StatusCode::BAD_REQUEST, 3);
    edge.post(
        "/v1/auth/login",
        json!({"email": email, "password": PASSWORD}),
    )
    .send()
    .await
    .error(StatusCode::UNAUTHORIZED, 16);
    let fresh = edge.login(email, NEW_PASSWORD).await;
    still_works(&edge, &fresh.access, "a login with the new password").await;

    for action in [
        "auth.email_verification_send",
        "auth.email_verify",
        "auth.password_reset_request",
        "auth.password_reset",
    ] {
        one_event(&edge, &admin, action, &user_id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_keeps_the_callers_session_and_ends_the_others() {
    let mesh = start_mesh().await;
    let edge = Edge::new(&mesh);
    let admin = mesh.admin().access.clone();
    let email = "change-me@example.com";
    let user = edge.register(email, "Change Me").await;
    let user_id = user["id"].as_str().unwrap_or_default().to_owned();
    let caller: Tokens = edge.login(email, PASSWORD).await;
    let elsewhere = edge.login(email, PASSWORD).await;

    let message = edge
        .post(
            "/v1/users/me/password",
            json!({"current_password": "not-the-password", "new_password": NEW_PASSWORD}),
        )
        .bearer(&caller.access)
        .send()
        .await
        .error(StatusCode::UNAUTHORIZED, 16);
    assert_eq!(message, "invalid password");
    edge.post(
        "/v1/users/me/password",
        json!({"current_password": PASSWORD, "new_password": "short"}),
    )
    .bearer(&caller.access)
    .send()
    .await
    .error(StatusCode::BAD_REQUEST, 3);

    let started = Instant::now();
    let reply = edge
        .post(
            "/v1/users/me/password",
            json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
        )
        .bearer(&caller.access)
        .send()
        .await
        .ok();
    assert_eq!(reply, json!({}));
    let took = refused_after(&edge, &elsewhere.access, started).await;
    eprintln!("after a change the other session's access token answered 401 after {took:?}");
    assert!(took <= WITHIN, "refused only after {took:?}");
    // By now the edge knows of the revocation: the caller's token is not part of it.
    still_works(&edge, &caller.access, "the caller's session").await;
    edge.post("/v1/auth/refresh", json!({"refresh_token": caller.refresh}))
        .send()
        .await
        .ok();
    edge.login(email, NEW_PASSWORD).await;

    one_event(&edge, &admin, "auth.password_change", &user_id).await;
}
