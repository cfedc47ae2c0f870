//! Test support for service crates (feature `testing`): a fresh database per test in
//! a real Postgres, and a service started in-process on free ports.
//!
//! The Postgres comes from `BULWARK_TEST_PG_URL` (a superuser URL); the README's test
//! command starts a private cluster and sets it.

use std::net::SocketAddr;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::EmbeddedMigrations;
use secrecy::SecretString;

use crate::config::{DatabaseConfig, KernelConfig, Settings};
use crate::{GrpcServices, Kernel, Running, ServiceSpec};

/// The variable naming the superuser URL of the Postgres that tests use.
pub const TEST_PG_URL_ENV: &str = "BULWARK_TEST_PG_URL";

/// Creates an empty database for one test and returns a configuration bound to it,
/// with the service's schema.
pub async fn fresh_database(schema: &str) -> anyhow::Result<DatabaseConfig> {
    let admin_url = std::env::var(TEST_PG_URL_ENV).map_err(|_| {
        anyhow::anyhow!(
            "{TEST_PG_URL_ENV} is not set. Run the tests with `deploy/local/mesh test` \
             (it starts a private Postgres), or set {TEST_PG_URL_ENV} to a superuser URL \
             such as postgres://postgres@127.0.0.1:5432/postgres"
        )
    })?;
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = AsyncPgConnection::establish(&admin_url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the test Postgres at {TEST_PG_URL_ENV}: {e}"))?;
    diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await?;
    Ok(DatabaseConfig {
        url: SecretString::from(with_database(&admin_url, &name)),
        schema: schema.to_owned(),
        max_connections: 5,
        connect_timeout_ms: 2_000,
    })
}

/// `postgres://u@h:p/old?x` → `postgres://u@h:p/<name>?x`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{host_part}/{name}?{query}"),
        None => format!("{host_part}/{name}"),
    }
}

/// Settings for an in-process service on free loopback ports with `database`;
/// `tweak` adjusts the kernel configuration, `sections` sets service keys such as
/// `("auth.access_token_ttl_seconds", 60.into())`.
pub fn settings(
    spec: &ServiceSpec,
    database: DatabaseConfig,
    tweak: impl FnOnce(&mut KernelConfig),
    sections: &[(&str, serde_json::Value)],
) -> Settings {
    let mut config = KernelConfig::defaults(spec);
    let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
    config.grpc.listen = any_port;
    config.http.listen = any_port;
    config.database = database;
    tweak(&mut config);
    Settings::from_parts(config, sections)
}

/// Boots the kernel, builds the app and serves it; returns the running service and
/// the kernel its handlers got.
pub async fn start<F, Fut>(
    settings: Settings,
    migrations: EmbeddedMigrations,
    build: F,
) -> anyhow::Result<(Running, Kernel)>
where
    F: FnOnce(Kernel) -> Fut,
    Fut: Future<Output = anyhow::Result<GrpcServices>>,
{
    let kernel = Kernel::boot(settings, migrations).await?;
    let services = build(kernel.clone()).await?;
    let running = kernel.clone().serve(services).await?;
    Ok((running, kernel))
}

/// [`start`] for a service without a database; `settings` may use any database
/// configuration (it is not connected).
pub async fn start_stateless<F, Fut>(
    settings: Settings,
    build: F,
) -> anyhow::Result<(Running, Kernel)>
where
    F: FnOnce(Kernel) -> Fut,
    Fut: Future<Output = anyhow::Result<GrpcServices>>,
{
    let kernel = Kernel::boot_stateless(settings).await?;
    let services = build(kernel.clone()).await?;
    let running = kernel.clone().serve(services).await?;
    Ok((running, kernel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_is_replaced_and_query_kept() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database("postgres://u:p@h:1/db?sslmode=disable", "t2"),
            "postgres://u:p@h:1/t2?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:1", "t3"), "postgres://h:1/t3");
    }
}
