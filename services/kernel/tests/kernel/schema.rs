//! `migrate` and the checks at start against a real Postgres: the service runs as a
//! role that owns nothing, on a schema that is fully migrated, or not at all.

use bulwark_kernel::config::DatabaseConfig;
use bulwark_kernel::schema::migrate;
use bulwark_kernel::testing::{assert_least_privilege, fresh_database, settings};
use bulwark_kernel::{EmbeddedMigrations, Kernel, Schema, ServiceSpec, embed_migrations};
use std::time::Duration;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("tests/migrations");
const SCHEMA: Schema = Schema::new(&MIGRATIONS, "GRANT SELECT, INSERT ON probe TO {runtime};");
const SPEC: ServiceSpec = ServiceSpec::new("probe", 0, 0);

async fn database() -> DatabaseConfig {
    fresh_database("probe")
        .await
        .unwrap_or_else(|e| panic!("creating the test database: {e:#}"))
}

async fn boot_error(database: DatabaseConfig) -> String {
    match Kernel::boot(settings(&SPEC, database, |_| {}, &[]), SCHEMA).await {
        Ok(_) => panic!("the kernel booted"),
        Err(error) => error.to_string(),
    }
}

#[tokio::test]
async fn an_unmigrated_schema_is_refused_at_start_naming_the_command() {
    let error = boot_error(database().await).await;
    assert!(
        error.contains("lacks migration(s) 20261202000001")
            && error.contains("bulwark-probe migrate"),
        "{error}"
    );
}

#[tokio::test]
async fn a_runtime_role_that_owns_the_schema_is_refused_at_start() {
    let mut database = database().await;
    migrate(&database, SCHEMA, "test", Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("migrate: {e}"));
    database.url = database
        .owner_url
        .clone()
        .unwrap_or_else(|| panic!("no owner url"));
    let error = boot_error(database).await;
    assert!(error.contains("owns schema probe"), "{error}");
}

#[tokio::test]
async fn migrate_needs_the_owner_url_and_two_distinct_roles() {
    let mut database = database().await;
    database.owner_url = None;
    let error = migrate(&database, SCHEMA, "test", Duration::from_secs(5))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("database.owner_url is not set"), "{error}");

    database.owner_url = Some(database.url.clone());
    let error = migrate(&database, SCHEMA, "test", Duration::from_secs(5))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("both connect as"), "{error}");
}

#[tokio::test]
async fn migrate_resets_the_runtime_role_to_exactly_its_grants() {
    let database = database().await;
    migrate(&database, SCHEMA, "test", Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("migrate: {e}"));
    // An operator widened the role by hand; the next migrate takes it back.
    let mut admin = bulwark_kernel::testing::superuser_connection(&database)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let role =
        bulwark_kernel::schema::url_user(secrecy::ExposeSecret::expose_secret(&database.url))
            .unwrap_or_default();
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(format!("GRANT ALL ON probe TO \"{role}\"")),
        &mut admin,
    )
    .await
    .unwrap_or_else(|e| panic!("widening: {e}"));
    let again = migrate(&database, SCHEMA, "test", Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("migrate again: {e}"));
    assert!(again.applied.is_empty(), "{again:?}");
    assert_least_privilege(
        &database,
        &[
            "__diesel_schema_migrations: SELECT",
            "probe: INSERT, SELECT",
        ],
        &["DELETE FROM probe", "TRUNCATE probe", "DROP TABLE probe"],
    )
    .await;
    let kernel = Kernel::boot(settings(&SPEC, database, |_| {}, &[]), SCHEMA)
        .await
        .unwrap_or_else(|e| panic!("boot after migrate: {e}"));
    drop(kernel);
}
