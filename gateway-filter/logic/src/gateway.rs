//! The per-request decision: strip-worthy identity headers, public routes, bearer
//! extraction and verification, and the identity forwarded upstream.

use std::borrow::Cow;
use std::rc::Rc;

use crate::config::GatewayConfig;
use crate::error::AuthError;
use crate::jwks::{JwksError, KeyStore, LoadedJwks};
use crate::ratelimit::{self, RateLimitCheck, RateLimitSubject};
use crate::routes;
use crate::verifier::{TokenVerifier, VerifiedClaims};

/// The request facts the decision needs. The method is not one of them: what a call is
/// (public, bearer, limited) is decided by its route, so that no method can make a call
/// count as another.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// `:path`, query included.
    pub path: &'a str,
    /// The `Authorization` header, if any.
    pub authorization: Option<&'a str>,
}

/// The outcome for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// A public route: forwarded without identity.
    Public,
    /// A verified bearer: forwarded with the identity headers. Shared with the
    /// verified-token cache.
    Authenticated(Rc<VerifiedClaims>),
    /// Refused with 401.
    Denied(AuthError),
}

/// Config plus verifier: everything one worker needs to decide on requests.
#[derive(Debug)]
pub struct Gateway {
    config: GatewayConfig,
    verifier: TokenVerifier,
}

impl Gateway {
    /// A gateway with no keys loaded yet.
    pub fn new(config: GatewayConfig) -> Self {
        let verifier = TokenVerifier::new(&config);
        Self { config, verifier }
    }

    /// The configuration.
    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    /// The verifier (keys, cache counters).
    pub fn verifier(&self) -> &TokenVerifier {
        &self.verifier
    }

    /// Parses a JWKS document and, if it has a usable key, makes it the key set.
    /// On error the previous key set stays in force.
    pub fn install_jwks(&mut self, jwks_json: &[u8]) -> Result<LoadedJwks, JwksError> {
        let loaded = KeyStore::from_jwks_json(jwks_json)?;
        self.verifier.install_keys(loaded.store.clone());
        Ok(loaded)
    }

    /// Whether a request on `path` may pass without a token, whatever its method.
    pub fn is_public(&self, path: &str) -> bool {
        routes::plain_path(path).is_some_and(|path| {
            self.config
                .public_routes
                .iter()
                .any(|r| r.matches_plain(path))
        })
    }

    /// Decides on a request at time `now` (Unix seconds, host clock).
    pub fn authorize(&mut self, head: &RequestHead<'_>, now: u64) -> Access {
        if self.is_public(head.path) {
            return Access::Public;
        }
        let token = match head.authorization.map(bearer_token) {
            None => return Access::Denied(AuthError::MissingToken),
            Some(Err(e)) => return Access::Denied(e),
            Some(Ok(token)) => token,
        };
        match self.verifier.verify(token, now) {
            Ok(claims) => Access::Authenticated(claims),
            Err(e) => Access::Denied(e),
        }
    }

    /// The identity headers to set upstream for verified claims. Roles are comma-joined;
    /// an absent `roles` claim yields an empty value, so upstreams always see the header.
    pub fn identity_headers<'a>(
        &'a self,
        claims: &'a VerifiedClaims,
    ) -> [(&'a str, Cow<'a, str>); 2] {
        let names = &self.config.identity_headers;
        let roles = match claims.roles.as_slice() {
            [] => Cow::Borrowed(""),
            [role] => Cow::Borrowed(role.as_str()),
            roles => Cow::Owned(roles.join(",")),
        };
        [
            (names.user_id.as_str(), Cow::Borrowed(claims.sub.as_str())),
            (names.roles.as_str(), roles),
        ]
    }

    /// Whether the rate-limit check of this request would key on the client IP, so the
    /// host is asked for the peer address only when it is needed.
    pub fn limits_by_client_ip(&self, path: &str) -> bool {
        self.config.rate_limit.as_ref().is_some_and(|limits| {
            limits
                .client_ip_routes
                .iter()
                .any(|rule| rule.route.matches_any_reading(path))
        })
    }

    /// The rate-limit check for a request, if rate limiting is configured and applies.
    pub fn rate_limit_check(&self, subject: &RateLimitSubject<'_>) -> Option<RateLimitCheck> {
        ratelimit::plan(self.config.rate_limit.as_ref()?, subject)
    }
}

/// The token of an RFC 6750 `Authorization: Bearer <token>` header.
pub fn bearer_token(header: &str) -> Result<&str, AuthError> {
    let header = header.trim();
    let (scheme, rest) = header.split_once([' ', '\t']).unwrap_or((header, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::NotBearer);
    }
    let token = rest.trim_start_matches([' ', '\t']);
    if token.is_empty() {
        return Err(AuthError::MissingToken);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("bearer abc"), Ok("abc"));
        assert_eq!(bearer_token("BEARER  abc "), Ok("abc"));
    }

    #[test]
    fn other_schemes_are_not_bearer() {
        assert_eq!(
            bearer_token("Basic dXNlcjpwYXNz"),
            Err(AuthError::NotBearer)
        );
        assert_eq!(bearer_token("Bearerabc"), Err(AuthError::NotBearer));
    }

    #[test]
    fn bearer_without_token_is_missing_token() {
        assert_eq!(bearer_token("Bearer"), Err(AuthError::MissingToken));
        assert_eq!(bearer_token("Bearer   "), Err(AuthError::MissingToken));
    }
}
