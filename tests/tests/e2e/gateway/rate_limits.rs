//! Global rate limits at the edge, counted by the real rate-limit service in Redis: the
//! login limit per client IP (10 per minute) and the bearer limit per user, with the
//! `RateLimit-*` and `Retry-After` headers, and clients that are not over their limit
//! left alone.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bulwark_e2e::{Mesh, ServiceKind, poll_until};
use reqwest::StatusCode;

use super::{
    ADMIN_EMAIL, ADMIN_PASSWORD, Reply, bearer, get_me, login, register, rpc_calls, start_mesh,
    write_limits,
};
use crate::support::assert_security_headers;

/// A client whose connections to the edge come from `ip` (a loopback address).
fn client_from(ip: Ipv4Addr) -> reqwest::Client {
    bulwark_e2e::http_client()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .local_address(IpAddr::V4(ip))
        .build()
        .expect("building a client bound to a loopback address")
}

/// A login body Auth refuses at once (401, no password hashing, as the email is not one),
/// so that a burst of attempts stays well inside one emission interval of the limit. A new
/// "email" each time: the per-IP limit is under test here, and Auth's per-account lockout
/// (five failures of one email) must not answer first.
fn invalid_login() -> String {
    serde_json::json!({
        "email": format!("not-an-email-{}", uuid::Uuid::new_v4().simple()),
        "password": "whatever-it-is",
    })
    .to_string()
}

async fn login_attempt(mesh: &Mesh, http: &reqwest::Client, what: &str) -> Reply {
    Reply::of(
        http.post(mesh.edge_url("/v1/auth/login"))
            .header("content-type", "application/json")
            .body(invalid_login()),
        what,
    )
    .await
}

/// Checks the 429 of an over-limit request: the headers of the limit `limit` and the
/// contract's JSON body; returns its `Retry-After`.
fn assert_over_limit(reply: &Reply, limit: u64, what: &str) -> u64 {
    assert_eq!(
        reply.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{what}: not refused: {reply:?}"
    );
    let retry_after = reply.number_header("retry-after", what);
    assert!(
        (1..=60).contains(&retry_after),
        "{what}: Retry-After {retry_after} is not within the 1-minute window: {reply:?}"
    );
    assert_eq!(
        reply.number_header("ratelimit-limit", what),
        limit,
        "{what}: RateLimit-Limit: {reply:?}"
    );
    assert_eq!(
        reply.number_header("ratelimit-remaining", what),
        0,
        "{what}: RateLimit-Remaining: {reply:?}"
    );
    let reset = reply.number_header("ratelimit-reset", what);
    assert!(
        (1..=60).contains(&reset),
        "{what}: RateLimit-Reset {reset} is not within the 1-minute window: {reply:?}"
    );
    reply.assert_error_body(8, what);
    assert_security_headers(&reply.headers, what);
    retry_after
}

