//! AppendEvents: idempotency by id, validation, internal-only.

use bulwark_kernel::tonic::{Code, Request};
use bulwark_proto::audit::v1::{AppendEventsRequest, ListEventsRequest};

use crate::support::{TestAudit, assert_status, event};

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

    let listed = audit
        .client
        .clone()
        .list_events(
            audit
                .tokens
                .request(audit.reader, ListEventsRequest::default()),
        )
        .await
        .unwrap_or_else(|s| panic!("list failed: {s:?}"))
        .into_inner();
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
        .append_events(AppendEventsRequest {
            events: vec![good, bad.clone()],
        })
        .await;
    assert_status(
        result,
        Code::InvalidArgument,
        "events[1].service: ",
        "empty service",
    );
    let listed = audit
        .client
        .clone()
        .list_events(
            audit
                .tokens
                .request(audit.reader, ListEventsRequest::default()),
        )
        .await
        .unwrap_or_else(|s| panic!("list failed: {s:?}"))
        .into_inner();
    assert!(
        listed.events.is_empty(),
        "part of a refused batch was stored"
    );

    let empty = audit
        .client
        .clone()
        .append_events(AppendEventsRequest { events: vec![] })
        .await;
    assert_status(empty, Code::InvalidArgument, "events: ", "empty batch");
    let too_many = audit
        .client
        .clone()
        .append_events(AppendEventsRequest {
            events: (0..501).map(|i| event("a", "x.y", i)).collect(),
        })
        .await;
    assert_status(too_many, Code::InvalidArgument, "events: ", "501 events");
    audit.stop().await;
}

#[tokio::test]
async fn append_through_the_edge_is_refused() {
    let audit = TestAudit::start().await;
    let mut request = Request::new(AppendEventsRequest {
        events: vec![event("mallory", "auth.login", 0)],
    });
    request.metadata_mut().insert(
        "x-forwarded-for",
        "203.0.113.9".parse().unwrap_or_else(|_| panic!()),
    );
    let result = audit.client.clone().append_events(request).await;
    assert_status(
        result,
        Code::PermissionDenied,
        "AppendEvents is internal",
        "via edge",
    );
    audit.stop().await;
}
