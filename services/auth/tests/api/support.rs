//! A running Auth service on a fresh database, with Identity and Authz faked
//! in-process through the kernel's client traits, and Audit by the kernel's `FakeAudit`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use bulwark_auth::{Deps, SCHEMA, SPEC};
use bulwark_kernel::caller::{Caller, TokenVerifier};
use bulwark_kernel::clients::{AuthApi, AuthzApi, IdentityApi};
use bulwark_kernel::config::DatabaseConfig;
use bulwark_kernel::outbox::audit_outbox;
use bulwark_kernel::testing::{FakeAudit, fresh_database, settings, start};
use bulwark_kernel::tonic::transport::Channel;
use bulwark_kernel::tonic::{Code, Request, Status};
use bulwark_kernel::{Kernel, Running};
use bulwark_proto::audit::v1::AuditEvent;
use bulwark_proto::auth::v1::auth_service_client::AuthServiceClient;
use bulwark_proto::auth::v1::{
    GetJwksRequest, Jwks, LoginRequest, LoginResponse, LogoutRequest, RefreshRequest,
    RotateSigningKeyRequest, RotateSigningKeyResponse, TokenPair,
};
use bulwark_proto::authz::v1::{ListUserRolesResponse, ResolveRolesResponse};
use bulwark_proto::identity::v1::{FindUserByEmailResponse, User, VerifyCredentialsResponse};
use futures::future::BoxFuture;
use prost::Message as _;
use uuid::Uuid;

pub const PASSWORD: &str = "correct horse battery staple";

/// A registered user of the fake Identity.
#[derive(Debug, Clone)]
pub struct FakeUser {
    pub id: Uuid,
    pub email: String,
    pub password: String,
    pub active: bool,
    pub email_verified: bool,
    pub mfa_enabled: bool,
}

/// Identity as Auth sees it: a credential check and user lookups.
#[derive(Debug, Default)]
pub struct FakeIdentity {
    users: Mutex<Vec<FakeUser>>,
    down: AtomicBool,
}

impl FakeIdentity {
    pub fn add(&self, email: &str) -> FakeUser {
        let user = FakeUser {
            id: Uuid::new_v4(),
            email: email.to_owned(),
            password: PASSWORD.to_owned(),
            active: true,
            email_verified: false,
            mfa_enabled: false,
        };
        self.users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(user.clone());
        user
    }

    pub fn deactivate(&self, id: Uuid) {
        for user in self
            .users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter_mut()
        {
            if user.id == id {
                user.active = false;
            }
        }
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// The user as the fake holds it now (its password, its flags).
    pub fn get(&self, id: Uuid) -> FakeUser {
        self.find(|u| u.id == id)
            .unwrap_or_else(|| panic!("the fake Identity has no user {id}"))
    }

    /// Changes the user `id` as `change` says; NOT_FOUND when there is none.
    fn update(&self, id: &str, change: impl FnOnce(&mut FakeUser)) -> Result<FakeUser, Status> {
        if self.down.load(Ordering::SeqCst) {
            return Err(Status::unavailable("connection refused"));
        }
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let user = users
            .iter_mut()
            .find(|u| u.id.to_string() == id)
            .ok_or_else(|| Status::not_found("user not found"))?;
        change(user);
        Ok(user.clone())
    }

    fn find(&self, matches: impl Fn(&FakeUser) -> bool) -> Option<FakeUser> {
        self.users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|u| matches(u))
            .cloned()
    }
}

