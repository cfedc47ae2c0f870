//! The claims of an access token, as the contract fixes them.

use chrono::{DateTime, Utc};
use serde::Serialize;

use bulwark_kernel::config::TokensConfig;

/// What an access JWT says: who (`sub`), for whom (`iss`, `aud`), when (`iat`, `nbf`,
/// `exp`), which token (`jti`), plus the roles the user held at issue time. The roles
/// are informational; permission decisions always go to Authz.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: String,
    /// The login session of a user's token; the edge refuses tokens of revoked sessions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    pub roles: Vec<String>,
    /// A service account's permissions (resolved from its roles at issue); users'
    /// tokens carry none, their permissions are Authz's to decide on every call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<String>>,
}

impl AccessClaims {
    /// Claims for `user_id` in session `session_id`, valid from `now` for
    /// `ttl_seconds`, with a fresh `jti`.
    pub fn new(
        tokens: &TokensConfig,
        user_id: uuid::Uuid,
        session_id: uuid::Uuid,
        roles: Vec<String>,
        now: DateTime<Utc>,
        ttl_seconds: u64,
    ) -> Self {
        Self {
            sid: Some(session_id.to_string()),
            ..Self::issued(tokens, user_id.to_string(), roles, None, now, ttl_seconds)
        }
    }

    /// Claims for the service account `client_id`: `sub` is `client:<client_id>`.
    pub fn for_client(
        tokens: &TokensConfig,
        client_id: &str,
        roles: Vec<String>,
        permissions: Vec<String>,
        now: DateTime<Utc>,
        ttl_seconds: u64,
    ) -> Self {
        let sub = format!("client:{client_id}");
        Self::issued(tokens, sub, roles, Some(permissions), now, ttl_seconds)
    }

    fn issued(
        tokens: &TokensConfig,
        sub: String,
        roles: Vec<String>,
        permissions: Option<Vec<String>>,
        now: DateTime<Utc>,
        ttl_seconds: u64,
    ) -> Self {
        let iat = now.timestamp();
        Self {
            iss: tokens.issuer.clone(),
            aud: tokens.audience.clone(),
            sub,
            iat,
            nbf: iat,
            exp: iat.saturating_add(i64::try_from(ttl_seconds).unwrap_or(i64::MAX)),
            jti: uuid::Uuid::new_v4().to_string(),
            sid: None,
            roles,
            permissions,
        }
    }
}
