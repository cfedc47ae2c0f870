//! Account lockout at login: consecutive failures per email, from any address, counted
//! by the limiter's lockout script in Redis (shared by every Auth instance), keyed by a
//! keyed hash of the normalized email so Redis never holds an address. Unknown emails
//! are counted alike, so a lock tells nothing about whether an account exists.
//!
//! Without Redis (or while it is unreachable) logins are not locked: the edge's limit
//! per client address still holds, and a Redis outage must not lock everybody out. Each
//! such login is logged; outside `service.environment = local`, Auth refuses to start
//! without `redis.url`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bulwark_kernel::Kernel;
use bulwark_limiter::{
    AccountLockout, FailureOutcome, LockoutKey, LockoutKeyer, LockoutPolicy, LockoutStatus,
    retry_after_seconds,
};

use crate::error::Error;
use crate::key_encryption::KeyEncryption;

/// Bound on one lockout call's Redis work.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

/// What a failed attempt did to the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Counted, not locked (or not counted: no Redis).
    Counted,
    /// This failure locked the email (an "account locked" event) for this long.
    Locked { retry_after_seconds: u64 },
}

/// Lockout for Auth's logins.
#[derive(Clone)]
pub struct LoginLockout {
    inner: Option<(Arc<AccountLockout>, Arc<LockoutKeyer>)>,
}

impl std::fmt::Debug for LoginLockout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginLockout")
            .field("enabled", &self.inner.is_some())
            .finish()
    }
}

impl LoginLockout {
    /// Lockout over the kernel's Redis with `policy`; the key that hashes emails is
    /// derived from the key-encryption key (the same on every instance).
    pub fn start(
        kernel: &Kernel,
        policy: LockoutPolicy,
        sealing: &KeyEncryption,
    ) -> anyhow::Result<Self> {
        policy
            .validate()
            .map_err(|e| anyhow::anyhow!("configuration section `auth.lockout`: {e}"))?;
        let environment = &kernel.config().service.environment;
        let Some(redis) = kernel.redis.as_ref() else {
            anyhow::ensure!(
                environment == "local",
                "configuration key `redis.url` is required outside service.environment \
                 `local` (here `{environment}`): Auth counts failed logins per account in \
                 Redis to lock out password guessing; set BULWARK_REDIS__URL"
            );
            tracing::warn!("redis.url is not set: accounts are not locked after failed logins");
            return Ok(Self { inner: None });
        };
        // Auth works without Redis (logins are then not locked): `/ready` shows it down
        // but does not take Auth out of the mesh for it.
        kernel.readiness.tolerate(redis);
        let lockout = AccountLockout::new(redis, policy, REDIS_TIMEOUT)
            .map_err(|e| anyhow::anyhow!("configuration section `auth.lockout`: {e}"))?;
        let keyer = LockoutKeyer::new(sealing.derive("login lockout").as_slice())
            .map_err(|e| anyhow::anyhow!("the lockout key: {e}"))?;
        Ok(Self {
            inner: Some((Arc::new(lockout), Arc::new(keyer))),
        })
    }

    /// No lockout (tests of other things).
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// The Redis key of an email, as the lockout stores it (the email normalized as
    /// [`crate::domain::credentials::Credentials`] does).
    pub fn key(&self, normalized_email: &str) -> Option<LockoutKey> {
        let (_, keyer) = self.inner.as_ref()?;
        Some(keyer.key(normalized_email))
    }

    /// [`Error::LockedOut`] while `key` is locked.
    pub async fn check(&self, key: Option<&LockoutKey>) -> Result<(), Error> {
        let (Some((lockout, _)), Some(key)) = (&self.inner, key) else {
            return Ok(());
        };
        match lockout.check(key, SystemTime::now()).await {
            Ok(LockoutStatus::Locked { retry_after }) => Err(Error::LockedOut {
                retry_after_seconds: retry_after_seconds(retry_after),
            }),
            Ok(LockoutStatus::Open { .. }) => Ok(()),
            Err(error) => {
                tracing::warn!(%error, "cannot check the account lockout; the login goes ahead");
                Ok(())
            }
        }
    }

    /// Counts a failed login (password or second factor) against `key`.
    pub async fn failure(&self, key: Option<&LockoutKey>) -> Failure {
        let (Some((lockout, _)), Some(key)) = (&self.inner, key) else {
            return Failure::Counted;
        };
        match lockout.record_failure(key, SystemTime::now()).await {
            Ok(FailureOutcome::LockStarted { retry_after, .. }) => Failure::Locked {
                retry_after_seconds: retry_after_seconds(retry_after),
            },
            Ok(FailureOutcome::Counted { .. } | FailureOutcome::AlreadyLocked { .. }) => {
                Failure::Counted
            }
            Err(error) => {
                tracing::warn!(%error, "cannot count the failed login against its account");
                Failure::Counted
            }
        }
    }

    /// A completed login: the count starts again.
    pub async fn success(&self, key: Option<&LockoutKey>) {
        let (Some((lockout, _)), Some(key)) = (&self.inner, key) else {
            return;
        };
        if let Err(error) = lockout.record_success(key).await {
            tracing::warn!(%error, "cannot reset the account's failed logins");
        }
    }
}
