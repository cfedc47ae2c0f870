//! `cargo xtask bench-edge`: issue #4's edge benchmark, with issue 10's leased quotas. One
//! Envoy worker with a route that answers inside Envoy, so each case measures what its
//! filters cost: no filter, Envoy's native `jwt_authn` (cached, uncached), the gateway
//! filter (repeated and fresh tokens, Ed25519 and RS256), the gateway filter with EXACT
//! rate limiting and native `jwt_authn` plus the native `ratelimit` filter against the
//! same `bulwark-ratelimit` and Redis; then, over the tokens of 500 users, the gateway
//! filter without and with LEASED rate limiting of the bearer limit and the native pair
//! with the same limit. After the rounds: one user hammered through two Envoys (h-hot,
//! admitted per second against the README's bound) and the rate-limit service alone
//! beside the raw Redis script. Every case runs once per round (`--rounds`), every other
//! round in reverse order, and the report gives medians over the rounds, because a shared
//! machine's speed drifts over minutes. Prints the figures and writes
//! `xtask/results/edge.md`, with `edge.json` and its charts beside it.
//!
//! Everything runs on 127.0.0.1 and is started by this task: keys and tokens are made in
//! the run, a JWKS server runs in this process, Redis and the rate-limit service in a
//! temporary directory. Every process is killed when the task ends, also on an error.

#![allow(
    clippy::print_stdout,
    reason = "a benchmark reports its figures on stdout"
)]

pub(crate) mod cases;
pub(crate) mod envoy_config;
mod envoy_stats;
mod figures;
mod hot;
pub(crate) mod http_client;
pub(crate) mod jwks;
mod keys;
mod machine;
mod options;
mod over_limit;
pub(crate) mod ratelimit;
mod redis_raw;
mod report;
mod rounds;
mod run_case;
mod service_bench;
mod service_metrics;
pub(crate) mod tools;
mod wrk;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Context as _, bail};

use cases::{CASES, Case, Tokens, USERS};
use hot::HotResult;
use jwks::JwksServer;
use keys::{Alg, HOT_SUBJECT, Keys, OVER_SUBJECT, TokenFiles, write_tokens};
use machine::load_average;
use options::{Options, USAGE};
use ratelimit::RateLimitStack;
use report::Report;
use rounds::{CaseRounds, round_order};
use run_case::CaseResult;
use service_bench::{ServiceResult, bench_service};
use tools::{Tools, build_ratelimit, build_wasm};

/// The tokens' issuer and audience, here and in edge-costs.
pub(crate) const ISSUER: &str = "https://auth.bulwark.bench";
pub(crate) const AUDIENCE: &str = "bulwark-api";
/// The domain of the never-reached limit (cases f and g, the service alone).
const RATELIMIT_DOMAIN: &str = "bench-edge";
/// The domain of the bearer limit, 100/s per user (cases h, g-500 and h-hot).
const BEARER_DOMAIN: &str = "bench-edge-bearer";
/// The gateway filter's default token cache size; the native cache gets the same.
const TOKEN_CACHE_SIZE: usize = 1024;

pub async fn run(args: &[String]) -> anyhow::Result<()> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        eprintln!("{USAGE}");
        return Ok(());
    }
    let options = Options::parse(args)?;
    let tools = Tools::find()?;
    // On SIGINT or SIGTERM the benchmark's future is dropped, and with it every process
    // it started (each is killed on drop).
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let report = tokio::select! {
        report = async { Bench::prepare(&options, tools).await?.run_all().await } => report?,
        _ = tokio::signal::ctrl_c() => bail!("interrupted; every process it started is stopped"),
        _ = terminate.recv() => bail!("terminated; every process it started is stopped"),
    };
    print!("{}", report.markdown);
    // A run of some cases only leaves the last full run's report and charts alone.
    if options.cases.is_none() {
        let dir = crate::charts::results_dir();
        let path = dir.join("edge.md");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(&path, &report.markdown)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
        crate::charts::write_edge(&dir, &report.figures)?;
    }
    Ok(())
}

/// Everything prepared once for all cases; dropping it stops every process.
struct Bench {
    options: Options,
    tools: Tools,
    dir: tempfile::TempDir,
    tokens: TokenFiles,
    /// The user of the over-limit check of the 100/s cases.
    over_token: String,
    /// The user h-hot drives over its limit.
    hot_token: String,
    jwks: JwksServer,
    wasm: PathBuf,
    ratelimit: Result<RateLimitStack, String>,
    load_at_start: f64,
}

