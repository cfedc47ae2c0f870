//! Benchmark of the rate-limit service alone: decisions per second and latency of
//! concurrent `ShouldRateLimit` calls against an in-process service on 127.0.0.1, next
//! to the same GCRA script called on the same Redis directly, so the service's own
//! cost shows as a ratio.
//!
//! ```text
//! BULWARK_TEST_REDIS_URL=redis://127.0.0.1:6379 \
//!     cargo run --release -p bulwark-ratelimit --example bench -- [--seconds 5] [--concurrency 64]
//! ```
//!
//! Only loopback Redis URLs are accepted; every phase stops by itself.

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bulwark_kernel::config::KernelConfig;
use bulwark_kernel::testing::{TEST_REDIS_URL_ENV, settings, start_stateless};
use bulwark_limiter::limiter::{GCRA_LUA, SHARED_CONNECTIONS, eval_gcra};
use bulwark_proto::envoy::extensions::common::ratelimit::v3::{
    RateLimitDescriptor, rate_limit_descriptor,
};
use bulwark_proto::envoy::service::ratelimit::v3::RateLimitRequest;
use bulwark_proto::envoy::service::ratelimit::v3::rate_limit_response::Code;
use bulwark_proto::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use bulwark_ratelimit::SPEC;
use secrecy::SecretString;

const WARMUP: Duration = Duration::from_secs(1);
/// Distinct users the load is spread over (100/s each, so nearly all are allowed).
const USERS: u64 = 10_000;
/// gRPC connections the calls are spread over.
const CONNECTIONS: usize = 4;
/// The kernel's default Redis pool size.
const POOL_SIZE: u32 = 16;

#[derive(Debug)]
struct Options {
    seconds: u64,
    concurrency: usize,
}

impl Options {
    fn parse() -> anyhow::Result<Self> {
        let mut options = Self {
            seconds: 5,
            concurrency: 64,
        };
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            let value = args
                .next()
                .with_context(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--seconds" => options.seconds = value.parse()?,
                "--concurrency" => options.concurrency = value.parse()?,
                other => bail!("unknown flag {other} (--seconds N, --concurrency N)"),
            }
        }
        if !(1..=60).contains(&options.seconds) || !(1..=1024).contains(&options.concurrency) {
            bail!("--seconds must be 1..=60 and --concurrency 1..=1024");
        }
        Ok(options)
    }
}

/// What one phase measured.
#[derive(Debug, Default)]
struct Tally {
    latencies_us: Vec<u32>,
    ok: u64,
    over_limit: u64,
    errors: u64,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        self.ok += other.ok;
        self.over_limit += other.over_limit;
        self.errors += other.errors;
    }

    fn report(&mut self, name: &str, seconds: f64) -> f64 {
        self.latencies_us.sort_unstable();
        let at = |q: f64| {
            let index = ((self.latencies_us.len() as f64 - 1.0) * q).round() as usize;
            f64::from(self.latencies_us.get(index).copied().unwrap_or(0)) / 1000.0
        };
        let rate = self.latencies_us.len() as f64 / seconds;
        println!(
            "{name:<28} {rate:>10.0}/s   p50 {:>6.2} ms   p99 {:>6.2} ms   p99.9 {:>6.2} ms   ok {} over {} errors {}",
            at(0.50),
            at(0.99),
            at(0.999),
            self.ok,
            self.over_limit,
            self.errors
        );
        rate
    }
}