impl IdentityApi for FakeIdentity {
    fn verify_credentials(
        &self,
        email: String,
        password: String,
    ) -> BoxFuture<'_, Result<VerifyCredentialsResponse, Status>> {
        Box::pin(async move {
            if self.down.load(Ordering::SeqCst) {
                return Err(Status::unavailable("connection refused"));
            }
            match self.find(|u| u.email.eq_ignore_ascii_case(&email)) {
                Some(user) if user.password == password => Ok(VerifyCredentialsResponse {
                    user_id: user.id.to_string(),
                    active: user.active,
                }),
                _ => Err(Status::unauthenticated("invalid email or password")),
            }
        })
    }

    fn get_user(&self, id: String) -> BoxFuture<'_, Result<User, Status>> {
        Box::pin(async move {
            if self.down.load(Ordering::SeqCst) {
                return Err(Status::unavailable("connection refused"));
            }
            let user = self
                .find(|u| u.id.to_string() == id)
                .ok_or_else(|| Status::not_found("no such user"))?;
            Ok(user.to_proto())
        })
    }

    fn find_user_by_email(
        &self,
        email: String,
    ) -> BoxFuture<'_, Result<FindUserByEmailResponse, Status>> {
        Box::pin(async move {
            if self.down.load(Ordering::SeqCst) {
                return Err(Status::unavailable("connection refused"));
            }
            let user = self
                .find(|u| u.email.eq_ignore_ascii_case(&email))
                .ok_or_else(|| Status::not_found("user not found"))?;
            Ok(FindUserByEmailResponse {
                user_id: user.id.to_string(),
                email: user.email,
                active: user.active,
            })
        })
    }

    /// Identity's rule: 12 to 128 characters, refused with field `password`.
    fn set_password(&self, user_id: String, password: String) -> BoxFuture<'_, Result<(), Status>> {
        Box::pin(async move {
            let length = password.chars().count();
            if length < 12 {
                return Err(Status::invalid_argument(
                    "password: must be at least 12 characters",
                ));
            }
            if length > 128 {
                return Err(Status::invalid_argument(
                    "password: must be at most 128 characters",
                ));
            }
            self.update(&user_id, |u| u.password = password).map(|_| ())
        })
    }

    fn mark_email_verified(&self, user_id: String) -> BoxFuture<'_, Result<User, Status>> {
        Box::pin(async move {
            self.update(&user_id, |u| u.email_verified = true)
                .map(|u| u.to_proto())
        })
    }

    fn set_mfa_enabled(
        &self,
        user_id: String,
        enabled: bool,
    ) -> BoxFuture<'_, Result<User, Status>> {
        Box::pin(async move {
            self.update(&user_id, |u| u.mfa_enabled = enabled)
                .map(|u| u.to_proto())
        })
    }
}

impl FakeUser {
    fn to_proto(&self) -> User {
        User {
            id: self.id.to_string(),
            email: self.email.clone(),
            display_name: "Test User".into(),
            created_at: None,
            active: self.active,
            email_verified: self.email_verified,
            mfa_enabled: self.mfa_enabled,
        }
    }
}

/// Authz: roles per user; `admin` holds every permission.
#[derive(Debug, Default)]
pub struct FakeAuthz {
    roles: Mutex<HashMap<Uuid, Vec<String>>>,
    permissions: Mutex<HashMap<Uuid, Vec<String>>>,
    down: AtomicBool,
}

impl FakeAuthz {
    pub fn grant_role(&self, user: Uuid, role: &str) {
        self.roles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(user)
            .or_default()
            .push(role.to_owned());
    }

    pub fn grant_permission(&self, user: Uuid, permission: &str) {
        self.permissions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(user)
            .or_default()
            .push(permission.to_owned());
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn roles_of(&self, user: &str) -> Vec<String> {
        let roles = self.roles.lock().unwrap_or_else(|e| e.into_inner());
        Uuid::parse_str(user)
            .ok()
            .and_then(|id| roles.get(&id).cloned())
            .unwrap_or_default()
    }
}

impl AuthzApi for FakeAuthz {
    fn check(&self, subject: String, permission: String) -> BoxFuture<'_, Result<bool, Status>> {
        Box::pin(async move {
            if self.down.load(Ordering::SeqCst) {
                return Err(Status::unavailable("connection refused"));
            }
            if self.roles_of(&subject).iter().any(|r| r == "admin") {
                return Ok(true);
            }
            let permissions = self.permissions.lock().unwrap_or_else(|e| e.into_inner());
            Ok(Uuid::parse_str(&subject)
                .ok()
                .and_then(|id| permissions.get(&id))
                .is_some_and(|held| held.contains(&permission)))
        })
    }

