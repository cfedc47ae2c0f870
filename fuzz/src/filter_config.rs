//! The gateway filter's configuration as Envoy hands it over (`PluginConfig::from_json`),
//! and, on the same JSON bytes, the token route's rewriting of an upstream error body.
//!
//! Checked: an accepted configuration keeps every promise of the validation (required
//! texts present and without control characters, numbers within their bounds, header
//! names usable, routes plain paths); written back out as JSON it parses to the same
//! configuration; `PluginConfig` and `GatewayConfig` agree on a gateway configuration;
//! a realm never breaks out of its quoted string; a rewritten error body is an RFC 6749
//! error with a known code and a description of allowed characters only.

use std::time::Duration;

use bulwark_gateway_logic::config::{
    FailureMode, GatewayConfig, JwksSource, PluginConfig, RateLimitConfig,
};
use bulwark_gateway_logic::oauth::{self, OAuthTokenErrors};
use bulwark_gateway_logic::routes::{PathMatch, RouteRule};
use serde_json::{Value, json};

use crate::fixtures;

/// Checks one plugin configuration (and the same bytes as an error body).
pub fn check(data: &[u8]) {
    match PluginConfig::from_json(data) {
        Ok(PluginConfig::Gateway(config)) => {
            assert_eq!(
                GatewayConfig::from_json(data).as_ref(),
                Ok(&*config),
                "PluginConfig and GatewayConfig disagree"
            );
            check_gateway(&config);
        }
        Ok(PluginConfig::OAuthTokenErrors(errors)) => check_oauth(&errors),
        Err(error) => assert!(!error.problems.is_empty(), "an error without a problem"),
    }
    for status in [400, 401] {
        if let Some(body) = oauth::rewrite_error_body(status, data) {
            check_rewritten_body(&body);
        }
    }
}

fn check_gateway(config: &GatewayConfig) {
    let text = |field: &str, value: &str| {
        assert!(!value.trim().is_empty(), "{field} is blank");
        assert!(!value.chars().any(char::is_control), "{field} {value:?}");
    };
    text("issuer", &config.issuer);
    assert!(!config.audiences.is_empty(), "no audience");
    for audience in &config.audiences {
        text("audience", audience);
    }
    assert!(config.clock_skew_seconds <= 600);
    assert!((256..=64 * 1024).contains(&config.max_token_bytes));
    assert!(config.token_cache_size <= 100_000);
    check_jwks(&config.jwks);
    let headers = &config.identity_headers;
    for name in headers.names() {
        assert!(is_header_name(name), "identity header {name:?}");
    }
    assert_ne!(headers.user_id, headers.roles, "one header for both");
    for rule in &config.public_routes {
        check_route(rule);
    }
    if let Some(limits) = &config.rate_limit {
        check_rate_limit(limits);
    }
    let written = to_json(config).to_string();
    assert_eq!(
        GatewayConfig::from_json(written.as_bytes()).as_ref(),
        Ok(config),
        "written back as {written}"
    );
}

fn check_jwks(jwks: &JwksSource) {
    assert!(!jwks.cluster.trim().is_empty(), "jwks.cluster is blank");
    assert!(jwks.path.starts_with('/'), "jwks.path {:?}", jwks.path);
    assert!(!jwks.authority.trim().is_empty(), "jwks.authority is blank");
    assert!((Duration::from_millis(1)..=Duration::from_secs(60)).contains(&jwks.timeout));
    assert!(jwks.refresh_interval >= Duration::from_secs(1));
    assert!(jwks.refresh_interval <= Duration::from_secs(86_400));
    assert!(jwks.min_refetch_interval >= Duration::from_secs(1));
    assert!(jwks.min_refetch_interval <= jwks.refresh_interval);
}

fn check_rate_limit(limits: &RateLimitConfig) {
    assert!(
        !limits.cluster.trim().is_empty(),
        "rate_limit.cluster is blank"
    );
    assert!(
        !limits.domain.trim().is_empty(),
        "rate_limit.domain is blank"
    );
    assert!((Duration::from_millis(1)..=Duration::from_secs(5)).contains(&limits.timeout));
    for route in &limits.client_ip_routes {
        check_route(&route.route);
        assert!(
            !route.name.trim().is_empty(),
            "a client_ip route without a name"
        );
    }
}

/// A configured route is a plain path: it can match a request exactly.
fn check_route(rule: &RouteRule) {
    let pattern = rule.pattern();
    assert!(pattern.starts_with('/'), "route {pattern:?}");
    assert!(
        !pattern
            .bytes()
            .any(|b| b <= b' ' || b >= 0x7f || matches!(b, b'?' | b'#' | b'%')),
        "route {pattern:?} is not a plain path"
    );
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
        })
}

