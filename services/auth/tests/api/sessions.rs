//! Sessions: a login is a session named by the `sid` of its access tokens; its owner
//! lists and revokes them; every revocation (logout, by id, refresh-token reuse) is in
//! the feed the edge reads.

use bulwark_kernel::tonic::Code;
use bulwark_proto::auth::v1::{
    ListRevokedSessionsRequest, ListRevokedSessionsResponse, ListSessionsRequest, LoginRequest,
    RevokeSessionRequest, Session,
};
use uuid::Uuid;

use crate::support::{FakeUser, TestApp, assert_code, claims, failure, with_bearer};

async fn sessions(
    app: &TestApp,
    access_token: &str,
) -> Result<Vec<Session>, bulwark_kernel::tonic::Status> {
    app.client
        .clone()
        .list_sessions(with_bearer(ListSessionsRequest {}, access_token))
        .await
        .map(|r| r.into_inner().sessions)
}

async fn revoke(
    app: &TestApp,
    access_token: &str,
    id: &str,
) -> Result<(), bulwark_kernel::tonic::Status> {
    app.client
        .clone()
        .revoke_session(with_bearer(
            RevokeSessionRequest { id: id.to_owned() },
            access_token,
        ))
        .await
        .map(|_| ())
}

async fn revoked_feed(app: &TestApp, since_unix_ms: i64) -> ListRevokedSessionsResponse {
    app.client
        .clone()
        .list_revoked_sessions(ListRevokedSessionsRequest { since_unix_ms })
        .await
        .unwrap_or_else(|s| panic!("ListRevokedSessions failed: {s:?}"))
        .into_inner()
}

/// The session ids in the feed from the beginning.
async fn revoked_ids(app: &TestApp) -> Vec<Uuid> {
    revoked_feed(app, 0)
        .await
        .sessions
        .iter()
        .map(|s| Uuid::from_slice(&s.id).expect("16-byte session ids"))
        .collect()
}

fn sid(access_token: &str) -> String {
    claims(access_token)["sid"]
        .as_str()
        .unwrap_or_else(|| panic!("no sid claim in {}", claims(access_token)))
        .to_owned()
}

/// Logs `user` in with a client address and user agent, as the edge forwards them.
async fn login_from(
    app: &TestApp,
    user: &FakeUser,
    ip: &str,
    agent: &str,
) -> bulwark_proto::auth::v1::TokenPair {
    let mut request = bulwark_kernel::tonic::Request::new(LoginRequest {
        email: user.email.clone(),
        password: crate::support::PASSWORD.to_owned(),
    });
    let metadata = request.metadata_mut();
    metadata.insert(
        "x-forwarded-for",
        format!("198.51.100.1, {ip}").parse().expect("ascii"),
    );
    metadata.insert("user-agent", agent.parse().expect("ascii"));
    crate::support::pair_of(
        app.client
            .clone()
            .login(request)
            .await
            .unwrap_or_else(|s| panic!("login failed: {s:?}"))
            .into_inner(),
    )
}

