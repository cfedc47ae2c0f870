//! Account lockout against a real Redis: the threshold, the doubling back-off and its
//! cap, resets, expiry, and failures from many callers at once counted exactly. Time is
//! the `now` each call passes, so the tests step it instead of sleeping; each test's
//! subject is unique, so runs sharing a Redis never count into each other.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bulwark_kernel::config::RedisConfig;
use bulwark_kernel::redis::Redis;
use bulwark_limiter::{
    AccountLockout, FailureOutcome, LockoutKey, LockoutKeyer, LockoutPolicy, LockoutStatus,
};
use secrecy::SecretString;

use super::{closed_redis_url, redis_url, unique_domain};

const MINUTE: Duration = Duration::from_secs(60);

fn redis(url: String) -> Redis {
    Redis::connect(&RedisConfig {
        url: Some(SecretString::from(url)),
        max_connections: 8,
    })
    .unwrap_or_else(|e| panic!("pool: {e}"))
}

fn lockout(policy: LockoutPolicy) -> Arc<AccountLockout> {
    let lockout = AccountLockout::new(&redis(redis_url()), policy, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("policy refused: {e}"));
    Arc::new(lockout)
}

/// A subject no other test or run uses.
fn fresh_key(test: &str) -> LockoutKey {
    let keyer = LockoutKeyer::new(&[7; 32]).unwrap_or_else(|e| panic!("keyer: {e}"));
    keyer.key(&format!("{}@example.com", unique_domain(test)))
}

async fn fail(lockout: &AccountLockout, key: &LockoutKey, now: SystemTime) -> FailureOutcome {
    lockout
        .record_failure(key, now)
        .await
        .unwrap_or_else(|e| panic!("record_failure: {e}"))
}

async fn check(lockout: &AccountLockout, key: &LockoutKey, now: SystemTime) -> LockoutStatus {
    lockout
        .check(key, now)
        .await
        .unwrap_or_else(|e| panic!("check: {e}"))
}

#[tokio::test]
async fn the_fifth_consecutive_failure_locks_for_a_minute() {
    let lockout = lockout(LockoutPolicy::default());
    let key = fresh_key("threshold");
    let t0 = SystemTime::now();
    for n in 1..=4 {
        assert_eq!(
            fail(&lockout, &key, t0).await,
            FailureOutcome::Counted { failures: n },
            "failure {n} of 4 should only be counted"
        );
    }
    assert_eq!(
        check(&lockout, &key, t0).await,
        LockoutStatus::Open { failures: 4 }
    );
    assert_eq!(
        fail(&lockout, &key, t0).await,
        FailureOutcome::LockStarted {
            failures: 5,
            retry_after: MINUTE
        }
    );
    assert_eq!(
        check(&lockout, &key, t0 + Duration::from_secs(10)).await,
        LockoutStatus::Locked {
            retry_after: Duration::from_secs(50)
        },
        "10 s into the lock, 50 s remain"
    );
    assert_eq!(
        check(&lockout, &key, t0 + MINUTE).await,
        LockoutStatus::Open { failures: 5 },
        "the lock ends after exactly a minute, the count stays"
    );
}

#[tokio::test]
async fn each_failure_after_a_lock_doubles_the_back_off_up_to_fifteen_minutes() {
    let lockout = lockout(LockoutPolicy::default());
    let key = fresh_key("doubling");
    let mut now = SystemTime::now();
    for _ in 1..=4 {
        fail(&lockout, &key, now).await;
    }
    let mut back_offs = Vec::new();
    for _ in 5..=10 {
        match fail(&lockout, &key, now).await {
            FailureOutcome::LockStarted { retry_after, .. } => {
                back_offs.push(retry_after.as_secs() / 60);
                now += retry_after;
            }
            other => panic!("a failure after the lock ended did not lock again: {other:?}"),
        }
    }
    assert_eq!(back_offs, vec![1, 2, 4, 8, 15, 15], "minutes of each lock");
}

