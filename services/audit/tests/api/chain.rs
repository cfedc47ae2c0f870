//! The hash chain: how it is built, VerifyChain on intact and tampered logs, and
//! linearity under concurrent appends.

use bulwark_audit::chain::{EventFields, GENESIS, link};
use bulwark_kernel::tonic::Code;
use bulwark_proto::audit::v1::VerifyChainRequest;
use diesel_async::SimpleAsyncConnection as _;
use uuid::Uuid;

use crate::support::{TestAudit, assert_status, event, stored, verify};

#[tokio::test]
async fn events_are_chained_in_seq_order_from_a_zero_genesis() {
    let audit = TestAudit::start().await;
    audit
        .append((0..3).map(|i| event("alice", "auth.login", i)).collect())
        .await;
    audit.append(vec![event("bob", "auth.logout", 9)]).await;

    let rows = stored(&audit).await;
    assert_eq!(rows.len(), 4);
    let mut prev = GENESIS.to_vec();
    for row in &rows {
        let (
            _,
            id,
            occurred_at,
            service,
            actor_id,
            action,
            target,
            outcome,
            trace_id,
            details,
            prev_hash,
            hash,
        ) = row;
        assert_eq!(
            prev_hash, &prev,
            "event {id}: prev_hash is not its predecessor's hash"
        );
        let expected = link(
            &prev,
            &EventFields {
                id: *id,
                occurred_at: *occurred_at,
                service,
                actor_id,
                action,
                target,
                outcome,
                trace_id,
                details,
            },
        );
        assert_eq!(
            hash.as_slice(),
            expected.as_slice(),
            "event {id}: hash mismatch"
        );
        prev.clone_from(hash);
    }
    audit.stop().await;
}

#[tokio::test]
async fn verify_chain_is_ok_on_an_intact_log() {
    let audit = TestAudit::start().await;
    let empty = verify(&audit).await;
    assert!(
        empty.ok && empty.events_checked == 0,
        "empty log: {empty:?}"
    );
    for batch in 0..3 {
        audit
            .append(
                (0..400)
                    .map(|i| event("alice", "auth.login", batch * 400 + i))
                    .collect(),
            )
            .await;
    }
    let report = verify(&audit).await;
    assert!(report.ok, "intact chain reported broken: {report:?}");
    assert_eq!(report.events_checked, 1_200, "not every event was checked");
    assert!(report.first_broken_event_id.is_empty());
    audit.stop().await;
}

#[tokio::test]
async fn the_table_refuses_update_delete_and_truncate() {
    let audit = TestAudit::start().await;
    audit.append(vec![event("alice", "auth.login", 0)]).await;
    let mut sql = audit.sql().await;
    for statement in [
        "UPDATE events SET actor_id = 'mallory'",
        "DELETE FROM events",
        "TRUNCATE events",
    ] {
        let result = sql.batch_execute(statement).await;
        let error = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            error.contains("append-only"),
            "{statement} was not refused: {error:?}"
        );
    }
    audit.stop().await;
}

#[tokio::test]
async fn verify_chain_names_the_first_tampered_event() {
    let audit = TestAudit::start().await;
    let events: Vec<_> = (0..10).map(|i| event("alice", "auth.login", i)).collect();
    audit.append(events.clone()).await;
    let victim = &events[6].id;
    let later = &events[8].id;

    // An attacker with database superuser rights goes around the append-only trigger.
    let mut sql = audit.sql().await;
    sql.batch_execute(&format!(
        "SET session_replication_role = replica; \
         UPDATE events SET outcome = 'failure' WHERE id = '{later}'; \
         UPDATE events SET actor_id = 'mallory' WHERE id = '{victim}'; \
         SET session_replication_role = origin;"
    ))
    .await
    .unwrap_or_else(|e| panic!("tampering failed: {e}"));

    let report = verify(&audit).await;
    assert!(!report.ok, "tampering went unnoticed: {report:?}");
    assert_eq!(&report.first_broken_event_id, victim, "wrong event named");
    assert_eq!(report.events_checked, 7, "should stop at the 7th event");
    audit.stop().await;
}

#[tokio::test]
async fn verify_chain_needs_audit_read() {
    let audit = TestAudit::start().await;
    let result = audit
        .client
        .clone()
        .verify_chain(
            audit
                .tokens
                .request(Uuid::new_v4(), VerifyChainRequest::default()),
        )
        .await;
    assert_status(
        result,
        Code::PermissionDenied,
        "requires permission audit:read",
        "verify",
    );
    audit.stop().await;
}

#[tokio::test]
async fn concurrent_appends_keep_the_chain_linear() {
    let audit = TestAudit::start().await;
    let writer = |actor: &'static str| {
        let mut client = audit.client.clone();
        let tokens = audit.tokens.clone();
        tokio::spawn(async move {
            for batch in 0..15 {
                let events = (0..10)
                    .map(|i| event(actor, "auth.login", batch * 10 + i))
                    .collect();
                client
                    .append_events(tokens.client_request(
                        "identity",
                        &["audit:append"],
                        bulwark_proto::audit::v1::AppendEventsRequest { events },
                    ))
                    .await
                    .unwrap_or_else(|s| panic!("{actor}: append failed: {s:?}"));
            }
        })
    };
    let (a, b) = tokio::join!(writer("alice"), writer("bob"));
    a.unwrap_or_else(|e| panic!("writer alice: {e}"));
    b.unwrap_or_else(|e| panic!("writer bob: {e}"));

    let report = verify(&audit).await;
    assert!(report.ok, "concurrent appends broke the chain: {report:?}");
    assert_eq!(report.events_checked, 300);
    let rows = stored(&audit).await;
    let prevs: std::collections::HashSet<&Vec<u8>> = rows.iter().map(|r| &r.10).collect();
    assert_eq!(
        prevs.len(),
        rows.len(),
        "two events share a predecessor: the chain forked"
    );
    audit.stop().await;
}