impl Bench {
    async fn prepare(options: &Options, tools: Tools) -> anyhow::Result<Self> {
        let load_at_start = load_average();
        let wasm = build_wasm()?;
        let needs_ratelimit = CASES
            .iter()
            .any(|c| c.filters.rate_limited() && options.wants(c.key))
            || options.wants("h-hot")
            || options.wants("service");
        let ratelimit_binary = if needs_ratelimit {
            build_ratelimit().map_err(|e| format!("{e:#}"))
        } else {
            Err("not asked for".to_owned())
        };

        let mut dir = tempfile::Builder::new()
            .prefix("bulwark-bench-edge-")
            .tempdir()?;
        // Kept from the start, so a run that fails leaves its logs too.
        dir.disable_cleanup(options.keep);
        eprintln!(
            "[setup] keys: Ed25519 and RSA-2048; signing {} EdDSA and {} RS256 tokens ...",
            options.eddsa_tokens, options.rs256_tokens
        );
        let started = Instant::now();
        let keys = Arc::new(Keys::generate()?);
        std::fs::write(dir.path().join("jwks.json"), &keys.jwks)?;
        let tokens = TokenFiles {
            repeated: dir.path().join("tokens-repeated.txt"),
            eddsa: dir.path().join("tokens-eddsa.txt"),
            eddsa_count: options.eddsa_tokens,
            rs256: dir.path().join("tokens-rs256.txt"),
            rs256_count: options.rs256_tokens,
            users: dir.path().join("tokens-users.txt"),
            users_count: USERS,
        };
        let pools = [
            (&tokens.repeated, Alg::EdDsa, 1, true),
            (
                &tokens.eddsa,
                Alg::EdDsa,
                tokens.eddsa_count,
                options.wants("c-eddsa") || options.wants("e-eddsa"),
            ),
            (
                &tokens.rs256,
                Alg::Rs256,
                tokens.rs256_count,
                options.wants("c-rs256") || options.wants("e-rs256"),
            ),
        ];
        for (path, alg, count, wanted) in pools {
            if wanted {
                // Off the runtime's threads, so a Ctrl-C is heard while signing.
                let keys = Arc::clone(&keys);
                let signed = tokio::task::spawn_blocking(move || keys.tokens(alg, count)).await??;
                write_tokens(path, &signed)?;
            }
        }
        let wants_users = CASES
            .iter()
            .any(|c| c.tokens == Tokens::Users && options.wants(c.key));
        if wants_users {
            write_tokens(&tokens.users, &keys.user_tokens(USERS)?)?;
        }
        let over_token = keys.token_of(OVER_SUBJECT);
        let hot_token = keys.token_of(HOT_SUBJECT);
        eprintln!("[setup] tokens signed in {:.1?}", started.elapsed());
        let jwks = JwksServer::start(keys.jwks.clone()).await?;

        let ratelimit = match ratelimit_binary {
            Ok(binary) => {
                eprintln!("[setup] starting redis-server and bulwark-ratelimit ...");
                RateLimitStack::start(&binary, dir.path())
                    .await
                    .map_err(|e| format!("the rate-limit service did not start: {e:#}"))
            }
            Err(why) => Err(why),
        };
        Ok(Self {
            options: options.clone(),
            tools,
            dir,
            tokens,
            over_token,
            hot_token,
            jwks,
            wasm,
            ratelimit,
            load_at_start,
        })
    }

    async fn run_all(mut self) -> anyhow::Result<Report> {
        let (runnable, skipped) = self.runnable_cases();
        let cases = self.run_rounds(&runnable).await?;
        let hot = self.run_hot_once().await?;
        let service = self.run_service().await?;
        let load_at_end = load_average();
        if self.options.keep {
            eprintln!("[keep] work directory kept: {}", self.dir.path().display());
        }
        let jwks_fetches = self.jwks.fetches.load(Ordering::Relaxed);
        if let Ok(stack) = std::mem::replace(&mut self.ratelimit, Err("stopped".to_owned())) {
            stack.stop();
        }
        Ok(Report::new(
            &self,
            &cases,
            &skipped,
            &hot,
            &service,
            load_at_end,
            jwks_fetches,
        ))
    }

