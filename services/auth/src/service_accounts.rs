//! Service accounts: creating OAuth 2.0 clients and issuing their access tokens with
//! the client-credentials grant. Built-in clients (one per core service) come from
//! configuration with fixed permissions; clients created through the API are stored
//! with roles whose permissions Authz resolves each time a token is issued, so a token
//! never carries more than the roles grant at that moment.

use std::collections::BTreeMap;
use std::sync::Arc;

use bulwark_kernel::caller::Caller;
use bulwark_kernel::clients::AuthzApi;
use bulwark_kernel::config::TokensConfig;
use bulwark_kernel::db::Database;
use bulwark_kernel::outbox;
use bulwark_kernel::request::{Refusal, RequestLayer};
use bulwark_proto::audit::v1::Outcome;
use bulwark_proto::auth::v1::{AccessToken, CreateClientResponse};
use chrono::Utc;
use diesel_async::{AsyncConnection as _, AsyncPgConnection};
use secrecy::{ExposeSecret as _, SecretString};
use uuid::Uuid;

use crate::audit_trail::AuditTrail;
use crate::domain::access_token::AccessClaims;
use crate::domain::client_credentials::{ClientCredentials, OAuthError, OAuthErrorCode};
use crate::domain::events;
use crate::domain::service_account::{self, NewSecret, SecretHash};
use crate::error::Error;
use crate::keys::KeyRing;
use crate::store::{self, ClientRow};

/// What one client may be issued: its roles and the permissions they add up to.
struct Grant {
    roles: Vec<String>,
    permissions: Vec<String>,
}

/// Creates service accounts and issues their tokens.
pub struct ServiceAccounts {
    pub db: Database,
    pub keys: Arc<KeyRing>,
    pub authz: Arc<dyn AuthzApi>,
    pub audit: AuditTrail,
    pub tokens: TokensConfig,
    pub access_ttl_seconds: u64,
    /// Built-in client id → the SHA-256 of its configured secret.
    builtins: BTreeMap<String, SecretHash>,
}

