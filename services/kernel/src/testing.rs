//! Test support for service crates (feature `testing`): a fresh database per test in
//! a real Postgres, the test Redis, and a service started in-process on free ports.
//!
//! The Postgres comes from `BULWARK_TEST_PG_URL` (a superuser URL), the Redis from
//! `BULWARK_TEST_REDIS_URL`; the README's test command starts private ones and sets
//! them.

use std::net::SocketAddr;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use secrecy::SecretString;

use crate::config::{DatabaseConfig, KernelConfig, Settings};
use crate::{GrpcServices, Kernel, Running, Schema, ServiceSpec};

/// The variable naming the superuser URL of the Postgres that tests use.
pub const TEST_PG_URL_ENV: &str = "BULWARK_TEST_PG_URL";

/// The variable naming the Redis that tests use.
pub const TEST_REDIS_URL_ENV: &str = "BULWARK_TEST_REDIS_URL";

/// The test Redis's URL; a missing variable is an error saying how to set it.
pub fn test_redis_url() -> anyhow::Result<String> {
    std::env::var(TEST_REDIS_URL_ENV).map_err(|_| {
        anyhow::anyhow!(
            "{TEST_REDIS_URL_ENV} is not set. Run the tests with `deploy/local/mesh test` \
             (it starts a private Redis), or set {TEST_REDIS_URL_ENV} to a Redis URL such as \
             redis://127.0.0.1:6379"
        )
    })
}

fn test_pg_url() -> anyhow::Result<String> {
    std::env::var(TEST_PG_URL_ENV).map_err(|_| {
        anyhow::anyhow!(
            "{TEST_PG_URL_ENV} is not set. Run the tests with `deploy/local/mesh test` \
             (it starts a private Postgres), or set {TEST_PG_URL_ENV} to a superuser URL \
             such as postgres://postgres@127.0.0.1:5432/postgres"
        )
    })
}

