//! One run of a case: its own Envoy, started, probed, warmed up and measured with wrk.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use tokio::process::Command;

use super::Bench;
use super::cases::{Case, Tokens};
use super::envoy_config::{Site, render, validate_envoy};
use super::envoy_stats::{envoy_stats, stat_delta};
use super::http_client::http_get;
use super::keys::Alg;
use super::process::{Process, load_average};
use super::wrk::{WrkFigures, wrk};
use bulwark_e2e::free_port;

/// The figures of one run of a case.
#[derive(Debug)]
pub struct CaseResult {
    pub measured: WrkFigures,
    pub cpu_us_per_request: Option<f64>,
    pub load: f64,
    pub checks: String,
    pub tokens_note: String,
}

impl CaseResult {
    pub fn errors(&self) -> u64 {
        self.measured.status_errors + self.measured.socket_errors
    }
}

impl Bench {
    /// One run of `case` in `round` (counted from 0), with an Envoy of its own.
    pub async fn run_case(&self, case: &Case, round: usize) -> anyhow::Result<CaseResult> {
        let site = Site {
            listen_port: free_port()?,
            admin_port: free_port()?,
            jwks_port: self.jwks.port,
            ratelimit_port: match &self.ratelimit {
                Ok(stack) => stack.grpc_port,
                Err(_) => free_port()?,
            },
            wasm: self.wasm.clone(),
        };
        // Named per round, so --keep keeps every round's configuration and log.
        let run_name = format!("envoy-{}-round{}", case.key, round + 1);
        let config_path = self.dir.path().join(format!("{run_name}.yaml"));
        std::fs::write(&config_path, render(case, &site)?)?;
        validate_envoy(&self.tools.envoy, &config_path).await?;

        let mut command = Command::new(&self.tools.envoy);
        command
            .args([
                "--concurrency",
                "1",
                "--use-dynamic-base-id",
                "-l",
                "warning",
                "-c",
            ])
            .arg(&config_path);
        let log = self.dir.path().join(format!("{run_name}.log"));
        let mut envoy = Process::spawn(&format!("envoy ({})", case.key), command, &log)?;
        let admin_port = site.admin_port;
        envoy
            .wait_ready(Duration::from_secs(20), || async move {
                http_get(admin_port, "/ready", None)
                    .await
                    .is_ok_and(|r| r.status == 200)
            })
            .await?;
        self.probe(case, &mut envoy, site.listen_port).await?;

        let (file, pool) = match case.tokens {
            Tokens::Repeated => (&self.tokens.repeated, 1),
            Tokens::Fresh(Alg::EdDsa) => (&self.tokens.eddsa, self.tokens.eddsa_count),
            Tokens::Fresh(Alg::Rs256) => (&self.tokens.rs256, self.tokens.rs256_count),
        };
        let mut first_token = 1;
        if self.options.warmup > 0 {
            let warm = wrk(
                &self.tools,
                &self.options,
                site.listen_port,
                file,
                1,
                self.options.warmup,
            )
            .await?;
            first_token += warm.requests;
        }
        let stats_before = envoy_stats(admin_port).await;
        let cpu_before = envoy.cpu_seconds(self.ticks_per_second);
        let measured = wrk(
            &self.tools,
            &self.options,
            site.listen_port,
            file,
            first_token,
            self.options.seconds,
        )
        .await?;
        let cpu_after = envoy.cpu_seconds(self.ticks_per_second);
        let load = load_average();
        let stats_after = envoy_stats(admin_port).await;
        envoy.stop().await;

        let cpu_us_per_request = match (cpu_before, cpu_after) {
            (Some(before), Some(after)) if measured.requests > 0 => {
                Some((after - before) * 1e6 / measured.requests as f64)
            }
            _ => None,
        };
        let sent = first_token - 1 + measured.requests;
        let tokens_note = match case.tokens {
            Tokens::Repeated => "one token".to_owned(),
            Tokens::Fresh(_) => {
                let pool = pool as u64;
                if sent <= pool {
                    format!("{sent} requests, each a distinct token")
                } else {
                    format!(
                        "{sent} requests over {pool} distinct tokens (each reused after {pool} requests)"
                    )
                }
            }
        };
        Ok(CaseResult {
            measured,
            cpu_us_per_request,
            load,
            checks: stat_delta(&stats_before, &stats_after),
            tokens_note,
        })
    }

    /// Before measuring: a valid token passes (the JWKS is in) and, where a filter
    /// authenticates, a request without one is refused, so no case measures a filter that
    /// lets everything through.
    async fn probe(&self, case: &Case, envoy: &mut Process, port: u16) -> anyhow::Result<()> {
        let token = std::fs::read_to_string(&self.tokens.repeated)?;
        let token = token.trim().to_owned();
        let name = envoy.name.clone();
        envoy
            .wait_ready(Duration::from_secs(15), || {
                let token = token.clone();
                async move {
                    http_get(port, "/bench", Some(&token))
                        .await
                        .is_ok_and(|r| r.status == 200)
                }
            })
            .await
            .with_context(|| format!("{name}: a request with a valid token never got 200"))?;
        if case.filters.authenticates() {
            let reply = http_get(port, "/bench", None).await?;
            ensure!(
                reply.status == 401,
                "{name}: a request without a token got {} instead of 401",
                reply.status
            );
        }
        Ok(())
    }
}
