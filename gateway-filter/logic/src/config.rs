//! The plugin configuration Envoy hands the filter: JSON parsed with serde, then validated
//! so that every problem is reported at once, each with the field it concerns.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::oauth::OAuthTokenErrors;
use crate::routes::{PathMatch, RouteRule};

/// Default tolerated clock difference between the issuer and this proxy.
pub const DEFAULT_CLOCK_SKEW_SECONDS: u64 = 60;
/// Default ceiling on a token's length, checked before any parsing.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Default number of verified tokens remembered per worker.
pub const DEFAULT_TOKEN_CACHE_SIZE: usize = 1024;
/// Default path of the JWKS document on the JWKS cluster.
pub const DEFAULT_JWKS_PATH: &str = "/.well-known/jwks.json";
/// Default deadline of one JWKS fetch.
pub const DEFAULT_JWKS_TIMEOUT_MS: u64 = 2_000;
/// Default interval between periodic JWKS fetches.
pub const DEFAULT_JWKS_REFRESH_SECONDS: u64 = 300;
/// Default minimum interval between fetches caused by unknown `kid`s or failed fetches.
pub const DEFAULT_JWKS_MIN_REFETCH_SECONDS: u64 = 15;
/// Default header carrying the verified user id upstream.
pub const DEFAULT_USER_ID_HEADER: &str = "x-bulwark-user-id";
/// Default header carrying the verified roles upstream (comma separated).
pub const DEFAULT_ROLES_HEADER: &str = "x-bulwark-roles";
/// Default deadline of one rate-limit call; the limiter sits on every request's path.
pub const DEFAULT_RATE_LIMIT_TIMEOUT_MS: u64 = 50;
/// Default slots of the lease table: room for this many leased descriptors at once.
pub const DEFAULT_LEASE_SLOTS: u64 = 16_384;
/// Default interval of the batched lease renewals. A renewal starts when half a lease is
/// left, 100 ms of hits at 100 per second with the service's default lease size, so it
/// lands long before the lease runs out.
pub const DEFAULT_RENEW_INTERVAL_MS: u64 = 25;

/// Default interval between fetches of the revoked sessions.
pub const DEFAULT_REVOCATION_INTERVAL_MS: u64 = 1_000;
/// Default deadline of one fetch of the revoked sessions.
pub const DEFAULT_REVOCATION_TIMEOUT_MS: u64 = 2_000;
/// Default bound on the revoked sessions held (24 bytes each in shared data).
pub const DEFAULT_REVOCATION_MAX_ENTRIES: usize = 262_144;

const MAX_CLOCK_SKEW_SECONDS: u64 = 600;
const MIN_REVOCATION_INTERVAL_MS: u64 = 100;
const MAX_REVOCATION_INTERVAL_MS: u64 = 60_000;
const MAX_REVOCATION_ENTRIES: usize = 4 << 20;
const MIN_TOKEN_BYTES: usize = 256;
const MAX_TOKEN_BYTES: usize = 64 * 1024;
const MAX_TOKEN_CACHE_SIZE: usize = 100_000;
const MAX_JWKS_TIMEOUT_MS: u64 = 60_000;
const MAX_JWKS_REFRESH_SECONDS: u64 = 86_400;
const MAX_RATE_LIMIT_TIMEOUT_MS: u64 = 5_000;
const MAX_LEASE_SLOTS: u64 = 1 << 20;
const MIN_RENEW_INTERVAL_MS: u64 = 5;
const MAX_RENEW_INTERVAL_MS: u64 = 1_000;
/// The rate-limit service refuses a longer domain or descriptor value on every call
/// (`MAX_DOMAIN_BYTES`, `MAX_VALUE_BYTES` in the limiter's `request` module), so a
/// configuration that would send one is refused at load instead.
const MAX_RATE_LIMIT_DOMAIN_BYTES: usize = 256;
const MAX_DESCRIPTOR_VALUE_BYTES: usize = 1024;

