//! The rate-limit service call in protobuf: a [`RateLimitCheck`] encoded as
//! `envoy.service.ratelimit.v3.RateLimitRequest`, and the `RateLimitResponse` read back
//! into a [`RateLimitVerdict`]. Pure functions, tested natively.

use std::time::Duration;

use bulwark_gateway_logic::ratelimit::{
    DescriptorStatus, LimitUnit, RateLimitCheck, RateLimitVerdict,
};
use bulwark_proto::envoy::extensions::common::ratelimit::v3::{
    RateLimitDescriptor, rate_limit_descriptor,
};
use bulwark_proto::envoy::service::ratelimit::v3::{
    RateLimitRequest, RateLimitResponse, rate_limit_response,
};
use prost::Message;

/// gRPC service of the call.
pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
/// gRPC method of the call.
pub const METHOD: &str = "ShouldRateLimit";

/// The serialized `RateLimitRequest` for a check.
pub fn encode(check: &RateLimitCheck) -> Vec<u8> {
    RateLimitRequest {
        domain: check.domain.clone(),
        descriptors: check
            .descriptors
            .iter()
            .map(|entries| RateLimitDescriptor {
                entries: entries
                    .iter()
                    .map(|e| rate_limit_descriptor::Entry {
                        key: e.key.clone(),
                        value: e.value.clone(),
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        hits_addend: check.hits_addend,
    }
    .encode_to_vec()
}

/// Reads a serialized `RateLimitResponse`.
pub fn decode(bytes: &[u8]) -> Result<RateLimitVerdict, prost::DecodeError> {
    let response = RateLimitResponse::decode(bytes)?;
    let over = rate_limit_response::Code::OverLimit as i32;
    Ok(RateLimitVerdict {
        over_limit: response.overall_code == over,
        statuses: response
            .statuses
            .iter()
            .map(|s| DescriptorStatus {
                over_limit: s.code == over,
                limit: s
                    .current_limit
                    .as_ref()
                    .map(|l| (l.requests_per_unit, LimitUnit::from_proto(l.unit))),
                remaining: s.limit_remaining,
                reset_after: s.duration_until_reset.as_ref().map(|d| {
                    let secs = u64::try_from(d.seconds).unwrap_or(0);
                    let nanos = u32::try_from(d.nanos).unwrap_or(0);
                    Duration::new(secs, nanos.min(999_999_999))
                }),
            })
            .collect(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use bulwark_gateway_logic::FailureMode;
    use bulwark_gateway_logic::ratelimit::DescriptorEntry;

    use super::*;

    #[test]
    fn check_is_encoded_as_a_rate_limit_request() {
        let check = RateLimitCheck {
            domain: "bulwark".to_owned(),
            descriptors: vec![vec![
                DescriptorEntry {
                    key: "route".to_owned(),
                    value: "/v1/auth/login".to_owned(),
                },
                DescriptorEntry {
                    key: "client_ip".to_owned(),
                    value: "203.0.113.7".to_owned(),
                },
            ]],
            hits_addend: 1,
            cluster: "ratelimit".to_owned(),
            timeout: Duration::from_millis(50),
            failure_mode: FailureMode::Closed,
        };
        let request = RateLimitRequest::decode(encode(&check).as_slice()).unwrap();
        assert_eq!(request.domain, "bulwark");
        assert_eq!(request.hits_addend, 1);
        let entries: Vec<(&str, &str)> = request.descriptors[0]
            .entries
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str()))
            .collect();
        assert_eq!(
            entries,
            [("route", "/v1/auth/login"), ("client_ip", "203.0.113.7")]
        );
    }

    #[test]
    fn over_limit_response_is_read_with_limit_and_reset() {
        let response = RateLimitResponse {
            overall_code: rate_limit_response::Code::OverLimit as i32,
            statuses: vec![rate_limit_response::DescriptorStatus {
                code: rate_limit_response::Code::OverLimit as i32,
                current_limit: Some(rate_limit_response::RateLimit {
                    requests_per_unit: 10,
                    unit: rate_limit_response::rate_limit::Unit::Minute as i32,
                    ..Default::default()
                }),
                limit_remaining: 0,
                duration_until_reset: Some(prost_types::Duration {
                    seconds: 41,
                    nanos: 500_000_000,
                }),
            }],
            ..Default::default()
        };
        let verdict = decode(&response.encode_to_vec()).unwrap();
        assert!(verdict.over_limit);
        assert_eq!(
            verdict.statuses,
            vec![DescriptorStatus {
                over_limit: true,
                limit: Some((10, LimitUnit::Minute)),
                remaining: 0,
                reset_after: Some(Duration::from_millis(41_500)),
            }]
        );
    }

    #[test]
    fn garbage_response_is_a_decode_error() {
        assert!(decode(&[0xff, 0xff, 0xff]).is_err());
    }
}
