//! Redis and `bulwark-ratelimit`, started on free loopback ports for cases f and g and the
//! rate-limit service benchmark.

use std::path::Path;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::process::Command;

use super::RATELIMIT_DOMAIN;
use super::http_client::http_get;
use super::process::Process;
use bulwark_e2e::free_port;

/// Redis and `bulwark-ratelimit`, each on a free loopback port.
pub struct RateLimitStack {
    redis: Process,
    service: Process,
    pub grpc_port: u16,
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

        // No limit is ever reached: the benchmark measures decisions, not refusals.
        let limits = dir.join("limits.yaml");
        std::fs::write(
            &limits,
            format!(
                "domain: {RATELIMIT_DOMAIN}\ndescriptors:\n  - key: user_id\n    rate_limit: {{ unit: second, requests_per_unit: 1000000000 }}\n"
            ),
        )?;
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
            .env("BULWARK_RATELIMIT__CONFIG_PATH", &limits)
            .env("BULWARK_TELEMETRY__LOG_LEVEL", "warn");
        let mut service = Process::spawn("bulwark-ratelimit", command, &dir.join("ratelimit.log"))?;
        service
            .wait_ready(Duration::from_secs(20), || async move {
                http_get(http_port, "/ready", None)
                    .await
                    .is_ok_and(|r| r.status == 200)
            })
            .await?;
        Ok(Self {
            redis,
            service,
            grpc_port,
        })
    }

    pub async fn stop(self) {
        self.service.stop().await;
        self.redis.stop().await;
    }
}
