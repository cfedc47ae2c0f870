//! The service started in-process on a fresh database, with fakes for Authz and Audit,
//! bearer tokens signed by the kernel's test key (which the service's verifier trusts),
//! and helpers that read the service's tables directly.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use bulwark_identity::{Dependencies, Passwords};
use bulwark_kernel::caller::TokenVerifier;
use bulwark_kernel::clients::AuthzApi;
use bulwark_kernel::config::DatabaseConfig;
use bulwark_kernel::testing::{FakeAudit, TestTokens, fresh_database, settings, start};
// Shared with the other services' tests: one definition of the forged headers.
pub use bulwark_kernel::testing::with_edge_headers;
use bulwark_kernel::tonic::transport::Channel;
use bulwark_kernel::tonic::{self, Request, Status};
use bulwark_kernel::{Kernel, Running};
use bulwark_proto::audit::v1::AuditEvent;
use bulwark_proto::authz::v1::{ListUserRolesResponse, ResolveRolesResponse};
use bulwark_proto::identity::v1::identity_service_client::IdentityServiceClient;
use bulwark_proto::identity::v1::{CreateUserRequest, User};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use futures::future::BoxFuture;
use prost::Message as _;
use uuid::Uuid;

pub const PASSWORD: &str = "correct horse battery staple";
pub const ADMIN_EMAIL: &str = "root@bulwark.test";
pub const ADMIN_PASSWORD: &str = "admin password for tests";

/// Authz that allows exactly the (subject, permission) pairs granted to it.
#[derive(Default)]
pub struct FakeAuthz {
    grants: Mutex<HashSet<(String, String)>>,
    pub checks: Mutex<Vec<(String, String)>>,
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
        if let Ok(mut checks) = self.checks.lock() {
            checks.push((subject.clone(), permission.clone()));
        }
        let allowed = self
            .grants
            .lock()
            .is_ok_and(|grants| grants.contains(&(subject, permission)));
        Box::pin(async move { Ok(allowed) })
    }

    fn list_user_roles(
        &self,
        _user_id: String,
    ) -> BoxFuture<'_, Result<ListUserRolesResponse, Status>> {
        Box::pin(async { Ok(ListUserRolesResponse::default()) })
    }

    fn resolve_roles(
        &self,
        _roles: Vec<String>,
    ) -> BoxFuture<'_, Result<ResolveRolesResponse, Status>> {
        Box::pin(async { Err(Status::unimplemented("not used by Identity")) })
    }
}

/// One running Identity service on its own database.
pub struct TestApp {
    pub client: IdentityServiceClient<Channel>,
    pub kernel: Kernel,
    pub passwords: Passwords,
    pub authz: Arc<FakeAuthz>,
    pub audit: Arc<FakeAudit>,
    pub database: DatabaseConfig,
    running: Option<Running>,
}

impl TestApp {
    pub async fn start() -> Self {
        let database = fresh_database("identity")
            .await
            .unwrap_or_else(|e| panic!("creating the test database: {e:#}"));
        Self::start_on(database, ADMIN_PASSWORD).await
    }

    /// Starts the service on an existing database (for restarts).
    pub async fn start_on(database: DatabaseConfig, admin_password: &str) -> Self {
        Self::try_start_on(database, ADMIN_EMAIL, admin_password)
            .await
            .unwrap_or_else(|e| panic!("starting identity: {e:#}"))
    }

    pub async fn try_start_on(
        database: DatabaseConfig,
        admin_email: &str,
        admin_password: &str,
    ) -> anyhow::Result<Self> {
        let settings = settings(
            &bulwark_identity::SPEC,
            database.clone(),
            |_| {},
            &[
                ("admin_email", admin_email.into()),
                ("admin_password", admin_password.into()),
            ],
        );
        let passwords = Passwords::new().await?;
        let authz = Arc::new(FakeAuthz::default());
        let audit = Arc::new(FakeAudit::default());
        let dependencies = Dependencies {
            verifier: Arc::new(TokenVerifier::new(
                TestTokens::new().key_source(),
                settings.kernel.tokens.clone(),
            )),
            authz: authz.clone(),
            audit: audit.clone(),
            passwords: passwords.clone(),
        };
        let (running, kernel) = start(settings, bulwark_identity::SCHEMA, move |kernel| {
            bulwark_identity::app_with(kernel, dependencies)
        })
        .await?;
        let client =
            IdentityServiceClient::connect(format!("http://{}", running.grpc_addr)).await?;
        Ok(Self {
            client,
            kernel,
            passwords,
            authz,
            audit,
            database,
            running: Some(running),
        })
    }

