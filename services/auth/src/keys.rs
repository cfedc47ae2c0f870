//! The signing keys: the active key (created on first start, cached in memory),
//! rotation with publish-before-use, the published JWKS, and the key source of
//! Auth's own bearer verifier.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures::future::BoxFuture;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tokio::sync::RwLock;
use zeroize::Zeroizing;

use bulwark_kernel::caller::KeySource;
use bulwark_kernel::db::Database;
use bulwark_kernel::outbox;

use crate::domain::access_token::AccessClaims;
use crate::domain::events;
use crate::domain::key_schedule::{PendingKey, Phase, RotationPlan};
use crate::domain::signing_key::{NewSigningKey, PublicJwk};
use crate::error::Error;
use crate::key_encryption::KeyEncryption;
use crate::store::{self, LiveKeyRow};

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
    /// Opens the row's sealed private half. A row that is not sealed (written by an
    /// Auth from before sealing, after this one sealed the table at start) is refused.
    fn from_row(row: LiveKeyRow, sealing: &KeyEncryption) -> Result<Self, Error> {
        let Some(kek_id) = &row.kek_id else {
            return Err(Error::Crypto(format!(
                "signing key {} is stored unsealed; restart Auth to seal it",
                row.kid
            )));
        };
        let der = sealing.open(&row.kid, kek_id, &row.private_key)?;
        Ok(Self {
            key: EncodingKey::from_ed_der(&der),
            kid: row.kid,
        })
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
    /// When `kid` starts signing and `previous_kid` retires.
    pub activates_at: DateTime<Utc>,
}

/// The key that signs at an instant, and when a pending key takes over from it.
struct Current {
    key: LiveKeyRow,
    next_activation: Option<DateTime<Utc>>,
}

struct Cached {
    key: SigningKey,
    loaded_at: Instant,
    /// The pending key's activation: the cached key stops signing then.
    next_activation: Option<DateTime<Utc>>,
}

impl Cached {
    fn of(found: Current, sealing: &KeyEncryption) -> Result<Self, Error> {
        Ok(Self {
            key: SigningKey::from_row(found.key, sealing)?,
            loaded_at: Instant::now(),
            next_activation: found.next_activation,
        })
    }

    fn is_fresh(&self, now: DateTime<Utc>, ttl: Duration) -> bool {
        self.loaded_at.elapsed() < ttl && self.next_activation.is_none_or(|at| now < at)
    }
}

/// The signing keys in the `signing_keys` table, with the active one cached.
pub struct KeyRing {
    db: Database,
    /// Seals new private keys and opens stored ones.
    sealing: Arc<KeyEncryption>,
    cache: RwLock<Option<Cached>>,
    /// How long this instance signs with its cached key before rereading the table
    /// (`auth.signing_key_cache_seconds`): a rotation made by another Auth instance is
    /// seen within this time, before the new key activates when the activation delay
    /// is longer (retired keys stay published that much longer to cover it).
    cache_ttl: Duration,
    /// How long a retired key stays in the JWKS: long enough for every token it
    /// signed to expire, counting clock leeway and other instances' cache.
    publish_after_retirement: chrono::Duration,
    /// How long a rotated-in key is published before it signs.
    activation_delay: chrono::Duration,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("publish_after_retirement", &self.publish_after_retirement)
            .field("activation_delay", &self.activation_delay)
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// Opens the key ring: seals every private key not sealed under the current KEK
    /// (plaintext from before sealing, or under an older KEK), then loads the active key,
    /// generating the first one if the table has none. A key that does not open (a
    /// wrong or missing KEK) is an error, so Auth does not start.
    /// `access_ttl` and `leeway` bound how long a retired key must stay published;
    /// a rotated-in key signs `activation_delay` after it is published; the active key
    /// is reread every `cache_ttl`.
    pub async fn open(
        db: Database,
        sealing: Arc<KeyEncryption>,
        access_ttl: Duration,
        leeway: Duration,
        activation_delay: Duration,
        cache_ttl: Duration,
    ) -> Result<Self, Error> {
        let publish = access_ttl + leeway + cache_ttl;
        let ring = Self {
            db,
            sealing,
            cache: RwLock::new(None),
            cache_ttl,
            publish_after_retirement: chrono::Duration::from_std(publish)
                .unwrap_or(chrono::Duration::MAX),
            activation_delay: chrono::Duration::from_std(activation_delay)
                .unwrap_or(chrono::Duration::MAX),
        };
        ring.reseal().await?;
        ring.load_active().await?;
        Ok(ring)
    }

