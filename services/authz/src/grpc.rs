//! gRPC handlers of `bulwark.authz.v1.AuthzService`.
//!
//! The infrastructure (health, metrics, readiness, tracing, shutdown) is live; the
//! business logic of each RPC lands with issue #3 and answers UNIMPLEMENTED until then.

use bulwark_kernel::Kernel;
use bulwark_kernel::tonic::{Request, Response, Status};
use bulwark_proto::authz::v1::authz_service_server::AuthzService;
use bulwark_proto::authz::v1::{
    CheckRequest, CheckResponse, CreateRoleRequest, GrantRoleRequest, GrantRoleResponse,
    ListUserRolesRequest, ListUserRolesResponse, RevokeRoleRequest, RevokeRoleResponse, Role,
};

/// The authz service's handlers.
#[derive(Debug, Clone)]
pub struct AuthzHandlers {
    #[allow(dead_code, reason = "used by the handlers of issue #3")]
    kernel: Kernel,
}

impl AuthzHandlers {
    pub fn new(kernel: Kernel) -> Self {
        Self { kernel }
    }
}

fn not_yet(rpc: &str) -> Status {
    Status::unimplemented(format!("AuthzService.{rpc} is not implemented yet"))
}

#[bulwark_kernel::tonic::async_trait]
impl AuthzService for AuthzHandlers {
    async fn check(
        &self,
        _request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        Err(not_yet("Check"))
    }

    async fn create_role(
        &self,
        _request: Request<CreateRoleRequest>,
    ) -> Result<Response<Role>, Status> {
        Err(not_yet("CreateRole"))
    }

    async fn grant_role(
        &self,
        _request: Request<GrantRoleRequest>,
    ) -> Result<Response<GrantRoleResponse>, Status> {
        Err(not_yet("GrantRole"))
    }

    async fn revoke_role(
        &self,
        _request: Request<RevokeRoleRequest>,
    ) -> Result<Response<RevokeRoleResponse>, Status> {
        Err(not_yet("RevokeRole"))
    }

    async fn list_user_roles(
        &self,
        _request: Request<ListUserRolesRequest>,
    ) -> Result<Response<ListUserRolesResponse>, Status> {
        Err(not_yet("ListUserRoles"))
    }
}