    pub async fn shutdown(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }

    pub fn client(&self) -> IdentityServiceClient<Channel> {
        self.client.clone()
    }

    /// Registers a user and returns it; panics with the status if refused.
    pub async fn register(&self, email: &str, display_name: &str) -> User {
        self.client()
            .create_user(CreateUserRequest {
                email: email.to_owned(),
                password: PASSWORD.to_owned(),
                display_name: display_name.to_owned(),
            })
            .await
            .unwrap_or_else(|s| panic!("registering {email}: {s:?}"))
            .into_inner()
    }

    /// Every audit event in the outbox, delivered or not, oldest first.
    pub async fn outbox_events(&self) -> Vec<AuditEvent> {
        use bulwark_kernel::outbox::audit_outbox;
        let mut conn = self
            .kernel
            .db
            .conn()
            .await
            .unwrap_or_else(|e| panic!("database connection: {e}"));
        let rows: Vec<Vec<u8>> = audit_outbox::table
            .order((audit_outbox::occurred_at, audit_outbox::id))
            .select(audit_outbox::event)
            .load(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("reading the outbox: {e}"));
        rows.iter()
            .map(|bytes| {
                AuditEvent::decode(bytes.as_slice())
                    .unwrap_or_else(|e| panic!("undecodable outbox row: {e}"))
            })
            .collect()
    }

    /// Outbox events with `action`.
    pub async fn outbox_events_with(&self, action: &str) -> Vec<AuditEvent> {
        self.outbox_events()
            .await
            .into_iter()
            .filter(|event| event.action == action)
            .collect()
    }

    /// Runs one SQL statement on the service's schema, as the database's superuser
    /// (the service's own role may not alter its tables).
    pub async fn execute(&self, sql: &str) -> usize {
        let mut conn = bulwark_kernel::testing::superuser_connection(&self.database)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        diesel::sql_query(sql)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// How many users have `email` (compared case-insensitively).
    pub async fn users_with_email(&self, email: &str) -> i64 {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut conn = self
            .kernel
            .db
            .conn()
            .await
            .unwrap_or_else(|e| panic!("database connection: {e}"));
        let count: Count =
            diesel::sql_query("SELECT count(*) AS n FROM users WHERE lower(email) = lower($1)")
                .bind::<diesel::sql_types::Text, _>(email)
                .get_result(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("counting users: {e}"));
        count.n
    }
}

/// `message` with `authorization: Bearer <token of user>`, signed by the test key
/// the service trusts.
pub fn as_user<T>(user: &str, message: T) -> Request<T> {
    let user = Uuid::parse_str(user).unwrap_or_else(|e| panic!("user id {user:?}: {e}"));
    TestTokens::new().request(user, message)
}

/// `message` with the bearer token of the service account `client_id` carrying
/// `permissions`, as Auth mints them for the client-credentials grant.
pub fn as_service<T>(client_id: &str, permissions: &[&str], message: T) -> Request<T> {
    TestTokens::new().client_request(client_id, permissions, message)
}

/// `message` as Auth sends it: its built-in client's token, which carries
/// `credentials:verify` and `accounts:manage` (and more permissions Identity does not ask about).
pub fn as_auth<T>(message: T) -> Request<T> {
    as_service(
        "auth",
        &[
            "credentials:verify",
            "accounts:manage",
            "users:read",
            "roles:read",
            "audit:append",
        ],
        message,
    )
}

/// The code and message of a refused call; panics if the call succeeded.
pub fn refusal<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, Status>,
) -> (tonic::Code, String) {
    match result {
        Ok(response) => panic!("expected a refusal, got {:?}", response.into_inner()),
        Err(status) => (status.code(), status.message().to_owned()),
    }
}
