//! Redis and two `bulwark-ratelimit` instances over it, started on free loopback ports for
//! the rate-limited cases and the rate-limit service benchmark.
//!
//! Both instances read the same limits and count in the same Redis; they differ in their
//! lease threshold only. The EXACT instance's threshold is above every limit, so each
//! lease item is decided exactly, one call per request (case f, and g's
//! `ShouldRateLimit`); the leasing instance keeps the defaults (limits of 50/s and more
//! are leased, 0.2 s of their rate), as the edge runs it (cases h and g-500, h-hot).

use std::path::Path;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::process::Command;

use super::cases::Limit;
use super::http_client::http_get;
use super::process::Process;
use super::{BEARER_DOMAIN, RATELIMIT_DOMAIN};
use bulwark_e2e::free_port;

/// The contract's bearer limit, requests per second per user (`services/ratelimit/limits.yaml`).
pub const BEARER_RATE: u64 = 100;
/// The lease size of [`BEARER_RATE`] with the service's default lease settings (0.2 s of
/// its rate).
pub const BEARER_LEASE: u64 = 20;
/// The EXACT instance's lease threshold: above [`UNREACHED_RATE`], so nothing is leased.
const EXACT_MIN_RATE_PER_SECOND: &str = "10000000000";
/// The limit of [`RATELIMIT_DOMAIN`], never reached: those cases measure decisions.
const UNREACHED_RATE: u64 = 1_000_000_000;

/// One `bulwark-ratelimit` process.
pub struct RateLimitService {
    process: Process,
    pub grpc_port: u16,
    /// The admin port: `/ready`, `/metrics`.
    pub http_port: u16,
}

/// Redis and the two rate-limit service instances.
pub struct RateLimitStack {
    redis: Process,
    pub redis_port: u16,
    /// Lease threshold above every limit: everything is decided per request.
    pub exact: RateLimitService,
    /// Default lease settings: the bearer limit is leased.
    pub leasing: RateLimitService,
}

impl RateLimitStack {
    pub async fn start(binary: &Path, redis_server: &Path, dir: &Path) -> anyhow::Result<Self> {
        let redis_port = free_port()?;
        let mut command = Command::new(redis_server);
        command.args([
            "--bind",
            "127.0.0.1",
            "--port",
            &redis_port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
            "--loglevel",
            "warning",
        ]);
        command.arg("--dir").arg(dir);
        let mut redis = Process::spawn("redis-server", command, &dir.join("redis.log"))?;
        redis
            .wait_ready(Duration::from_secs(10), || async move {
                TcpStream::connect(("127.0.0.1", redis_port)).await.is_ok()
            })
            .await?;

        // One domain per file, both in one directory the service reads.
        let limits = dir.join("limits");
        std::fs::create_dir_all(&limits)?;
        for (domain, rate) in [
            (RATELIMIT_DOMAIN, UNREACHED_RATE),
            (BEARER_DOMAIN, BEARER_RATE),
        ] {
            std::fs::write(
                limits.join(format!("{domain}.yaml")),
                format!(
                    "domain: {domain}\ndescriptors:\n  - key: user_id\n    rate_limit: {{ unit: second, requests_per_unit: {rate} }}\n"
                ),
            )?;
        }
        let exact = RateLimitService::start(
            "bulwark-ratelimit (exact)",
            binary,
            redis_port,
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
            redis_port,
            &limits,
            &[],
            &dir.join("ratelimit-leasing.log"),
        )
        .await?;
        Ok(Self {
            redis,
            redis_port,
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

    pub async fn stop(self) {
        self.exact.process.stop().await;
        self.leasing.process.stop().await;
        self.redis.stop().await;
    }
}

impl RateLimitService {
    async fn start(
        name: &str,
        binary: &Path,
        redis_port: u16,
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
            .env(
                "BULWARK_REDIS__URL",
                format!("redis://127.0.0.1:{redis_port}"),
            )
            .env("BULWARK_RATELIMIT__CONFIG_PATH", limits)
            .env("BULWARK_TELEMETRY__LOG_LEVEL", "warn");
        for (key, value) in env {
            command.env(key, value);
        }
        let mut process = Process::spawn(name, command, log)?;
        process
            .wait_ready(Duration::from_secs(20), || async move {
                http_get(http_port, "/ready", None)
                    .await
                    .is_ok_and(|r| r.status == 200)
            })
            .await?;
        Ok(Self {
            process,
            grpc_port,
            http_port,
        })
    }
}
