//! The rate-limit service alone, driven by concurrent callers in this process: decisions
//! per second over gRPC `ShouldRateLimit`, lease grants per second over
//! `bulwark.ratelimit.v1.LeaseService/Lease`, and beside them the physical limit, the
//! service's GCRA script called with `EVALSHA` straight on the same Redis.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use bulwark_proto::envoy::extensions::common::ratelimit::v3::{
    RateLimitDescriptor, rate_limit_descriptor,
};
use bulwark_proto::envoy::service::ratelimit::v3::RateLimitRequest;
use bulwark_proto::envoy::service::ratelimit::v3::rate_limit_response::Code;
use bulwark_proto::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use bulwark_proto::ratelimit::v1::grant::Mode;
use bulwark_proto::ratelimit::v1::lease_service_client::LeaseServiceClient;
use bulwark_proto::ratelimit::v1::{LeaseItem, LeaseRequest};

use super::RATELIMIT_DOMAIN;
use super::options::Options;
use super::ratelimit::RateLimitStack;
use super::redis_raw::{RedisConnection, Reply};
use bulwark_e2e::workspace_root;

/// Concurrent callers of every phase.
pub const CALLERS: usize = 64;
/// gRPC connections the callers share.
pub const GRPC_CONNECTIONS: usize = 4;
/// Distinct users the gRPC calls are spread over.
pub const SERVICE_USERS: u64 = 10_000;
/// Items of one `Lease` call; the gateway filter sends up to 64 per renewal call.
pub const LEASE_ITEMS: usize = 16;
/// The one bucket the raw `EVALSHA` loop counts in.
const RAW_KEY: &str = "bulwark:rl:bench-edge-raw:user_id=raw";

/// What one phase measured: calls per second and their latency.
#[derive(Debug, Clone, Default)]
pub struct Phase {
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Calls answered as expected (allowed; every item leased; admitted).
    pub ok: u64,
    /// Calls refused by a limit (none expected: every limit here is 10⁹/s).
    pub refused: u64,
    pub errors: u64,
}

#[derive(Debug)]
pub struct ServiceResult {
    /// `ShouldRateLimit` on the EXACT instance: one decision per call.
    pub should_rate_limit: Phase,
    /// `Lease` on the leasing instance, [`LEASE_ITEMS`] renewals per call.
    pub lease: Phase,
    /// `EVALSHA` of `gcra.lua` on the same Redis, one connection per caller.
    pub raw: Phase,
}

/// What one call came to.
enum Outcome {
    Ok,
    Refused,
    Error,
}

pub async fn bench_service(
    stack: &RateLimitStack,
    options: &Options,
) -> anyhow::Result<ServiceResult> {
    let mut clients = Vec::new();
    for _ in 0..GRPC_CONNECTIONS {
        clients.push(
            RateLimitServiceClient::connect(format!("http://127.0.0.1:{}", stack.exact.grpc_port))
                .await
                .context("connecting to bulwark-ratelimit")?,
        );
    }
    let should_rate_limit = drive(options, move |caller, n| {
        let mut client = clients[caller % GRPC_CONNECTIONS].clone();
        async move {
            let request = RateLimitRequest {
                domain: RATELIMIT_DOMAIN.to_owned(),
                descriptors: vec![user_descriptor(caller, n)],
                hits_addend: 1,
            };
            match client
                .should_rate_limit(request)
                .await
                .map(|r| r.into_inner().overall_code())
            {
                Ok(Code::Ok) => Outcome::Ok,
                Ok(Code::OverLimit) => Outcome::Refused,
                _ => Outcome::Error,
            }
        }
    })
    .await;

    let mut clients = Vec::new();
    for _ in 0..GRPC_CONNECTIONS {
        clients.push(
            LeaseServiceClient::connect(format!("http://127.0.0.1:{}", stack.leasing.grpc_port))
                .await
                .context("connecting to bulwark-ratelimit's LeaseService")?,
        );
    }
    let lease = drive(options, move |caller, n| {
        let mut client = clients[caller % GRPC_CONNECTIONS].clone();
        async move {
            // Renewals as the filter sends them: nothing held, nothing spent now.
            let items = (0..LEASE_ITEMS as u64)
                .map(|i| LeaseItem {
                    descriptor: Some(user_descriptor(caller, n * LEASE_ITEMS as u64 + i)),
                    held: 0,
                    spend: 0,
                })
                .collect();
            let request = LeaseRequest {
                domain: RATELIMIT_DOMAIN.to_owned(),
                items,
            };
            match client.lease(request).await {
                Ok(reply) => {
                    let grants = reply.into_inner().grants;
                    if grants.len() != LEASE_ITEMS {
                        Outcome::Error
                    } else if grants
                        .iter()
                        .all(|g| g.mode() == Mode::Leased && g.granted > 0)
                    {
                        Outcome::Ok
                    } else {
                        Outcome::Refused
                    }
                }
                Err(_) => Outcome::Error,
            }
        }
    })
    .await;

    let raw = raw_evalsha(stack.redis.port(), options).await?;
    Ok(ServiceResult {
        should_rate_limit,
        lease,
        raw,
    })
}

