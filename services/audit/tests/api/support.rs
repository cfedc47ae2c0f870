//! Starting Audit on a fresh database, with the kernel's test tokens standing in for
//! Auth's keys (users' and service accounts') and a fake Authz, building events, and
//! asserting statuses.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use bulwark_audit::{Deps, SCHEMA, SPEC, app_with};
use bulwark_kernel::Running;
use bulwark_kernel::caller::TokenVerifier;
use bulwark_kernel::clients::AuthzApi;
use bulwark_kernel::config::DatabaseConfig;
use bulwark_kernel::testing::{TestTokens, fresh_database, settings, start};
// Shared with the other services' tests: one definition of the forged headers.
pub use bulwark_kernel::testing::{assert_status, with_edge_headers};
use bulwark_kernel::tonic::transport::Channel;
use bulwark_kernel::tonic::{Request, Status};
use bulwark_proto::audit::v1::audit_service_client::AuditServiceClient;
use bulwark_proto::audit::v1::{
    AppendEventsRequest, AppendEventsResponse, AuditEvent, ListEventsRequest, ListEventsResponse,
    Outcome,
};
use bulwark_proto::authz::v1::{ListUserRolesResponse, ResolveRolesResponse};
use diesel_async::AsyncPgConnection;
use futures::future::BoxFuture;
use uuid::Uuid;

/// Authz, faked: `audit:read` for the users listed in `readers`, and the
/// (user, permission) pairs in `grants`; nothing else.
#[derive(Debug, Default)]
pub struct FakeAuthz {
    pub readers: Mutex<HashSet<String>>,
    pub grants: Mutex<HashSet<(String, String)>>,
}

impl FakeAuthz {
    pub fn grant(&self, user: Uuid, permission: &str) {
        if let Ok(mut grants) = self.grants.lock() {
            grants.insert((user.to_string(), permission.to_owned()));
        }
    }
}

impl AuthzApi for FakeAuthz {
    fn check(&self, subject: String, permission: String) -> BoxFuture<'_, Result<bool, Status>> {
        let reads =
            permission == "audit:read" && self.readers.lock().is_ok_and(|r| r.contains(&subject));
        let granted = self
            .grants
            .lock()
            .is_ok_and(|g| g.contains(&(subject, permission)));
        let allowed = reads || granted;
        Box::pin(async move { Ok(allowed) })
    }

    fn list_user_roles(
        &self,
        _user_id: String,
    ) -> BoxFuture<'_, Result<ListUserRolesResponse, Status>> {
        Box::pin(async { Err(Status::unimplemented("not used by Audit")) })
    }

    fn resolve_roles(
        &self,
        _roles: Vec<String>,
    ) -> BoxFuture<'_, Result<ResolveRolesResponse, Status>> {
        Box::pin(async { Err(Status::unimplemented("not used by Audit")) })
    }
}

/// One Audit instance served in-process, and a user allowed to read the log.
pub struct TestAudit {
    pub client: AuditServiceClient<Channel>,
    /// Signs the tokens Audit accepts (`tokens.request(user, message)`).
    pub tokens: TestTokens,
    pub reader: Uuid,
    pub authz: Arc<FakeAuthz>,
    pub database: DatabaseConfig,
    running: Option<Running>,
}

impl TestAudit {
    /// The first page of `ListEvents` with default filters, as the log reader.
    pub async fn first_page(&self) -> ListEventsResponse {
        self.client
            .clone()
            .list_events(
                self.tokens
                    .request(self.reader, ListEventsRequest::default()),
            )
            .await
            .unwrap_or_else(|s| panic!("list failed: {s:?}"))
            .into_inner()
    }

    pub async fn start() -> Self {
        let database = fresh_database(SPEC.name)
            .await
            .unwrap_or_else(|e| panic!("no test database: {e}"));
        let reader = Uuid::new_v4();
        let authz = Arc::new(FakeAuthz::default());
        if let Ok(mut readers) = authz.readers.lock() {
            readers.insert(reader.to_string());
        }
        let tokens = TestTokens::new();
        let settings = settings(&SPEC, database.clone(), |_| {}, &[]);
        let fake_authz = authz.clone();
        let (running, _kernel) = start(settings, SCHEMA, |kernel| {
            let deps = Deps {
                verifier: Arc::new(TokenVerifier::new(
                    tokens.key_source(),
                    kernel.config().tokens.clone(),
                )),
                authz: fake_authz,
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
            tokens,
            reader,
            authz,
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
        bulwark_kernel::testing::superuser_connection(&self.database)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// `message` as an outbox relay sends it: with the token of its service's
    /// built-in client, which carries `audit:append`.
    pub fn as_relay<T>(&self, message: T) -> Request<T> {
        self.tokens
            .client_request("identity", &["audit:append", "roles:read"], message)
    }

    pub async fn append(&self, events: Vec<AuditEvent>) -> AppendEventsResponse {
        self.client
            .clone()
            .append_events(self.as_relay(AppendEventsRequest { events }))
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