#[tokio::test]
async fn a_login_is_a_session_listed_with_its_client_and_refreshes_stay_in_it() {
    let app = TestApp::start().await;
    let user = app.user("alice@example.com");
    let phone = login_from(&app, &user, "203.0.113.7", "phone/1.0").await;
    let laptop = login_from(&app, &user, "2001:db8::5", "laptop/2.0").await;
    assert_ne!(sid(&phone.access_token), sid(&laptop.access_token));
    assert_eq!(
        app.verify(&phone.access_token)
            .await
            .session_id
            .map(|s| s.to_string()),
        Some(sid(&phone.access_token)),
        "the kernel reads the sid"
    );

    // A refresh keeps the session: same sid, and it becomes the most recently used.
    let refreshed = app
        .refresh(&phone.refresh_token)
        .await
        .unwrap_or_else(|s| panic!("refresh: {s:?}"));
    assert_eq!(sid(&refreshed.access_token), sid(&phone.access_token));

    let listed = sessions(&app, &laptop.access_token)
        .await
        .unwrap_or_else(|s| panic!("ListSessions: {s:?}"));
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(
        listed[0].id,
        sid(&phone.access_token),
        "most recently used first"
    );
    assert_eq!(listed[0].ip, "203.0.113.7");
    // tonic appends its own name to the agent the test sets.
    assert!(
        listed[0].user_agent.starts_with("phone/1.0"),
        "{:?}",
        listed[0]
    );
    assert!(!listed[0].current);
    assert_eq!(listed[1].id, sid(&laptop.access_token));
    assert_eq!(listed[1].ip, "2001:db8::5");
    assert!(listed[1].current, "the caller's own session is marked");
    assert!(
        listed[0]
            .last_used_at
            .as_ref()
            .map(|t| (t.seconds, t.nanos))
            > listed[0].created_at.as_ref().map(|t| (t.seconds, t.nanos)),
        "{:?}",
        listed[0]
    );

    // Another user sees only theirs.
    let bob = app.user("bob@example.com");
    let bob_pair = app.logged_in(&bob).await;
    let bobs = sessions(&app, &bob_pair.access_token)
        .await
        .unwrap_or_else(|s| panic!("ListSessions: {s:?}"));
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0].id, sid(&bob_pair.access_token));
    app.stop().await;
}

#[tokio::test]
async fn revoking_a_session_ends_its_refresh_tokens_and_lists_it_for_the_edge() {
    let app = TestApp::start().await;
    let user = app.user("alice@example.com");
    let first = app.logged_in(&user).await;
    let second = app.logged_in(&user).await;
    assert!(revoked_ids(&app).await.is_empty());

    revoke(&app, &second.access_token, &sid(&first.access_token))
        .await
        .unwrap_or_else(|s| panic!("RevokeSession: {s:?}"));

    let status = failure(
        app.refresh(&first.refresh_token).await,
        "refresh of a revoked session",
    );
    assert_code(
        &status,
        Code::Unauthenticated,
        "refresh of a revoked session",
    );
    let listed = sessions(&app, &second.access_token)
        .await
        .unwrap_or_else(|s| panic!("ListSessions: {s:?}"));
    assert_eq!(
        listed.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
        [sid(&second.access_token)]
    );
    let feed = revoked_feed(&app, 0).await;
    assert_eq!(feed.sessions.len(), 1);
    assert_eq!(
        Uuid::from_slice(&feed.sessions[0].id)
            .map(|id| id.to_string())
            .ok(),
        Some(sid(&first.access_token))
    );
    // Its tokens expire at the latest an access-token lifetime after the revocation.
    let now = chrono::Utc::now().timestamp();
    let expires_at = feed.sessions[0].expires_at;
    assert!(
        (now + 890..=now + 905).contains(&expires_at),
        "{expires_at} vs now {now}"
    );
    assert!(!feed.more);

    // The revoked session's own access token no longer lists or revokes sessions here.
    let status = failure(
        sessions(&app, &first.access_token).await,
        "list with a revoked session",
    );
    assert_code(
        &status,
        Code::Unauthenticated,
        "list with a revoked session",
    );
    let status = failure(
        revoke(&app, &first.access_token, &sid(&second.access_token)).await,
        "revoke with a revoked session",
    );
    assert_code(
        &status,
        Code::Unauthenticated,
        "revoke with a revoked session",
    );

    // One audit event, naming the session.
    let events: Vec<_> = app
        .outbox()
        .await
        .into_iter()
        .filter(|e| e.action == "auth.session_revoke")
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].target, sid(&first.access_token));
    assert_eq!(events[0].actor_id, user.id.to_string());
    app.stop().await;
}

