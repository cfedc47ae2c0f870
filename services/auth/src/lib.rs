//! The Auth service: login, token refresh and logout, and the signing keys behind the JWKS.

mod grpc;

use bulwark_kernel::{EmbeddedMigrations, GrpcServices, Kernel, ServiceSpec, embed_migrations};
use bulwark_proto::auth::v1::auth_service_server::AuthServiceServer;

pub use grpc::AuthHandlers;

/// Name and default ports (gRPC 50052, admin HTTP 9102).
pub const SPEC: ServiceSpec = ServiceSpec::new("auth", 50052, 9102);

/// The `auth` schema's migrations, applied at start.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Builds the gRPC services this binary serves.
pub async fn app(kernel: Kernel) -> anyhow::Result<GrpcServices> {
    let handlers = AuthHandlers::new(kernel.clone());
    let server = bulwark_kernel::grpc_limits!(kernel, AuthServiceServer::new(handlers));
    Ok(GrpcServices::new().with(server))
}
