//! A service's schema and the two roles that use it.
//!
//! The schema belongs to an owner role. Only `bulwark-<svc> migrate` connects as the
//! owner (`database.owner_url`): it applies the embedded migrations, then gives the
//! runtime role (the user of `database.url`) exactly the privileges in the service's
//! `grants.sql`, after taking every other privilege away. The running service connects
//! as the runtime role, which owns nothing: it cannot alter, truncate or drop a table,
//! disable a trigger or create anything, whatever its code is made to do.
//!
//! At start the service checks, as the runtime role, that every embedded migration has
//! run and that the role neither owns its schema nor is a superuser.

use diesel::migration::{Migration, MigrationSource};
use diesel::pg::Pg;
use diesel::sql_types::{Bool, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};
use secrecy::ExposeSecret;

use crate::config::DatabaseConfig;
use crate::db::{DbError, schema_bound_url};

/// Where `grants.sql` names the runtime role.
pub const RUNTIME_ROLE_PLACEHOLDER: &str = "{runtime}";

/// A service's embedded migrations and the privileges its runtime role needs.
#[derive(Clone, Copy)]
pub struct Schema {
    pub migrations: &'static EmbeddedMigrations,
    /// `GRANT` statements, `;`-separated, naming the runtime role as `{runtime}`.
    pub grants: &'static str,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schema")
            .field("grants", &self.grants)
            .finish_non_exhaustive()
    }
}

/// The embedded migrations by reference (the harness takes its source by value).
struct Embedded(&'static EmbeddedMigrations);

impl MigrationSource<Pg> for Embedded {
    fn migrations(&self) -> diesel::migration::Result<Vec<Box<dyn Migration<Pg>>>> {
        MigrationSource::<Pg>::migrations(self.0)
    }
}

/// What `migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    pub applied: Vec<String>,
    pub runtime_role: String,
}

impl Schema {
    pub const fn new(migrations: &'static EmbeddedMigrations, grants: &'static str) -> Self {
        Self { migrations, grants }
    }

    /// The versions of the embedded migrations, oldest first.
    pub fn versions(&self) -> Result<Vec<String>, DbError> {
        let migrations = MigrationSource::<Pg>::migrations(self.migrations)
            .map_err(|e| DbError::Migration(e.to_string()))?;
        Ok(migrations
            .iter()
            .map(|m| m.name().version().to_string())
            .collect())
    }

    /// The grants with the runtime role (quoted) in place of `{runtime}`.
    fn grants_for(&self, role: &str) -> String {
        self.grants
            .replace(RUNTIME_ROLE_PLACEHOLDER, &quote_identifier(role))
    }
}

/// Applies the pending migrations as the owner (`database.owner_url`), each in its own
/// transaction, then resets the runtime role's privileges to the service's grants in one
/// transaction, so no other session sees the role with its privileges half reset.
pub async fn migrate(
    config: &DatabaseConfig,
    schema: Schema,
    application: &str,
    wait: std::time::Duration,
) -> Result<Migrated, DbError> {
    let owner_url = config.owner_url.as_ref().ok_or_else(|| {
        DbError::Roles(
            "database.owner_url is not set: `migrate` connects as the role that owns the \
             schema (BULWARK_DATABASE__OWNER_URL=postgres://<svc>_owner:...@host/db)"
                .to_owned(),
        )
    })?;
    let runtime_role = url_user(config.url.expose_secret()).ok_or_else(|| {
        DbError::Roles("database.url names no user (the runtime role)".to_owned())
    })?;
    let owner_role = url_user(owner_url.expose_secret());
    if owner_role.as_deref() == Some(runtime_role.as_str()) {
        return Err(DbError::Roles(format!(
            "database.url and database.owner_url both connect as {runtime_role}: the service \
             must run as a role that does not own its schema"
        )));
    }
    let url = schema_bound_url(owner_url.expose_secret(), &config.schema, application);
    let mut conn = crate::db::establish_patiently(&url, wait).await?;
    // Replicas started together (Compose, a Nomad group's allocations) each run
    // `migrate`: one at a time, the others then find nothing pending. The lock is the
    // session's and ends with the connection.
    diesel::sql_query("SELECT pg_advisory_lock(hashtext('bulwark-migrate:' || $1))")
        .bind::<Text, _>(&config.schema)
        .execute(&mut conn)
        .await?;
    crate::db::ensure_schema(&mut conn, &config.schema).await?;

    let span =
        tracing::info_span!("db.migrate", db.system = "postgresql", db.schema = %config.schema);
    let migrations = Embedded(schema.migrations);
    let (mut conn, applied) = tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        // The harness blocks internally (block_in_place): run it on a blocking thread.
        let mut harness = diesel_async::AsyncMigrationHarness::new(conn);
        let applied = harness
            .run_pending_migrations(migrations)
            .map(|versions| versions.iter().map(ToString::to_string).collect::<Vec<_>>())
            .map_err(|e| DbError::Migration(e.to_string()));
        (harness.into_inner(), applied)
    })
    .await
    .map_err(|e| DbError::Migration(format!("migration task failed: {e}")))?;
    let applied = applied?;

    let role = quote_identifier(&runtime_role);
    let schema_name = quote_identifier(&config.schema);
    let reset = format!(
        "BEGIN;\n\
         REVOKE ALL ON SCHEMA {schema_name} FROM {role};\n\
         REVOKE ALL ON ALL TABLES IN SCHEMA {schema_name} FROM {role};\n\
         REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema_name} FROM {role};\n\
         GRANT USAGE ON SCHEMA {schema_name} TO {role};\n\
         GRANT SELECT ON __diesel_schema_migrations TO {role};\n\
         {grants}\n\
         COMMIT;",
        grants = schema.grants_for(&runtime_role)
    );
    if let Err(error) = conn.batch_execute(&reset).await {
        let _ = conn.batch_execute("ROLLBACK").await;
        return Err(DbError::Roles(format!(
            "could not grant the runtime role {runtime_role} its privileges on schema {}: {error}",
            config.schema
        )));
    }
    Ok(Migrated {
        applied,
        runtime_role,
    })
}

