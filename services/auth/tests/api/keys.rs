//! Signing keys: created once, kept across restarts, rotated with the old key still
//! published until its tokens have expired. What happens between a rotation and the
//! new key's activation is in `activation`.

use bulwark_kernel::tonic::Code;
use diesel::prelude::*;
use diesel::sql_types::{Double, Text};
use diesel_async::RunQueryDsl;

use crate::support::{TestApp, activation_in, assert_code, failure, kid};

#[tokio::test]
async fn first_start_publishes_one_ed25519_key() {
    let app = TestApp::start().await;

    let jwks = app.jwks().await;

    assert_eq!(jwks.keys.len(), 1, "one key after first start: {jwks:?}");
    let key = &jwks.keys[0];
    assert_eq!(key.kty, "OKP");
    assert_eq!(key.alg, "EdDSA");
    assert_eq!(key.r#use, "sig");
    assert_eq!(key.crv.as_deref(), Some("Ed25519"));
    assert_eq!(
        key.x.as_ref().map(String::len),
        Some(43),
        "x is 32 bytes base64url"
    );
    assert!(!key.kid.is_empty());
    assert!(key.y.is_none() && key.n.is_none() && key.e.is_none());
    app.stop().await;
}

#[tokio::test]
async fn signing_key_survives_a_restart() {
    let app = TestApp::start().await;
    let database = app.database.clone();
    let before = app.jwks().await;
    app.stop().await;

    let app = TestApp::start_on(database, &[]).await;
    let after = app.jwks().await;

    assert_eq!(before, after, "a restart changed the published keys");
    app.stop().await;
}

#[tokio::test]
async fn rotation_keeps_the_old_key_published_and_its_tokens_valid() {
    let app = TestApp::start().await;
    let user = app.user("alice@example.com");
    let old_pair = app.logged_in(&user).await;
    let old_kid = kid(&old_pair.access_token);
    let admin = app.admin_token().await;

    let rotation = app
        .rotate_now(&admin)
        .await
        .unwrap_or_else(|s| panic!("immediate rotation by an admin failed: {s:?}"));

    assert_eq!(rotation.previous_kid, old_kid);
    assert_ne!(rotation.kid, old_kid);
    let activates_at = activation_in(&rotation);
    assert!(
        activates_at.abs() < 2.0,
        "an immediate rotation activates now, not in {activates_at}s"
    );
    let jwks = app.jwks().await;
    let kids: Vec<&str> = jwks.keys.iter().map(|k| k.kid.as_str()).collect();
    assert_eq!(
        kids,
        vec![rotation.kid.as_str(), old_kid.as_str()],
        "current key first, then the retired one"
    );

    // A token signed before the rotation still verifies, here and elsewhere.
    assert_eq!(
        app.verify(&old_pair.access_token).await.user_id(),
        Some(user.id)
    );
    let new_pair = app.logged_in(&user).await;
    assert_eq!(
        kid(&new_pair.access_token),
        rotation.kid,
        "new tokens use the new key"
    );
    assert_eq!(
        app.verify(&new_pair.access_token).await.user_id(),
        Some(user.id)
    );
    // Auth's own verifier (bearer RPCs) accepts both as well.
    app.logout(&old_pair.access_token, "unknown")
        .await
        .unwrap_or_else(|s| panic!("old-key token refused by Auth: {s:?}"));
    app.logout(&new_pair.access_token, "unknown")
        .await
        .unwrap_or_else(|s| panic!("new-key token refused by Auth: {s:?}"));

    // Published for the access token lifetime + leeway + the key cache time.
    #[derive(QueryableByName)]
    struct Published {
        #[diesel(sql_type = Double)]
        seconds: f64,
    }
    let mut conn = app.db().await;
    let published: Published = diesel::sql_query(
        "SELECT EXTRACT(EPOCH FROM publish_until - retired_at)::float8 AS seconds \
         FROM signing_keys WHERE retired_at IS NOT NULL",
    )
    .get_result(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("query: {e}"));
    // The default access lifetime, clock leeway and signing-key cache.
    let expected = 900
        + app.kernel.config().tokens.leeway_seconds
        + bulwark_auth::DEFAULT_SIGNING_KEY_CACHE_SECONDS;
    assert!(
        (published.seconds - expected as f64).abs() < 1.0,
        "retired key published for {}s, expected {expected}s",
        published.seconds
    );

    #[derive(QueryableByName)]
    struct PrivateKey {
        #[diesel(sql_type = Text)]
        kid: String,
        #[diesel(sql_type = diesel::sql_types::Integer)]
        bytes: i32,
    }
    let keys: Vec<PrivateKey> =
        diesel::sql_query("SELECT kid, octet_length(private_key) AS bytes FROM signing_keys")
            .load(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("query: {e}"));
    for key in keys {
        if key.kid == old_kid {
            assert_eq!(key.bytes, 0, "the retired key's private half was kept");
        } else {
            assert!(key.bytes > 0, "the active key has no private half");
        }
    }
    drop(conn);
    app.stop().await;
}

#[tokio::test]
async fn retired_key_past_publish_until_disappears_from_the_jwks() {
    let app = TestApp::start().await;
    let old_kid = app.jwks().await.keys[0].kid.clone();
    let admin = app.admin_token().await;
    let rotation = app
        .rotate_now(&admin)
        .await
        .unwrap_or_else(|s| panic!("rotation: {s:?}"));
    assert_eq!(app.jwks().await.keys.len(), 2);

    // Time passes: the retired key's last token has expired.
    app.sql("UPDATE signing_keys SET publish_until = now() - interval '1 second' WHERE retired_at IS NOT NULL")
        .await;

    let kids: Vec<String> = app.jwks().await.keys.into_iter().map(|k| k.kid).collect();
    assert_eq!(
        kids,
        vec![rotation.kid.clone()],
        "expired key {old_kid} still published"
    );

    // The next rotation forgets it entirely.
    let next = app
        .rotate_now(&admin)
        .await
        .unwrap_or_else(|s| panic!("second rotation: {s:?}"));
    assert_eq!(next.previous_kid, rotation.kid);
    let remaining = app
        .sql(&format!(
            "SELECT 1 FROM signing_keys WHERE kid = '{old_kid}'"
        ))
        .await;
    assert_eq!(remaining, 0, "unpublished key kept in the table");
    app.stop().await;
}

#[tokio::test]
async fn rotation_requires_the_keys_write_permission() {
    let app = TestApp::start().await;
    let user = app.user("alice@example.com");
    let token = app.logged_in(&user).await.access_token;

    let denied = failure(app.rotate(&token).await, "rotation by a plain user");
    assert_code(&denied, Code::PermissionDenied, "plain user");
    assert_eq!(denied.message(), "permission keys:write required");
    assert_eq!(
        app.jwks().await.keys.len(),
        1,
        "a refused rotation changed the keys"
    );

    app.authz.grant_permission(user.id, "keys:write");
    assert!(
        app.rotate(&token).await.is_ok(),
        "holder of keys:write refused"
    );

    let anonymous = failure(
        app.rotate("not-a-token").await,
        "rotation without a valid token",
    );
    assert_code(&anonymous, Code::Unauthenticated, "no valid bearer");

    app.authz.set_down(true);
    let unavailable = failure(app.rotate(&token).await, "rotation while Authz is down");
    assert_code(&unavailable, Code::Unavailable, "Authz down");

    let events = app.outbox().await;
    let rotations: Vec<_> = events
        .iter()
        .filter(|e| e.action == "auth.key_rotate")
        .collect();
    assert_eq!(
        rotations.len(),
        2,
        "one denied and one successful rotation event"
    );
    assert_eq!(
        rotations[0].outcome,
        bulwark_proto::audit::v1::Outcome::Denied as i32
    );
    assert_eq!(
        rotations[1].outcome,
        bulwark_proto::audit::v1::Outcome::Success as i32
    );
    app.stop().await;
}
