//! gRPC handlers of `bulwark.audit.v1.AuditService`.
//!
//! The infrastructure (health, metrics, readiness, tracing, shutdown) is live; the
//! business logic of each RPC lands with issue #3 and answers UNIMPLEMENTED until then.

use bulwark_kernel::Kernel;
use bulwark_kernel::tonic::{Request, Response, Status};
use bulwark_proto::audit::v1::audit_service_server::AuditService;
use bulwark_proto::audit::v1::{
    AppendEventsRequest, AppendEventsResponse, ListEventsRequest, ListEventsResponse,
    VerifyChainRequest, VerifyChainResponse,
};

/// The audit service's handlers.
#[derive(Debug, Clone)]
pub struct AuditHandlers {
    #[allow(dead_code, reason = "used by the handlers of issue #3")]
    kernel: Kernel,
}

impl AuditHandlers {
    pub fn new(kernel: Kernel) -> Self {
        Self { kernel }
    }
}

fn not_yet(rpc: &str) -> Status {
    Status::unimplemented(format!("AuditService.{rpc} is not implemented yet"))
}

#[bulwark_kernel::tonic::async_trait]
impl AuditService for AuditHandlers {
    async fn append_events(
        &self,
        _request: Request<AppendEventsRequest>,
    ) -> Result<Response<AppendEventsResponse>, Status> {
        Err(not_yet("AppendEvents"))
    }

    async fn list_events(
        &self,
        _request: Request<ListEventsRequest>,
    ) -> Result<Response<ListEventsResponse>, Status> {
        Err(not_yet("ListEvents"))
    }

    async fn verify_chain(
        &self,
        _request: Request<VerifyChainRequest>,
    ) -> Result<Response<VerifyChainResponse>, Status> {
        Err(not_yet("VerifyChain"))
    }
}
