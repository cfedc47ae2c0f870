//! Diesel queries on the `auth` schema: signing keys, sessions and their refresh tokens,
//! clients, and (in [`account_tokens`]) mailed account tokens. Every query
//! runs as a `db.query` span; callers choose the connection, so several of these
//! share one transaction with the audit outbox record.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use bulwark_kernel::db::{DbError, traced};

pub mod account_tokens;

use crate::domain::key_schedule::Phase;
use crate::domain::refresh_token::{TokenHash, TokenState};
use crate::domain::signing_key::{ALGORITHM, PublicJwk};
use crate::key_encryption::Sealed;
use crate::schema::{clients, refresh_tokens, sessions, signing_keys};

/// A key that is not retired: the one signing, or one pending.
#[derive(Queryable, Selectable)]
#[diesel(table_name = signing_keys)]
pub struct LiveKeyRow {
    pub kid: String,
    /// Sealed under `kek_id` (see `key_encryption`); plaintext PKCS#8 DER only in a
    /// row written before sealing existed (`kek_id` NULL), which Auth seals at start.
    pub private_key: Vec<u8>,
    pub kek_id: Option<String>,
    pub activates_at: DateTime<Utc>,
}

impl std::fmt::Debug for LiveKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveKeyRow")
            .field("kid", &self.kid)
            .field("activates_at", &self.activates_at)
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

/// The keys not retired at `now` (the active key, a pending one), earliest
/// activation first.
pub async fn live_signing_keys(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
) -> Result<Vec<LiveKeyRow>, DbError> {
    traced(
        "signing_keys.live",
        signing_keys::table
            .filter(
                signing_keys::retired_at
                    .is_null()
                    .or(signing_keys::retired_at.gt(now)),
            )
            .order(signing_keys::activates_at.asc())
            .select(LiveKeyRow::as_select())
            .load(conn),
    )
    .await
}

/// Stores a new key, its private half `sealed`, published from `now` and signing from
/// `activates_at`.
pub async fn insert_signing_key(
    conn: &mut AsyncPgConnection,
    public: &PublicJwk,
    sealed: &Sealed,
    now: DateTime<Utc>,
    activates_at: DateTime<Utc>,
) -> Result<(), DbError> {
    let public_jwk = serde_json::to_value(public)
        .map_err(|e| DbError::Query(diesel::result::Error::SerializationError(Box::new(e))))?;
    traced(
        "signing_keys.insert",
        diesel::insert_into(signing_keys::table)
            .values((
                signing_keys::kid.eq(&public.kid),
                signing_keys::algorithm.eq(ALGORITHM),
                signing_keys::private_key.eq(&sealed.bytes),
                signing_keys::kek_id.eq(&sealed.kek_id),
                signing_keys::public_jwk.eq(public_jwk),
                signing_keys::created_at.eq(now),
                signing_keys::activates_at.eq(activates_at),
            ))
            .execute(conn),
    )
    .await
    .map(|_| ())
}

/// The keys whose private half is not sealed under the KEK `current` (sealed under
/// another, or plaintext from before sealing), with that half.
pub async fn keys_to_reseal(
    conn: &mut AsyncPgConnection,
    current: &str,
) -> Result<Vec<(String, Option<String>, Vec<u8>)>, DbError> {
    traced(
        "signing_keys.to_reseal",
        signing_keys::table
            .filter(signing_keys::private_key.ne(Vec::<u8>::new()))
            .filter(
                signing_keys::kek_id
                    .is_null()
                    .or(signing_keys::kek_id.ne(current)),
            )
            .select((
                signing_keys::kid,
                signing_keys::kek_id,
                signing_keys::private_key,
            ))
            .load(conn),
    )
    .await
}

/// Replaces the private half of `kid` with `sealed`.
pub async fn reseal_key(
    conn: &mut AsyncPgConnection,
    kid: &str,
    sealed: &Sealed,
) -> Result<(), DbError> {
    traced(
        "signing_keys.reseal",
        diesel::update(signing_keys::table.find(kid))
            .set((
                signing_keys::private_key.eq(&sealed.bytes),
                signing_keys::kek_id.eq(&sealed.kek_id),
            ))
            .execute(conn),
    )
    .await
    .map(|_| ())
}

/// Makes the key `kid` sign from `activates_at`.
pub async fn activate_signing_key(
    conn: &mut AsyncPgConnection,
    kid: &str,
    activates_at: DateTime<Utc>,
) -> Result<(), DbError> {
    traced(
        "signing_keys.activate",
        diesel::update(signing_keys::table.find(kid))
            .set(signing_keys::activates_at.eq(activates_at))
            .execute(conn),
    )
    .await
    .map(|_| ())
}