    /// Seals under the current KEK every private key that is not: the rows of an
    /// older KEK after a KEK rotation, and plaintext rows from before sealing.
    async fn reseal(&self) -> Result<(), Error> {
        let mut pooled = self.db.conn().await?;
        let conn: &mut AsyncPgConnection = &mut pooled;
        let sealing = &self.sealing;
        let resealed = conn
            .transaction::<_, Error, _>(async |conn| {
                store::lock_signing_keys(conn).await?;
                let rows = store::keys_to_reseal(conn, sealing.current()).await?;
                for (kid, kek_id, stored) in &rows {
                    let der = match kek_id {
                        Some(kek_id) => sealing.open(kid, kek_id, stored)?,
                        None => Zeroizing::new(stored.clone()),
                    };
                    store::reseal_key(conn, kid, &sealing.seal(kid, &der)?).await?;
                    tracing::info!(%kid, from = kek_id.as_deref().unwrap_or("plaintext"), to = sealing.current(), "resealed a signing key");
                }
                Ok(rows.len())
            })
            .await?;
        if resealed > 0 {
            tracing::info!(
                resealed,
                kek_id = sealing.current(),
                "signing keys sealed under the current key-encryption key"
            );
        }
        Ok(())
    }

    /// How long a retired key stays published after its retirement.
    pub fn publish_after_retirement(&self) -> chrono::Duration {
        self.publish_after_retirement
    }

    /// The key to sign with now.
    pub async fn signing_key(&self) -> Result<SigningKey, Error> {
        if let Some(cached) = self.cache.read().await.as_ref()
            && cached.is_fresh(Utc::now(), self.cache_ttl)
        {
            return Ok(cached.key.clone());
        }
        self.load_active().await
    }

    /// Reads the active key (creating one when there is none) into the cache.
    async fn load_active(&self) -> Result<SigningKey, Error> {
        let mut pooled = self.db.conn().await?;
        let conn: &mut AsyncPgConnection = &mut pooled;
        let found = conn
            .transaction::<_, Error, _>(async |conn| {
                if let Some(found) = current(conn, Utc::now()).await? {
                    return Ok(found);
                }
                // Two instances starting together: the second waits here, then finds
                // the first one's key.
                store::lock_signing_keys(conn).await?;
                let now = Utc::now();
                if let Some(found) = current(conn, now).await? {
                    return Ok(found);
                }
                first_key(conn, now, &self.sealing).await
            })
            .await?;
        let cached = Cached::of(found, &self.sealing)?;
        let key = cached.key.clone();
        *self.cache.write().await = Some(cached);
        Ok(key)
    }

