//! gRPC handlers of `bulwark.identity.v1.IdentityService`.
//!
//! The infrastructure (health, metrics, readiness, tracing, shutdown) is live; the
//! business logic of each RPC lands with issue #3 and answers UNIMPLEMENTED until then.

use bulwark_kernel::Kernel;
use bulwark_kernel::tonic::{Request, Response, Status};
use bulwark_proto::identity::v1::identity_service_server::IdentityService;
use bulwark_proto::identity::v1::{
    CreateUserRequest, DeactivateUserRequest, GetMeRequest, GetUserRequest,
    UpdateDisplayNameRequest, User, VerifyCredentialsRequest, VerifyCredentialsResponse,
};

/// The identity service's handlers.
#[derive(Debug, Clone)]
pub struct IdentityHandlers {
    #[allow(dead_code, reason = "used by the handlers of issue #3")]
    kernel: Kernel,
}

impl IdentityHandlers {
    pub fn new(kernel: Kernel) -> Self {
        Self { kernel }
    }
}

fn not_yet(rpc: &str) -> Status {
    Status::unimplemented(format!("IdentityService.{rpc} is not implemented yet"))
}

#[bulwark_kernel::tonic::async_trait]
impl IdentityService for IdentityHandlers {
    async fn create_user(
        &self,
        _request: Request<CreateUserRequest>,
    ) -> Result<Response<User>, Status> {
        Err(not_yet("CreateUser"))
    }

    async fn get_me(&self, _request: Request<GetMeRequest>) -> Result<Response<User>, Status> {
        Err(not_yet("GetMe"))
    }

    async fn get_user(&self, _request: Request<GetUserRequest>) -> Result<Response<User>, Status> {
        Err(not_yet("GetUser"))
    }

    async fn update_display_name(
        &self,
        _request: Request<UpdateDisplayNameRequest>,
    ) -> Result<Response<User>, Status> {
        Err(not_yet("UpdateDisplayName"))
    }

    async fn deactivate_user(
        &self,
        _request: Request<DeactivateUserRequest>,
    ) -> Result<Response<User>, Status> {
        Err(not_yet("DeactivateUser"))
    }

    async fn verify_credentials(
        &self,
        _request: Request<VerifyCredentialsRequest>,
    ) -> Result<Response<VerifyCredentialsResponse>, Status> {
        Err(not_yet("VerifyCredentials"))
    }
}
