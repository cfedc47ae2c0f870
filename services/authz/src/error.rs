//! The Authz service's errors and the one mapping of them to gRPC statuses.

use bulwark_kernel::db::DbError;
use bulwark_kernel::request::Refusal;
use bulwark_kernel::tonic::Status;

/// Everything an Authz RPC can fail with. `Db` (and a broken permission decision) is
/// internal: it is reported on the error bus and answered as a bare "internal error".
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `field: rule`, e.g. `permissions[2]: must be resource:action ...`.
    #[error("{field}: {rule}")]
    InvalidArgument { field: String, rule: String },
    /// Refused by the kernel's request layer (token, permission, service caller).
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl Error {
    pub fn invalid(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            rule: rule.into(),
        }
    }

    /// `permission` is needed and the caller does not hold it.
    pub fn lacks(permission: &str) -> Self {
        Self::PermissionDenied(format!("requires permission {permission}"))
    }

    pub fn is_internal(&self) -> bool {
        match self {
            Self::Db(_) => true,
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
            Error::Refused(refusal) => refusal.into(),
            Error::PermissionDenied(message) => Status::permission_denied(message),
            Error::NotFound(message) => Status::not_found(message),
            Error::AlreadyExists(message) => Status::already_exists(message),
            Error::FailedPrecondition(message) => Status::failed_precondition(message),
            Error::Db(_) => Status::internal("internal error"),
        }
    }
}
