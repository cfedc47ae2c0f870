//! Account lockout: consecutive failed logins for one subject (an account's email), from
//! any address, lock it for a back-off that doubles with each further failure. The
//! state lives in Redis and every operation is one atomic script call (`lockout.lua`),
//! so failures on many instances at once are each counted exactly once.
//!
//! With the default [`LockoutPolicy`]: the 5th consecutive failure locks for 1 minute;
//! while locked, attempts are refused and not counted; each failure after a lock has
//! ended locks again for twice as long (2, 4, 8 minutes), at most 15 minutes; a success
//! resets the count, and a count left alone for 24 hours is forgotten.
//!
//! Keys are never the subject itself: a [`LockoutKeyer`] turns a normalized email into
//! an HMAC-SHA256 under a secret of the caller's, so Redis holds no addresses and a
//! reader of Redis cannot test guesses against it. Locking does not depend on whether
//! the subject exists: an unknown email is counted and locked like a known one, so a
//! lock reveals nothing.
//!
//! ```no_run
//! # use std::time::{Duration, SystemTime};
//! # use bulwark_kernel::redis::Redis;
//! use bulwark_limiter::lockout::{AccountLockout, LockoutKeyer, LockoutPolicy, LockoutStatus};
//!
//! # async fn login(redis: &Redis, secret: &[u8], email: &str) -> anyhow::Result<()> {
//! let lockout = AccountLockout::new(redis, LockoutPolicy::default(), Duration::from_millis(500))?;
//! let keyer = LockoutKeyer::new(secret)?;
//! // The caller normalizes (trim, lowercase) exactly as it compares emails.
//! let key = keyer.key(&email.trim().to_lowercase());
//! if let LockoutStatus::Locked { retry_after } = lockout.check(&key, SystemTime::now()).await? {
//!     // 429 with Retry-After: retry_after, rounded up to whole seconds.
//! #   let _ = retry_after;
//! }
//! // ...after checking the password (and the second factor):
//! # let ok = true;
//! if ok {
//!     lockout.record_success(&key).await?;
//! } else {
//!     let outcome = lockout.record_failure(&key, SystemTime::now()).await?;
//!     // outcome.retry_after() is Some when this attempt is refused as locked.
//! #   let _ = outcome;
//! }
//! # Ok(())
//! # }
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac as _};
use metrics::Counter;
use sha2::Sha256;

use crate::limiter::{LimiterError, LoadedScript, run_script};
use crate::metrics::LOCKOUTS_STARTED_TOTAL;
use bulwark_kernel::redis::{Redis, SharedConnections};

/// The lockout script: one subject's check, failure or success, atomically.
pub const LOCKOUT_LUA: &str = include_str!("lockout.lua");

/// Every lockout key starts with this, then the subject's keyed hash in hex.
pub const LOCKOUT_KEY_PREFIX: &str = "bulwark:lockout";

/// Shortest secret a [`LockoutKeyer`] accepts, in bytes (HMAC-SHA256's block of
/// security).
pub const MIN_KEYER_SECRET_BYTES: usize = 32;

/// Connections shared by lockout calls; each call is one short script.
const SHARED_CONNECTIONS: usize = 2;

/// How many failures lock, for how long, and how long a count is remembered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// The consecutive failure that locks first.
    pub threshold: u32,
    /// The first lock's length; each further failure after a lock doubles it.
    pub base_backoff: Duration,
    /// The longest lock.
    pub max_backoff: Duration,
    /// How long after the last failure its count is kept (the Redis key's lifetime).
    pub retention: Duration,
}