    /// The selected cases that can run, and why the others cannot (a rate-limited case
    /// without the rate-limit service).
    fn runnable_cases(&self) -> (Vec<&'static Case>, Vec<(&'static str, String)>) {
        let mut runnable = Vec::new();
        let mut skipped = Vec::new();
        for case in CASES.iter().filter(|c| self.options.wants(c.key)) {
            match &self.ratelimit {
                Err(why) if case.filters.rate_limited() => {
                    eprintln!("[skip] ({}) {}: not run: {why}", case.key, case.label);
                    skipped.push((case.key, why.clone()));
                }
                _ => runnable.push(case),
            }
        }
        (runnable, skipped)
    }

    /// Every case once per round, in [`round_order`]; each case's runs in round order.
    async fn run_rounds(&self, runnable: &[&'static Case]) -> anyhow::Result<Vec<CaseRounds>> {
        let mut cases: Vec<CaseRounds> = runnable
            .iter()
            .map(|case| CaseRounds {
                key: case.key,
                label: case.label,
                runs: Vec::new(),
            })
            .collect();
        let rounds = self.options.rounds;
        for round in 0..rounds {
            let order = round_order(runnable, round);
            for (step, case) in order.iter().enumerate() {
                eprintln!(
                    "[round {}/{rounds}, {}/{}] ({}) {} ...",
                    round + 1,
                    step + 1,
                    order.len(),
                    case.key,
                    case.label
                );
                let result = self.run_case(case, round).await?;
                print_figures(case, &result);
                if let Some(runs_of_case) = cases.iter_mut().find(|c| c.key == case.key) {
                    runs_of_case.runs.push(result);
                }
            }
        }
        Ok(cases)
    }

    /// h-hot, once after the rounds. `Err` says why it did not run.
    async fn run_hot_once(&self) -> anyhow::Result<Result<HotResult, String>> {
        if !self.options.wants("h-hot") {
            return Ok(Err("not asked for".to_owned()));
        }
        if let Err(why) = &self.ratelimit {
            return Ok(Err(why.clone()));
        }
        eprintln!(
            "[h-hot] one user over its limit through {} Envoys of {} workers ...",
            hot::ENVOYS,
            hot::WORKERS
        );
        let result = self.run_hot().await?;
        for (index, window) in result.windows.iter().enumerate() {
            let bound = hot::window_bound(index);
            eprintln!(
                "    second {}: {} admitted (bound {bound}: {}), {} refused, {} failed",
                index + 1,
                window.admitted,
                if window.admitted <= bound {
                    "PASS"
                } else {
                    "FAIL"
                },
                window.refused,
                window.failed
            );
        }
        Ok(Ok(result))
    }

    /// The rate-limit service alone, once after the rounds. `Err` says why it did not run.
    async fn run_service(&self) -> anyhow::Result<Result<ServiceResult, String>> {
        if !self.options.wants("service") {
            return Ok(Err("not asked for".to_owned()));
        }
        eprintln!(
            "[service] rate-limit service alone (ShouldRateLimit, Lease) and raw EVALSHA ..."
        );
        let stack = match &self.ratelimit {
            Ok(stack) => stack,
            Err(why) => return Ok(Err(why.clone())),
        };
        let result = bench_service(stack, &self.options).await?;
        for (name, phase) in [
            ("ShouldRateLimit decisions", &result.should_rate_limit),
            ("Lease calls", &result.lease),
            ("raw EVALSHA decisions", &result.raw),
        ] {
            eprintln!(
                "    {name}: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
                phase.per_second, phase.p50_ms, phase.p99_ms, phase.errors
            );
        }
        Ok(Ok(result))
    }
}

fn print_figures(case: &Case, result: &CaseResult) {
    eprintln!(
        "    {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} errors{}",
        result.measured.per_second(),
        result.measured.p50_us as f64 / 1000.0,
        result.measured.p99_us as f64 / 1000.0,
        result.errors(),
        if result.checks.is_empty() {
            String::new()
        } else {
            format!(" ({})", result.checks)
        }
    );
    if let Some(rate) = result.per_user_rate(case) {
        eprintln!(
            "    {rate:.1} requests per second per user (limit {}/s): {}",
            ratelimit::BEARER_RATE,
            if rate < ratelimit::BEARER_RATE as f64 {
                "PASS"
            } else {
                "FAIL"
            }
        );
    }
    if let Some(limiting) = &result.limiting {
        let seconds = result.measured.seconds();
        eprintln!(
            "    lease renewal calls {:.0}/s; service: {:.0} leased items/s, {:.0} exact items/s, {:.0} decisions/s",
            limiting.renewals as f64 / seconds,
            limiting.service.leased_grants / seconds,
            limiting.service.exact_grants / seconds,
            limiting.service.decisions / seconds,
        );
        if let Some(check) = &limiting.over_limit {
            eprintln!("    {}", check.describe());
        }
    }
}
