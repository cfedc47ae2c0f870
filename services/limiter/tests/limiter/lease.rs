//! Leases against a real Redis: several edge instances leasing and spending hits of one
//! limit, beside exact checks, never get more hits out of the bucket than GCRA admits.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bulwark_kernel::config::RedisConfig;
use bulwark_kernel::redis::Redis;
use bulwark_limiter::{
    CheckRequest, Descriptor, LeaseItem, LeaseMode, LeasePolicy, LeaseRequest, Limiter, Limits,
    LimitsHandle,
};
use secrecy::SecretString;

use super::{redis_url, unique_domain};

/// 500 per second: leased by the default policy, 100 hits (0.2 s) per lease.
const LIMIT: u32 = 500;
const LEASE_SIZE: u32 = 100;
const INSTANCES: usize = 4;
const RUN_FOR: Duration = Duration::from_millis(1_500);

fn limiter(domain: &str) -> Arc<Limiter> {
    let limits = Limits::parse(
        "inline",
        &format!(
            "domain: {domain}\ndescriptors:\n  - key: user_id\n    rate_limit: {{ unit: second, requests_per_unit: {LIMIT} }}\n"
        ),
    )
    .unwrap_or_else(|e| panic!("limits refused: {e}"));
    let redis = Redis::connect(&RedisConfig {
        url: Some(SecretString::from(redis_url())),
        max_connections: 8,
    })
    .unwrap_or_else(|e| panic!("pool: {e}"));
    let limiter = Limiter::new(&redis, LimitsHandle::new(limits), Duration::from_secs(2))
        .with_lease_policy(LeasePolicy::default())
        .unwrap_or_else(|e| panic!("default policy refused: {e}"));
    Arc::new(limiter)
}

fn lease_request(domain: &str, held: u32, spend: u32) -> LeaseRequest {
    LeaseRequest::new(
        domain,
        vec![LeaseItem {
            descriptor: Descriptor::new([("user_id", "u1")]),
            held,
            spend,
        }],
        64,
    )
    .unwrap_or_else(|e| panic!("lease request refused: {e}"))
}

/// What one simulated edge instance did.
#[derive(Debug, Default)]
struct InstanceLog {
    /// Hits granted to it (counted in the bucket), spent or not.
    granted: u64,
    admitted: u64,
    /// The most hits it ever held after spending what it asked for.
    most_held: u32,
    refusals: u64,
}

