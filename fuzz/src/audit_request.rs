//! Audit's requests as they arrive: `AppendEvents` (a batch from another service's
//! outbox) and `ListEvents` (a query with a page token), through `validate_batch` and
//! `ListQuery::parse`.
//!
//! Checked: an accepted event keeps its fields within their bounds, without NUL, its time
//! truncated to microseconds; its canonical encoding (what the hash chain covers) reads
//! back, field by field, to exactly the event, so no two events share one; a query's page
//! size, filters and times are within bounds; a page token decodes back to what encodes it.

use bulwark_audit::chain::{self, EventFields};
use bulwark_audit::domain::{self, PageToken};
use bulwark_proto::audit::v1::{AppendEventsRequest, AuditEvent, ListEventsRequest, Outcome};
use prost::Message as _;

use crate::framed;

/// Checks one request: the first byte picks the message, the rest is its encoding.
pub fn check(data: &[u8]) {
    let Some((&selector, message)) = data.split_first() else {
        return;
    };
    match selector % 3 {
        0 => {
            if let Ok(request) = AppendEventsRequest::decode(message) {
                append(request.events);
            }
        }
        1 => {
            if let Ok(request) = ListEventsRequest::decode(message) {
                list(request);
            }
        }
        _ => {
            if let Ok(token) = std::str::from_utf8(message) {
                page_token(token);
            }
        }
    }
}

fn append(events: Vec<AuditEvent>) {
    let count = events.len();
    let Ok(valid) = domain::validate_batch(events) else {
        return;
    };
    assert!((1..=500).contains(&count) && valid.len() == count);
    for event in &valid {
        for (field, value, max) in [
            ("service", &event.service, 64),
            ("actor_id", &event.actor_id, 64),
            ("action", &event.action, 64),
            ("target", &event.target, 256),
            ("trace_id", &event.trace_id, 64),
            ("details", &event.details, 4096),
        ] {
            assert!(
                value.len() <= max && !value.contains('\0'),
                "{field} {value:?}"
            );
        }
        assert!(!event.service.is_empty() && !event.action.is_empty());
        assert!(["success", "failure", "denied"].contains(&event.outcome));
        assert_eq!(event.occurred_at.timestamp_subsec_nanos() % 1_000, 0);
        let fields = event.fields();
        let canonical = chain::canonical(&fields);
        assert_eq!(
            read_canonical(&canonical),
            Some(texts(&fields)),
            "canonical encoding"
        );
        assert_eq!(
            chain::link(&chain::GENESIS, &fields),
            chain::link(&chain::GENESIS, &fields)
        );
    }
}

/// The canonical encoding's fields, as the module documentation lays them out.
fn texts(fields: &EventFields<'_>) -> Vec<Vec<u8>> {
    vec![
        b"bulwark.audit.event.v1".to_vec(),
        fields.id.hyphenated().to_string().into_bytes(),
        fields.occurred_at.timestamp_micros().to_be_bytes().to_vec(),
        fields.service.as_bytes().to_vec(),
        fields.actor_id.as_bytes().to_vec(),
        fields.action.as_bytes().to_vec(),
        fields.target.as_bytes().to_vec(),
        fields.outcome.as_bytes().to_vec(),
        fields.trace_id.as_bytes().to_vec(),
        fields.details.as_bytes().to_vec(),
    ]
}

/// Splits length-prefixed (u32 big-endian) fields; `None` unless the bytes are exactly that.
fn read_canonical(mut bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut fields = Vec::new();
    while !bytes.is_empty() {
        let (length, rest) = bytes.split_at_checked(4)?;
        let length = usize::try_from(u32::from_be_bytes(length.try_into().ok()?)).ok()?;
        let (field, rest) = rest.split_at_checked(length)?;
        fields.push(field.to_vec());
        bytes = rest;
    }
    Some(fields)
}

fn list(request: ListEventsRequest) {
    let page_size = request.page_size;
    let Ok(query) = domain::ListQuery::parse(request) else {
        return;
    };
    assert!((1..=500).contains(&query.page_size));
    if page_size > 0 {
        assert_eq!(query.page_size, i64::from(page_size).min(500));
    }
    for filter in [&query.actor_id, &query.action].into_iter().flatten() {
        assert!(
            !filter.is_empty() && filter.len() <= 64,
            "filter {filter:?}"
        );
    }
    if let (Some(from), Some(to)) = (query.from_time, query.to_time) {
        assert!(from <= to);
    }
    if let Some(after) = query.after {
        assert!(after.before_seq > 0);
        assert_eq!(PageToken::decode("t", &after.encode()).ok(), Some(after));
    }
}

fn page_token(token: &str) {
    if let Ok(decoded) = PageToken::decode("page_token", token) {
        assert!(decoded.before_seq > 0);
        assert_eq!(
            PageToken::decode("t", &decoded.encode()).ok(),
            Some(decoded)
        );
    }
}

/// A valid batch and query, and a page token.
pub fn seeds() -> Vec<crate::Seed> {
    let event = AuditEvent {
        id: "0192f0c4-7d4e-7b1a-9f00-000000000001".to_owned(),
        occurred_at: Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 123_456_789,
        }),
        service: "auth".to_owned(),
        actor_id: "0192f0c4-7d4e-7b1a-9f00-000000000002".to_owned(),
        action: "auth.login".to_owned(),
        target: "user:0192f0c4-7d4e-7b1a-9f00-000000000002".to_owned(),
        outcome: Outcome::Success as i32,
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".to_owned(),
        details: r#"{"family_id":"0192f0c4-7d4e-7b1a-9f00-000000000003"}"#.to_owned(),
    };
    let denied = AuditEvent {
        id: "0192f0c4-7d4e-7b1a-9f00-000000000004".to_owned(),
        outcome: Outcome::Denied as i32,
        target: String::new(),
        details: String::new(),
        ..event.clone()
    };
    let query = ListEventsRequest {
        actor_id: "0192f0c4-7d4e-7b1a-9f00-000000000002".to_owned(),
        action: "auth.login".to_owned(),
        from_time: Some(prost_types::Timestamp {
            seconds: 1_600_000_000,
            nanos: 0,
        }),
        to_time: Some(prost_types::Timestamp {
            seconds: 1_800_000_000,
            nanos: 999_999_999,
        }),
        page_size: 100,
        page_token: PageToken { before_seq: 42 }.encode(),
    };
    let mut token = vec![2];
    token.extend(PageToken { before_seq: 7 }.encode().into_bytes());
    vec![
        (
            "append_events".to_owned(),
            framed(
                0,
                &AppendEventsRequest {
                    events: vec![event, denied],
                },
            ),
        ),
        ("list_events".to_owned(), framed(1, &query)),
        ("page_token".to_owned(), token),
    ]
}
