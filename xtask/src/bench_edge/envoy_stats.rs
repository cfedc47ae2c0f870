//! Envoy's admin counters, read around each measured run to show the case did what it
//! claims.

use super::http_client::http_get;

/// Counters read from Envoy's admin `/stats` around the measured run: they show each
/// case did what it claims (tokens verified or taken from a cache, limits asked).
const CHECKED_STATS: [(&str, &str); 13] = [
    ("http.bench.jwt_authn.allowed", "jwt allowed"),
    ("http.bench.jwt_authn.denied", "jwt denied"),
    ("http.bench.jwt_authn.jwt_cache_hit", "jwt cache hits"),
    ("http.bench.jwt_authn.jwt_cache_miss", "jwt cache misses"),
    ("wasmcustom.bulwark_gateway.allowed", "filter allowed"),
    ("wasmcustom.bulwark_gateway.unauthenticated", "filter 401"),
    (RATE_LIMITED, "filter 429"),
    (CALLOUT_FAILURES, "filter callout failures"),
    (LEASE_SPENT, "filter lease spent"),
    (LEASE_RENEWALS, "filter lease renewal calls"),
    ("cluster.sink.ratelimit.ok", "ratelimit ok"),
    ("cluster.sink.ratelimit.over_limit", "ratelimit over limit"),
    ("cluster.sink.ratelimit.error", "ratelimit errors"),
];

/// Requests the gateway filter admitted from a lease, without a call.
pub const LEASE_SPENT: &str = "wasmcustom.bulwark_gateway.lease_spent";
/// The gateway filter's background renewal calls (each up to 64 descriptors).
pub const LEASE_RENEWALS: &str = "wasmcustom.bulwark_gateway.lease_renewals";
/// The gateway filter's requests refused by a limit.
pub const RATE_LIMITED: &str = "wasmcustom.bulwark_gateway.rate_limited";
/// The gateway filter's failed calls (JWKS, rate limit, lease).
pub const CALLOUT_FAILURES: &str = "wasmcustom.bulwark_gateway.callout_failures";

pub async fn envoy_stats(admin_port: u16) -> Vec<(String, u64)> {
    let Ok(reply) = http_get(admin_port, "/stats", None).await else {
        return Vec::new();
    };
    reply
        .body
        .lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(": ")?;
            Some((name.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

fn value(stats: &[(String, u64)], name: &str) -> Option<u64> {
    stats.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
}

/// How much counter `name` grew from `before` to `after` (0 when Envoy has no such
/// counter).
pub fn stat_increase(before: &[(String, u64)], after: &[(String, u64)], name: &str) -> u64 {
    value(after, name)
        .unwrap_or(0)
        .saturating_sub(value(before, name).unwrap_or(0))
}

pub fn stat_delta(before: &[(String, u64)], after: &[(String, u64)]) -> String {
    CHECKED_STATS
        .iter()
        .filter_map(|(name, label)| {
            value(after, name)?;
            let delta = stat_increase(before, after, name);
            (delta > 0).then(|| format!("{label} {delta}"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}
