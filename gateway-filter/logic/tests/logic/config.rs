//! Configuration parsing, defaults and validation messages.

use std::time::Duration;

use bulwark_gateway_logic::ConfigError;
use bulwark_gateway_logic::config::{FailureMode, GatewayConfig};
use bulwark_gateway_logic::routes::RouteRule;
use serde_json::{Value, json};

use crate::support::config_json;

fn parse(value: &Value) -> Result<GatewayConfig, ConfigError> {
    GatewayConfig::from_json(&serde_json::to_vec(value).unwrap())
}

fn problems(value: &Value) -> ConfigError {
    match parse(value) {
        Ok(config) => panic!("configuration should be refused, parsed as {config:?}"),
        Err(e) => e,
    }
}

fn assert_problem(err: &ConfigError, field: &str, reason_part: &str) {
    let problem = err
        .problem(field)
        .unwrap_or_else(|| panic!("no problem reported for `{field}` in: {err}"));
    assert!(
        problem.reason.contains(reason_part),
        "`{field}`: expected {reason_part:?} in {:?}",
        problem.reason
    );
    assert!(
        err.to_string().contains(&format!("`{field}`")),
        "message must name `{field}`: {err}"
    );
}

#[test]
fn minimal_configuration_gets_the_documented_defaults() {
    let config = parse(&config_json()).unwrap();
    assert_eq!(config.clock_skew_seconds, 60);
    assert_eq!(config.max_token_bytes, 8192);
    assert_eq!(config.token_cache_size, 1024);
    assert_eq!(config.jwks.path, "/.well-known/jwks.json");
    assert_eq!(config.jwks.authority, "bulwark_auth");
    assert_eq!(config.jwks.refresh_interval, Duration::from_secs(300));
    assert_eq!(config.jwks.min_refetch_interval, Duration::from_secs(15));
    assert_eq!(config.identity_headers.user_id, "x-bulwark-user-id");
    assert_eq!(config.identity_headers.roles, "x-bulwark-roles");
    assert!(config.rate_limit.is_none());
    assert_eq!(
        config.public_routes,
        vec![
            RouteRule::exact("/v1/auth/login"),
            RouteRule::exact("/v1/auth/refresh"),
            RouteRule::exact("/v1/users"),
            RouteRule::exact("/.well-known/jwks.json"),
            RouteRule::exact("/v1/oauth2/token"),
            RouteRule::exact("/healthz"),
            RouteRule::exact("/bulwark.auth.v1.AuthService/Login"),
            RouteRule::exact("/bulwark.auth.v1.AuthService/Refresh"),
            RouteRule::exact("/bulwark.identity.v1.IdentityService/CreateUser"),
            RouteRule::exact("/bulwark.auth.v1.AuthService/GetJwks"),
            RouteRule::exact("/bulwark.auth.v1.AuthService/IssueToken"),
            RouteRule::exact("/v1/users/verify-email"),
            RouteRule::exact("/bulwark.auth.v1.AuthService/VerifyEmail"),
            RouteRule::exact("/v1/auth/password-reset"),
            RouteRule::exact("/bulwark.auth.v1.AuthService/RequestPasswordReset"),
            RouteRule::exact("/v1/auth/password-reset/confirm"),
            RouteRule::exact("/bulwark.auth.v1.AuthService/ConfirmPasswordReset"),
            RouteRule::exact("/v1/auth/login/mfa"),
            RouteRule::exact("/bulwark.auth.v1.AuthService/LoginMfa"),
        ]
    );
}

#[test]
fn full_configuration_is_read_field_by_field() {
    let config = parse(&json!({
        "issuer": "iss",
        "audiences": ["a", "b"],
        "clock_skew_seconds": 5,
        "max_token_bytes": 4096,
        "jwks": {
            "cluster": "auth", "path": "/keys", "authority": "auth.internal",
            "timeout_ms": 500, "refresh_interval_seconds": 60, "min_refetch_interval_seconds": 10
        },
        "public_routes": [{"prefix": "/public/"}],
        "identity_headers": {"user_id": "x-uid", "roles": "x-roles"},
        "token_cache_size": 0,
        "rate_limit": {
            "cluster": "ratelimit", "domain": "edge", "timeout_ms": 20,
            "client_ip_routes": [
                {"path": "/login", "failure_mode": "closed"},
                {"path": "/pkg.Svc/Login", "name": "login"}
            ],
            "per_user": {"enabled": false}
        }
    }))
    .unwrap();
    assert_eq!(config.audiences, ["a", "b"]);
    assert_eq!(config.jwks.authority, "auth.internal");
    assert_eq!(config.jwks.timeout, Duration::from_millis(500));
    assert_eq!(config.public_routes, vec![RouteRule::prefix("/public/")]);
    assert_eq!(config.token_cache_size, 0);
    let rl = config.rate_limit.unwrap();
    assert_eq!(rl.timeout, Duration::from_millis(20));
    assert_eq!(rl.client_ip_routes[0].failure_mode, FailureMode::Closed);
    assert_eq!(
        rl.client_ip_routes[0].name, "/login",
        "name defaults to the path"
    );
    assert_eq!(
        rl.client_ip_routes[1].failure_mode,
        FailureMode::Open,
        "failure mode defaults to open"
    );
    assert_eq!(rl.client_ip_routes[1].name, "login");
    assert_eq!(rl.per_user, None);
}

