//! The `[auth]` configuration section (`BULWARK_AUTH__*`): token lifetimes, the
//! delay between publishing a rotated-in signing key and signing with it, the
//! secrets of the services' built-in clients, and where mail goes.

use std::collections::BTreeMap;
use std::time::Duration;

use bulwark_kernel::config::MIN_CLIENT_SECRET_CHARS;
use bulwark_limiter::LockoutPolicy;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};

use crate::domain::service_account;
use crate::key_encryption::KeyEncryptionConfig;
use crate::mail::MailSettings;

/// Longest access token lifetime accepted (a day); tokens cannot be revoked, so
/// they must stay short.
const MAX_ACCESS_TTL_SECONDS: u64 = 24 * 3600;
/// `auth.signing_key_cache_seconds` unless set.
pub const DEFAULT_SIGNING_KEY_CACHE_SECONDS: u64 = 5;
/// Longest `auth.signing_key_cache_seconds`: an old key must not sign for long.
const MAX_SIGNING_KEY_CACHE_SECONDS: u64 = 300;
/// Longest refresh token lifetime accepted (a year).
const MAX_REFRESH_TTL_SECONDS: u64 = 365 * 24 * 3600;
/// Longest activation delay accepted (a day): the outgoing key keeps signing meanwhile.
const MAX_ACTIVATION_DELAY_SECONDS: u64 = 24 * 3600;

/// Lifetimes of the tokens Auth issues, and how signing keys take over.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    /// Lifetime of an access token (`exp - iat`); 15 minutes by default.
    pub access_token_ttl_seconds: u64,
    /// Lifetime of each refresh token; 30 days by default.
    pub refresh_token_ttl_seconds: u64,
    /// How long a rotated-in key is published before it signs, so every edge has
    /// fetched it by then; 0 signs with it at once. 90 s by default: the edge
    /// refreshes its JWKS every 60 s (`envoy/edge.yaml`), plus a margin.
    pub key_activation_delay_seconds: u64,
    /// How long an instance signs with its cached key before rereading the table, so a
    /// rotation made on another Auth instance (an immediate one, for a compromised key)
    /// stops this one signing with the old key within this time; retired keys stay
    /// published this much longer to cover it. 5 s by default; 1 to 300.
    pub signing_key_cache_seconds: u64,
    /// The secret of each built-in client (`identity`, `auth`, `authz`, `audit`), as
    /// each service has it in `service_account.client_secret`
    /// (`BULWARK_AUTH__SERVICE_CLIENTS__IDENTITY`, ...). A service left out here cannot
    /// obtain a token, so its calls to internal RPCs are refused.
    #[serde(skip_serializing)]
    pub service_clients: BTreeMap<String, SecretString>,
    /// The key-encryption keys that seal the signing keys in the database
    /// (`[auth.key_encryption]`, see `key_encryption.rs`).
    pub key_encryption: KeyEncryptionConfig,
    /// The SMTP relay mail goes through: `smtp://host:port` (plain),
    /// `smtp://host:port?tls=required` (STARTTLS) or `smtps://user:password@host:465`
    /// (TLS). `smtp://127.0.0.1:2525` by default, the local mesh's SMTP server.
    #[serde(skip_serializing)]
    pub smtp_url: SecretString,
    /// The sender of every message, `address` or `Name <address>`.
    pub mail_from: String,
    /// Where mailed links point (`{public_base_url}/verify-email?token=...`);
    /// `http://127.0.0.1:8080` by default, the local mesh's edge.
    pub public_base_url: String,
    /// Account lockout after consecutive failed logins (`[auth.lockout]`).
    pub lockout: LockoutSettings,
}

/// `[auth.lockout]`: after `threshold` consecutive failed logins for one email, logins
/// for it are refused for `base_backoff_seconds`, doubling with each further failure up
/// to `max_backoff_seconds`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LockoutSettings {
    pub threshold: u32,
    pub base_backoff_seconds: u64,
    pub max_backoff_seconds: u64,
}

