//! The Authz service: role-based access control: roles, grants and permission checks.

mod bootstrap;
mod decisions;
// Public for the fuzz targets (`fuzz/`), which feed it untrusted requests.
pub mod domain;
mod error;
mod grpc;
mod schema;
mod store;

use std::sync::Arc;
use std::time::Duration;

use bulwark_kernel::bootstrap::{admin_email, admin_user_id};
use bulwark_kernel::caller::TokenVerifier;
use bulwark_kernel::clients::AuditApi;
use bulwark_kernel::{
    EmbeddedMigrations, GrpcServices, Kernel, Schema, ServiceSpec, embed_migrations,
};
use bulwark_proto::authz::v1::authz_service_server::AuthzServiceServer;
use serde::{Deserialize, Serialize};

pub use grpc::AuthzHandlers;

/// Name and default ports (gRPC 50053, admin HTTP 9103).
pub const SPEC: ServiceSpec = ServiceSpec::new("authz", 50053, 9103);

/// The schema: embedded migrations, applied by `bulwark-authz migrate` as the schema's
/// owner, and the grants (`grants.sql`) that are all its runtime role may do.
pub const SCHEMA: Schema = Schema::new(&MIGRATIONS, include_str!("../grants.sql"));
const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The `[authz]` configuration section (`BULWARK_AUTHZ__*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthzSettings {
    /// Longest time a cached decision is used, even when no change is seen.
    pub decision_cache_ttl_ms: u64,
}

impl Default for AuthzSettings {
    fn default() -> Self {
        Self {
            decision_cache_ttl_ms: 2_000,
        }
    }
}

/// What Authz needs from outside: the bearer-token verifier and the Audit service its
/// outbox is delivered to. Tests pass fakes.
pub struct Deps {
    pub verifier: Arc<TokenVerifier>,
    pub audit: Arc<dyn AuditApi>,
}

impl std::fmt::Debug for Deps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deps")
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}

impl Deps {
    /// The real ones: Auth's JWKS and Audit, through the kernel's clients.
    pub fn from_kernel(kernel: &Kernel) -> anyhow::Result<Self> {
        Ok(Self {
            verifier: kernel.token_verifier()?,
            audit: kernel.clients.audit()?,
        })
    }
}

/// Builds the gRPC services this binary serves.
pub async fn app(kernel: Kernel) -> anyhow::Result<GrpcServices> {
    let deps = Deps::from_kernel(&kernel)?;
    app_with(kernel, deps).await
}

/// [`app`] with its dependencies given: bootstraps the admin role and grant, starts
/// the outbox relay and builds the handlers.
pub async fn app_with(kernel: Kernel, deps: Deps) -> anyhow::Result<GrpcServices> {
    let settings: AuthzSettings = kernel.settings().section("authz")?;
    let admin = admin_user_id(&admin_email(kernel.settings())?);

    let relay = kernel.start_outbox_relay_with(deps.audit);
    if bootstrap::ensure_admin(&kernel.db, admin).await? {
        relay.kick();
    }

    let decisions = Arc::new(decisions::Decisions::new(
        kernel.db.clone(),
        Duration::from_millis(settings.decision_cache_ttl_ms),
    ));
    let handlers = AuthzHandlers::new(kernel.clone(), deps.verifier, decisions, relay);
    let server = bulwark_kernel::grpc_limits!(kernel, AuthzServiceServer::new(handlers));
    Ok(GrpcServices::new().with(server))
}