#[test]
fn rate_limit_defaults_limit_public_auth_routes_with_login_and_token_failing_closed() {
    let mut value = config_json();
    value["rate_limit"] = json!({"cluster": "ratelimit", "domain": "bulwark"});
    let rl = parse(&value).unwrap().rate_limit.unwrap();
    assert_eq!(rl.timeout, Duration::from_millis(50));
    assert_eq!(rl.per_user, Some(FailureMode::Open));
    let modes: Vec<(&str, &str, FailureMode)> = rl
        .client_ip_routes
        .iter()
        .map(|r| (r.route.pattern(), r.name.as_str(), r.failure_mode))
        .collect();
    assert_eq!(
        modes,
        [
            ("/v1/auth/login", "/v1/auth/login", FailureMode::Closed),
            (
                "/bulwark.auth.v1.AuthService/Login",
                "/v1/auth/login",
                FailureMode::Closed
            ),
            ("/v1/oauth2/token", "/v1/oauth2/token", FailureMode::Closed),
            (
                "/bulwark.auth.v1.AuthService/IssueToken",
                "/v1/oauth2/token",
                FailureMode::Closed
            ),
            ("/v1/auth/refresh", "/v1/auth/refresh", FailureMode::Open),
            (
                "/bulwark.auth.v1.AuthService/Refresh",
                "/v1/auth/refresh",
                FailureMode::Open
            ),
            ("/v1/users", "/v1/users", FailureMode::Open),
            (
                "/bulwark.identity.v1.IdentityService/CreateUser",
                "/v1/users",
                FailureMode::Open
            ),
            (
                "/v1/users/verify-email",
                "/v1/users/verify-email",
                FailureMode::Open
            ),
            (
                "/bulwark.auth.v1.AuthService/VerifyEmail",
                "/v1/users/verify-email",
                FailureMode::Open
            ),
            (
                "/v1/auth/password-reset",
                "/v1/auth/password-reset",
                FailureMode::Open
            ),
            (
                "/bulwark.auth.v1.AuthService/RequestPasswordReset",
                "/v1/auth/password-reset",
                FailureMode::Open
            ),
            (
                "/v1/auth/password-reset/confirm",
                "/v1/auth/password-reset/confirm",
                FailureMode::Open
            ),
            (
                "/bulwark.auth.v1.AuthService/ConfirmPasswordReset",
                "/v1/auth/password-reset/confirm",
                FailureMode::Open
            ),
            (
                "/v1/auth/login/mfa",
                "/v1/auth/login/mfa",
                FailureMode::Closed
            ),
            (
                "/bulwark.auth.v1.AuthService/LoginMfa",
                "/v1/auth/login/mfa",
                FailureMode::Closed
            ),
        ]
    );
}

#[test]
fn missing_required_fields_are_each_named() {
    let err = problems(&json!({}));
    assert_problem(&err, "issuer", "required");
    assert_problem(&err, "audiences", "required");
    assert_problem(&err, "jwks", "required");
}

#[test]
fn empty_issuer_is_refused() {
    let mut value = config_json();
    value["issuer"] = json!("  ");
    assert_problem(&problems(&value), "issuer", "empty");
}

#[test]
fn empty_audience_list_and_empty_audience_are_refused() {
    let mut value = config_json();
    value["audiences"] = json!([]);
    assert_problem(&problems(&value), "audiences", "at least one");
    value["audiences"] = json!(["ok", ""]);
    assert_problem(&problems(&value), "audiences[1]", "empty");
}

