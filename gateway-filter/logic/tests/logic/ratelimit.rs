//! Rate-limit descriptors and the headers built from the service's answer.

use std::time::Duration;

use bulwark_gateway_logic::Gateway;
use bulwark_gateway_logic::config::{FailureMode, GatewayConfig};
use bulwark_gateway_logic::ratelimit::{
    DescriptorEntry, DescriptorStatus, LimitUnit, RateLimitSubject, RateLimitVerdict,
    client_ip_from_address, on_failure, refusal, response_headers,
};
use serde_json::json;

use crate::support::config_json;

fn gateway() -> Gateway {
    let mut value = config_json();
    value["rate_limit"] = json!({"cluster": "ratelimit", "domain": "bulwark"});
    Gateway::new(GatewayConfig::from_json(&serde_json::to_vec(&value).unwrap()).unwrap())
}

fn subject<'a>(path: &'a str, ip: Option<&'a str>, user: Option<&'a str>) -> RateLimitSubject<'a> {
    RateLimitSubject {
        path,
        client_ip: ip,
        user_id: user,
    }
}

fn entries(pairs: &[(&str, &str)]) -> Vec<DescriptorEntry> {
    pairs
        .iter()
        .map(|(k, v)| DescriptorEntry {
            key: (*k).to_owned(),
            value: (*v).to_owned(),
        })
        .collect()
}

#[test]
fn login_is_limited_per_route_and_client_ip_and_fails_closed() {
    let check = gateway()
        .rate_limit_check(&subject("/v1/auth/login", Some("203.0.113.7"), None))
        .unwrap();
    assert_eq!(check.domain, "bulwark");
    assert_eq!(check.cluster, "ratelimit");
    assert_eq!(check.timeout, Duration::from_millis(50));
    assert_eq!(check.failure_mode, FailureMode::Closed);
    assert_eq!(
        check.descriptors,
        vec![entries(&[
            ("route", "/v1/auth/login"),
            ("client_ip", "203.0.113.7")
        ])]
    );
}

#[test]
fn transcoded_grpc_login_shares_the_rest_login_counter() {
    let check = gateway()
        .rate_limit_check(&subject(
            "/bulwark.auth.v1.AuthService/Login",
            Some("203.0.113.7"),
            None,
        ))
        .unwrap();
    assert_eq!(
        check.descriptors,
        vec![entries(&[
            ("route", "/v1/auth/login"),
            ("client_ip", "203.0.113.7")
        ])]
    );
    assert_eq!(check.failure_mode, FailureMode::Closed);
}

#[test]
fn query_string_does_not_split_the_route_counter() {
    let check = gateway()
        .rate_limit_check(&subject("/v1/auth/refresh?x=1", Some("203.0.113.7"), None))
        .unwrap();
    assert_eq!(check.descriptors[0][0].value, "/v1/auth/refresh");
    assert_eq!(check.failure_mode, FailureMode::Open);
}

#[test]
fn bearer_request_is_limited_per_user() {
    let check = gateway()
        .rate_limit_check(&subject(
            "/v1/users/me",
            Some("203.0.113.7"),
            Some("user-42"),
        ))
        .unwrap();
    assert_eq!(check.descriptors, vec![entries(&[("user_id", "user-42")])]);
    assert_eq!(check.failure_mode, FailureMode::Open);
}

#[test]
fn unlimited_public_route_gets_no_descriptor() {
    assert_eq!(
        gateway().rate_limit_check(&subject("/healthz", Some("203.0.113.7"), None)),
        None
    );
}

#[test]
fn public_route_without_client_ip_gets_no_shared_bucket() {
    assert_eq!(
        gateway().rate_limit_check(&subject("/v1/auth/login", None, None)),
        None
    );
}

#[test]
fn no_rate_limit_config_means_no_check() {
    let gateway = Gateway::new(crate::support::config());
    assert_eq!(
        gateway.rate_limit_check(&subject("/v1/users/me", None, Some("u"))),
        None
    );
}

#[test]
fn client_ip_is_taken_from_envoy_source_address() {
    assert_eq!(client_ip_from_address("203.0.113.7:51234"), "203.0.113.7");
    assert_eq!(client_ip_from_address("[2001:db8::1]:443"), "2001:db8::1");
    assert_eq!(client_ip_from_address("2001:db8::1"), "2001:db8::1");
    assert_eq!(client_ip_from_address("203.0.113.7"), "203.0.113.7");
}

fn over_limit() -> RateLimitVerdict {
    RateLimitVerdict {
        over_limit: true,
        statuses: vec![DescriptorStatus {
            over_limit: true,
            limit: Some((10, LimitUnit::Minute)),
            remaining: 0,
            reset_after: Some(Duration::from_millis(41_200)),
        }],
    }
}

#[test]
fn over_limit_answer_becomes_429_with_retry_after_and_ratelimit_headers() {
    let reply = refusal(&over_limit()).expect("over limit must be refused");
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("retry-after"), Some("42"));
    assert_eq!(reply.header("ratelimit-limit"), Some("10"));
    assert_eq!(reply.header("ratelimit-remaining"), Some("0"));
    assert_eq!(reply.header("ratelimit-reset"), Some("42"));
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["code"], 8);
}

