//! The claims of a Bulwark access token and how each is checked once the signature holds.
//!
//! Required everywhere: `iss`, `aud`, `sub`, `iat`, `exp`, `jti`. Optional: `nbf`, `sid`
//! (a user's login session, a UUID), `roles` and `permissions`. `sub` names a user (a UUID) or a service account
//! (`client:<client_id>`); `permissions` counts only for service accounts, since a user's
//! permissions come from Authz and a token must not be able to widen them.

use std::fmt;

use serde::Deserialize;
use uuid::Uuid;

use crate::error::TokenError;
use crate::verify::Policy;

/// Who a token speaks for, read from its `sub`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A user: `sub` is the user id in the canonical (lowercase, hyphenated) UUID form.
    User(Uuid),
    /// A service account (OAuth 2.0 client): `sub` is `client:<id>`.
    Client {
        /// The client id (never empty).
        id: String,
    },
}

impl Subject {
    /// The prefix of a service account's `sub`.
    pub const CLIENT_PREFIX: &'static str = "client:";

    /// Reads a `sub` value; `None` when it is neither form.
    ///
    /// A user id must be spelled exactly as Auth writes it (lowercase, hyphenated), so one
    /// user has one `sub`: the edge keys rate limits and identity headers on the text.
    pub fn parse(sub: &str) -> Option<Self> {
        if let Some(id) = sub.strip_prefix(Self::CLIENT_PREFIX) {
            return (!id.is_empty()).then(|| Self::Client { id: id.to_owned() });
        }
        // 36 bytes is the hyphenated form only (simple, braced and URN forms differ).
        if sub.len() != 36 || sub.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        Uuid::try_parse(sub).ok().map(Self::User)
    }

    /// The user id, for a user.
    pub fn user_id(&self) -> Option<Uuid> {
        match self {
            Self::User(id) => Some(*id),
            Self::Client { .. } => None,
        }
    }

    /// The client id, for a service account.
    pub fn client_id(&self) -> Option<&str> {
        match self {
            Self::User(_) => None,
            Self::Client { id } => Some(id),
        }
    }

    /// Whether this is a service account.
    pub fn is_client(&self) -> bool {
        matches!(self, Self::Client { .. })
    }
}

impl fmt::Display for Subject {
    /// The `sub` value this subject was read from.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(id) => write!(f, "{}", id.hyphenated()),
            Self::Client { id } => write!(f, "{}{id}", Self::CLIENT_PREFIX),
        }
    }
}

/// What a verified token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedClaims {
    /// `sub` as written in the token (safe to forward in a header).
    pub sub: String,
    /// `sub`, read.
    pub subject: Subject,
    /// `roles`: empty when the claim is absent. Each is safe to forward comma-joined.
    pub roles: Vec<String>,
    /// `permissions` of a service account (always empty for a user).
    permissions: Vec<String>,
    /// `iat`, seconds since the Unix epoch.
    pub iat: u64,
    /// `exp`, seconds since the Unix epoch.
    pub exp: u64,
    /// `nbf`, when present.
    pub nbf: Option<u64>,
    /// `jti`: the token's id.
    pub jti: String,
    /// `sid`: the login session a user's token belongs to, when the token names one.
    /// The edge refuses tokens of revoked sessions.
    pub sid: Option<Uuid>,
}

impl VerifiedClaims {
    /// The permissions the token grants: those of its `permissions` claim for a service
    /// account, none for a user (whose permissions come from Authz).
    pub fn permissions(&self) -> &[String] {
        match self.subject {
            Subject::Client { .. } => &self.permissions,
            Subject::User(_) => &[],
        }
    }
}

/// The payload as sent; every member is checked by [`RawClaims::check`].
#[derive(Deserialize)]
pub(crate) struct RawClaims {
    iss: Option<serde_json::Value>,
    aud: Option<serde_json::Value>,
    sub: Option<serde_json::Value>,
    iat: Option<serde_json::Value>,
    exp: Option<serde_json::Value>,
    nbf: Option<serde_json::Value>,
    jti: Option<serde_json::Value>,
    sid: Option<serde_json::Value>,
    roles: Option<serde_json::Value>,
    permissions: Option<serde_json::Value>,
}

/// The longest `sub`, role, permission or `jti` accepted.
const MAX_CLAIM_VALUE_BYTES: usize = 256;

