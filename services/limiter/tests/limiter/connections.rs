//! Shared Redis connections: one that Redis dropped costs a single decision, then the
//! limiter takes a fresh connection from the pool.

use std::sync::Arc;
use std::time::Duration;

use bulwark_kernel::config::RedisConfig;
use bulwark_kernel::redis::Redis;
use bulwark_limiter::{CheckRequest, Descriptor, Limiter, Limits, LimitsHandle};
use secrecy::SecretString;

use super::{redis_url, unique_domain};

fn limits(domain: &str) -> String {
    format!(
        "domain: {domain}\ndescriptors:\n  - key: user_id\n    rate_limit: {{ unit: minute, requests_per_unit: 10 }}\n  - key: user_id\n    value: admin\n    unlimited: true\n"
    )
}

#[tokio::test]
async fn a_dropped_redis_connection_costs_one_call_and_is_replaced() {
    let domain = unique_domain("recover");
    // A pool of one socket, so the connection to kill is known.
    let redis = Redis::connect(&RedisConfig {
        url: Some(SecretString::from(redis_url())),
        max_connections: 1,
    })
    .unwrap_or_else(|e| panic!("pool: {e}"));
    let limits = Limits::parse("inline", &limits(&domain)).unwrap_or_else(|e| panic!("{e}"));
    let limiter = Arc::new(Limiter::new(
        &redis,
        LimitsHandle::new(limits),
        Duration::from_millis(500),
    ));
    let check = CheckRequest::new(&domain, vec![Descriptor::new([("user_id", "u1")])], 1)
        .unwrap_or_else(|e| panic!("{e}"));
    let verdict = limiter
        .check(&check)
        .await
        .unwrap_or_else(|e| panic!("first check: {e}"));
    assert!(!verdict.over_limit());

    let id: i64 = {
        let mut pooled = redis
            .pool()
            .get()
            .await
            .unwrap_or_else(|e| panic!("pool: {e}"));
        redis::cmd("CLIENT")
            .arg("ID")
            .query_async(&mut *pooled)
            .await
            .unwrap_or_else(|e| panic!("CLIENT ID: {e}"))
    };
    let mut admin = redis::Client::open(redis_url())
        .unwrap_or_else(|e| panic!("{e}"))
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .query_async(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("CLIENT KILL: {e}"));
    assert_eq!(killed, 1, "the limiter's connection was not killed");

    // Every shared connection is tried in turn over these calls.
    let mut failures = Vec::new();
    for call in 0..12 {
        if let Err(error) = limiter.check(&check).await {
            assert!(
                error.is_unavailable(),
                "a dropped connection is an outage: {error}"
            );
            failures.push(call);
        }
    }
    assert!(
        failures.len() <= 1,
        "calls {failures:?} of 12 failed after one dropped connection: it was not replaced"
    );
}

#[tokio::test]
async fn once_reconnecting_fails_callers_are_refused_at_once() {
    let redis = Redis::connect(&RedisConfig {
        url: Some(SecretString::from(super::closed_redis_url())),
        max_connections: 4,
    })
    .unwrap_or_else(|e| panic!("pool: {e}"));
    let connections = redis.shared_connections(4);
    assert!(
        connections.lease().await.is_err(),
        "a closed port gave a connection"
    );
    // Within the cooldown nobody waits on the dead server again.
    for attempt in 0..20 {
        let started = std::time::Instant::now();
        let result = connections.lease().await;
        let took = started.elapsed();
        assert!(
            result.is_err(),
            "attempt {attempt}: a closed port gave a connection"
        );
        assert!(
            took < Duration::from_millis(20),
            "attempt {attempt} waited {took:?} on a Redis that just failed"
        );
    }
}
