//! The service's Postgres pool (diesel-async over bb8), bound to its own schema, with
//! checked at start to be migrated (see [`crate::schema`]), with queries traced as spans.

use std::sync::Arc;
use std::time::Duration;

use diesel::ConnectionError;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::pooled_connection::bb8::{Pool, PooledConnection};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures::future::BoxFuture;
use secrecy::ExposeSecret;
use tracing::Instrument;

use crate::config::DatabaseConfig;
use crate::health::ReadinessCheck;

/// A pooled connection, already on the service's schema.
pub type DbConnection<'a> = PooledConnection<'a, AsyncPgConnection>;

/// Why the database could not be used. Never shown to clients as is.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot connect to Postgres: {0}")]
    Connect(#[from] ConnectionError),
    #[error("no database connection available: {0}")]
    Pool(String),
    #[error("query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("this service has no database")]
    Absent,
    /// The roles are not set up as `migrate` leaves them; the message says what to do.
    #[error("{0}")]
    Roles(String),
}

/// The pool plus the schema every connection is bound to. Services without state
/// (the rate-limit service) get [`Database::absent`], whose every use is an error.
#[derive(Clone)]
pub struct Database {
    pool: Option<Pool<AsyncPgConnection>>,
    schema: Arc<str>,
    max_connections: u32,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("schema", &self.schema)
            .field("state", &self.pool.as_ref().map(Pool::state))
            .finish()
    }
}

/// The connection URL with `search_path` pinned to `schema` for every session, so
/// unqualified table names always mean the service's own tables.
pub(crate) fn schema_bound_url(url: &str, schema: &str, application: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20search_path%3D{schema}&application_name={application}")
}

impl Database {
    /// Checks, as the runtime role, that `schema` is migrated and that the role owns
    /// nothing ([`crate::schema::check_runtime`]), then builds the pool. Retries the
    /// first connection until `wait` has passed, so a service may start before Postgres.
    pub async fn connect(
        config: &DatabaseConfig,
        schema: crate::schema::Schema,
        application: &str,
        wait: Duration,
    ) -> Result<Self, DbError> {
        let url = schema_bound_url(config.url.expose_secret(), &config.schema, application);
        let mut conn = establish_patiently(&url, wait).await?;
        crate::schema::check_runtime(&mut conn, schema, &config.schema, application).await?;
        drop(conn);

        let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(url);
        let pool = Pool::builder()
            .max_size(config.max_connections)
            .connection_timeout(Duration::from_millis(config.connect_timeout_ms))
            .test_on_check_out(true)
            .build(manager)
            .await
            .map_err(|e| DbError::Pool(e.to_string()))?;
        Ok(Self {
            pool: Some(pool),
            schema: config.schema.as_str().into(),
            max_connections: config.max_connections,
        })
    }

    /// No database: for services that keep no state in Postgres.
    pub fn absent() -> Self {
        Self {
            pool: None,
            schema: "".into(),
            max_connections: 0,
        }
    }

    fn pool(&self) -> Result<&Pool<AsyncPgConnection>, DbError> {
        self.pool.as_ref().ok_or(DbError::Absent)
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// A connection from the pool, traced as `db.acquire`.
    pub async fn conn(&self) -> Result<DbConnection<'_>, DbError> {
        self.pool()?
            .get()
            .instrument(tracing::debug_span!("db.acquire", db.system = "postgresql"))
            .await
            .map_err(|e| DbError::Pool(e.to_string()))
    }

    /// Pool gauges for `/metrics`.
    pub fn record_pool_gauges(&self, service: &str) {
        let Some(pool) = &self.pool else { return };
        let state = pool.state();
        let idle = f64::from(state.idle_connections);
        let total = f64::from(state.connections);
        metrics::gauge!("db_pool_connections", "service" => service.to_owned(), "state" => "idle")
            .set(idle);
        metrics::gauge!("db_pool_connections", "service" => service.to_owned(), "state" => "active")
            .set(total - idle);
        metrics::gauge!("db_pool_max_connections", "service" => service.to_owned())
            .set(f64::from(self.max_connections));
    }
}

/// One connection to `url`, retried every half second until `wait` has passed, so a
/// service (or `migrate`) may start before Postgres.
pub(crate) async fn establish_patiently(
    url: &str,
    wait: Duration,
) -> Result<AsyncPgConnection, DbError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut attempt = 1u32;
    loop {
        match AsyncPgConnection::establish(url).await {
            Ok(conn) => return Ok(conn),
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(%error, attempt, "Postgres not reachable yet; retrying");
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// Runs `query` as a span named `db.query` with the operation recorded, so database
/// time shows up under the RPC that caused it.
pub async fn traced<T, F>(operation: &'static str, query: F) -> Result<T, DbError>
where
    F: Future<Output = Result<T, diesel::result::Error>>,
{
    query
        .instrument(tracing::info_span!(
            "db.query",
            db.system = "postgresql",
            db.operation = operation
        ))
        .await
        .map_err(DbError::from)
}

pub(crate) async fn ensure_schema(
    conn: &mut AsyncPgConnection,
    schema: &str,
) -> Result<(), DbError> {
    use diesel::sql_types::{Bool, Text};
    #[derive(diesel::QueryableByName)]
    struct Exists {
        #[diesel(sql_type = Bool)]
        exists: bool,
    }
    let found: Exists = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1) AS exists",
    )
    .bind::<Text, _>(schema)
    .get_result(conn)
    .await?;
    if !found.exists {
        // The schema name is validated as [a-z_][a-z0-9_]* at configuration time.
        diesel::sql_query(format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
            .execute(conn)
            .await?;
        tracing::info!(schema, "created database schema");
    }
    Ok(())
}

impl ReadinessCheck for Database {
    fn name(&self) -> &str {
        "postgres"
    }

    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let mut conn = self.conn().await.map_err(|e| e.to_string())?;
            traced("ping", diesel::sql_query("SELECT 1").execute(&mut conn))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_is_bound_to_the_schema() {
        assert_eq!(
            schema_bound_url("postgres://u:p@h:5432/db", "identity", "bulwark-identity"),
            "postgres://u:p@h:5432/db?options=-c%20search_path%3Didentity&application_name=bulwark-identity"
        );
        assert!(
            schema_bound_url("postgres://h/db?sslmode=disable", "auth", "a")
                .starts_with("postgres://h/db?sslmode=disable&options=")
        );
    }
}
