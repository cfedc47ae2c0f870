//! Service accounts (OAuth 2.0 clients): their ids, secrets and names, and the
//! permissions of the built-in clients the services themselves use.
//!
//! A client secret is 32 random bytes (base64url), so its SHA-256 is all that is stored:
//! unlike a password it cannot be guessed from a dictionary, and a slow hash would only
//! make every service's token renewal slow.

use sha2::{Digest, Sha256};

use crate::error::Error;

/// Needed to create service accounts.
pub const CLIENTS_WRITE: &str = "clients:write";
/// Longest client name.
const MAX_NAME_CHARS: usize = 100;
/// Most roles a client may have.
pub const MAX_CLIENT_ROLES: usize = 20;
/// Longest role name accepted here (Authz checks the grammar).
const MAX_ROLE_BYTES: usize = 64;

/// The built-in clients, one per core service, and what each may do: exactly the
/// internal RPCs it calls and the checks it makes for its callers.
const BUILTIN: [(&str, &[&str]); 4] = [
    // Checks users' permissions (`users:read`/`users:write`) through Authz; relays its
    // audit outbox.
    ("identity", &["audit:append", "roles:read"]),
    // Checks passwords, confirms accounts on refresh, reads roles for tokens and
    // service accounts, checks `keys:write`/`clients:write`, relays its outbox; finds
    // accounts by email and sets their password, verification and MFA state for the
    // account flows.
    (
        "auth",
        &[
            "credentials:verify",
            "accounts:manage",
            "users:read",
            "roles:read",
            "audit:append",
        ],
    ),
    // Relays its audit outbox (it decides permissions itself).
    ("authz", &["audit:append"]),
    // Checks `audit:read` through Authz.
    ("audit", &["roles:read"]),
];

/// The built-in client ids.
pub fn builtin_ids() -> impl Iterator<Item = &'static str> {
    BUILTIN.iter().map(|(id, _)| *id)
}

/// The permissions of a built-in client, `None` for any other id.
pub fn builtin_permissions(client_id: &str) -> Option<&'static [&'static str]> {
    BUILTIN
        .iter()
        .find(|(id, _)| *id == client_id)
        .map(|(_, permissions)| *permissions)
}

/// The SHA-256 of a client secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretHash(pub [u8; 32]);

impl std::fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretHash(..)")
    }
}

impl SecretHash {
    pub fn of(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    /// Compares in time independent of where the hashes differ.
    pub fn matches(&self, other: &[u8]) -> bool {
        other.len() == self.0.len()
            && self
                .0
                .iter()
                .zip(other)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// A freshly generated secret: the plaintext for the client, once; the hash to store.
pub struct NewSecret {
    pub plaintext: String,
    pub hash: SecretHash,
}

impl std::fmt::Debug for NewSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The plaintext is never logged.
        f.debug_struct("NewSecret")
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

impl NewSecret {
    pub fn generate() -> Result<Self, Error> {
        let plaintext = super::refresh_token::random_secret()?;
        let hash = SecretHash::of(&plaintext);
        Ok(Self { plaintext, hash })
    }
}

/// A valid client name: 1 to 100 characters, no control characters, trimmed.
pub fn client_name(value: &str) -> Result<String, Error> {
    let name = value.trim();
    if name.is_empty() {
        return Err(Error::invalid("name", "is required"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(Error::invalid(
            "name",
            format!("must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid(
            "name",
            "must not contain control characters",
        ));
    }
    Ok(name.to_owned())
}

/// The requested roles: 1 to 20, each non-empty and short, without duplicates (in the
/// order given). Whether they exist is Authz's to say.
pub fn client_roles(values: &[String]) -> Result<Vec<String>, Error> {
    if values.is_empty() {
        return Err(Error::invalid("roles", "must name at least one role"));
    }
    if values.len() > MAX_CLIENT_ROLES {
        return Err(Error::invalid(
            "roles",
            format!("must name at most {MAX_CLIENT_ROLES} roles"),
        ));
    }
    let mut roles: Vec<String> = Vec::with_capacity(values.len());
    for (i, role) in values.iter().enumerate() {
        if role.is_empty() || role.len() > MAX_ROLE_BYTES {
            return Err(Error::invalid_owned(
                format!("roles[{i}]"),
                format!("must be 1 to {MAX_ROLE_BYTES} bytes"),
            ));
        }
        if !roles.contains(role) {
            roles.push(role.clone());
        }
    }
    Ok(roles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_clients_hold_only_what_their_service_calls() {
        assert_eq!(
            builtin_permissions("auth"),
            Some(
                &[
                    "credentials:verify",
                    "accounts:manage",
                    "users:read",
                    "roles:read",
                    "audit:append"
                ][..]
            )
        );
        assert_eq!(builtin_permissions("authz"), Some(&["audit:append"][..]));
        assert_eq!(builtin_permissions("ratelimit"), None);
        assert_eq!(builtin_permissions("client:auth"), None);
        // No built-in client can verify passwords or manage accounts except Auth.
        for id in builtin_ids().filter(|id| *id != "auth") {
            let permissions = builtin_permissions(id).unwrap_or_default();
            assert!(!permissions.contains(&"credentials:verify"), "{id}");
            assert!(!permissions.contains(&"accounts:manage"), "{id}");
        }
    }

    #[test]
    fn secrets_are_random_and_only_their_hash_matches() {
        let a = NewSecret::generate().unwrap_or_else(|e| panic!("{e}"));
        let b = NewSecret::generate().unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(a.plaintext, b.plaintext);
        assert_eq!(a.plaintext.len(), 43);
        assert!(a.hash.matches(&SecretHash::of(&a.plaintext).0));
        assert!(!a.hash.matches(&b.hash.0));
        assert!(!a.hash.matches(&a.hash.0[..31]));
    }

    #[test]
    fn names_and_roles_are_validated() {
        assert_eq!(
            client_name("  billing backend ").ok(),
            Some("billing backend".into())
        );
        assert!(client_name(" ").is_err());
        assert!(client_name(&"x".repeat(101)).is_err());
        assert!(client_name("a\nb").is_err());
        assert_eq!(
            client_roles(&["a".into(), "b".into(), "a".into()]).ok(),
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        assert!(client_roles(&[]).is_err());
        assert!(client_roles(&vec!["r".to_owned(); 21]).is_err());
        let error = client_roles(&["ok".into(), String::new()])
            .err()
            .map(|e| e.to_string());
        assert_eq!(error.as_deref(), Some("roles[1]: must be 1 to 64 bytes"));
    }
}
