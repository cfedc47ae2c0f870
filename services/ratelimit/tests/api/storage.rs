//! What the limiter leaves in Redis: namespaced keys that expire, and scripts that are
//! reloaded when Redis forgot them.

use bulwark_proto::envoy::service::ratelimit::v3::rate_limit_response::Code;

use crate::support::{
    Service, descriptor, lease_item, lease_request, redis_url, request, unique_domain,
};

async fn redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap_or_else(|e| panic!("bad Redis URL: {e}"))
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("test Redis unreachable: {e}"))
}

fn per_minute(domain: &str, requests: u32) -> String {
    format!(
        "domain: {domain}\ndescriptors:\n  - key: user_id\n    rate_limit: {{ unit: minute, requests_per_unit: {requests} }}\n"
    )
}

#[tokio::test]
async fn bucket_keys_are_namespaced_and_expire_when_the_bucket_empties() {
    let domain = unique_domain("ttl");
    let service = Service::start(&per_minute(&domain, 5)).await;
    for _ in 0..2 {
        service
            .ask(request(&domain, vec![descriptor(&[("user_id", "u1")])]))
            .await;
    }
    let key = format!("bulwark:rl:{domain}:user_id=u1");
    let ttl_ms: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut redis().await)
        .await
        .unwrap_or_else(|e| panic!("PTTL: {e}"));
    // Two requests of 5/minute take 24 s to drain.
    assert!(
        (23_000..=24_000).contains(&ttl_ms),
        "{key} should expire in ~24 s, PTTL says {ttl_ms} ms (-2: missing, -1: no expiry)"
    );
}

#[tokio::test]
async fn a_flushed_script_cache_falls_back_to_eval() {
    let domain = unique_domain("noscript");
    let service = Service::start(&per_minute(&domain, 5)).await;
    let ask = || service.ask(request(&domain, vec![descriptor(&[("user_id", "u1")])]));
    assert_eq!(ask().await.statuses[0].limit_remaining, 4);
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut redis().await)
        .await
        .unwrap_or_else(|e| panic!("SCRIPT FLUSH: {e}"));
    let after = ask().await;
    assert_eq!(
        after.overall_code(),
        Code::Ok,
        "NOSCRIPT was not handled: {after:?}"
    );
    assert_eq!(after.statuses[0].limit_remaining, 3);
}

#[tokio::test]
async fn a_lease_fills_the_bucket_key_and_survives_a_flushed_script_cache() {
    let domain = unique_domain("lease-noscript");
    // 6000/minute: leased, 20 hits at a time.
    let service = Service::start(&per_minute(&domain, 6_000)).await;
    let lease = || {
        service.lease(lease_request(
            &domain,
            vec![lease_item(&[("user_id", "u1")], 0, 0)],
        ))
    };
    assert_eq!(lease().await.grants[0].granted, 20);
    let key = format!("bulwark:rl:{domain}:user_id=u1");
    let mut redis = redis().await;
    let ttl_ms: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap_or_else(|e| panic!("PTTL: {e}"));
    // 20 hits of 100/s drain in 200 ms.
    assert!(
        (1..=200).contains(&ttl_ms),
        "{key} should expire within 200 ms, PTTL says {ttl_ms} ms (-2: missing)"
    );
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut redis)
        .await
        .unwrap_or_else(|e| panic!("SCRIPT FLUSH: {e}"));
    let after = lease().await;
    assert_eq!(
        after.grants[0].granted, 20,
        "NOSCRIPT was not handled: {after:?}"
    );
}
