//! Audit: every login (success and failure), refresh and logout writes exactly one
//! outbox event, which the relay delivers to Audit; no event carries a secret.

use std::time::Duration;

use bulwark_proto::audit::v1::{AuditEvent, Outcome};

use crate::support::{PASSWORD, TestApp};

/// Runs `step` and returns the outbox events it added.
async fn events_of<F: Future>(app: &TestApp, step: F) -> Vec<AuditEvent> {
    let before = app.outbox().await.len();
    step.await;
    app.outbox().await.split_off(before)
}

fn only(events: Vec<AuditEvent>, what: &str) -> AuditEvent {
    assert_eq!(
        events.len(),
        1,
        "{what}: expected exactly one outbox event, got {events:?}"
    );
    events.into_iter().next().unwrap_or_default()
}

#[tokio::test]
async fn each_login_refresh_and_logout_writes_exactly_one_outbox_event() {
    let app = TestApp::start().await;
    let user = app.user("alice@example.com");
    let uid = user.id.to_string();

    let mut pair = None;
    let login = only(
        events_of(&app, async { pair = Some(app.logged_in(&user).await) }).await,
        "login",
    );
    let pair = pair.unwrap_or_else(|| panic!("no pair"));
    assert_eq!(
        (login.action.as_str(), login.outcome),
        ("auth.login", Outcome::Success as i32)
    );
    assert_eq!(login.actor_id, uid);
    assert_eq!(login.service, "auth");

    let failed = only(
        events_of(&app, async {
            let _ = app.login(&user.email, "wrong password, long enough").await;
        })
        .await,
        "failed login",
    );
    assert_eq!(
        (failed.action.as_str(), failed.outcome),
        ("auth.login", Outcome::Failure as i32)
    );
    assert_eq!(failed.actor_id, "", "a failed login has an anonymous actor");
    assert!(
        failed.target.starts_with("email:"),
        "target {}",
        failed.target
    );

    let unknown = only(
        events_of(&app, async {
            let _ = app.login("nobody@example.com", PASSWORD).await;
        })
        .await,
        "login with an unknown email",
    );
    assert_eq!(
        (unknown.action.as_str(), unknown.outcome),
        ("auth.login", Outcome::Failure as i32)
    );

    let mut refreshed = None;
    let refresh = only(
        events_of(&app, async {
            refreshed = Some(app.refresh(&pair.refresh_token).await)
        })
        .await,
        "refresh",
    );
    let refreshed = refreshed
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("refresh failed"));
    assert_eq!(
        (refresh.action.as_str(), refresh.outcome),
        ("auth.refresh", Outcome::Success as i32)
    );
    assert_eq!(refresh.actor_id, uid);

    let reuse = only(
        events_of(&app, async {
            let _ = app.refresh(&pair.refresh_token).await;
        })
        .await,
        "reuse",
    );
    assert_eq!(
        (reuse.action.as_str(), reuse.outcome),
        ("auth.refresh_reuse", Outcome::Failure as i32)
    );

    let logout = only(
        events_of(&app, async {
            let _ = app
                .logout(&refreshed.access_token, &refreshed.refresh_token)
                .await;
        })
        .await,
        "logout",
    );
    assert_eq!(
        (logout.action.as_str(), logout.outcome),
        ("auth.logout", Outcome::Success as i32)
    );
    assert_eq!(logout.actor_id, uid);

    let inactive = {
        app.identity.deactivate(user.id);
        only(
            events_of(&app, async {
                let _ = app.login(&user.email, PASSWORD).await;
            })
            .await,
            "login of an inactive user",
        )
    };
    assert_eq!(
        (inactive.action.as_str(), inactive.outcome),
        ("auth.login", Outcome::Failure as i32)
    );
    app.stop().await;
}

#[tokio::test]
async fn audit_events_carry_no_secrets() {
    let app = TestApp::start().await;
    let user = app.user("alice@example.com");
    let pair = app.logged_in(&user).await;
    let wrong = "a wrong password of some length";
    let _ = app.login(&user.email, wrong).await;
    let _ = app.login("nobody@example.com", PASSWORD).await;
    let next = app
        .refresh(&pair.refresh_token)
        .await
        .unwrap_or_else(|s| panic!("{s:?}"));
    let _ = app.logout(&next.access_token, &next.refresh_token).await;

    for event in app.outbox().await {
        let text = format!("{event:?}");
        for secret in [
            PASSWORD,
            wrong,
            "alice@example.com",
            "nobody@example.com",
            pair.refresh_token.as_str(),
            next.refresh_token.as_str(),
            pair.access_token.as_str(),
        ] {
            assert!(
                !text.contains(secret),
                "event {} contains `{secret}`",
                event.action
            );
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn outbox_events_are_delivered_to_audit() {
    let app = TestApp::start().await;
    let user = app.user("alice@example.com");
    app.logged_in(&user).await;
    let _ = app.login(&user.email, "wrong password, long enough").await;
    let recorded: Vec<String> = app.outbox().await.into_iter().map(|e| e.id).collect();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let delivered: Vec<String> = app.audit.delivered().into_iter().map(|e| e.id).collect();
        if recorded.iter().all(|id| delivered.contains(id)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "outbox events {recorded:?} not delivered to Audit within 10s (got {delivered:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}
