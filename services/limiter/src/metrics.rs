//! The limiter's Prometheus series, through the `metrics` facade (the kernel installs
//! the recorder): decisions and lease grants per configured limit, Redis latency,
//! config reloads and account lockouts.

use metrics::Counter;

use crate::lease::LeaseMode;

/// `ratelimit_decisions_total{domain, descriptor, decision}`: one per descriptor of a
/// `ShouldRateLimit` call, one per exactly decided lease item that spends a hit, and one
/// per leased item of a lease call (`ok` when granted, `over_limit` when refused), so
/// with leasing it counts lease calls rather than requests.
pub const DECISIONS_TOTAL: &str = "ratelimit_decisions_total";
/// `ratelimit_lease_grants_total{domain, descriptor, mode="leased|exact|unlimited",
/// outcome="ok|over_limit"}`: items of lease calls with a configured limit.
pub const LEASE_GRANTS_TOTAL: &str = "ratelimit_lease_grants_total";
/// `ratelimit_leased_hits_total{domain, descriptor}`: hits granted by leased items (what
/// the edge may admit without asking), beside the requests decided one by one.
pub const LEASED_HITS_TOTAL: &str = "ratelimit_leased_hits_total";
/// `ratelimit_redis_duration_seconds`: one decision's Redis work (pool checkout and
/// script), the kernel's latency buckets.
pub const REDIS_DURATION: &str = "ratelimit_redis_duration_seconds";
/// `ratelimit_redis_errors_total{kind="unavailable|internal"}`.
pub const REDIS_ERRORS_TOTAL: &str = "ratelimit_redis_errors_total";
/// `account_lockouts_started_total`: failures that locked an account (see
/// [`crate::lockout`]); attempts refused while it is locked are not counted here.
pub const LOCKOUTS_STARTED_TOTAL: &str = "account_lockouts_started_total";
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

/// The lease counters of one limit, registered once when the limit is loaded (only the
/// series its policy can produce; the others are no-ops) so the hot path does no label
/// lookups.
#[derive(Debug, Clone)]
pub struct LeaseCounters {
    unlimited_ok: Counter,
    exact_ok: Counter,
    exact_over_limit: Counter,
    leased_ok: Counter,
    leased_over_limit: Counter,
    leased_hits: Counter,
}

impl LeaseCounters {
    /// Counters of a limit that refuses (`limited`), or of an `unlimited` one.
    pub fn new(domain: &str, descriptor: &str, limited: bool) -> Self {
        let grants = |mode: LeaseMode, outcome: &'static str| {
            metrics::counter!(
                LEASE_GRANTS_TOTAL,
                "domain" => domain.to_owned(),
                "descriptor" => descriptor.to_owned(),
                "mode" => mode.label(),
                "outcome" => outcome,
            )
        };
        if !limited {
            return Self {
                unlimited_ok: grants(LeaseMode::Unlimited, "ok"),
                exact_ok: Counter::noop(),
                exact_over_limit: Counter::noop(),
                leased_ok: Counter::noop(),
                leased_over_limit: Counter::noop(),
                leased_hits: Counter::noop(),
            };
        }
        Self {
            unlimited_ok: Counter::noop(),
            exact_ok: grants(LeaseMode::Exact, "ok"),
            exact_over_limit: grants(LeaseMode::Exact, "over_limit"),
            leased_ok: grants(LeaseMode::Leased, "ok"),
            leased_over_limit: grants(LeaseMode::Leased, "over_limit"),
            leased_hits: metrics::counter!(
                LEASED_HITS_TOTAL,
                "domain" => domain.to_owned(),
                "descriptor" => descriptor.to_owned(),
            ),
        }
    }

    /// One item's grant: its mode, whether it was refused, and the hits it leased.
    pub fn record(&self, mode: LeaseMode, over_limit: bool, granted: u32) {
        let grants = match (mode, over_limit) {
            (LeaseMode::Unlimited, _) => &self.unlimited_ok,
            (LeaseMode::Exact, false) => &self.exact_ok,
            (LeaseMode::Exact, true) => &self.exact_over_limit,
            (LeaseMode::Leased, false) => &self.leased_ok,
            (LeaseMode::Leased, true) => &self.leased_over_limit,
        };
        grants.increment(1);
        if mode == LeaseMode::Leased && granted > 0 {
            self.leased_hits.increment(u64::from(granted));
        }
    }
}
