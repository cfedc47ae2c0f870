//! Diesel queries on the `auth` schema: signing keys and refresh tokens. Every query
//! runs as a `db.query` span; callers choose the connection, so several of these
//! share one transaction with the audit outbox record.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use bulwark_kernel::db::{DbError, traced};

use crate::domain::refresh_token::{TokenHash, TokenState};
use crate::domain::signing_key::{ALGORITHM, NewSigningKey, PublicJwk};
use crate::schema::{refresh_tokens, signing_keys};

/// The key that signs new tokens.
#[derive(Queryable, Selectable)]
#[diesel(table_name = signing_keys)]
pub struct ActiveKeyRow {
    pub kid: String,
    /// PKCS#8 DER.
    pub private_key: Vec<u8>,
}

impl std::fmt::Debug for ActiveKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActiveKeyRow")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Serialises key creation and rotation across Auth instances (the lock conflicts
/// with itself but not with readers, so the JWKS stays readable meanwhile).
pub async fn lock_signing_keys(conn: &mut AsyncPgConnection) -> Result<(), DbError> {
    traced(
        "signing_keys.lock",
        diesel::sql_query("LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE").execute(conn),
    )
    .await
    .map(|_| ())
}

pub async fn active_signing_key(
    conn: &mut AsyncPgConnection,
) -> Result<Option<ActiveKeyRow>, DbError> {
    traced("signing_keys.active", async {
        signing_keys::table
            .filter(signing_keys::retired_at.is_null())
            .select(ActiveKeyRow::as_select())
            .first(conn)
            .await
            .optional()
    })
    .await
}

pub async fn insert_signing_key(
    conn: &mut AsyncPgConnection,
    key: &NewSigningKey,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    let public_jwk = serde_json::to_value(&key.public)
        .map_err(|e| DbError::Query(diesel::result::Error::SerializationError(Box::new(e))))?;
    traced(
        "signing_keys.insert",
        diesel::insert_into(signing_keys::table)
            .values((
                signing_keys::kid.eq(&key.public.kid),
                signing_keys::algorithm.eq(ALGORITHM),
                signing_keys::private_key.eq(&key.private_der),
                signing_keys::public_jwk.eq(public_jwk),
                signing_keys::created_at.eq(now),
            ))
            .execute(conn),
    )
    .await
    .map(|_| ())
}

/// Retires the active key, if any, keeping it published until `publish_until`. Its
/// private half is erased: a retired key never signs again. Returns its kid.
pub async fn retire_active_key(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    publish_until: DateTime<Utc>,
) -> Result<Option<String>, DbError> {
    traced("signing_keys.retire", async {
        diesel::update(signing_keys::table.filter(signing_keys::retired_at.is_null()))
            .set((
                signing_keys::retired_at.eq(now),
                signing_keys::publish_until.eq(publish_until),
                signing_keys::private_key.eq(Vec::<u8>::new()),
            ))
            .returning(signing_keys::kid)
            .get_result(conn)
            .await
            .optional()
    })
    .await
}

/// Deletes retired keys that are no longer published; returns how many.
pub async fn forget_unpublished_keys(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
) -> Result<usize, DbError> {
    traced(
        "signing_keys.forget",
        diesel::delete(signing_keys::table.filter(signing_keys::publish_until.le(now)))
            .execute(conn),
    )
    .await
}

/// The JWKS at `now`: the active key first, then retired keys still published,
/// most recently retired first. Rows whose JWK does not parse are skipped and logged.
pub async fn published_keys(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
) -> Result<Vec<PublicJwk>, DbError> {
    let rows: Vec<(String, serde_json::Value)> = traced(
        "signing_keys.published",
        signing_keys::table
            .filter(
                signing_keys::retired_at
                    .is_null()
                    .or(signing_keys::publish_until.gt(now)),
            )
            .order((
                signing_keys::retired_at.desc().nulls_first(),
                signing_keys::created_at.desc(),
            ))
            .select((signing_keys::kid, signing_keys::public_jwk))
            .load(conn),
    )
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(
            |(kid, json)| match serde_json::from_value::<PublicJwk>(json) {
                Ok(jwk) => Some(jwk),
                Err(error) => {
                    tracing::error!(%kid, %error, "stored public JWK is unreadable; not published");
                    None
                }
            },
        )
        .collect())
}

/// A refresh token as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = refresh_tokens)]
pub struct RefreshRow {
    pub id: Uuid,
    pub family_id: Uuid,
    pub user_id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl RefreshRow {
    pub fn state(&self, now: DateTime<Utc>) -> TokenState {
        TokenState::of(self.used_at, self.revoked_at, self.expires_at, now)
    }
}

/// A refresh token to store.
#[derive(Debug, Insertable)]
#[diesel(table_name = refresh_tokens)]
pub struct NewRefreshRow {
    pub id: Uuid,
    pub family_id: Uuid,
    pub user_id: Uuid,
    pub token_hash: Vec<u8>,
    pub parent_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert_refresh_token(
    conn: &mut AsyncPgConnection,
    row: &NewRefreshRow,
) -> Result<(), DbError> {
    traced(
        "refresh_tokens.insert",
        diesel::insert_into(refresh_tokens::table)
            .values(row)
            .execute(conn),
    )
    .await
    .map(|_| ())
}

pub async fn find_refresh_token(
    conn: &mut AsyncPgConnection,
    hash: &TokenHash,
) -> Result<Option<RefreshRow>, DbError> {
    traced("refresh_tokens.find", async {
        refresh_tokens::table
            .filter(refresh_tokens::token_hash.eq(hash.0.as_slice()))
            .select(RefreshRow::as_select())
            .first(conn)
            .await
            .optional()
    })
    .await
}

/// Marks a usable token used, atomically: of two concurrent claims of one token
/// exactly one gets `true` (the second waits for the first's row lock, then no
/// longer matches `used_at IS NULL`).
pub async fn claim_refresh_token(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, DbError> {
    let claimed: Option<Uuid> = traced("refresh_tokens.claim", async {
        diesel::update(
            refresh_tokens::table
                .filter(refresh_tokens::id.eq(id))
                .filter(refresh_tokens::used_at.is_null())
                .filter(refresh_tokens::revoked_at.is_null())
                .filter(refresh_tokens::expires_at.gt(now)),
        )
        .set(refresh_tokens::used_at.eq(now))
        .returning(refresh_tokens::id)
        .get_result(conn)
        .await
        .optional()
    })
    .await?;
    Ok(claimed.is_some())
}

pub async fn refresh_token_by_id(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<Option<RefreshRow>, DbError> {
    traced("refresh_tokens.get", async {
        refresh_tokens::table
            .find(id)
            .select(RefreshRow::as_select())
            .first(conn)
            .await
            .optional()
    })
    .await
}

/// Revokes every token of a login's family that is not revoked yet; returns how many.
pub async fn revoke_family(
    conn: &mut AsyncPgConnection,
    family_id: Uuid,
    now: DateTime<Utc>,
) -> Result<usize, DbError> {
    traced(
        "refresh_tokens.revoke_family",
        diesel::update(
            refresh_tokens::table
                .filter(refresh_tokens::family_id.eq(family_id))
                .filter(refresh_tokens::revoked_at.is_null()),
        )
        .set(refresh_tokens::revoked_at.eq(now))
        .execute(conn),
    )
    .await
}