/// Creates an empty database for one test, owned by a role of its own
/// (`test_<id>_owner`), and a runtime role (`test_<id>_svc`) that owns nothing, as
/// the mesh command provisions them. The configuration connects as the runtime role
/// and names the owner as `owner_url`: [`start`] migrates as the owner, so every
/// service test runs with exactly the privileges of the service's `grants.sql`.
pub async fn fresh_database(schema: &str) -> anyhow::Result<DatabaseConfig> {
    let admin_url = test_pg_url()?;
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let (owner, runtime) = (format!("{name}_owner"), format!("{name}_svc"));
    let password = uuid::Uuid::new_v4().simple().to_string();
    let mut conn = AsyncPgConnection::establish(&admin_url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the test Postgres at {TEST_PG_URL_ENV}: {e}"))?;
    for role in [&owner, &runtime] {
        diesel::sql_query(format!(
            "CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'"
        ))
        .execute(&mut conn)
        .await?;
    }
    diesel::sql_query(format!("CREATE DATABASE \"{name}\" OWNER \"{owner}\""))
        .execute(&mut conn)
        .await?;
    Ok(DatabaseConfig {
        url: SecretString::from(with_login(&admin_url, &runtime, &password, &name)),
        owner_url: Some(SecretString::from(with_login(
            &admin_url, &owner, &password, &name,
        ))),
        schema: schema.to_owned(),
        max_connections: 5,
        connect_timeout_ms: 2_000,
    })
}

/// A connection to `database`'s test database as the Postgres superuser, on its
/// schema: for tests that play an operator (or an attacker with the database).
pub async fn superuser_connection(database: &DatabaseConfig) -> anyhow::Result<AsyncPgConnection> {
    use secrecy::ExposeSecret as _;
    let admin_url = test_pg_url()?;
    let name = database_name(database.url.expose_secret())
        .ok_or_else(|| anyhow::anyhow!("the test database URL names no database"))?;
    let url = format!(
        "{}{}options=-c%20search_path%3D{}",
        with_database(&admin_url, name),
        if admin_url.contains('?') { '&' } else { '?' },
        database.schema
    );
    AsyncPgConnection::establish(&url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to the test database as superuser: {e}"))
}

/// The privileges the runtime role (the user of `database.url`) holds on the tables
/// and sequences of its schema, as `table: PRIVILEGE, ...` lines in name order: what a
/// service's `grants.sql` gave it, read back from the catalog.
pub async fn runtime_privileges(database: &DatabaseConfig) -> anyhow::Result<Vec<String>> {
    use diesel::sql_types::Text;
    use secrecy::ExposeSecret as _;
    #[derive(diesel::QueryableByName)]
    struct Line {
        #[diesel(sql_type = Text)]
        line: String,
    }
    let role = crate::schema::url_user(database.url.expose_secret())
        .ok_or_else(|| anyhow::anyhow!("the test database URL names no user"))?;
    let mut conn = superuser_connection(database).await?;
    let lines: Vec<Line> = diesel::sql_query(
        "SELECT c.relname || ': ' || string_agg(p.privilege, ', ' ORDER BY p.privilege) AS line \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, \
              unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', \
                           'REFERENCES', 'TRIGGER', 'USAGE']) AS p(privilege) \
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'S') \
           AND CASE WHEN c.relkind = 'S' \
                    THEN p.privilege IN ('SELECT', 'UPDATE', 'USAGE') \
                         AND has_sequence_privilege($2, c.oid, p.privilege) \
                    ELSE p.privilege <> 'USAGE' \
                         AND has_table_privilege($2, c.oid, p.privilege) END \
         GROUP BY c.relname ORDER BY c.relname",
    )
    .bind::<Text, _>(&database.schema)
    .bind::<Text, _>(&role)
    .load(&mut conn)
    .await?;
    Ok(lines.into_iter().map(|l| l.line).collect())
}

/// Runs `sql` as the runtime role on its schema and returns Postgres's refusal;
/// an error unless Postgres refused it for want of privilege (SQLSTATE 42501).
pub async fn refused_to_runtime_role(
    database: &DatabaseConfig,
    sql: &str,
) -> anyhow::Result<String> {
    use secrecy::ExposeSecret as _;
    let url = crate::db::schema_bound_url(
        database.url.expose_secret(),
        &database.schema,
        "bulwark-test-privileges",
    );
    let mut conn = AsyncPgConnection::establish(&url).await?;
    // Inside a transaction that is rolled back, so a statement that wrongly succeeds
    // changes nothing for the next check.
    diesel::sql_query("BEGIN").execute(&mut conn).await?;
    let outcome = diesel::sql_query(sql).execute(&mut conn).await;
    let _ = diesel::sql_query("ROLLBACK").execute(&mut conn).await;
    match outcome {
        Ok(_) => anyhow::bail!("the runtime role was allowed to run `{sql}`"),
        Err(diesel::result::Error::DatabaseError(_, info))
            if is_insufficient_privilege(info.message()) =>
        {
            Ok(info.message().to_owned())
        }
        Err(other) => anyhow::bail!("`{sql}` failed, but not for want of privilege: {other}"),
    }
}

/// The runtime role of a migrated `database` holds exactly `expected` (as
/// [`runtime_privileges`] lists them) and Postgres refuses it every statement of
/// `refused` for want of privilege.
#[allow(clippy::panic, reason = "a test assertion")]
pub async fn assert_least_privilege(
    database: &DatabaseConfig,
    expected: &[&str],
    refused: &[&str],
) {
    let held = runtime_privileges(database)
        .await
        .unwrap_or_else(|e| panic!("reading the runtime role's privileges: {e:#}"));
    assert_eq!(held, expected, "the runtime role's privileges");
    for sql in refused {
        if let Err(error) = refused_to_runtime_role(database, sql).await {
            panic!("{error:#}");
        }
    }
}

/// Postgres's messages for SQLSTATE 42501 (diesel does not expose the code).
fn is_insufficient_privilege(message: &str) -> bool {
    message.starts_with("permission denied") || message.starts_with("must be owner of")
}

/// The database of `postgres://u@h:p/<name>?x`.
fn database_name(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let path = rest.split_once('/')?.1;
    path.split('?').next().filter(|name| !name.is_empty())
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

/// `postgres://admin:pw@h:p/old?x` → `postgres://<user>:<password>@h:p/<name>?x`.
fn with_login(url: &str, user: &str, password: &str, name: &str) -> String {
    let url = with_database(url, name);
    let Some((scheme, rest)) = url.split_once("://") else {
        return url;
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    format!("{scheme}://{user}:{password}@{host}{tail}")
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

/// Migrates `schema` as its owner (`database.owner_url`, as `bulwark-<svc> migrate`
/// does), boots the kernel as the runtime role, builds the app and serves it;
/// returns the running service and the kernel its handlers got.
pub async fn start<F, Fut>(
    settings: Settings,
    schema: Schema,
    build: F,
) -> anyhow::Result<(Running, Kernel)>
where
    F: FnOnce(Kernel) -> Fut,
    Fut: Future<Output = anyhow::Result<GrpcServices>>,
{
    crate::schema::migrate(
        &settings.kernel.database,
        schema,
        "bulwark-test-migrate",
        std::time::Duration::from_secs(5),
    )
    .await?;
    let kernel = Kernel::boot(settings, schema).await?;
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

/// A Redis URL nobody listens on (a loopback port just bound and released), for
/// testing what happens while Redis is down.
#[allow(
    clippy::panic,
    reason = "a loopback port that cannot be bound is a broken test host"
)]
pub fn closed_redis_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("cannot bind a loopback port: {e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("no local address: {e}"))
        .port();
    drop(listener);
    format!("redis://127.0.0.1:{port}")
}

/// A rate-limit domain of its own for one test, so tests sharing a Redis never
/// count into each other's buckets.
pub fn unique_domain(test: &str) -> String {
    format!("test-{test}-{}", uuid::Uuid::new_v4().simple())
}

/// A throwaway Ed25519 key made for tests only.
const TEST_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIMC3COQdMrDNY+dlDhgmhJ7KIcX4xmNKfN6BF/Hgnmqd\n-----END PRIVATE KEY-----\n";
/// The `kid` of the test key.
pub const TEST_KID: &str = "test-key";

/// Access tokens as Auth issues them, signed by a test key, with the matching JWKS
/// for a [`crate::caller::TokenVerifier`].
#[derive(Clone)]
pub struct TestTokens {
    key: jsonwebtoken::EncodingKey,
}

impl std::fmt::Debug for TestTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestTokens")
    }
}

impl Default for TestTokens {
    fn default() -> Self {
        Self::new()
    }
}

impl TestTokens {
    #[allow(
        clippy::panic,
        reason = "a constant test key that does not load is a bug"
    )]
    pub fn new() -> Self {
        let key = jsonwebtoken::EncodingKey::from_ed_pem(TEST_KEY_PEM.as_bytes())
            .unwrap_or_else(|e| panic!("the test key does not load: {e}"));
        Self { key }
    }

    /// The JWKS holding the test key, as Auth would publish it.
    pub fn key_source(&self) -> impl crate::caller::KeySource + 'static {
        StaticJwks(self.key.clone())
    }

    /// A verifier over the test key with the kernel's default token settings.
    pub fn verifier(&self) -> std::sync::Arc<crate::caller::TokenVerifier> {
        let tokens = KernelConfig::defaults(&ServiceSpec::new("test", 0, 0)).tokens;
        std::sync::Arc::new(crate::caller::TokenVerifier::new(self.key_source(), tokens))
    }

    /// A valid 10-minute token for `user` with the default issuer and audience.
    pub fn token(&self, user: uuid::Uuid) -> String {
        let now = chrono::Utc::now().timestamp();
        self.sign(&serde_json::json!({
            "iss": "bulwark", "aud": "bulwark-api", "sub": user.to_string(),
            "iat": now, "exp": now + 600, "jti": uuid::Uuid::new_v4().to_string(),
        }))
    }

    /// A valid 10-minute token for the service account `client_id` carrying
    /// `permissions`, as Auth issues them for the client-credentials grant.
    pub fn client_token(&self, client_id: &str, permissions: &[&str]) -> String {
        let now = chrono::Utc::now().timestamp();
        self.sign(&serde_json::json!({
            "iss": "bulwark", "aud": "bulwark-api", "sub": format!("client:{client_id}"),
            "iat": now, "exp": now + 600, "jti": uuid::Uuid::new_v4().to_string(),
            "permissions": permissions,
        }))
    }

    /// `message` with `authorization: Bearer <token of the service account>`.
    #[allow(clippy::panic, reason = "a JWT is always a valid header value")]
    pub fn client_request<T>(
        &self,
        client_id: &str,
        permissions: &[&str],
        message: T,
    ) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        let value = format!("Bearer {}", self.client_token(client_id, permissions))
            .parse()
            .unwrap_or_else(|e| panic!("header: {e}"));
        request.metadata_mut().insert("authorization", value);
        request
    }

    /// Signs arbitrary claims (for expired, wrong-audience... cases).
    #[allow(clippy::panic, reason = "signing with a valid test key cannot fail")]
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(TEST_KID.to_owned());
        jsonwebtoken::encode(&header, claims, &self.key)
            .unwrap_or_else(|e| panic!("cannot sign a test token: {e}"))
    }

    /// `message` with `authorization: Bearer <token for user>`.
    #[allow(clippy::panic, reason = "a JWT is always a valid header value")]
    pub fn request<T>(&self, user: uuid::Uuid, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        let value = format!("Bearer {}", self.token(user))
            .parse()
            .unwrap_or_else(|e| panic!("header: {e}"));
        request.metadata_mut().insert("authorization", value);
        request
    }
}