#[tokio::test]
async fn attempts_refused_while_locked_neither_count_nor_extend_the_lock() {
    let lockout = lockout(LockoutPolicy::default());
    let key = fresh_key("refused");
    let t0 = SystemTime::now();
    for _ in 1..=5 {
        fail(&lockout, &key, t0).await;
    }
    for second in 1..60 {
        assert_eq!(
            fail(&lockout, &key, t0 + Duration::from_secs(second)).await,
            FailureOutcome::AlreadyLocked {
                retry_after: Duration::from_secs(60 - second)
            },
            "an attempt {second} s into the lock"
        );
    }
    assert_eq!(
        check(&lockout, &key, t0 + MINUTE).await,
        LockoutStatus::Open { failures: 5 },
        "59 refused attempts were counted or extended the lock"
    );
    assert_eq!(
        fail(&lockout, &key, t0 + MINUTE).await,
        FailureOutcome::LockStarted {
            failures: 6,
            retry_after: 2 * MINUTE
        },
        "the next lock doubles once, not once per refused attempt"
    );
}

#[tokio::test]
async fn a_success_resets_the_count_and_the_back_off() {
    let lockout = lockout(LockoutPolicy::default());
    let key = fresh_key("success");
    let mut now = SystemTime::now();
    for _ in 1..=6 {
        now += MINUTE;
        fail(&lockout, &key, now).await;
    }
    lockout
        .record_success(&key)
        .await
        .unwrap_or_else(|e| panic!("record_success: {e}"));
    assert_eq!(
        check(&lockout, &key, now).await,
        LockoutStatus::Open { failures: 0 }
    );
    for n in 1..=4 {
        assert_eq!(
            fail(&lockout, &key, now).await,
            FailureOutcome::Counted { failures: n }
        );
    }
    assert_eq!(
        fail(&lockout, &key, now).await.retry_after(),
        Some(MINUTE),
        "after a success the back-off starts again at one minute"
    );
}

