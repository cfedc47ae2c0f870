//! The `[auth]` configuration section (`BULWARK_AUTH__*`): token lifetimes.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Longest access token lifetime accepted (a day); tokens cannot be revoked, so
/// they must stay short.
const MAX_ACCESS_TTL_SECONDS: u64 = 24 * 3600;
/// Longest refresh token lifetime accepted (a year).
const MAX_REFRESH_TTL_SECONDS: u64 = 365 * 24 * 3600;

/// Lifetimes of the tokens Auth issues.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    /// Lifetime of an access token (`exp - iat`); 15 minutes by default.
    pub access_token_ttl_seconds: u64,
    /// Lifetime of each refresh token; 30 days by default.
    pub refresh_token_ttl_seconds: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            access_token_ttl_seconds: 900,
            refresh_token_ttl_seconds: 30 * 24 * 3600,
        }
    }
}

impl AuthConfig {
    /// Refuses lifetimes that make no sense, naming the key and the rule.
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
        Ok(())
    }

    pub fn access_ttl(&self) -> Duration {
        Duration::from_secs(self.access_token_ttl_seconds)
    }

    pub fn refresh_ttl(&self) -> Duration {
        Duration::from_secs(self.refresh_token_ttl_seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_fifteen_minutes_and_thirty_days() {
        let config = AuthConfig::default();
        assert_eq!(config.access_token_ttl_seconds, 900);
        assert_eq!(config.refresh_token_ttl_seconds, 2_592_000);
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
        };
        let error = shorter_refresh.validate().err().unwrap_or_default();
        assert!(error.contains("auth.refresh_token_ttl_seconds"), "{error}");
    }
}
