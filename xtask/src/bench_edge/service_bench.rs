//! The rate-limit service alone: `bulwark-ratelimit` driven over gRPC `ShouldRateLimit` by
//! concurrent callers in this process.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use bulwark_proto::envoy::extensions::common::ratelimit::v3::{
    RateLimitDescriptor, rate_limit_descriptor,
};
use bulwark_proto::envoy::service::ratelimit::v3::RateLimitRequest;
use bulwark_proto::envoy::service::ratelimit::v3::rate_limit_response::Code;
use bulwark_proto::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;

use super::RATELIMIT_DOMAIN;
use super::options::Options;

#[derive(Debug)]
pub struct ServiceResult {
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub allowed: u64,
    pub over_limit: u64,
    pub errors: u64,
    pub callers: usize,
    pub connections: usize,
}

const SERVICE_CALLERS: usize = 64;
const SERVICE_CONNECTIONS: usize = 4;
/// Distinct users the calls are spread over.
pub const SERVICE_USERS: u64 = 10_000;

pub async fn bench_service(grpc_port: u16, options: &Options) -> anyhow::Result<ServiceResult> {
    let mut clients = Vec::new();
    for _ in 0..SERVICE_CONNECTIONS {
        clients.push(
            RateLimitServiceClient::connect(format!("http://127.0.0.1:{grpc_port}"))
                .await
                .context("connecting to bulwark-ratelimit")?,
        );
    }
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(options.warmup);
    let stop_at = measure_from + Duration::from_secs(options.seconds);
    let mut callers = tokio::task::JoinSet::new();
    for caller in 0..SERVICE_CALLERS {
        let mut client = clients[caller % SERVICE_CONNECTIONS].clone();
        callers.spawn(async move {
            let (mut latencies, mut allowed, mut over, mut errors) = (Vec::new(), 0u64, 0u64, 0u64);
            let mut n = caller as u64 * 7_919;
            loop {
                let sent = Instant::now();
                if sent >= stop_at {
                    return (latencies, allowed, over, errors);
                }
                n += 1;
                let request = RateLimitRequest {
                    domain: RATELIMIT_DOMAIN.to_owned(),
                    descriptors: vec![RateLimitDescriptor {
                        entries: vec![rate_limit_descriptor::Entry {
                            key: "user_id".to_owned(),
                            value: format!("user-{}", n % SERVICE_USERS),
                        }],
                        limit: None,
                    }],
                    hits_addend: 1,
                };
                let answer = client.should_rate_limit(request).await;
                if sent < measure_from {
                    continue;
                }
                latencies.push(sent.elapsed());
                match answer.map(|r| r.into_inner().overall_code()) {
                    Ok(Code::Ok) => allowed += 1,
                    Ok(Code::OverLimit) => over += 1,
                    _ => errors += 1,
                }
            }
        });
    }
    let (mut latencies, mut allowed, mut over_limit, mut errors) = (Vec::new(), 0, 0, 0);
    while let Some(joined) = callers.join_next().await {
        let (l, a, o, e) = joined.context("a load task failed")?;
        latencies.extend(l);
        allowed += a;
        over_limit += o;
        errors += e;
    }
    latencies.sort_unstable();
    let at = |q: f64| {
        let i = ((latencies.len().saturating_sub(1)) as f64 * q).round() as usize;
        latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Ok(ServiceResult {
        per_second: latencies.len() as f64 / options.seconds as f64,
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        allowed,
        over_limit,
        errors,
        callers: SERVICE_CALLERS,
        connections: SERVICE_CONNECTIONS,
    })
}
