//! Test support for service crates (feature `testing`): a fresh database per test in
//! a real Postgres, the test Redis, and a service started in-process on free ports.
//!
//! The Postgres comes from `BULWARK_TEST_PG_URL` (a superuser URL), the Redis from
//! `BULWARK_TEST_REDIS_URL`; the README's test command starts private ones and sets
//! them.

use std::net::SocketAddr;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::EmbeddedMigrations;
use secrecy::SecretString;

use crate::config::{DatabaseConfig, KernelConfig, Settings};
use crate::{GrpcServices, Kernel, Running, ServiceSpec};

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
}