#[tokio::test]
async fn a_count_is_forgotten_after_the_retention_and_its_key_expires() {
    let policy = LockoutPolicy {
        base_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(200),
        retention: Duration::from_millis(400),
        ..LockoutPolicy::default()
    };
    let lockout = lockout(policy.clone());
    let key = fresh_key("expiry");
    let t0 = SystemTime::now();
    for _ in 1..=3 {
        fail(&lockout, &key, t0).await;
    }
    assert_eq!(
        check(
            &lockout,
            &key,
            t0 + policy.retention - Duration::from_millis(1)
        )
        .await,
        LockoutStatus::Open { failures: 3 }
    );
    assert_eq!(
        check(&lockout, &key, t0 + policy.retention).await,
        LockoutStatus::Open { failures: 0 },
        "a count older than the retention still counts"
    );

    let redis = redis(redis_url());
    let mut connection = redis
        .pool()
        .get()
        .await
        .unwrap_or_else(|e| panic!("pool: {e}"));
    let ttl: i64 = redis::cmd("PTTL")
        .arg(key.as_str())
        .query_async(&mut *connection)
        .await
        .unwrap_or_else(|e| panic!("PTTL: {e}"));
    assert!(
        ttl > 0 && ttl <= 400,
        "the key should expire within the retention, PTTL {ttl}"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let exists: i64 = redis::cmd("EXISTS")
        .arg(key.as_str())
        .query_async(&mut *connection)
        .await
        .unwrap_or_else(|e| panic!("EXISTS: {e}"));
    assert_eq!(exists, 0, "the key outlived its retention");
}

#[tokio::test]
async fn the_default_retention_keeps_a_count_for_a_day() {
    let lockout = lockout(LockoutPolicy::default());
    let key = fresh_key("day");
    let t0 = SystemTime::now();
    fail(&lockout, &key, t0).await;
    let day = Duration::from_secs(24 * 3600);
    assert_eq!(
        check(&lockout, &key, t0 + day - Duration::from_secs(1)).await,
        LockoutStatus::Open { failures: 1 }
    );
    assert_eq!(
        fail(&lockout, &key, t0 + day).await,
        FailureOutcome::Counted { failures: 1 },
        "a failure a day after the last starts a new count"
    );
}

#[tokio::test]
async fn two_subjects_count_and_lock_independently() {
    let lockout = lockout(LockoutPolicy::default());
    let (alice, bob) = (fresh_key("alice"), fresh_key("bob"));
    let now = SystemTime::now();
    for _ in 1..=5 {
        fail(&lockout, &alice, now).await;
    }
    fail(&lockout, &bob, now).await;
    assert!(matches!(
        check(&lockout, &alice, now).await,
        LockoutStatus::Locked { .. }
    ));
    assert_eq!(
        check(&lockout, &bob, now).await,
        LockoutStatus::Open { failures: 1 },
        "one subject's lock spilled onto another"
    );
    lockout
        .record_success(&bob)
        .await
        .unwrap_or_else(|e| panic!("record_success: {e}"));
    assert!(
        matches!(
            check(&lockout, &alice, now).await,
            LockoutStatus::Locked { .. }
        ),
        "one subject's success unlocked another"
    );
}

async fn concurrent_failures(
    lockout: &Arc<AccountLockout>,
    key: &LockoutKey,
    n: usize,
) -> Vec<FailureOutcome> {
    let now = SystemTime::now();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (lockout, key) = (Arc::clone(lockout), key.clone());
            tokio::spawn(async move { fail(&lockout, &key, now).await })
        })
        .collect();
    let mut outcomes = Vec::with_capacity(n);
    for task in tasks {
        outcomes.push(task.await.unwrap_or_else(|e| panic!("task: {e}")));
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_failures_are_each_counted_exactly_once() {
    let lockout = lockout(LockoutPolicy {
        threshold: 100,
        ..LockoutPolicy::default()
    });
    let key = fresh_key("concurrent");
    let outcomes = concurrent_failures(&lockout, &key, 20).await;
    let counts: BTreeSet<u32> = outcomes
        .iter()
        .map(|outcome| match outcome {
            FailureOutcome::Counted { failures } => *failures,
            other => panic!("below the threshold, a failure was not counted: {other:?}"),
        })
        .collect();
    assert_eq!(
        counts,
        (1..=20).collect(),
        "20 concurrent failures should see the counts 1 to 20 once each"
    );
    assert_eq!(
        check(&lockout, &key, SystemTime::now()).await,
        LockoutStatus::Open { failures: 20 }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_failures_past_the_threshold_lock_once() {
    let lockout = lockout(LockoutPolicy::default());
    let key = fresh_key("concurrent-lock");
    let outcomes = concurrent_failures(&lockout, &key, 20).await;
    let counted = outcomes
        .iter()
        .filter(|o| matches!(o, FailureOutcome::Counted { .. }))
        .count();
    let started: Vec<_> = outcomes
        .iter()
        .filter(|o| matches!(o, FailureOutcome::LockStarted { .. }))
        .collect();
    let refused = outcomes
        .iter()
        .filter(|o| matches!(o, FailureOutcome::AlreadyLocked { .. }))
        .count();
    assert_eq!(
        (counted, started.len(), refused),
        (4, 1, 15),
        "(counted, locks started, refused) of 20 concurrent failures: {outcomes:?}"
    );
    assert_eq!(
        started[0],
        &FailureOutcome::LockStarted {
            failures: 5,
            retry_after: MINUTE
        }
    );
}

#[tokio::test]
async fn an_unreachable_redis_is_reported_as_unavailable() {
    let lockout = AccountLockout::new(
        &redis(closed_redis_url()),
        LockoutPolicy::default(),
        Duration::from_millis(500),
    )
    .unwrap_or_else(|e| panic!("policy refused: {e}"));
    let key = fresh_key("down");
    let error = lockout
        .check(&key, SystemTime::now())
        .await
        .err()
        .unwrap_or_else(|| panic!("a check against a closed port succeeded"));
    assert!(
        error.is_unavailable(),
        "the caller's failure mode cannot tell: {error}"
    );
}