    fn list_user_roles(
        &self,
        user_id: String,
    ) -> BoxFuture<'_, Result<ListUserRolesResponse, Status>> {
        Box::pin(async move {
            if self.down.load(Ordering::SeqCst) {
                return Err(Status::unavailable("connection refused"));
            }
            Ok(ListUserRolesResponse {
                roles: self.roles_of(&user_id),
                permissions: Vec::new(),
            })
        })
    }

    /// Knows the roles of [`FAKE_ROLES`]; any other name is unknown.
    fn resolve_roles(
        &self,
        roles: Vec<String>,
    ) -> BoxFuture<'_, Result<ResolveRolesResponse, Status>> {
        Box::pin(async move {
            if self.down.load(Ordering::SeqCst) {
                return Err(Status::unavailable("connection refused"));
            }
            let mut response = ResolveRolesResponse::default();
            for role in roles {
                match FAKE_ROLES.iter().find(|(name, _)| *name == role) {
                    Some((_, permissions)) => response
                        .permissions
                        .extend(permissions.iter().map(|p| (*p).to_owned())),
                    None => response.unknown.push(role),
                }
            }
            response.permissions.sort();
            response.permissions.dedup();
            Ok(response)
        })
    }
}

/// The roles the fake Authz resolves, and their permissions.
pub const FAKE_ROLES: [(&str, &[&str]); 3] = [
    ("admin", &["*:*"]),
    ("auditor", &["audit:read"]),
    ("reporter", &["users:read", "audit:read"]),
];

/// Fetches the JWKS through the public RPC, as every other service does.
struct JwksOverGrpc(AuthServiceClient<Channel>);

impl AuthApi for JwksOverGrpc {
    fn get_jwks(&self) -> BoxFuture<'_, Result<Jwks, Status>> {
        let mut client = self.0.clone();
        Box::pin(async move {
            client
                .get_jwks(GetJwksRequest {})
                .await
                .map(|r| r.into_inner())
        })
    }
}

/// One Auth service under test.
pub struct TestApp {
    pub client: AuthServiceClient<Channel>,
    pub kernel: Kernel,
    pub identity: Arc<FakeIdentity>,
    pub authz: Arc<FakeAuthz>,
    pub audit: Arc<FakeAudit>,
    pub database: DatabaseConfig,
    running: Running,
}

impl TestApp {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts Auth with `[auth]` keys such as `("auth.access_token_ttl_seconds", 60.into())`.
    pub async fn start_with(sections: &[(&str, serde_json::Value)]) -> Self {
        let database = fresh_database(SPEC.name)
            .await
            .unwrap_or_else(|e| panic!("no test database: {e:#}"));
        Self::start_on(database, sections).await
    }

    /// Starts Auth on an existing database (to test what survives a restart).
    pub async fn start_on(
        database: DatabaseConfig,
        sections: &[(&str, serde_json::Value)],
    ) -> Self {
        Self::try_start_on(database, sections)
            .await
            .unwrap_or_else(|e| panic!("Auth did not start: {e:#}"))
    }

    /// Starts Auth on a fresh database, or says why it refused to start.
    pub async fn try_start_with(sections: &[(&str, serde_json::Value)]) -> anyhow::Result<Self> {
        let database = fresh_database(SPEC.name)
            .await
            .unwrap_or_else(|e| panic!("no test database: {e:#}"));
        Self::try_start_on(database, sections).await
    }

    /// Starts Auth with the test Redis (`BULWARK_TEST_REDIS_URL`), so failed logins
    /// lock accounts.
    pub async fn start_with_redis(sections: &[(&str, serde_json::Value)]) -> Self {
        let redis = bulwark_kernel::testing::test_redis_url()
            .unwrap_or_else(|e| panic!("no test Redis: {e:#}"));
        let database = fresh_database(SPEC.name)
            .await
            .unwrap_or_else(|e| panic!("no test database: {e:#}"));
        Self::try_start_full(database, sections, Some(redis))
            .await
            .unwrap_or_else(|e| panic!("Auth did not start: {e:#}"))
    }

    pub async fn try_start_on(
        database: DatabaseConfig,
        sections: &[(&str, serde_json::Value)],
    ) -> anyhow::Result<Self> {
        Self::try_start_full(database, sections, None).await
    }