impl Default for LockoutSettings {
    /// The contract's: 5 failures; 1 minute, doubling, at most 15.
    fn default() -> Self {
        let policy = LockoutPolicy::default();
        Self {
            threshold: policy.threshold,
            base_backoff_seconds: policy.base_backoff.as_secs(),
            max_backoff_seconds: policy.max_backoff.as_secs(),
        }
    }
}

impl LockoutSettings {
    /// The limiter's policy (validated when the lockout starts).
    pub fn policy(&self) -> LockoutPolicy {
        LockoutPolicy {
            threshold: self.threshold,
            base_backoff: Duration::from_secs(self.base_backoff_seconds),
            max_backoff: Duration::from_secs(self.max_backoff_seconds),
            ..LockoutPolicy::default()
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            access_token_ttl_seconds: 900,
            refresh_token_ttl_seconds: 30 * 24 * 3600,
            key_activation_delay_seconds: 90,
            signing_key_cache_seconds: DEFAULT_SIGNING_KEY_CACHE_SECONDS,
            service_clients: BTreeMap::new(),
            key_encryption: KeyEncryptionConfig::default(),
            smtp_url: SecretString::from("smtp://127.0.0.1:2525"),
            mail_from: "Bulwark <no-reply@bulwark.local>".to_owned(),
            public_base_url: "http://127.0.0.1:8080".to_owned(),
            lockout: LockoutSettings::default(),
        }
    }
}

