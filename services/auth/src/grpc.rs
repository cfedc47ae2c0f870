//! gRPC handlers of `bulwark.auth.v1.AuthService`: input validation, the kernel's
//! request layer for the caller's identity and permission, and the mapping of errors to
//! statuses.

use std::sync::Arc;

use bulwark_kernel::Kernel;
use bulwark_kernel::request::{Refusal, RequestLayer};
use bulwark_kernel::timestamp;
use bulwark_kernel::tonic::{Request, Response, Status};
use bulwark_proto::auth::v1::auth_service_server::AuthService;
use bulwark_proto::auth::v1::{
    AccessToken, ChangePasswordRequest, ChangePasswordResponse, ConfirmPasswordResetRequest,
    ConfirmPasswordResetResponse, ConfirmTotpRequest, ConfirmTotpResponse, CreateClientRequest,
    CreateClientResponse, DeleteClientRequest, DeleteClientResponse, DisableTotpRequest,
    DisableTotpResponse, EnrollTotpRequest, EnrollTotpResponse, GetJwksRequest, Jwks,
    ListRevokedSessionsRequest, ListRevokedSessionsResponse, ListSessionsRequest,
    ListSessionsResponse, LoginMfaRequest, LoginRequest, LoginResponse, LogoutRequest,
    LogoutResponse, RefreshRequest, RequestEmailVerificationRequest,
    RequestEmailVerificationResponse, RequestPasswordResetRequest, RequestPasswordResetResponse,
    RevokeSessionRequest, RevokeSessionResponse, RevokedSession, RotateSigningKeyRequest,
    RotateSigningKeyResponse, Session, TokenPair, VerifyEmailRequest,
};
use bulwark_proto::google::api::HttpBody;
use bulwark_proto::identity::v1::User;

use crate::accounts::AccountFlows;
use crate::audit_trail::AuditTrail;
use crate::domain::account_token;
use crate::domain::client_credentials;
use crate::domain::credentials::Credentials;
use crate::domain::events;
use crate::domain::refresh_token;
use crate::domain::service_account::CLIENTS_WRITE;
use crate::domain::session::ClientInfo;
use crate::domain::signing_key::{PublicJwk, ROTATE_PERMISSION};
use crate::error::Error;
use crate::keys::KeyRing;
use crate::service_accounts::ServiceAccounts;
use crate::sessions::{LoginOutcome, Sessions};

/// The auth service's handlers.
#[derive(Clone)]
pub struct AuthHandlers {
    kernel: Kernel,
    sessions: Arc<Sessions>,
    accounts: Arc<ServiceAccounts>,
    flows: Arc<AccountFlows>,
    keys: Arc<KeyRing>,
    access: RequestLayer,
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
        accounts: Arc<ServiceAccounts>,
        flows: Arc<AccountFlows>,
        access: RequestLayer,
    ) -> Self {
        Self {
            keys: sessions.keys.clone(),
            audit: sessions.audit.clone(),
            kernel,
            sessions,
            accounts,
            flows,
            access,
        }
    }

    /// The calling user, for calls only a user can make (a service account has no
    /// second factor).
    async fn user<T>(&self, request: &Request<T>) -> Result<uuid::Uuid, Status> {
        let caller = self
            .access
            .caller(request)
            .await
            .map_err(|e| self.status(e.into()))?;
        caller
            .user_id()
            .ok_or_else(|| self.status(Error::PermissionDenied("a user's token")))
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

    /// The user behind a bearer call; a service account has no account to act on.
    async fn user_caller<T>(
        &self,
        request: &Request<T>,
    ) -> Result<(uuid::Uuid, Option<uuid::Uuid>), Status> {
        let caller = self
            .access
            .caller(request)
            .await
            .map_err(|e| self.status(e.into()))?;
        match caller.user_id() {
            Some(user_id) => Ok((user_id, caller.session_id)),
            None => Err(self.status(Error::NotFound("user"))),
        }
    }
}

#[bulwark_kernel::tonic::async_trait]
impl AuthService for AuthHandlers {
    async fn login(
        &self,
        request: Request<LoginRequest>,
    ) -> Result<Response<LoginResponse>, Status> {
        let client = ClientInfo::from_metadata(request.metadata());
        let LoginRequest { email, password } = request.into_inner();
        let credentials = Credentials::parse(email, password).map_err(|e| self.status(e))?;
        let outcome = self
            .sessions
            .login(credentials, client)
            .await
            .map_err(|e| self.status(e))?;
        Ok(Response::new(match outcome {
            LoginOutcome::Pair(pair) => LoginResponse {
                access_token: Some(pair.access_token),
                refresh_token: Some(pair.refresh_token),
                token_type: Some(pair.token_type),
                expires_in: Some(pair.expires_in),
                ..LoginResponse::default()
            },
            LoginOutcome::MfaRequired { mfa_token } => LoginResponse {
                mfa_required: Some(true),
                mfa_token: Some(mfa_token),
                ..LoginResponse::default()
            },
        }))
    }

