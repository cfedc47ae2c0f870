//! Mailed account tokens: an email verification token (24 hours) or a password reset
//! token (30 minutes), single use, stored only as the SHA-256 of the 32 random bytes
//! the mail carries, like a refresh token.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::refresh_token::{TokenHash, parse_secret};
use crate::error::Error;
use crate::mail::{EMAIL_VERIFICATION_TTL, PASSWORD_RESET_TTL};

/// Longest token accepted in a request, in bytes.
pub const MAX_TOKEN_BYTES: usize = 512;
/// Longest password accepted in a request, in characters (Identity's rule).
pub const MAX_PASSWORD_CHARS: usize = 128;
/// At most this many reset mails go to one address per hour.
pub const MAX_RESET_MAILS_PER_HOUR: i64 = 3;

/// What a token proves once it comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    EmailVerification,
    PasswordReset,
}

impl TokenKind {
    /// The `kind` column's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EmailVerification => "email_verification",
            Self::PasswordReset => "password_reset",
        }
    }

    /// How long a token of this kind stays usable.
    pub fn ttl(self) -> Duration {
        match self {
            Self::EmailVerification => EMAIL_VERIFICATION_TTL,
            Self::PasswordReset => PASSWORD_RESET_TTL,
        }
    }

    /// When a token of this kind minted at `now` expires.
    pub fn expires_at(self, now: DateTime<Utc>) -> DateTime<Utc> {
        chrono::Duration::from_std(self.ttl())
            .ok()
            .and_then(|ttl| now.checked_add_signed(ttl))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// A freshly minted token: the plaintext goes into the mail, the hash into the table.
/// A newly minted account token: minted like a refresh token.
pub use super::refresh_token::NewRefreshToken as NewAccountToken;

/// A token as a client presents it: present and of bounded size. Whether it is known
/// is the table's answer.
pub fn parse_presented(token: &str) -> Result<TokenHash, Error> {
    parse_secret("token", token, MAX_TOKEN_BYTES)
}

/// Where a stored token stands at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    Usable,
    Used,
    /// A newer request of the same kind made it invalid.
    Superseded,
    Expired,
}

impl TokenState {
    pub fn of(
        used_at: Option<DateTime<Utc>>,
        superseded_at: Option<DateTime<Utc>>,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Self {
        if used_at.is_some() {
            Self::Used
        } else if superseded_at.is_some() {
            Self::Superseded
        } else if expires_at <= now {
            Self::Expired
        } else {
            Self::Usable
        }
    }

    /// The reason logged for a refused token.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Usable => "usable",
            Self::Used => "used",
            Self::Superseded => "superseded",
            Self::Expired => "expired",
        }
    }
}

/// A new password as presented: its length is Identity's to judge (the one rule, in
/// one place), but a missing or absurdly long one is refused before any work.
pub fn new_password(password: &str) -> Result<(), Error> {
    if password.is_empty() {
        return Err(Error::invalid("new_password", "is required"));
    }
    if password.chars().count() > MAX_PASSWORD_CHARS {
        return Err(Error::invalid(
            "new_password",
            format!("must be at most {MAX_PASSWORD_CHARS} characters"),
        ));
    }
    Ok(())
}

/// An email as presented to the reset request: present and bounded; its format is not
/// checked, so a malformed email costs the same as an unknown one.
pub fn reset_email(email: &str) -> Result<&str, Error> {
    let email = email.trim();
    if email.is_empty() {
        return Err(Error::invalid("email", "is required"));
    }
    if email.len() > 254 {
        return Err(Error::invalid("email", "must be at most 254 characters"));
    }
    Ok(email)
}

/// How an audit event names an email it must not spell out: a hash prefix of its
/// lowercase form (as a failed login does).
pub fn email_target(email: &str) -> String {
    let digest = Sha256::digest(email.trim().to_lowercase().as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("email:{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_live_as_the_contract_says() {
        let now = Utc::now();
        assert_eq!(
            TokenKind::EmailVerification.expires_at(now) - now,
            chrono::Duration::hours(24)
        );
        assert_eq!(
            TokenKind::PasswordReset.expires_at(now) - now,
            chrono::Duration::minutes(30)
        );
    }

    #[test]
    fn tokens_are_random_and_only_their_hash_is_kept() {
        let (Ok(a), Ok(b)) = (NewAccountToken::generate(), NewAccountToken::generate()) else {
            panic!("generation failed");
        };
        assert_ne!(a.plaintext, b.plaintext);
        assert_eq!(a.plaintext.len(), 43);
        assert_eq!(parse_presented(&a.plaintext).ok(), Some(a.hash));
    }

    #[test]
    fn presented_tokens_must_be_present_and_bounded() {
        let message = |t: &str| parse_presented(t).err().map(|e| e.to_string());
        assert_eq!(message("").as_deref(), Some("token: is required"));
        assert_eq!(
            message(&"a".repeat(513)).as_deref(),
            Some("token: must be at most 512 bytes")
        );
    }

    #[test]
    fn used_beats_superseded_beats_expired() {
        let now = Utc::now();
        let later = now + chrono::Duration::seconds(60);
        let earlier = now - chrono::Duration::seconds(60);
        assert_eq!(TokenState::of(None, None, later, now), TokenState::Usable);
        assert_eq!(
            TokenState::of(None, None, earlier, now),
            TokenState::Expired
        );
        assert_eq!(
            TokenState::of(None, Some(now), earlier, now),
            TokenState::Superseded
        );
        assert_eq!(
            TokenState::of(Some(now), Some(now), earlier, now),
            TokenState::Used
        );
    }

    #[test]
    fn email_targets_hide_the_address_and_ignore_case() {
        assert_eq!(
            email_target("A@Example.com"),
            email_target(" a@example.com")
        );
        assert!(!email_target("alice@example.com").contains("alice"));
    }
}
