//! The Identity service: user accounts: registration, lookup, credentials.

mod grpc;

use bulwark_kernel::{EmbeddedMigrations, GrpcServices, Kernel, ServiceSpec, embed_migrations};
use bulwark_proto::identity::v1::identity_service_server::IdentityServiceServer;

pub use grpc::IdentityHandlers;

/// Name and default ports (gRPC 50051, admin HTTP 9101).
pub const SPEC: ServiceSpec = ServiceSpec::new("identity", 50051, 9101);

/// The `identity` schema's migrations, applied at start.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Builds the gRPC services this binary serves.
pub async fn app(kernel: Kernel) -> anyhow::Result<GrpcServices> {
    let handlers = IdentityHandlers::new(kernel.clone());
    let server = bulwark_kernel::grpc_limits!(kernel, IdentityServiceServer::new(handlers));
    Ok(GrpcServices::new().with(server))
}
