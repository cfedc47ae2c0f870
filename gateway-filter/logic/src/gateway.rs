//! The per-request decision: strip-worthy identity headers, public routes, bearer
//! extraction and verification, and the identity forwarded upstream.

use std::borrow::Cow;
use std::rc::Rc;

use crate::config::GatewayConfig;
use crate::error::AuthError;
use crate::jwks::{JwksError, KeyStore, LoadedJwks};
use crate::ratelimit::{self, RateLimitCheck, RateLimitSubject};
use crate::revocation::{self, RevokedIds};
use crate::routes;
use crate::verifier::{CacheAnswer, TokenVerifier, VerifiedClaims};

/// The request facts the decision needs. The method is not one of them: what a call is
/// (public, bearer, limited) is decided by its route, so that no method can make a call
/// count as another.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// `:path`, query included.
    pub path: &'a str,
    /// The `Authorization` header's value as the client sent it (any octets), if any.
    pub authorization: Option<&'a [u8]>,
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
    /// Sessions revoked whose tokens may not have expired yet (this worker's copy).
    revoked: RevokedIds,
}

impl Gateway {
    /// A gateway with no keys loaded yet.
    pub fn new(config: GatewayConfig) -> Self {
        let verifier = TokenVerifier::new(&config);
        Self {
            config,
            verifier,
            revoked: RevokedIds::default(),
        }
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

    /// Makes `revoked` the sessions whose tokens are refused.
    pub fn install_revoked(&mut self, revoked: RevokedIds) {
        self.revoked = revoked;
    }

    /// How many revoked sessions this worker refuses.
    pub fn revoked_sessions(&self) -> usize {
        self.revoked.len()
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
        self.authorize_answered(head, now).0
    }

    /// [`Gateway::authorize`], with whether the verified-token cache answered.
    pub fn authorize_answered(
        &mut self,
        head: &RequestHead<'_>,
        now: u64,
    ) -> (Access, CacheAnswer) {
        if self.is_public(head.path) {
            return (Access::Public, CacheAnswer::NotAsked);
        }
        let token = match head.authorization.map(raw_bearer_token) {
            None => {
                return (
                    Access::Denied(AuthError::MissingToken),
                    CacheAnswer::NotAsked,
                );
            }
            Some(Err(e)) => return (Access::Denied(e), CacheAnswer::NotAsked),
            Some(Ok(token)) => token,
        };
        let (verified, answer) = self.verifier.verify_raw_answered(&token, now);
        let access = match verified {
            // Cached tokens too: a session revoked after its token was cached is refused.
            Ok(claims)
                if !self.revoked.is_empty()
                    && claims.sid.is_some_and(|sid| {
                        self.revoked.contains(&revocation::session_id(&sid))
                    }) =>
            {
                Access::Denied(AuthError::Revoked)
            }
            Ok(claims) => Access::Authenticated(claims),
            Err(e) => Access::Denied(e),
        };
        (access, answer)
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
    let token = token_of_trimmed(header.as_bytes())?;
    // The token ends the header, and begins after an ASCII space or tab.
    Ok(header.get(header.len() - token.len()..).unwrap_or_default())
}

/// [`bearer_token`] of a raw header value read as text (bytes that are not UTF-8 as
/// U+FFFD), as the token's bytes: read as text, they are the token [`bearer_token`] gives.
/// A value that is ASCII at both ends once ASCII whitespace is trimmed is not read as text
/// at all: `str::trim` would stop where the ASCII trim stops, the scheme and token split
/// at an ASCII byte, which no multi-byte character contains, and the token runs to the
/// end. Every request on a bearer route takes that way, and checking that ~350 bytes are
/// UTF-8 costs ~1,000 instructions inside Wasm; the token is read as text only if the
/// cache does not know it ([`TokenVerifier::verify_raw`]).
pub fn raw_bearer_token(header: &[u8]) -> Result<Cow<'_, [u8]>, AuthError> {
    let trimmed = trim_ascii_whitespace(header);
    match (trimmed.first(), trimmed.last()) {
        (Some(first), Some(last)) if first.is_ascii() && last.is_ascii() => {
            token_of_trimmed(trimmed).map(Cow::Borrowed)
        }
        _ => bearer_token(&String::from_utf8_lossy(header))
            .map(|token| Cow::Owned(token.as_bytes().to_vec())),
    }
}

/// `bytes` without the leading and trailing ASCII characters `str::trim` removes (the
/// ASCII ones of Unicode's White_Space: `u8::is_ascii_whitespace` leaves out U+000B).
fn trim_ascii_whitespace(bytes: &[u8]) -> &[u8] {
    let space = |b: &u8| matches!(b, b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r' | b' ');
    let start = bytes.iter().position(|b| !space(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !space(b))
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

/// The token of a trimmed `Bearer <token>` value: the scheme ends at the first space or
/// tab, and the token follows the spaces and tabs after it.
fn token_of_trimmed(header: &[u8]) -> Result<&[u8], AuthError> {
    let (scheme, rest) = match header.iter().position(|&b| b == b' ' || b == b'\t') {
        Some(at) => (
            header.get(..at).unwrap_or_default(),
            header.get(at + 1..).unwrap_or_default(),
        ),
        None => (header, &[][..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(AuthError::NotBearer);
    }
    let start = rest
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(rest.len());
    match rest.get(start..) {
        Some(token) if !token.is_empty() => Ok(token),
        _ => Err(AuthError::MissingToken),
    }
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

    #[test]
    fn a_raw_header_gives_the_token_its_text_gives() {
        let headers: [&[u8]; 24] = [
            b"Bearer abc",
            b" \t bearer \t abc \r\n",
            b"\x0bBearer abc\x0b",
            b"\x0cBearer abc\x0c",
            b"Bearer\tabc",
            b"Bearer abc def",
            b"Basic abc",
            b"Bearerabc",
            b"Bearer",
            b"Bearer \t ",
            b"",
            b" ",
            "\u{a0}Bearer abc".as_bytes(),
            "Bearer abc\u{a0}".as_bytes(),
            " \u{3000}Bearer abc\u{2003} ".as_bytes(),
            "Bearer\u{a0}abc".as_bytes(),
            "Bearer \u{a0}abc".as_bytes(),
            "\u{85}Bearer abc".as_bytes(),
            b"\xffBearer abc",
            b"Bearer abc\xff",
            b"Bearer \xe2\x82 abc",
            b"Bearer ab\xc3c",
            b" Bearer \xff",
            b"\xc2Bearer abc",
        ];
        for header in headers {
            let text = String::from_utf8_lossy(header);
            assert_eq!(
                raw_bearer_token(header).map(|t| String::from_utf8_lossy(&t).into_owned()),
                bearer_token(&text).map(str::to_owned),
                "{header:?} is read differently"
            );
        }
    }
}
