//! A stub of the rate-limit service's lease protocol (`bulwark.ratelimit.v1.LeaseService`),
//! in-process on a free port: every descriptor has a fixed limit counted in memory and
//! decided exactly (EXACT grants, one hit per request, as the service answers for small
//! limits), and a `route` descriptor whose value starts with `broken` answers
//! UNAVAILABLE, to exercise the filter's failure modes. Leasing itself is tested against
//! the real service in the e2e suite.

use std::collections::HashMap;
use std::sync::Mutex;

use bulwark_proto::envoy::service::ratelimit::v3::rate_limit_response::{
    self, DescriptorStatus, RateLimit,
};
use bulwark_proto::ratelimit::v1::lease_service_server::{LeaseService, LeaseServiceServer};
use bulwark_proto::ratelimit::v1::{Grant, LeaseRequest, LeaseResponse, grant};
use tonic::{Request, Response, Status};

use crate::harness::free_port;

/// Limit of every descriptor, per minute.
pub const LIMIT: u32 = 2;

#[derive(Default)]
struct Stub {
    hits: Mutex<HashMap<String, u32>>,
}

#[tonic::async_trait]
impl LeaseService for Stub {
    async fn lease(
        &self,
        request: Request<LeaseRequest>,
    ) -> Result<Response<LeaseResponse>, Status> {
        let request = request.into_inner();
        let mut grants = Vec::new();
        for item in &request.items {
            let entries = item
                .descriptor
                .as_ref()
                .map(|d| d.entries.as_slice())
                .unwrap_or_default();
            if entries
                .iter()
                .any(|e| e.key == "route" && e.value.starts_with("broken"))
            {
                return Err(Status::unavailable("stub: broken route"));
            }
            let key: Vec<String> = entries
                .iter()
                .map(|e| format!("{}={}", e.key, e.value))
                .collect();
            let mut hits = self.hits.lock().unwrap();
            let count = hits
                .entry(format!("{}|{}", request.domain, key.join(",")))
                .or_default();
            let fits = *count + item.spend <= LIMIT;
            if fits {
                *count += item.spend;
            }
            grants.push(Grant {
                mode: grant::Mode::Exact as i32,
                granted: if fits { item.spend } else { 0 },
                status: Some(DescriptorStatus {
                    code: if fits {
                        rate_limit_response::Code::Ok
                    } else {
                        rate_limit_response::Code::OverLimit
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
                }),
                ..Default::default()
            });
        }
        Ok(Response::new(LeaseResponse { grants }))
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
                .add_service(LeaseServiceServer::new(Stub::default()))
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
