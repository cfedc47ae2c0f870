//! Audit events of role changes go to the outbox in the change's transaction and are
//! delivered to Audit; the bootstrap records its own once.

use std::time::Duration;

use bulwark_proto::authz::v1::RevokeRoleRequest;
use uuid::Uuid;

use crate::support::{TestAuthz, eventually};

#[tokio::test]
async fn role_changes_are_recorded_in_the_outbox_and_delivered() {
    let authz = TestAuthz::start().await;
    let user = Uuid::new_v4();
    let admin = authz.admin.to_string();
    authz.create_role("auditor", &["audit:read"]).await;
    authz.grant(user, "auditor").await;
    authz
        .client
        .clone()
        .revoke_role(authz.tokens.request(
            authz.admin,
            RevokeRoleRequest {
                user_id: user.to_string(),
                role: "auditor".to_owned(),
            },
        ))
        .await
        .unwrap_or_else(|s| panic!("revoke failed: {s:?}"));

    let expected = vec![
        (
            "role.create".to_owned(),
            String::new(),
            "role:admin".to_owned(),
        ),
        ("role.grant".to_owned(), String::new(), admin.clone()),
        (
            "role.create".to_owned(),
            admin.clone(),
            "role:auditor".to_owned(),
        ),
        ("role.grant".to_owned(), admin.clone(), user.to_string()),
        ("role.revoke".to_owned(), admin.clone(), user.to_string()),
    ];
    assert_eq!(authz.outbox_actions().await, expected, "outbox content");

    let delivered = eventually(Duration::from_secs(5), || async {
        authz.audit.delivered().len() >= expected.len()
    })
    .await;
    assert!(delivered, "the relay did not deliver the events to Audit");
    let events = authz.audit.delivered();
    assert!(
        events.iter().all(|e| e.service == "authz"),
        "wrong service: {events:?}"
    );
    assert!(
        events
            .iter()
            .all(|e| uuid::Uuid::parse_str(&e.id).is_ok() && e.occurred_at.is_some()),
        "events without id or time: {events:?}"
    );
    authz.stop().await;
}

#[tokio::test]
async fn bootstrap_is_idempotent_across_restarts() {
    let first = TestAuthz::start().await;
    let database = first.database.clone();
    first.stop().await;
    let second = TestAuthz::start_on(database, 2_000).await;
    assert!(
        second.allowed(second.admin, "roles:write").await,
        "the bootstrap admin lacks roles:write after a restart"
    );
    let bootstrap_events = second.outbox_actions().await;
    assert_eq!(
        bootstrap_events.len(),
        2,
        "a restart recorded bootstrap events again: {bootstrap_events:?}"
    );
    second.stop().await;
}
