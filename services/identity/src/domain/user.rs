//! A user account as the service hands it out (never with credentials), and one
//! about to be created.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{DisplayName, Email, FieldError};

/// A user's id from a request field, which must be a UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserId(pub Uuid);

impl UserId {
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, FieldError> {
        if raw.is_empty() {
            return Err(FieldError::new(field, "is required"));
        }
        // Bounded before parsing; a UUID's text forms are at most 45 characters.
        if raw.len() > 64 {
            return Err(FieldError::new(field, "must be a UUID"));
        }
        Uuid::parse_str(raw)
            .map(Self)
            .map_err(|_| FieldError::new(field, "must be a UUID"))
    }
}

/// A stored user, without its password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub created_at: DateTime<Utc>,
    pub active: bool,
    pub email_verified: bool,
    pub mfa_enabled: bool,
}

/// A validated registration with its password already hashed.
#[derive(Debug)]
pub struct NewUser {
    pub id: Uuid,
    pub email: Email,
    pub display_name: DisplayName,
    /// Argon2id PHC string.
    pub password_hash: String,
}

impl From<User> for bulwark_proto::identity::v1::User {
    fn from(user: User) -> Self {
        Self {
            id: user.id.to_string(),
            email: user.email,
            display_name: user.display_name,
            created_at: Some(bulwark_kernel::timestamp::to_proto(user.created_at)),
            active: user.active,
            email_verified: user.email_verified,
            mfa_enabled: user.mfa_enabled,
        }
    }
}
