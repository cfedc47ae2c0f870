//! The signing keys: the active key (created on first start, cached in memory),
//! rotation, the published JWKS, and the key source of Auth's own bearer verifier.

use std::time::{Duration, Instant};

use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures::future::BoxFuture;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tokio::sync::RwLock;
use uuid::Uuid;

use bulwark_kernel::caller::KeySource;
use bulwark_kernel::db::Database;
use bulwark_kernel::outbox;

use crate::domain::access_token::AccessClaims;
use crate::domain::events;
use crate::domain::signing_key::{NewSigningKey, PublicJwk};
use crate::error::Error;
use crate::store::{self, ActiveKeyRow};

/// How long an instance signs with its cached key before rereading the table, so
/// a rotation made by another Auth instance takes over within this time.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(30);

/// The key that signs new access tokens.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    key: EncodingKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    fn from_row(row: ActiveKeyRow) -> Self {
        Self {
            key: EncodingKey::from_ed_der(&row.private_key),
            kid: row.kid,
        }
    }

    /// A compact JWS of `claims` with `alg: EdDSA`, `typ: JWT` and this key's `kid`.
    pub fn sign(&self, claims: &AccessClaims) -> Result<String, Error> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key)
            .map_err(|e| Error::Crypto(format!("signing with key {}: {e}", self.kid)))
    }
}

/// The outcome of a rotation.
#[derive(Debug, Clone)]
pub struct Rotation {
    pub kid: String,
    pub previous_kid: Option<String>,
}

struct Cached {
    key: SigningKey,
    loaded_at: Instant,
}

/// The signing keys in the `signing_keys` table, with the active one cached.
pub struct KeyRing {
    db: Database,
    cache: RwLock<Option<Cached>>,
    /// How long a retired key stays in the JWKS: long enough for every token it
    /// signed to expire, counting clock leeway and other instances' cache.
    publish_after_retirement: chrono::Duration,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("publish_after_retirement", &self.publish_after_retirement)
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// Opens the key ring, generating the first key if the table has none.
    /// `access_ttl` and `leeway` bound how long a retired key must stay published.
    pub async fn open(db: Database, access_ttl: Duration, leeway: Duration) -> Result<Self, Error> {
        let publish = access_ttl + leeway + KEY_CACHE_TTL;
        let ring = Self {
            db,
            cache: RwLock::new(None),
            publish_after_retirement: chrono::Duration::from_std(publish)
                .unwrap_or(chrono::Duration::MAX),
        };
        ring.load_active().await?;
        Ok(ring)
    }

    /// How long a retired key stays published after its retirement.
    pub fn publish_after_retirement(&self) -> chrono::Duration {
        self.publish_after_retirement
    }

    /// The key to sign with now.
    pub async fn signing_key(&self) -> Result<SigningKey, Error> {
        if let Some(cached) = self.cache.read().await.as_ref()
            && cached.loaded_at.elapsed() < KEY_CACHE_TTL
        {
            return Ok(cached.key.clone());
        }
        self.load_active().await
    }

    /// Reads the active key (creating one when there is none) into the cache.
    async fn load_active(&self) -> Result<SigningKey, Error> {
        let mut pooled = self.db.conn().await?;
        let conn: &mut AsyncPgConnection = &mut pooled;
        let row = conn
            .transaction::<_, Error, _>(async |conn| {
                if let Some(row) = store::active_signing_key(conn).await? {
                    return Ok(row);
                }
                // Two instances starting together: the second waits here, then finds
                // the first one's key.
                store::lock_signing_keys(conn).await?;
                if let Some(row) = store::active_signing_key(conn).await? {
                    return Ok(row);
                }
                let key = NewSigningKey::generate()?;
                store::insert_signing_key(conn, &key, Utc::now()).await?;
                tracing::info!(kid = %key.public.kid, "generated the first signing key");
                Ok(ActiveKeyRow {
                    kid: key.public.kid.clone(),
                    private_key: key.private_der.clone(),
                })
            })
            .await?;
        Ok(self.remember(row).await)
    }

    async fn remember(&self, row: ActiveKeyRow) -> SigningKey {
        let key = SigningKey::from_row(row);
        *self.cache.write().await = Some(Cached {
            key: key.clone(),
            loaded_at: Instant::now(),
        });
        key
    }

    /// Makes a new key active and retires the current one, which stays published
    /// until the tokens it signed have expired; forgets keys past that point. The
    /// audit event is written in the same transaction.
    pub async fn rotate(&self, actor: Uuid) -> Result<Rotation, Error> {
        let mut pooled = self.db.conn().await?;
        let conn: &mut AsyncPgConnection = &mut pooled;
        let publish_for = self.publish_after_retirement;
        let (rotation, row) = conn
            .transaction::<_, Error, _>(async |conn| {
                store::lock_signing_keys(conn).await?;
                let now = Utc::now();
                let previous_kid = store::retire_active_key(conn, now, now + publish_for).await?;
                let forgotten = store::forget_unpublished_keys(conn, now).await?;
                let key = NewSigningKey::generate()?;
                store::insert_signing_key(conn, &key, now).await?;
                outbox::record(
                    conn,
                    crate::SPEC.name,
                    events::key_rotated(actor, &key.public.kid, previous_kid.as_deref()),
                )
                .await?;
                tracing::info!(kid = %key.public.kid, previous_kid = ?previous_kid, forgotten, "rotated the signing key");
                let rotation = Rotation {
                    kid: key.public.kid.clone(),
                    previous_kid,
                };
                let row = ActiveKeyRow {
                    kid: key.public.kid.clone(),
                    private_key: key.private_der.clone(),
                };
                Ok((rotation, row))
            })
            .await?;
        self.remember(row).await;
        Ok(rotation)
    }

    /// The JWKS: the active key first, then retired keys still published.
    pub async fn published(&self) -> Result<Vec<PublicJwk>, Error> {
        published(&self.db).await
    }
}

async fn published(db: &Database) -> Result<Vec<PublicJwk>, Error> {
    let mut conn = db.conn().await?;
    Ok(store::published_keys(&mut conn, Utc::now()).await?)
}

/// Auth's own verifier reads the published keys straight from the table: no call
/// to itself over gRPC.
#[derive(Debug, Clone)]
pub struct TableKeys {
    db: Database,
}

impl TableKeys {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

impl KeySource for TableKeys {
    fn fetch(&self) -> BoxFuture<'_, Result<Vec<jsonwebtoken::jwk::Jwk>, String>> {
        Box::pin(async move {
            let keys = published(&self.db).await.map_err(|e| e.to_string())?;
            keys.iter().map(PublicJwk::to_jwt).collect()
        })
    }
}
