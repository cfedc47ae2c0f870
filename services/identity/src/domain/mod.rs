//! Validated inputs of the Identity service, and the audit events it records.
//!
//! Each type can only be built through its `parse`, which refuses bad input with a
//! [`FieldError`] that names the field and the rule it broke.

mod display_name;
mod email;
pub mod events;
mod login;
mod password;
mod user;

pub use display_name::DisplayName;
pub use email::Email;
pub use login::{LoginAttempt, LookupEmail};
pub use password::Password;
pub use user::{NewUser, User, UserId};

/// One refused field: `password: must be at least 12 characters`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct FieldError {
    pub field: &'static str,
    pub rule: String,
}

impl FieldError {
    pub fn new(field: &'static str, rule: impl Into<String>) -> Self {
        Self {
            field,
            rule: rule.into(),
        }
    }
}

/// Every refused field of one request, so a client can fix them all at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct InvalidInput(pub Vec<FieldError>);

impl From<FieldError> for InvalidInput {
    fn from(error: FieldError) -> Self {
        Self(vec![error])
    }
}
