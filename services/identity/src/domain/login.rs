//! A credential check's input. Only sizes are enforced: the email's format and the
//! password policy are not, so that a malformed email costs the same lookup and
//! argon2 run as an unknown one and the answer reveals nothing about the input.

use secrecy::SecretString;

use super::email::{MAX_EMAIL_BYTES, normalize};
use super::password::MAX_PASSWORD_CHARS;
use super::{FieldError, InvalidInput};

/// An email and password to check.
#[derive(Debug)]
pub struct LoginAttempt {
    /// The comparison key of the email (lowercased).
    pub normalized_email: String,
    pub password: SecretString,
}

impl LoginAttempt {
    /// Refuses empty or oversized input before any database or hashing work.
    pub fn parse(email: &str, password: String) -> Result<Self, InvalidInput> {
        let mut problems = Vec::new();
        if email.is_empty() {
            problems.push(FieldError::new("email", "is required"));
        } else if email.len() > MAX_EMAIL_BYTES {
            problems.push(FieldError::new("email", "must be at most 254 characters"));
        }
        if password.is_empty() {
            problems.push(FieldError::new("password", "is required"));
        } else if password.chars().count() > MAX_PASSWORD_CHARS {
            let rule = format!("must be at most {MAX_PASSWORD_CHARS} characters");
            problems.push(FieldError::new("password", rule));
        }
        let password = SecretString::from(password);
        if !problems.is_empty() {
            return Err(InvalidInput(problems));
        }
        Ok(Self {
            normalized_email: normalize(email),
            password,
        })
    }
}

/// An email to look an account up by: only its size is checked (like a login's), so
/// any input costs the same lookup.
#[derive(Debug)]
pub struct LookupEmail {
    /// The comparison key of the email (lowercased).
    pub normalized: String,
}

impl LookupEmail {
    pub fn parse(email: &str) -> Result<Self, FieldError> {
        if email.is_empty() {
            return Err(FieldError::new("email", "is required"));
        }
        if email.len() > MAX_EMAIL_BYTES {
            return Err(FieldError::new("email", "must be at most 254 characters"));
        }
        Ok(Self {
            normalized: normalize(email),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_emails_are_lowercased_and_bounded() {
        let found = LookupEmail::parse("Known@Example.COM").map(|e| e.normalized);
        assert_eq!(found.ok().as_deref(), Some("known@example.com"));
        assert!(LookupEmail::parse("").is_err());
        assert!(LookupEmail::parse(&"a".repeat(255)).is_err());
    }

    #[test]
    fn malformed_emails_pass_and_are_lowercased() {
        let attempt = LoginAttempt::parse("Not-An-Email", "x".into())
            .unwrap_or_else(|e| panic!("refused: {e}"));
        assert_eq!(attempt.normalized_email, "not-an-email");
    }

    #[test]
    fn empty_and_oversized_fields_are_named() {
        let error = LoginAttempt::parse("", "p".repeat(129))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("email: is required; password: must be at most 128 characters")
        );
    }
}
