//! The `users` table: diesel queries, each traced as a span. Every audited write takes
//! its event and records it in the outbox inside the same transaction, so a change
//! and its audit event commit or roll back together.

use bulwark_kernel::db::{DbError, traced};
use bulwark_kernel::outbox::{self, NewAuditEvent};
use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::domain::{NewUser, User};
use crate::error::Error;
use crate::schema::users;

/// The unique index that makes emails unique case-insensitively.
const EMAIL_INDEX: &str = "users_email_lower_key";

diesel::define_sql_function!(fn lower(text: diesel::sql_types::Text) -> diesel::sql_types::Text);

#[derive(Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(Pg))]
struct UserRow {
    id: Uuid,
    email: String,
    display_name: String,
    created_at: DateTime<Utc>,
    active: bool,
    email_verified: bool,
    mfa_enabled: bool,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        Self {
            id: row.id,
            email: row.email,
            display_name: row.display_name,
            created_at: row.created_at,
            active: row.active,
            email_verified: row.email_verified,
            mfa_enabled: row.mfa_enabled,
        }
    }
}

/// What a credential check needs: never leaves the service.
#[derive(Debug, Queryable)]
pub struct StoredCredentials {
    pub id: Uuid,
    pub password_hash: String,
    pub active: bool,
}

fn service() -> &'static str {
    crate::SPEC.name
}

/// Inserts a new user and records `event`; a taken email (in any case) is
/// [`Error::EmailTaken`], decided by the unique index rather than a racy pre-check.
pub async fn insert_user(
    conn: &mut AsyncPgConnection,
    user: &NewUser,
    event: NewAuditEvent,
) -> Result<User, Error> {
    conn.transaction::<_, Error, _>(async |conn| {
        let row: UserRow = traced(
            "users.insert",
            diesel::insert_into(users::table)
                .values(insertable(user))
                .returning(UserRow::as_returning())
                .get_result(conn),
        )
        .await
        .map_err(email_taken)?;
        outbox::record(conn, service(), event).await?;
        Ok(row.into())
    })
    .await
}

/// Inserts `user` unless its id or email already exists; records `event` only when
/// it did insert. `None` means nothing was inserted.
pub async fn insert_user_if_absent(
    conn: &mut AsyncPgConnection,
    user: &NewUser,
    event: NewAuditEvent,
) -> Result<Option<User>, Error> {
    conn.transaction::<_, Error, _>(async |conn| {
        let row: Option<UserRow> = traced("users.insert_if_absent", async {
            diesel::insert_into(users::table)
                .values(insertable(user))
                .on_conflict_do_nothing()
                .returning(UserRow::as_returning())
                .get_result(conn)
                .await
                .optional()
        })
        .await?;
        if row.is_some() {
            outbox::record(conn, service(), event).await?;
        }
        Ok(row.map(User::from))
    })
    .await
}

#[derive(Insertable)]
#[diesel(table_name = users)]
struct NewUserRow<'a> {
    id: Uuid,
    email: &'a str,
    display_name: &'a str,
    password_hash: &'a str,
}

fn insertable(user: &NewUser) -> NewUserRow<'_> {
    NewUserRow {
        id: user.id,
        email: user.email.as_str(),
        display_name: user.display_name.as_str(),
        password_hash: &user.password_hash,
    }
}

fn email_taken(error: DbError) -> Error {
    match &error {
        DbError::Query(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info))
            if info.constraint_name() == Some(EMAIL_INDEX) =>
        {
            Error::EmailTaken
        }
        _ => error.into(),
    }
}

pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> Result<Option<User>, Error> {
    let row: Option<UserRow> = traced("users.find", async {
        users::table
            .find(id)
            .select(UserRow::as_select())
            .first(conn)
            .await
            .optional()
    })
    .await?;
    Ok(row.map(User::from))
}

/// The user registered under `normalized_email` (already lowercased), if any.
pub async fn find_by_email(
    conn: &mut AsyncPgConnection,
    normalized_email: &str,
) -> Result<Option<User>, Error> {
    let row: Option<UserRow> = traced("users.find_by_email", async {
        users::table
            .filter(lower(users::email).eq(normalized_email))
            .select(UserRow::as_select())
            .first(conn)
            .await
            .optional()
    })
    .await?;
    Ok(row.map(User::from))
}

