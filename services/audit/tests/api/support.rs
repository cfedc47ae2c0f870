//! Starting Audit on a fresh database, with the kernel's test tokens standing in for
//! Auth's keys (users' and service accounts') and a fake Authz, a checkpoint key and
//! directory of its own, and (when asked) its limits in the test Redis; building events,
//! reading the stored chain, and asserting statuses.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use bulwark_audit::checkpoint::hex;
use bulwark_audit::{Checkpoints, Deps, SCHEMA, SPEC, app_with};
use bulwark_kernel::Running;
use bulwark_kernel::caller::TokenVerifier;
use bulwark_kernel::clients::AuthzApi;
use bulwark_kernel::config::DatabaseConfig;
use bulwark_kernel::health::Readiness;
use bulwark_kernel::testing::{TestTokens, fresh_database, settings, start};
// Shared with the other services' tests: one definition of the forged headers.
pub use bulwark_kernel::testing::{assert_status, with_edge_headers};
use bulwark_kernel::tonic::transport::Channel;
use bulwark_kernel::tonic::{Request, Status};
use bulwark_proto::audit::v1::audit_service_client::AuditServiceClient;
use bulwark_proto::audit::v1::{
    AppendEventsRequest, AppendEventsResponse, AuditEvent, Checkpoint, ListCheckpointsRequest,
    ListCheckpointsResponse, ListEventsRequest, ListEventsResponse, Outcome, VerifyChainRequest,
    VerifyChainResponse,
};
use bulwark_proto::authz::v1::{ListUserRolesResponse, ResolveRolesResponse};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures::future::BoxFuture;
use secrecy::SecretString;
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

/// The checkpoint signing key of the test instances (an Ed25519 seed).
pub const CHECKPOINT_SEED: [u8; 32] = [7; 32];

/// How an instance signs checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpointing {
    /// With [`CHECKPOINT_SEED`], every `interval_seconds`.
    Every { interval_seconds: u64 },
    /// No key (allowed in environment `local`).
    Off,
}

/// The interval of [`TestAudit::start`]: long enough that only the test takes
/// checkpoints (with [`TestAudit::checkpoint`]).
pub const BY_HAND: Checkpointing = Checkpointing::Every {
    interval_seconds: 3600,
};

/// Whether an instance holds callers to Audit's limits (`audit.limits_path`).
#[derive(Debug, Clone)]
pub enum Limiting {
    /// No limits file (allowed in environment `local`).
    Off,
    /// The shipped `services/audit/limits.yaml`, counted in the Redis at `redis_url`.
    Shipped { redis_url: String },
    /// `limits_path`, and `redis.url` only if given.
    Custom {
        redis_url: Option<String>,
        limits_path: std::path::PathBuf,
    },
}

/// The limits file Audit ships with.
pub fn shipped_limits() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("limits.yaml")
}

/// One Audit instance served in-process, and a user allowed to read the log.
pub struct TestAudit {
    pub client: AuditServiceClient<Channel>,
    /// The client's connection, for calls the generated client cannot make.
    pub channel: Channel,
    /// What `/ready` reports.
    pub readiness: Readiness,
    /// Signs the tokens Audit accepts (`tokens.request(user, message)`).
    pub tokens: TestTokens,
    pub reader: Uuid,
    pub authz: Arc<FakeAuthz>,
    pub database: DatabaseConfig,
    /// The checkpoint directory (`audit.checkpoint_dir`).
    pub checkpoint_dir: tempfile::TempDir,
    /// Takes checkpoints now, as another instance with the same configuration would.
    checkpoints: Option<Checkpoints>,
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

    /// An instance that signs checkpoints only when the test calls
    /// [`TestAudit::checkpoint`].
    pub async fn start() -> Self {
        Self::start_with(BY_HAND).await
    }

    pub async fn start_with(checkpointing: Checkpointing) -> Self {
        Self::launch(checkpointing, Limiting::Off)
            .await
            .unwrap_or_else(|e| panic!("audit did not start: {e:#}"))
    }

    /// An instance that holds `VerifyChain` to the shipped limits, counted in the Redis
    /// at `redis_url`.
    pub async fn start_limited(redis_url: &str) -> Self {
        let limiting = Limiting::Shipped {
            redis_url: redis_url.to_owned(),
        };
        Self::launch(BY_HAND, limiting)
            .await
            .unwrap_or_else(|e| panic!("audit did not start: {e:#}"))
    }