struct StaticJwks(jsonwebtoken::EncodingKey);

impl crate::caller::KeySource for StaticJwks {
    fn fetch(
        &self,
    ) -> futures::future::BoxFuture<'_, Result<Vec<bulwark_proto::auth::v1::Jwk>, String>> {
        Box::pin(async move {
            let jwk =
                jsonwebtoken::jwk::Jwk::from_encoding_key(&self.0, jsonwebtoken::Algorithm::EdDSA)
                    .map_err(|e| e.to_string())?;
            let json = serde_json::to_value(&jwk).map_err(|e| e.to_string())?;
            let member = |name: &str| json.get(name).and_then(|v| v.as_str()).map(str::to_owned);
            Ok(vec![bulwark_proto::auth::v1::Jwk {
                kid: TEST_KID.to_owned(),
                kty: member("kty").unwrap_or_default(),
                alg: member("alg").unwrap_or_default(),
                r#use: "sig".to_owned(),
                crv: member("crv"),
                x: member("x"),
                y: None,
                n: None,
                e: None,
            }])
        })
    }
}

/// Audit, faked in-process: keeps what the outbox relay delivers.
#[derive(Debug, Default)]
pub struct FakeAudit {
    pub events: std::sync::Mutex<Vec<bulwark_proto::audit::v1::AuditEvent>>,
}

