//! AppendEvents: idempotency by id, validation, and only for a service account whose
//! token carries `audit:append`.

use bulwark_kernel::tonic::{Code, Request};
use bulwark_proto::audit::v1::AppendEventsRequest;

use uuid::Uuid;

use crate::support::{TestAudit, assert_status, event, with_edge_headers};

#[tokio::test]
async fn append_stores_new_events_and_counts_duplicates() {
    let audit = TestAudit::start().await;
    let first: Vec<_> = (0..3).map(|i| event("alice", "auth.login", i)).collect();
    let response = audit.append(first.clone()).await;
    assert_eq!(
        (response.appended, response.duplicates),
        (3, 0),
        "first batch"
    );

    // A relay resending after a timeout: two known ids, one new, one repeated inside
    // the batch.
    let new = event("bob", "auth.logout", 10);
    let resend = vec![first[0].clone(), new.clone(), first[2].clone(), new.clone()];
    let response = audit.append(resend).await;
    assert_eq!(
        (response.appended, response.duplicates),
        (1, 3),
        "resent batch"
    );

    let listed = audit.first_page().await;
    let ids: Vec<&str> = listed.events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        ids,
        [&new.id, &first[2].id, &first[1].id, &first[0].id],
        "stored events, newest first"
    );
    let stored = &listed.events[0];
    assert_eq!(
        (
            stored.service.as_str(),
            stored.actor_id.as_str(),
            stored.action.as_str()
        ),
        ("auth", "bob", "auth.logout")
    );
    assert_eq!(stored.details, new.details, "details changed on the way");
    assert_eq!(stored.outcome, new.outcome);
    assert_eq!(
        stored.occurred_at.map(|t| (t.seconds, t.nanos)),
        new.occurred_at
            .map(|t| (t.seconds, t.nanos / 1_000 * 1_000)),
        "occurred_at not kept to the microsecond"
    );
    audit.stop().await;
}

#[tokio::test]
async fn a_batch_with_a_bad_event_is_refused_whole() {
    let audit = TestAudit::start().await;
    let good = event("alice", "auth.login", 0);
    let mut bad = event("alice", "auth.login", 1);
    bad.service.clear();
    let result = audit
        .client
        .clone()
        .append_events(audit.as_relay(AppendEventsRequest {
            events: vec![good, bad.clone()],
        }))
        .await;
    assert_status(
        result,
        Code::InvalidArgument,
        "events[1].service: ",
        "empty service",
    );
    let listed = audit.first_page().await;
    assert!(
        listed.events.is_empty(),
        "part of a refused batch was stored"
    );

    let empty = audit
        .client
        .clone()
        .append_events(audit.as_relay(AppendEventsRequest { events: vec![] }))
        .await;
    assert_status(empty, Code::InvalidArgument, "events: ", "empty batch");
    let too_many = audit
        .client
        .clone()
        .append_events(audit.as_relay(AppendEventsRequest {
            events: (0..501).map(|i| event("a", "x.y", i)).collect(),
        }))
        .await;
    assert_status(too_many, Code::InvalidArgument, "events: ", "501 events");
    audit.stop().await;
}

#[tokio::test]
async fn append_events_requires_a_service_token_with_audit_append() {
    let audit = TestAudit::start().await;
    let admin = Uuid::new_v4();
    // A person Authz would allow audit:append (and audit:read): no grant to a person
    // opens an internal RPC.
    audit.authz.grant(admin, "audit:append");
    audit.authz.grant(audit.reader, "audit:append");
    let forged = || AppendEventsRequest {
        events: vec![event("mallory", "auth.login", 0)],
    };
    let path = "/bulwark.audit.v1.AuditService/AppendEvents";
    let service_only = "requires a service account with permission audit:append";

    let refused = [
        (
            "no token",
            Request::new(forged()),
            Code::Unauthenticated,
            "missing or invalid bearer token",
        ),
        (
            "no token, every edge and identity header",
            with_edge_headers(Request::new(forged()), path, admin),
            Code::Unauthenticated,
            "missing or invalid bearer token",
        ),
        (
            "a user's token Authz allows audit:append",
            audit.tokens.request(admin, forged()),
            Code::PermissionDenied,
            service_only,
        ),
        (
            "the reader's token, via the edge",
            with_edge_headers(audit.tokens.request(audit.reader, forged()), path, admin),
            Code::PermissionDenied,
            service_only,
        ),
        (
            "a service token without audit:append",
            audit
                .tokens
                .client_request("audit", &["roles:read", "audit:read"], forged()),
            Code::PermissionDenied,
            service_only,
        ),
    ];
    for (what, request, code, message) in refused {
        let result = audit.client.clone().append_events(request).await;
        assert_status(result, code, message, what);
    }
    let listed = audit.first_page().await;
    assert!(
        listed.events.is_empty(),
        "a refused append stored events: {:?}",
        listed.events
    );

    let appended = audit
        .client
        .clone()
        .append_events(
            audit
                .tokens
                .client_request("authz", &["audit:append"], forged()),
        )
        .await
        .unwrap_or_else(|s| panic!("a service token with audit:append: {s:?}"))
        .into_inner();
    assert_eq!((appended.appended, appended.duplicates), (1, 0));
    audit.stop().await;
}
