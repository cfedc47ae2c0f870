//! Publish before use: a rotated-in key is in the JWKS at once and signs only from its
//! activation, so the edges have fetched it before they meet its tokens. `immediate`
//! (for a compromised key) activates at once; `keys` covers that case on its own.

use std::time::{Duration, Instant};

use bulwark_kernel::tonic::Code;
use bulwark_proto::auth::v1::TokenPair;

use crate::support::{FakeUser, TestApp, activation_in, assert_code, claims, failure, kid};

/// Short enough for a test, long enough that a login right after the rotation is
/// surely done before the new key activates.
const DELAY_SECONDS: u64 = 3;

/// How long after its activation the new key may take to sign on a loaded machine;
/// well under the signing-key cache this test sets, so a cache that ignores the
/// activation fails.
const SWITCH_MARGIN: Duration = Duration::from_secs(10);
const KEY_CACHE_SECONDS: u64 = 60;

/// Logs `user` in until the access token carries `expected`, failing after `deadline`.
async fn login_until_signed_by(
    app: &TestApp,
    user: &FakeUser,
    expected: &str,
    deadline: Duration,
) -> TokenPair {
    let started = Instant::now();
    loop {
        let pair = app.logged_in(user).await;
        let signer = kid(&pair.access_token);
        if signer == expected {
            return pair;
        }
        assert!(
            started.elapsed() < deadline,
            "tokens still signed by {signer}, not by {expected}, after {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn pending_key_is_published_at_once_and_signs_from_its_activation() {
    let sections = [
        ("auth.key_activation_delay_seconds", DELAY_SECONDS.into()),
        ("auth.signing_key_cache_seconds", KEY_CACHE_SECONDS.into()),
    ];
    let app = TestApp::start_with(&sections).await;
    let user = app.user("alice@example.com");
    let before = app.logged_in(&user).await;
    let old_kid = kid(&before.access_token);
    let admin = app.admin_token().await;

    let rotation = app
        .rotate(&admin)
        .await
        .unwrap_or_else(|s| panic!("delayed rotation by an admin failed: {s:?}"));

    assert_eq!(rotation.previous_kid, old_kid);
    let wait = activation_in(&rotation);
    assert!(
        wait > 1.0 && wait <= DELAY_SECONDS as f64 + 0.5,
        "the new key activates in {wait}s, expected about {DELAY_SECONDS}s"
    );
    assert_eq!(
        app.published_kids().await,
        vec![old_kid.clone(), rotation.kid.clone()],
        "the active key first, then the pending one, published at once"
    );
    let pending = app.logged_in(&user).await;
    assert_eq!(
        kid(&pending.access_token),
        old_kid,
        "a token was signed with the pending key before its activation"
    );
    // An instance that loads the keys during the wait switches at the activation too.
    let other = TestApp::start_on(app.database.clone(), &sections).await;
    let other_user = other.user("bob@example.com");

    let deadline = Duration::from_secs(DELAY_SECONDS) + SWITCH_MARGIN;
    let after = login_until_signed_by(&app, &user, &rotation.kid, deadline).await;
    login_until_signed_by(&other, &other_user, &rotation.kid, deadline).await;

    let activated_at = rotation.activates_at.map_or(i64::MAX, |at| at.seconds);
    let issued_at = claims(&after.access_token)["iat"].as_i64().unwrap_or(0);
    assert!(
        issued_at >= activated_at,
        "the new key signed at {issued_at}, before its activation at {activated_at}"
    );
    assert_eq!(
        app.published_kids().await,
        vec![rotation.kid.clone(), old_kid.clone()],
        "after the activation: the new key first, then the retired one"
    );
    let retired = app
        .sql(&format!(
            "SELECT 1 FROM signing_keys old, signing_keys new \
             WHERE old.kid = '{old_kid}' AND new.kid = '{}' \
             AND old.retired_at = new.activates_at AND octet_length(old.private_key) = 0",
            rotation.kid
        ))
        .await;
    assert_eq!(
        retired, 1,
        "the old key must retire at the new key's activation with its private half erased"
    );
    assert_eq!(
        app.verify(&before.access_token).await.user_id(),
        Some(user.id)
    );
    assert_eq!(
        app.verify(&pending.access_token).await.user_id(),
        Some(user.id)
    );

    let event = app
        .outbox()
        .await
        .into_iter()
        .find(|e| e.action == "auth.key_rotate")
        .unwrap_or_else(|| panic!("no key rotation event in the outbox"));
    let details: serde_json::Value = serde_json::from_str(&event.details).unwrap_or_default();
    assert!(
        details["activates_at"].is_string() && details["previous_kid"] == old_kid.as_str(),
        "the rotation event does not record the activation: {}",
        event.details
    );
    other.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn rotation_while_a_key_is_pending_is_refused_and_immediate_activates_that_key() {
    let app = TestApp::start().await;
    let user = app.user("alice@example.com");
    let old_kid = kid(&app.logged_in(&user).await.access_token);
    let admin = app.admin_token().await;
    let first = app
        .rotate(&admin)
        .await
        .unwrap_or_else(|s| panic!("first rotation: {s:?}"));

    let refused = failure(
        app.rotate(&admin).await,
        "a rotation while a key is pending",
    );

    assert_code(&refused, Code::FailedPrecondition, "second rotation");
    assert!(
        refused.message().contains(&first.kid) && refused.message().contains("pending until"),
        "the refusal should name the pending key and its activation: {}",
        refused.message()
    );
    assert_eq!(
        app.published_kids().await,
        vec![old_kid.clone(), first.kid.clone()],
        "a refused rotation changed the keys"
    );

    let forced = app
        .rotate_now(&admin)
        .await
        .unwrap_or_else(|s| panic!("immediate rotation while a key is pending: {s:?}"));

    assert_eq!(
        (forced.kid.as_str(), forced.previous_kid.as_str()),
        (first.kid.as_str(), old_kid.as_str()),
        "immediate must activate the pending key and retire the active one"
    );
    let wait = activation_in(&forced);
    assert!(wait.abs() < 2.0, "activates in {wait}s, expected now");
    assert_eq!(
        app.published_kids().await,
        vec![first.kid.clone(), old_kid.clone()],
        "no other key may be added"
    );
    assert_eq!(
        kid(&app.logged_in(&user).await.access_token),
        first.kid,
        "tokens after the immediate rotation use the activated key"
    );
    let erased = app
        .sql(&format!(
            "SELECT 1 FROM signing_keys WHERE kid = '{old_kid}' AND octet_length(private_key) = 0"
        ))
        .await;
    assert_eq!(erased, 1, "the retired key's private half was kept");
    app.stop().await;
}

#[tokio::test]
async fn activation_delay_out_of_range_is_refused_at_start() {
    // Above a day, Auth's own check names the key and the rule; a negative number is
    // not a u64, and the kernel's section reader names the full key.
    let cases = [
        (
            serde_json::json!(86_401),
            "`auth.key_activation_delay_seconds` is invalid: must be between 0 and 86400",
        ),
        (
            serde_json::json!(-1),
            "`auth.key_activation_delay_seconds` is invalid",
        ),
    ];
    for (value, expected) in cases {
        let started =
            TestApp::try_start_with(&[("auth.key_activation_delay_seconds", value.clone())]).await;
        let error = match started {
            Ok(app) => {
                app.stop().await;
                panic!("Auth started with auth.key_activation_delay_seconds = {value}");
            }
            Err(error) => format!("{error:#}"),
        };
        assert!(
            error.contains(expected),
            "the error for {value} should contain {expected:?}: {error}"
        );
    }
}
