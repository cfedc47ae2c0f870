//! An audit event as accepted by `AppendEvents`.

use bulwark_proto::audit::v1::{AuditEvent, Outcome};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::chain::EventFields;
use crate::error::Error;

/// Most events in one `AppendEvents` call.
pub const MAX_BATCH: usize = 500;

/// Byte limits of the text fields (from the API).
const MAX_SERVICE: usize = 64;
const MAX_ACTOR: usize = 64;
const MAX_ACTION: usize = 64;
const MAX_TARGET: usize = 256;
const MAX_TRACE_ID: usize = 64;
const MAX_DETAILS: usize = 4096;
const MAX_ID: usize = 64;

/// How an outcome is stored and hashed.
pub trait OutcomeText {
    fn text(self) -> Option<&'static str>;
    fn from_text(text: &str) -> Outcome;
}

impl OutcomeText for Outcome {
    fn text(self) -> Option<&'static str> {
        match self {
            Outcome::Success => Some("success"),
            Outcome::Failure => Some("failure"),
            Outcome::Denied => Some("denied"),
            Outcome::Unspecified => None,
        }
    }

    fn from_text(text: &str) -> Outcome {
        match text {
            "success" => Outcome::Success,
            "failure" => Outcome::Failure,
            "denied" => Outcome::Denied,
            _ => Outcome::Unspecified,
        }
    }
}

/// A valid event, ready to be chained and stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub service: String,
    pub actor_id: String,
    pub action: String,
    pub target: String,
    pub outcome: &'static str,
    pub trace_id: String,
    pub details: String,
}

impl Event {
    pub fn fields(&self) -> EventFields<'_> {
        EventFields {
            id: self.id,
            occurred_at: self.occurred_at,
            service: &self.service,
            actor_id: &self.actor_id,
            action: &self.action,
            target: &self.target,
            outcome: self.outcome,
            trace_id: &self.trace_id,
            details: &self.details,
        }
    }
}

/// Validates a whole batch; the first bad event's error names its index, the field
/// and (when it has a usable one) its id. `details` is only bounded, not parsed: the
/// chain covers its bytes as written, and a producer's odd but harmless JSON must not
/// block its outbox forever.
pub fn validate_batch(events: Vec<AuditEvent>) -> Result<Vec<Event>, Error> {
    if events.is_empty() {
        return Err(Error::invalid("events", "must contain at least one event"));
    }
    if events.len() > MAX_BATCH {
        return Err(Error::invalid(
            "events",
            format!("must contain at most {MAX_BATCH} events"),
        ));
    }
    events
        .into_iter()
        .enumerate()
        .map(|(index, event)| validate(index, event))
        .collect()
}