    async fn login_mfa(
        &self,
        request: Request<LoginMfaRequest>,
    ) -> Result<Response<TokenPair>, Status> {
        let client = ClientInfo::from_metadata(request.metadata());
        let LoginMfaRequest { mfa_token, code } = request.into_inner();
        let pair = self
            .sessions
            .login_mfa(&mfa_token, &code, client)
            .await
            .map_err(|e| self.status(e))?;
        Ok(Response::new(pair))
    }

    async fn enroll_totp(
        &self,
        request: Request<EnrollTotpRequest>,
    ) -> Result<Response<EnrollTotpResponse>, Status> {
        let user_id = self.user(&request).await?;
        let enrolled = self
            .sessions
            .mfa
            .enroll(user_id)
            .await
            .map_err(|e| self.status(e))?;
        Ok(Response::new(enrolled))
    }

    async fn confirm_totp(
        &self,
        request: Request<ConfirmTotpRequest>,
    ) -> Result<Response<ConfirmTotpResponse>, Status> {
        let user_id = self.user(&request).await?;
        let recovery_codes = self
            .sessions
            .mfa
            .confirm(user_id, &request.get_ref().code)
            .await
            .map_err(|e| self.status(e))?;
        Ok(Response::new(ConfirmTotpResponse { recovery_codes }))
    }

    async fn disable_totp(
        &self,
        request: Request<DisableTotpRequest>,
    ) -> Result<Response<DisableTotpResponse>, Status> {
        let user_id = self.user(&request).await?;
        self.sessions
            .mfa
            .disable(user_id, &request.get_ref().code)
            .await
            .map_err(|e| self.status(e))?;
        Ok(Response::new(DisableTotpResponse {}))
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
        let caller = self
            .access
            .caller(&request)
            .await
            .map_err(|e| self.status(e.into()))?;
        let hash = refresh_token::parse_presented(&request.get_ref().refresh_token)
            .map_err(|e| self.status(e))?;
        // A service account has no refresh tokens: there is nothing of its to revoke.
        if let Some(user_id) = caller.user_id() {
            self.sessions
                .logout(user_id, hash)
                .await
                .map_err(|e| self.status(e))?;
        }
        Ok(Response::new(LogoutResponse {}))
    }

    async fn list_sessions(
        &self,
        request: Request<ListSessionsRequest>,
    ) -> Result<Response<ListSessionsResponse>, Status> {
        let caller = self
            .access
            .caller(&request)
            .await
            .map_err(|e| self.status(e.into()))?;
        // A service account has no sessions.
        let Some(user_id) = caller.user_id() else {
            return Ok(Response::new(ListSessionsResponse::default()));
        };
        let sessions = self
            .sessions
            .list(user_id, caller.session_id)
            .await
            .map_err(|e| self.status(e))?;
        Ok(Response::new(ListSessionsResponse {
            sessions: sessions
                .into_iter()
                .map(|(row, current)| Session {
                    id: row.id.to_string(),
                    created_at: Some(timestamp::to_proto(row.created_at)),
                    last_used_at: Some(timestamp::to_proto(row.last_used_at)),
                    ip: row.ip,
                    user_agent: row.user_agent,
                    current,
                })
                .collect(),
        }))
    }

    async fn revoke_session(
        &self,
        request: Request<RevokeSessionRequest>,
    ) -> Result<Response<RevokeSessionResponse>, Status> {
        let caller = self
            .access
            .caller(&request)
            .await
            .map_err(|e| self.status(e.into()))?;
        let session_id = uuid::Uuid::try_parse(&request.get_ref().id)
            .map_err(|_| self.status(Error::invalid("id", "must be a session id (a UUID)")))?;
        let Some(user_id) = caller.user_id() else {
            return Err(self.status(Error::NotFound("session")));
        };
        self.sessions
            .revoke(user_id, caller.session_id, session_id)
            .await
            .map_err(|e| self.status(e))?;
        Ok(Response::new(RevokeSessionResponse {}))
    }