fn loopback_redis_url() -> anyhow::Result<String> {
    let url = std::env::var(TEST_REDIS_URL_ENV).with_context(|| {
        format!("set {TEST_REDIS_URL_ENV} to a loopback Redis, e.g. redis://127.0.0.1:6379")
    })?;
    let host = url
        .split("://")
        .nth(1)
        .map(|rest| rest.rsplit('@').next().unwrap_or(rest))
        .and_then(|rest| rest.split(['/', '?']).next())
        .unwrap_or("");
    let loopback =
        host.starts_with("127.") || host.starts_with("localhost") || host.starts_with("[::1]");
    if !loopback {
        bail!("the benchmark only targets a loopback Redis, not {host:?}");
    }
    Ok(url)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = Options::parse()?;
    let redis_url = loopback_redis_url()?;
    let domain = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let dir = tempfile::tempdir()?;
    let limits = dir.path().join("limits.yaml");
    std::fs::write(
        &limits,
        format!(
            "domain: {domain}\ndescriptors:\n  - key: user_id\n    rate_limit: {{ unit: second, requests_per_unit: 100 }}\n"
        ),
    )?;
    let secret = SecretString::from(redis_url.clone());
    let settings = settings(
        &SPEC,
        KernelConfig::defaults(&SPEC).database,
        |config| {
            config.redis.url = Some(secret);
            config.redis.max_connections = POOL_SIZE;
        },
        &[("ratelimit.config_path", limits.display().to_string().into())],
    );
    let (running, _kernel) = start_stateless(settings, bulwark_ratelimit::app).await?;
    println!(
        "{} s per phase after {WARMUP:?} warm-up, {} concurrent callers, {CONNECTIONS} gRPC connections, {SHARED_CONNECTIONS} multiplexed Redis connections, {USERS} users at 100/s",
        options.seconds, options.concurrency
    );

    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        clients
            .push(RateLimitServiceClient::connect(format!("http://{}", running.grpc_addr)).await?);
    }
    let clients = Arc::new(clients);
    let grpc_domain = domain.clone();
    let seconds = options.seconds as f64;
    let mut service = drive(&options, move |caller, n| {
        let mut client = clients[caller % CONNECTIONS].clone();
        let request = grpc_request(&grpc_domain, user(caller, n));
        async move {
            match client.should_rate_limit(request).await {
                Ok(response) => Some(response.into_inner().overall_code() == Code::Ok),
                Err(_) => None,
            }
        }
    })
    .await;
    let service_rate = service.report("service (gRPC ShouldRateLimit)", seconds);

    // The reference: the same script on as many multiplexed connections as the
    // service shares, called straight from this process.
    let client = redis::Client::open(redis_url)?;
    let mut connections = Vec::new();
    for _ in 0..SHARED_CONNECTIONS {
        connections.push(client.get_multiplexed_async_connection().await?);
    }
    let connections = Arc::new(connections);
    let sha = Arc::new(redis::Script::new(GCRA_LUA).get_hash().to_owned());
    let prefix = format!("bulwark:rl:{domain}-raw:user_id=");
    let mut raw = drive(&options, move |caller, n| {
        let mut connection = connections[caller % SHARED_CONNECTIONS].clone();
        let sha = Arc::clone(&sha);
        let key = format!("{prefix}{}", user(caller, n));
        async move {
            let args = [1, 100, 1_000_000, 0];
            let reply = eval_gcra(&mut connection, &sha, &[key], &args).await.ok()?;
            Some(reply.first() == Some(&1))
        }
    })
    .await;
    let raw_rate = raw.report("raw Redis (same script, EVALSHA)", seconds);
    println!(
        "service / raw Redis: {:.2} of the throughput",
        service_rate / raw_rate.max(1.0)
    );
    running.shutdown().await;
    Ok(())
}

fn user(caller: usize, n: u64) -> String {
    format!("user-{}", (caller as u64 * 7_919 + n) % USERS)
}

fn grpc_request(domain: &str, user: String) -> RateLimitRequest {
    RateLimitRequest {
        domain: domain.to_owned(),
        descriptors: vec![RateLimitDescriptor {
            entries: vec![rate_limit_descriptor::Entry {
                key: "user_id".to_owned(),
                value: user,
            }],
            limit: None,
        }],
        hits_addend: 1,
    }
}

/// Runs `call` from `options.concurrency` callers, in a loop, for the warm-up and then
/// the measured seconds; `call` answers Some(allowed) or None on an error.
async fn drive<F, Fut>(options: &Options, call: F) -> Tally
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Option<bool>> + Send,
{
    let started = Instant::now();
    let measure_from = started + WARMUP;
    let stop_at = measure_from + Duration::from_secs(options.seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for caller in 0..options.concurrency {
        let call = call.clone();
        tasks.spawn(async move {
            let mut tally = Tally::default();
            let mut n = 0u64;
            loop {
                let sent = Instant::now();
                if sent >= stop_at {
                    return tally;
                }
                let answer = call(caller, n).await;
                n += 1;
                if sent < measure_from {
                    continue;
                }
                let took = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
                tally.latencies_us.push(took);
                match answer {
                    Some(true) => tally.ok += 1,
                    Some(false) => tally.over_limit += 1,
                    None => tally.errors += 1,
                }
            }
        });
    }
    let mut total = Tally::default();
    while let Some(tally) = tasks.join_next().await {
        if let Ok(tally) = tally {
            total.merge(tally);
        }
    }
    total
}
