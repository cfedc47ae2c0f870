//! The bootstrap admin: who holds the `admin` role on first start. Its user id is
//! derived from its email, so Identity (which creates the user) and Authz (which
//! grants the role) agree on it without calling each other at start.

use uuid::Uuid;

/// The admin's email when `admin_email` (`BULWARK_ADMIN_EMAIL`) is not set.
pub const DEFAULT_ADMIN_EMAIL: &str = "admin@bulwark.local";
/// The admin's password when `admin_password` (`BULWARK_ADMIN_PASSWORD`) is not set.
pub const DEFAULT_ADMIN_PASSWORD: &str = "bulwark-admin-change-me";

/// The bootstrap admin's user id: UUIDv5 (URL namespace) of `bulwark:admin:<email>`,
/// with the email lowercased because emails are unique case-insensitively.
pub fn admin_user_id(email: &str) -> Uuid {
    let name = format!("bulwark:admin:{}", email.to_lowercase());
    Uuid::new_v5(&Uuid::NAMESPACE_URL, name.as_bytes())
}

/// The configured admin email (`admin_email`), or the default.
pub fn admin_email(
    settings: &crate::config::Settings,
) -> Result<String, crate::config::ConfigError> {
    Ok(settings
        .value::<String>("admin_email")?
        .unwrap_or_else(|| DEFAULT_ADMIN_EMAIL.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