impl FakeAudit {
    /// The delivered events so far.
    pub fn delivered(&self) -> Vec<bulwark_proto::audit::v1::AuditEvent> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

impl crate::clients::AuditApi for FakeAudit {
    fn append_events(
        &self,
        events: Vec<bulwark_proto::audit::v1::AuditEvent>,
    ) -> futures::future::BoxFuture<
        '_,
        Result<bulwark_proto::audit::v1::AppendEventsResponse, tonic::Status>,
    > {
        let appended = i32::try_from(events.len()).unwrap_or(i32::MAX);
        if let Ok(mut stored) = self.events.lock() {
            stored.extend(events);
        }
        Box::pin(async move {
            Ok(bulwark_proto::audit::v1::AppendEventsResponse {
                appended,
                duplicates: 0,
            })
        })
    }
}

/// `request` with every header that once made a call look internal or edge-vetted, or
/// that names a user: the edge's `x-forwarded-for` and `x-envoy-original-path`, and the
/// identity headers `x-bulwark-user-id` and `x-bulwark-roles`, naming `user` an admin.
/// None of them may authenticate anyone.
#[allow(
    clippy::panic,
    reason = "test headers that do not parse are a bug of the test"
)]
pub fn with_edge_headers<T>(
    mut request: tonic::Request<T>,
    path: &str,
    user: impl std::fmt::Display,
) -> tonic::Request<T> {
    let user = user.to_string();
    for (name, value) in [
        ("x-forwarded-for", "203.0.113.9"),
        ("x-envoy-original-path", path),
        ("x-bulwark-user-id", user.as_str()),
        ("x-bulwark-roles", "admin"),
    ] {
        let value = value
            .parse()
            .unwrap_or_else(|e| panic!("header {name}: {value:?}: {e}"));
        request.metadata_mut().insert(name, value);
    }
    request
}

/// Asserts `result` failed with `code` and a message starting with `prefix`.
#[allow(clippy::panic, reason = "a test assertion")]
pub fn assert_status<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: tonic::Code,
    prefix: &str,
    what: &str,
) {
    match result {
        Ok(value) => panic!("{what}: expected {code:?}, got success {value:?}"),
        Err(status) => {
            assert_eq!(status.code(), code, "{what}: wrong code ({status:?})");
            assert!(
                status.message().starts_with(prefix),
                "{what}: message {:?} does not start with {prefix:?}",
                status.message()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn test_tokens_verify_against_their_key_source() {
        let tokens = TestTokens::new();
        let user = uuid::Uuid::new_v4();
        let caller = tokens
            .verifier()
            .verify(&tokens.token(user))
            .await
            .unwrap_or_else(|e| panic!("test token refused: {e}"));
        assert_eq!(caller.user_id(), Some(user));
    }

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

    #[test]
    fn test_roles_log_in_to_the_test_database() {
        assert_eq!(
            with_login(
                "postgres://postgres:pw@127.0.0.1:5432/postgres",
                "r",
                "s",
                "t1"
            ),
            "postgres://r:s@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_login(
                "postgres://postgres@h:1/postgres?sslmode=disable",
                "r",
                "s",
                "t2"
            ),
            "postgres://r:s@h:1/t2?sslmode=disable"
        );
        assert_eq!(
            database_name("postgres://r:s@h:1/t2?sslmode=disable"),
            Some("t2")
        );
    }
}
