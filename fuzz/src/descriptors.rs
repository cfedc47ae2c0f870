//! The edge's route decisions and rate-limit descriptors for one request, under a
//! configuration made of fuzzed routes (kept only when the filter accepts it).
//!
//! Checked:
//! - a route a granting rule matches exactly, it also matches under every reading
//!   (`matches` implies `matches_any_reading`), so no public path escapes its limit;
//! - neither reading depends on a query string, nor the restricting one on ASCII case;
//! - `canonical_path` is a fixed point on what it returns (when that holds nothing it
//!   would decode again), and keeps invalid escapes as they are;
//! - `client_ip_from_address` gives back the IP of any socket address Envoy writes;
//! - the check `plan` builds is the one its documentation describes (the first
//!   client-IP route any reading matches, with a known IP; else the user), and the
//!   rate-limit service accepts it as a valid request.

use std::net::{IpAddr, SocketAddr};

use arbitrary::Arbitrary;
use bulwark_gateway_logic::Gateway;
use bulwark_gateway_logic::config::{FailureMode, GatewayConfig};
use bulwark_gateway_logic::ratelimit::{
    self, CLIENT_IP_KEY, ROUTE_KEY, RateLimitSubject, USER_ID_KEY, client_ip_from_address,
};
use bulwark_gateway_logic::routes::{RouteRule, canonical_path};
use bulwark_limiter::lease::DEFAULT_MAX_LEASE_ITEMS;
use bulwark_limiter::{CheckRequest, Descriptor, LeaseItem, LeaseRequest};
use serde_json::{Value, json};

/// A configuration's routes and one request.
#[derive(Debug, Arbitrary)]
pub struct Input {
    public_routes: Vec<Route>,
    client_ip_routes: Vec<Route>,
    domain: Text,
    per_user: Option<bool>,
    path: Path,
    query: Option<String>,
    peer: (IpAddr, u16),
    user: Option<Text>,
}

#[derive(Debug, Arbitrary)]
struct Route {
    prefix: bool,
    pattern: Path,
    name: Option<Text>,
    closed: bool,
}

/// A path from a palette of real routes and tricky spellings, optionally changed, or
/// any text.
#[derive(Debug, Arbitrary)]
enum Path {
    Known(u8),
    Edited { known: u8, at: u16, insert: String },
    Any(String),
}

const PATHS: &[&str] = &[
    "/v1/auth/login",
    "/v1/auth/refresh",
    "/v1/users",
    "/v1/users/me",
    "/v1/oauth2/token",
    "/healthz",
    "/.well-known/jwks.json",
    "/bulwark.auth.v1.AuthService/Login",
    "/bulwark.auth.v1.AuthService/IssueToken",
    "/bulwark.identity.v1.IdentityService/CreateUser",
    "/public/",
    "/v1/auth/login/",
    "//v1/auth/login",
    "/v1/auth/%6Cogin",
    "/v1/AUTH/login;x=1",
    "/v1/x/../auth/login",
    "/v1\\auth\\login",
    "/a/%2e%2e/b",
    "/a%+2b",
    "/",
    "",
];