#[test]
fn out_of_range_numbers_are_named_with_their_bounds() {
    let mut value = config_json();
    value["clock_skew_seconds"] = json!(3600);
    value["max_token_bytes"] = json!(10);
    value["token_cache_size"] = json!(1_000_000);
    value["jwks"]["timeout_ms"] = json!(0);
    value["jwks"]["refresh_interval_seconds"] = json!(0);
    let err = problems(&value);
    assert_problem(&err, "clock_skew_seconds", "between 0 and 600");
    assert_problem(&err, "max_token_bytes", "between");
    assert_problem(&err, "token_cache_size", "between");
    assert_problem(&err, "jwks.timeout_ms", "between");
    assert_problem(&err, "jwks.refresh_interval_seconds", "between");
}

#[test]
fn min_refetch_interval_longer_than_refresh_interval_is_refused() {
    let mut value = config_json();
    value["jwks"]["refresh_interval_seconds"] = json!(30);
    value["jwks"]["min_refetch_interval_seconds"] = json!(60);
    assert_problem(
        &problems(&value),
        "jwks.min_refetch_interval_seconds",
        "must not exceed",
    );
}

#[test]
fn jwks_without_cluster_or_with_relative_path_is_refused() {
    let mut value = config_json();
    value["jwks"] = json!({"path": "jwks.json"});
    let err = problems(&value);
    assert_problem(&err, "jwks.cluster", "required");
    assert_problem(&err, "jwks.path", "start with '/'");
}

#[test]
fn wrong_json_type_is_reported_with_the_field_path() {
    let mut value = config_json();
    value["jwks"]["timeout_ms"] = json!("fast");
    assert_problem(&problems(&value), "jwks.timeout_ms", "invalid type");
}

#[test]
fn unknown_field_is_reported() {
    let mut value = config_json();
    value["jwks"]["clustr"] = json!("typo");
    let err = problems(&value);
    assert!(err.to_string().contains("clustr"), "{err}");
}

#[test]
fn input_that_is_not_json_is_refused() {
    let err = GatewayConfig::from_json(b"issuer: x").unwrap_err();
    assert_eq!(err.problems.len(), 1);
    assert!(
        err.to_string()
            .starts_with("invalid gateway configuration: "),
        "{err}"
    );
}

#[test]
fn bad_public_routes_are_named_by_index() {
    let mut value = config_json();
    value["public_routes"] = json!([
        {"path": "/ok"},
        {"method": "POST", "path": "/x"},
        {"path": "/a", "prefix": "/b"},
        {},
        {"path": "relative"},
        {"path": "/q?x=1"},
        {"path": "/x", "failure_mode": "open"},
        {"path": "/y", "name": "y"}
    ]);
    let err = problems(&value);
    assert_problem(&err, "public_routes[1].method", "path alone");
    assert_problem(&err, "public_routes[2]", "both");
    assert_problem(&err, "public_routes[3]", "neither");
    assert_problem(&err, "public_routes[4].path", "start with '/'");
    assert_problem(&err, "public_routes[5].path", "query");
    assert_problem(
        &err,
        "public_routes[6].failure_mode",
        "rate_limit.client_ip_routes",
    );
    assert_problem(&err, "public_routes[7].name", "rate_limit.client_ip_routes");
}

#[test]
fn bad_identity_header_names_are_refused() {
    let mut value = config_json();
    value["identity_headers"] = json!({"user_id": "X-User", "roles": "authorization"});
    let err = problems(&value);
    assert_problem(&err, "identity_headers.user_id", "lower-case");
    assert_problem(&err, "identity_headers.roles", "standard HTTP header");
    value["identity_headers"] = json!({"user_id": "x-same", "roles": "x-same"});
    assert_problem(&problems(&value), "identity_headers.roles", "differ");
    value["identity_headers"] = json!({"user_id": ":path"});
    assert_problem(
        &problems(&value),
        "identity_headers.user_id",
        "pseudo-header",
    );
}

#[test]
fn bad_rate_limit_settings_are_named() {
    let mut value = config_json();
    value["rate_limit"] = json!({
        "timeout_ms": 10_000,
        "client_ip_routes": [{"path": "/login", "failure_mode": "sideways"}]
    });
    let err = problems(&value);
    assert_problem(
        &err,
        "rate_limit.client_ip_routes[0].failure_mode",
        "unknown variant",
    );

    value["rate_limit"] =
        json!({"timeout_ms": 10_000, "per_user": {"enabled": false, "failure_mode": "closed"}});
    let err = problems(&value);
    assert_problem(&err, "rate_limit.cluster", "required");
    assert_problem(&err, "rate_limit.domain", "required");
    assert_problem(&err, "rate_limit.timeout_ms", "between 1 and 5000");
    assert_problem(&err, "rate_limit.per_user.failure_mode", "enabled");
}