/// Id, hash and state of the user registered under `normalized_email`, if any.
pub async fn credentials(
    conn: &mut AsyncPgConnection,
    normalized_email: &str,
) -> Result<Option<StoredCredentials>, Error> {
    Ok(traced("users.credentials", async {
        users::table
            .filter(lower(users::email).eq(normalized_email))
            .select((users::id, users::password_hash, users::active))
            .first(conn)
            .await
            .optional()
    })
    .await?)
}

/// Sets a user's display name and records `event`; `None` when there is no such user.
pub async fn update_display_name(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    display_name: &str,
    event: NewAuditEvent,
) -> Result<Option<User>, Error> {
    conn.transaction::<_, Error, _>(async |conn| {
        let row: Option<UserRow> = traced("users.update_display_name", async {
            diesel::update(users::table.find(id))
                .set((
                    users::display_name.eq(display_name),
                    users::updated_at.eq(diesel::dsl::now),
                ))
                .returning(UserRow::as_returning())
                .get_result(conn)
                .await
                .optional()
        })
        .await?;
        if row.is_some() {
            outbox::record(conn, service(), event).await?;
        }
        Ok(row.map(User::from))
    })
    .await
}

/// Deactivates a user (a no-op for an inactive one) and records the event that
/// `event` builds from whether the user was active; `None` when there is no such user.
pub async fn deactivate(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    event: impl FnOnce(bool) -> NewAuditEvent + Send,
) -> Result<Option<User>, Error> {
    conn.transaction::<_, Error, _>(async |conn| {
        let row: Option<UserRow> = traced("users.deactivate", async {
            diesel::update(users::table.find(id))
                .set((
                    users::active.eq(false),
                    users::updated_at.eq(diesel::dsl::now),
                ))
                .filter(users::active.eq(true))
                .returning(UserRow::as_returning())
                .get_result(conn)
                .await
                .optional()
        })
        .await?;
        // Not updated: already inactive, or no such user.
        let (user, was_active) = match row {
            Some(row) => (User::from(row), true),
            None => match find(conn, id).await? {
                Some(user) => (user, false),
                None => return Ok(None),
            },
        };
        outbox::record(conn, service(), event(was_active)).await?;
        Ok(Some(user))
    })
    .await
}

/// Replaces a user's password hash; `false` when there is no such user.
pub async fn set_password_hash(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    password_hash: &str,
) -> Result<bool, Error> {
    let updated = traced(
        "users.set_password_hash",
        diesel::update(users::table.find(id))
            .set((
                users::password_hash.eq(password_hash),
                users::updated_at.eq(diesel::dsl::now),
            ))
            .execute(conn),
    )
    .await?;
    Ok(updated == 1)
}

/// Marks a user's email verified; `None` when there is no such user.
pub async fn mark_email_verified(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<Option<User>, Error> {
    let row: Option<UserRow> = traced("users.mark_email_verified", async {
        diesel::update(users::table.find(id))
            .set((
                users::email_verified.eq(true),
                users::updated_at.eq(diesel::dsl::now),
            ))
            .returning(UserRow::as_returning())
            .get_result(conn)
            .await
            .optional()
    })
    .await?;
    Ok(row.map(User::from))
}

/// Sets whether a user's logins need a second factor; `None` when there is no such user.
pub async fn set_mfa_enabled(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    enabled: bool,
) -> Result<Option<User>, Error> {
    let row: Option<UserRow> = traced("users.set_mfa_enabled", async {
        diesel::update(users::table.find(id))
            .set((
                users::mfa_enabled.eq(enabled),
                users::updated_at.eq(diesel::dsl::now),
            ))
            .returning(UserRow::as_returning())
            .get_result(conn)
            .await
            .optional()
    })
    .await?;
    Ok(row.map(User::from))
}

/// Records an event that goes with no change (a refused attempt).
pub async fn record(conn: &mut AsyncPgConnection, event: NewAuditEvent) -> Result<(), Error> {
    outbox::record(conn, service(), event).await?;
    Ok(())
}
