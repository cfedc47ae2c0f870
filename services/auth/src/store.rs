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
use crate::domain::recovery_codes::RecoveryCodeHash;
use crate::domain::refresh_token::{TokenHash, TokenState};
use crate::domain::signing_key::{ALGORITHM, PublicJwk};
use crate::key_encryption::Sealed;
use crate::schema::{
    clients, mfa_challenges, recovery_codes, refresh_tokens, sessions, signing_keys, totp_secrets,
};

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

/// A user's TOTP secret as stored (sealed).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = totp_secrets)]
pub struct TotpRow {
    pub secret: Vec<u8>,
    pub kek_id: String,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub last_used_step: Option<i64>,
}

pub async fn totp_secret(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
) -> Result<Option<TotpRow>, DbError> {
    traced("totp_secrets.get", async {
        totp_secrets::table
            .find(user_id)
            .select(TotpRow::as_select())
            .first(conn)
            .await
            .optional()
    })
    .await
}

/// Stores a pending secret for `user_id`, replacing a pending one; `false` (nothing
/// written) when a confirmed secret exists.
pub async fn put_pending_totp(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    sealed: &Sealed,
) -> Result<bool, DbError> {
    let written = traced(
        "totp_secrets.put_pending",
        diesel::sql_query(
            "INSERT INTO totp_secrets (user_id, secret, kek_id) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id) DO UPDATE SET secret = EXCLUDED.secret, \
             kek_id = EXCLUDED.kek_id, created_at = now(), last_used_step = NULL \
             WHERE totp_secrets.confirmed_at IS NULL",
        )
        .bind::<diesel::sql_types::Uuid, _>(user_id)
        .bind::<diesel::sql_types::Bytea, _>(&sealed.bytes)
        .bind::<diesel::sql_types::Text, _>(&sealed.kek_id)
        .execute(conn),
    )
    .await?;
    Ok(written == 1)
}

/// Accepts the code of `step` for `user_id`: moves `last_used_step` forward, and
/// confirms a pending secret when `confirm`. `false` when another call accepted this
/// step (or a later one) first, or the secret changed state: a code counts once.
pub async fn accept_totp_step(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    step: i64,
    confirm: bool,
) -> Result<bool, DbError> {
    let accepted = traced("totp_secrets.accept_step", async {
        let target = totp_secrets::table
            .filter(totp_secrets::user_id.eq(user_id))
            .filter(
                totp_secrets::last_used_step
                    .is_null()
                    .or(totp_secrets::last_used_step.lt(step)),
            );
        if confirm {
            diesel::update(target.filter(totp_secrets::confirmed_at.is_null()))
                .set((
                    totp_secrets::last_used_step.eq(step),
                    totp_secrets::confirmed_at.eq(diesel::dsl::now),
                ))
                .execute(conn)
                .await
        } else {
            diesel::update(target.filter(totp_secrets::confirmed_at.is_not_null()))
                .set(totp_secrets::last_used_step.eq(step))
                .execute(conn)
                .await
        }
    })
    .await?;
    Ok(accepted == 1)
}

/// Deletes the user's TOTP secret and recovery codes; `true` if a secret was deleted.
pub async fn delete_mfa(conn: &mut AsyncPgConnection, user_id: Uuid) -> Result<bool, DbError> {
    delete_recovery_codes(conn, user_id).await?;
    let deleted = traced(
        "totp_secrets.delete",
        diesel::delete(totp_secrets::table.find(user_id)).execute(conn),
    )
    .await?;
    Ok(deleted == 1)
}

async fn delete_recovery_codes(conn: &mut AsyncPgConnection, user_id: Uuid) -> Result<(), DbError> {
    traced(
        "recovery_codes.delete_all",
        diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(user_id)))
            .execute(conn),
    )
    .await
    .map(|_| ())
}

/// Replaces the user's recovery codes with `hashes`.
pub async fn replace_recovery_codes(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    hashes: &[RecoveryCodeHash],
) -> Result<(), DbError> {
    delete_recovery_codes(conn, user_id).await?;
    let rows: Vec<_> = hashes
        .iter()
        .map(|hash| {
            (
                recovery_codes::user_id.eq(user_id),
                recovery_codes::code_hash.eq(hash.0.to_vec()),
            )
        })
        .collect();
    traced(
        "recovery_codes.insert",
        diesel::insert_into(recovery_codes::table)
            .values(rows)
            .execute(conn),
    )
    .await
    .map(|_| ())
}