impl Path {
    fn text(&self) -> String {
        let known = |i: &u8| PATHS[usize::from(*i) % PATHS.len()];
        match self {
            Self::Known(i) => known(i).to_owned(),
            Self::Edited {
                known: i,
                at,
                insert,
            } => {
                let mut path = known(i).to_owned();
                let at = usize::from(*at) % (path.len() + 1);
                if path.is_char_boundary(at) {
                    path.insert_str(at, insert);
                }
                path
            }
            Self::Any(text) => text.clone(),
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Text {
    Typical,
    Any(String),
}

impl Text {
    fn or(&self, typical: &str) -> String {
        match self {
            Self::Typical => typical.to_owned(),
            Self::Any(text) => text.clone(),
        }
    }
}

fn route_json(route: &Route) -> Value {
    let pattern = route.pattern.text();
    let mut value = if route.prefix {
        json!({ "prefix": pattern })
    } else {
        json!({ "path": pattern })
    };
    if let Some(name) = &route.name {
        value["name"] = json!(name.or("/v1/auth/login"));
    }
    value
}

fn config(input: &Input) -> Option<GatewayConfig> {
    let limited: Vec<Value> = input
        .client_ip_routes
        .iter()
        .map(|route| {
            let mut value = route_json(route);
            value["failure_mode"] = json!(if route.closed { "closed" } else { "open" });
            value
        })
        .collect();
    let public: Vec<Value> = input
        .public_routes
        .iter()
        .map(|route| {
            let mut value = route_json(route);
            if let Some(map) = value.as_object_mut() {
                map.remove("name");
            }
            value
        })
        .collect();
    let mut rate_limit = json!({
        "cluster": "ratelimit",
        "domain": input.domain.or("bulwark-edge"),
        "client_ip_routes": limited,
    });
    if let Some(enabled) = input.per_user {
        rate_limit["per_user"] = json!({ "enabled": enabled });
    }
    let config = json!({
        "issuer": "bulwark",
        "audiences": ["bulwark-api"],
        "jwks": { "cluster": "auth" },
        "public_routes": public,
        "rate_limit": rate_limit,
    });
    GatewayConfig::from_json(config.to_string().as_bytes()).ok()
}

/// Checks the routes and descriptors of one request.
pub fn check(input: &Input) {
    let path = input.path.text();
    check_canonical_path(&path);
    check_client_ip(input.peer);
    let Some(config) = config(input) else {
        return;
    };
    let rules = config.public_routes.iter().chain(
        config
            .rate_limit
            .iter()
            .flat_map(|l| l.client_ip_routes.iter().map(|r| &r.route)),
    );
    for rule in rules {
        check_rule(rule, &path, input.query.as_deref());
    }
    // A user id reaches the limiter only from a verified `sub`.
    let user = input
        .user
        .as_ref()
        .map(|user| user.or("0192f0c4-7d4e-7b1a-9f00-000000000001"))
        .filter(|user| {
            crate::fixtures::header_safe(user, false)
                && bulwark_token::Subject::parse(user).is_some()
        });
    let ip = input.peer.0.to_string();
    check_plan(config, &path, &ip, user.as_deref());
}

fn check_rule(rule: &RouteRule, path: &str, query: Option<&str>) {
    let exact = rule.matches(path);
    let any = rule.matches_any_reading(path);
    assert!(
        !exact || any,
        "{rule:?} grants {path:?} but does not limit it under any reading"
    );
    if !path.contains(['?', '#']) {
        let with_query = format!("{path}?{}", query.unwrap_or_default());
        assert_eq!(rule.matches(&with_query), exact, "query changed {path:?}");
        assert_eq!(
            rule.matches_any_reading(&with_query),
            any,
            "query changed {path:?}"
        );
    }
    let lower = path.to_ascii_lowercase();
    assert_eq!(
        rule.matches_any_reading(&lower),
        any,
        "case changed {path:?}"
    );
}

fn is_escape(bytes: &[u8]) -> bool {
    matches!(bytes, [b'%', a, b, ..] if a.is_ascii_hexdigit() && b.is_ascii_hexdigit())
}

fn check_canonical_path(path: &str) {
    let canonical = canonical_path(path);
    if !canonical.contains(['%', '\\', ';']) {
        assert_eq!(
            canonical_path(&canonical),
            canonical,
            "not a fixed point: {path:?}"
        );
    }
    // Without a valid escape there is nothing to decode: every `%` stays, unless a
    // segment holding it is dropped (`..`, `;` parameters).
    let bytes = path.as_bytes();
    let has_escape = (0..bytes.len()).any(|i| is_escape(&bytes[i..]));
    let drops_segments = path.contains(';') || path.split(['/', '\\']).any(|s| s == "..");
    if !has_escape && !drops_segments {
        assert_eq!(
            canonical.matches('%').count(),
            path.matches('%').count(),
            "an invalid escape in {path:?} was decoded: {canonical:?}"
        );
    }
}

fn check_client_ip((ip, port): (IpAddr, u16)) {
    let text = ip.to_string();
    let address = SocketAddr::new(ip, port).to_string();
    assert_eq!(client_ip_from_address(&address), text, "from {address:?}");
    assert_eq!(client_ip_from_address(&text), text, "from the bare IP");
}

fn check_plan(config: GatewayConfig, path: &str, ip: &str, user: Option<&str>) {
    let Some(limits) = config.rate_limit.clone() else {
        return;
    };
    let gateway = Gateway::new(config);
    let first_route = limits
        .client_ip_routes
        .iter()
        .find(|r| r.route.matches_any_reading(path));
    assert_eq!(gateway.limits_by_client_ip(path), first_route.is_some());
    for client_ip in [Some(ip), Some(""), None] {
        let subject = RateLimitSubject {
            path,
            client_ip,
            user_id: user,
        };
        let check = gateway.rate_limit_check(&subject);
        assert_eq!(check, ratelimit::plan(&limits, &subject));
        let expected: Option<(Vec<(&str, &str)>, FailureMode)> = match first_route {
            Some(route) => client_ip.filter(|ip| !ip.is_empty()).map(|ip| {
                (
                    vec![(ROUTE_KEY, route.name.as_str()), (CLIENT_IP_KEY, ip)],
                    route.failure_mode,
                )
            }),
            None => user
                .zip(limits.per_user)
                .map(|(user, mode)| (vec![(USER_ID_KEY, user)], mode)),
        };
        let Some(check) = check else {
            assert!(
                expected.is_none(),
                "no check for {subject:?}, expected {expected:?}"
            );
            continue;
        };
        let Some((entries, failure_mode)) = expected else {
            panic!("unexpected check {check:?} for {subject:?}");
        };
        assert_eq!(check.domain, limits.domain);
        assert_eq!(check.failure_mode, failure_mode);
        let built: Vec<Vec<(&str, &str)>> = check
            .descriptors
            .iter()
            .map(|d| {
                d.iter()
                    .map(|e| (e.key.as_str(), e.value.as_str()))
                    .collect()
            })
            .collect();
        assert_eq!(built, vec![entries]);
        // The rate-limit service must take what the edge sends: a lease call for the
        // request's descriptor (what the filter asks), and the same as a check.
        let descriptors: Vec<Descriptor> = check
            .descriptors
            .iter()
            .map(|d| Descriptor::new(d.iter().map(|e| (e.key.clone(), e.value.clone()))))
            .collect();
        let items = descriptors
            .iter()
            .map(|descriptor| LeaseItem {
                descriptor: descriptor.clone(),
                held: 0,
                spend: 1,
            })
            .collect();
        if let Err(error) = LeaseRequest::new(check.domain.clone(), items, DEFAULT_MAX_LEASE_ITEMS)
        {
            panic!("the rate-limit service refuses the edge's lease call {check:?}: {error}");
        }
        if let Err(error) = CheckRequest::new(check.domain.clone(), descriptors, 1) {
            panic!("the rate-limit service refuses the edge's check {check:?}: {error}");
        }
    }
}

/// Structured target: it starts from an empty corpus (any bytes are an `Input`).
pub fn seeds() -> Vec<crate::Seed> {
    Vec::new()
}
