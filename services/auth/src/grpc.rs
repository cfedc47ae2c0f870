//! gRPC handlers of `bulwark.auth.v1.AuthService`.
//!
//! The infrastructure (health, metrics, readiness, tracing, shutdown) is live; the
//! business logic of each RPC lands with issue #3 and answers UNIMPLEMENTED until then.

use bulwark_kernel::Kernel;
use bulwark_kernel::tonic::{Request, Response, Status};
use bulwark_proto::auth::v1::auth_service_server::AuthService;
use bulwark_proto::auth::v1::{
    GetJwksRequest, Jwks, LoginRequest, LogoutRequest, LogoutResponse, RefreshRequest,
    RotateSigningKeyRequest, RotateSigningKeyResponse, TokenPair,
};

/// The auth service's handlers.
#[derive(Debug, Clone)]
pub struct AuthHandlers {
    #[allow(dead_code, reason = "used by the handlers of issue #3")]
    kernel: Kernel,
}

impl AuthHandlers {
    pub fn new(kernel: Kernel) -> Self {
        Self { kernel }
    }
}

fn not_yet(rpc: &str) -> Status {
    Status::unimplemented(format!("AuthService.{rpc} is not implemented yet"))
}

#[bulwark_kernel::tonic::async_trait]
impl AuthService for AuthHandlers {
    async fn login(&self, _request: Request<LoginRequest>) -> Result<Response<TokenPair>, Status> {
        Err(not_yet("Login"))
    }

    async fn refresh(
        &self,
        _request: Request<RefreshRequest>,
    ) -> Result<Response<TokenPair>, Status> {
        Err(not_yet("Refresh"))
    }

    async fn logout(
        &self,
        _request: Request<LogoutRequest>,
    ) -> Result<Response<LogoutResponse>, Status> {
        Err(not_yet("Logout"))
    }

    async fn get_jwks(&self, _request: Request<GetJwksRequest>) -> Result<Response<Jwks>, Status> {
        Err(not_yet("GetJwks"))
    }

    async fn rotate_signing_key(
        &self,
        _request: Request<RotateSigningKeyRequest>,
    ) -> Result<Response<RotateSigningKeyResponse>, Status> {
        Err(not_yet("RotateSigningKey"))
    }
}