impl RawClaims {
    /// Checks every claim against `policy` at time `now` (Unix seconds).
    pub(crate) fn check(self, policy: &Policy, now: u64) -> Result<VerifiedClaims, TokenError> {
        // Presence first, so a token lacking a claim is told so whatever else is wrong.
        let iss = required(&self.iss, "iss")?;
        let aud = required(&self.aud, "aud")?;
        let sub = required(&self.sub, "sub")?;
        let iat = required(&self.iat, "iat")?;
        let exp = required(&self.exp, "exp")?;
        let jti = required(&self.jti, "jti")?;
        if !matches!(iss, serde_json::Value::String(iss) if *iss == policy.issuer) {
            return Err(TokenError::WrongIssuer);
        }
        if !audience_accepted(aud, &policy.audiences) {
            return Err(TokenError::WrongAudience);
        }
        let exp = numeric_date(exp).ok_or(TokenError::InvalidClaim("exp"))?;
        if now > exp.saturating_add(policy.clock_skew_seconds) {
            return Err(TokenError::Expired);
        }
        let nbf = match &self.nbf {
            None => None,
            Some(value) => Some(numeric_date(value).ok_or(TokenError::InvalidClaim("nbf"))?),
        };
        if nbf.is_some_and(|nbf| nbf > now.saturating_add(policy.clock_skew_seconds)) {
            return Err(TokenError::NotYetValid);
        }
        let iat = numeric_date(iat).ok_or(TokenError::InvalidClaim("iat"))?;
        let sub = match sub {
            serde_json::Value::String(s) if is_header_safe(s, false) => s.clone(),
            _ => return Err(TokenError::InvalidClaim("sub")),
        };
        let subject = Subject::parse(&sub).ok_or(TokenError::InvalidClaim("sub"))?;
        let jti = match jti {
            serde_json::Value::String(s) if is_header_safe(s, false) => s.clone(),
            _ => return Err(TokenError::InvalidClaim("jti")),
        };
        let sid = match &self.sid {
            None => None,
            // Spelled as Auth writes it, like a user's `sub`: one session, one `sid`.
            Some(serde_json::Value::String(s))
                if s.len() == 36 && !s.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                Some(Uuid::try_parse(s).map_err(|_| TokenError::InvalidClaim("sid"))?)
            }
            Some(_) => return Err(TokenError::InvalidClaim("sid")),
        };
        let roles = string_list(self.roles, "roles")?;
        let permissions = string_list(self.permissions, "permissions")?;
        Ok(VerifiedClaims {
            sub,
            // Only a service account's token grants permissions by itself.
            permissions: if subject.is_client() {
                permissions
            } else {
                Vec::new()
            },
            subject,
            roles,
            iat,
            exp,
            nbf,
            jti,
            sid,
        })
    }
}

/// A required claim; `null` deserializes to `None`, so an explicit null counts as absent.
fn required<'a>(
    value: &'a Option<serde_json::Value>,
    claim: &'static str,
) -> Result<&'a serde_json::Value, TokenError> {
    value.as_ref().ok_or(TokenError::MissingClaim(claim))
}

/// RFC 7519 §4.1.3: `aud` is one string or an array of strings, and must name one of
/// the accepted audiences.
fn audience_accepted(aud: &serde_json::Value, audiences: &[String]) -> bool {
    let accepted = |value: &serde_json::Value| {
        value
            .as_str()
            .is_some_and(|aud| audiences.iter().any(|a| a == aud))
    };
    match aud {
        serde_json::Value::Array(items) => items.iter().any(accepted),
        value => accepted(value),
    }
}

/// An optional array of strings (`roles`, `permissions`); absent or `null` is empty.
/// Roles travel comma-joined in one header at the edge, so a comma would forge a second
/// role; permissions follow the same rule so both lists read alike.
fn string_list(
    value: Option<serde_json::Value>,
    claim: &'static str,
) -> Result<Vec<String>, TokenError> {
    match value {
        None => Ok(Vec::new()),
        Some(serde_json::Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                serde_json::Value::String(s) if is_header_safe(&s, true) => Ok(s),
                _ => Err(TokenError::InvalidClaim(claim)),
            })
            .collect(),
        Some(_) => Err(TokenError::InvalidClaim(claim)),
    }
}

/// An RFC 7519 NumericDate: a non-negative number of seconds (fractions are truncated).
fn numeric_date(value: &serde_json::Value) -> Option<u64> {
    let number = value.as_number()?;
    if let Some(n) = number.as_u64() {
        return Some(n);
    }
    let f = number.as_f64()?;
    // The upper bound keeps the cast exact and excludes NaN and infinities.
    (f.is_finite() && (0.0..9.0e15).contains(&f)).then_some(f as u64)
}

/// Whether a claim value can be forwarded in a header: printable ASCII, no spaces.
fn is_header_safe(value: &str, forbid_comma: bool) -> bool {
    !value.is_empty()
        && value.len() <= MAX_CLAIM_VALUE_BYTES
        && value
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && !(forbid_comma && b == b','))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_user_id_and_client_subjects_are_read() {
        let id = "0192f0c4-7d4e-7b1a-9f00-000000000001";
        assert_eq!(
            Subject::parse(id)
                .and_then(|s| s.user_id())
                .map(|u| u.to_string()),
            Some(id.to_owned())
        );
        assert_eq!(
            Subject::parse("client:identity"),
            Some(Subject::Client {
                id: "identity".to_owned()
            })
        );
    }

    #[test]
    fn other_spellings_of_a_user_id_and_empty_client_ids_are_refused() {
        for sub in [
            "0192F0C4-7D4E-7B1A-9F00-000000000001",
            "0192f0c47d4e7b1a9f00000000000001",
            "{0192f0c4-7d4e-7b1a-9f00-000000000001}",
            "urn:uuid:0192f0c4-7d4e-7b1a-9f00-000000000001",
            "user-42",
            "client:",
            "Client:identity",
            "",
        ] {
            assert_eq!(Subject::parse(sub), None, "{sub:?} was accepted");
        }
    }

    #[test]
    fn subject_displays_as_its_sub() {
        for sub in ["0192f0c4-7d4e-7b1a-9f00-000000000001", "client:auth"] {
            let subject = Subject::parse(sub);
            assert_eq!(subject.map(|s| s.to_string()).as_deref(), Some(sub));
        }
    }
}
