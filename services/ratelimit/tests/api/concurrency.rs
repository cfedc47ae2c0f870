//! Atomicity: parallel requests over several connections are admitted exactly up to
//! the limit.

use bulwark_proto::envoy::service::ratelimit::v3::rate_limit_response::Code;

use crate::support::{Service, descriptor, request, unique_domain};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_requests_admit_exactly_the_limit() {
    const LIMIT: usize = 25;
    const REQUESTS: usize = 200;
    let domain = unique_domain("parallel");
    let service = Service::start(&format!(
        "domain: {domain}\ndescriptors:\n  - key: user_id\n    rate_limit: {{ unit: hour, requests_per_unit: {LIMIT} }}\n"
    ))
    .await;
    // Separate connections, so requests really race on the server and in Redis.
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(
            bulwark_proto::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient::connect(
                format!("http://{}", service.running.grpc_addr),
            )
            .await
            .unwrap_or_else(|e| panic!("connect: {e}")),
        );
    }
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..REQUESTS {
        let mut client = clients[i % clients.len()].clone();
        let request = request(&domain, vec![descriptor(&[("user_id", "u1")])]);
        tasks.spawn(async move {
            client
                .should_rate_limit(request)
                .await
                .map(|r| r.into_inner().overall_code())
        });
    }
    let mut allowed = 0;
    let mut refused = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined.unwrap_or_else(|e| panic!("task: {e}")) {
            Ok(Code::Ok) => allowed += 1,
            Ok(Code::OverLimit) => refused += 1,
            other => panic!("unexpected answer: {other:?}"),
        }
    }
    assert_eq!(
        allowed, LIMIT,
        "{allowed} of {REQUESTS} parallel requests allowed under a limit of {LIMIT}"
    );
    assert_eq!(refused, REQUESTS - LIMIT);
}
