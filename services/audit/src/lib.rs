//! The Audit service: the append-only, hash-chained audit log.

mod grpc;

use bulwark_kernel::{EmbeddedMigrations, GrpcServices, Kernel, ServiceSpec, embed_migrations};
use bulwark_proto::audit::v1::audit_service_server::AuditServiceServer;

pub use grpc::AuditHandlers;

/// Name and default ports (gRPC 50054, admin HTTP 9104).
pub const SPEC: ServiceSpec = ServiceSpec::new("audit", 50054, 9104);

/// The `audit` schema's migrations, applied at start.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Builds the gRPC services this binary serves.
pub async fn app(kernel: Kernel) -> anyhow::Result<GrpcServices> {
    let handlers = AuditHandlers::new(kernel.clone());
    let server = bulwark_kernel::grpc_limits!(kernel, AuditServiceServer::new(handlers));
    Ok(GrpcServices::new().with(server))
}
