//! Starting the service in-process against the test Redis, writing limit files, and
//! asking it questions.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bulwark_kernel::Running;
use bulwark_kernel::config::KernelConfig;
pub use bulwark_kernel::testing::{closed_redis_url, unique_domain};
use bulwark_kernel::testing::{settings, start_stateless, test_redis_url};
use bulwark_kernel::tonic::transport::Channel;
use bulwark_proto::envoy::extensions::common::ratelimit::v3::{
    RateLimitDescriptor, rate_limit_descriptor,
};
use bulwark_proto::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use bulwark_proto::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use bulwark_proto::ratelimit::v1::lease_service_client::LeaseServiceClient;
use bulwark_proto::ratelimit::v1::{LeaseItem, LeaseRequest, LeaseResponse};
use bulwark_ratelimit::SPEC;
use secrecy::SecretString;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The test Redis's URL; a missing variable fails the test, saying how to set it.
pub fn redis_url() -> String {
    test_redis_url().unwrap_or_else(|e| panic!("{e}"))
}

/// A limit file in a temporary directory, rewritten atomically (write, then rename).
#[derive(Debug)]
pub struct LimitsFile {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl LimitsFile {
    pub fn new(text: &str) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let file = Self {
            path: dir.path().join("limits.yaml"),
            _dir: dir,
        };
        file.write(text);
        file
    }

    pub fn write(&self, text: &str) {
        let staging = self.path.with_extension("tmp");
        std::fs::write(&staging, text).unwrap_or_else(|e| panic!("write limits: {e}"));
        std::fs::rename(&staging, &self.path).unwrap_or_else(|e| panic!("rename limits: {e}"));
    }
}

/// An in-process service and clients connected to it.
#[derive(Debug)]
pub struct Service {
    pub running: Running,
    pub client: RateLimitServiceClient<Channel>,
    pub leases: LeaseServiceClient<Channel>,
    pub limits: LimitsFile,
}

impl Service {
    /// Starts against the test Redis with `limits`, reloading every 100 ms.
    pub async fn start(limits: &str) -> Self {
        Self::start_on(&redis_url(), limits).await
    }

    pub async fn start_on(redis: &str, limits: &str) -> Self {
        Self::start_with(redis, limits, &[]).await
    }

    /// Starts with extra settings, e.g. `("ratelimit.lease.lease_seconds", 1.0.into())`.
    pub async fn start_with(
        redis: &str,
        limits: &str,
        extra: &[(&str, serde_json::Value)],
    ) -> Self {
        let limits = LimitsFile::new(limits);
        let running = try_start(Some(redis), Some(&limits.path), extra)
            .await
            .unwrap_or_else(|e| panic!("service did not start: {e:#}"));
        let client = connect(&running).await;
        let leases = LeaseServiceClient::connect(format!("http://{}", running.grpc_addr))
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the lease service: {e}"));
        Self {
            running,
            client,
            leases,
            limits,
        }
    }

    /// Leases and expects an answer.
    pub async fn lease(&self, request: LeaseRequest) -> LeaseResponse {
        self.leases
            .clone()
            .lease(request)
            .await
            .unwrap_or_else(|status| panic!("Lease failed: {status:?}"))
            .into_inner()
    }

    /// Leases and expects a failure.
    pub async fn lease_err(&self, request: LeaseRequest) -> bulwark_kernel::tonic::Status {
        match self.leases.clone().lease(request).await {
            Ok(response) => panic!("expected an error, got {:?}", response.into_inner()),
            Err(status) => status,
        }
    }

    /// Asks and expects an answer.
    pub async fn ask(&self, request: RateLimitRequest) -> RateLimitResponse {
        self.client
            .clone()
            .should_rate_limit(request)
            .await
            .unwrap_or_else(|status| panic!("ShouldRateLimit failed: {status:?}"))
            .into_inner()
    }

    /// Asks and expects a failure.
    pub async fn ask_err(&self, request: RateLimitRequest) -> bulwark_kernel::tonic::Status {
        match self.client.clone().should_rate_limit(request).await {
            Ok(response) => panic!("expected an error, got {:?}", response.into_inner()),
            Err(status) => status,
        }
    }

    /// `GET path` on the admin listener: status and body.
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        http_get(self.running.http_addr, path).await
    }

    /// The `/metrics` lines naming `needle` (a domain, a path...).
    pub async fn metric_lines(&self, needle: &str) -> Vec<String> {
        let (_, body) = self.admin_get("/metrics").await;
        body.lines()
            .filter(|line| line.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

/// Boots the service with these settings; `None` leaves a setting unset.
pub async fn try_start(
    redis: Option<&str>,
    limits: Option<&Path>,
    extra: &[(&str, serde_json::Value)],
) -> anyhow::Result<Running> {
    let redis = redis.map(|url| SecretString::from(url.to_owned()));
    let mut sections: Vec<(&str, serde_json::Value)> = vec![
        ("ratelimit.reload_interval_ms", 100.into()),
        ("ratelimit.redis_timeout_ms", 300.into()),
    ];
    if let Some(path) = limits {
        sections.push(("ratelimit.config_path", path.display().to_string().into()));
    }
    sections.extend(extra.iter().cloned());
    let settings = settings(
        &SPEC,
        KernelConfig::defaults(&SPEC).database,
        |config| config.redis.url = redis,
        &sections,
    );
    let (running, _kernel) = start_stateless(settings, bulwark_ratelimit::app).await?;
    Ok(running)
}

async fn connect(running: &Running) -> RateLimitServiceClient<Channel> {
    RateLimitServiceClient::connect(format!("http://{}", running.grpc_addr))
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the service: {e}"))
}

pub fn descriptor(entries: &[(&str, &str)]) -> RateLimitDescriptor {
    RateLimitDescriptor {
        entries: entries
            .iter()
            .map(|(key, value)| rate_limit_descriptor::Entry {
                key: (*key).to_owned(),
                value: (*value).to_owned(),
            })
            .collect(),
        limit: None,
    }
}

pub fn request(domain: &str, descriptors: Vec<RateLimitDescriptor>) -> RateLimitRequest {
    RateLimitRequest {
        domain: domain.to_owned(),
        descriptors,
        hits_addend: 0,
    }
}

/// A lease item for `entries`, holding `held` hits and needing `spend` now.
pub fn lease_item(entries: &[(&str, &str)], held: u32, spend: u32) -> LeaseItem {
    LeaseItem {
        descriptor: Some(descriptor(entries)),
        held,
        spend,
    }
}

pub fn lease_request(domain: &str, items: Vec<LeaseItem>) -> LeaseRequest {
    LeaseRequest {
        domain: domain.to_owned(),
        items,
    }
}

/// Polls `check` every 50 ms until it holds or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A bare HTTP/1.0 GET (no chunking), for the admin endpoints.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("admin listener unreachable: {e}"));
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap_or_else(|e| panic!("write: {e}"));
    let mut raw = String::new();
    stream
        .read_to_string(&mut raw)
        .await
        .unwrap_or_else(|e| panic!("read: {e}"));
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {raw:?}"));
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (status, body.to_owned())
}
