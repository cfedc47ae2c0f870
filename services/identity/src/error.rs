//! The service's errors and the one place they become gRPC statuses. Client mistakes
//! carry a message meant for the client; everything else answers `internal error`
//! and goes to the error bus with its details.

use bulwark_kernel::db::DbError;
use bulwark_kernel::request::Refusal;
use bulwark_kernel::tonic::Status;

use crate::credentials::HashError;
use crate::domain::InvalidInput;

/// The message of every failed credential check, whatever failed.
pub const INVALID_CREDENTIALS: &str = "invalid email or password";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error("email: already registered")]
    EmailTaken,
    #[error("{INVALID_CREDENTIALS}")]
    InvalidCredentials,
    #[error("user not found")]
    NotFound,
    #[error("the bootstrap admin can not be deactivated")]
    ProtectedUser,
    /// Refused by the kernel's request layer (token, permission, service caller).
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Hash(#[from] HashError),
}

impl From<diesel::result::Error> for Error {
    fn from(error: diesel::result::Error) -> Self {
        Self::Db(DbError::Query(error))
    }
}

impl From<crate::domain::FieldError> for Error {
    fn from(error: crate::domain::FieldError) -> Self {
        Self::Invalid(error.into())
    }
}

impl Error {
    /// Errors that are the service's fault (or a dependency's), reported to the bus.
    pub fn is_internal(&self) -> bool {
        match self {
            Self::Db(_) | Self::Hash(_) => true,
            Self::Refused(refusal) => refusal.is_internal(),
            _ => false,
        }
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        match error {
            Error::Invalid(_) => Status::invalid_argument(error.to_string()),
            Error::EmailTaken => Status::already_exists(error.to_string()),
            Error::InvalidCredentials => Status::unauthenticated(INVALID_CREDENTIALS),
            Error::NotFound => Status::not_found(error.to_string()),
            Error::ProtectedUser => Status::failed_precondition(error.to_string()),
            Error::Refused(refusal) => refusal.into(),
            Error::Db(_) | Error::Hash(_) => Status::internal("internal error"),
        }
    }
}

#[cfg(test)]
mod tests {
    use bulwark_kernel::tonic::Code;

    use super::*;
    use crate::domain::FieldError;

    #[test]
    fn client_errors_keep_their_message_and_internal_ones_do_not() {
        let invalid = Status::from(Error::from(InvalidInput(vec![
            FieldError::new("email", "is required"),
            FieldError::new("password", "must be at least 12 characters"),
        ])));
        assert_eq!(invalid.code(), Code::InvalidArgument);
        assert_eq!(
            invalid.message(),
            "email: is required; password: must be at least 12 characters"
        );

        let internal = Status::from(Error::Hash(HashError::Unreadable(
            "$argon2id$secret".into(),
        )));
        assert_eq!(internal.code(), Code::Internal);
        assert_eq!(internal.message(), "internal error", "internals leaked");
    }

    #[test]
    fn every_status_code_matches_the_contract() {
        for (error, code) in [
            (Error::EmailTaken, Code::AlreadyExists),
            (Error::InvalidCredentials, Code::Unauthenticated),
            (Error::NotFound, Code::NotFound),
            (
                Error::Refused(Refusal::PermissionDenied("users:read".into())),
                Code::PermissionDenied,
            ),
            (
                Error::Refused(Refusal::from_authz(Status::unavailable("down"))),
                Code::Unavailable,
            ),
        ] {
            let text = error.to_string();
            assert_eq!(Status::from(error).code(), code, "{text}");
        }
    }
}
