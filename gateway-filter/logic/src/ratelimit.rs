//! Global rate limiting, protocol-free: which descriptors a request carries, and how the
//! rate-limit service's answer becomes response headers. The glue encodes these plain
//! values as `envoy.service.ratelimit.v3.RateLimitRequest` and decodes the response into
//! [`DescriptorStatus`]es.

use std::time::Duration;

use crate::config::{FailureMode, RateLimitConfig};
use crate::response::{self, LocalResponse};

/// Descriptor key holding the matched public route's name (by default its path).
pub const ROUTE_KEY: &str = "route";
/// Descriptor key holding the client IP.
pub const CLIENT_IP_KEY: &str = "client_ip";
/// Descriptor key holding the verified user id.
pub const USER_ID_KEY: &str = "user_id";

/// One descriptor entry, e.g. `("client_ip", "203.0.113.7")`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescriptorEntry {
    /// Entry key.
    pub key: String,
    /// Entry value.
    pub value: String,
}

impl DescriptorEntry {
    /// An entry from its key and value.
    pub fn new(key: &str, value: &str) -> Self {
        Self {
            key: key.to_owned(),
            value: value.to_owned(),
        }
    }
}

/// What a request asks the rate-limit service: its descriptors (one, in practice) and
/// where and how to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitCheck {
    /// `RateLimitRequest.domain`.
    pub domain: String,
    /// `RateLimitRequest.descriptors`, each a list of entries.
    pub descriptors: Vec<Vec<DescriptorEntry>>,
    /// Envoy cluster of the service.
    pub cluster: String,
    /// Call deadline.
    pub timeout: Duration,
    /// What to do when the call fails.
    pub failure_mode: FailureMode,
}

/// The request facts descriptors are built from.
#[derive(Debug, Clone, Copy)]
pub struct RateLimitSubject<'a> {
    /// `:path` (the route; the method plays no part).
    pub path: &'a str,
    /// Downstream client address (IP only, no port).
    pub client_ip: Option<&'a str>,
    /// Verified `sub`, on bearer routes.
    pub user_id: Option<&'a str>,
}

/// Builds the check for a request, or `None` when no limit applies to it.
///
/// A request on a configured client-IP route, under any reading of its path (see
/// [`crate::routes::RouteRule::matches_any_reading`]), is limited per route and client
/// IP, authenticated or not; any other authenticated request per user. A public route without a known client IP gets no
/// descriptor rather than one shared bucket that every client would drain together.
pub fn plan(config: &RateLimitConfig, subject: &RateLimitSubject<'_>) -> Option<RateLimitCheck> {
    let check = |descriptor: Vec<DescriptorEntry>, failure_mode| RateLimitCheck {
        domain: config.domain.clone(),
        descriptors: vec![descriptor],
        cluster: config.cluster.clone(),
        timeout: config.timeout,
        failure_mode,
    };
    if let Some(rule) = config
        .client_ip_routes
        .iter()
        .find(|r| r.route.matches_any_reading(subject.path))
    {
        let ip = subject.client_ip.filter(|ip| !ip.is_empty())?;
        return Some(check(
            vec![
                DescriptorEntry::new(ROUTE_KEY, &rule.name),
                DescriptorEntry::new(CLIENT_IP_KEY, ip),
            ],
            rule.failure_mode,
        ));
    }
    match (subject.user_id, config.per_user) {
        (Some(user), Some(mode)) => {
            Some(check(vec![DescriptorEntry::new(USER_ID_KEY, user)], mode))
        }
        _ => None,
    }
}

/// The IP part of an Envoy `source.address` value (`1.2.3.4:5678` or `[::1]:5678`).
pub fn client_ip_from_address(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match address.rsplit_once(':') {
        // More than one colon without brackets: a bare IPv6 address.
        Some((ip, _)) if !ip.contains(':') => ip,
        _ => address,
    }
}

