//! The Audit service: the append-only, hash-chained audit log, with signed checkpoints
//! of its head kept outside the database, and a per-caller limit on verifying it.

pub mod checkpoints;
mod config;
// Public for the fuzz targets (`fuzz/`), which feed it untrusted requests.
pub mod domain;
mod error;
mod grpc;
mod schema;
mod store;
mod verify_limit;

use std::sync::Arc;

use bulwark_kernel::caller::TokenVerifier;
use bulwark_kernel::clients::AuthzApi;
use bulwark_kernel::{
    EmbeddedMigrations, GrpcServices, Kernel, Schema, ServiceSpec, embed_migrations,
};
use bulwark_proto::audit::v1::audit_service_server::AuditServiceServer;
use verify_limit::VerifyLimit;

pub use checkpoints::Checkpoints;
pub use config::AuditConfig;
pub use domain::{chain, checkpoint, checkpoint_file};
pub use grpc::AuditHandlers;
pub use verify_limit::VERIFY_CHAIN_PATH;

/// Name and default ports (gRPC 50054, admin HTTP 9104).
pub const SPEC: ServiceSpec = ServiceSpec::new("audit", 50054, 9104);

/// The schema: embedded migrations, applied by `bulwark-audit migrate` as the schema's
/// owner, and the grants (`grants.sql`) that are all its runtime role may do.
pub const SCHEMA: Schema = Schema::new(&MIGRATIONS, include_str!("../grants.sql"));
const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// What Audit needs from outside: the bearer-token verifier (which also names the
/// caller that `VerifyChain`'s limit counts) and Authz for the `audit:read` check.
/// Tests pass fakes.
pub struct Deps {
    pub verifier: Arc<TokenVerifier>,
    pub authz: Arc<dyn AuthzApi>,
}

impl std::fmt::Debug for Deps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deps")
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}

impl Deps {
    /// The real ones: Auth's JWKS and Authz, through the kernel's clients.
    pub fn from_kernel(kernel: &Kernel) -> anyhow::Result<Self> {
        Ok(Self {
            verifier: kernel.token_verifier()?,
            authz: kernel.clients.authz()?,
        })
    }
}

/// Builds the gRPC services this binary serves.
pub async fn app(kernel: Kernel) -> anyhow::Result<GrpcServices> {
    let deps = Deps::from_kernel(&kernel)?;
    app_with(kernel, deps).await
}

/// [`app`] with its dependencies given.
pub async fn app_with(kernel: Kernel, deps: Deps) -> anyhow::Result<GrpcServices> {
    let limit = VerifyLimit::start(&kernel, deps.verifier.clone()).await?;
    if limit.is_none() {
        tracing::warn!(
            "audit.limits_path is not set: any caller may start as many VerifyChain walks of \
             the whole log as it likes (accepted in environment local only)"
        );
    }
    let checkpoints = match checkpoints(&kernel)? {
        Some((checkpoints, interval)) => {
            let checkpoints = Arc::new(checkpoints);
            tracing::info!(
                key_id = checkpoints.keys().all()[0].key_id,
                interval_seconds = interval.as_secs(),
                "signing audit checkpoints"
            );
            checkpoints.clone().start(&kernel, interval);
            Some(checkpoints)
        }
        None => {
            tracing::warn!(
                "audit.checkpoint_key is not set: no checkpoints are signed, so a rewritten \
                 or truncated audit log would go unnoticed (accepted in environment local only)"
            );
            None
        }
    };
    let handlers = AuditHandlers::new(kernel.clone(), deps.verifier, deps.authz, checkpoints);
    let server = bulwark_kernel::grpc_limits!(kernel, AuditServiceServer::new(handlers));
    Ok(match limit {
        Some(limit) => GrpcServices::new().with(limit.guard(server)),
        None => GrpcServices::new().with(server),
    })
}

/// The checkpoints of the `[audit]` configuration and how often to take one; `None`
/// without a key (environment `local` only). A bad setting is refused, naming it.
pub fn checkpoints(kernel: &Kernel) -> anyhow::Result<Option<(Checkpoints, std::time::Duration)>> {
    let config: AuditConfig = kernel.settings().section("audit")?;
    let setup = config.checkpointing(&kernel.config().service.environment)?;
    Ok(setup.map(|setup| {
        let interval = setup.interval;
        (Checkpoints::new(kernel.db.clone(), setup), interval)
    }))
}
