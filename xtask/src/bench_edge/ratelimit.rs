//! Redis and two `bulwark-ratelimit` instances over it, started on free loopback ports for
//! the rate-limited cases and the rate-limit service benchmark.
//!
//! Both instances read the same limits and count in the same Redis; they differ in their
//! lease threshold only. The EXACT instance's threshold is above every limit, so each
//! lease item is decided exactly, one call per request (case f, and g's
//! `ShouldRateLimit`); the leasing instance keeps the defaults (limits of 50/s and more
//! are leased, 0.2 s of their rate), as the edge runs it (cases h and g-500, h-hot).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;

use super::cases::Limit;
use super::http_client::answers_200;
use super::{BEARER_DOMAIN, RATELIMIT_DOMAIN};
use bulwark_e2e::{ManagedChild, Redis, free_port};

/// The contract's bearer limit, requests per second per user (`services/ratelimit/limits.yaml`).
pub const BEARER_RATE: u64 = 100;
/// The lease size of [`BEARER_RATE`] with the service's default lease settings (0.2 s of
/// its rate).
pub const BEARER_LEASE: u64 = 20;
/// The EXACT instance's lease threshold: above [`UNREACHED_RATE`], so nothing is leased.
const EXACT_MIN_RATE_PER_SECOND: &str = "10000000000";
/// The limit of [`RATELIMIT_DOMAIN`], never reached: those cases measure decisions.
const UNREACHED_RATE: u64 = 1_000_000_000;

/// How long a `bulwark-ratelimit` may take to answer `/ready`.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// One `bulwark-ratelimit` process.
#[derive(Debug)]
pub struct RateLimitService {
    process: ManagedChild,
    pub grpc_port: u16,
    /// The admin port: `/ready`, `/metrics`.
    pub http_port: u16,
}

/// Redis and the two rate-limit service instances.
pub struct RateLimitStack {
    pub redis: Redis,
    /// Lease threshold above every limit: everything is decided per request.
    pub exact: RateLimitService,
    /// Default lease settings: the bearer limit is leased.
    pub leasing: RateLimitService,
}

impl RateLimitStack {
    pub async fn start(binary: &Path, dir: &Path) -> anyhow::Result<Self> {
        let redis = Redis::start(&dir.join("redis"), free_port()?, &dir.join("redis.log")).await?;

        // One domain per file, both in one directory the service reads.
        let limits = dir.join("limits");
        std::fs::create_dir_all(&limits)?;
        for (domain, rate) in [
            (RATELIMIT_DOMAIN, UNREACHED_RATE),
            (BEARER_DOMAIN, BEARER_RATE),
        ] {
            write_user_limit(&limits.join(format!("{domain}.yaml")), domain, rate)?;
        }
        let exact = RateLimitService::start(
            "bulwark-ratelimit (exact)",
            binary,
            &redis.url(),
            &limits,
            &[(
                "BULWARK_RATELIMIT__LEASE__MIN_RATE_PER_SECOND",
                EXACT_MIN_RATE_PER_SECOND,
            )],
            &dir.join("ratelimit-exact.log"),
        )
        .await?;
        let leasing = RateLimitService::start(
            "bulwark-ratelimit (leasing)",
            binary,
            &redis.url(),
            &limits,
            &[],
            &dir.join("ratelimit-leasing.log"),
        )
        .await?;
        Ok(Self {
            redis,
            exact,
            leasing,
        })
    }

    /// The instance that decides `limit` in this benchmark.
    pub fn service(&self, limit: Limit) -> &RateLimitService {
        match limit {
            Limit::Unreached => &self.exact,
            Limit::Bearer => &self.leasing,
        }
    }

    /// Kills both instances, then Redis: the measurements are over.
    pub fn stop(mut self) {
        self.exact.stop("KILL");
        self.leasing.stop("KILL");
        drop(self.redis);
    }
}

/// Writes a limits file of `domain`: `rate` requests per second for each `user_id`.
pub fn write_user_limit(path: &Path, domain: &str, rate: u64) -> anyhow::Result<()> {
    std::fs::write(
        path,
        format!(
            "domain: {domain}\ndescriptors:\n  - key: user_id\n    rate_limit: {{ unit: second, requests_per_unit: {rate} }}\n"
        ),
    )
    .with_context(|| format!("writing {}", path.display()))
}

impl RateLimitService {
    /// Starts `binary` on free ports with `limits` (a file, or a directory of them) over
    /// the Redis at `redis_url`, `env` added to its settings, and waits until it is ready.
    pub async fn start(
        name: &str,
        binary: &Path,
        redis_url: &str,
        limits: &Path,
        env: &[(&str, &str)],
        log: &Path,
    ) -> anyhow::Result<Self> {
        let (grpc_port, http_port) = (free_port()?, free_port()?);
        let mut command = Command::new(binary);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("BULWARK_") {
                command.env_remove(key);
            }
        }
        command
            .env("BULWARK_GRPC__LISTEN", format!("127.0.0.1:{grpc_port}"))
            .env("BULWARK_HTTP__LISTEN", format!("127.0.0.1:{http_port}"))
            .env("BULWARK_REDIS__URL", redis_url)
            .env("BULWARK_RATELIMIT__CONFIG_PATH", limits)
            .env("BULWARK_TELEMETRY__LOG_LEVEL", "warn");
        for (key, value) in env {
            command.env(key, value);
        }
        let mut process = ManagedChild::spawn(name, &mut command, log)?;
        process
            .wait_ready(&format!("{name} ready"), READY_WITHIN, || {
                answers_200(http_port, "/ready", None)
            })
            .await?;
        Ok(Self {
            process,
            grpc_port,
            http_port,
        })
    }

    /// Sends `signal` (`TERM` lets it drain first) and waits for the exit; killed after
    /// 5 s.
    pub fn stop(&mut self, signal: &str) {
        let _ = self.process.stop(signal, Duration::from_secs(5));
    }
}
