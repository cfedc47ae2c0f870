//! The Audit service: the append-only, hash-chained audit log.

// Public for the fuzz targets (`fuzz/`), which feed it untrusted requests.
pub mod domain;
mod error;
mod grpc;
mod schema;
mod store;

use std::sync::Arc;

use bulwark_kernel::caller::TokenVerifier;
use bulwark_kernel::clients::AuthzApi;
use bulwark_kernel::{EmbeddedMigrations, GrpcServices, Kernel, ServiceSpec, embed_migrations};
use bulwark_proto::audit::v1::audit_service_server::AuditServiceServer;

pub use domain::chain;
pub use grpc::AuditHandlers;

/// Name and default ports (gRPC 50054, admin HTTP 9104).
pub const SPEC: ServiceSpec = ServiceSpec::new("audit", 50054, 9104);

/// The `audit` schema's migrations, applied at start.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// What Audit needs from outside: the bearer-token verifier and Authz for the
/// `audit:read` check. Tests pass fakes.
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
    let handlers = AuditHandlers::new(kernel.clone(), deps.verifier, deps.authz);
    let server = bulwark_kernel::grpc_limits!(kernel, AuditServiceServer::new(handlers));
    Ok(GrpcServices::new().with(server))
}