impl AuthConfig {
    /// Refuses lifetimes and delays that make no sense, naming the key and the rule.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_ACCESS_TTL_SECONDS).contains(&self.access_token_ttl_seconds) {
            return Err(format!(
                "configuration key `auth.access_token_ttl_seconds` is invalid: \
                 must be between 1 and {MAX_ACCESS_TTL_SECONDS}"
            ));
        }
        if !(self.access_token_ttl_seconds..=MAX_REFRESH_TTL_SECONDS)
            .contains(&self.refresh_token_ttl_seconds)
        {
            return Err(format!(
                "configuration key `auth.refresh_token_ttl_seconds` is invalid: \
                 must be between auth.access_token_ttl_seconds and {MAX_REFRESH_TTL_SECONDS}"
            ));
        }
        if self.key_activation_delay_seconds > MAX_ACTIVATION_DELAY_SECONDS {
            return Err(format!(
                "configuration key `auth.key_activation_delay_seconds` is invalid: \
                 must be between 0 and {MAX_ACTIVATION_DELAY_SECONDS}"
            ));
        }
        if !(1..=MAX_SIGNING_KEY_CACHE_SECONDS).contains(&self.signing_key_cache_seconds) {
            return Err(format!(
                "configuration key `auth.signing_key_cache_seconds` is invalid: \
                 must be between 1 and {MAX_SIGNING_KEY_CACHE_SECONDS}"
            ));
        }
        for (id, secret) in &self.service_clients {
            if service_account::builtin_permissions(id).is_none() {
                let known: Vec<&str> = service_account::builtin_ids().collect();
                return Err(format!(
                    "configuration key `auth.service_clients.{id}` is invalid: \
                     not a built-in client (those are {})",
                    known.join(", ")
                ));
            }
            if secret.expose_secret().chars().count() < MIN_CLIENT_SECRET_CHARS {
                return Err(format!(
                    "configuration key `auth.service_clients.{id}` is invalid: \
                     must be at least {MIN_CLIENT_SECRET_CHARS} characters"
                ));
            }
        }
        self.mail_settings().map(|_| ())
    }

    /// The mail settings, checked (`auth.smtp_url`, `auth.mail_from`,
    /// `auth.public_base_url`).
    pub fn mail_settings(&self) -> Result<MailSettings, String> {
        MailSettings::new(&self.smtp_url, &self.mail_from, &self.public_base_url)
    }

    pub fn access_ttl(&self) -> Duration {
        Duration::from_secs(self.access_token_ttl_seconds)
    }

    pub fn refresh_ttl(&self) -> Duration {
        Duration::from_secs(self.refresh_token_ttl_seconds)
    }

    pub fn key_activation_delay(&self) -> Duration {
        Duration::from_secs(self.key_activation_delay_seconds)
    }

    pub fn signing_key_cache(&self) -> Duration {
        Duration::from_secs(self.signing_key_cache_seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_fifteen_minutes_thirty_days_and_ninety_seconds() {
        let config = AuthConfig::default();
        assert_eq!(config.access_token_ttl_seconds, 900);
        assert_eq!(config.refresh_token_ttl_seconds, 2_592_000);
        assert_eq!(config.key_activation_delay_seconds, 90);
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn out_of_range_lifetimes_name_their_key() {
        let zero = AuthConfig {
            access_token_ttl_seconds: 0,
            ..AuthConfig::default()
        };
        let error = zero.validate().err().unwrap_or_default();
        assert!(error.contains("auth.access_token_ttl_seconds"), "{error}");

        let shorter_refresh = AuthConfig {
            access_token_ttl_seconds: 900,
            refresh_token_ttl_seconds: 60,
            ..AuthConfig::default()
        };
        let error = shorter_refresh.validate().err().unwrap_or_default();
        assert!(error.contains("auth.refresh_token_ttl_seconds"), "{error}");
    }

    #[test]
    fn service_clients_must_be_builtin_with_long_secrets() {
        let secret = || SecretString::from("s".repeat(32));
        let mut config = AuthConfig::default();
        config.service_clients.insert("identity".into(), secret());
        assert_eq!(config.validate(), Ok(()));
        config.service_clients.insert("billing".into(), secret());
        let error = config.validate().err().unwrap_or_default();
        assert!(
            error.contains("auth.service_clients.billing") && error.contains("identity, auth"),
            "{error}"
        );
        config.service_clients.remove("billing");
        config
            .service_clients
            .insert("audit".into(), SecretString::from("short"));
        let error = config.validate().err().unwrap_or_default();
        assert!(
            error.contains("auth.service_clients.audit") && error.contains("at least 32"),
            "{error}"
        );
    }

    #[test]
    fn mail_defaults_point_at_the_local_mesh() {
        let config = AuthConfig::default();
        assert_eq!(config.smtp_url.expose_secret(), "smtp://127.0.0.1:2525");
        assert_eq!(config.public_base_url, "http://127.0.0.1:8080");
        let settings = config.mail_settings().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            settings.links().with_token("verify-email", "t"),
            "http://127.0.0.1:8080/verify-email?token=t"
        );
    }

    #[test]
    fn bad_mail_settings_fail_validation_naming_their_key() {
        let cases = [
            (
                "auth.smtp_url",
                AuthConfig {
                    smtp_url: SecretString::from("imap://user:hunter2@mail.example.com"),
                    ..AuthConfig::default()
                },
            ),
            (
                "auth.mail_from",
                AuthConfig {
                    mail_from: "bulwark".to_owned(),
                    ..AuthConfig::default()
                },
            ),
            (
                "auth.public_base_url",
                AuthConfig {
                    public_base_url: "example.com/app".to_owned(),
                    ..AuthConfig::default()
                },
            ),
        ];
        for (key, config) in cases {
            let error = config.validate().err().unwrap_or_default();
            assert!(
                error.contains(&format!("`{key}` is invalid")),
                "{key}: {error}"
            );
            assert!(
                !error.contains("hunter2"),
                "{key} leaked the password: {error}"
            );
        }
    }

    #[test]
    fn activation_delay_is_zero_to_a_day() {
        for (seconds, valid) in [(0, true), (86_400, true), (86_401, false)] {
            let config = AuthConfig {
                key_activation_delay_seconds: seconds,
                ..AuthConfig::default()
            };
            let result = config.validate();
            assert_eq!(result.is_ok(), valid, "delay {seconds}: {result:?}");
            if let Err(error) = result {
                assert!(
                    error.contains("auth.key_activation_delay_seconds")
                        && error.contains("between 0 and 86400"),
                    "{error}"
                );
            }
        }
    }
}
