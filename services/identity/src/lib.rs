//! The Identity service: user accounts: registration, lookup, credentials.

mod bootstrap;
mod credentials;
// Public for the fuzz targets (`fuzz/`), which feed it untrusted requests.
pub mod domain;
mod error;
mod grpc;
mod schema;
mod store;

use std::sync::Arc;

use bulwark_kernel::caller::TokenVerifier;
use bulwark_kernel::clients::{AuditApi, AuthzApi};
use bulwark_kernel::{
    EmbeddedMigrations, GrpcServices, Kernel, Schema, ServiceSpec, embed_migrations,
};
use bulwark_proto::identity::v1::identity_service_server::IdentityServiceServer;

pub use credentials::Passwords;
pub use error::INVALID_CREDENTIALS;
pub use grpc::{ACCOUNTS_MANAGE, IdentityHandlers, USERS_READ, USERS_WRITE};

/// Name and default ports (gRPC 50051, admin HTTP 9101).
pub const SPEC: ServiceSpec = ServiceSpec::new("identity", 50051, 9101).reading_admin_password();

/// The schema: embedded migrations, applied by `bulwark-identity migrate` as the schema's
/// owner, and the grants (`grants.sql`) that are all its runtime role may do.
pub const SCHEMA: Schema = Schema::new(&MIGRATIONS, include_str!("../grants.sql"));
const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// What the service uses besides the kernel: the other services (real clients in
/// production, in-process fakes in tests) and the password hasher.
pub struct Dependencies {
    /// Verifies bearer tokens (against Auth's JWKS in production).
    pub verifier: Arc<TokenVerifier>,
    pub authz: Arc<dyn AuthzApi>,
    /// Where the outbox relay delivers audit events.
    pub audit: Arc<dyn AuditApi>,
    pub passwords: Passwords,
}

impl std::fmt::Debug for Dependencies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dependencies")
            .field("verifier", &self.verifier)
            .field("passwords", &self.passwords)
            .finish_non_exhaustive()
    }
}

impl Dependencies {
    /// The production wiring: typed clients from `clients.*` configuration.
    pub async fn from_kernel(kernel: &Kernel) -> anyhow::Result<Self> {
        Ok(Self {
            verifier: kernel.token_verifier()?,
            authz: kernel.clients.authz()?,
            audit: kernel.clients.audit()?,
            passwords: Passwords::new().await?,
        })
    }
}

/// Builds the gRPC services this binary serves.
pub async fn app(kernel: Kernel) -> anyhow::Result<GrpcServices> {
    let dependencies = Dependencies::from_kernel(&kernel).await?;
    app_with(kernel, dependencies).await
}

/// Builds the service on `dependencies`: ensures the bootstrap admin, starts the
/// audit outbox relay and returns the gRPC services.
pub async fn app_with(kernel: Kernel, dependencies: Dependencies) -> anyhow::Result<GrpcServices> {
    let Dependencies {
        verifier,
        authz,
        audit,
        passwords,
    } = dependencies;
    let admin_id = bootstrap::ensure_admin(&kernel, &passwords).await?;
    let relay = kernel.start_outbox_relay_with(audit);
    // The admin's registration event, if this start created it, goes out now.
    relay.kick();
    let handlers =
        IdentityHandlers::new(kernel.clone(), verifier, authz, relay, passwords, admin_id);
    let server = bulwark_kernel::grpc_limits!(kernel, IdentityServiceServer::new(handlers));
    Ok(GrpcServices::new().with(server))
}
