//! Sessions through the real edge: listed and revoked by their owner, and every revoked
//! session's unexpired access token answering 401 at the edge within 5 seconds (after
//! logout, `DELETE /v1/auth/sessions/{id}` and a refresh-token reuse).

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::client::{Edge, PASSWORD, Tokens, exactly, start_mesh};

/// What the contract allows between a revocation and its 401 at the edge.
pub(super) const WITHIN: Duration = Duration::from_secs(5);

fn sid(access: &str) -> String {
    let payload = access.split('.').nth(1).unwrap_or_default();
    let claims: Value = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_else(|| panic!("not a JWT: {access}"));
    claims["sid"]
        .as_str()
        .unwrap_or_else(|| panic!("no sid claim in {claims}"))
        .to_owned()
}

/// Waits until `access` answers 401 on `GET /v1/users/me`; returns how long that took
/// from `since`. Fails past twice the contract's bound (the assertion on the bound is
/// the caller's, with the figure).
pub(super) async fn refused_after(edge: &Edge<'_>, access: &str, since: Instant) -> Duration {
    loop {
        let reply = edge.get("/v1/users/me").bearer(access).send().await;
        match reply.status {
            StatusCode::UNAUTHORIZED => {
                let challenge = reply
                    .headers
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                assert!(
                    challenge.contains("invalid_token"),
                    "401 without the RFC 6750 challenge: {challenge:?} {}",
                    reply.text
                );
                return since.elapsed();
            }
            StatusCode::OK => {}
            other => panic!("GET /v1/users/me answered {other}: {}", reply.text),
        }
        assert!(
            since.elapsed() < 2 * WITHIN,
            "the revoked session's token still works after {:?}",
            since.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn fresh_user(edge: &Edge<'_>, email: &str) -> Tokens {
    edge.register(email, "Session Tester").await;
    edge.login(email, PASSWORD).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_listed_and_one_revoked_by_id_is_refused_at_the_edge_within_5_seconds() {
    let mesh = start_mesh().await;
    let edge = Edge::new(&mesh);
    let phone = fresh_user(&edge, "sessions-phone@example.com").await;
    let laptop = edge.login("sessions-phone@example.com", PASSWORD).await;

    let listed = edge
        .get("/v1/auth/sessions")
        .bearer(&laptop.access)
        .send()
        .await
        .ok();
    let sessions = listed["sessions"].as_array().cloned().unwrap_or_default();
    assert_eq!(sessions.len(), 2, "{listed}");
    assert_eq!(
        sessions[0]["id"],
        sid(&laptop.access),
        "most recent first: {listed}"
    );
    assert_eq!(sessions[0]["current"], true, "{listed}");
    assert_eq!(sessions[1]["id"], sid(&phone.access), "{listed}");
    assert_eq!(sessions[1]["current"], false, "{listed}");
    for session in &sessions {
        // The address Envoy appended to x-forwarded-for, whichever this machine gives.
        let ip = session["ip"].as_str().unwrap_or_default();
        assert!(
            ip.parse::<std::net::IpAddr>().is_ok(),
            "not an address: {listed}"
        );
        assert_eq!(session["ip"], sessions[0]["ip"], "{listed}");
        assert!(session["user_agent"].is_string(), "{listed}");
        assert!(session["created_at"].is_string() && session["last_used_at"].is_string());
    }

    // Someone else's session is not found, and stays alive.
    let other = fresh_user(&edge, "sessions-other@example.com").await;
    let reply = edge
        .delete(&format!("/v1/auth/sessions/{}", sid(&other.access)))
        .bearer(&laptop.access)
        .send()
        .await;
    reply.error(StatusCode::NOT_FOUND, 5);

    let revoked_at = Instant::now();
    let reply = edge
        .delete(&format!("/v1/auth/sessions/{}", sid(&phone.access)))
        .bearer(&laptop.access)
        .send()
        .await
        .ok();
    assert_eq!(reply, json!({}));
    let took = refused_after(&edge, &phone.access, revoked_at).await;
    eprintln!("a session revoked by id answered 401 at the edge after {took:?}");
    assert!(took <= WITHIN, "refused only after {took:?}");

    // The caller's own and the other user's sessions still work.
    for (what, access) in [("laptop", &laptop.access), ("other user", &other.access)] {
        let reply = edge.get("/v1/users/me").bearer(access).send().await;
        assert_eq!(reply.status, StatusCode::OK, "{what}: {}", reply.text);
    }
    let refresh = edge
        .post("/v1/auth/refresh", json!({"refresh_token": phone.refresh}))
        .send()
        .await;
    refresh.error(StatusCode::UNAUTHORIZED, 16);

    let admin = mesh.admin().access.clone();
    let events = edge
        .await_audit(
            &admin,
            &[("action", "auth.session_revoke")],
            "the session revocation's audit event",
            |events| exactly(events, &[("target", &sid(&phone.access))], 1),
        )
        .await;
    assert_eq!(events.len(), 1, "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_and_refresh_reuse_revoke_the_access_tokens_at_the_edge_within_5_seconds() {
    let mesh = start_mesh().await;
    let edge = Edge::new(&mesh);
    let logged_out = fresh_user(&edge, "sessions-logout@example.com").await;
    let started = Instant::now();
    edge.post(
        "/v1/auth/logout",
        json!({"refresh_token": logged_out.refresh}),
    )
    .bearer(&logged_out.access)
    .send()
    .await
    .ok();
    let took = refused_after(&edge, &logged_out.access, started).await;
    eprintln!("a logged-out access token answered 401 at the edge after {took:?}");
    assert!(took <= WITHIN, "refused only after {took:?}");

    // A stolen refresh token used twice: the whole session goes, its newest access
    // token included.
    let first = fresh_user(&edge, "sessions-reuse@example.com").await;
    let second = Tokens::from_body(
        edge.post("/v1/auth/refresh", json!({"refresh_token": first.refresh}))
            .send()
            .await
            .ok(),
        "refresh",
    );
    let reply = edge.get("/v1/users/me").bearer(&second.access).send().await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let started = Instant::now();
    edge.post("/v1/auth/refresh", json!({"refresh_token": first.refresh}))
        .send()
        .await
        .error(StatusCode::UNAUTHORIZED, 16);
    let took = refused_after(&edge, &second.access, started).await;
    eprintln!("an access token of a reused session answered 401 at the edge after {took:?}");
    assert!(took <= WITHIN, "refused only after {took:?}");
}