#[test]
fn rate_limit_values_the_rate_limit_service_would_refuse_are_refused_at_load() {
    // Found by the `descriptors` fuzz target: a 257-byte domain was accepted here and
    // refused by the rate-limit service on every call (so every limited request took
    // its failure mode).
    let mut value = config_json();
    let long_path = format!("/{}", "p".repeat(1024));
    value["rate_limit"] = json!({
        "cluster": "ratelimit",
        "domain": "d".repeat(257),
        "client_ip_routes": [
            {"path": "/v1/auth/login", "name": "n".repeat(1025)},
            {"path": long_path},
        ]
    });
    let err = problems(&value);
    assert_problem(&err, "rate_limit.domain", "at most 256 bytes");
    assert_problem(
        &err,
        "rate_limit.client_ip_routes[0].name",
        "at most 1024 bytes",
    );
    assert_problem(
        &err,
        "rate_limit.client_ip_routes[1].name",
        "the path is the name",
    );

    value["rate_limit"] = json!({
        "cluster": "ratelimit",
        "domain": "d".repeat(256),
        "client_ip_routes": [{"path": format!("/{}", "p".repeat(1023))}]
    });
    assert!(parse(&value).is_ok(), "the limits themselves are allowed");
}

#[test]
fn every_problem_is_reported_at_once() {
    let value = json!({
        "issuer": "",
        "audiences": [],
        "jwks": {"cluster": ""},
        "identity_headers": {"user_id": "Bad Name"}
    });
    let err = problems(&value);
    let fields: Vec<&str> = err.problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "issuer",
            "audiences",
            "jwks.cluster",
            "identity_headers.user_id"
        ]
    );
}

#[test]
fn a_method_on_a_route_is_refused_with_the_reason() {
    let mut value = config_json();
    value["rate_limit"] = json!({
        "cluster": "ratelimit", "domain": "bulwark",
        "client_ip_routes": [{"method": "*", "path": "/login"}]
    });
    let err = problems(&value);
    assert_problem(
        &err,
        "rate_limit.client_ip_routes[0].method",
        "whatever the method",
    );
}

#[test]
fn no_default_public_route_is_a_prefix() {
    // A prefix (such as the former `OPTIONS /`) would make whole trees public.
    let config = parse(&config_json()).unwrap();
    assert!(
        config
            .public_routes
            .iter()
            .all(|r| matches!(r.path, bulwark_gateway_logic::routes::PathMatch::Exact(_))),
        "{:?}",
        config.public_routes
    );
}

#[test]
fn plugin_config_selects_the_token_endpoint_rewriter_by_its_key() {
    use bulwark_gateway_logic::PluginConfig;
    use bulwark_gateway_logic::oauth::OAuthTokenErrors;

    let oauth = PluginConfig::from_json(br#"{"oauth_token_errors": {}}"#).unwrap();
    assert_eq!(
        oauth,
        PluginConfig::OAuthTokenErrors(OAuthTokenErrors {
            realm: "bulwark".to_owned()
        })
    );
    let err = PluginConfig::from_json(br#"{"oauth_token_errors": {"realms": "x"}}"#).unwrap_err();
    assert!(err.to_string().contains("oauth_token_errors"), "{err}");
    let gateway = PluginConfig::from_json(&serde_json::to_vec(&config_json()).unwrap()).unwrap();
    assert!(matches!(gateway, PluginConfig::Gateway(_)));
}

#[test]
fn revocation_is_off_unless_configured_and_gets_its_defaults() {
    assert!(parse(&config_json()).unwrap().revocation.is_none());
    let mut value = config_json();
    value["revocation"] = json!({"cluster": "auth"});
    let source = parse(&value).unwrap().revocation.unwrap();
    assert_eq!(source.cluster, "auth");
    assert_eq!(source.interval, Duration::from_secs(1));
    assert_eq!(source.timeout, Duration::from_secs(2));
    assert_eq!(source.max_entries, 262_144);
}

#[test]
fn revocation_settings_out_of_range_are_each_named() {
    let mut value = config_json();
    value["revocation"] = json!({
        "interval_ms": 10, "timeout_ms": 0, "max_entries": 0
    });
    let err = problems(&value);
    assert_problem(&err, "revocation.cluster", "required");
    assert_problem(&err, "revocation.interval_ms", "between 100 and 60000");
    assert_problem(&err, "revocation.timeout_ms", "between 1 and");
    assert_problem(&err, "revocation.max_entries", "between 1 and");
    value["revocation"] = json!({"cluster": "auth", "every_ms": 5});
    assert!(parse(&value).is_err(), "an unknown field is refused");
}