#[test]
fn allowed_answer_carries_remaining_without_retry_after() {
    let verdict = RateLimitVerdict {
        over_limit: false,
        statuses: vec![DescriptorStatus {
            over_limit: false,
            limit: Some((100, LimitUnit::Second)),
            remaining: 97,
            reset_after: None,
        }],
    };
    assert!(refusal(&verdict).is_none());
    let headers = response_headers(&verdict);
    assert_eq!(
        headers,
        vec![
            ("ratelimit-limit".to_owned(), "100".to_owned()),
            ("ratelimit-remaining".to_owned(), "97".to_owned()),
            ("ratelimit-reset".to_owned(), "1".to_owned())
        ]
    );
}

#[test]
fn tightest_status_decides_the_headers() {
    let verdict = RateLimitVerdict {
        over_limit: false,
        statuses: vec![
            DescriptorStatus {
                over_limit: false,
                limit: Some((100, LimitUnit::Second)),
                remaining: 50,
                reset_after: None,
            },
            DescriptorStatus {
                over_limit: false,
                limit: Some((10, LimitUnit::Minute)),
                remaining: 3,
                reset_after: Some(Duration::from_secs(20)),
            },
        ],
    };
    let headers = response_headers(&verdict);
    assert!(
        headers.contains(&("ratelimit-remaining".to_owned(), "3".to_owned())),
        "{headers:?}"
    );
    assert!(
        headers.contains(&("ratelimit-reset".to_owned(), "20".to_owned())),
        "{headers:?}"
    );
}

#[test]
fn failure_mode_decides_whether_a_failed_check_refuses_the_request() {
    assert!(on_failure(FailureMode::Open).is_none());
    let reply = on_failure(FailureMode::Closed).unwrap();
    assert_eq!(reply.status, 503);
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["code"], 14);
}

#[test]
fn unit_numbers_follow_the_envoy_proto() {
    assert_eq!(LimitUnit::from_proto(2), LimitUnit::Minute);
    assert_eq!(LimitUnit::from_proto(7), LimitUnit::Week);
    assert_eq!(LimitUnit::from_proto(99), LimitUnit::Unknown);
}

#[test]
fn login_under_any_reading_of_its_path_is_limited_per_client_ip_even_with_a_token() {
    for path in [
        "/bulwark.auth.v1.AuthService/Login/",
        "/bulwark.auth.v1.AuthService/login",
        "/bulwark.auth.v1.AuthService/%4Cogin",
        "/bulwark.auth.v1.AuthService/Login;x",
        "/v1/auth//login",
        "/v1/auth/x/../login",
    ] {
        let check = gateway()
            .rate_limit_check(&subject(path, Some("203.0.113.7"), Some("user-42")))
            .unwrap_or_else(|| panic!("{path}: no limit"));
        assert_eq!(
            check.descriptors,
            vec![entries(&[
                ("route", "/v1/auth/login"),
                ("client_ip", "203.0.113.7")
            ])],
            "{path}"
        );
        assert_eq!(check.failure_mode, FailureMode::Closed, "{path}");
        assert!(gateway().limits_by_client_ip(path), "{path}");
    }
}

#[test]
fn token_endpoint_is_limited_per_client_ip_in_both_forms_and_fails_closed() {
    for path in [
        "/v1/oauth2/token",
        "/bulwark.auth.v1.AuthService/IssueToken",
    ] {
        let check = gateway()
            .rate_limit_check(&subject(path, Some("203.0.113.7"), None))
            .unwrap_or_else(|| panic!("{path}: no limit"));
        assert_eq!(
            check.descriptors,
            vec![entries(&[
                ("route", "/v1/oauth2/token"),
                ("client_ip", "203.0.113.7")
            ])],
            "{path}"
        );
        assert_eq!(check.failure_mode, FailureMode::Closed, "{path}");
    }
}

#[test]
fn public_account_routes_are_limited_per_client_ip_in_both_forms() {
    for (rest, grpc, mode) in [
        (
            "/v1/users/verify-email",
            "/bulwark.auth.v1.AuthService/VerifyEmail",
            FailureMode::Open,
        ),
        (
            "/v1/auth/password-reset",
            "/bulwark.auth.v1.AuthService/RequestPasswordReset",
            FailureMode::Open,
        ),
        (
            "/v1/auth/password-reset/confirm",
            "/bulwark.auth.v1.AuthService/ConfirmPasswordReset",
            FailureMode::Open,
        ),
        (
            "/v1/auth/login/mfa",
            "/bulwark.auth.v1.AuthService/LoginMfa",
            FailureMode::Closed,
        ),
    ] {
        for path in [rest, grpc] {
            let check = gateway()
                .rate_limit_check(&subject(path, Some("203.0.113.7"), None))
                .unwrap_or_else(|| panic!("{path}: no limit"));
            assert_eq!(
                check.descriptors,
                vec![entries(&[("route", rest), ("client_ip", "203.0.113.7")])],
                "{path}: REST and gRPC forms must share the REST path's counter"
            );
            assert_eq!(check.failure_mode, mode, "{path}");
        }
    }
}
