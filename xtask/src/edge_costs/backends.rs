//! What the measured Envoy calls, all outside valgrind: a JWKS server in this process, and
//! for the rate-limit cases Redis and `bulwark-ratelimit` with a per-user limit of 100/s.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bulwark_e2e::{ManagedChild, Redis, free_port, poll_until};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use super::client::http_status;
use super::config::RATELIMIT_DOMAIN;

/// A JWKS server on 127.0.0.1 (answers every request with the key set); stopped on drop.
#[derive(Debug)]
pub struct JwksServer {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    pub async fn start(jwks: Vec<u8>) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let mut response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            jwks.len()
        )
        .into_bytes();
        response.extend_from_slice(&jwks);
        let response: Arc<[u8]> = response.into();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let response = Arc::clone(&response);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16_384 {
                        match stream.read(&mut buf).await {
                            Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                            _ => return,
                        }
                    }
                    let _ = stream.write_all(&response).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Ok(Self { port, task })
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

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
    service: ManagedChild,
    redis: Redis,
}

impl RateLimitService {
    pub async fn start(binary: &Path, mode: ServiceMode, dir: &Path) -> anyhow::Result<Self> {
        let name = match mode {
            ServiceMode::Exact => "exact",
            ServiceMode::Leased => "leased",
        };
        let redis = Redis::start(
            &dir.join(format!("redis-{name}")),
            free_port()?,
            &dir.join(format!("redis-{name}.log")),
        )
        .await?;
        let limits = dir.join("limits.yaml");
        std::fs::write(
            &limits,
            format!(
                "domain: {RATELIMIT_DOMAIN}\ndescriptors:\n  - key: user_id\n    rate_limit: {{ unit: second, requests_per_unit: 100 }}\n"
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
            .env("BULWARK_REDIS__URL", redis.url())
            .env("BULWARK_RATELIMIT__CONFIG_PATH", &limits)
            .env("BULWARK_TELEMETRY__LOG_LEVEL", "warn");
        if mode == ServiceMode::Exact {
            command.env("BULWARK_RATELIMIT__LEASE__MIN_RATE_PER_SECOND", "1000000");
        }
        let service = ManagedChild::spawn(
            "bulwark-ratelimit",
            &mut command,
            &dir.join(format!("ratelimit-{name}.log")),
        )?;
        poll_until(
            "bulwark-ratelimit ready",
            Duration::from_secs(30),
            || async move {
                match http_status(http_port, "/ready").await {
                    Ok(200) => Ok(()),
                    Ok(status) => Err(format!("/ready answered {status}")),
                    Err(e) => Err(format!("{e:#}")),
                }
            },
        )
        .await
        .with_context(|| {
            format!(
                "log: {}",
                dir.join(format!("ratelimit-{name}.log")).display()
            )
        })?;
        Ok(Self {
            grpc_port,
            service,
            redis,
        })
    }

    pub fn stop(mut self) {
        let _ = self.service.stop("TERM", Duration::from_secs(5));
        let _ = self.redis.stop();
    }
}
