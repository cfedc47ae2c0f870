//! The service accounts of one mesh: each core service calls the others as its own OAuth
//! client (client id = the service's name) with a secret made fresh for every mesh, and
//! Auth holds the secrets of all four, as `deploy/local/mesh` provisions them; Auth also
//! gets the key-encryption key that seals its signing keys.

use std::io::Read;

use anyhow::Context;

use crate::service::ServiceKind;

/// Random bytes in a secret: the design's 32 (64 hex digits).
const SECRET_BYTES: usize = 32;

/// The id of Auth's key-encryption key in every mesh.
const KEK_ID: &str = "e2e";

/// The client id and secret of every core service.
#[derive(Debug, Clone)]
pub(crate) struct ServiceAccounts {
    secrets: Vec<(ServiceKind, String)>,
    /// Auth's key-encryption key (id `e2e`), as random as the secrets.
    kek: String,
}

impl ServiceAccounts {
    /// New random secrets for the four core services.
    pub(crate) fn generate() -> anyhow::Result<Self> {
        let secrets = ServiceKind::ALL
            .into_iter()
            .map(|kind| Ok((kind, random_secret()?)))
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            secrets,
            kek: random_secret()?,
        })
    }

    /// `(client_id, client_secret)` of a core service; `None` for the rate-limit
    /// service, which calls nobody and has no account.
    pub(crate) fn credentials(&self, kind: ServiceKind) -> Option<(String, String)> {
        let client_id = kind.client_id()?;
        self.secrets
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, secret)| (client_id.to_owned(), secret.clone()))
    }

    /// `(id, hex)` of Auth's key-encryption key.
    pub(crate) fn key_encryption_key(&self) -> (&'static str, String) {
        (KEK_ID, self.kek.clone())
    }

    /// The `BULWARK_*` settings that give a service its account and, to Auth, every
    /// built-in client's secret.
    pub(crate) fn env_for(&self, kind: ServiceKind) -> Vec<(String, String)> {
        let mut env = Vec::new();
        if let Some((client_id, secret)) = self.credentials(kind) {
            env.push(("BULWARK_SERVICE_ACCOUNT__CLIENT_ID".to_owned(), client_id));
            env.push(("BULWARK_SERVICE_ACCOUNT__CLIENT_SECRET".to_owned(), secret));
        }
        if kind == ServiceKind::Auth {
            for (client, secret) in &self.secrets {
                env.push((
                    format!(
                        "BULWARK_AUTH__SERVICE_CLIENTS__{}",
                        client.name().to_uppercase()
                    ),
                    secret.clone(),
                ));
            }
            env.push((
                format!(
                    "BULWARK_AUTH__KEY_ENCRYPTION__KEYS__{}",
                    KEK_ID.to_uppercase()
                ),
                self.kek.clone(),
            ));
        }
        env
    }
}

/// 32 bytes from the kernel's CSPRNG, in hex.
pub(crate) fn random_secret() -> anyhow::Result<String> {
    random_hex(SECRET_BYTES)
}

/// `len` bytes from the kernel's CSPRNG, in hex (a secret of the tests or the local mesh).
pub(crate) fn random_hex(len: usize) -> anyhow::Result<String> {
    let mut bytes = vec![0u8; len];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut urandom| urandom.read_exact(&mut bytes))
        .context("reading /dev/urandom for a secret")?;
    Ok(hex(&bytes))
}

/// Bytes in lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_keys(env: &[(String, String)]) -> Vec<&str> {
        env.iter().map(|(key, _)| key.as_str()).collect()
    }

    #[test]
    fn secrets_are_64_hex_digits_and_differ_per_service_and_mesh() {
        let first = ServiceAccounts::generate().expect("secrets");
        let second = ServiceAccounts::generate().expect("secrets");
        let mut seen = std::collections::BTreeSet::new();
        for accounts in [&first, &second] {
            for kind in ServiceKind::ALL {
                let (client_id, secret) = accounts.credentials(kind).expect("an account");
                assert_eq!(client_id, kind.name());
                assert_eq!(secret.len(), 64, "{secret}");
                assert!(secret.bytes().all(|b| b.is_ascii_hexdigit()), "{secret}");
                assert!(seen.insert(secret), "a secret came up twice");
            }
        }
        assert_eq!(seen.len(), 8);
    }

    #[test]
    fn auth_gets_its_account_and_every_client_secret() {
        let accounts = ServiceAccounts::generate().expect("secrets");
        let env = accounts.env_for(ServiceKind::Auth);
        assert_eq!(
            env_keys(&env),
            [
                "BULWARK_SERVICE_ACCOUNT__CLIENT_ID",
                "BULWARK_SERVICE_ACCOUNT__CLIENT_SECRET",
                "BULWARK_AUTH__SERVICE_CLIENTS__IDENTITY",
                "BULWARK_AUTH__SERVICE_CLIENTS__AUTH",
                "BULWARK_AUTH__SERVICE_CLIENTS__AUTHZ",
                "BULWARK_AUTH__SERVICE_CLIENTS__AUDIT",
                "BULWARK_AUTH__KEY_ENCRYPTION__KEYS__E2E",
            ]
        );
        let (_, identity_secret) = accounts
            .credentials(ServiceKind::Identity)
            .expect("an account");
        assert_eq!(env[2].1, identity_secret);
    }

    #[test]
    fn other_services_get_only_their_own_account_and_ratelimit_none() {
        let accounts = ServiceAccounts::generate().expect("secrets");
        let env = accounts.env_for(ServiceKind::Audit);
        assert_eq!(
            env,
            [
                (
                    "BULWARK_SERVICE_ACCOUNT__CLIENT_ID".to_owned(),
                    "audit".to_owned()
                ),
                (
                    "BULWARK_SERVICE_ACCOUNT__CLIENT_SECRET".to_owned(),
                    accounts
                        .credentials(ServiceKind::Audit)
                        .expect("an account")
                        .1
                ),
            ]
        );
        assert!(accounts.env_for(ServiceKind::Ratelimit).is_empty());
        assert!(accounts.credentials(ServiceKind::Ratelimit).is_none());
    }
}
