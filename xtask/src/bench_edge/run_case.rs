//! One run of a case: its own Envoy, started, probed, warmed up and measured with wrk.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, ensure};

use super::Bench;
use super::cases::{Case, Filters, Limit, Tokens, USERS};
use super::envoy_config::{Site, render, validate_envoy};
use super::envoy_stats::{LEASE_RENEWALS, LEASE_SPENT, envoy_stats, stat_delta, stat_increase};
use super::http_client::{answers_200, http_get};
use super::keys::Alg;
use super::machine::load_average;
use super::over_limit::{OverLimitCheck, over_limit_check};
use super::service_metrics::ServiceCounters;
use super::wrk::{WrkFigures, wrk};
use bulwark_e2e::{ManagedChild, free_port};

/// How long a stopped process may take to exit (it is killed: the run is measured).
pub const STOP_WITHIN: Duration = Duration::from_secs(5);

/// The figures of one run of a case.
#[derive(Debug)]
pub struct CaseResult {
    pub measured: WrkFigures,
    pub cpu_us_per_request: Option<f64>,
    pub load: f64,
    pub checks: String,
    pub tokens_note: String,
    /// How the case's limit was served over the measured run (rate-limited cases).
    pub limiting: Option<Limiting>,
}

/// What a rate-limited run asked of the rate-limit service, over the measured run.
#[derive(Debug, Clone)]
pub struct Limiting {
    /// The service's counters of the case's domain.
    pub service: ServiceCounters,
    /// Envoy's background renewal calls (`wasmcustom.bulwark_gateway.lease_renewals`).
    pub renewals: u64,
    /// Requests Envoy admitted from a lease, without a call.
    pub spent: u64,
    /// The check that one user sent over its limit is refused (the 100/s cases).
    pub over_limit: Option<OverLimitCheck>,
}

impl Limiting {
    /// Fails when the gateway filter's limit was not served the way the case says: f
    /// must be decided EXACT, a call per request, and h from leases. A case that
    /// measured the other mode would be compared under a wrong name.
    fn verify(&self, case: &Case, requests: u64) -> anyhow::Result<()> {
        let requests = requests as f64;
        let service = &self.service;
        match case.filters {
            Filters::GatewayRateLimited(Limit::Unreached) => ensure!(
                service.leased_grants == 0.0
                    && self.spent == 0
                    && service.exact_grants >= 0.95 * requests,
                "meant to be EXACT, but over {requests} requests the service answered {} \
                 exact and {} leased items and Envoy admitted {} from leases",
                service.exact_grants,
                service.leased_grants,
                self.spent
            ),
            Filters::GatewayRateLimited(Limit::Bearer) => ensure!(
                service.exact_grants == 0.0
                    && self.renewals > 0
                    && self.spent as f64 >= 0.9 * requests,
                "meant to be LEASED, but over {requests} requests the service answered {} \
                 exact and {} leased items, Envoy admitted {} from leases and renewed {} \
                 times",
                service.exact_grants,
                service.leased_grants,
                self.spent,
                self.renewals
            ),
            _ => {}
        }
        Ok(())
    }
}

impl CaseResult {
    pub fn errors(&self) -> u64 {
        self.measured.status_errors + self.measured.socket_errors
    }

    /// Requests per second each user sent, in the many-user cases.
    pub fn per_user_rate(&self, case: &Case) -> Option<f64> {
        (case.tokens == Tokens::Users).then(|| self.measured.per_second() / USERS as f64)
    }
}

impl Bench {
    /// The ports and paths of an Envoy for `case`.
    pub fn site(&self, case: &Case) -> anyhow::Result<Site> {
        let ratelimit_port = match (&self.ratelimit, case.filters.limit()) {
            (Ok(stack), Some(limit)) => stack.service(limit).grpc_port,
            (Ok(stack), None) => stack.exact.grpc_port,
            (Err(_), _) => free_port()?,
        };
        Ok(Site {
            listen_port: free_port()?,
            admin_port: free_port()?,
            jwks_port: self.jwks.port,
            ratelimit_port,
            wasm: self.wasm.clone(),
        })
    }