/// A validated gateway configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// The only accepted `iss` claim.
    pub issuer: String,
    /// Accepted `aud` values; a token must name at least one.
    pub audiences: Vec<String>,
    /// Tolerance applied to `exp` and `nbf`.
    pub clock_skew_seconds: u64,
    /// Tokens longer than this are rejected before any parsing.
    pub max_token_bytes: usize,
    /// Where the signing keys come from.
    pub jwks: JwksSource,
    /// Routes that pass without a token.
    pub public_routes: Vec<RouteRule>,
    /// Headers that carry the verified identity upstream.
    pub identity_headers: IdentityHeaders,
    /// Verified tokens remembered per worker; 0 disables the cache.
    pub token_cache_size: usize,
    /// Global rate limiting; `None` turns it off.
    pub rate_limit: Option<RateLimitConfig>,
    /// Where revoked sessions are learnt; `None` turns the check off.
    pub revocation: Option<RevocationSource>,
}

/// The Envoy cluster serving Auth's `ListRevokedSessions`, and how often to ask it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationSource {
    /// Envoy cluster of Auth (gRPC).
    pub cluster: String,
    /// Interval between fetches: a revocation is refused at the edge within about this
    /// plus one fetch's time.
    pub interval: Duration,
    /// Deadline of one fetch.
    pub timeout: Duration,
    /// At most this many revoked sessions are held; past it the ones whose tokens expire
    /// soonest are dropped (and counted).
    pub max_entries: usize,
}

/// The Envoy cluster and path that serve the JWKS document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksSource {
    /// Envoy cluster the JWKS is fetched from.
    pub cluster: String,
    /// Request path of the JWKS document.
    pub path: String,
    /// `:authority` of the JWKS request.
    pub authority: String,
    /// Deadline of one fetch.
    pub timeout: Duration,
    /// Interval between periodic fetches.
    pub refresh_interval: Duration,
    /// Minimum interval between fetches caused by an unknown `kid` or a failed fetch.
    pub min_refetch_interval: Duration,
}

/// Names of the headers that carry the verified identity upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityHeaders {
    /// Carries the `sub` claim.
    pub user_id: String,
    /// Carries the `roles` claim, comma separated.
    pub roles: String,
}

impl IdentityHeaders {
    /// Every identity header name: the filter strips these from each client request.
    pub fn names(&self) -> [&str; 2] {
        [&self.user_id, &self.roles]
    }
}

/// What to do with a request when the rate-limit service cannot answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    /// Let the request through.
    Open,
    /// Refuse the request (503).
    Closed,
}

/// Global rate limiting through Envoy's rate-limit service protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Envoy cluster of the rate-limit service (gRPC).
    pub cluster: String,
    /// Rate-limit domain sent with every request.
    pub domain: String,
    /// Deadline of one rate-limit call.
    pub timeout: Duration,
    /// Public routes limited per route and client IP.
    pub client_ip_routes: Vec<ClientIpRoute>,
    /// Failure mode of the per-user limit on bearer routes; `None` turns it off.
    pub per_user: Option<FailureMode>,
    /// Slots of the lease table shared by the workers (one descriptor each; memory is
    /// about 100 bytes a slot).
    pub lease_slots: u64,
    /// How often each worker sends the lease renewals it claimed, in one call.
    pub renew_interval: Duration,
}

/// A public route limited per client IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIpRoute {
    /// Which requests the limit applies to.
    pub route: RouteRule,
    /// Value of the `route` descriptor entry; rules sharing it share one counter.
    pub name: String,
    /// Behaviour when the rate-limit service fails.
    pub failure_mode: FailureMode,
}