#[tokio::test]
async fn another_users_unknown_or_ended_session_is_not_found_alike() {
    let app = TestApp::start().await;
    let alice = app.user("alice@example.com");
    let bob = app.user("bob@example.com");
    let alices = app.logged_in(&alice).await;
    let bobs = app.logged_in(&bob).await;

    for (what, id) in [
        ("another user's session", sid(&bobs.access_token)),
        ("an unknown session", Uuid::new_v4().to_string()),
    ] {
        let status = failure(revoke(&app, &alices.access_token, &id).await, what);
        assert_code(&status, Code::NotFound, what);
    }
    assert!(
        app.refresh(&bobs.refresh_token).await.is_ok(),
        "Bob's session survived"
    );

    let own = sid(&alices.access_token);
    let other = app.logged_in(&alice).await;
    revoke(&app, &other.access_token, &own)
        .await
        .unwrap_or_else(|s| panic!("first revocation: {s:?}"));
    let status = failure(
        revoke(&app, &other.access_token, &own).await,
        "revoked twice",
    );
    assert_code(&status, Code::NotFound, "revoked twice");

    let status = failure(
        revoke(&app, &other.access_token, "not-a-uuid").await,
        "malformed id",
    );
    assert_code(&status, Code::InvalidArgument, "malformed id");
    let status = failure(revoke(&app, "not-a-token", &own).await, "no token");
    assert_code(&status, Code::Unauthenticated, "no token");
    app.stop().await;
}

#[tokio::test]
async fn logout_and_refresh_reuse_put_the_session_in_the_feed() {
    let app = TestApp::start().await;
    let user = app.user("alice@example.com");
    let logged_out = app.logged_in(&user).await;
    app.logout(&logged_out.access_token, &logged_out.refresh_token)
        .await
        .unwrap_or_else(|s| panic!("logout: {s:?}"));

    let stolen = app.logged_in(&user).await;
    app.refresh(&stolen.refresh_token)
        .await
        .unwrap_or_else(|s| panic!("first refresh: {s:?}"));
    let _ = app.refresh(&stolen.refresh_token).await;

    let live = app.logged_in(&user).await;
    let revoked: Vec<String> = revoked_ids(&app)
        .await
        .iter()
        .map(Uuid::to_string)
        .collect();
    assert_eq!(
        revoked,
        [sid(&logged_out.access_token), sid(&stolen.access_token)],
        "oldest revocation first"
    );
    assert!(!revoked.contains(&sid(&live.access_token)));
    app.stop().await;
}

#[tokio::test]
async fn the_feed_pages_and_then_looks_back_only_a_few_seconds() {
    let app = TestApp::start().await;
    let user = app.user("alice@example.com");
    // 1,005 revoked sessions, inserted directly (a thousand logins would take minutes).
    app.sql(&format!(
        "INSERT INTO sessions (id, user_id, expires_at, revoked_at, revoked_reason) \
         SELECT gen_random_uuid(), '{}', now() + interval '1 day', \
                clock_timestamp() - interval '60 seconds' + n * interval '1 millisecond', 'test' \
         FROM generate_series(1, 1005) AS n",
        user.id
    ))
    .await;
    let first = revoked_feed(&app, 0).await;
    assert_eq!(first.sessions.len(), 1000);
    assert!(first.more);
    let second = revoked_feed(&app, first.next_since_unix_ms).await;
    assert!(!second.more);
    let mut all: Vec<Vec<u8>> = first
        .sessions
        .iter()
        .chain(&second.sessions)
        .map(|s| s.id.clone())
        .collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 1005, "both pages together hold every revocation");
    // All of them are older than the look-back: the next call starts a few seconds
    // ago and finds nothing.
    let now_ms = chrono::Utc::now().timestamp_millis();
    assert!(
        (now_ms - 11_000..=now_ms).contains(&second.next_since_unix_ms),
        "{} vs now {now_ms}",
        second.next_since_unix_ms
    );
    assert!(
        revoked_feed(&app, second.next_since_unix_ms)
            .await
            .sessions
            .is_empty()
    );

    // Revocations older than an access-token lifetime are no longer listed.
    app.sql("UPDATE sessions SET revoked_at = now() - interval '16 minutes'")
        .await;
    assert!(revoked_feed(&app, 0).await.sessions.is_empty());
    app.stop().await;
}