    /// An Envoy for `case` with `workers` worker threads, its configuration validated
    /// first, started and ready (its admin `/ready` answers 200). `run_name` names its
    /// configuration and log in the work directory.
    pub async fn start_envoy(
        &self,
        case: &Case,
        site: &Site,
        run_name: &str,
        workers: u32,
    ) -> anyhow::Result<ManagedChild> {
        let config_path = self.dir.path().join(format!("{run_name}.yaml"));
        std::fs::write(&config_path, render(case, site)?)?;
        validate_envoy(&self.tools.envoy, &config_path).await?;

        let mut command = Command::new(&self.tools.envoy);
        command
            .args([
                "--concurrency",
                &workers.to_string(),
                "--use-dynamic-base-id",
                "-l",
                "warning",
                "-c",
            ])
            .arg(&config_path);
        let log = self.dir.path().join(format!("{run_name}.log"));
        let name = format!("envoy ({run_name})");
        let mut envoy = ManagedChild::spawn(&name, &mut command, &log)?;
        envoy
            .wait_ready(&format!("{name} ready"), Duration::from_secs(20), || {
                answers_200(site.admin_port, "/ready", None)
            })
            .await?;
        Ok(envoy)
    }

    /// One run of `case` in `round` (counted from 0), with an Envoy of its own.
    pub async fn run_case(&self, case: &Case, round: usize) -> anyhow::Result<CaseResult> {
        let site = self.site(case)?;
        // Named per round, so --keep keeps every round's configuration and log.
        let run_name = format!("envoy-{}-round{}", case.key, round + 1);
        let mut envoy = self.start_envoy(case, &site, &run_name, 1).await?;
        let admin_port = site.admin_port;
        self.probe(case, &mut envoy, site.listen_port).await?;
        let over_limit = match case.filters.limit() {
            Some(Limit::Bearer) => {
                // The gateway filter may hold a lease of the user's limit; native
                // ratelimit asks per request.
                let leasing = u64::from(matches!(case.filters, Filters::GatewayRateLimited(_)));
                Some(
                    over_limit_check(site.listen_port, &self.over_token, leasing)
                        .await
                        .with_context(|| format!("case {}", case.key))?,
                )
            }
            _ => None,
        };

        let (file, pool) = match case.tokens {
            Tokens::Repeated => (&self.tokens.repeated, 1),
            Tokens::Fresh(Alg::EdDsa) => (&self.tokens.eddsa, self.tokens.eddsa_count),
            Tokens::Fresh(Alg::Rs256) => (&self.tokens.rs256, self.tokens.rs256_count),
            Tokens::Users => (&self.tokens.users, self.tokens.users_count),
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
        let service = match (&self.ratelimit, case.filters.limit()) {
            (Ok(stack), Some(limit)) => Some((stack.service(limit).http_port, limit.domain())),
            _ => None,
        };
        let counters_before = match service {
            Some((port, domain)) => ServiceCounters::read(port, domain).await,
            None => ServiceCounters::default(),
        };
        let stats_before = envoy_stats(admin_port).await;
        let cpu_before = envoy.cpu_seconds();
        let measured = wrk(
            &self.tools,
            &self.options,
            site.listen_port,
            file,
            first_token,
            self.options.seconds,
        )
        .await?;
        let cpu_after = envoy.cpu_seconds();
        let load = load_average();
        let stats_after = envoy_stats(admin_port).await;
        let limiting = match service {
            Some((port, domain)) => Some(Limiting {
                service: ServiceCounters::read(port, domain)
                    .await
                    .since(&counters_before),
                renewals: stat_increase(&stats_before, &stats_after, LEASE_RENEWALS),
                spent: stat_increase(&stats_before, &stats_after, LEASE_SPENT),
                over_limit,
            }),
            None => None,
        };
        let _ = envoy.stop("KILL", STOP_WITHIN);
        if let Some(limiting) = &limiting {
            limiting
                .verify(case, measured.requests)
                .with_context(|| format!("case {}", case.key))?;
        }

        let cpu_us_per_request = match (cpu_before, cpu_after) {
            (Some(before), Some(after)) if measured.requests > 0 => {
                Some((after - before) * 1e6 / measured.requests as f64)
            }
            _ => None,
        };
        let sent = first_token - 1 + measured.requests;
        let tokens_note = match case.tokens {
            Tokens::Repeated => "one token".to_owned(),
            Tokens::Users => format!(
                "{sent} requests over {USERS} users' tokens in turn, {:.1} per user and second",
                measured.per_second() / USERS as f64
            ),
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
            limiting,
        })
    }

    /// Before measuring: a valid token passes (the JWKS is in) and, where a filter
    /// authenticates, a request without one is refused, so no case measures a filter that
    /// lets everything through.
    pub async fn probe(
        &self,
        case: &Case,
        envoy: &mut ManagedChild,
        port: u16,
    ) -> anyhow::Result<()> {
        let token = std::fs::read_to_string(&self.tokens.repeated)?;
        let token = token.trim();
        let name = envoy.name().to_owned();
        envoy
            .wait_ready(
                &format!("{name}: a request with a valid token answered 200"),
                Duration::from_secs(15),
                || answers_200(port, "/bench", Some(token)),
            )
            .await?;
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
