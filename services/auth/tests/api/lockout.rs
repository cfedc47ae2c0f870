//! Account lockout: consecutive failed logins of one email, from any address, counted
//! in the real test Redis; known and unknown emails alike; a wrong second factor counts
//! too; a completed login resets the count.

use bulwark_kernel::tonic::Code;
use uuid::Uuid;

use crate::support::{PASSWORD, TestApp, assert_code, failure};

/// An email no other test (or earlier run) has counted failures for.
fn fresh_email(name: &str) -> String {
    format!("{name}-{}@example.com", Uuid::new_v4().simple())
}

fn retry_after(status: &bulwark_kernel::tonic::Status) -> u64 {
    status
        .metadata()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After on {status:?}"))
}

#[tokio::test]
async fn five_failures_lock_a_known_account_even_for_the_right_password() {
    let app = TestApp::start_with_redis(&[]).await;
    let user = app.user(&fresh_email("known"));
    for attempt in 1..=5 {
        let status = failure(app.login(&user.email, "wrong password!").await, "wrong");
        assert_code(
            &status,
            Code::Unauthenticated,
            &format!("failure {attempt}"),
        );
    }
    let status = failure(
        app.login(&user.email, PASSWORD).await,
        "right password, locked",
    );
    assert_code(&status, Code::ResourceExhausted, "right password, locked");
    assert!((59..=60).contains(&retry_after(&status)), "{status:?}");
    // Another spelling of the same address is the same account.
    let status = failure(
        app.login(&format!("  {}", user.email.to_uppercase()), PASSWORD)
            .await,
        "same email, other case",
    );
    assert_code(&status, Code::ResourceExhausted, "same email, other case");

    let locks: Vec<_> = app
        .outbox()
        .await
        .into_iter()
        .filter(|e| e.action == "auth.account_lock")
        .collect();
    assert_eq!(locks.len(), 1, "{locks:?}");
    assert_eq!(locks[0].actor_id, "", "a wrong password names no user");
    assert!(locks[0].target.starts_with("email:"), "{:?}", locks[0]);
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_email_locks_alike() {
    let app = TestApp::start_with_redis(&[]).await;
    let email = fresh_email("nobody");
    for _ in 1..=5 {
        let status = failure(app.login(&email, "wrong password!").await, "unknown");
        assert_code(&status, Code::Unauthenticated, "unknown");
    }
    let status = failure(app.login(&email, PASSWORD).await, "unknown, locked");
    assert_code(&status, Code::ResourceExhausted, "unknown, locked");
    app.stop().await;
}

#[tokio::test]
async fn a_completed_login_resets_the_count() {
    let app = TestApp::start_with_redis(&[]).await;
    let user = app.user(&fresh_email("resets"));
    for _ in 0..4 {
        let _ = app.login(&user.email, "wrong password!").await;
    }
    assert!(app.login(&user.email, PASSWORD).await.is_ok());
    for _ in 0..4 {
        let status = failure(
            app.login(&user.email, "wrong password!").await,
            "after reset",
        );
        assert_code(&status, Code::Unauthenticated, "after reset");
    }
    assert!(
        app.login(&user.email, PASSWORD).await.is_ok(),
        "4 failures do not lock"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_threshold_and_back_off_are_configurable() {
    let app = TestApp::start_with_redis(&[
        ("auth.lockout.threshold", 2.into()),
        ("auth.lockout.base_backoff_seconds", 120.into()),
    ])
    .await;
    let user = app.user(&fresh_email("configured"));
    for _ in 0..2 {
        let _ = app.login(&user.email, "wrong password!").await;
    }
    let status = failure(app.login(&user.email, PASSWORD).await, "locked after 2");
    assert_code(&status, Code::ResourceExhausted, "locked after 2");
    assert!((119..=120).contains(&retry_after(&status)), "{status:?}");
    app.stop().await;

    let refused = TestApp::try_start_with(&[("auth.lockout.max_backoff_seconds", 1.into())]).await;
    let error = refused.err().map(|e| format!("{e:#}")).unwrap_or_default();
    assert!(error.contains("auth.lockout"), "{error}");
}