    async fn list_revoked_sessions(
        &self,
        request: Request<ListRevokedSessionsRequest>,
    ) -> Result<Response<ListRevokedSessionsResponse>, Status> {
        let page = self
            .sessions
            .revoked(request.get_ref().since_unix_ms)
            .await
            .map_err(|e| self.status(e))?;
        Ok(Response::new(ListRevokedSessionsResponse {
            sessions: page
                .sessions
                .into_iter()
                .map(|(id, expires_at)| RevokedSession {
                    id: id.as_bytes().to_vec(),
                    expires_at,
                })
                .collect(),
            next_since_unix_ms: page.next_since_ms,
            more: page.more,
        }))
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
        let caller = self
            .access
            .caller(&request)
            .await
            .map_err(|e| self.status(e.into()))?;
        match self.access.require(&caller, ROTATE_PERMISSION).await {
            Ok(()) => {}
            Err(Refusal::PermissionDenied(_)) => {
                self.audit
                    .record(events::key_rotation_denied(&caller.actor_id()))
                    .await
                    .map_err(|e| self.status(e))?;
                return Err(self.status(Error::PermissionDenied(ROTATE_PERMISSION)));
            }
            Err(refusal) => return Err(self.status(refusal.into())),
        }
        let immediate = request.get_ref().immediate;
        let rotation = self
            .keys
            .rotate(&caller.actor_id(), immediate)
            .await
            .map_err(|e| self.status(e))?;
        self.audit.committed();
        // Tokens signed with the new key verify here as soon as it signs, not after a
        // refetch.
        if let Err(error) = self.access.verifier().refresh().await {
            tracing::warn!(%error, "cannot reload the verifier's keys after rotation");
        }
        Ok(Response::new(RotateSigningKeyResponse {
            kid: rotation.kid,
            previous_kid: rotation.previous_kid.unwrap_or_default(),
            activates_at: Some(timestamp::to_proto(rotation.activates_at)),
        }))
    }

    async fn create_client(
        &self,
        request: Request<CreateClientRequest>,
    ) -> Result<Response<CreateClientResponse>, Status> {
        let caller = self
            .access
            .authorize(&request, CLIENTS_WRITE)
            .await
            .map_err(|e| self.status(e.into()))?;
        let CreateClientRequest { name, roles } = request.into_inner();
        let created = self
            .accounts
            .create(&self.access, &caller, &name, &roles)
            .await
            .map_err(|e| self.status(e))?;
        Ok(Response::new(created))
    }

    async fn delete_client(
        &self,
        request: Request<DeleteClientRequest>,
    ) -> Result<Response<DeleteClientResponse>, Status> {
        let caller = self
            .access
            .authorize(&request, CLIENTS_WRITE)
            .await
            .map_err(|e| self.status(e.into()))?;
        self.accounts
            .delete(&caller, &request.get_ref().client_id)
            .await
            .map_err(|e| self.status(e))?;
        Ok(Response::new(DeleteClientResponse {}))
    }

    async fn issue_token(
        &self,
        request: Request<HttpBody>,
    ) -> Result<Response<AccessToken>, Status> {
        let authorization = request
            .metadata()
            .get("authorization")
            .map(|value| value.to_str().unwrap_or_default().to_owned());
        let body = request.into_inner();
        let credentials =
            client_credentials::parse(&body.content_type, &body.data, authorization.as_deref())
                .map_err(|e| self.status(e.into()))?;
        let token = self
            .accounts
            .issue(credentials)
            .await
            .map_err(|e| self.status(e))?;
        Ok(Response::new(token))
    }

    async fn request_email_verification(
        &self,
        request: Request<RequestEmailVerificationRequest>,
    ) -> Result<Response<RequestEmailVerificationResponse>, Status> {
        let (user_id, _) = self.user_caller(&request).await?;
        self.flows
            .request_verification(user_id)
            .await
            .map_err(|e| self.status(e))?;
        Ok(Response::new(RequestEmailVerificationResponse {}))
    }

    async fn verify_email(
        &self,
        request: Request<VerifyEmailRequest>,
    ) -> Result<Response<User>, Status> {
        let hash =
            account_token::parse_presented(&request.get_ref().token).map_err(|e| self.status(e))?;
        let user = self
            .flows
            .verify_email(hash)
            .await
            .map_err(|e| self.status(e))?;
        Ok(Response::new(user))
    }

    async fn request_password_reset(
        &self,
        request: Request<RequestPasswordResetRequest>,
    ) -> Result<Response<RequestPasswordResetResponse>, Status> {
        self.flows
            .request_reset(&request.get_ref().email)
            .await
            .map_err(|e| self.status(e))?;
        Ok(Response::new(RequestPasswordResetResponse {}))
    }

    async fn confirm_password_reset(
        &self,
        request: Request<ConfirmPasswordResetRequest>,
    ) -> Result<Response<ConfirmPasswordResetResponse>, Status> {
        let ConfirmPasswordResetRequest {
            token,
            new_password,
        } = request.into_inner();
        let hash = account_token::parse_presented(&token).map_err(|e| self.status(e))?;
        self.flows
            .confirm_reset(hash, new_password)
            .await
            .map_err(|e| self.status(e))?;
        Ok(Response::new(ConfirmPasswordResetResponse {}))
    }

    async fn change_password(
        &self,
        request: Request<ChangePasswordRequest>,
    ) -> Result<Response<ChangePasswordResponse>, Status> {
        let (user_id, session_id) = self.user_caller(&request).await?;
        let ChangePasswordRequest {
            current_password,
            new_password,
        } = request.into_inner();
        self.flows
            .change_password(user_id, session_id, current_password, new_password)
            .await
            .map_err(|e| self.status(e))?;
        Ok(Response::new(ChangePasswordResponse {}))
    }
}
