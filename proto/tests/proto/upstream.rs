//! The hand-written Envoy and googleapis subsets keep the upstream packages,
//! names and numbers, and the descriptor set is self-contained.

use crate::descriptor;
use bulwark_proto::envoy::extensions::common::ratelimit::v3::{
    RateLimitDescriptor, rate_limit_descriptor::Entry,
};
use bulwark_proto::envoy::service::ratelimit::v3::RateLimitRequest;
use prost::Message;
use prost_types::FileDescriptorSet;

/// Asserts that `message` has exactly the listed fields with the listed numbers.
fn assert_fields(set: &FileDescriptorSet, message: &str, expected: &[(&str, i32)]) {
    let descriptor = descriptor::message(set, message);
    let mut actual: Vec<_> = descriptor
        .field
        .iter()
        .map(|f| (f.name().to_owned(), f.number()))
        .collect();
    let mut expected: Vec<_> = expected
        .iter()
        .map(|(name, number)| ((*name).to_owned(), *number))
        .collect();
    actual.sort();
    expected.sort();
    assert_eq!(
        actual, expected,
        "{message} must keep the upstream field names and numbers"
    );
}

/// Asserts that `enumeration` has exactly the listed values.
fn assert_values(set: &FileDescriptorSet, enumeration: &str, expected: &[(&str, i32)]) {
    let descriptor = descriptor::enumeration(set, enumeration);
    let actual: Vec<_> = descriptor
        .value
        .iter()
        .map(|v| (v.name().to_owned(), v.number()))
        .collect();
    let expected: Vec<_> = expected
        .iter()
        .map(|(name, number)| ((*name).to_owned(), *number))
        .collect();
    assert_eq!(
        actual, expected,
        "{enumeration} must keep the upstream values"
    );
}

#[test]
fn ratelimit_protocol_matches_upstream_envoy_numbers() {
    let set = descriptor::schema();
    assert_fields(
        &set,
        "envoy.service.ratelimit.v3.RateLimitRequest",
        &[("domain", 1), ("descriptors", 2), ("hits_addend", 3)],
    );
    assert_fields(
        &set,
        "envoy.service.ratelimit.v3.RateLimitResponse",
        &[
            ("overall_code", 1),
            ("statuses", 2),
            ("response_headers_to_add", 3),
            ("request_headers_to_add", 4),
            ("raw_body", 5),
            ("dynamic_metadata", 6),
        ],
    );
    assert_fields(
        &set,
        "envoy.service.ratelimit.v3.RateLimitResponse.RateLimit",
        &[("name", 3), ("requests_per_unit", 1), ("unit", 2)],
    );
    assert_fields(
        &set,
        "envoy.service.ratelimit.v3.RateLimitResponse.DescriptorStatus",
        &[
            ("code", 1),
            ("current_limit", 2),
            ("limit_remaining", 3),
            ("duration_until_reset", 4),
        ],
    );
    assert_values(
        &set,
        "envoy.service.ratelimit.v3.RateLimitResponse.Code",
        &[("UNKNOWN", 0), ("OK", 1), ("OVER_LIMIT", 2)],
    );
    assert_values(
        &set,
        "envoy.service.ratelimit.v3.RateLimitResponse.RateLimit.Unit",
        &[
            ("UNKNOWN", 0),
            ("SECOND", 1),
            ("MINUTE", 2),
            ("HOUR", 3),
            ("DAY", 4),
            ("MONTH", 5),
            ("YEAR", 6),
        ],
    );
    assert_fields(
        &set,
        "envoy.extensions.common.ratelimit.v3.RateLimitDescriptor",
        &[("entries", 1), ("limit", 2)],
    );
    assert_fields(
        &set,
        "envoy.extensions.common.ratelimit.v3.RateLimitDescriptor.Entry",
        &[("key", 1), ("value", 2)],
    );
    assert_fields(
        &set,
        "envoy.extensions.common.ratelimit.v3.RateLimitDescriptor.RateLimitOverride",
        &[("requests_per_unit", 1), ("unit", 2)],
    );
    assert_values(
        &set,
        "envoy.type.v3.RateLimitUnit",
        &[
            ("UNKNOWN", 0),
            ("SECOND", 1),
            ("MINUTE", 2),
            ("HOUR", 3),
            ("DAY", 4),
        ],
    );
    assert_fields(
        &set,
        "envoy.config.core.v3.HeaderValue",
        &[("key", 1), ("value", 2), ("raw_value", 3)],
    );
}

#[test]
fn ratelimit_service_has_the_path_envoy_calls() {
    let set = descriptor::schema();
    let method = set
        .file
        .iter()
        .filter(|f| f.package() == "envoy.service.ratelimit.v3")
        .flat_map(|f| &f.service)
        .filter(|s| s.name() == "RateLimitService")
        .flat_map(|s| &s.method)
        .find(|m| m.name() == "ShouldRateLimit")
        .expect("envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit is missing");
    assert_eq!(
        method.input_type(),
        ".envoy.service.ratelimit.v3.RateLimitRequest"
    );
    assert_eq!(
        method.output_type(),
        ".envoy.service.ratelimit.v3.RateLimitResponse"
    );
}