    /// Publishes a new key that signs after the activation delay, or at once when
    /// `immediate`; the current key signs until then and retires at that instant,
    /// staying published until the tokens it signed have expired. While a key is
    /// pending, only `immediate` is accepted, and it activates that key. Forgets keys
    /// past their publication. The audit event is written in the same transaction.
    pub async fn rotate(&self, actor: &str, immediate: bool) -> Result<Rotation, Error> {
        let mut pooled = self.db.conn().await?;
        let conn: &mut AsyncPgConnection = &mut pooled;
        let (publish_for, delay) = (self.publish_after_retirement, self.activation_delay);
        let sealing = &self.sealing;
        let (rotation, after) = conn
            .transaction::<_, Error, _>(async |conn| {
                store::lock_signing_keys(conn).await?;
                let now = Utc::now();
                let (_, pending) = live_keys(conn, now).await?;
                let pending = pending.map(|row| PendingKey {
                    kid: row.kid,
                    activates_at: row.activates_at,
                });
                let plan = RotationPlan::decide(pending, immediate, delay, now)?;
                let activates_at = plan.activates_at();
                // Retire first: only the newest key may have no retirement scheduled.
                let previous_kid =
                    store::retire_active_key(conn, now, activates_at, activates_at + publish_for)
                        .await?;
                let kid = match plan {
                    RotationPlan::Generate { .. } => {
                        let key = NewSigningKey::generate()?;
                        let sealed = sealing.seal(&key.public.kid, &key.private_der)?;
                        store::insert_signing_key(conn, &key.public, &sealed, now, activates_at)
                            .await?;
                        key.public.kid
                    }
                    RotationPlan::ActivatePending { kid, .. } => {
                        store::activate_signing_key(conn, &kid, activates_at).await?;
                        kid
                    }
                };
                let forgotten = store::forget_unpublished_keys(conn, now).await?;
                outbox::record(
                    conn,
                    crate::SPEC.name,
                    events::key_rotated(actor, &kid, previous_kid.as_deref(), activates_at),
                )
                .await?;
                tracing::info!(%kid, previous_kid = ?previous_kid, %activates_at, forgotten, "rotated the signing key");
                let after = current(conn, now).await?;
                let rotation = Rotation {
                    kid,
                    previous_kid,
                    activates_at,
                };
                Ok((rotation, after))
            })
            .await?;
        // Without a key signing now (a table that had none), the next signature
        // goes through `load_active`, which makes one sign.
        *self.cache.write().await = after
            .map(|found| Cached::of(found, &self.sealing))
            .transpose()?;
        Ok(rotation)
    }

    /// The JWKS: the active key first, then a pending key, then retired keys still
    /// published.
    pub async fn published(&self) -> Result<Vec<PublicJwk>, Error> {
        published(&self.db).await
    }
}

/// The keys not retired at `now`: the one signing and the one pending, each if any.
async fn live_keys(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
) -> Result<(Option<LiveKeyRow>, Option<LiveKeyRow>), Error> {
    let (mut active, mut pending) = (None, None);
    // Earliest activation first: the last activated one signs, the first pending
    // one is next.
    for row in store::live_signing_keys(conn, now).await? {
        // Rows not retired at `now`, so the retirement does not matter here.
        if Phase::at(now, row.activates_at, None) == Phase::Pending {
            pending = pending.or(Some(row));
        } else {
            active = Some(row);
        }
    }
    Ok((active, pending))
}

/// The key signing at `now`, if any. Erases the private halves of keys retired by
/// then: a key whose retirement was scheduled loses it the first time any instance
/// looks after that instant.
async fn current(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
) -> Result<Option<Current>, Error> {
    let (active, pending) = live_keys(conn, now).await?;
    let Some(key) = active else {
        return Ok(None);
    };
    store::erase_retired_private_keys(conn, now).await?;
    Ok(Some(Current {
        key,
        next_activation: pending.map(|row| row.activates_at),
    }))
}

/// Makes a key sign when none does: a new one on first start, or a pending key
/// (already published) should the table have lost the key before it. Needs the lock.
async fn first_key(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    sealing: &KeyEncryption,
) -> Result<Current, Error> {
    if let (_, Some(mut pending)) = live_keys(conn, now).await? {
        store::activate_signing_key(conn, &pending.kid, now).await?;
        tracing::warn!(kid = %pending.kid, "no key was signing; activated the pending key");
        pending.activates_at = now;
        return Ok(Current {
            key: pending,
            next_activation: None,
        });
    }
    let key = NewSigningKey::generate()?;
    let sealed = sealing.seal(&key.public.kid, &key.private_der)?;
    store::insert_signing_key(conn, &key.public, &sealed, now, now).await?;
    tracing::info!(kid = %key.public.kid, kek_id = %sealed.kek_id, "generated the first signing key");
    Ok(Current {
        key: LiveKeyRow {
            kid: key.public.kid.clone(),
            private_key: sealed.bytes,
            kek_id: Some(sealed.kek_id),
            activates_at: now,
        },
        next_activation: None,
    })
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
    fn fetch(&self) -> BoxFuture<'_, Result<Vec<bulwark_proto::auth::v1::Jwk>, String>> {
        Box::pin(async move {
            let keys = published(&self.db).await.map_err(|e| e.to_string())?;
            Ok(keys.iter().map(PublicJwk::to_proto).collect())
        })
    }
}