fn check_oauth(errors: &OAuthTokenErrors) {
    let plan = errors.plan(401, Some("application/json"));
    let challenge = plan
        .set_headers
        .iter()
        .find(|(name, _)| *name == "www-authenticate")
        .map(|(_, value)| value.as_str());
    let Some(realm) = challenge
        .and_then(|value| value.strip_prefix("Basic realm=\""))
        .and_then(|rest| rest.strip_suffix('"'))
    else {
        panic!("401 challenge {challenge:?}");
    };
    assert!(
        !realm
            .chars()
            .any(|c| c.is_control() || c == '"' || c == '\\'),
        "realm {realm:?} escapes its quoted string"
    );
}

fn check_rewritten_body(body: &[u8]) {
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(error) => panic!("rewritten body is not JSON: {error}"),
    };
    let code = value["error"].as_str().unwrap_or_default();
    assert!(oauth::ERROR_CODES.contains(&code), "error {code:?}");
    let description = value["error_description"].as_str().unwrap_or("\"");
    assert!(
        description
            .chars()
            .all(|c| matches!(c, '\x20'..='\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e')),
        "error_description {description:?}"
    );
}

fn mode(mode: FailureMode) -> &'static str {
    match mode {
        FailureMode::Open => "open",
        FailureMode::Closed => "closed",
    }
}

fn route_json(rule: &RouteRule) -> Value {
    match &rule.path {
        PathMatch::Exact(path) => json!({ "path": path }),
        PathMatch::Prefix(prefix) => json!({ "prefix": prefix }),
    }
}

/// The configuration written out in the format it is read from.
fn to_json(config: &GatewayConfig) -> Value {
    let mut value = json!({
        "issuer": config.issuer,
        "audiences": config.audiences,
        "clock_skew_seconds": config.clock_skew_seconds,
        "max_token_bytes": config.max_token_bytes,
        "jwks": {
            "cluster": config.jwks.cluster,
            "path": config.jwks.path,
            "authority": config.jwks.authority,
            "timeout_ms": config.jwks.timeout.as_millis(),
            "refresh_interval_seconds": config.jwks.refresh_interval.as_secs(),
            "min_refetch_interval_seconds": config.jwks.min_refetch_interval.as_secs(),
        },
        "public_routes": config.public_routes.iter().map(route_json).collect::<Vec<_>>(),
        "identity_headers": {
            "user_id": config.identity_headers.user_id,
            "roles": config.identity_headers.roles,
        },
        "token_cache_size": config.token_cache_size,
    });
    if let Some(limits) = &config.rate_limit {
        let routes: Vec<Value> = limits
            .client_ip_routes
            .iter()
            .map(|route| {
                let mut value = route_json(&route.route);
                value["name"] = json!(route.name);
                value["failure_mode"] = json!(mode(route.failure_mode));
                value
            })
            .collect();
        let per_user = match limits.per_user {
            None => json!({ "enabled": false }),
            Some(failure_mode) => json!({ "enabled": true, "failure_mode": mode(failure_mode) }),
        };
        value["rate_limit"] = json!({
            "cluster": limits.cluster,
            "domain": limits.domain,
            "timeout_ms": limits.timeout.as_millis(),
            "client_ip_routes": routes,
            "per_user": per_user,
        });
    }
    value
}

/// The configurations shipped in `envoy/edge.yaml`, and the smallest valid one.
pub fn seeds() -> Vec<crate::Seed> {
    let mut seeds: Vec<crate::Seed> = fixtures::edge_filter_configs()
        .into_iter()
        .enumerate()
        .map(|(i, config)| (format!("edge_yaml_{i}"), config.into_bytes()))
        .collect();
    let minimal =
        json!({"issuer": "bulwark", "audiences": ["bulwark-api"], "jwks": {"cluster": "auth"}});
    seeds.push(("minimal".to_owned(), minimal.to_string().into_bytes()));
    let routes = json!({
        "issuer": "bulwark", "audiences": ["bulwark-api"], "jwks": {"cluster": "auth"},
        "public_routes": [{"path": "/healthz"}, {"prefix": "/public/"}],
        "identity_headers": {"user_id": "x-user", "roles": "x-roles"},
        "rate_limit": {
            "cluster": "ratelimit", "domain": "edge",
            "client_ip_routes": [{"path": "/v1/auth/login", "name": "login", "failure_mode": "closed"}],
            "per_user": {"enabled": false}
        }
    });
    seeds.push((
        "routes_and_limits".to_owned(),
        routes.to_string().into_bytes(),
    ));
    let transcoded = json!({"code": 16, "message": "invalid_client: client authentication failed"});
    seeds.push((
        "transcoded_error".to_owned(),
        transcoded.to_string().into_bytes(),
    ));
    seeds
}