    async fn try_start_full(
        database: DatabaseConfig,
        sections: &[(&str, serde_json::Value)],
        redis: Option<String>,
    ) -> anyhow::Result<Self> {
        let identity = Arc::new(FakeIdentity::default());
        let authz = Arc::new(FakeAuthz::default());
        let audit = Arc::new(FakeAudit::default());
        let deps = Deps {
            identity: identity.clone(),
            authz: authz.clone(),
            audit: audit.clone(),
        };
        // Every test's Auth seals its keys under TEST_KEK, unless the test configures
        // key encryption itself.
        let mut sections = sections.to_vec();
        if !sections
            .iter()
            .any(|(key, _)| key.starts_with("auth.key_encryption"))
        {
            sections.insert(0, ("auth.key_encryption.keys.test", TEST_KEK.into()));
        }
        let settings = settings(
            &SPEC,
            database.clone(),
            |config| config.redis.url = redis.map(secrecy::SecretString::from),
            &sections,
        );
        let (running, kernel) = start(settings, SCHEMA, |kernel| {
            bulwark_auth::app_with(kernel, deps)
        })
        .await?;
        let client = AuthServiceClient::connect(format!("http://{}", running.grpc_addr))
            .await
            .unwrap_or_else(|e| panic!("cannot connect to Auth: {e}"));
        Ok(Self {
            client,
            kernel,
            identity,
            authz,
            audit,
            database,
            running,
        })
    }

    pub async fn stop(self) {
        self.running.shutdown().await;
    }

    /// A registered, active user.
    pub fn user(&self, email: &str) -> FakeUser {
        self.identity.add(email)
    }

    pub async fn login(&self, email: &str, password: &str) -> Result<TokenPair, Status> {
        self.login_answer(email, password).await.map(pair_of)
    }

    /// `Login`'s answer as it is (a pair, or a request for the second factor).
    pub async fn login_answer(&self, email: &str, password: &str) -> Result<LoginResponse, Status> {
        self.client
            .clone()
            .login(LoginRequest {
                email: email.to_owned(),
                password: password.to_owned(),
            })
            .await
            .map(|r| r.into_inner())
    }

    /// The access token of a new user holding the `admin` role (may rotate keys).
    pub async fn admin_token(&self) -> String {
        let admin = self.user("admin@example.com");
        self.authz.grant_role(admin.id, "admin");
        self.logged_in(&admin).await.access_token
    }

    /// Logs `user` in, failing the test if that does not work.
    pub async fn logged_in(&self, user: &FakeUser) -> TokenPair {
        self.login(&user.email, PASSWORD)
            .await
            .unwrap_or_else(|s| panic!("login of {} failed: {s:?}", user.email))
    }

    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair, Status> {
        self.client
            .clone()
            .refresh(RefreshRequest {
                refresh_token: refresh_token.to_owned(),
            })
            .await
            .map(|r| r.into_inner())
    }

    pub async fn logout(&self, access_token: &str, refresh_token: &str) -> Result<(), Status> {
        let request = with_bearer(
            LogoutRequest {
                refresh_token: refresh_token.to_owned(),
            },
            access_token,
        );
        self.client.clone().logout(request).await.map(|_| ())
    }

    pub async fn jwks(&self) -> Jwks {
        self.client
            .clone()
            .get_jwks(GetJwksRequest {})
            .await
            .unwrap_or_else(|s| panic!("GetJwks failed: {s:?}"))
            .into_inner()
    }

    /// The kids of the published keys, in JWKS order.
    pub async fn published_kids(&self) -> Vec<String> {
        self.jwks().await.keys.into_iter().map(|k| k.kid).collect()
    }

    /// `RotateSigningKey` as the holder of `access_token`: the new key signs after
    /// the configured activation delay.
    pub async fn rotate(&self, access_token: &str) -> Result<RotateSigningKeyResponse, Status> {
        self.rotation(access_token, false).await
    }

    /// `RotateSigningKey` with `immediate`: the new key (or the pending one) signs now.
    pub async fn rotate_now(&self, access_token: &str) -> Result<RotateSigningKeyResponse, Status> {
        self.rotation(access_token, true).await
    }

    async fn rotation(
        &self,
        access_token: &str,
        immediate: bool,
    ) -> Result<RotateSigningKeyResponse, Status> {
        self.client
            .clone()
            .rotate_signing_key(with_bearer(
                RotateSigningKeyRequest { immediate },
                access_token,
            ))
            .await
            .map(|r| r.into_inner())
    }