impl std::fmt::Debug for ServiceAccounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccounts")
            .field("builtins", &self.builtins.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl ServiceAccounts {
    pub fn new(
        db: Database,
        keys: Arc<KeyRing>,
        authz: Arc<dyn AuthzApi>,
        audit: AuditTrail,
        tokens: TokensConfig,
        access_ttl_seconds: u64,
        builtin_secrets: &BTreeMap<String, SecretString>,
    ) -> Self {
        let builtins = builtin_secrets
            .iter()
            .map(|(id, secret)| (id.clone(), SecretHash::of(secret.expose_secret())))
            .collect();
        Self {
            db,
            keys,
            authz,
            audit,
            tokens,
            access_ttl_seconds,
            builtins,
        }
    }

    /// Creates a client with `roles` (each must exist in Authz) on behalf of `actor`,
    /// who already holds `clients:write`. The secret is in the answer only.
    ///
    /// A client can hold no more than its creator: every permission its roles grant must
    /// be one `actor` holds (checked through `access`), or `clients:write` would be a way
    /// to any permission at all, `*:*` included.
    pub async fn create(
        &self,
        access: &RequestLayer,
        actor: &Caller,
        name: &str,
        roles: &[String],
    ) -> Result<CreateClientResponse, Error> {
        let name = service_account::client_name(name)?;
        let roles = service_account::client_roles(roles)?;
        let resolved = self.resolve(&roles).await?;
        if let Some(unknown) = resolved.unknown.first() {
            return Err(Error::invalid_owned(
                "roles".to_owned(),
                format!("role {unknown} does not exist"),
            ));
        }
        for permission in &resolved.permissions {
            match access.require(actor, permission).await {
                Ok(()) => {}
                Err(Refusal::PermissionDenied(_)) => {
                    return Err(Error::Refused(Refusal::PermissionDenied(format!(
                        "{permission} (a client can hold only permissions its creator holds)"
                    ))));
                }
                Err(other) => return Err(other.into()),
            }
        }
        let secret = NewSecret::generate()?;
        let row = ClientRow {
            id: Uuid::new_v4(),
            name,
            secret_hash: secret.hash.0.to_vec(),
            roles,
            created_by: actor.actor_id(),
        };
        let mut pooled = self.db.conn().await?;
        let conn: &mut AsyncPgConnection = &mut pooled;
        conn.transaction::<_, Error, _>(async |conn| {
            store::insert_client(conn, &row).await?;
            outbox::record(
                conn,
                crate::SPEC.name,
                events::client_created(&row.created_by, row.id, &row.name, &row.roles),
            )
            .await?;
            Ok(())
        })
        .await?;
        self.audit.committed();
        tracing::info!(client_id = %row.id, actor = %row.created_by, "service account created");
        Ok(CreateClientResponse {
            client_id: row.id.to_string(),
            client_secret: secret.plaintext,
            name: row.name,
            roles: row.roles,
        })
    }

    /// Deletes a created client on behalf of `actor` (who holds `clients:write`).
    pub async fn delete(&self, actor: &Caller, client_id: &str) -> Result<(), Error> {
        let id = Uuid::parse_str(client_id).map_err(|_| Error::NotFound("client"))?;
        let actor = actor.actor_id();
        let mut pooled = self.db.conn().await?;
        let conn: &mut AsyncPgConnection = &mut pooled;
        conn.transaction::<_, Error, _>(async |conn| {
            if !store::delete_client(conn, id).await? {
                return Err(Error::NotFound("client"));
            }
            outbox::record(conn, crate::SPEC.name, events::client_deleted(&actor, id)).await?;
            Ok(())
        })
        .await?;
        self.audit.committed();
        tracing::info!(client_id = %id, %actor, "service account deleted");
        Ok(())
    }

    /// Authenticates the client and signs its access token. Every outcome is audited;
    /// a wrong secret and an unknown client give the same answer.
    pub async fn issue(&self, credentials: ClientCredentials) -> Result<AccessToken, Error> {
        let client_id = credentials.client_id.clone();
        let grant = match self.authenticate(&credentials).await {
            Ok(grant) => grant,
            Err(Error::OAuth(refusal)) => {
                self.audit
                    .record(events::client_token(
                        &audit_safe(&client_id),
                        Outcome::Failure,
                        Some("invalid_client"),
                    ))
                    .await?;
                return Err(Error::OAuth(refusal));
            }
            Err(other) => return Err(other),
        };
        let key = self.keys.signing_key().await?;
        let claims = AccessClaims::for_client(
            &self.tokens,
            &client_id,
            grant.roles,
            grant.permissions,
            Utc::now(),
            self.access_ttl_seconds,
        );
        let access_token = key.sign(&claims)?;
        self.audit
            .record(events::client_token(&client_id, Outcome::Success, None))
            .await?;
        Ok(AccessToken {
            access_token,
            token_type: "Bearer".to_owned(),
            expires_in: i32::try_from(self.access_ttl_seconds).unwrap_or(i32::MAX),
        })
    }

    async fn authenticate(&self, credentials: &ClientCredentials) -> Result<Grant, Error> {
        let presented = SecretHash::of(credentials.secret.expose_secret());
        if let Some(expected) = self.builtins.get(&credentials.client_id) {
            if !expected.matches(&presented.0) {
                return Err(invalid_client());
            }
            let permissions = service_account::builtin_permissions(&credentials.client_id)
                .unwrap_or_default()
                .iter()
                .map(|p| (*p).to_owned())
                .collect();
            return Ok(Grant {
                roles: Vec::new(),
                permissions,
            });
        }
        let stored = match Uuid::parse_str(&credentials.client_id) {
            Ok(id) => {
                let mut conn = self.db.conn().await?;
                store::find_client(&mut conn, id).await?
            }
            Err(_) => None,
        };
        // An unknown id is compared against a hash nothing matches, so both refusals
        // take the same work.
        let (expected, roles) = match stored {
            Some(row) => (row.secret_hash, Some(row.roles)),
            None => (vec![0u8; 32], None),
        };
        let matches = presented.matches(&expected);
        let Some(roles) = roles.filter(|_| matches) else {
            return Err(invalid_client());
        };
        let resolved = self.resolve(&roles).await?;
        Ok(Grant {
            roles,
            permissions: resolved.permissions,
        })
    }

    async fn resolve(
        &self,
        roles: &[String],
    ) -> Result<bulwark_proto::authz::v1::ResolveRolesResponse, Error> {
        self.authz
            .resolve_roles(roles.to_vec())
            .await
            .map_err(|status| match status.code() {
                // Authz names the field (`roles[2]: ...`).
                bulwark_kernel::tonic::Code::InvalidArgument => {
                    match status.message().split_once(": ") {
                        Some((field, rule)) => Error::invalid_owned(field.to_owned(), rule),
                        None => Error::invalid_owned("roles".to_owned(), status.message()),
                    }
                }
                _ => Error::from_upstream("authz", status),
            })
    }
}

fn invalid_client() -> Error {
    Error::OAuth(OAuthError {
        code: OAuthErrorCode::InvalidClient,
        description: "client authentication failed".to_owned(),
    })
}

/// A claimed client id as an audit event may name it: bounded, printable.
fn audit_safe(client_id: &str) -> String {
    client_id
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect()
}
