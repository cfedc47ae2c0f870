//! The Authz service: role-based access control: roles, grants and permission checks.

mod grpc;

use bulwark_kernel::{EmbeddedMigrations, GrpcServices, Kernel, ServiceSpec, embed_migrations};
use bulwark_proto::authz::v1::authz_service_server::AuthzServiceServer;

pub use grpc::AuthzHandlers;

/// Name and default ports (gRPC 50053, admin HTTP 9103).
pub const SPEC: ServiceSpec = ServiceSpec::new("authz", 50053, 9103);

/// The `authz` schema's migrations, applied at start.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Builds the gRPC services this binary serves.
pub async fn app(kernel: Kernel) -> anyhow::Result<GrpcServices> {
    let handlers = AuthzHandlers::new(kernel.clone());
    let server = bulwark_kernel::grpc_limits!(kernel, AuthzServiceServer::new(handlers));
    Ok(GrpcServices::new().with(server))
}
