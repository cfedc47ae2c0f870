//! A login attempt's email and password, checked for size before anything else sees them.

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::error::Error;

/// Longest email accepted (RFC 5321's path limit), in bytes.
pub const MAX_EMAIL_BYTES: usize = 254;
/// Longest password accepted, in characters; bounds the hashing work a caller can cause.
pub const MAX_PASSWORD_CHARS: usize = 128;

/// An email and password of acceptable size. The password is never printed.
#[derive(Debug)]
pub struct Credentials {
    email: String,
    password: SecretString,
}

impl Credentials {
    /// Checks presence and size only: whether the email is well formed or registered
    /// is Identity's answer, and any wrong value ends in the same 401.
    pub fn parse(email: String, password: String) -> Result<Self, Error> {
        if email.trim().is_empty() {
            return Err(Error::invalid("email", "is required"));
        }
        if email.len() > MAX_EMAIL_BYTES {
            return Err(Error::invalid(
                "email",
                format!("must be at most {MAX_EMAIL_BYTES} bytes"),
            ));
        }
        if password.is_empty() {
            return Err(Error::invalid("password", "is required"));
        }
        if password.chars().count() > MAX_PASSWORD_CHARS {
            return Err(Error::invalid(
                "password",
                format!("must be at most {MAX_PASSWORD_CHARS} characters"),
            ));
        }
        Ok(Self {
            email,
            password: SecretString::from(password),
        })
    }

    pub fn email(&self) -> &str {
        &self.email
    }

    pub fn password(&self) -> &str {
        self.password.expose_secret()
    }

    /// The email as one account has it, whatever its case and surrounding spaces: what
    /// lockouts and audit targets key on.
    pub fn normalized_email(&self) -> String {
        self.email.trim().to_lowercase()
    }

    /// `email:<16 hex digits of SHA-256 of the normalised email>`: lets the audit log
    /// group failed attempts on one address without storing the address itself.
    pub fn audit_target(&self) -> String {
        let digest = Sha256::digest(self.normalized_email().as_bytes());
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("email:{hex}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(result: Result<Credentials, Error>) -> String {
        result.err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn sizes_are_checked_and_the_field_named() {
        assert_eq!(
            message(Credentials::parse(" ".into(), "pw".into())),
            "email: is required"
        );
        assert_eq!(
            message(Credentials::parse("a".repeat(255), "pw".into())),
            "email: must be at most 254 bytes"
        );
        assert_eq!(
            message(Credentials::parse("a@b.c".into(), String::new())),
            "password: is required"
        );
        assert_eq!(
            message(Credentials::parse("a@b.c".into(), "é".repeat(129))),
            "password: must be at most 128 characters"
        );
        assert!(Credentials::parse("a@b.c".into(), "é".repeat(128)).is_ok());
    }

    #[test]
    fn audit_target_ignores_case_and_hides_the_address() {
        let a = Credentials::parse("Alice@Example.com".into(), "x".into());
        let b = Credentials::parse("alice@example.com ".into(), "x".into());
        let (Ok(a), Ok(b)) = (a, b) else {
            panic!("valid credentials refused");
        };
        assert_eq!(a.audit_target(), b.audit_target());
        assert!(a.audit_target().starts_with("email:"));
        assert_eq!(a.audit_target().len(), "email:".len() + 16);
        assert!(!a.audit_target().contains("alice"));
    }

    #[test]
    fn debug_output_hides_the_password() {
        let Ok(credentials) = Credentials::parse("a@b.c".into(), "hunter2-hunter2".into()) else {
            panic!("valid credentials refused");
        };
        assert!(!format!("{credentials:?}").contains("hunter2"));
    }
}
