//! A stub of the global rate-limit service (`envoy.service.ratelimit.v3`), in-process on
//! a free port: each descriptor gets a fixed limit counted in memory, and a `route`
//! descriptor whose value starts with `broken` answers UNAVAILABLE, to exercise the
//! filter's failure modes.

use std::collections::HashMap;
use std::sync::Mutex;

use bulwark_proto::envoy::service::ratelimit::v3::rate_limit_response::{
    self, DescriptorStatus, RateLimit,
};
use bulwark_proto::envoy::service::ratelimit::v3::rate_limit_service_server::{
    RateLimitService, RateLimitServiceServer,
};
use bulwark_proto::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use tonic::{Request, Response, Status};

use crate::harness::free_port;

/// Limit of every descriptor, per minute.
pub const LIMIT: u32 = 2;

#[derive(Default)]
struct Stub {
    hits: Mutex<HashMap<String, u32>>,
}

#[tonic::async_trait]
impl RateLimitService for Stub {
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        let request = request.into_inner();
        let mut statuses = Vec::new();
        for descriptor in &request.descriptors {
            let key: Vec<String> = descriptor
                .entries
                .iter()
                .map(|e| format!("{}={}", e.key, e.value))
                .collect();
            if descriptor
                .entries
                .iter()
                .any(|e| e.key == "route" && e.value.starts_with("broken"))
            {
                return Err(Status::unavailable("stub: broken route"));
            }
            let mut hits = self.hits.lock().unwrap();
            let count = hits
                .entry(format!("{}|{}", request.domain, key.join(",")))
                .or_default();
            *count += request.hits_addend.max(1);
            let over = *count > LIMIT;
            statuses.push(DescriptorStatus {
                code: if over {
                    rate_limit_response::Code::OverLimit
                } else {
                    rate_limit_response::Code::Ok
                } as i32,
                current_limit: Some(RateLimit {
                    name: String::new(),
                    requests_per_unit: LIMIT,
                    unit: rate_limit_response::rate_limit::Unit::Minute as i32,
                }),
                limit_remaining: LIMIT.saturating_sub(*count),
                duration_until_reset: Some(prost_types::Duration {
                    seconds: 30,
                    nanos: 0,
                }),
            });
        }
        let over = statuses
            .iter()
            .any(|s| s.code == rate_limit_response::Code::OverLimit as i32);
        Ok(Response::new(RateLimitResponse {
            overall_code: if over {
                rate_limit_response::Code::OverLimit
            } else {
                rate_limit_response::Code::Ok
            } as i32,
            statuses,
            ..Default::default()
        }))
    }
}

/// Starts the stub on a free port in a background runtime; returns the port once it
/// accepts connections.
pub fn start() -> u16 {
    let port = free_port();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            tonic::transport::Server::builder()
                .add_service(RateLimitServiceServer::new(Stub::default()))
                .serve(([127, 0, 0, 1], port).into())
                .await
                .unwrap();
        });
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "rate-limit stub did not start on port {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    port
}