/// At start, as the runtime role: every embedded migration has run, and the role owns
/// neither the schema nor anything else that would let it undo the grants.
pub async fn check_runtime(
    conn: &mut AsyncPgConnection,
    schema: Schema,
    schema_name: &str,
    application: &str,
) -> Result<(), DbError> {
    #[derive(diesel::QueryableByName)]
    struct Role {
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = Bool)]
        superuser: bool,
        #[diesel(sql_type = Bool)]
        owns_schema: bool,
    }
    let role: Role = diesel::sql_query(
        "SELECT r.rolname::text AS name, r.rolsuper AS superuser, \
                EXISTS (SELECT 1 FROM pg_namespace n \
                        WHERE n.nspname = $1 AND n.nspowner = r.oid) AS owns_schema \
         FROM pg_roles r WHERE r.rolname = current_user",
    )
    .bind::<Text, _>(schema_name)
    .get_result(conn)
    .await?;
    if role.superuser || role.owns_schema {
        let what = if role.superuser {
            "is a superuser".to_owned()
        } else {
            format!("owns schema {schema_name}")
        };
        return Err(DbError::Roles(format!(
            "database.url connects as role {} which {what}: run the service as a role that \
             owns nothing and let `{application} migrate` (database.owner_url) grant it \
             what it needs (README: Database roles)",
            role.name
        )));
    }

    #[derive(diesel::QueryableByName)]
    struct Applied {
        #[diesel(sql_type = Text)]
        version: String,
    }
    let applied: Vec<Applied> =
        match diesel::sql_query("SELECT version::text AS version FROM __diesel_schema_migrations")
            .load(conn)
            .await
        {
            Ok(applied) => applied,
            // No migration has ever run in this schema.
            Err(diesel::result::Error::DatabaseError(_, info))
                if info.message().contains("does not exist") =>
            {
                Vec::new()
            }
            Err(error) => return Err(error.into()),
        };
    let pending: Vec<String> = schema
        .versions()?
        .into_iter()
        .filter(|version| !applied.iter().any(|a| &a.version == version))
        .collect();
    if !pending.is_empty() {
        return Err(DbError::Roles(format!(
            "schema {schema_name} lacks migration(s) {}: run `{application} migrate` \
             (with database.owner_url) before starting the service",
            pending.join(", ")
        )));
    }
    Ok(())
}

/// `"name"` with inner quotes doubled: an SQL identifier, whatever the name holds.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The user of a `postgres://user[:password]@host/...` URL, percent-decoded.
pub fn url_user(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let (userinfo, _host) = authority.rsplit_once('@')?;
    let user = userinfo.split(':').next()?;
    let decoded = percent_decode(user)?;
    (!decoded.is_empty()).then_some(decoded)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_role_is_the_url_user() {
        assert_eq!(
            url_user("postgres://audit_svc:pw@127.0.0.1:5432/bulwark").as_deref(),
            Some("audit_svc")
        );
        assert_eq!(url_user("postgresql://a%40b@h/db").as_deref(), Some("a@b"));
        assert_eq!(url_user("postgres://u@h/db?x=@y").as_deref(), Some("u"));
        assert_eq!(url_user("postgres://h:5432/db"), None);
        assert_eq!(url_user("postgres://:pw@h/db"), None);
        assert_eq!(url_user("postgres://%zz@h/db"), None);
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_identifier("audit_svc"), "\"audit_svc\"");
        assert_eq!(quote_identifier("a\"; DROP"), "\"a\"\"; DROP\"");
    }

    #[test]
    fn grants_name_the_quoted_role() {
        const NONE: EmbeddedMigrations = EmbeddedMigrations::new(&[]);
        let schema = Schema::new(&NONE, "GRANT SELECT ON t TO {runtime};");
        assert_eq!(
            schema.grants_for("x_svc"),
            "GRANT SELECT ON t TO \"x_svc\";"
        );
    }
}
