//! The bootstrap admin: created at start from configuration, idempotently, under a
//! deterministic id that Authz derives the same way to grant it the `admin` role, so
//! neither service has to call the other at boot.

use bulwark_kernel::Kernel;
use bulwark_kernel::bootstrap::{DEFAULT_ADMIN_PASSWORD, admin_email, admin_user_id};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::credentials::Passwords;
use crate::domain::{DisplayName, Email, NewUser, Password, events};
use crate::store;

const ADMIN_DISPLAY_NAME: &str = "Administrator";

/// Why the bootstrap admin could not be ensured; start fails with this message.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("configuration key `{key}` is invalid: {reason}")]
    Config { key: &'static str, reason: String },
    #[error(
        "admin_email {email} is already registered to user {existing}, not to the bootstrap \
         admin id {admin}; set BULWARK_ADMIN_EMAIL to an address nobody has registered"
    )]
    EmailTaken {
        email: String,
        existing: Uuid,
        admin: Uuid,
    },
    #[error("the bootstrap admin {0} was neither created nor found (deleted meanwhile?)")]
    Vanished(Uuid),
    #[error("cannot create the bootstrap admin: {0}")]
    Service(#[from] crate::error::Error),
}

impl From<crate::credentials::HashError> for BootstrapError {
    fn from(error: crate::credentials::HashError) -> Self {
        Self::Service(error.into())
    }
}

impl From<bulwark_kernel::db::DbError> for BootstrapError {
    fn from(error: bulwark_kernel::db::DbError) -> Self {
        Self::Service(error.into())
    }
}

/// Makes sure the admin user from `admin_email` / `admin_password` exists and returns
/// its id. An existing admin is left as it is (its password is not reset from config).
pub async fn ensure_admin(kernel: &Kernel, passwords: &Passwords) -> Result<Uuid, BootstrapError> {
    let settings = kernel.settings();
    let email = admin_email(settings).map_err(|e| BootstrapError::Config {
        key: "admin_email",
        reason: e.to_string(),
    })?;
    let password = settings
        .value::<String>("admin_password")
        .map_err(|e| BootstrapError::Config {
            key: "admin_password",
            reason: e.to_string(),
        })?
        .map_or_else(
            || SecretString::from(DEFAULT_ADMIN_PASSWORD),
            SecretString::from,
        );
    let email = Email::parse(&email).map_err(|e| BootstrapError::Config {
        key: "admin_email",
        reason: e.rule,
    })?;
    let id = admin_user_id(email.as_str());

    let mut conn = kernel.db.conn().await?;
    if store::find(&mut conn, id).await?.is_some() {
        tracing::info!(user_id = %id, email = email.as_str(), "bootstrap admin exists");
        return Ok(id);
    }
    drop(conn);

    let is_default = password.expose_secret() == DEFAULT_ADMIN_PASSWORD;
    let password = Password::parse(password.expose_secret().to_owned()).map_err(|e| {
        BootstrapError::Config {
            key: "admin_password",
            reason: e.rule,
        }
    })?;
    let admin = NewUser {
        id,
        display_name: DisplayName::parse(ADMIN_DISPLAY_NAME)
            .map_err(|e| BootstrapError::Service(e.into()))?,
        password_hash: passwords.hash(password).await?,
        email,
    };
    let mut conn = kernel.db.conn().await?;
    let created =
        store::insert_user_if_absent(&mut conn, &admin, events::admin_bootstrapped(id)).await?;
    if created.is_some() {
        tracing::info!(user_id = %id, email = admin.email.as_str(), "bootstrap admin created");
        if is_default {
            tracing::warn!(
                "the bootstrap admin has the default password; set BULWARK_ADMIN_PASSWORD"
            );
        }
        return Ok(id);
    }
    // Nothing inserted: another instance created it just now, or the email is taken.
    match store::find_by_email(&mut conn, &admin.email.normalized()).await? {
        Some(existing) if existing.id == id => {
            tracing::info!(user_id = %id, email = admin.email.as_str(), "bootstrap admin exists");
            Ok(id)
        }
        Some(existing) => Err(BootstrapError::EmailTaken {
            email: admin.email.into_inner(),
            existing: existing.id,
            admin: id,
        }),
        None => Err(BootstrapError::Vanished(id)),
    }
}
