//! The rate-limit service: Envoy's `RateLimitService` v3 over Redis, with limits from
//! hot-reloaded YAML files and GCRA counting in one atomic Redis round trip, and
//! Bulwark's `LeaseService`, which leases budgets of the same limits to the edge. The
//! limiter itself is [`bulwark_limiter`]; this crate answers both protocols with it.

mod error;
mod grpc;
mod lease;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bulwark_kernel::{GrpcServices, Kernel, ServiceSpec};
use bulwark_limiter::lease::{DEFAULT_MAX_LEASE_ITEMS, MAX_LEASE_ITEMS};
use bulwark_limiter::{LeasePolicy, Limiter, LimitsWatch};
use bulwark_proto::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitServiceServer;
use bulwark_proto::ratelimit::v1::lease_service_server::LeaseServiceServer;
use serde::{Deserialize, Serialize};

pub use grpc::{RateLimitHandlers, check_request};
pub use lease::{LeaseHandlers, lease_request};

/// Name and default ports (gRPC 50055, admin HTTP 9105).
pub const SPEC: ServiceSpec = ServiceSpec::new("ratelimit", 50055, 9105);

/// The `[ratelimit]` section (`BULWARK_RATELIMIT__*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimitSettings {
    /// A limit file, or a directory of them (one domain per `*.yaml`/`*.yml`). Required.
    pub config_path: Option<PathBuf>,
    /// How often the files are read again for changes.
    pub reload_interval_ms: u64,
    /// Bound on one decision's Redis work (pool checkout and script); past it the call
    /// answers UNAVAILABLE and the caller's failure mode decides.
    pub redis_timeout_ms: u64,
    /// `LeaseService`: which limits are leased, how much and for how long.
    pub lease: LeaseSettings,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            config_path: None,
            reload_interval_ms: 1_000,
            redis_timeout_ms: 500,
            lease: LeaseSettings::default(),
        }
    }
}

/// The `[ratelimit.lease]` section (`BULWARK_RATELIMIT__LEASE__*`); see
/// [`LeasePolicy`] for what each setting does.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LeaseSettings {
    /// Limits slower than this (requests per unit / unit in seconds) are decided
    /// exactly, one request at a time.
    pub min_rate_per_second: f64,
    /// A lease holds this many seconds of its limit's rate (at least 1 hit, at most
    /// half the limit).
    pub lease_seconds: f64,
    /// How long a leased or unlimited answer may be used.
    pub valid_for_ms: u64,
    /// The most items of one `Lease` call.
    pub max_items: usize,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        let policy = LeasePolicy::default();
        Self {
            min_rate_per_second: policy.min_rate_per_second,
            lease_seconds: policy.lease_seconds,
            valid_for_ms: u64::try_from(policy.valid_for.as_millis()).unwrap_or(u64::MAX),
            max_items: DEFAULT_MAX_LEASE_ITEMS,
        }
    }
}

impl LeaseSettings {
    /// The limiter's policy, or an error naming the key and its variable.
    fn policy(&self) -> anyhow::Result<LeasePolicy> {
        let key_error = |key: &str, rule: &str| {
            anyhow::anyhow!(
                "configuration key `ratelimit.lease.{key}` {rule} \
                 (BULWARK_RATELIMIT__LEASE__{})",
                key.to_ascii_uppercase()
            )
        };
        if !(1..=MAX_LEASE_ITEMS).contains(&self.max_items) {
            return Err(key_error(
                "max_items",
                &format!("must be 1 to {MAX_LEASE_ITEMS}, not {}", self.max_items),
            ));
        }
        let policy = LeasePolicy {
            min_rate_per_second: self.min_rate_per_second,
            lease_seconds: self.lease_seconds,
            valid_for: Duration::from_millis(self.valid_for_ms),
        };
        policy.validate().map_err(|invalid| {
            let key = match invalid.field {
                "valid_for" => "valid_for_ms",
                field => field,
            };
            key_error(key, &invalid.rule)
        })?;
        Ok(policy)
    }
}

impl RateLimitSettings {
    fn validate(&self) -> anyhow::Result<PathBuf> {
        if self.reload_interval_ms == 0 {
            anyhow::bail!(
                "configuration key `ratelimit.reload_interval_ms` must be greater than 0"
            );
        }
        if self.redis_timeout_ms == 0 {
            anyhow::bail!("configuration key `ratelimit.redis_timeout_ms` must be greater than 0");
        }
        self.config_path.clone().context(
            "configuration key `ratelimit.config_path` is not set (BULWARK_RATELIMIT__CONFIG_PATH): \
             name the limit file, e.g. services/ratelimit/limits.yaml",
        )
    }
}

/// Builds the gRPC services this binary serves: loads the limits (a refused file stops
/// the start), starts their reload, and serves `RateLimitService` and `LeaseService`
/// over the kernel's Redis.
pub async fn app(kernel: Kernel) -> anyhow::Result<GrpcServices> {
    let settings: RateLimitSettings = kernel.settings().section("ratelimit")?;
    let path = settings.validate()?;
    let lease_policy = settings.lease.policy()?;
    let redis = kernel.redis.clone().context(
        "configuration key `redis.url` is not set (BULWARK_REDIS__URL): \
         the rate-limit service keeps its counters in Redis",
    )?;
    let watch = LimitsWatch::start(
        path,
        Duration::from_millis(settings.reload_interval_ms),
        kernel.errors.clone(),
    )
    .await?;
    let limiter = Arc::new(
        Limiter::new(
            &redis,
            watch.handle(),
            Duration::from_millis(settings.redis_timeout_ms),
        )
        .with_lease_policy(lease_policy)?,
    );
    kernel.on_shutdown("limit file reload", move || async move { watch.stop() });
    // Connect and load the scripts before serving, so the first decisions are fast.
    if let Err(error) = limiter.warm_up().await {
        tracing::warn!(%error, "Redis is not reachable yet; decisions answer UNAVAILABLE until it is");
    }
    let handlers = RateLimitHandlers::new(kernel.clone(), limiter);
    let leases = LeaseHandlers::new(handlers.clone(), settings.lease.max_items);
    let server = bulwark_kernel::grpc_limits!(kernel, RateLimitServiceServer::new(handlers));
    let lease_server = bulwark_kernel::grpc_limits!(kernel, LeaseServiceServer::new(leases));
    Ok(GrpcServices::new().with(server).with(lease_server))
}
