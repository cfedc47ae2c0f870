//! The `account_tokens` table: mailed verification and reset tokens, minted, counted,
//! superseded and used.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use bulwark_kernel::db::{DbError, traced};

use crate::domain::account_token::{TokenKind, TokenState};
use crate::domain::refresh_token::TokenHash;
use crate::schema::account_tokens;

/// The advisory-lock space of a user's tokens of one kind ("acct").
const TOKENS_LOCK_SPACE: i32 = 0x6163_6374;

/// A stored token.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = account_tokens)]
pub struct AccountTokenRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub superseded_at: Option<DateTime<Utc>>,
}

impl AccountTokenRow {
    pub fn state(&self, now: DateTime<Utc>) -> TokenState {
        TokenState::of(self.used_at, self.superseded_at, self.expires_at, now)
    }
}

/// A token about to be stored.
#[derive(Debug, Insertable)]
#[diesel(table_name = account_tokens)]
pub struct NewAccountTokenRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub kind: &'static str,
    pub token_hash: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Serialises the requests for `user_id`'s tokens of `kind` until the transaction ends,
/// so counting the last hour's tokens and adding one is exact under concurrency.
pub async fn lock_user(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    kind: TokenKind,
) -> Result<(), DbError> {
    traced("account_tokens.lock_user", async {
        diesel::sql_query("SELECT pg_advisory_xact_lock($1, hashtext($2::text || $3))")
            .bind::<diesel::sql_types::Integer, _>(TOKENS_LOCK_SPACE)
            .bind::<diesel::sql_types::Uuid, _>(user_id)
            .bind::<diesel::sql_types::Text, _>(kind.as_str())
            .execute(conn)
            .await
            .map(|_| ())
    })
    .await
}

/// How many tokens of `kind` were minted for `user_id` since `since`.
pub async fn count_since(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    kind: TokenKind,
    since: DateTime<Utc>,
) -> Result<i64, DbError> {
    traced(
        "account_tokens.count_since",
        account_tokens::table
            .filter(account_tokens::user_id.eq(user_id))
            .filter(account_tokens::kind.eq(kind.as_str()))
            .filter(account_tokens::created_at.gt(since))
            .count()
            .get_result(conn),
    )
    .await
}

/// Makes every unused, not yet superseded token of `kind` of `user_id` invalid.
pub async fn supersede_unused(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    kind: TokenKind,
    now: DateTime<Utc>,
) -> Result<usize, DbError> {
    traced(
        "account_tokens.supersede",
        diesel::update(
            account_tokens::table
                .filter(account_tokens::user_id.eq(user_id))
                .filter(account_tokens::kind.eq(kind.as_str()))
                .filter(account_tokens::used_at.is_null())
                .filter(account_tokens::superseded_at.is_null()),
        )
        .set(account_tokens::superseded_at.eq(now))
        .execute(conn),
    )
    .await
}

pub async fn insert(conn: &mut AsyncPgConnection, row: &NewAccountTokenRow) -> Result<(), DbError> {
    traced(
        "account_tokens.insert",
        diesel::insert_into(account_tokens::table)
            .values(row)
            .execute(conn),
    )
    .await
    .map(|_| ())
}

/// The token of `kind` whose hash is `hash`, locked until the transaction ends so two
/// uses of it cannot both see it unused.
pub async fn find_for_update(
    conn: &mut AsyncPgConnection,
    hash: &TokenHash,
    kind: TokenKind,
) -> Result<Option<AccountTokenRow>, DbError> {
    traced("account_tokens.find_for_update", async {
        account_tokens::table
            .filter(account_tokens::token_hash.eq(hash.0.as_slice()))
            .filter(account_tokens::kind.eq(kind.as_str()))
            .select(AccountTokenRow::as_select())
            .for_update()
            .first(conn)
            .await
            .optional()
    })
    .await
}

pub async fn mark_used(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    traced(
        "account_tokens.mark_used",
        diesel::update(account_tokens::table.find(id))
            .set(account_tokens::used_at.eq(now))
            .execute(conn),
    )
    .await
    .map(|_| ())
}
