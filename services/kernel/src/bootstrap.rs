//! The bootstrap admin: who holds the `admin` role on first start. Its user id is
//! derived from its email, so Identity (which creates the user) and Authz (which
//! grants the role) agree on it without calling each other at start.
//!
//! The documented default password is for a laptop only: outside the `local`
//! environment a service that creates the admin refuses to start with it.

use uuid::Uuid;

use crate::config::{ConfigError, Settings};

/// The admin's email when `admin_email` (`BULWARK_ADMIN_EMAIL`) is not set.
pub const DEFAULT_ADMIN_EMAIL: &str = "admin@bulwark.local";
/// The admin's password when `admin_password` (`BULWARK_ADMIN_PASSWORD`) is not set.
pub const DEFAULT_ADMIN_PASSWORD: &str = "bulwark-admin-change-me";
/// The one `service.environment` that may run with [`DEFAULT_ADMIN_PASSWORD`]: the
/// kernel's default and the local mesh command's.
pub const LOCAL_ENVIRONMENT: &str = "local";
/// The bootstrap admin's user id: UUIDv5 (URL namespace) of `bulwark:admin:<email>`,
/// with the email lowercased because emails are unique case-insensitively.
pub fn admin_user_id(email: &str) -> Uuid {
    let name = format!("bulwark:admin:{}", email.to_lowercase());
    Uuid::new_v5(&Uuid::NAMESPACE_URL, name.as_bytes())
}

/// The configured admin email (`admin_email`), or the default.
pub fn admin_email(settings: &Settings) -> Result<String, ConfigError> {
    Ok(settings
        .value::<String>("admin_email")?
        .unwrap_or_else(|| DEFAULT_ADMIN_EMAIL.to_owned()))
}

/// Refuses the documented default admin password (set to it, empty, or not set at all)
/// unless `service.environment` is `local`: a published password on a reachable
/// deployment hands out the `admin` role. Checked at start, before anything listens.
pub fn check_admin_password(settings: &Settings) -> Result<(), ConfigError> {
    let password = settings.value::<String>("admin_password")?;
    // An empty value is what a template renders for a missing secret: as good as unset.
    let is_default = password
        .as_deref()
        .map(str::trim)
        .is_none_or(|p| p.is_empty() || p == DEFAULT_ADMIN_PASSWORD);
    let environment = &settings.kernel.service.environment;
    if is_default && environment != LOCAL_ENVIRONMENT {
        return Err(ConfigError::Invalid {
            key: "admin_password".to_owned(),
            reason: format!(
                "is unset or the documented default, which only service.environment \
                 `{LOCAL_ENVIRONMENT}` accepts (here it is `{environment}`); set \
                 BULWARK_ADMIN_PASSWORD (or admin_password in the {} file) to a password of \
                 your own, or BULWARK_SERVICE__ENVIRONMENT={LOCAL_ENVIRONMENT} on a laptop",
                crate::config::CONFIG_FILE_ENV
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ServiceSpec;
    use crate::config::KernelConfig;

    const IDENTITY: ServiceSpec = ServiceSpec::new("identity", 50051, 9101);

    /// Identity's settings in `environment`, with `admin_password` if given.
    fn settings(environment: &str, password: Option<&str>) -> Settings {
        let mut kernel = KernelConfig::defaults(&IDENTITY);
        kernel.service.environment = environment.to_owned();
        let values: Vec<(&str, serde_json::Value)> = password
            .map(|p| ("admin_password", serde_json::Value::from(p)))
            .into_iter()
            .collect();
        Settings::from_parts(kernel, &values)
    }

    #[test]
    fn default_admin_password_is_refused_outside_local_naming_the_setting() {
        for password in [None, Some(DEFAULT_ADMIN_PASSWORD), Some(" ")] {
            for environment in ["production", "compose", "staging", "Local", ""] {
                let error = check_admin_password(&settings(environment, password))
                    .err()
                    .unwrap_or_else(|| {
                        panic!("{password:?} accepted in environment {environment:?}")
                    })
                    .to_string();
                for named in [
                    "`admin_password`",
                    "BULWARK_ADMIN_PASSWORD",
                    "service.environment",
                    &format!("`{environment}`"),
                ] {
                    assert!(error.contains(named), "{named} not in: {error}");
                }
            }
        }
    }

    #[test]
    fn default_admin_password_is_accepted_in_local() {
        assert_eq!(
            KernelConfig::defaults(&IDENTITY).service.environment,
            "local"
        );
        for password in [None, Some(DEFAULT_ADMIN_PASSWORD)] {
            if let Err(error) = check_admin_password(&settings("local", password)) {
                panic!("{password:?} refused in local: {error}");
            }
        }
    }

    #[test]
    fn own_admin_password_is_accepted_in_every_environment() {
        for environment in ["local", "production", "compose"] {
            if let Err(error) =
                check_admin_password(&settings(environment, Some("a password of our own")))
            {
                panic!("refused in {environment}: {error}");
            }
        }
    }

    #[test]
    fn admin_id_is_stable_and_ignores_email_case() {
        assert_eq!(
            admin_user_id("Admin@Bulwark.Local"),
            admin_user_id("admin@bulwark.local")
        );
        assert_ne!(admin_user_id("a@b.c"), admin_user_id("d@e.f"));
        // The exact formula is a contract between Identity and Authz (and any operator
        // script): UUIDv5, URL namespace, "bulwark:admin:" + lowercased email.
        assert_eq!(
            admin_user_id("Admin@Bulwark.LOCAL").to_string(),
            "696bc46f-5e22-54b7-9666-15cb0afe7cfa"
        );
    }
}