impl Default for LockoutPolicy {
    /// 5 failures; 1 minute, doubling, at most 15 minutes; counts kept 24 hours.
    fn default() -> Self {
        Self {
            threshold: 5,
            base_backoff: Duration::from_secs(60),
            max_backoff: Duration::from_secs(15 * 60),
            retention: Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// A lockout policy or keyer secret that cannot work: the field and the rule, e.g.
/// `max_backoff must be at least base_backoff (60s), not 1s`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {rule}")]
pub struct InvalidLockoutPolicy {
    pub field: &'static str,
    pub rule: String,
}

impl LockoutPolicy {
    /// Lengths are whole milliseconds (the script's unit), of at least 1 ms.
    pub fn validate(&self) -> Result<(), InvalidLockoutPolicy> {
        let invalid = |field, rule: String| Err(InvalidLockoutPolicy { field, rule });
        if self.threshold == 0 {
            return invalid("threshold", "must be at least 1".to_owned());
        }
        if self.base_backoff < Duration::from_millis(1) {
            return invalid(
                "base_backoff",
                format!("must be at least 1ms, not {:?}", self.base_backoff),
            );
        }
        if self.max_backoff < self.base_backoff {
            return invalid(
                "max_backoff",
                format!(
                    "must be at least base_backoff ({:?}), not {:?}",
                    self.base_backoff, self.max_backoff
                ),
            );
        }
        // A shorter retention would let Redis forget a lock before it ends.
        if self.retention < self.max_backoff {
            return invalid(
                "retention",
                format!(
                    "must be at least max_backoff ({:?}), not {:?}",
                    self.max_backoff, self.retention
                ),
            );
        }
        // Far beyond any sensible setting; keeps the script's float arithmetic exact.
        if self.retention > Duration::from_secs(365 * 24 * 60 * 60) {
            return invalid(
                "retention",
                format!("must be at most a year, not {:?}", self.retention),
            );
        }
        Ok(())
    }

    /// How long the `failures`-th consecutive failure locks, or `None` below the
    /// threshold: what the script computes, for callers that explain it.
    pub fn backoff(&self, failures: u32) -> Option<Duration> {
        let doublings = failures.checked_sub(self.threshold)?;
        let factor = 1u32.checked_shl(doublings.min(31)).unwrap_or(u32::MAX);
        Some(
            self.base_backoff
                .saturating_mul(factor)
                .min(self.max_backoff),
        )
    }
}

/// A subject's key in Redis: made only by a [`LockoutKeyer`], so no raw email can be
/// passed by mistake.
#[derive(Clone, PartialEq, Eq)]
pub struct LockoutKey(String);

impl LockoutKey {
    /// The Redis key, `bulwark:lockout:<64 hex digits>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A key a [`LockoutKeyer`] made earlier, as [`LockoutKey::as_str`] gave it (kept
    /// between the two steps of a login, say); `None` for anything else.
    pub fn from_stored(stored: &str) -> Option<Self> {
        let digest = stored.strip_prefix(LOCKOUT_KEY_PREFIX)?.strip_prefix(':')?;
        (digest.len() == 64
            && digest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| Self(stored.to_owned()))
    }
}

impl std::fmt::Debug for LockoutKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("LockoutKey").field(&self.0).finish()
    }
}

/// Turns subjects into [`LockoutKey`]s: HMAC-SHA256 under a secret, so the keys say
/// nothing about the subjects to anyone without it. Every instance must share the
/// secret, or they count in different keys.
#[derive(Clone)]
pub struct LockoutKeyer {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for LockoutKeyer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LockoutKeyer")
    }
}

impl LockoutKeyer {
    /// A keyer under `secret`, of at least [`MIN_KEYER_SECRET_BYTES`] bytes.
    pub fn new(secret: &[u8]) -> Result<Self, InvalidLockoutPolicy> {
        if secret.len() < MIN_KEYER_SECRET_BYTES {
            return Err(InvalidLockoutPolicy {
                field: "secret",
                rule: format!(
                    "must be at least {MIN_KEYER_SECRET_BYTES} bytes, not {}",
                    secret.len()
                ),
            });
        }
        let mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|e| InvalidLockoutPolicy {
            field: "secret",
            rule: format!("is not a usable HMAC key: {e}"),
        })?;
        Ok(Self { mac })
    }

    /// The key of `subject`, which the caller has normalized exactly as it compares
    /// subjects (for emails: trimmed and lowercased), so that every spelling of one
    /// account counts in one key.
    pub fn key(&self, subject: &str) -> LockoutKey {
        let mut mac = self.mac.clone();
        mac.update(subject.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut key = String::with_capacity(LOCKOUT_KEY_PREFIX.len() + 1 + 2 * digest.len());
        key.push_str(LOCKOUT_KEY_PREFIX);
        key.push(':');
        for byte in digest {
            key.push_str(&format!("{byte:02x}"));
        }
        LockoutKey(key)
    }
}

/// Whether a subject may try to log in now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockoutStatus {
    /// Not locked; `failures` consecutive failures so far.
    Open { failures: u32 },
    /// Locked: refuse the attempt, with `Retry-After` from `retry_after`.
    Locked { retry_after: Duration },
}