/// The user's unused recovery codes.
pub async fn unused_recovery_codes(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
) -> Result<Vec<RecoveryCodeHash>, DbError> {
    let hashes: Vec<Vec<u8>> = traced("recovery_codes.unused", async {
        recovery_codes::table
            .filter(recovery_codes::user_id.eq(user_id))
            .filter(recovery_codes::used_at.is_null())
            .select(recovery_codes::code_hash)
            .load(conn)
            .await
    })
    .await?;
    Ok(hashes
        .into_iter()
        .filter_map(|h| <[u8; 32]>::try_from(h).ok().map(RecoveryCodeHash))
        .collect())
}

/// Marks a recovery code used; `false` when another call used it first.
pub async fn use_recovery_code(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    hash: &RecoveryCodeHash,
) -> Result<bool, DbError> {
    let used = traced(
        "recovery_codes.use",
        diesel::update(
            recovery_codes::table
                .filter(recovery_codes::user_id.eq(user_id))
                .filter(recovery_codes::code_hash.eq(hash.0.as_slice()))
                .filter(recovery_codes::used_at.is_null()),
        )
        .set(recovery_codes::used_at.eq(diesel::dsl::now))
        .execute(conn),
    )
    .await?;
    Ok(used == 1)
}

/// The second step of a login to store.
#[derive(Debug, Insertable)]
#[diesel(table_name = mfa_challenges)]
pub struct NewChallengeRow {
    pub token_hash: Vec<u8>,
    pub user_id: Uuid,
    pub lockout_key: String,
    pub audit_target: String,
    pub expires_at: DateTime<Utc>,
}

/// A second step of a login, as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = mfa_challenges)]
pub struct ChallengeRow {
    pub user_id: Uuid,
    pub lockout_key: String,
    pub audit_target: String,
}

/// Stores a challenge, and deletes the expired ones (so the table stays small).
pub async fn insert_challenge(
    conn: &mut AsyncPgConnection,
    row: &NewChallengeRow,
) -> Result<(), DbError> {
    traced(
        "mfa_challenges.prune",
        diesel::delete(
            mfa_challenges::table.filter(mfa_challenges::expires_at.lt(diesel::dsl::now)),
        )
        .execute(conn),
    )
    .await?;
    traced(
        "mfa_challenges.insert",
        diesel::insert_into(mfa_challenges::table)
            .values(row)
            .execute(conn),
    )
    .await
    .map(|_| ())
}

/// Takes one try of the challenge `token_hash`, atomically: `None` when it is unknown,
/// used, expired or out of tries (`max_tries`).
pub async fn try_challenge(
    conn: &mut AsyncPgConnection,
    token_hash: &[u8],
    now: DateTime<Utc>,
    max_tries: i32,
) -> Result<Option<ChallengeRow>, DbError> {
    traced("mfa_challenges.try", async {
        diesel::update(
            mfa_challenges::table
                .filter(mfa_challenges::token_hash.eq(token_hash))
                .filter(mfa_challenges::used_at.is_null())
                .filter(mfa_challenges::expires_at.gt(now))
                .filter(mfa_challenges::tries.lt(max_tries)),
        )
        .set(mfa_challenges::tries.eq(mfa_challenges::tries + 1))
        .returning(ChallengeRow::as_returning())
        .get_result(conn)
        .await
        .optional()
    })
    .await
}

/// Marks a challenge used (its login completed).
pub async fn use_challenge(conn: &mut AsyncPgConnection, token_hash: &[u8]) -> Result<(), DbError> {
    traced(
        "mfa_challenges.use",
        diesel::update(mfa_challenges::table.filter(mfa_challenges::token_hash.eq(token_hash)))
            .set(mfa_challenges::used_at.eq(diesel::dsl::now))
            .execute(conn),
    )
    .await
    .map(|_| ())
}
