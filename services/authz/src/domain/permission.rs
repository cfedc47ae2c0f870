//! Permissions (`resource:action`): the grammar and matching rule are the kernel's
//! (`bulwark_kernel::permission`), shared with the request layer that checks service
//! accounts' tokens; here a malformed one becomes this service's `INVALID_ARGUMENT`.

pub use bulwark_kernel::permission::{InvalidPermission, Permission, PermissionSet};

use crate::error::Error;

impl From<InvalidPermission> for Error {
    fn from(error: InvalidPermission) -> Self {
        Error::invalid(error.field, error.reason)
    }
}