/// The unit of a limit (`RateLimitResponse.RateLimit.Unit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitUnit {
    /// Unknown or unset.
    Unknown,
    /// Per second.
    Second,
    /// Per minute.
    Minute,
    /// Per hour.
    Hour,
    /// Per day.
    Day,
    /// Per week.
    Week,
    /// Per month (30 days).
    Month,
    /// Per year (365 days).
    Year,
}

impl LimitUnit {
    /// From the proto enum's number.
    pub fn from_proto(value: i32) -> Self {
        match value {
            1 => Self::Second,
            2 => Self::Minute,
            3 => Self::Hour,
            4 => Self::Day,
            5 => Self::Month,
            6 => Self::Year,
            7 => Self::Week,
            _ => Self::Unknown,
        }
    }

    /// Length of one window in seconds.
    pub fn seconds(self) -> u64 {
        match self {
            Self::Unknown | Self::Second => 1,
            Self::Minute => 60,
            Self::Hour => 3_600,
            Self::Day => 86_400,
            Self::Week => 7 * 86_400,
            Self::Month => 30 * 86_400,
            Self::Year => 365 * 86_400,
        }
    }
}

/// One descriptor's verdict (`RateLimitResponse.DescriptorStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorStatus {
    /// `code == OVER_LIMIT`.
    pub over_limit: bool,
    /// `current_limit`: requests per unit.
    pub limit: Option<(u32, LimitUnit)>,
    /// `limit_remaining`.
    pub remaining: u32,
    /// `duration_until_reset`.
    pub reset_after: Option<Duration>,
}

impl DescriptorStatus {
    fn reset_seconds(&self) -> u64 {
        match (self.reset_after, self.limit) {
            // Round up: a client retrying after a rounded-down value would be refused again.
            (Some(d), _) => (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1),
            (None, Some((_, unit))) => unit.seconds(),
            (None, None) => 1,
        }
    }
}

/// The service's overall answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitVerdict {
    /// `overall_code == OVER_LIMIT`.
    pub over_limit: bool,
    /// Per-descriptor statuses, in request order.
    pub statuses: Vec<DescriptorStatus>,
}

/// The status that decides the headers: an over-limit one first, else the one with the
/// fewest remaining requests, so clients see the tightest limit.
fn governing(verdict: &RateLimitVerdict) -> Option<&DescriptorStatus> {
    verdict
        .statuses
        .iter()
        .filter(|s| s.limit.is_some())
        .min_by_key(|s| (!s.over_limit, s.remaining))
}

/// `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (plus `Retry-After` when
/// over the limit), for allowed and refused responses alike.
pub fn response_headers(verdict: &RateLimitVerdict) -> Vec<(String, String)> {
    let mut headers = Vec::new();
    if let Some(status) = governing(verdict) {
        let reset = status.reset_seconds();
        if let Some((limit, _)) = status.limit {
            headers.push(("ratelimit-limit".to_owned(), limit.to_string()));
        }
        let remaining = if status.over_limit {
            0
        } else {
            status.remaining
        };
        headers.push(("ratelimit-remaining".to_owned(), remaining.to_string()));
        headers.push(("ratelimit-reset".to_owned(), reset.to_string()));
        if verdict.over_limit {
            headers.push(("retry-after".to_owned(), reset.to_string()));
        }
    } else if verdict.over_limit {
        headers.push(("retry-after".to_owned(), "1".to_owned()));
    }
    headers
}

/// The local reply for a verdict, or `None` when the request may go on.
pub fn refusal(verdict: &RateLimitVerdict) -> Option<LocalResponse> {
    verdict
        .over_limit
        .then(|| response::too_many_requests(response_headers(verdict)))
}

/// The local reply when the service could not be asked, or `None` to let the request go on.
pub fn on_failure(mode: FailureMode) -> Option<LocalResponse> {
    match mode {
        FailureMode::Open => None,
        FailureMode::Closed => Some(response::rate_limit_unavailable()),
    }
}
