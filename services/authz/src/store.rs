//! Diesel queries of the `authz` schema. Every change of `roles` or `role_grants` bumps
//! `policy_version` through a statement trigger (see the migration).

use bulwark_kernel::db::{DbError, traced};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::{policy_version, role_grants, roles};

/// A stored role.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = roles, check_for_backend(diesel::pg::Pg))]
pub struct RoleRow {
    pub name: String,
    pub permissions: Vec<String>,
    pub created_at: DateTime<Utc>,
}

/// The current policy version (bumped by every change of roles or grants).
pub async fn policy_version(conn: &mut AsyncPgConnection) -> Result<i64, DbError> {
    traced(
        "policy_version.get",
        policy_version::table
            .select(policy_version::version)
            .first(conn),
    )
    .await
}

/// The permission texts of every role `user` holds (may repeat).
pub async fn granted_permissions(
    conn: &mut AsyncPgConnection,
    user: Uuid,
) -> Result<Vec<String>, DbError> {
    let lists: Vec<Vec<String>> = traced(
        "grants.permissions",
        role_grants::table
            .inner_join(roles::table)
            .filter(role_grants::user_id.eq(user))
            .select(roles::permissions)
            .load(conn),
    )
    .await?;
    Ok(lists.into_iter().flatten().collect())
}

/// The roles `user` holds, by name.
pub async fn user_roles(conn: &mut AsyncPgConnection, user: Uuid) -> Result<Vec<RoleRow>, DbError> {
    traced(
        "grants.roles",
        role_grants::table
            .inner_join(roles::table)
            .filter(role_grants::user_id.eq(user))
            .order(roles::name)
            .select(RoleRow::as_select())
            .load(conn),
    )
    .await
}

/// The roles among `names` that exist, with their permissions.
pub async fn roles_named(
    conn: &mut AsyncPgConnection,
    names: &[String],
) -> Result<Vec<RoleRow>, DbError> {
    traced(
        "roles.by_name",
        roles::table
            .filter(roles::name.eq_any(names))
            .order(roles::name)
            .select(RoleRow::as_select())
            .load(conn),
    )
    .await
}

/// Creates a role; `None` when the name is taken.
pub async fn insert_role(
    conn: &mut AsyncPgConnection,
    name: &str,
    permissions: &[String],
) -> Result<Option<RoleRow>, DbError> {
    traced("roles.insert", async {
        diesel::insert_into(roles::table)
            .values((roles::name.eq(name), roles::permissions.eq(permissions)))
            .on_conflict_do_nothing()
            .returning(RoleRow::as_returning())
            .get_result(conn)
            .await
            .optional()
    })
    .await
}

/// Sets the permissions of an existing role unless they already are `permissions`;
/// whether anything changed.
pub async fn set_role_permissions(
    conn: &mut AsyncPgConnection,
    name: &str,
    permissions: &[String],
) -> Result<bool, DbError> {
    let changed = traced(
        "roles.set_permissions",
        diesel::update(
            roles::table
                .filter(roles::name.eq(name))
                .filter(roles::permissions.ne(permissions)),
        )
        .set(roles::permissions.eq(permissions))
        .execute(conn),
    )
    .await?;
    Ok(changed > 0)
}

/// Whether the role exists; with `lock`, its row stays locked until the transaction
/// ends, which serialises every grant change of that role (grants take a key-share
/// lock on it through their foreign key).
pub async fn role_exists(
    conn: &mut AsyncPgConnection,
    name: &str,
    lock: bool,
) -> Result<bool, DbError> {
    let query = roles::table
        .filter(roles::name.eq(name))
        .select(roles::name);
    let found: Option<String> = if lock {
        traced("roles.lock", async {
            query.for_update().first(conn).await.optional()
        })
        .await?
    } else {
        traced("roles.exists", async { query.first(conn).await.optional() }).await?
    };
    Ok(found.is_some())
}

/// Grants `role` to `user`; whether it was new.
pub async fn insert_grant(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    role: &str,
) -> Result<bool, DbError> {
    let inserted = traced(
        "grants.insert",
        diesel::insert_into(role_grants::table)
            .values((role_grants::user_id.eq(user), role_grants::role.eq(role)))
            .on_conflict_do_nothing()
            .execute(conn),
    )
    .await?;
    Ok(inserted > 0)
}

/// Takes `role` from `user`; whether they held it.
pub async fn delete_grant(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    role: &str,
) -> Result<bool, DbError> {
    let deleted = traced(
        "grants.delete",
        diesel::delete(
            role_grants::table
                .filter(role_grants::user_id.eq(user))
                .filter(role_grants::role.eq(role)),
        )
        .execute(conn),
    )
    .await?;
    Ok(deleted > 0)
}

/// Whether `user` holds `role`.
pub async fn holds(conn: &mut AsyncPgConnection, user: Uuid, role: &str) -> Result<bool, DbError> {
    traced(
        "grants.holds",
        diesel::select(diesel::dsl::exists(
            role_grants::table
                .filter(role_grants::user_id.eq(user))
                .filter(role_grants::role.eq(role)),
        ))
        .get_result(conn),
    )
    .await
}

/// How many users hold `role`.
pub async fn count_holders(conn: &mut AsyncPgConnection, role: &str) -> Result<i64, DbError> {
    traced(
        "grants.count_holders",
        role_grants::table
            .filter(role_grants::role.eq(role))
            .count()
            .get_result(conn),
    )
    .await
}