/// An edge instance under more load than the limit allows: it spends held hits without
/// asking, renews in the background (spend 0) once it holds half a lease or less, asks
/// with spend 1 when it holds nothing, and drops what it holds when the lease expires.
async fn instance(limiter: Arc<Limiter>, domain: String, until: Instant) -> InstanceLog {
    let mut log = InstanceLog::default();
    let mut held: u32 = 0;
    let mut valid_until = Instant::now();
    while Instant::now() < until {
        if Instant::now() >= valid_until {
            held = 0;
        }
        if held > 0 {
            held -= 1;
            log.admitted += 1;
            if held <= LEASE_SIZE / 2 {
                let lease = limiter
                    .lease(&lease_request(&domain, held, 0))
                    .await
                    .unwrap_or_else(|e| panic!("renewal failed: {e}"));
                let grant = &lease.grants[0];
                assert_eq!(grant.mode, LeaseMode::Leased, "{grant:?}");
                assert_eq!(grant.lease_size, LEASE_SIZE, "{grant:?}");
                if grant.granted > 0 {
                    held += grant.granted;
                    log.granted += u64::from(grant.granted);
                    valid_until = Instant::now() + grant.valid_for.unwrap_or_default();
                }
            }
        } else {
            let lease = limiter
                .lease(&lease_request(&domain, 0, 1))
                .await
                .unwrap_or_else(|e| panic!("lease failed: {e}"));
            let grant = &lease.grants[0];
            if grant.granted == 0 {
                assert!(grant.status.over_limit, "nothing granted but OK: {grant:?}");
                log.refusals += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
            log.granted += u64::from(grant.granted);
            log.admitted += 1;
            held = grant.granted - 1;
            valid_until = Instant::now() + grant.valid_for.unwrap_or_default();
        }
        log.most_held = log.most_held.max(held);
        tokio::task::yield_now().await;
    }
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leasing_instances_never_take_more_than_gcra_admits() {
    let domain = unique_domain("lease-bound");
    let limiter = limiter(&domain);
    let check = CheckRequest::new(&domain, vec![Descriptor::new([("user_id", "u1")])], 1)
        .unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let until = started + RUN_FOR;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..INSTANCES {
        tasks.spawn(instance(Arc::clone(&limiter), domain.clone(), until));
    }
    // An instance still asking per request shares the bucket.
    let checked = Arc::new(AtomicU64::new(0));
    let exact = {
        let limiter = Arc::clone(&limiter);
        let checked = Arc::clone(&checked);
        tokio::spawn(async move {
            while Instant::now() < until {
                let verdict = limiter
                    .check(&check)
                    .await
                    .unwrap_or_else(|e| panic!("check failed: {e}"));
                if !verdict.over_limit() {
                    checked.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let mut logs = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        logs.push(joined.unwrap_or_else(|e| panic!("instance: {e}")));
    }
    exact.await.unwrap_or_else(|e| panic!("exact caller: {e}"));
    let elapsed = started.elapsed().as_secs_f64();

    let granted: u64 = logs.iter().map(|log| log.granted).sum();
    let checked = checked.load(Ordering::Relaxed);
    let counted = granted + checked;
    // GCRA from an empty bucket: at most the limit at once, then the rate.
    let bound = f64::from(LIMIT) + f64::from(LIMIT) * elapsed;
    #[allow(clippy::cast_precision_loss, reason = "a few thousand hits")]
    let counted_f = counted as f64;
    assert!(
        counted_f <= bound.floor(),
        "{counted} hits left the bucket in {elapsed:.3} s ({granted} leased, {checked} \
         checked); GCRA admits at most {bound:.1}: {logs:?}"
    );
    assert!(
        counted_f >= bound / 2.0,
        "only {counted} of the {bound:.1} hits the bucket had were used: the instances \
         starved ({logs:?})"
    );
    for (i, log) in logs.iter().enumerate() {
        assert!(
            log.most_held <= LEASE_SIZE,
            "instance {i} held {} hits, more than a lease ({LEASE_SIZE}): {log:?}",
            log.most_held
        );
        assert!(
            log.admitted <= log.granted,
            "instance {i} admitted hits it was not granted: {log:?}"
        );
        assert!(log.granted > 0, "instance {i} never got a hit: {log:?}");
    }
    assert!(
        logs.iter().any(|log| log.refusals > 0),
        "no instance was ever refused: the load did not reach the limit ({logs:?})"
    );
}

#[tokio::test]
async fn a_spend_with_a_full_lease_is_granted_alone() {
    let domain = unique_domain("lease-full");
    let limiter = limiter(&domain);
    let lease = limiter
        .lease(&lease_request(&domain, LEASE_SIZE, 1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let grant = &lease.grants[0];
    assert_eq!(
        (grant.mode, grant.granted),
        (LeaseMode::Leased, 1),
        "a caller holding a full lease gets its spend and nothing more: {grant:?}"
    );
    let renewal = limiter
        .lease(&lease_request(&domain, LEASE_SIZE, 0))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let grant = &renewal.grants[0];
    assert_eq!(grant.granted, 0, "a full lease was topped up: {grant:?}");
    assert!(
        !grant.status.over_limit,
        "a renewal of nothing refused: {grant:?}"
    );
    assert!(
        grant.status.remaining >= LIMIT - 1,
        "the empty renewal took hits: {grant:?}"
    );
}