    /// A verifier like the other services': kernel `TokenVerifier` over `GetJwks`.
    pub fn verifier(&self) -> TokenVerifier {
        TokenVerifier::new(
            Arc::new(JwksOverGrpc(self.client.clone())) as Arc<dyn AuthApi>,
            self.kernel.config().tokens.clone(),
        )
    }

    /// Verifies `token` as another service would.
    pub async fn verify(&self, token: &str) -> Caller {
        self.verifier()
            .verify(token)
            .await
            .unwrap_or_else(|e| panic!("access token does not verify against the JWKS: {e}"))
    }

    /// Every event in the outbox, oldest first.
    pub async fn outbox(&self) -> Vec<AuditEvent> {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        let mut conn = self.db().await;
        let rows: Vec<Vec<u8>> = audit_outbox::table
            .order((audit_outbox::occurred_at, audit_outbox::id))
            .select(audit_outbox::event)
            .load(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("cannot read the outbox: {e}"));
        rows.iter()
            .map(|bytes| {
                AuditEvent::decode(bytes.as_slice())
                    .unwrap_or_else(|e| panic!("undecodable outbox row: {e}"))
            })
            .collect()
    }

    /// Runs `statement` against Auth's schema (to look at rows or move time).
    pub async fn sql(&self, statement: &str) -> usize {
        use diesel_async::RunQueryDsl;
        let mut conn = self.db().await;
        diesel::sql_query(statement)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("`{statement}` failed: {e}"))
    }

    pub async fn db(&self) -> bulwark_kernel::db::DbConnection<'_> {
        self.kernel
            .db
            .conn()
            .await
            .unwrap_or_else(|e| panic!("no database connection: {e}"))
    }
}

/// The token pair of a login that needed no second factor.
pub fn pair_of(answer: LoginResponse) -> TokenPair {
    assert_ne!(answer.mfa_required, Some(true), "the login asked for MFA");
    TokenPair {
        access_token: answer.access_token.unwrap_or_default(),
        refresh_token: answer.refresh_token.unwrap_or_default(),
        token_type: answer.token_type.unwrap_or_default(),
        expires_in: answer.expires_in.unwrap_or_default(),
    }
}

/// The key-encryption key (id `test`) of every test's Auth that sets none.
pub const TEST_KEK: &str = "8f1c2a3b4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8";

pub fn with_bearer<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    let value = format!("Bearer {token}")
        .parse()
        .unwrap_or_else(|e| panic!("bad token for metadata: {e}"));
    request.metadata_mut().insert("authorization", value);
    request
}

/// The status of a call that must fail, with a message if it did not.
pub fn failure<T: std::fmt::Debug>(result: Result<T, Status>, what: &str) -> Status {
    match result {
        Ok(value) => panic!("{what} should have failed but answered {value:?}"),
        Err(status) => status,
    }
}

/// Asserts `status` is `code`, naming the call.
pub fn assert_code(status: &Status, code: Code, what: &str) {
    assert_eq!(
        status.code(),
        code,
        "{what}: expected {code:?}, got {:?} ({})",
        status.code(),
        status.message()
    );
}

/// The claims of a token, without verification (to look at them).
pub fn claims(token: &str) -> serde_json::Value {
    let payload = token
        .split('.')
        .nth(1)
        .unwrap_or_else(|| panic!("not a JWS: {token}"));
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap_or_else(|e| panic!("payload is not base64url: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("payload is not JSON: {e}"))
}

/// Seconds from now until the rotated-in key signs (negative when it already does).
pub fn activation_in(rotation: &RotateSigningKeyResponse) -> f64 {
    let at = rotation
        .activates_at
        .as_ref()
        .unwrap_or_else(|| panic!("rotation without activates_at: {rotation:?}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    at.seconds as f64 + f64::from(at.nanos) / 1e9 - now
}

/// The `kid` of a token's header.
pub fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .unwrap_or_else(|e| panic!("bad JWS header: {e}"))
        .kid
        .unwrap_or_else(|| panic!("token has no kid"))
}
