//! Passwords as they arrive: length-checked and held as a secret, so they can not end
//! up in a log line or a `Debug` print.

use secrecy::{ExposeSecret, SecretString};

use super::FieldError;

pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longer passwords are refused before hashing, to bound the work one request causes.
pub const MAX_PASSWORD_CHARS: usize = 128;

/// A password of acceptable length (counted in Unicode scalar values).
#[derive(Debug)]
pub struct Password(SecretString);

impl Password {
    /// Checks a new password against the length policy.
    pub fn parse(raw: String) -> Result<Self, FieldError> {
        let length = raw.chars().count();
        let secret = SecretString::from(raw);
        if length < MIN_PASSWORD_CHARS {
            return Err(FieldError::new(
                "password",
                format!("must be at least {MIN_PASSWORD_CHARS} characters"),
            ));
        }
        if length > MAX_PASSWORD_CHARS {
            return Err(FieldError::new(
                "password",
                format!("must be at most {MAX_PASSWORD_CHARS} characters"),
            ));
        }
        Ok(Self(secret))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_is_counted_in_characters() {
        assert!(Password::parse("ü".repeat(12)).is_ok(), "12 two-byte chars");
        assert!(Password::parse("a".repeat(128)).is_ok());
    }

    #[test]
    fn too_short_and_too_long_name_the_rule() {
        let short = Password::parse("short".into()).err().map(|e| e.to_string());
        assert_eq!(
            short.as_deref(),
            Some("password: must be at least 12 characters")
        );
        let long = Password::parse("a".repeat(129))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            long.as_deref(),
            Some("password: must be at most 128 characters")
        );
    }

    #[test]
    fn debug_output_hides_the_password() {
        let password =
            Password::parse("correct horse battery".into()).unwrap_or_else(|e| panic!("{e}"));
        assert!(!format!("{password:?}").contains("horse"));
    }
}
