//! Login emails: a practical subset of RFC 5322 addresses, kept as given and compared
//! case-insensitively.
//!
//! Accepted: `local@domain` with a dot-atom local part (RFC 5322 `atext` and dots, at
//! most 64 bytes) and a DNS host name of at least two labels. Refused on purpose:
//! quoted local parts, comments, IP literals, single-label domains and non-ASCII
//! addresses. Restricting to ASCII makes the Rust lowercase and Postgres' `lower()`
//! (behind the unique index) agree under every database locale.

use super::FieldError;

/// RFC 5321 limit on a forward path, and the column's CHECK.
pub const MAX_EMAIL_BYTES: usize = 254;
const MAX_LOCAL_BYTES: usize = 64;
const MAX_LABEL_BYTES: usize = 63;

/// A syntactically valid email, as the user typed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let invalid = |rule: &str| Err(FieldError::new("email", rule));
        if raw.is_empty() {
            return invalid("is required");
        }
        if raw.len() > MAX_EMAIL_BYTES {
            return invalid("must be at most 254 characters");
        }
        if !raw.is_ascii() {
            return invalid("must contain only ASCII characters");
        }
        let Some((local, domain)) = raw.split_once('@') else {
            return invalid("must contain an @ between name and domain");
        };
        if domain.contains('@') {
            return invalid("must contain exactly one @");
        }
        if let Some(rule) = local_part_problem(local).or_else(|| domain_problem(domain)) {
            return invalid(rule);
        }
        Ok(Self(raw.to_owned()))
    }

    /// The email as registered (original case).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The comparison key: what the unique index `lower(email)` holds.
    pub fn normalized(&self) -> String {
        normalize(&self.0)
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// The comparison key of any (possibly invalid) email input, for lookups.
pub fn normalize(raw: &str) -> String {
    raw.to_ascii_lowercase()
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c)
}

fn local_part_problem(local: &str) -> Option<&'static str> {
    if local.is_empty() {
        return Some("must have a name before the @");
    }
    if local.len() > MAX_LOCAL_BYTES {
        return Some("the part before the @ must be at most 64 characters");
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Some(
            "the part before the @ must not start or end with a dot or contain two dots in a row",
        );
    }
    if !local.chars().all(|c| is_atext(c) || c == '.') {
        return Some(
            "the part before the @ may only contain letters, digits, dots and !#$%&'*+/=?^_`{|}~-",
        );
    }
    None
}

fn domain_problem(domain: &str) -> Option<&'static str> {
    if domain.is_empty() {
        return Some("must have a domain after the @");
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Some("the domain must contain a dot, like example.com");
    }
    for label in &labels {
        if label.is_empty() || label.len() > MAX_LABEL_BYTES {
            return Some("each part of the domain must be 1 to 63 characters");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some("domain parts must not start or end with a hyphen");
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Some("the domain may only contain letters, digits, hyphens and dots");
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
    {
        return Some("the domain must end in a name, not a number");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn practical_addresses_are_accepted_as_given() {
        for email in [
            "a@b.co",
            "Alice.Smith@Example.COM",
            "user+tag@sub.example.org",
            "o'neil@xn--bcher-kva.example",
            "x_y-z@a-b.io",
        ] {
            let parsed = Email::parse(email).unwrap_or_else(|e| panic!("{email} refused: {e}"));
            assert_eq!(parsed.as_str(), email, "case or content changed");
        }
    }

    #[test]
    fn normalization_lowercases_for_comparison_only() {
        let email = Email::parse("Alice@Example.COM").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(email.normalized(), "alice@example.com");
        assert_eq!(email.as_str(), "Alice@Example.COM");
    }

    #[test]
    fn malformed_addresses_are_refused_with_a_rule() {
        let long_local = format!("{}@example.com", "a".repeat(65));
        let too_long = format!("{}@{}.com", "a".repeat(60), "b".repeat(200));
        for email in [
            "",
            "plainaddress",
            "a@b@c.com",
            "@example.com",
            "user@",
            "user@localhost",
            ".user@example.com",
            "us..er@example.com",
            "user.@example.com",
            "us er@example.com",
            "\"quoted\"@example.com",
            "user@-example.com",
            "user@example..com",
            "user@exa_mple.com",
            "user@1.2.3.4",
            "user@[127.0.0.1]",
            "jürgen@example.com",
            " user@example.com",
            "user@example.com\n",
            long_local.as_str(),
            too_long.as_str(),
        ] {
            let error = Email::parse(email).err();
            let Some(error) = error else {
                panic!("{email:?} was accepted");
            };
            assert!(
                error.to_string().starts_with("email: "),
                "{email:?}: message does not name the field: {error}"
            );
        }
    }
}