/// Schedules the retirement of the key active at `now`, if any, at `retire_at`,
/// keeping it published until `publish_until`. Returns its kid. Its private half is
/// erased by [`erase_retired_private_keys`] once `retire_at` has passed.
pub async fn retire_active_key(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    retire_at: DateTime<Utc>,
    publish_until: DateTime<Utc>,
) -> Result<Option<String>, DbError> {
    traced("signing_keys.retire", async {
        diesel::update(
            signing_keys::table
                .filter(signing_keys::activates_at.le(now))
                .filter(
                    signing_keys::retired_at
                        .is_null()
                        .or(signing_keys::retired_at.gt(now)),
                ),
        )
        .set((
            signing_keys::retired_at.eq(retire_at),
            signing_keys::publish_until.eq(publish_until),
        ))
        .returning(signing_keys::kid)
        .get_result(conn)
        .await
        .optional()
    })
    .await
}

/// Erases the private half of every key retired by `now`: a retired key never signs
/// again. Returns how many were erased.
pub async fn erase_retired_private_keys(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
) -> Result<usize, DbError> {
    traced(
        "signing_keys.erase_retired",
        diesel::update(
            signing_keys::table
                .filter(signing_keys::retired_at.le(now))
                .filter(signing_keys::private_key.ne(Vec::<u8>::new())),
        )
        .set((
            signing_keys::private_key.eq(Vec::<u8>::new()),
            signing_keys::kek_id.eq(None::<String>),
        ))
        .execute(conn),
    )
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

/// The JWKS at `now`: the active key first, then a pending key, then retired keys
/// still published, most recently retired first. Rows whose JWK does not parse are
/// skipped and logged.
pub async fn published_keys(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
) -> Result<Vec<PublicJwk>, DbError> {
    type Row = (
        String,
        serde_json::Value,
        DateTime<Utc>,
        Option<DateTime<Utc>>,
    );
    let mut rows: Vec<Row> = traced(
        "signing_keys.published",
        signing_keys::table
            .filter(
                signing_keys::retired_at
                    .is_null()
                    .or(signing_keys::publish_until.gt(now)),
            )
            .select((
                signing_keys::kid,
                signing_keys::public_jwk,
                signing_keys::activates_at,
                signing_keys::retired_at,
            ))
            .load(conn),
    )
    .await?;
    // Each key retires when its successor activates, so within a phase the latest
    // activation is also the latest retirement.
    rows.sort_by_key(|(_, _, activates_at, retired_at)| {
        (
            Phase::at(now, *activates_at, *retired_at),
            std::cmp::Reverse(*activates_at),
        )
    });
    Ok(rows
        .into_iter()
        .filter_map(
            |(kid, json, _, _)| match serde_json::from_value::<PublicJwk>(json) {
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

/// The first key of the advisory locks on refresh families ("rfam"), keeping them apart
/// from any other advisory lock in the database (the two-key and one-key forms never
/// conflict, and other users of the two-key form pick other first keys).
const FAMILY_LOCK_SPACE: i32 = 0x7266_616d;

/// Serializes every change to the refresh family `family_id` until the transaction
/// ends. Refresh, logout, reuse detection and revocation all take it first, so under
/// READ COMMITTED a revocation cannot miss a child token that a refresh is inserting:
/// whichever comes second runs its statements after the first has committed.
pub async fn lock_family(conn: &mut AsyncPgConnection, family_id: Uuid) -> Result<(), DbError> {
    traced("refresh_tokens.lock_family", async {
        diesel::sql_query("SELECT pg_advisory_xact_lock($1, hashtext($2::text))")
            .bind::<diesel::sql_types::Integer, _>(FAMILY_LOCK_SPACE)
            .bind::<diesel::sql_types::Uuid, _>(family_id)
            .execute(conn)
            .await
            .map(|_| ())
    })
    .await
}

/// Ends the session `family_id`: revokes every token of its family that is not revoked
/// yet and marks the session revoked (for the edge) with `reason`, unless it already
/// is. Returns how many refresh tokens were revoked.
pub async fn revoke_family(
    conn: &mut AsyncPgConnection,
    family_id: Uuid,
    now: DateTime<Utc>,
    reason: &str,
) -> Result<usize, DbError> {
    let revoked = traced(
        "refresh_tokens.revoke_family",
        diesel::update(
            refresh_tokens::table
                .filter(refresh_tokens::family_id.eq(family_id))
                .filter(refresh_tokens::revoked_at.is_null()),
        )
        .set(refresh_tokens::revoked_at.eq(now))
        .execute(conn),
    )
    .await?;
    traced(
        "sessions.revoke",
        diesel::update(
            sessions::table
                .filter(sessions::id.eq(family_id))
                .filter(sessions::revoked_at.is_null()),
        )
        .set((
            // The time of the statement, not of the transaction's start: the edge's
            // feed pages by it and looks back a few seconds for late commits.
            sessions::revoked_at.eq(diesel::dsl::sql::<
                diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
            >("clock_timestamp()")),
            sessions::revoked_reason.eq(reason),
        ))
        .execute(conn),
    )
    .await?;
    Ok(revoked)
}

/// A stored service account.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = clients)]
pub struct ClientRow {
    pub id: Uuid,
    pub name: String,
    pub secret_hash: Vec<u8>,
    pub roles: Vec<String>,
    pub created_by: String,
}

pub async fn insert_client(conn: &mut AsyncPgConnection, row: &ClientRow) -> Result<(), DbError> {
    traced("clients.insert", async {
        diesel::insert_into(clients::table)
            .values(row)
            .execute(conn)
            .await
            .map(|_| ())
    })
    .await
}

/// Deletes a client; whether it existed.
pub async fn delete_client(conn: &mut AsyncPgConnection, id: Uuid) -> Result<bool, DbError> {
    traced("clients.delete", async {
        diesel::delete(clients::table.find(id))
            .execute(conn)
            .await
            .map(|rows| rows > 0)
    })
    .await
}

pub async fn find_client(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<Option<ClientRow>, DbError> {
    traced("clients.find", async {
        clients::table
            .find(id)
            .select(ClientRow::as_select())
            .first(conn)
            .await
            .optional()
    })
    .await
}

/// A session to store, at login.
#[derive(Debug, Insertable)]
#[diesel(table_name = sessions)]
pub struct NewSessionRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub ip: String,
    pub user_agent: String,
}

/// A session as its owner sees it.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sessions)]
pub struct SessionRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub ip: String,
    pub user_agent: String,
    pub revoked_at: Option<DateTime<Utc>>,
}

pub async fn insert_session(
    conn: &mut AsyncPgConnection,
    row: &NewSessionRow,
) -> Result<(), DbError> {
    traced(
        "sessions.insert",
        diesel::insert_into(sessions::table)
            .values(row)
            .execute(conn),
    )
    .await
    .map(|_| ())
}

/// A refresh used the session: it lives as long as its newest refresh token.
pub async fn touch_session(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Result<(), DbError> {
    traced(
        "sessions.touch",
        diesel::update(sessions::table.find(id))
            .set((
                sessions::last_used_at.eq(now),
                sessions::expires_at.eq(expires_at),
            ))
            .execute(conn),
    )
    .await
    .map(|_| ())
}

pub async fn session_by_id(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<Option<SessionRow>, DbError> {
    traced("sessions.get", async {
        sessions::table
            .find(id)
            .select(SessionRow::as_select())
            .first(conn)
            .await
            .optional()
    })
    .await
}

/// The user's sessions that neither were revoked nor expired, most recently used
/// first, at most `limit`.
pub async fn live_sessions(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<SessionRow>, DbError> {
    traced("sessions.list_live", async {
        sessions::table
            .filter(sessions::user_id.eq(user_id))
            .filter(sessions::revoked_at.is_null())
            .filter(sessions::expires_at.gt(now))
            .order((sessions::last_used_at.desc(), sessions::id))
            .limit(limit)
            .select(SessionRow::as_select())
            .load(conn)
            .await
    })
    .await
}

/// The ids of the user's live sessions (to end them all, as a password reset does).
pub async fn live_session_ids(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Vec<Uuid>, DbError> {
    traced("sessions.live_ids", async {
        sessions::table
            .filter(sessions::user_id.eq(user_id))
            .filter(sessions::revoked_at.is_null())
            .filter(sessions::expires_at.gt(now))
            .order(sessions::id)
            .select(sessions::id)
            .load(conn)
            .await
    })
    .await
}

/// Sessions revoked at or after `since`, oldest revocation first, at most `limit`.
pub async fn revoked_since(
    conn: &mut AsyncPgConnection,
    since: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<(Uuid, DateTime<Utc>)>, DbError> {
    let rows: Vec<(Uuid, Option<DateTime<Utc>>)> = traced("sessions.revoked_since", async {
        sessions::table
            .filter(sessions::revoked_at.ge(since))
            .order((sessions::revoked_at, sessions::id))
            .limit(limit)
            .select((sessions::id, sessions::revoked_at))
            .load(conn)
            .await
    })
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, at)| at.map(|at| (id, at)))
        .collect())
}
