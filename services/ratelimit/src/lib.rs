//! The rate-limit service: Envoy's `RateLimitService` v3 over Redis, with limits from
//! hot-reloaded YAML files and GCRA counting in one atomic Redis round trip. The
//! limiter itself is the kernel's ([`bulwark_limiter`]); this crate answers
//! Envoy's protocol with it.

mod error;
mod grpc;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bulwark_kernel::{GrpcServices, Kernel, ServiceSpec};
use bulwark_limiter::{Limiter, LimitsWatch};
use bulwark_proto::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitServiceServer;
use serde::{Deserialize, Serialize};

pub use grpc::{RateLimitHandlers, check_request};

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
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            config_path: None,
            reload_interval_ms: 1_000,
            redis_timeout_ms: 500,
        }
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
/// the start), starts their reload, and serves `RateLimitService` over the kernel's Redis.
pub async fn app(kernel: Kernel) -> anyhow::Result<GrpcServices> {
    let settings: RateLimitSettings = kernel.settings().section("ratelimit")?;
    let path = settings.validate()?;
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
    let limiter = Arc::new(Limiter::new(
        &redis,
        watch.handle(),
        Duration::from_millis(settings.redis_timeout_ms),
    ));
    kernel.on_shutdown("limit file reload", move || async move { watch.stop() });
    // Connect and load the script before serving, so the first decisions are fast.
    if let Err(error) = limiter.warm_up().await {
        tracing::warn!(%error, "Redis is not reachable yet; decisions answer UNAVAILABLE until it is");
    }
    let handlers = RateLimitHandlers::new(kernel.clone(), limiter);
    let server = bulwark_kernel::grpc_limits!(kernel, RateLimitServiceServer::new(handlers));
    Ok(GrpcServices::new().with(server))
}
