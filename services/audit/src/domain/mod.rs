//! Validated values of the Audit API: events, their hash chain, signed checkpoints of
//! it, the chain's verification, list queries.

pub mod chain;
pub mod checkpoint;
pub mod checkpoint_file;
mod event;
mod query;
pub mod verification;

pub use event::{OutcomeText, validate_batch};
pub use query::{ListQuery, Page, PageToken};

use chrono::{DateTime, Utc};

use crate::error::Error;

/// A protobuf timestamp as a UTC time truncated to microseconds (what Postgres stores,
/// so what is hashed is exactly what is read back); years 1970 to 9999.
pub fn timestamp(field: &str, value: &prost_types::Timestamp) -> Result<DateTime<Utc>, Error> {
    const MAX_SECONDS: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    if !(0..=MAX_SECONDS).contains(&value.seconds) || !(0..1_000_000_000).contains(&value.nanos) {
        return Err(Error::invalid(
            field,
            "must be a valid time between 1970 and 9999",
        ));
    }
    let micros = value.seconds * 1_000_000 + i64::from(value.nanos / 1_000);
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| Error::invalid(field, "must be a valid time between 1970 and 9999"))
}
