//! Times on the wire: the protobuf `Timestamp` of a stored `chrono` time.

use chrono::{DateTime, Utc};

/// The API form of a time (nanosecond precision, as chrono keeps it).
pub fn to_proto(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        // Always below 2^31: chrono's sub-second part is under 2·10^9 (leap seconds).
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_nanos_are_kept() {
        let at = DateTime::from_timestamp(1_700_000_000, 123_456_789)
            .unwrap_or_else(|| panic!("valid time"));
        let proto = to_proto(at);
        assert_eq!((proto.seconds, proto.nanos), (1_700_000_000, 123_456_789));
    }
}
