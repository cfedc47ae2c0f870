//! gRPC handlers of `bulwark.auth.v1.AuthService`: input validation, the caller's
//! identity and permission, and the mapping of errors to statuses.

use std::sync::Arc;

use bulwark_kernel::Kernel;
use bulwark_kernel::caller::TokenVerifier;
use bulwark_kernel::clients::AuthzApi;
use bulwark_kernel::timestamp;
use bulwark_kernel::tonic::{Request, Response, Status};
use bulwark_proto::auth::v1::auth_service_server::AuthService;
use bulwark_proto::auth::v1::{
    GetJwksRequest, Jwks, LoginRequest, LogoutRequest, LogoutResponse, RefreshRequest,
    RotateSigningKeyRequest, RotateSigningKeyResponse, TokenPair,
};

use crate::audit_trail::AuditTrail;
use crate::domain::credentials::Credentials;
use crate::domain::events;
use crate::domain::refresh_token;
use crate::domain::signing_key::{PublicJwk, ROTATE_PERMISSION};
use crate::error::Error;
use crate::keys::KeyRing;
use crate::sessions::Sessions;

/// The auth service's handlers.
#[derive(Clone)]
pub struct AuthHandlers {
    kernel: Kernel,
    sessions: Arc<Sessions>,
    keys: Arc<KeyRing>,
    verifier: Arc<TokenVerifier>,
    authz: Arc<dyn AuthzApi>,
    audit: AuditTrail,
}

impl std::fmt::Debug for AuthHandlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthHandlers").finish_non_exhaustive()
    }
}

impl AuthHandlers {
    pub fn new(
        kernel: Kernel,
        sessions: Arc<Sessions>,
        verifier: Arc<TokenVerifier>,
        authz: Arc<dyn AuthzApi>,
    ) -> Self {
        Self {
            keys: sessions.keys.clone(),
            audit: sessions.audit.clone(),
            kernel,
            sessions,
            verifier,
            authz,
        }
    }

    /// The client's answer for `error`; Auth's own faults also go to the error bus.
    fn status(&self, error: Error) -> Status {
        if error.is_internal() {
            self.kernel.errors.error("grpc", &error);
        } else if let Error::Unavailable { service, status } = &error {
            tracing::warn!(service, code = ?status.code(), message = status.message(), "dependency unavailable");
        }
        error.into()
    }

    /// Whether `user_id` may rotate keys; Authz decides (the `admin` role holds
    /// every permission), and without an answer nobody may.
    async fn may_rotate(&self, user_id: uuid::Uuid) -> Result<bool, Error> {
        self.authz
            .check(user_id.to_string(), ROTATE_PERMISSION.to_owned())
            .await
            .map_err(|status| Error::from_upstream("authz", status))
    }
}

#[bulwark_kernel::tonic::async_trait]
impl AuthService for AuthHandlers {
    async fn login(&self, request: Request<LoginRequest>) -> Result<Response<TokenPair>, Status> {
        let LoginRequest { email, password } = request.into_inner();
        let credentials = Credentials::parse(email, password).map_err(|e| self.status(e))?;
        let pair = self
            .sessions
            .login(credentials)
            .await
            .map_err(|e| self.status(e))?;
        Ok(Response::new(pair))
    }

    async fn refresh(
        &self,
        request: Request<RefreshRequest>,
    ) -> Result<Response<TokenPair>, Status> {
        let hash = refresh_token::parse_presented(&request.get_ref().refresh_token)
            .map_err(|e| self.status(e))?;
        let pair = self
            .sessions
            .refresh(hash)
            .await
            .map_err(|e| self.status(e))?;
        Ok(Response::new(pair))
    }

    async fn logout(
        &self,
        request: Request<LogoutRequest>,
    ) -> Result<Response<LogoutResponse>, Status> {
        let caller = self.verifier.caller(&request).await?;
        let hash = refresh_token::parse_presented(&request.get_ref().refresh_token)
            .map_err(|e| self.status(e))?;
        self.sessions
            .logout(&caller, hash)
            .await
            .map_err(|e| self.status(e))?;
        Ok(Response::new(LogoutResponse {}))
    }

    async fn get_jwks(&self, _request: Request<GetJwksRequest>) -> Result<Response<Jwks>, Status> {
        let keys = self.keys.published().await.map_err(|e| self.status(e))?;
        Ok(Response::new(Jwks {
            keys: keys.iter().map(PublicJwk::to_proto).collect(),
        }))
    }

    async fn rotate_signing_key(
        &self,
        request: Request<RotateSigningKeyRequest>,
    ) -> Result<Response<RotateSigningKeyResponse>, Status> {
        let caller = self.verifier.caller(&request).await?;
        if !self
            .may_rotate(caller.user_id)
            .await
            .map_err(|e| self.status(e))?
        {
            self.audit
                .record(events::key_rotation_denied(caller.user_id))
                .await
                .map_err(|e| self.status(e))?;
            return Err(self.status(Error::PermissionDenied(ROTATE_PERMISSION)));
        }
        let immediate = request.get_ref().immediate;
        let rotation = self
            .keys
            .rotate(caller.user_id, immediate)
            .await
            .map_err(|e| self.status(e))?;
        self.audit.committed();
        // Tokens signed with the new key verify here as soon as it signs, not after a
        // refetch.
        if let Err(error) = self.verifier.refresh().await {
            tracing::warn!(%error, "cannot reload the verifier's keys after rotation");
        }
        Ok(Response::new(RotateSigningKeyResponse {
            kid: rotation.kid,
            previous_kid: rotation.previous_kid.unwrap_or_default(),
            activates_at: Some(timestamp::to_proto(rotation.activates_at)),
        }))
    }
}