    /// Starts an instance; the error is why Audit refused to start.
    pub async fn launch(checkpointing: Checkpointing, limiting: Limiting) -> anyhow::Result<Self> {
        let database = fresh_database(SPEC.name)
            .await
            .unwrap_or_else(|e| panic!("no test database: {e}"));
        let checkpoint_dir =
            tempfile::tempdir().unwrap_or_else(|e| panic!("no checkpoint directory: {e}"));
        let (redis_url, limits_path) = match limiting {
            Limiting::Off => (None, None),
            Limiting::Shipped { redis_url } => (Some(redis_url), Some(shipped_limits())),
            Limiting::Custom {
                redis_url,
                limits_path,
            } => (redis_url, Some(limits_path)),
        };
        let mut sections: Vec<(&str, serde_json::Value)> = Vec::new();
        if let Some(path) = limits_path {
            sections.push((
                "audit.limits_path",
                path.to_string_lossy().into_owned().into(),
            ));
        }
        if let Checkpointing::Every { interval_seconds } = checkpointing {
            sections.extend([
                ("audit.checkpoint_key", hex(&CHECKPOINT_SEED).into()),
                (
                    "audit.checkpoint_dir",
                    checkpoint_dir.path().to_string_lossy().into_owned().into(),
                ),
                ("audit.checkpoint_interval_seconds", interval_seconds.into()),
            ]);
        }
        let reader = Uuid::new_v4();
        let authz = Arc::new(FakeAuthz::default());
        if let Ok(mut readers) = authz.readers.lock() {
            readers.insert(reader.to_string());
        }
        let tokens = TestTokens::new();
        let settings = settings(
            &SPEC,
            database.clone(),
            |config| config.redis.url = redis_url.map(SecretString::from),
            &sections,
        );
        let fake_authz = authz.clone();
        let (running, kernel) = start(settings, SCHEMA, |kernel| {
            let deps = Deps {
                verifier: Arc::new(TokenVerifier::new(
                    tokens.key_source(),
                    kernel.config().tokens.clone(),
                )),
                authz: fake_authz,
            };
            app_with(kernel, deps)
        })
        .await?;
        let channel = Channel::from_shared(format!("http://{}", running.grpc_addr))
            .unwrap_or_else(|e| panic!("audit's address: {e}"))
            .connect()
            .await
            .unwrap_or_else(|e| panic!("cannot connect to audit: {e}"));
        let client = AuditServiceClient::new(channel.clone());
        let checkpoints = bulwark_audit::checkpoints(&kernel)
            .unwrap_or_else(|e| panic!("checkpoint settings refused: {e:#}"))
            .map(|(checkpoints, _)| checkpoints);
        Ok(Self {
            client,
            channel,
            readiness: kernel.readiness.clone(),
            tokens,
            reader,
            authz,
            database,
            checkpoint_dir,
            checkpoints,
            running: Some(running),
        })
    }

    /// Another user whom Authz lets read the log.
    pub fn new_reader(&self) -> Uuid {
        let reader = Uuid::new_v4();
        if let Ok(mut readers) = self.authz.readers.lock() {
            readers.insert(reader.to_string());
        }
        reader
    }

    /// Signs a checkpoint of the head now; `None` when there is nothing new to sign.
    pub async fn checkpoint(&self) -> Option<bulwark_audit::checkpoint::Checkpoint> {
        self.checkpoints
            .as_ref()
            .unwrap_or_else(|| panic!("this instance has no checkpoint key"))
            .take()
            .await
            .unwrap_or_else(|e| panic!("checkpoint failed: {e}"))
    }

    /// `VerifyChain` as the log reader, with these checkpoints kept elsewhere.
    pub async fn verify_with(&self, checkpoints: Vec<Checkpoint>) -> VerifyChainResponse {
        self.client
            .clone()
            .verify_chain(
                self.tokens
                    .request(self.reader, VerifyChainRequest { checkpoints }),
            )
            .await
            .unwrap_or_else(|s| panic!("verify failed: {s:?}"))
            .into_inner()
    }

    /// `ListCheckpoints` as the log reader.
    pub async fn list_checkpoints(
        &self,
        page_size: i32,
        page_token: &str,
    ) -> ListCheckpointsResponse {
        self.client
            .clone()
            .list_checkpoints(self.tokens.request(
                self.reader,
                ListCheckpointsRequest {
                    page_size,
                    page_token: page_token.to_owned(),
                },
            ))
            .await
            .unwrap_or_else(|s| panic!("list checkpoints failed: {s:?}"))
            .into_inner()
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

diesel::table! {
    events (seq) {
        seq -> BigInt,
        id -> Uuid,
        occurred_at -> Timestamptz,
        service -> Text,
        actor_id -> Text,
        action -> Text,
        target -> Text,
        outcome -> Text,
        trace_id -> Text,
        details -> Text,
        prev_hash -> Bytea,
        hash -> Bytea,
    }
}

/// A stored event: seq, id, occurred_at, service, actor_id, action, target, outcome,
/// trace_id, details, prev_hash, hash.
pub type Row = (
    i64,
    Uuid,
    chrono::DateTime<chrono::Utc>,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    Vec<u8>,
    Vec<u8>,
);

/// Every stored event, in chain order.
pub async fn stored(audit: &TestAudit) -> Vec<Row> {
    let mut sql = audit.sql().await;
    events::table
        .order(events::seq)
        .load::<Row>(&mut sql)
        .await
        .unwrap_or_else(|e| panic!("cannot read the events: {e}"))
}

/// `VerifyChain` as the log reader, with no checkpoints of its own.
pub async fn verify(audit: &TestAudit) -> VerifyChainResponse {
    audit.verify_with(Vec::new()).await
}
