//! The rate-limit service's errors and the one mapping of them to gRPC statuses.

use bulwark_kernel::tonic::Status;
use bulwark_limiter::{InvalidRequest, LimiterError};

/// Everything `ShouldRateLimit` and `Lease` can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `field: rule`, e.g. `descriptors[0].entries: must hold 1 to 16 entries` or
    /// `items[2].spend: must be 0 or 1`.
    #[error(transparent)]
    InvalidArgument(#[from] InvalidRequest),
    #[error(transparent)]
    Limiter(#[from] LimiterError),
}

impl Error {
    /// Redis being down is an outage the caller's failure mode handles, not our bug.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Limiter(error) if error.is_unavailable())
    }

    pub fn is_internal(&self) -> bool {
        matches!(self, Self::Limiter(error) if !error.is_unavailable())
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        match &error {
            Error::InvalidArgument(invalid) => Status::invalid_argument(invalid.to_string()),
            Error::Limiter(_) if error.is_unavailable() => {
                Status::unavailable("the rate-limit store is unavailable")
            }
            Error::Limiter(_) => Status::internal("internal error"),
        }
    }
}
