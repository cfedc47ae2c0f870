//! Starting Audit on a fresh database, signing test tokens, building events, and fakes
//! of the services Audit talks to (Auth's JWKS, Authz).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use bulwark_audit::{Deps, MIGRATIONS, SPEC, app_with};
use bulwark_kernel::Running;
use bulwark_kernel::caller::{KeySource, TokenVerifier};
use bulwark_kernel::clients::AuthzApi;
use bulwark_kernel::config::DatabaseConfig;
use bulwark_kernel::testing::{fresh_database, settings, start};
use bulwark_kernel::tonic::transport::Channel;
use bulwark_kernel::tonic::{Code, Request, Status};
use bulwark_proto::audit::v1::audit_service_client::AuditServiceClient;
use bulwark_proto::audit::v1::{AppendEventsRequest, AppendEventsResponse, AuditEvent, Outcome};
use bulwark_proto::authz::v1::ListUserRolesResponse;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures::future::BoxFuture;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::ExposeSecret as _;
use uuid::Uuid;

/// A throwaway Ed25519 key generated for these tests only.
const TEST_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIMC3COQdMrDNY+dlDhgmhJ7KIcX4xmNKfN6BF/Hgnmqd\n-----END PRIVATE KEY-----\n";
const TEST_KID: &str = "test-key";

fn signing_key() -> EncodingKey {
    EncodingKey::from_ed_pem(TEST_KEY_PEM.as_bytes())
        .unwrap_or_else(|e| panic!("test key does not load: {e}"))
}

/// Auth's JWKS, faked: the test key only.
struct TestKeys;

impl KeySource for TestKeys {
    fn fetch(&self) -> BoxFuture<'_, Result<Vec<Jwk>, String>> {
        Box::pin(async {
            let mut jwk = Jwk::from_encoding_key(&signing_key(), Algorithm::EdDSA)
                .map_err(|e| e.to_string())?;
            jwk.common.key_id = Some(TEST_KID.to_owned());
            Ok(vec![jwk])
        })
    }
}

/// `message` with a valid bearer token for `user`.
pub fn as_user<T>(user: Uuid, message: T) -> Request<T> {
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({
        "iss": "bulwark", "aud": "bulwark-api", "sub": user.to_string(),
        "iat": now, "exp": now + 600, "jti": Uuid::new_v4().to_string(),
    });
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(TEST_KID.to_owned());
    let token = jsonwebtoken::encode(&header, &claims, &signing_key())
        .unwrap_or_else(|e| panic!("cannot sign a test token: {e}"));
    let mut request = Request::new(message);
    let value = format!("Bearer {token}")
        .parse()
        .unwrap_or_else(|e| panic!("header: {e}"));
    request.metadata_mut().insert("authorization", value);
    request
}

/// Authz, faked: `audit:read` for the users listed in `readers`, nothing else.
#[derive(Debug, Default)]
pub struct FakeAuthz {
    pub readers: Mutex<HashSet<String>>,
}

impl AuthzApi for FakeAuthz {
    fn check(&self, subject: String, permission: String) -> BoxFuture<'_, Result<bool, Status>> {
        let allowed =
            permission == "audit:read" && self.readers.lock().is_ok_and(|r| r.contains(&subject));
        Box::pin(async move { Ok(allowed) })
    }

    fn list_user_roles(
        &self,
        _user_id: String,
    ) -> BoxFuture<'_, Result<ListUserRolesResponse, Status>> {
        Box::pin(async { Err(Status::unimplemented("not used by Audit")) })
    }
}

/// One Audit instance served in-process, and a user allowed to read the log.
pub struct TestAudit {
    pub client: AuditServiceClient<Channel>,
    pub reader: Uuid,
    pub database: DatabaseConfig,
    running: Option<Running>,
}

impl TestAudit {
    pub async fn start() -> Self {
        let database = fresh_database(SPEC.name)
            .await
            .unwrap_or_else(|e| panic!("no test database: {e}"));
        let reader = Uuid::new_v4();
        let authz = Arc::new(FakeAuthz::default());
        if let Ok(mut readers) = authz.readers.lock() {
            readers.insert(reader.to_string());
        }
        let settings = settings(&SPEC, database.clone(), |_| {}, &[]);
        let (running, _kernel) = start(settings, MIGRATIONS, |kernel| {
            let deps = Deps {
                verifier: Arc::new(TokenVerifier::new(TestKeys, kernel.config().tokens.clone())),
                authz,
            };
            app_with(kernel, deps)
        })
        .await
        .unwrap_or_else(|e| panic!("audit did not start: {e:#}"));
        let client = AuditServiceClient::connect(format!("http://{}", running.grpc_addr))
            .await
            .unwrap_or_else(|e| panic!("cannot connect to audit: {e}"));
        Self {
            client,
            reader,
            database,
            running: Some(running),
        }
    }

    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }

    /// A direct connection to the test database as its superuser, on Audit's schema.
    pub async fn sql(&self) -> AsyncPgConnection {
        let url = format!(
            "{}?options=-c%20search_path%3D{}",
            self.database.url.expose_secret(),
            SPEC.name
        );
        AsyncPgConnection::establish(&url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test database: {e}"))
    }

    pub async fn append(&self, events: Vec<AuditEvent>) -> AppendEventsResponse {
        self.client
            .clone()
            .append_events(AppendEventsRequest { events })
            .await
            .unwrap_or_else(|s| panic!("append failed: {s:?}"))
            .into_inner()
    }
}

/// A valid event with a fresh v7 id, occurring `seconds` after a fixed instant.
pub fn event(actor_id: &str, action: &str, seconds: i64) -> AuditEvent {
    AuditEvent {
        id: Uuid::now_v7().to_string(),
        occurred_at: Some(prost_types::Timestamp {
            seconds: 1_800_000_000 + seconds,
            nanos: 987_654_321,
        }),
        service: "auth".to_owned(),
        actor_id: actor_id.to_owned(),
        action: action.to_owned(),
        target: format!("user:{actor_id}"),
        outcome: Outcome::Success as i32,
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".to_owned(),
        details: r#"{"reason":"test"}"#.to_owned(),
    }
}

/// Asserts `result` failed with `code` and a message starting with `prefix`.
pub fn assert_status<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
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
