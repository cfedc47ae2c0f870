//! Password hashing: argon2id with OWASP's parameters, run on the blocking pool (a
//! hash takes tens of milliseconds of CPU and 19 MiB) behind a semaphore, so a burst
//! of logins can neither stall the async runtime nor exhaust memory.
//!
//! Unknown emails are checked against a dummy hash made at start with the same
//! parameters, so "no such user" costs one argon2 verification exactly like "wrong
//! password" and response times do not reveal which emails are registered.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _, PasswordVerifier as _, Version,
};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use crate::domain::Password;

/// OWASP Password Storage Cheat Sheet, argon2id: m = 19 MiB, t = 2, p = 1.
pub const MEMORY_KIB: u32 = 19_456;
pub const ITERATIONS: u32 = 2;
pub const PARALLELISM: u32 = 1;

/// Why hashing or verifying failed (never because the password was wrong).
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("argon2 failed: {0}")]
    Argon2(String),
    #[error("stored password hash is unreadable: {0}")]
    Unreadable(String),
    #[error("password hashing task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Hashes and verifies passwords. Cheap to clone.
#[derive(Clone)]
pub struct Passwords {
    inner: Arc<Inner>,
}

struct Inner {
    argon2: Argon2<'static>,
    /// Verified instead of a real hash when the email is unknown.
    dummy_hash: String,
    /// Bounds concurrent hashes (CPU and 19 MiB each).
    permits: Semaphore,
    /// argon2 verifications run so far, real and dummy; the seam that shows the
    /// unknown-email path does the same work as the wrong-password path.
    verifications: AtomicU64,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords")
            .field("verifications", &self.verifications())
            .finish_non_exhaustive()
    }
}

fn argon2() -> Result<Argon2<'static>, HashError> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .map_err(|e| HashError::Argon2(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_with(argon2: &Argon2<'_>, password: &[u8]) -> Result<String, HashError> {
    argon2
        .hash_password(password)
        .map(|hash| hash.to_string())
        .map_err(|e| HashError::Argon2(e.to_string()))
}

impl Passwords {
    /// Prepares the hasher and its dummy hash (one argon2 run, off the runtime).
    pub async fn new() -> Result<Self, HashError> {
        let permits = std::thread::available_parallelism().map_or(2, usize::from);
        let argon2 = argon2()?;
        let (argon2, dummy_hash) = tokio::task::spawn_blocking(move || {
            // The dummy's password is never stored or known: a fresh random salt
            // already makes its hash unguessable, the input does not matter.
            let dummy_hash = hash_with(&argon2, b"bulwark identity dummy password")?;
            Ok::<_, HashError>((argon2, dummy_hash))
        })
        .await??;
        Ok(Self {
            inner: Arc::new(Inner {
                argon2,
                dummy_hash,
                permits: Semaphore::new(permits),
                verifications: AtomicU64::new(0),
            }),
        })
    }

    /// The argon2id PHC string of `password`, with a fresh random salt.
    pub async fn hash(&self, password: Password) -> Result<String, HashError> {
        let _permit = self.permit().await?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || hash_with(&inner.argon2, password.expose().as_bytes()))
            .await?
    }

    /// Whether `password` matches `stored` (a PHC string). Without a stored hash
    /// (unknown user) the dummy hash is verified instead and the answer is `false`.
    pub async fn verify(
        &self,
        password: SecretString,
        stored: Option<String>,
    ) -> Result<bool, HashError> {
        let _permit = self.permit().await?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let known = stored.is_some();
            let hash = stored.as_deref().unwrap_or(&inner.dummy_hash);
            let matches = inner.check(password.expose_secret().as_bytes(), hash)?;
            Ok(known && matches)
        })
        .await?
    }

    /// argon2 verifications run so far (real and dummy).
    pub fn verifications(&self) -> u64 {
        self.inner.verifications.load(Ordering::Relaxed)
    }

    async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, HashError> {
        // The semaphore is never closed.
        self.inner
            .permits
            .acquire()
            .await
            .map_err(|e| HashError::Argon2(e.to_string()))
    }
}

impl Inner {
    fn check(&self, password: &[u8], hash: &str) -> Result<bool, HashError> {
        let parsed = PasswordHash::new(hash).map_err(|e| HashError::Unreadable(e.to_string()))?;
        self.verifications.fetch_add(1, Ordering::Relaxed);
        match self.argon2.verify_password(password, &parsed) {
            Ok(()) => Ok(true),
            Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
            Err(e) => Err(HashError::Argon2(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn password(text: &str) -> Password {
        Password::parse(text.to_owned()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn hashes_are_argon2id_with_owasp_parameters_and_verify() {
        let passwords = Passwords::new().await.unwrap_or_else(|e| panic!("{e}"));
        let hash = passwords
            .hash(password("correct horse battery"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "unexpected hash format: {hash}"
        );
        let right = passwords
            .verify("correct horse battery".into(), Some(hash.clone()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let wrong = passwords
            .verify("correct horse battery!".into(), Some(hash))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(right, "the right password did not verify");
        assert!(!wrong, "a wrong password verified");
    }

    #[tokio::test]
    async fn dummy_hash_costs_the_same_as_a_real_one() {
        let passwords = Passwords::new().await.unwrap_or_else(|e| panic!("{e}"));
        let real = passwords
            .hash(password("correct horse battery"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let params_of = |hash: &str| {
            let parsed = PasswordHash::new(hash).unwrap_or_else(|e| panic!("{hash}: {e}"));
            (
                parsed.algorithm.to_string(),
                parsed.version,
                parsed.params.to_string(),
            )
        };
        assert_eq!(
            params_of(&passwords.inner.dummy_hash),
            params_of(&real),
            "the dummy hash must use the same algorithm and cost as stored hashes"
        );

        let before = passwords.verifications();
        let unknown = passwords
            .verify("whatever password".into(), None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!unknown, "an unknown user must never verify");
        assert_eq!(
            passwords.verifications(),
            before + 1,
            "the unknown-user path must run one argon2 verification"
        );
    }

    #[tokio::test]
    async fn unreadable_stored_hash_is_an_error_not_a_mismatch() {
        let passwords = Passwords::new().await.unwrap_or_else(|e| panic!("{e}"));
        let result = passwords
            .verify("whatever password".into(), Some("not a hash".into()))
            .await;
        assert!(
            matches!(result, Err(HashError::Unreadable(_))),
            "{result:?}"
        );
    }
}
