//! The Audit service's errors and the one mapping of them to gRPC statuses.

use bulwark_kernel::caller::UNAUTHENTICATED_MESSAGE;
use bulwark_kernel::db::DbError;
use bulwark_kernel::tonic::{Code, Status};

/// Everything an Audit RPC can fail with. `Db` and an unexpected answer from Authz
/// are internal: reported on the error bus and answered as a bare "internal error".
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `field: rule`, e.g. `events[3].service: must not be empty (event id ...)`.
    #[error("{field}: {rule}")]
    InvalidArgument { field: String, rule: String },
    #[error("{UNAUTHENTICATED_MESSAGE}")]
    Unauthenticated,
    #[error("{0}")]
    PermissionDenied(String),
    #[error("authorization check failed: {0}")]
    Authz(Status),
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

    /// Authz being unreachable is the client's "retry later", not our bug.
    fn authz_unavailable(status: &Status) -> bool {
        matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded)
    }

    pub fn is_internal(&self) -> bool {
        match self {
            Self::Db(_) => true,
            Self::Authz(status) => !Self::authz_unavailable(status),
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
            Error::Unauthenticated => Status::unauthenticated(UNAUTHENTICATED_MESSAGE),
            Error::PermissionDenied(message) => Status::permission_denied(message),
            Error::Authz(status) if Error::authz_unavailable(&status) => {
                Status::unavailable("authorization is unavailable; retry later")
            }
            Error::Authz(_) | Error::Db(_) => Status::internal("internal error"),
        }
    }
}
