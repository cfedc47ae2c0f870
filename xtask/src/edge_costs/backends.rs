//! What the measured Envoy calls, all outside valgrind: bench-edge's JWKS server in this
//! process, and for the rate-limit cases Redis and `bulwark-ratelimit` with a per-user
//! limit of 100/s.

use std::path::Path;

use bulwark_e2e::{Redis, free_port};

pub use crate::bench_edge::jwks::JwksServer;
use crate::bench_edge::ratelimit::{self, write_user_limit};

use super::config::RATELIMIT_DOMAIN;

/// The per-user limit, requests per second.
const USER_RATE: u64 = 100;

/// How the service serves the per-user limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceMode {
    /// Limits under 1,000,000/s are decided per request: every request is a call.
    Exact,
    /// The service's defaults: the 100/s limit is leased (20 hits, valid 2 s).
    Leased,
}

/// Redis and `bulwark-ratelimit` for one case; stopped on drop.
#[derive(Debug)]
pub struct RateLimitService {
    pub grpc_port: u16,
    service: ratelimit::RateLimitService,
    redis: Redis,
}

impl RateLimitService {
    pub async fn start(binary: &Path, mode: ServiceMode, dir: &Path) -> anyhow::Result<Self> {
        let (name, env): (&str, &[(&str, &str)]) = match mode {
            ServiceMode::Exact => (
                "exact",
                &[("BULWARK_RATELIMIT__LEASE__MIN_RATE_PER_SECOND", "1000000")],
            ),
            ServiceMode::Leased => ("leased", &[]),
        };
        let redis = Redis::start(
            &dir.join(format!("redis-{name}")),
            free_port()?,
            &dir.join(format!("redis-{name}.log")),
        )
        .await?;
        let limits = dir.join("limits.yaml");
        write_user_limit(&limits, RATELIMIT_DOMAIN, USER_RATE)?;
        let service = ratelimit::RateLimitService::start(
            &format!("bulwark-ratelimit ({name})"),
            binary,
            &redis.url(),
            &limits,
            env,
            &dir.join(format!("ratelimit-{name}.log")),
        )
        .await?;
        Ok(Self {
            grpc_port: service.grpc_port,
            service,
            redis,
        })
    }

    pub fn stop(mut self) {
        self.service.stop("TERM");
        let _ = self.redis.stop();
    }
}
