//! The service's errors and the one mapping from them to gRPC statuses. Clients get
//! a stable, safe message; internals (SQL, upstream details) go to the log and the
//! error bus only.

use bulwark_kernel::db::DbError;
use bulwark_kernel::request::Refusal;
use bulwark_kernel::tonic::Status;
use chrono::{DateTime, SecondsFormat, Utc};

use crate::domain::client_credentials::{OAuthError, OAuthErrorCode};

/// The message of every failed login, whatever the reason.
pub const INVALID_CREDENTIALS: &str = "invalid email or password";
/// The message of every refused second step of a login, whatever the reason.
pub const INVALID_MFA: &str = "invalid code or expired MFA token";
/// The message of a login refused while its email is locked out.
pub const LOCKED_OUT: &str = "too many failed logins for this account; try again later";
/// The message of every refused refresh token, whatever the reason.
pub const INVALID_REFRESH_TOKEN: &str = "invalid or expired refresh token";
/// The message of every refused mailed token (verification, reset), whatever the reason.
pub const INVALID_ACCOUNT_TOKEN: &str = "token: invalid, expired or already used";
/// The message of a password change with a wrong current password.
pub const WRONG_PASSWORD: &str = "invalid password";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field breaks a rule; the message names both.
    #[error("{field}: {rule}")]
    InvalidArgument { field: String, rule: String },
    /// Unknown email, wrong password or inactive account: one answer for all.
    #[error("{INVALID_CREDENTIALS}")]
    InvalidCredentials,
    /// Unknown, expired, revoked or reused refresh token, or an inactive user.
    #[error("{INVALID_REFRESH_TOKEN}")]
    InvalidRefreshToken,
    /// A wrong second factor, or an unknown, expired or exhausted `mfa_token`.
    #[error("{INVALID_MFA}")]
    InvalidMfa,
    /// Too many consecutive failed logins for the email; `Retry-After` seconds.
    #[error("{LOCKED_OUT}")]
    LockedOut { retry_after_seconds: u64 },
    /// The call needs a state the account is not in (MFA already on, or off).
    #[error("{0}")]
    FailedPrecondition(&'static str),
    /// Unknown, expired, used or superseded mailed token: one answer for all.
    #[error("{INVALID_ACCOUNT_TOKEN}")]
    InvalidAccountToken,
    /// A password change whose current password is wrong.
    #[error("{WRONG_PASSWORD}")]
    WrongPassword,
    /// A verification request for an email already verified.
    #[error("email: already verified")]
    AlreadyVerified,
    #[error("permission {0} required")]
    PermissionDenied(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Refused by the kernel's request layer (token, permission, service caller).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// A refused OAuth 2.0 token request; the message starts with its RFC 6749 code.
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    /// A rotation while the previous rotation's key is still pending.
    #[error(
        "signing key {kid} is pending until {}; rotate with `immediate` to activate it now",
        .activates_at.to_rfc3339_opts(SecondsFormat::Secs, true)
    )]
    KeyPending {
        kid: String,
        activates_at: DateTime<Utc>,
    },
    /// A service Auth depends on is down or slow; worth retrying.
    #[error("{service} is unavailable: {status}")]
    Unavailable {
        service: &'static str,
        status: Status,
    },
    /// A service Auth depends on answered something it should not have.
    #[error("{service} answered unexpectedly: {status}")]
    Upstream {
        service: &'static str,
        status: Status,
    },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("signing key: {0}")]
    Crypto(String),
}

impl Error {
    pub fn invalid(field: &'static str, rule: impl Into<String>) -> Self {
        Self::invalid_owned(field.to_owned(), rule)
    }

    /// [`Error::invalid`] for a field path built at run time (`roles[3]`).
    pub fn invalid_owned(field: String, rule: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field,
            rule: rule.into(),
        }
    }

    /// Classifies a failed call to another service: transient or a defect.
    pub fn from_upstream(service: &'static str, status: Status) -> Self {
        if bulwark_kernel::clients::is_unavailable(&status) {
            Self::Unavailable { service, status }
        } else {
            Self::Upstream { service, status }
        }
    }

    /// Errors that are Auth's or its dependencies' fault, not the caller's: these
    /// are reported on the error bus.
    pub fn is_internal(&self) -> bool {
        match self {
            Self::Upstream { .. } | Self::Db(_) | Self::Crypto(_) => true,
            Self::Refused(refusal) => refusal.is_internal(),
            _ => false,
        }
    }
}

