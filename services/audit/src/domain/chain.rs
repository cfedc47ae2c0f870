//! The hash chain over stored events.
//!
//! `hash = SHA-256(prev_hash || canonical(event))`; the first event's `prev_hash` is 32
//! zero bytes ([`GENESIS`]), every other event's is its predecessor's (in `seq` order)
//! `hash`.
//!
//! `canonical(event)` is the concatenation, in this order, of
//!
//! | # | field         | bytes                                                       |
//! |---|---------------|-------------------------------------------------------------|
//! | 0 | format tag    | ASCII `bulwark.audit.event.v1`                              |
//! | 1 | `id`          | the UUID as 36 ASCII characters, lower-case, hyphenated     |
//! | 2 | `occurred_at` | microseconds since the Unix epoch, i64 big-endian (8 bytes) |
//! | 3 | `service`     | UTF-8                                                       |
//! | 4 | `actor_id`    | UTF-8                                                       |
//! | 5 | `action`      | UTF-8                                                       |
//! | 6 | `target`      | UTF-8                                                       |
//! | 7 | `outcome`     | ASCII `success`, `failure` or `denied`                      |
//! | 8 | `trace_id`    | UTF-8                                                       |
//! | 9 | `details`     | UTF-8, the exact bytes the producer sent                    |
//!
//! each written as its length in bytes (u32 big-endian) followed by the bytes. The
//! length prefixes make the encoding unambiguous (no two different events encode the
//! same), which a separator or JSON would not guarantee without escaping rules. Times
//! are hashed at microsecond precision because that is what Postgres stores.
//! `seq` and `recorded_at` are Audit's bookkeeping and not covered; the order is
//! covered by the chaining itself.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The `prev_hash` of the first event.
pub const GENESIS: [u8; 32] = [0; 32];
const FORMAT_TAG: &[u8] = b"bulwark.audit.event.v1";

/// The hashed fields of one event, borrowed from a new event or a stored row.
#[derive(Debug, Clone, Copy)]
pub struct EventFields<'a> {
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub service: &'a str,
    pub actor_id: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub outcome: &'a str,
    pub trace_id: &'a str,
    pub details: &'a str,
}

/// The canonical encoding (see the module docs).
pub fn canonical(event: &EventFields<'_>) -> Vec<u8> {
    let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = event.id.hyphenated().encode_lower(&mut id);
    let micros = event.occurred_at.timestamp_micros().to_be_bytes();
    let fields: [&[u8]; 10] = [
        FORMAT_TAG,
        id.as_bytes(),
        &micros,
        event.service.as_bytes(),
        event.actor_id.as_bytes(),
        event.action.as_bytes(),
        event.target.as_bytes(),
        event.outcome.as_bytes(),
        event.trace_id.as_bytes(),
        event.details.as_bytes(),
    ];
    let mut out = Vec::with_capacity(fields.iter().map(|f| 4 + f.len()).sum());
    for field in fields {
        // Every field is bounded far below 4 GiB by validation (and the message limit).
        let length = u32::try_from(field.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(field);
    }
    out
}

/// The hash of `event` chained after `prev_hash`.
pub fn link(prev_hash: &[u8], event: &EventFields<'_>) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash);
    hasher.update(canonical(event));
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>(service: &'a str, actor_id: &'a str) -> EventFields<'a> {
        EventFields {
            id: Uuid::from_u128(0x0192f0c4_7d4e_7b1a_9f00_000000000001),
            occurred_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap_or_default(),
            service,
            actor_id,
            action: "auth.login",
            target: "",
            outcome: "success",
            trace_id: "",
            details: "{}",
        }
    }

    #[test]
    fn encoding_is_length_prefixed_in_the_documented_order() {
        let bytes = canonical(&fields("auth", "u1"));
        let mut expected = Vec::new();
        for field in [
            &b"bulwark.audit.event.v1"[..],
            b"0192f0c4-7d4e-7b1a-9f00-000000000001",
            &1_700_000_000_123_456_i64.to_be_bytes(),
            b"auth",
            b"u1",
            b"auth.login",
            b"",
            b"success",
            b"",
            b"{}",
        ] {
            expected.extend_from_slice(&u32::try_from(field.len()).unwrap_or(0).to_be_bytes());
            expected.extend_from_slice(field);
        }
        assert_eq!(bytes, expected);
    }

    #[test]
    fn shifting_bytes_between_fields_changes_the_hash() {
        // Plain concatenation would make these two events indistinguishable.
        let a = link(&GENESIS, &fields("auth", "u1"));
        let b = link(&GENESIS, &fields("authu", "1"));
        assert_ne!(a, b);
    }

    #[test]
    fn the_hash_depends_on_the_predecessor() {
        let event = fields("auth", "u1");
        assert_ne!(link(&GENESIS, &event), link(&[1; 32], &event));
        assert_eq!(link(&GENESIS, &event), link(&GENESIS, &event));
    }
}
