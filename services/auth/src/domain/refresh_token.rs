//! Opaque refresh tokens: 32 random bytes, base64url; only their SHA-256 is stored.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rand::TryRngCore as _;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

use crate::error::Error;

/// Longest refresh token accepted in a request, in bytes.
pub const MAX_REFRESH_TOKEN_BYTES: usize = 512;

/// The SHA-256 of a refresh token, the only form in which it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }
}

/// A newly minted opaque token (a refresh token, a mailed account token): the plaintext
/// goes to the client, the hash to the table.
#[derive(Debug)]
pub struct NewRefreshToken {
    pub plaintext: String,
    pub hash: TokenHash,
}

impl NewRefreshToken {
    pub fn generate() -> Result<Self, Error> {
        let plaintext = random_secret()?;
        let hash = TokenHash::of(&plaintext);
        Ok(Self { plaintext, hash })
    }
}

/// 32 random bytes from the OS, base64url: the plaintext of every opaque secret Auth
/// hands out (refresh tokens, service-account secrets), too long to guess, so a SHA-256
/// of it is all that needs storing.
pub fn random_secret() -> Result<String, Error> {
    let mut bytes = [0u8; 32];
    OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| Error::Crypto(format!("OS random source failed: {e}")))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// A refresh token as presented by a client: present and of bounded size; whether it
/// is known is the table's answer.
pub fn parse_presented(token: &str) -> Result<TokenHash, Error> {
    parse_secret("refresh_token", token, MAX_REFRESH_TOKEN_BYTES)
}

/// Any opaque secret Auth handed out (a [`random_secret`]), as the client presents it
/// in `field`: present and at most `max_bytes`; whether it is known is the table's
/// answer.
pub fn parse_secret(
    field: &'static str,
    token: &str,
    max_bytes: usize,
) -> Result<TokenHash, Error> {
    if token.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if token.len() > max_bytes {
        return Err(Error::invalid(
            field,
            format!("must be at most {max_bytes} bytes"),
        ));
    }
    Ok(TokenHash::of(token))
}

/// Where a stored refresh token stands at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    /// Never used, not revoked, not expired: may be exchanged once.
    Usable,
    /// Already exchanged: presenting it again is reuse.
    Used,
    Revoked,
    Expired,
}

impl TokenState {
    /// Revocation wins over use (a reused token's family is already revoked), use
    /// over expiry (reuse is worth reporting even after expiry).
    pub fn of(
        used_at: Option<DateTime<Utc>>,
        revoked_at: Option<DateTime<Utc>>,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Self {
        if revoked_at.is_some() {
            Self::Revoked
        } else if used_at.is_some() {
            Self::Used
        } else if expires_at <= now {
            Self::Expired
        } else {
            Self::Usable
        }
    }

    /// The reason recorded in the audit event of a refused refresh.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Usable => "usable",
            Self::Used => "reused",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_random_base64url_and_hash_to_their_hash() {
        let (Ok(a), Ok(b)) = (NewRefreshToken::generate(), NewRefreshToken::generate()) else {
            panic!("generation failed");
        };
        assert_ne!(a.plaintext, b.plaintext);
        assert_eq!(a.plaintext.len(), 43, "32 bytes in unpadded base64url");
        assert!(
            a.plaintext
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(a.hash, TokenHash::of(&a.plaintext));
    }

    #[test]
    fn presented_tokens_must_be_present_and_bounded() {
        let message = |t: &str| {
            parse_presented(t)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert_eq!(message(""), "refresh_token: is required");
        assert_eq!(
            message(&"a".repeat(513)),
            "refresh_token: must be at most 512 bytes"
        );
        assert!(parse_presented("anything-else").is_ok());
    }

    #[test]
    fn state_prefers_revoked_then_used_then_expired() {
        let now = Utc::now();
        let later = now + chrono::Duration::seconds(60);
        let earlier = now - chrono::Duration::seconds(60);
        assert_eq!(TokenState::of(None, None, later, now), TokenState::Usable);
        assert_eq!(
            TokenState::of(None, None, earlier, now),
            TokenState::Expired
        );
        assert_eq!(
            TokenState::of(Some(now), None, earlier, now),
            TokenState::Used
        );
        assert_eq!(
            TokenState::of(Some(now), Some(now), later, now),
            TokenState::Revoked
        );
    }
}