/// The physical limit: [`CALLERS`] connections, each running `EVALSHA` of the
/// service's GCRA script on one bucket in a tight loop (one round trip per decision).
async fn raw_evalsha(redis_port: u16, options: &Options) -> anyhow::Result<Phase> {
    let path = workspace_root().join("services/limiter/src/gcra.lua");
    let script = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut loader = RedisConnection::connect(redis_port).await?;
    let sha = match loader.command(&[b"SCRIPT", b"LOAD", &script]).await? {
        Reply::Bulk(Some(sha)) => sha,
        other => bail!("SCRIPT LOAD answered {other:?}"),
    };
    let mut connections = Vec::new();
    for _ in 0..CALLERS {
        connections.push(RedisConnection::connect(redis_port).await?);
    }
    let connections: Vec<_> = connections
        .into_iter()
        .map(tokio::sync::Mutex::new)
        .collect();
    let connections = std::sync::Arc::new(connections);
    let phase = drive(options, move |caller, _| {
        let (connections, sha) = (std::sync::Arc::clone(&connections), sha.clone());
        async move {
            let mut connection = connections[caller].lock().await;
            // One bucket at 10⁹ per second: every call is admitted and writes it back.
            let reply = connection
                .command(&[
                    b"EVALSHA",
                    &sha,
                    b"1",
                    RAW_KEY.as_bytes(),
                    b"1",
                    b"1000000000",
                    b"1000000",
                    b"0",
                ])
                .await;
            match reply {
                Ok(Reply::Array(values)) => match values.first() {
                    Some(Reply::Integer(1)) => Outcome::Ok,
                    Some(Reply::Integer(0)) => Outcome::Refused,
                    _ => Outcome::Error,
                },
                _ => Outcome::Error,
            }
        }
    })
    .await;
    ensure!(
        phase.ok > 0,
        "no EVALSHA of gcra.lua succeeded ({} errors)",
        phase.errors
    );
    Ok(phase)
}

fn user_descriptor(caller: usize, n: u64) -> RateLimitDescriptor {
    RateLimitDescriptor {
        entries: vec![rate_limit_descriptor::Entry {
            key: "user_id".to_owned(),
            value: format!("user-{}", (caller as u64 * 7_919 + n) % SERVICE_USERS),
        }],
        limit: None,
    }
}

/// Runs `call` from [`CALLERS`] callers in a loop for the warm-up, then the measured
/// seconds.
async fn drive<F, Fut>(options: &Options, call: F) -> Phase
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Outcome> + Send,
{
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(options.warmup);
    let stop_at = measure_from + Duration::from_secs(options.seconds);
    let mut callers = tokio::task::JoinSet::new();
    for caller in 0..CALLERS {
        let call = call.clone();
        callers.spawn(async move {
            let mut latencies = Vec::new();
            let (mut ok, mut refused, mut errors) = (0u64, 0u64, 0u64);
            let mut n = 0u64;
            loop {
                let sent = Instant::now();
                if sent >= stop_at {
                    return (latencies, ok, refused, errors);
                }
                let outcome = call(caller, n).await;
                n += 1;
                if sent < measure_from {
                    continue;
                }
                latencies.push(sent.elapsed());
                match outcome {
                    Outcome::Ok => ok += 1,
                    Outcome::Refused => refused += 1,
                    Outcome::Error => errors += 1,
                }
            }
        });
    }
    let mut phase = Phase::default();
    let mut latencies = Vec::new();
    while let Some(joined) = callers.join_next().await {
        let Ok((l, ok, refused, errors)) = joined else {
            phase.errors += 1;
            continue;
        };
        latencies.extend(l);
        phase.ok += ok;
        phase.refused += refused;
        phase.errors += errors;
    }
    latencies.sort_unstable();
    let at = |q: f64| {
        let i = ((latencies.len().saturating_sub(1)) as f64 * q).round() as usize;
        latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    phase.per_second = latencies.len() as f64 / options.seconds as f64;
    phase.p50_ms = at(0.50);
    phase.p99_ms = at(0.99);
    phase
}
