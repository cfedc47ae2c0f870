//! Refresh: rotation within a family, reuse detection, and what is stored.

use bulwark_kernel::tonic::Code;
use diesel::prelude::*;
use diesel::sql_types::{Bytea, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use sha2::{Digest, Sha256};

use crate::support::{TestApp, assert_code, failure};

#[tokio::test]
async fn refresh_returns_a_new_pair_and_the_old_token_stops_working() {
    let app = TestApp::start().await;
    let user = app.user("alice@example.com");
    let first = app.logged_in(&user).await;

    let second = app
        .refresh(&first.refresh_token)
        .await
        .unwrap_or_else(|s| panic!("refresh of a fresh token failed: {s:?}"));

    assert_ne!(
        second.refresh_token, first.refresh_token,
        "refresh token not rotated"
    );
    assert_ne!(
        second.access_token, first.access_token,
        "access token not renewed"
    );
    assert_eq!(second.token_type, "Bearer");
    assert_eq!(second.expires_in, 900);
    assert_eq!(
        app.verify(&second.access_token).await.user_id(),
        Some(user.id)
    );

    let reused = failure(
        app.refresh(&first.refresh_token).await,
        "second use of a refresh token",
    );
    assert_code(&reused, Code::Unauthenticated, "reuse");
    app.stop().await;
}

#[tokio::test]
async fn refresh_chain_keeps_the_family_and_links_parents() {
    let app = TestApp::start().await;
    let user = app.user("alice@example.com");
    let a = app.logged_in(&user).await;
    let b = app
        .refresh(&a.refresh_token)
        .await
        .unwrap_or_else(|s| panic!("A→B: {s:?}"));
    let c = app
        .refresh(&b.refresh_token)
        .await
        .unwrap_or_else(|s| panic!("B→C: {s:?}"));
    assert!(app.verify(&c.access_token).await.user_id() == Some(user.id));

    #[derive(QueryableByName)]
    struct Link {
        #[diesel(sql_type = Text)]
        hash: String,
        #[diesel(sql_type = Nullable<Text>)]
        parent_hash: Option<String>,
        #[diesel(sql_type = Text)]
        family: String,
    }
    let mut conn = app.db().await;
    let links: Vec<Link> = diesel::sql_query(
        "SELECT encode(t.token_hash, 'hex') AS hash, encode(p.token_hash, 'hex') AS parent_hash, \
         t.family_id::text AS family \
         FROM refresh_tokens t LEFT JOIN refresh_tokens p ON p.id = t.parent_id ORDER BY t.created_at",
    )
    .load(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("query: {e}"));
    let hex = |token: &str| {
        Sha256::digest(token.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    assert_eq!(links.len(), 3);
    assert!(
        links.iter().all(|l| l.family == links[0].family),
        "one login, one family"
    );
    assert_eq!(links[0].hash, hex(&a.refresh_token));
    assert_eq!(links[0].parent_hash, None);
    assert_eq!(
        links[1].parent_hash.as_deref(),
        Some(hex(&a.refresh_token).as_str())
    );
    assert_eq!(
        links[2].parent_hash.as_deref(),
        Some(hex(&b.refresh_token).as_str())
    );
    drop(conn);
    app.stop().await;
}

#[tokio::test]
async fn refresh_token_reuse_revokes_family() {
    let app = TestApp::start().await;
    let user = app.user("alice@example.com");
    let a = app.logged_in(&user).await;
    let b = app
        .refresh(&a.refresh_token)
        .await
        .unwrap_or_else(|s| panic!("A→B: {s:?}"));

    let reuse = failure(app.refresh(&a.refresh_token).await, "reuse of A");
    assert_code(&reuse, Code::Unauthenticated, "reuse of A");

    let after = failure(app.refresh(&b.refresh_token).await, "B after A was reused");
    assert_code(&after, Code::Unauthenticated, "B after reuse of A");
    assert_eq!(
        reuse.message(),
        after.message(),
        "refusals should look alike"
    );

    let reuse_events: Vec<_> = app
        .outbox()
        .await
        .into_iter()
        .filter(|e| e.action == "auth.refresh_reuse")
        .collect();
    assert_eq!(reuse_events.len(), 1, "one auth.refresh_reuse event");
    assert_eq!(reuse_events[0].actor_id, user.id.to_string());

    // Another login of the same user is another family, untouched.
    let other = app.logged_in(&user).await;
    assert!(
        app.refresh(&other.refresh_token).await.is_ok(),
        "unrelated family revoked"
    );
    app.stop().await;
}

#[tokio::test]
async fn concurrent_refresh_of_one_token_succeeds_once() {
    let app = TestApp::start().await;
    let user = app.user("alice@example.com");
    for round in 0..5 {
        let pair = app.logged_in(&user).await;
        let (left, right) = tokio::join!(
            app.refresh(&pair.refresh_token),
            app.refresh(&pair.refresh_token)
        );
        let successes = [&left, &right].iter().filter(|r| r.is_ok()).count();
        assert_eq!(
            successes, 1,
            "round {round}: {successes} of 2 concurrent refreshes succeeded ({left:?} / {right:?})"
        );
        let mut winner = None;
        for result in [left, right] {
            match result {
                Ok(pair) => winner = Some(pair),
                Err(status) => assert_code(&status, Code::Unauthenticated, "losing refresh"),
            }
        }
        // The second presentation was a reuse: the family, the winner's new token
        // included, is revoked.
        let winner = winner.unwrap_or_else(|| panic!("round {round}: no winner"));
        let after = failure(
            app.refresh(&winner.refresh_token).await,
            "winner's token after reuse",
        );
        assert_code(&after, Code::Unauthenticated, "winner's token after reuse");
    }
    app.stop().await;
}

#[tokio::test]
async fn unknown_and_malformed_refresh_tokens_are_refused() {
    let app = TestApp::start().await;
    let unknown = failure(app.refresh("bm90LWEtcmVhbC10b2tlbg").await, "unknown token");
    assert_code(&unknown, Code::Unauthenticated, "unknown token");

    let empty = failure(app.refresh("").await, "empty token");
    assert_code(&empty, Code::InvalidArgument, "empty token");
    assert_eq!(empty.message(), "refresh_token: is required");

    let huge = failure(app.refresh(&"x".repeat(513)).await, "oversized token");
    assert_code(&huge, Code::InvalidArgument, "oversized token");
    assert_eq!(huge.message(), "refresh_token: must be at most 512 bytes");
    app.stop().await;
}

#[tokio::test]
async fn expired_refresh_token_is_refused() {
    let app = TestApp::start().await;
    let user = app.user("alice@example.com");
    let pair = app.logged_in(&user).await;
    app.sql("UPDATE refresh_tokens SET expires_at = now() - interval '1 second'")
        .await;

    let status = failure(app.refresh(&pair.refresh_token).await, "expired token");
    assert_code(&status, Code::Unauthenticated, "expired token");
    app.stop().await;
}

#[tokio::test]
async fn refresh_tokens_expire_after_the_configured_lifetime() {
    let app = TestApp::start_with(&[("auth.refresh_token_ttl_seconds", 3600.into())]).await;
    let user = app.user("alice@example.com");
    app.logged_in(&user).await;

    #[derive(QueryableByName)]
    struct Lifetime {
        #[diesel(sql_type = diesel::sql_types::Double)]
        seconds: f64,
    }
    let mut conn = app.db().await;
    let lifetime: Lifetime = diesel::sql_query(
        "SELECT EXTRACT(EPOCH FROM expires_at - created_at)::float8 AS seconds FROM refresh_tokens",
    )
    .get_result(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("query: {e}"));
    assert!(
        (lifetime.seconds - 3600.0).abs() < 1.0,
        "lifetime {}",
        lifetime.seconds
    );
    drop(conn);
    app.stop().await;
}

#[tokio::test]
async fn refresh_of_a_deactivated_user_is_refused_and_revokes_the_family() {
    let app = TestApp::start().await;
    let user = app.user("alice@example.com");
    let pair = app.logged_in(&user).await;
    app.identity.deactivate(user.id);

    let status = failure(
        app.refresh(&pair.refresh_token).await,
        "refresh of a deactivated user",
    );
    assert_code(&status, Code::Unauthenticated, "deactivated user");

    let revoked = app
        .sql("SELECT 1 FROM refresh_tokens WHERE revoked_at IS NOT NULL")
        .await;
    assert_eq!(revoked, 1, "the family was not revoked");
    app.stop().await;
}

#[tokio::test]
async fn refresh_tokens_are_stored_only_as_hashes() {
    let app = TestApp::start().await;
    let user = app.user("alice@example.com");
    let a = app.logged_in(&user).await;
    let b = app
        .refresh(&a.refresh_token)
        .await
        .unwrap_or_else(|s| panic!("A→B: {s:?}"));

    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = SqlUuid)]
        id: uuid::Uuid,
        #[diesel(sql_type = Bytea)]
        token_hash: Vec<u8>,
        #[diesel(sql_type = Text)]
        whole_row: String,
        #[diesel(sql_type = Nullable<Timestamptz>)]
        used_at: Option<chrono::DateTime<chrono::Utc>>,
    }
    let mut conn = app.db().await;
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT id, token_hash, refresh_tokens::text AS whole_row, used_at \
         FROM refresh_tokens ORDER BY created_at",
    )
    .load(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("query: {e}"));
    assert_eq!(rows.len(), 2);
    for (row, token) in rows.iter().zip([&a.refresh_token, &b.refresh_token]) {
        assert_eq!(
            row.token_hash,
            Sha256::digest(token.as_bytes()).to_vec(),
            "row {} does not hold the SHA-256 of its token",
            row.id
        );
        for plaintext in [&a.refresh_token, &b.refresh_token] {
            assert!(
                !row.whole_row.contains(plaintext.as_str()),
                "row {} contains a plaintext refresh token",
                row.id
            );
        }
    }
    assert!(rows[0].used_at.is_some(), "A not marked used");
    assert!(rows[1].used_at.is_none(), "B marked used");
    drop(conn);
    app.stop().await;
}