#[test]
fn rate_limit_request_encodes_to_the_upstream_bytes() {
    let request = RateLimitRequest {
        domain: "b".to_owned(),
        descriptors: vec![RateLimitDescriptor {
            entries: vec![Entry {
                key: "k".to_owned(),
                value: "v".to_owned(),
            }],
            limit: None,
        }],
        hits_addend: 1,
    };
    // Worked out by hand from upstream rls.proto / ratelimit.proto:
    // domain(1,LEN)="b"; descriptors(2,LEN){ entries(1,LEN){ key(1)="k", value(2)="v" } }; hits_addend(3,VARINT)=1
    let expected = [
        0x0a, 0x01, b'b', 0x12, 0x08, 0x0a, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v', 0x18, 0x01,
    ];
    assert_eq!(
        request.encode_to_vec(),
        expected,
        "RateLimitRequest does not encode like Envoy's"
    );
}

#[test]
fn google_api_http_matches_upstream_googleapis_numbers() {
    let set = descriptor::schema();
    assert_fields(
        &set,
        "google.api.HttpRule",
        &[
            ("selector", 1),
            ("get", 2),
            ("put", 3),
            ("post", 4),
            ("delete", 5),
            ("patch", 6),
            ("body", 7),
            ("custom", 8),
            ("additional_bindings", 11),
            ("response_body", 12),
        ],
    );
    assert_fields(
        &set,
        "google.api.CustomHttpPattern",
        &[("kind", 1), ("path", 2)],
    );
    let extension = set
        .file
        .iter()
        .filter(|f| f.name() == "google/api/annotations.proto")
        .flat_map(|f| &f.extension)
        .find(|e| e.name() == "http")
        .expect("google/api/annotations.proto must declare the `http` extension");
    assert_eq!(
        extension.number(),
        72_295_728,
        "google.api.http extension number"
    );
    assert_eq!(extension.extendee(), ".google.protobuf.MethodOptions");
    assert_eq!(extension.type_name(), ".google.api.HttpRule");
}

#[test]
fn descriptor_set_contains_every_import() {
    let set = descriptor::schema();
    let names: Vec<_> = set.file.iter().map(|f| f.name()).collect();
    for file in &set.file {
        for dependency in &file.dependency {
            assert!(
                names.contains(&dependency.as_str()),
                "{} imports {dependency}, which is missing from FILE_DESCRIPTOR_SET \
                 (Envoy's transcoder needs include_imports semantics)",
                file.name()
            );
        }
    }
    for required in [
        "google/api/annotations.proto",
        "google/api/http.proto",
        "google/protobuf/descriptor.proto",
        "google/protobuf/timestamp.proto",
    ] {
        assert!(
            names.contains(&required),
            "{required} is missing from FILE_DESCRIPTOR_SET; files are {names:?}"
        );
    }
}

#[test]
fn service_name_constants_name_services_in_the_descriptor() {
    let set = descriptor::schema();
    let services: Vec<String> = set
        .file
        .iter()
        .flat_map(|f| {
            f.service
                .iter()
                .map(|s| format!("{}.{}", f.package(), s.name()))
        })
        .collect();
    let constants = bulwark_proto::BULWARK_SERVICES.iter().chain([
        &bulwark_proto::envoy::service::ratelimit::v3::SERVICE_NAME,
        &bulwark_proto::ratelimit::v1::SERVICE_NAME,
    ]);
    for constant in constants {
        assert!(
            services.iter().any(|s| s == constant),
            "service name constant {constant} is not a service in the descriptor ({services:?})"
        );
    }
    assert_eq!(
        services.len(),
        bulwark_proto::BULWARK_SERVICES.len() + 2,
        "every service must have a name constant: {services:?}"
    );
}

#[cfg(feature = "server")]
#[test]
fn service_name_constants_match_the_generated_servers() {
    use bulwark_proto::{audit, auth, authz, envoy, identity, ratelimit};
    let pairs = [
        (
            identity::v1::SERVICE_NAME,
            identity::v1::identity_service_server::SERVICE_NAME,
        ),
        (
            auth::v1::SERVICE_NAME,
            auth::v1::auth_service_server::SERVICE_NAME,
        ),
        (
            authz::v1::SERVICE_NAME,
            authz::v1::authz_service_server::SERVICE_NAME,
        ),
        (
            audit::v1::SERVICE_NAME,
            audit::v1::audit_service_server::SERVICE_NAME,
        ),
        (
            envoy::service::ratelimit::v3::SERVICE_NAME,
            envoy::service::ratelimit::v3::rate_limit_service_server::SERVICE_NAME,
        ),
        (
            ratelimit::v1::SERVICE_NAME,
            ratelimit::v1::lease_service_server::SERVICE_NAME,
        ),
    ];
    for (ours, generated) in pairs {
        assert_eq!(ours, generated, "module SERVICE_NAME differs from tonic's");
    }
}