/// What recording one failure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureOutcome {
    /// Counted; still below the threshold.
    Counted { failures: u32 },
    /// Counted, and this failure locked the subject (an "account locked" event).
    LockStarted {
        failures: u32,
        retry_after: Duration,
    },
    /// The subject was already locked: the attempt should have been refused, and is
    /// not counted.
    AlreadyLocked { retry_after: Duration },
}

impl FailureOutcome {
    /// How long the subject stays locked, when it is.
    pub fn retry_after(&self) -> Option<Duration> {
        match *self {
            Self::Counted { .. } => None,
            Self::LockStarted { retry_after, .. } | Self::AlreadyLocked { retry_after } => {
                Some(retry_after)
            }
        }
    }
}

/// `Retry-After` in whole seconds, rounded up so a client that waits that long finds
/// the lock over.
pub fn retry_after_seconds(retry_after: Duration) -> u64 {
    retry_after
        .as_secs()
        .saturating_add(u64::from(retry_after.subsec_nanos() > 0))
}

/// Which operation a script call performs (its first argument).
#[derive(Debug, Clone, Copy)]
enum Operation {
    Check = 1,
    Failure = 2,
    Success = 3,
}

/// Account lockout over Redis. Cheap to share behind an `Arc`.
pub struct AccountLockout {
    connections: SharedConnections,
    timeout: Duration,
    script: LoadedScript,
    policy: LockoutPolicy,
    lockouts_started: Counter,
}

impl std::fmt::Debug for AccountLockout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountLockout")
            .field("timeout", &self.timeout)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl AccountLockout {
    /// Lockout by `policy` (refused when it is not valid) over `redis`, each call
    /// bounded by `timeout`.
    pub fn new(
        redis: &Redis,
        policy: LockoutPolicy,
        timeout: Duration,
    ) -> Result<Self, InvalidLockoutPolicy> {
        policy.validate()?;
        Ok(Self {
            connections: redis.shared_connections(SHARED_CONNECTIONS),
            timeout,
            script: LoadedScript::new(LOCKOUT_LUA),
            policy,
            lockouts_started: metrics::counter!(LOCKOUTS_STARTED_TOTAL),
        })
    }

    pub fn policy(&self) -> &LockoutPolicy {
        &self.policy
    }

    /// Whether `key`'s subject is locked at `now`. Changes nothing.
    pub async fn check(
        &self,
        key: &LockoutKey,
        now: SystemTime,
    ) -> Result<LockoutStatus, LimiterError> {
        let reply = self.call(Operation::Check, key, now).await?;
        Ok(match reply.state {
            State::Open => LockoutStatus::Open {
                failures: reply.failures,
            },
            State::Locked | State::LockStarted => LockoutStatus::Locked {
                retry_after: reply.retry_after,
            },
        })
    }

    /// Counts a failed attempt at `now`, unless the subject is locked (then nothing
    /// changes). The failure that reaches the threshold locks, and so does every
    /// counted failure after it, each for twice as long as the one before (at most the
    /// policy's longest back-off).
    pub async fn record_failure(
        &self,
        key: &LockoutKey,
        now: SystemTime,
    ) -> Result<FailureOutcome, LimiterError> {
        let reply = self.call(Operation::Failure, key, now).await?;
        Ok(match reply.state {
            State::Open => FailureOutcome::Counted {
                failures: reply.failures,
            },
            State::LockStarted => {
                self.lockouts_started.increment(1);
                FailureOutcome::LockStarted {
                    failures: reply.failures,
                    retry_after: reply.retry_after,
                }
            }
            State::Locked => FailureOutcome::AlreadyLocked {
                retry_after: reply.retry_after,
            },
        })
    }

    /// A successful login: forgets the subject's failures (and any lock; the caller
    /// checks the lock before it lets an attempt succeed).
    pub async fn record_success(&self, key: &LockoutKey) -> Result<(), LimiterError> {
        self.call(Operation::Success, key, UNIX_EPOCH).await?;
        Ok(())
    }

    async fn call(
        &self,
        operation: Operation,
        key: &LockoutKey,
        now: SystemTime,
    ) -> Result<Reply, LimiterError> {
        let args = [
            operation as u64,
            millis_since_epoch(now),
            u64::from(self.policy.threshold),
            millis(self.policy.base_backoff),
            millis(self.policy.max_backoff),
            millis(self.policy.retention),
        ];
        let keys = [key.0.clone()];
        let reply = run_script(&self.connections, self.timeout, &self.script, &keys, &args).await?;
        Reply::parse(&reply)
    }
}

