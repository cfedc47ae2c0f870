//! The limiter's Prometheus series, through the `metrics` facade (the kernel installs
//! the recorder): decisions per configured limit, Redis latency and config reloads.

use metrics::Counter;

/// `ratelimit_decisions_total{domain, descriptor, decision}`.
pub const DECISIONS_TOTAL: &str = "ratelimit_decisions_total";
/// `ratelimit_redis_duration_seconds`: one decision's Redis work (pool checkout and
/// script), the kernel's latency buckets.
pub const REDIS_DURATION: &str = "ratelimit_redis_duration_seconds";
/// `ratelimit_redis_errors_total{kind="unavailable|internal"}`.
pub const REDIS_ERRORS_TOTAL: &str = "ratelimit_redis_errors_total";
/// `ratelimit_config_reloads_total{path, outcome="ok|error"}`.
pub const CONFIG_RELOADS_TOTAL: &str = "ratelimit_config_reloads_total";
/// `ratelimit_config_file_valid{path}`: 0 while the file on disk is refused and the
/// previous limits stay in force.
pub const CONFIG_FILE_VALID: &str = "ratelimit_config_file_valid";

/// How one limit decided one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Ok,
    OverLimit,
    /// Over a shadow-mode limit: counted here, allowed all the same.
    ShadowOverLimit,
}

impl Decision {
    fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::OverLimit => "over_limit",
            Self::ShadowOverLimit => "shadow_over_limit",
        }
    }
}

/// The three decision counters of one limit, registered once when the limit is loaded
/// so the hot path does no label lookups.
#[derive(Debug, Clone)]
pub struct DecisionCounters {
    ok: Counter,
    over_limit: Counter,
    shadow_over_limit: Counter,
}

impl DecisionCounters {
    pub fn new(domain: &str, descriptor: &str) -> Self {
        let counter = |decision: Decision| {
            metrics::counter!(
                DECISIONS_TOTAL,
                "domain" => domain.to_owned(),
                "descriptor" => descriptor.to_owned(),
                "decision" => decision.label(),
            )
        };
        Self {
            ok: counter(Decision::Ok),
            over_limit: counter(Decision::OverLimit),
            shadow_over_limit: counter(Decision::ShadowOverLimit),
        }
    }

    pub fn record(&self, decision: Decision) {
        match decision {
            Decision::Ok => &self.ok,
            Decision::OverLimit => &self.over_limit,
            Decision::ShadowOverLimit => &self.shadow_over_limit,
        }
        .increment(1);
    }
}