fn validate(index: usize, event: AuditEvent) -> Result<Event, Error> {
    let field = |name: &str| format!("events[{index}].{name}");
    if event.id.len() > MAX_ID {
        return Err(Error::invalid(
            field("id"),
            format!("must be at most {MAX_ID} bytes"),
        ));
    }
    let id =
        Uuid::parse_str(&event.id).map_err(|_| Error::invalid(field("id"), "must be a UUID"))?;
    let bad =
        |name: &str, rule: String| Error::invalid(field(name), format!("{rule} (event id {id})"));
    let text = |name: &str, value: String, max: usize, required: bool| {
        if required && value.is_empty() {
            return Err(bad(name, "must not be empty".to_owned()));
        }
        if value.len() > max {
            return Err(bad(name, format!("must be at most {max} bytes")));
        }
        if value.contains('\0') {
            return Err(bad(name, "must not contain NUL characters".to_owned()));
        }
        Ok(value)
    };
    let occurred_at = match &event.occurred_at {
        Some(at) => super::timestamp("occurred_at", at).map_err(|_| {
            bad(
                "occurred_at",
                "must be a valid time between 1970 and 9999".into(),
            )
        })?,
        None => return Err(bad("occurred_at", "must be set".to_owned())),
    };
    let outcome = Outcome::try_from(event.outcome)
        .ok()
        .and_then(OutcomeText::text)
        .ok_or_else(|| bad("outcome", "must be SUCCESS, FAILURE or DENIED".to_owned()))?;
    Ok(Event {
        id,
        occurred_at,
        service: text("service", event.service, MAX_SERVICE, true)?,
        actor_id: text("actor_id", event.actor_id, MAX_ACTOR, false)?,
        action: text("action", event.action, MAX_ACTION, true)?,
        target: text("target", event.target, MAX_TARGET, false)?,
        outcome,
        trace_id: text("trace_id", event.trace_id, MAX_TRACE_ID, false)?,
        details: text("details", event.details, MAX_DETAILS, false)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> AuditEvent {
        AuditEvent {
            id: "0192f0c4-7d4e-7b1a-9f00-000000000001".into(),
            occurred_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 123_456_789,
            }),
            service: "auth".into(),
            actor_id: "u1".into(),
            action: "auth.login".into(),
            target: String::new(),
            outcome: Outcome::Success as i32,
            trace_id: String::new(),
            details: "{}".into(),
        }
    }

    fn error_of(bad: AuditEvent) -> String {
        validate_batch(vec![event(), bad])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn a_valid_event_is_accepted_with_microsecond_time() {
        let events = validate_batch(vec![event()]).unwrap_or_else(|e| panic!("refused: {e}"));
        assert_eq!(events[0].occurred_at.timestamp_subsec_micros(), 123_456);
        assert_eq!(events[0].outcome, "success");
    }

    #[test]
    fn each_rule_names_the_event_and_field() {
        type Mutation = fn(&mut AuditEvent);
        let cases: [(&str, Mutation); 9] = [
            ("events[1].id: must be a UUID", |e| e.id = "x".into()),
            ("events[1].service: must not be empty", |e| {
                e.service.clear()
            }),
            ("events[1].action: must not be empty", |e| e.action.clear()),
            ("events[1].target: must be at most 256", |e| {
                e.target = "t".repeat(257)
            }),
            ("events[1].details: must be at most 4096", |e| {
                e.details = "d".repeat(4097)
            }),
            ("events[1].outcome:", |e| e.outcome = 0),
            ("events[1].outcome:", |e| e.outcome = 99),
            ("events[1].occurred_at: must be set", |e| {
                e.occurred_at = None
            }),
            ("events[1].actor_id: must not contain NUL", |e| {
                e.actor_id = "a\0".into()
            }),
        ];
        for (expected, mutate) in cases {
            let mut bad = event();
            mutate(&mut bad);
            let error = error_of(bad);
            assert!(
                error.starts_with(expected),
                "expected {expected:?}, got {error:?}"
            );
        }
        let mut bad = event();
        bad.service.clear();
        assert!(
            error_of(bad).contains("0192f0c4-7d4e-7b1a-9f00-000000000001"),
            "id not named"
        );
    }

    #[test]
    fn batch_size_is_bounded_to_one_through_the_maximum() {
        let message = |result: Result<Vec<Event>, Error>| match result {
            Err(error) => error.to_string(),
            Ok(events) => panic!("{} events accepted", events.len()),
        };
        assert!(
            message(validate_batch(vec![])).contains("at least one"),
            "an empty batch"
        );
        assert_eq!(validate_batch(vec![event()]).map(|e| e.len()).ok(), Some(1));
        // Exactly the maximum is accepted, one more is refused, naming the bound.
        assert_eq!(
            validate_batch(vec![event(); MAX_BATCH])
                .map(|e| e.len())
                .ok(),
            Some(MAX_BATCH)
        );
        let over = message(validate_batch(vec![event(); MAX_BATCH + 1]));
        assert!(over.contains(&format!("at most {MAX_BATCH}")), "{over}");
    }
}