impl From<diesel::result::Error> for Error {
    fn from(error: diesel::result::Error) -> Self {
        Self::Db(DbError::Query(error))
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidArgument { .. } => Status::invalid_argument(error.to_string()),
            Error::InvalidCredentials => Status::unauthenticated(INVALID_CREDENTIALS),
            Error::InvalidRefreshToken => Status::unauthenticated(INVALID_REFRESH_TOKEN),
            Error::InvalidMfa => Status::unauthenticated(INVALID_MFA),
            Error::LockedOut {
                retry_after_seconds,
            } => {
                // The edge answers 429 and passes `Retry-After` on to the client.
                let mut metadata = bulwark_kernel::tonic::metadata::MetadataMap::new();
                metadata.insert("retry-after", retry_after_seconds.into());
                Status::with_metadata(
                    bulwark_kernel::tonic::Code::ResourceExhausted,
                    LOCKED_OUT,
                    metadata,
                )
            }
            Error::FailedPrecondition(_) => Status::failed_precondition(error.to_string()),
            Error::InvalidAccountToken => Status::invalid_argument(INVALID_ACCOUNT_TOKEN),
            Error::WrongPassword => Status::unauthenticated(WRONG_PASSWORD),
            Error::AlreadyVerified => Status::failed_precondition(error.to_string()),
            Error::PermissionDenied(_) => Status::permission_denied(error.to_string()),
            Error::NotFound(_) => Status::not_found(error.to_string()),
            Error::Refused(refusal) => refusal.into(),
            Error::OAuth(ref oauth) => match oauth.code {
                OAuthErrorCode::InvalidClient => Status::unauthenticated(error.to_string()),
                OAuthErrorCode::InvalidRequest
                | OAuthErrorCode::UnsupportedGrantType
                | OAuthErrorCode::InvalidScope => Status::invalid_argument(error.to_string()),
            },
            Error::KeyPending { .. } => Status::failed_precondition(error.to_string()),
            Error::Unavailable { service, .. } => {
                Status::unavailable(format!("{service} is unavailable, try again later"))
            }
            Error::Upstream { .. } | Error::Db(_) | Error::Crypto(_) => {
                Status::internal("internal error")
            }
        }
    }
}

impl From<crate::key_encryption::KeyEncryptionError> for Error {
    fn from(error: crate::key_encryption::KeyEncryptionError) -> Self {
        Self::Crypto(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use bulwark_kernel::tonic::Code;

    use super::*;

    #[test]
    fn statuses_follow_the_contract_and_hide_internals() {
        let cases = [
            (
                Error::invalid("email", "is required"),
                Code::InvalidArgument,
                "email: is required",
            ),
            (
                Error::InvalidCredentials,
                Code::Unauthenticated,
                INVALID_CREDENTIALS,
            ),
            (
                Error::InvalidRefreshToken,
                Code::Unauthenticated,
                INVALID_REFRESH_TOKEN,
            ),
            (
                Error::InvalidAccountToken,
                Code::InvalidArgument,
                INVALID_ACCOUNT_TOKEN,
            ),
            (Error::WrongPassword, Code::Unauthenticated, WRONG_PASSWORD),
            (
                Error::AlreadyVerified,
                Code::FailedPrecondition,
                "email: already verified",
            ),
            (
                Error::PermissionDenied("keys:write"),
                Code::PermissionDenied,
                "permission keys:write required",
            ),
            (
                Error::KeyPending {
                    kid: "k2".into(),
                    activates_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
                },
                Code::FailedPrecondition,
                "signing key k2 is pending until 2027-01-15T08:00:00Z; \
                 rotate with `immediate` to activate it now",
            ),
            (
                Error::from_upstream("identity", Status::unavailable("connection refused")),
                Code::Unavailable,
                "identity is unavailable, try again later",
            ),
            (
                Error::from_upstream("identity", Status::cancelled("Timeout expired")),
                Code::Unavailable,
                "identity is unavailable, try again later",
            ),
            (
                Error::from_upstream("authz", Status::internal("SELECT * FROM roles")),
                Code::Internal,
                "internal error",
            ),
            (
                Error::Db(DbError::Pool("timed out".into())),
                Code::Internal,
                "internal error",
            ),
        ];
        for (error, code, message) in cases {
            let status = Status::from(error);
            assert_eq!(status.code(), code, "{message}");
            assert_eq!(status.message(), message);
        }
    }
}