/// One problem in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// Dotted path of the field, e.g. `jwks.cluster` or `public_routes[2].path`.
    pub field: String,
    /// Why the value is refused.
    pub reason: String,
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` {}", self.field, self.reason)
    }
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// Never empty.
    pub problems: Vec<FieldProblem>,
}

impl ConfigError {
    fn single(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            problems: vec![FieldProblem {
                field: field.into(),
                reason: reason.into(),
            }],
        }
    }

    /// The problem reported for `field`, if any.
    pub fn problem(&self, field: &str) -> Option<&FieldProblem> {
        self.problems.iter().find(|p| p.field == field)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid gateway configuration: ")?;
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl GatewayConfig {
    /// Parses and validates the plugin configuration.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let raw: RawConfig = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." {
                "(root)".to_owned()
            } else {
                path
            };
            ConfigError::single(field, format!("is not valid: {}", e.inner()))
        })?;
        raw.validate()
    }
}

/// What one instance of the filter does, chosen by its configuration: the gateway (a
/// [`GatewayConfig`]), or, for a configuration `{"oauth_token_errors": {...}}`, the
/// token endpoint's answer rewriting (placed before the transcoder, see
/// [`crate::oauth`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginConfig {
    /// Token verification, identity headers and rate limits.
    Gateway(Box<GatewayConfig>),
    /// RFC 6749 answers on the token route.
    OAuthTokenErrors(OAuthTokenErrors),
}

/// Key of the token-endpoint configuration.
pub const OAUTH_TOKEN_ERRORS_KEY: &str = "oauth_token_errors";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOAuthPlugin {
    oauth_token_errors: OAuthTokenErrors,
}

impl PluginConfig {
    /// Parses and validates a plugin configuration of either kind.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        let is_oauth = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(bytes)
            .is_ok_and(|map| map.contains_key(OAUTH_TOKEN_ERRORS_KEY));
        if !is_oauth {
            return GatewayConfig::from_json(bytes).map(|c| Self::Gateway(Box::new(c)));
        }
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        serde_path_to_error::deserialize::<_, RawOAuthPlugin>(&mut deserializer)
            .map(|raw| Self::OAuthTokenErrors(raw.oauth_token_errors))
            .map_err(|e| {
                ConfigError::single(e.path().to_string(), format!("is not valid: {}", e.inner()))
            })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    issuer: Option<String>,
    audiences: Option<Vec<String>>,
    clock_skew_seconds: Option<u64>,
    max_token_bytes: Option<usize>,
    jwks: Option<RawJwks>,
    public_routes: Option<Vec<RawRoute>>,
    identity_headers: Option<RawIdentityHeaders>,
    token_cache_size: Option<usize>,
    rate_limit: Option<RawRateLimit>,
    revocation: Option<RawRevocation>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRevocation {
    cluster: Option<String>,
    interval_ms: Option<u64>,
    timeout_ms: Option<u64>,
    max_entries: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwks {
    cluster: Option<String>,
    path: Option<String>,
    authority: Option<String>,
    timeout_ms: Option<u64>,
    refresh_interval_seconds: Option<u64>,
    min_refetch_interval_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: Option<String>,
    /// Kept only to refuse it with a clear reason (see `Problems::route`).
    method: Option<serde::de::IgnoredAny>,
    path: Option<String>,
    prefix: Option<String>,
    failure_mode: Option<FailureMode>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentityHeaders {
    user_id: Option<String>,
    roles: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    cluster: Option<String>,
    domain: Option<String>,
    timeout_ms: Option<u64>,
    client_ip_routes: Option<Vec<RawRoute>>,
    per_user: Option<RawPerUser>,
    lease_slots: Option<u64>,
    renew_interval_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPerUser {
    enabled: Option<bool>,
    failure_mode: Option<FailureMode>,
}

/// gRPC method paths of the public RPCs. In `envoy/edge.yaml` the filter runs after the
/// gRPC-JSON transcoder, which rewrites a REST call's `:path` to its gRPC method path, so
/// these are what the filter sees for REST and gRPC clients alike.
pub const GRPC_LOGIN: &str = "/bulwark.auth.v1.AuthService/Login";
/// `Refresh` (public, limited per client IP).
pub const GRPC_REFRESH: &str = "/bulwark.auth.v1.AuthService/Refresh";
/// `CreateUser` (public, limited per client IP).
pub const GRPC_CREATE_USER: &str = "/bulwark.identity.v1.IdentityService/CreateUser";
/// `GetJwks` (public).
pub const GRPC_GET_JWKS: &str = "/bulwark.auth.v1.AuthService/GetJwks";
/// `IssueToken`, the OAuth 2.0 token endpoint (public, limited per client IP).
pub const GRPC_ISSUE_TOKEN: &str = "/bulwark.auth.v1.AuthService/IssueToken";
/// REST path of `IssueToken`.
pub const REST_OAUTH_TOKEN: &str = "/v1/oauth2/token";

/// The public account routes (issue 11), each as (REST path, gRPC method path): the
/// mailed-token routes and the second step of an MFA login. Public, and limited per
/// client IP like login.
pub const ACCOUNT_ROUTES: [(&str, &str); 4] = [
    (
        "/v1/users/verify-email",
        "/bulwark.auth.v1.AuthService/VerifyEmail",
    ),
    (
        "/v1/auth/password-reset",
        "/bulwark.auth.v1.AuthService/RequestPasswordReset",
    ),
    (
        "/v1/auth/password-reset/confirm",
        "/bulwark.auth.v1.AuthService/ConfirmPasswordReset",
    ),
    ("/v1/auth/login/mfa", GRPC_LOGIN_MFA),
];
/// `LoginMfa`, the second step of a login with MFA: a code-guessing oracle like login's
/// password, so its limit fails closed.
pub const GRPC_LOGIN_MFA: &str = "/bulwark.auth.v1.AuthService/LoginMfa";

/// The routes the edge contract makes public, in REST form (filter placed before the
/// transcoder, or untranscoded routes) and in gRPC form (placed after it). Each is a
/// path, whatever the method: a CORS preflight is answered by Envoy's cors filter before
/// this filter runs, so no `OPTIONS` rule is needed, and none may exist (an `OPTIONS`
/// on a gRPC path would otherwise reach the service without a token).
pub fn default_public_routes() -> Vec<RouteRule> {
    [
        "/v1/auth/login",
        "/v1/auth/refresh",
        "/v1/users",
        "/.well-known/jwks.json",
        REST_OAUTH_TOKEN,
        "/healthz",
        GRPC_LOGIN,
        GRPC_REFRESH,
        GRPC_CREATE_USER,
        GRPC_GET_JWKS,
        GRPC_ISSUE_TOKEN,
    ]
    .into_iter()
    .chain(
        ACCOUNT_ROUTES
            .iter()
            .flat_map(|(rest, grpc)| [*rest, *grpc]),
    )
    .map(RouteRule::exact)
    .collect()
}

/// The public routes the edge contract limits per client IP, each in REST and gRPC
/// form sharing one descriptor value (the REST path), so both reach the same counter.
/// Login and the token endpoint fail closed: unlimited, they are password (or client
/// secret) guessing oracles, so they are refused while the limiter is down.
pub fn default_client_ip_routes() -> Vec<ClientIpRoute> {
    let route = |path: &str, name: &str, failure_mode| ClientIpRoute {
        route: RouteRule::exact(path),
        name: name.to_owned(),
        failure_mode,
    };
    let mut routes = vec![
        route("/v1/auth/login", "/v1/auth/login", FailureMode::Closed),
        route(GRPC_LOGIN, "/v1/auth/login", FailureMode::Closed),
        route(REST_OAUTH_TOKEN, REST_OAUTH_TOKEN, FailureMode::Closed),
        route(GRPC_ISSUE_TOKEN, REST_OAUTH_TOKEN, FailureMode::Closed),
        route("/v1/auth/refresh", "/v1/auth/refresh", FailureMode::Open),
        route(GRPC_REFRESH, "/v1/auth/refresh", FailureMode::Open),
        route("/v1/users", "/v1/users", FailureMode::Open),
        route(GRPC_CREATE_USER, "/v1/users", FailureMode::Open),
    ];
    // The mailed tokens are 256 random bits, guessed by nobody, and a reset request
    // mails at most 3 times an hour whatever gets through: open, like refresh. The MFA
    // step is a 6-digit code: closed, like login.
    for (rest, grpc) in ACCOUNT_ROUTES {
        let mode = if grpc == GRPC_LOGIN_MFA {
            FailureMode::Closed
        } else {
            FailureMode::Open
        };
        routes.push(route(rest, rest, mode));
        routes.push(route(grpc, rest, mode));
    }
    routes
}

/// A route rule with the rate-limit-only fields still attached.
struct ParsedRoute {
    /// `public_routes[3]`-style field path, for later problems.
    index: String,
    rule: RouteRule,
    name: Option<String>,
    failure_mode: Option<FailureMode>,
}

/// Collects problems while a raw configuration is turned into a validated one.
#[derive(Default)]
struct Problems(Vec<FieldProblem>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.0.push(FieldProblem {
            field: field.into(),
            reason: reason.into(),
        });
    }

    fn required_text(&mut self, field: &str, value: Option<String>) -> String {
        match value {
            None => {
                self.add(field, "is required");
                String::new()
            }
            Some(v) => self.text(field, v),
        }
    }

    fn text(&mut self, field: &str, value: String) -> String {
        if value.trim().is_empty() {
            self.add(field, "must not be empty");
        } else if value.chars().any(char::is_control) {
            self.add(field, "must not contain control characters");
        }
        value
    }

    fn within<T: PartialOrd + fmt::Display + Copy>(
        &mut self,
        field: &str,
        value: Option<T>,
        default: T,
        min: T,
        max: T,
    ) -> T {
        let v = value.unwrap_or(default);
        if v < min || v > max {
            self.add(field, format!("must be between {min} and {max}, got {v}"));
        }
        v
    }

    fn header_name(&mut self, field: &str, value: Option<String>, default: &str) -> String {
        let name = value.unwrap_or_else(|| default.to_owned());
        if let Err(reason) = check_header_name(&name) {
            self.add(field, reason);
        }
        name
    }

    fn routes(&mut self, field: &str, raw: Vec<RawRoute>) -> Vec<ParsedRoute> {
        raw.into_iter()
            .enumerate()
            .filter_map(|(i, r)| self.route(&format!("{field}[{i}]"), r))
            .collect()
    }

    fn route(&mut self, field: &str, raw: RawRoute) -> Option<ParsedRoute> {
        if raw.method.is_some() {
            // Refused rather than ignored: a config written for method-keyed rules
            // expects them to mean something, and silently widening them to every
            // method would change what is public or limited behind the author's back.
            self.add(
                format!("{field}.method"),
                "is not supported: routes match on the path alone, whatever the method \
                 (a gRPC service routes on the path, so a method condition would let the \
                 same call through unchecked with another method); remove it",
            );
        }
        let path = match (raw.path, raw.prefix) {
            (Some(p), None) => PathMatch::Exact(p),
            (None, Some(p)) => PathMatch::Prefix(p),
            (Some(_), Some(_)) => {
                self.add(
                    field.to_owned(),
                    "sets both `path` and `prefix`; set exactly one",
                );
                return None;
            }
            (None, None) => {
                self.add(
                    field.to_owned(),
                    "sets neither `path` nor `prefix`; set exactly one",
                );
                return None;
            }
        };
        let (key, value) = match &path {
            PathMatch::Exact(p) => ("path", p),
            PathMatch::Prefix(p) => ("prefix", p),
        };
        if let Err(reason) = check_route_path(value) {
            self.add(format!("{field}.{key}"), reason);
            return None;
        }
        if let Some(name) = &raw.name
            && name.trim().is_empty()
        {
            self.add(format!("{field}.name"), "must not be empty");
        }
        Some(ParsedRoute {
            index: field.to_owned(),
            rule: RouteRule { path },
            name: raw.name,
            failure_mode: raw.failure_mode,
        })
    }
}

fn check_header_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("must not be empty");
    }
    if name.starts_with(':') {
        return Err("must not be a pseudo-header");
    }
    let token =
        |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b);
    if !name.bytes().all(token) {
        return Err("must be a lower-case HTTP header name (letters, digits, '-', '_')");
    }
    if matches!(
        name,
        "authorization" | "host" | "content-length" | "content-type" | "te"
    ) {
        return Err("must not be a standard HTTP header the gateway or upstreams rely on");
    }
    Ok(())
}

fn check_route_path(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("must start with '/'");
    }
    if path
        .bytes()
        .any(|b| b <= b' ' || b == b'?' || b == b'#' || b == b'%' || b >= 0x7f)
    {
        return Err("must be a plain path without query, fragment, escapes or whitespace");
    }
    Ok(())
}

impl RawConfig {
    fn validate(self) -> Result<GatewayConfig, ConfigError> {
        let mut p = Problems::default();

        let issuer = p.required_text("issuer", self.issuer);
        let audiences = match self.audiences {
            None => {
                p.add("audiences", "is required");
                Vec::new()
            }
            Some(list) if list.is_empty() => {
                p.add("audiences", "must name at least one audience");
                list
            }
            Some(list) => list
                .into_iter()
                .enumerate()
                .map(|(i, a)| p.text(&format!("audiences[{i}]"), a))
                .collect(),
        };
        let clock_skew_seconds = p.within(
            "clock_skew_seconds",
            self.clock_skew_seconds,
            DEFAULT_CLOCK_SKEW_SECONDS,
            0,
            MAX_CLOCK_SKEW_SECONDS,
        );
        let max_token_bytes = p.within(
            "max_token_bytes",
            self.max_token_bytes,
            DEFAULT_MAX_TOKEN_BYTES,
            MIN_TOKEN_BYTES,
            MAX_TOKEN_BYTES,
        );
        let token_cache_size = p.within(
            "token_cache_size",
            self.token_cache_size,
            DEFAULT_TOKEN_CACHE_SIZE,
            0,
            MAX_TOKEN_CACHE_SIZE,
        );
        let jwks = validate_jwks(&mut p, self.jwks);
        let public_routes = match self.public_routes {
            None => default_public_routes(),
            Some(raw) => {
                let routes = p.routes("public_routes", raw);
                for route in &routes {
                    for (set, key) in [
                        (route.failure_mode.is_some(), "failure_mode"),
                        (route.name.is_some(), "name"),
                    ] {
                        if set {
                            p.add(
                                format!("{}.{key}", route.index),
                                "belongs in `rate_limit.client_ip_routes`, not in `public_routes`",
                            );
                        }
                    }
                }
                routes.into_iter().map(|r| r.rule).collect()
            }
        };
        let raw_headers = self.identity_headers.unwrap_or_default();
        let identity_headers = IdentityHeaders {
            user_id: p.header_name(
                "identity_headers.user_id",
                raw_headers.user_id,
                DEFAULT_USER_ID_HEADER,
            ),
            roles: p.header_name(
                "identity_headers.roles",
                raw_headers.roles,
                DEFAULT_ROLES_HEADER,
            ),
        };
        if identity_headers.user_id == identity_headers.roles {
            p.add(
                "identity_headers.roles",
                "must differ from `identity_headers.user_id`",
            );
        }
        let rate_limit = self.rate_limit.map(|raw| validate_rate_limit(&mut p, raw));
        let revocation = self.revocation.map(|raw| validate_revocation(&mut p, raw));

        if !p.0.is_empty() {
            return Err(ConfigError { problems: p.0 });
        }
        Ok(GatewayConfig {
            issuer,
            audiences,
            clock_skew_seconds,
            max_token_bytes,
            jwks,
            public_routes,
            identity_headers,
            token_cache_size,
            rate_limit,
            revocation,
        })
    }
}

fn validate_revocation(p: &mut Problems, raw: RawRevocation) -> RevocationSource {
    let cluster = p.required_text("revocation.cluster", raw.cluster);
    let interval_ms = p.within(
        "revocation.interval_ms",
        raw.interval_ms,
        DEFAULT_REVOCATION_INTERVAL_MS,
        MIN_REVOCATION_INTERVAL_MS,
        MAX_REVOCATION_INTERVAL_MS,
    );
    let timeout_ms = p.within(
        "revocation.timeout_ms",
        raw.timeout_ms,
        DEFAULT_REVOCATION_TIMEOUT_MS,
        1,
        MAX_JWKS_TIMEOUT_MS,
    );
    let max_entries = p.within(
        "revocation.max_entries",
        raw.max_entries,
        DEFAULT_REVOCATION_MAX_ENTRIES,
        1,
        MAX_REVOCATION_ENTRIES,
    );
    RevocationSource {
        cluster,
        interval: Duration::from_millis(interval_ms),
        timeout: Duration::from_millis(timeout_ms),
        max_entries,
    }
}

fn validate_jwks(p: &mut Problems, raw: Option<RawJwks>) -> JwksSource {
    let Some(raw) = raw else {
        p.add("jwks", "is required (at least `jwks.cluster`)");
        return JwksSource {
            cluster: String::new(),
            path: DEFAULT_JWKS_PATH.to_owned(),
            authority: String::new(),
            timeout: Duration::ZERO,
            refresh_interval: Duration::ZERO,
            min_refetch_interval: Duration::ZERO,
        };
    };
    let cluster = p.required_text("jwks.cluster", raw.cluster);
    let path = raw.path.unwrap_or_else(|| DEFAULT_JWKS_PATH.to_owned());
    if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b >= 0x7f) {
        p.add("jwks.path", "must start with '/' and contain no whitespace");
    }
    let authority = match raw.authority {
        None => cluster.clone(),
        Some(a) => p.text("jwks.authority", a),
    };
    let timeout_ms = p.within(
        "jwks.timeout_ms",
        raw.timeout_ms,
        DEFAULT_JWKS_TIMEOUT_MS,
        1,
        MAX_JWKS_TIMEOUT_MS,
    );
    let refresh = p.within(
        "jwks.refresh_interval_seconds",
        raw.refresh_interval_seconds,
        DEFAULT_JWKS_REFRESH_SECONDS,
        1,
        MAX_JWKS_REFRESH_SECONDS,
    );
    let min_refetch = p.within(
        "jwks.min_refetch_interval_seconds",
        raw.min_refetch_interval_seconds,
        DEFAULT_JWKS_MIN_REFETCH_SECONDS.min(refresh),
        1,
        MAX_JWKS_REFRESH_SECONDS,
    );
    if min_refetch > refresh {
        p.add(
            "jwks.min_refetch_interval_seconds",
            format!("must not exceed `jwks.refresh_interval_seconds` ({refresh})"),
        );
    }
    JwksSource {
        cluster,
        path,
        authority,
        timeout: Duration::from_millis(timeout_ms),
        refresh_interval: Duration::from_secs(refresh),
        min_refetch_interval: Duration::from_secs(min_refetch),
    }
}

fn validate_rate_limit(p: &mut Problems, raw: RawRateLimit) -> RateLimitConfig {
    let cluster = p.required_text("rate_limit.cluster", raw.cluster);
    let domain = p.required_text("rate_limit.domain", raw.domain);
    if domain.len() > MAX_RATE_LIMIT_DOMAIN_BYTES {
        p.add(
            "rate_limit.domain",
            format!(
                "must be at most {MAX_RATE_LIMIT_DOMAIN_BYTES} bytes (the rate-limit service's limit)"
            ),
        );
    }
    let timeout_ms = p.within(
        "rate_limit.timeout_ms",
        raw.timeout_ms,
        DEFAULT_RATE_LIMIT_TIMEOUT_MS,
        1,
        MAX_RATE_LIMIT_TIMEOUT_MS,
    );
    let client_ip_routes = match raw.client_ip_routes {
        None => default_client_ip_routes(),
        Some(list) => p
            .routes("rate_limit.client_ip_routes", list)
            .into_iter()
            .map(|r| {
                // The name is the `route` descriptor value; by default the path itself.
                let name = r.name.unwrap_or_else(|| r.rule.pattern().to_owned());
                if name.len() > MAX_DESCRIPTOR_VALUE_BYTES {
                    p.add(
                        format!("{}.name", r.index),
                        format!(
                            "must be at most {MAX_DESCRIPTOR_VALUE_BYTES} bytes (the rate-limit \
                             service's limit on a descriptor value; without a name, the path is \
                             the name)"
                        ),
                    );
                }
                ClientIpRoute {
                    name,
                    route: r.rule,
                    failure_mode: r.failure_mode.unwrap_or(FailureMode::Open),
                }
            })
            .collect(),
    };
    let per_user = match raw.per_user {
        None => Some(FailureMode::Open),
        Some(RawPerUser {
            enabled: Some(false),
            failure_mode: Some(_),
        }) => {
            p.add(
                "rate_limit.per_user.failure_mode",
                "is set although `enabled` is false",
            );
            None
        }
        Some(RawPerUser {
            enabled: Some(false),
            ..
        }) => None,
        Some(RawPerUser { failure_mode, .. }) => Some(failure_mode.unwrap_or(FailureMode::Open)),
    };
    let lease_slots = p.within(
        "rate_limit.lease_slots",
        raw.lease_slots,
        DEFAULT_LEASE_SLOTS,
        1,
        MAX_LEASE_SLOTS,
    );
    let renew_interval_ms = p.within(
        "rate_limit.renew_interval_ms",
        raw.renew_interval_ms,
        DEFAULT_RENEW_INTERVAL_MS,
        MIN_RENEW_INTERVAL_MS,
        MAX_RENEW_INTERVAL_MS,
    );
    RateLimitConfig {
        cluster,
        domain,
        timeout: Duration::from_millis(timeout_ms),
        client_ip_routes,
        per_user,
        lease_slots,
        renew_interval: Duration::from_millis(renew_interval_ms),
    }
}
