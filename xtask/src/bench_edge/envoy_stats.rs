//! Envoy's admin counters, read around each measured run to show the case did what it
//! claims.

use super::http_client::http_get;

/// Counters read from Envoy's admin `/stats` around the measured run: they show each
/// case did what it claims (tokens verified or taken from a cache, limits asked).
const CHECKED_STATS: [(&str, &str); 10] = [
    ("http.bench.jwt_authn.allowed", "jwt allowed"),
    ("http.bench.jwt_authn.denied", "jwt denied"),
    ("http.bench.jwt_authn.jwt_cache_hit", "jwt cache hits"),
    ("http.bench.jwt_authn.jwt_cache_miss", "jwt cache misses"),
    ("wasmcustom.bulwark_gateway.allowed", "filter allowed"),
    ("wasmcustom.bulwark_gateway.unauthenticated", "filter 401"),
    ("wasmcustom.bulwark_gateway.rate_limited", "filter 429"),
    (
        "wasmcustom.bulwark_gateway.callout_failures",
        "filter callout failures",
    ),
    ("cluster.sink.ratelimit.ok", "ratelimit ok"),
    ("cluster.sink.ratelimit.error", "ratelimit errors"),
];

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

pub fn stat_delta(before: &[(String, u64)], after: &[(String, u64)]) -> String {
    let value = |stats: &[(String, u64)], name: &str| {
        stats.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    };
    CHECKED_STATS
        .iter()
        .filter_map(|(name, label)| {
            let delta = value(after, name)?.saturating_sub(value(before, name).unwrap_or(0));
            (delta > 0).then(|| format!("{label} {delta}"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}
