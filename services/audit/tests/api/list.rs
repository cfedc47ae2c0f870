//! ListEvents: filters, keyset pagination, page tokens, permission.

use std::collections::HashSet;

use bulwark_kernel::tonic::{Code, Request};
use bulwark_proto::audit::v1::{ListEventsRequest, ListEventsResponse};
use uuid::Uuid;

use crate::support::{TestAudit, assert_status, event};

/// Every page of `request`, following `next_page_token` to the end.
async fn all_pages(audit: &TestAudit, request: ListEventsRequest) -> Vec<ListEventsResponse> {
    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let page = audit
            .client
            .clone()
            .list_events(audit.tokens.request(
                audit.reader,
                ListEventsRequest {
                    page_token: token.clone(),
                    ..request.clone()
                },
            ))
            .await
            .unwrap_or_else(|s| panic!("page {} failed: {s:?}", pages.len()))
            .into_inner();
        token = page.next_page_token.clone();
        pages.push(page);
        if token.is_empty() || pages.len() > 100 {
            return pages;
        }
    }
}

fn at(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: 1_800_000_000 + seconds,
        nanos: 0,
    })
}

#[tokio::test]
async fn filters_and_pages_cover_every_match_once_newest_first() {
    let audit = TestAudit::start().await;
    // 30 events: actors alternate alice/bob, actions cycle over three, one second apart.
    let actions = ["auth.login", "auth.refresh", "auth.logout"];
    let events: Vec<_> = (0..30)
        .map(|i| {
            let actor = if i % 2 == 0 { "alice" } else { "bob" };
            event(actor, actions[(i % 3) as usize], i)
        })
        .collect();
    audit.append(events[..17].to_vec()).await;
    audit.append(events[17..].to_vec()).await;

    type Matches = fn(i64) -> bool;
    let cases: [(&str, ListEventsRequest, Matches); 4] = [
        ("everything", ListEventsRequest::default(), |_| true),
        (
            "actor alice",
            ListEventsRequest {
                actor_id: "alice".into(),
                ..Default::default()
            },
            |i| i % 2 == 0,
        ),
        (
            "bob's logins",
            ListEventsRequest {
                actor_id: "bob".into(),
                action: "auth.login".into(),
                ..Default::default()
            },
            |i| i % 2 == 1 && i % 3 == 0,
        ),
        (
            "seconds 5 to 20 (exclusive)",
            ListEventsRequest {
                from_time: at(5),
                to_time: at(20),
                ..Default::default()
            },
            |i| (5..20).contains(&i),
        ),
    ];
    for (what, filter, matches) in cases {
        let pages = all_pages(
            &audit,
            ListEventsRequest {
                page_size: 4,
                ..filter
            },
        )
        .await;
        let got: Vec<String> = pages
            .iter()
            .flat_map(|p| p.events.iter().map(|e| e.id.clone()))
            .collect();
        let expected: Vec<String> = (0..30)
            .rev()
            .filter(|i| matches(*i))
            .map(|i| events[i as usize].id.clone())
            .collect();
        assert_eq!(
            got, expected,
            "{what}: wrong events, order, gaps or duplicates"
        );
        assert!(
            pages.iter().all(|p| p.events.len() <= 4),
            "{what}: a page is larger than page_size"
        );
        let unique: HashSet<&String> = got.iter().collect();
        assert_eq!(unique.len(), got.len(), "{what}: duplicates across pages");
    }

    let default_page = audit.first_page().await;
    assert_eq!(default_page.events.len(), 30);
    assert!(
        default_page.next_page_token.is_empty(),
        "token after the last page"
    );
    audit.stop().await;
}

#[tokio::test]
async fn bad_page_tokens_and_arguments_are_invalid_argument() {
    let audit = TestAudit::start().await;
    let mut client = audit.client.clone();
    for token in ["garbage!", "djI6NDI", "djE6LTE", "bm90IGEgdG9rZW4"] {
        let result = client
            .list_events(audit.tokens.request(
                audit.reader,
                ListEventsRequest {
                    page_token: token.into(),
                    ..Default::default()
                },
            ))
            .await;
        assert_status(result, Code::InvalidArgument, "page_token: ", token);
    }
    let negative = client
        .list_events(audit.tokens.request(
            audit.reader,
            ListEventsRequest {
                page_size: -1,
                ..Default::default()
            },
        ))
        .await;
    assert_status(
        negative,
        Code::InvalidArgument,
        "page_size: ",
        "negative size",
    );
    let reversed = client
        .list_events(audit.tokens.request(
            audit.reader,
            ListEventsRequest {
                from_time: at(10),
                to_time: at(5),
                ..Default::default()
            },
        ))
        .await;
    assert_status(
        reversed,
        Code::InvalidArgument,
        "from_time: ",
        "from after to",
    );
    audit.stop().await;
}

#[tokio::test]
async fn listing_needs_a_token_and_audit_read() {
    let audit = TestAudit::start().await;
    let mut client = audit.client.clone();
    let anonymous = client
        .list_events(Request::new(ListEventsRequest::default()))
        .await;
    assert_status(
        anonymous,
        Code::Unauthenticated,
        "missing or invalid bearer token",
        "no token",
    );
    let stranger = client
        .list_events(
            audit
                .tokens
                .request(Uuid::new_v4(), ListEventsRequest::default()),
        )
        .await;
    assert_status(
        stranger,
        Code::PermissionDenied,
        "requires permission audit:read",
        "no audit:read",
    );
    audit.stop().await;
}
