//! Messages survive an encode/decode round trip, and the presence choices made
//! for JSON show on the wire.

use bulwark_proto::audit::v1::{AppendEventsRequest, AuditEvent, Outcome};
use bulwark_proto::auth::v1::{Jwk, Jwks, TokenPair};
use bulwark_proto::authz::v1::CheckResponse;
use bulwark_proto::envoy::config::core::v3::HeaderValue;
use bulwark_proto::envoy::service::ratelimit::v3::RateLimitResponse;
use bulwark_proto::envoy::service::ratelimit::v3::rate_limit_response::{
    Code, DescriptorStatus, RateLimit, rate_limit::Unit,
};
use bulwark_proto::identity::v1::User;
use prost::Message;
use prost_types::{Duration, Timestamp};

fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(message: &M) {
    let bytes = message.encode_to_vec();
    let decoded = M::decode(bytes.as_slice())
        .unwrap_or_else(|err| panic!("{message:?} encoded to bytes that do not decode: {err}"));
    assert_eq!(&decoded, message, "round trip changed the message");
}

#[test]
fn service_messages_round_trip() {
    round_trip(&User {
        id: "0190b6a4-7c1e-7c3a-9d55-3a1f3e0c2b11".to_owned(),
        email: "ada@example.com".to_owned(),
        display_name: "Ada".to_owned(),
        created_at: Some(Timestamp {
            seconds: 1_735_689_600,
            nanos: 123_000_000,
        }),
        active: true,
        email_verified: true,
        mfa_enabled: false,
    });
    round_trip(&TokenPair {
        access_token: "eyJ.header.sig".to_owned(),
        refresh_token: "opaque".to_owned(),
        token_type: "Bearer".to_owned(),
        expires_in: 900,
    });
    round_trip(&Jwks {
        keys: vec![Jwk {
            kid: "k1".to_owned(),
            kty: "OKP".to_owned(),
            alg: "EdDSA".to_owned(),
            r#use: "sig".to_owned(),
            crv: Some("Ed25519".to_owned()),
            x: Some("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo".to_owned()),
            ..Jwk::default()
        }],
    });
    round_trip(&AppendEventsRequest {
        events: vec![AuditEvent {
            id: "0190b6a4-7c1e-7c3a-9d55-3a1f3e0c2b12".to_owned(),
            occurred_at: Some(Timestamp {
                seconds: 1_735_689_601,
                nanos: 0,
            }),
            service: "auth".to_owned(),
            actor_id: String::new(),
            action: "auth.login".to_owned(),
            target: "user:unknown".to_owned(),
            outcome: Outcome::Failure.into(),
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".to_owned(),
            details: r#"{"reason":"bad_credentials"}"#.to_owned(),
        }],
    });
}

#[test]
fn ratelimit_response_round_trips() {
    round_trip(&RateLimitResponse {
        overall_code: Code::OverLimit.into(),
        statuses: vec![DescriptorStatus {
            code: Code::OverLimit.into(),
            current_limit: Some(RateLimit {
                name: "public-auth".to_owned(),
                requests_per_unit: 10,
                unit: Unit::Minute.into(),
            }),
            limit_remaining: 0,
            duration_until_reset: Some(Duration {
                seconds: 42,
                nanos: 0,
            }),
        }],
        response_headers_to_add: vec![HeaderValue {
            key: "retry-after".to_owned(),
            value: "42".to_owned(),
            raw_value: Vec::new(),
        }],
        ..RateLimitResponse::default()
    });
}

#[test]
fn check_response_keeps_a_false_answer_on_the_wire() {
    let denied = CheckResponse {
        allowed: Some(false),
    };
    assert_eq!(
        denied.encode_to_vec(),
        [0x08, 0x00],
        "`allowed: false` must be encoded (field presence) so JSON shows it"
    );
    round_trip(&denied);
}

#[test]
fn jwk_leaves_out_members_of_other_key_types() {
    let okp = Jwk {
        kid: "k1".to_owned(),
        kty: "OKP".to_owned(),
        alg: "EdDSA".to_owned(),
        r#use: "sig".to_owned(),
        crv: Some("Ed25519".to_owned()),
        x: Some("x".to_owned()),
        ..Jwk::default()
    };
    let decoded = Jwk::decode(okp.encode_to_vec().as_slice()).expect("a Jwk decodes");
    assert_eq!(
        (decoded.y, decoded.n, decoded.e),
        (None, None, None),
        "an OKP key must not carry EC/RSA members"
    );
}
