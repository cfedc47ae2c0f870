//! The Audit service's errors and the one mapping of them to gRPC statuses.

use bulwark_kernel::db::DbError;
use bulwark_kernel::request::Refusal;
use bulwark_kernel::tonic::Status;

/// Everything an Audit RPC can fail with. `Db`, `Io` and a broken permission decision
/// are internal: reported on the error bus and answered as a bare "internal error".
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `field: rule`, e.g. `events[3].service: must not be empty (event id ...)`.
    #[error("{field}: {rule}")]
    InvalidArgument { field: String, rule: String },
    /// The call needs something this instance is not configured for.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A checkpoint file or the checkpoint directory could not be written or read.
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// Refused by the kernel's request layer (token, permission, service caller).
    #[error(transparent)]
    Refused(#[from] Refusal),
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

    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }

    pub fn is_internal(&self) -> bool {
        match self {
            Self::Db(_) | Self::Io { .. } => true,
            Self::Refused(refusal) => refusal.is_internal(),
            Self::InvalidArgument { .. } | Self::FailedPrecondition(_) => false,
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
            Error::FailedPrecondition(message) => Status::failed_precondition(message),
            Error::Db(_) | Error::Io { .. } => Status::internal("internal error"),
        }
    }
}