/// Checks an allowed answer's `RateLimit-*` headers: `limit`, `remaining` left.
fn assert_allowed(reply: &Reply, limit: u64, remaining: u64, what: &str) {
    assert_ne!(
        reply.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{what}: refused within the limit: {reply:?}"
    );
    assert_eq!(
        reply.number_header("ratelimit-limit", what),
        limit,
        "{what}: RateLimit-Limit: {reply:?}"
    );
    assert_eq!(
        reply.number_header("ratelimit-remaining", what),
        remaining,
        "{what}: RateLimit-Remaining does not count down: {reply:?}"
    );
    let reset = reply.number_header("ratelimit-reset", what);
    assert!(
        (1..=60).contains(&reset),
        "{what}: RateLimit-Reset {reset} is not within the 1-minute window: {reply:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_over_10_per_minute_answers_429_per_client_ip() {
    let mesh = start_mesh(None).await;
    let first = client_from(Ipv4Addr::LOCALHOST);
    for attempt in 1..=10u64 {
        let what = format!("login attempt {attempt} from 127.0.0.1");
        let reply = login_attempt(&mesh, &first, &what).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{what}: Auth should refuse the invalid login: {reply:?}"
        );
        assert_allowed(&reply, 10, 10 - attempt, &what);
    }

    let logins_before = rpc_calls(&mesh, ServiceKind::Auth, "Login").await;
    let refused = login_attempt(&mesh, &first, "login attempt 11 from 127.0.0.1").await;
    let retry_after = assert_over_limit(&refused, 10, "login attempt 11 from 127.0.0.1");
    assert_eq!(
        rpc_calls(&mesh, ServiceKind::Auth, "Login").await,
        logins_before,
        "the refused login reached Auth"
    );

    // Another client IP has its own budget, even with valid credentials right now.
    let second = client_from(Ipv4Addr::new(127, 0, 0, 2));
    let other = Reply::of(
        second
            .post(mesh.edge_url("/v1/auth/login"))
            .header("content-type", "application/json")
            .body(
                serde_json::json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}).to_string(),
            ),
        "login from 127.0.0.2",
    )
    .await;
    assert_eq!(
        other.status,
        StatusCode::OK,
        "a login from 127.0.0.2 was affected by 127.0.0.1's limit: {other:?}"
    );
    assert_allowed(&other, 10, 9, "login from 127.0.0.2");
    // ... and did not give 127.0.0.1 anything back.
    let still = login_attempt(&mesh, &first, "login attempt 12 from 127.0.0.1").await;
    assert_over_limit(&still, 10, "login attempt 12 from 127.0.0.1");

    // Retry-After tells the truth: once it has passed, 127.0.0.1 may log in again.
    let wait = Duration::from_secs(retry_after);
    tokio::time::sleep(wait).await;
    poll_until(
        "a login from 127.0.0.1 allowed after Retry-After",
        Duration::from_secs(3),
        || async {
            let reply = login_attempt(&mesh, &first, "login after Retry-After").await;
            if reply.status == StatusCode::UNAUTHORIZED {
                Ok(())
            } else {
                Err(format!("{reply:?}"))
            }
        },
    )
    .await
    .unwrap_or_else(|err| panic!("waited Retry-After ({retry_after} s): {err:#}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_limit_counts_per_user_and_spares_other_users() {
    let limits = tempfile::tempdir().expect("a directory for the limits file");
    let mesh = start_mesh(Some(&write_limits(limits.path(), 5))).await;
    let admin = login(&mesh, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let email = "limited-user@example.com";
    let password = "a-long-enough-password";
    register(&mesh, email, password).await;
    let user = login(&mesh, email, password).await;

    for call in 1..=5u64 {
        let what = format!("admin's GetMe {call}");
        let reply = get_me(&mesh, Some(&bearer(&admin.access_token))).await;
        assert_eq!(reply.status, StatusCode::OK, "{what}: {reply:?}");
        assert_allowed(&reply, 5, 5 - call, &what);
    }
    let calls_before = rpc_calls(&mesh, ServiceKind::Identity, "GetMe").await;
    let refused = get_me(&mesh, Some(&bearer(&admin.access_token))).await;
    assert_over_limit(&refused, 5, "admin's GetMe 6");
    assert_eq!(
        rpc_calls(&mesh, ServiceKind::Identity, "GetMe").await,
        calls_before,
        "the refused GetMe reached identity"
    );

    // The same client, another user: a budget of its own.
    let other = get_me(&mesh, Some(&bearer(&user.access_token))).await;
    assert_eq!(
        other.status,
        StatusCode::OK,
        "the other user was refused because of the admin's limit: {other:?}"
    );
    assert_allowed(&other, 5, 4, "the other user's first GetMe");
    let again = get_me(&mesh, Some(&bearer(&admin.access_token))).await;
    assert_over_limit(&again, 5, "admin's GetMe 7");
}
