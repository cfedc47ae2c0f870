//! The lease call in protobuf: items encoded as `bulwark.ratelimit.v1.LeaseRequest`, and
//! the `LeaseResponse` read back into [`Grant`]s. Pure functions.

use std::time::Duration;

use bulwark_proto::envoy::extensions::common::ratelimit::v3::{
    RateLimitDescriptor, rate_limit_descriptor,
};
use bulwark_proto::envoy::service::ratelimit::v3::rate_limit_response;
use bulwark_proto::ratelimit::v1::{LeaseItem, LeaseRequest, LeaseResponse, grant};
use prost::Message;

use crate::lease::{Grant, GrantMode};
use crate::ratelimit::{DescriptorEntry, DescriptorStatus, LimitUnit};

/// One descriptor asked for in a lease call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemRequest<'a> {
    /// The descriptor's entries.
    pub entries: &'a [DescriptorEntry],
    /// Hits held unspent; `u32::MAX` asks for no top-up (a decision for `spend` alone).
    pub held: u32,
    /// 1 when a request waits on the answer, else 0.
    pub spend: u32,
}

/// The serialized `LeaseRequest`.
pub fn encode(domain: &str, items: &[ItemRequest<'_>]) -> Vec<u8> {
    LeaseRequest {
        domain: domain.to_owned(),
        items: items
            .iter()
            .map(|item| LeaseItem {
                descriptor: Some(RateLimitDescriptor {
                    entries: item
                        .entries
                        .iter()
                        .map(|e| rate_limit_descriptor::Entry {
                            key: e.key.clone(),
                            value: e.value.clone(),
                        })
                        .collect(),
                    ..Default::default()
                }),
                held: item.held,
                spend: item.spend,
            })
            .collect(),
    }
    .encode_to_vec()
}

/// Why an answer is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Not a `LeaseResponse`.
    Protobuf(String),
    /// Not one grant per item.
    Count {
        /// Items asked for.
        expected: usize,
        /// Grants received.
        got: usize,
    },
    /// A grant without a known mode.
    Mode(i32),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Protobuf(e) => write!(f, "not a LeaseResponse: {e}"),
            Self::Count { expected, got } => {
                write!(f, "{got} grants for {expected} items")
            }
            Self::Mode(mode) => write!(f, "grant mode {mode} is not known"),
        }
    }
}

/// Reads a serialized `LeaseResponse` holding one grant per item asked for.
pub fn decode(bytes: &[u8], items: usize) -> Result<Vec<Grant>, DecodeError> {
    let response =
        LeaseResponse::decode(bytes).map_err(|e| DecodeError::Protobuf(e.to_string()))?;
    if response.grants.len() != items {
        return Err(DecodeError::Count {
            expected: items,
            got: response.grants.len(),
        });
    }
    let over = rate_limit_response::Code::OverLimit as i32;
    response
        .grants
        .into_iter()
        .map(|g| {
            let mode = match grant::Mode::try_from(g.mode) {
                Ok(grant::Mode::Unlimited) => GrantMode::Unlimited,
                Ok(grant::Mode::Exact) => GrantMode::Exact,
                Ok(grant::Mode::Leased) => GrantMode::Leased,
                _ => return Err(DecodeError::Mode(g.mode)),
            };
            let status = g.status.unwrap_or_default();
            Ok(Grant {
                mode,
                granted: g.granted,
                status: DescriptorStatus {
                    over_limit: status.code == over,
                    limit: status
                        .current_limit
                        .as_ref()
                        .map(|l| (l.requests_per_unit, LimitUnit::from_proto(l.unit))),
                    remaining: status.limit_remaining,
                    reset_after: status.duration_until_reset.as_ref().map(duration),
                },
                lease_size: g.lease_size,
                valid_for: g.valid_for.as_ref().map_or(Duration::ZERO, duration),
            })
        })
        .collect()
}

fn duration(d: &prost_types::Duration) -> Duration {
    let secs = u64::try_from(d.seconds).unwrap_or(0);
    let nanos = u32::try_from(d.nanos).unwrap_or(0);
    Duration::new(secs, nanos.min(999_999_999))
}
