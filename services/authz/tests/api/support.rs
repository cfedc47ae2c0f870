//! Starting Authz on a fresh database, with the kernel's test tokens standing in for
//! Auth's keys and its fake Audit receiving the outbox, and helpers to drive it.

use std::sync::Arc;
use std::time::Duration;

use bulwark_authz::{Deps, SCHEMA, SPEC, app_with};
use bulwark_kernel::Running;
use bulwark_kernel::bootstrap::admin_user_id;
use bulwark_kernel::caller::TokenVerifier;
use bulwark_kernel::clients::AuditApi;
use bulwark_kernel::config::DatabaseConfig;
use bulwark_kernel::testing::{FakeAudit, TestTokens, fresh_database, settings, start};
// Shared with the other services' tests: one definition of the forged headers.
pub use bulwark_kernel::testing::{assert_status, with_edge_headers};
use bulwark_kernel::tonic::Request;
use bulwark_kernel::tonic::transport::Channel;
use bulwark_proto::audit::v1::AuditEvent;
use bulwark_proto::authz::v1::CreateRoleRequest;
use bulwark_proto::authz::v1::authz_service_client::AuthzServiceClient;
use bulwark_proto::authz::v1::{CheckRequest, GrantRoleRequest};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

/// The admin email the tests configure; its user id holds `admin` after start.
pub const ADMIN_EMAIL: &str = "Root@Example.test";

/// One Authz instance, served in-process.
pub struct TestAuthz {
    pub client: AuthzServiceClient<Channel>,
    /// Signs the tokens Authz accepts (`tokens.request(user, message)`).
    pub tokens: TestTokens,
    pub audit: Arc<FakeAudit>,
    pub database: DatabaseConfig,
    pub admin: Uuid,
    running: Option<Running>,
}

impl TestAuthz {
    /// Authz on a fresh database with the default decision-cache TTL.
    pub async fn start() -> Self {
        let database = fresh_database(SPEC.name)
            .await
            .unwrap_or_else(|e| panic!("no test database: {e}"));
        Self::start_on(database, 2_000).await
    }

    /// Authz on `database` (possibly shared with another instance).
    pub async fn start_on(database: DatabaseConfig, cache_ttl_ms: u64) -> Self {
        let audit = Arc::new(FakeAudit::default());
        let tokens = TestTokens::new();
        let settings = settings(
            &SPEC,
            database.clone(),
            |_| {},
            &[
                ("admin_email", ADMIN_EMAIL.into()),
                ("authz.decision_cache_ttl_ms", cache_ttl_ms.into()),
            ],
        );
        let fake_audit: Arc<dyn AuditApi> = audit.clone();
        let (running, _kernel) = start(settings, SCHEMA, |kernel| {
            let deps = Deps {
                verifier: Arc::new(TokenVerifier::new(
                    tokens.key_source(),
                    kernel.config().tokens.clone(),
                )),
                audit: fake_audit,
            };
            app_with(kernel, deps)
        })
        .await
        .unwrap_or_else(|e| panic!("authz did not start: {e:#}"));
        let client = AuthzServiceClient::connect(format!("http://{}", running.grpc_addr))
            .await
            .unwrap_or_else(|e| panic!("cannot connect to authz: {e}"));
        Self {
            client,
            tokens,
            audit,
            database,
            admin: admin_user_id(ADMIN_EMAIL),
            running: Some(running),
        }
    }

    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }

    /// A direct connection to the test database as its superuser, on Authz's schema.
    pub async fn sql(&self) -> AsyncPgConnection {
        bulwark_kernel::testing::superuser_connection(&self.database)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Creates a role as the admin.
    pub async fn create_role(&self, name: &str, permissions: &[&str]) {
        self.client
            .clone()
            .create_role(self.tokens.request(
                self.admin,
                CreateRoleRequest {
                    name: name.to_owned(),
                    permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
                },
            ))
            .await
            .unwrap_or_else(|s| panic!("admin could not create role {name}: {s:?}"));
    }

    /// Grants `role` to `user` as the admin.
    pub async fn grant(&self, user: Uuid, role: &str) {
        self.client
            .clone()
            .grant_role(self.tokens.request(
                self.admin,
                GrantRoleRequest {
                    user_id: user.to_string(),
                    role: role.to_owned(),
                },
            ))
            .await
            .unwrap_or_else(|s| panic!("admin could not grant {role}: {s:?}"));
    }

    /// `message` with the token of the service account `client_id` carrying
    /// `permissions`.
    pub fn as_service<T>(&self, client_id: &str, permissions: &[&str], message: T) -> Request<T> {
        self.tokens.client_request(client_id, permissions, message)
    }

    /// Whether `user` holds `permission`, asked by `user` itself.
    pub async fn allowed(&self, user: Uuid, permission: &str) -> bool {
        self.client
            .clone()
            .check(self.tokens.request(
                user,
                CheckRequest {
                    subject: String::new(),
                    permission: permission.to_owned(),
                },
            ))
            .await
            .unwrap_or_else(|s| panic!("check of {permission} failed: {s:?}"))
            .into_inner()
            .allowed
            .unwrap_or_else(|| panic!("check of {permission} left `allowed` unset"))
    }

    /// The actions of the events in the outbox, oldest first.
    pub async fn outbox_actions(&self) -> Vec<(String, String, String)> {
        use bulwark_kernel::outbox::audit_outbox;
        use diesel::QueryDsl as _;
        use prost::Message as _;
        let mut conn = self.sql().await;
        let rows: Vec<Vec<u8>> = audit_outbox::table
            .order((audit_outbox::occurred_at, audit_outbox::id))
            .select(audit_outbox::event)
            .load(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("cannot read the outbox: {e}"));
        rows.iter()
            .map(|bytes| {
                let event = AuditEvent::decode(bytes.as_slice())
                    .unwrap_or_else(|e| panic!("undecodable outbox event: {e}"));
                (event.action, event.actor_id, event.target)
            })
            .collect()
    }
}

/// Waits up to `timeout` for `condition`.
pub async fn eventually<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
