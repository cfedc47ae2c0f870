//! `ListEvents` filters, and the page size and keyset page token of the listings.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bulwark_proto::audit::v1::ListEventsRequest;
use chrono::{DateTime, Utc};

use crate::error::Error;

/// Page size when the request gives none.
pub const DEFAULT_PAGE_SIZE: i64 = 50;
/// Larger page sizes are clamped to this (as the API documents), not refused.
pub const MAX_PAGE_SIZE: i64 = 500;
const MAX_FILTER_BYTES: usize = 64;
const MAX_TOKEN_BYTES: usize = 1024;
const TOKEN_PREFIX: &str = "v1:";

/// Where a listing continues: events (or checkpoints) with a `seq` (an `id`) below
/// this one.
///
/// On the wire it is opaque: base64url (no padding) of `v1:<seq>`. The version prefix
/// lets the format change without misreading old tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageToken {
    pub before_seq: i64,
}

impl PageToken {
    pub fn encode(self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{TOKEN_PREFIX}{}", self.before_seq))
    }

    pub fn decode(field: &str, token: &str) -> Result<Self, Error> {
        let refuse = || Error::invalid(field, "is not a page token this listing returned");
        if token.len() > MAX_TOKEN_BYTES {
            return Err(refuse());
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| refuse())?;
        let text = std::str::from_utf8(&bytes).map_err(|_| refuse())?;
        let digits = text.strip_prefix(TOKEN_PREFIX).ok_or_else(refuse)?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(refuse());
        }
        let before_seq: i64 = digits.parse().map_err(|_| refuse())?;
        if before_seq <= 0 {
            return Err(refuse());
        }
        Ok(Self { before_seq })
    }
}

/// A validated page size and page token (`page_size`, `page_token`), as `ListEvents`
/// and `ListCheckpoints` take them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub page_size: i64,
    pub after: Option<PageToken>,
}

impl Page {
    pub fn parse(page_size: i32, page_token: &str) -> Result<Self, Error> {
        let page_size = match i64::from(page_size) {
            size if size < 0 => return Err(Error::invalid("page_size", "must not be negative")),
            0 => DEFAULT_PAGE_SIZE,
            size => size.min(MAX_PAGE_SIZE),
        };
        let after = Some(page_token)
            .filter(|t| !t.is_empty())
            .map(|t| PageToken::decode("page_token", t))
            .transpose()?;
        Ok(Self { page_size, after })
    }
}

/// A validated `ListEvents` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub actor_id: Option<String>,
    pub action: Option<String>,
    pub from_time: Option<DateTime<Utc>>,
    pub to_time: Option<DateTime<Utc>>,
    pub page_size: i64,
    pub after: Option<PageToken>,
}

fn filter(field: &str, value: String) -> Result<Option<String>, Error> {
    if value.len() > MAX_FILTER_BYTES {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_FILTER_BYTES} bytes"),
        ));
    }
    Ok(Some(value).filter(|v| !v.is_empty()))
}

impl ListQuery {
    pub fn parse(request: ListEventsRequest) -> Result<Self, Error> {
        let from_time = request
            .from_time
            .as_ref()
            .map(|t| super::timestamp("from_time", t))
            .transpose()?;
        let to_time = request
            .to_time
            .as_ref()
            .map(|t| super::timestamp("to_time", t))
            .transpose()?;
        if let (Some(from), Some(to)) = (from_time, to_time)
            && from > to
        {
            return Err(Error::invalid("from_time", "must not be after to_time"));
        }
        let Page { page_size, after } = Page::parse(request.page_size, &request.page_token)?;
        Ok(Self {
            actor_id: filter("actor_id", request.actor_id)?,
            action: filter("action", request.action)?,
            from_time,
            to_time,
            page_size,
            after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let token = PageToken { before_seq: 42 };
        assert_eq!(
            PageToken::decode("page_token", &token.encode()).ok(),
            Some(token)
        );
        for bad in [
            "!!!",
            "djE6",                             // "v1:"
            "djE6LTE",                          // "v1:-1"
            "djE6MA",                           // "v1:0"
            "djI6NDI",                          // "v2:42"
            "djE6NDJ4",                         // "v1:42x"
            "djE6OTk5OTk5OTk5OTk5OTk5OTk5OTk5", // overflow
            &"a".repeat(1025),
        ] {
            let error = PageToken::decode("page_token", bad)
                .err()
                .map(|e| e.to_string());
            assert!(
                error
                    .as_deref()
                    .is_some_and(|e| e.starts_with("page_token: ")),
                "{bad:?} gave {error:?}"
            );
        }
    }

    #[test]
    fn page_size_defaults_clamps_and_refuses_negatives() {
        let size = |page_size| {
            ListQuery::parse(ListEventsRequest {
                page_size,
                ..Default::default()
            })
            .map(|q| q.page_size)
            .ok()
        };
        assert_eq!(size(0), Some(DEFAULT_PAGE_SIZE));
        assert_eq!(size(7), Some(7));
        assert_eq!(size(10_000), Some(MAX_PAGE_SIZE));
        assert_eq!(size(-1), None);
    }

    #[test]
    fn time_range_must_be_ordered() {
        let at = |seconds| Some(prost_types::Timestamp { seconds, nanos: 0 });
        let query = ListQuery::parse(ListEventsRequest {
            from_time: at(200),
            to_time: at(100),
            ..Default::default()
        });
        assert!(
            query
                .err()
                .is_some_and(|e| e.to_string().starts_with("from_time: "))
        );
    }
}