/// The script's three integers.
struct Reply {
    state: State,
    failures: u32,
    retry_after: Duration,
}

enum State {
    Open,
    Locked,
    LockStarted,
}

impl Reply {
    fn parse(reply: &[i64]) -> Result<Self, LimiterError> {
        let &[state, failures, retry_after_ms] = reply else {
            return Err(LimiterError::Reply(format!(
                "{} integers from the lockout script, not 3",
                reply.len()
            )));
        };
        let state = match state {
            0 => State::Open,
            1 => State::Locked,
            2 => State::LockStarted,
            other => {
                return Err(LimiterError::Reply(format!("lockout state {other}")));
            }
        };
        Ok(Self {
            state,
            failures: u32::try_from(failures.max(0)).unwrap_or(u32::MAX),
            retry_after: Duration::from_millis(u64::try_from(retry_after_ms).unwrap_or(0)),
        })
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A clock before 1970 is read as 1970: everything looks stale, nothing locks for long.
fn millis_since_epoch(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).map_or(0, millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_is_five_failures_one_to_fifteen_minutes_kept_a_day() {
        let policy = LockoutPolicy::default();
        assert_eq!(policy.validate(), Ok(()));
        let minutes = |m: u64| Some(Duration::from_secs(60 * m));
        let backoffs: Vec<_> = (4..=11).map(|n| policy.backoff(n)).collect();
        assert_eq!(
            backoffs,
            vec![
                None,
                minutes(1),
                minutes(2),
                minutes(4),
                minutes(8),
                minutes(15),
                minutes(15),
                minutes(15)
            ]
        );
        assert_eq!(policy.backoff(u32::MAX), minutes(15), "no overflow");
    }

    #[test]
    fn policies_that_cannot_work_are_refused_naming_the_field() {
        let field = |policy: LockoutPolicy| policy.validate().err().map(|e| e.field);
        let default = LockoutPolicy::default;
        assert_eq!(
            field(LockoutPolicy {
                threshold: 0,
                ..default()
            }),
            Some("threshold")
        );
        assert_eq!(
            field(LockoutPolicy {
                base_backoff: Duration::from_micros(10),
                ..default()
            }),
            Some("base_backoff")
        );
        assert_eq!(
            field(LockoutPolicy {
                max_backoff: Duration::from_secs(59),
                ..default()
            }),
            Some("max_backoff")
        );
        assert_eq!(
            field(LockoutPolicy {
                retention: Duration::from_secs(899),
                ..default()
            }),
            Some("retention")
        );
        assert_eq!(
            field(LockoutPolicy {
                retention: Duration::from_secs(400 * 24 * 3600),
                ..default()
            }),
            Some("retention")
        );
    }

    #[test]
    fn keys_are_keyed_hashes_that_depend_on_the_secret() {
        let (Ok(a), Ok(b)) = (LockoutKeyer::new(&[1; 32]), LockoutKeyer::new(&[2; 32])) else {
            panic!("32-byte secrets refused");
        };
        let key = a.key("alice@example.com");
        assert!(
            key.as_str().starts_with("bulwark:lockout:") && key.as_str().len() == 16 + 64,
            "{key:?}"
        );
        assert!(
            !key.as_str().contains("alice"),
            "the subject leaked: {key:?}"
        );
        assert_eq!(key, a.key("alice@example.com"), "not deterministic");
        assert_ne!(key, a.key("bob@example.com"));
        assert_ne!(key, b.key("alice@example.com"), "the secret is not used");
        assert_eq!(
            LockoutKeyer::new(&[1; 31]).err().map(|e| e.field),
            Some("secret")
        );
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_seconds(Duration::from_secs(60)), 60);
        assert_eq!(retry_after_seconds(Duration::from_millis(59_001)), 60);
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::ZERO), 0);
    }

    #[test]
    fn malformed_script_replies_are_errors() {
        assert!(Reply::parse(&[0, 1]).is_err());
        assert!(Reply::parse(&[7, 1, 0]).is_err());
        assert!(Reply::parse(&[2, 5, 60_000]).is_ok());
    }
}
