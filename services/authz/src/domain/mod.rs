//! Validated values of the Authz API: role names, permissions, user ids.

mod permission;
mod role;

pub use permission::{Permission, PermissionSet};
pub use role::{RoleName, permission_list};

use crate::error::Error;

/// Longest user id accepted anywhere (a UUID is 36 characters).
const MAX_USER_ID_BYTES: usize = 64;

/// A user id from the API: a UUID in any of its usual text forms.
pub fn user_id(field: &str, value: &str) -> Result<uuid::Uuid, Error> {
    if value.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if value.len() > MAX_USER_ID_BYTES {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_USER_ID_BYTES} bytes"),
        ));
    }
    uuid::Uuid::parse_str(value).map_err(|_| Error::invalid(field, "must be a user id (a UUID)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_must_be_uuids() {
        assert!(user_id("user_id", "0192f0c4-7d4e-7b1a-9f00-000000000001").is_ok());
        for bad in ["", "42", "not-a-uuid", &"a".repeat(65)] {
            let error = user_id("user_id", bad).err().map(|e| e.to_string());
            assert!(
                error.as_deref().is_some_and(|e| e.starts_with("user_id: ")),
                "{bad:?} gave {error:?}"
            );
        }
    }
}
