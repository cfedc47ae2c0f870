//! gRPC handlers of `bulwark.identity.v1.IdentityService`: authenticate the caller,
//! validate the request, check permissions, then read or write through the store.
//!
//! Permission checks come before existence checks, so a caller without `users:read`
//! learns nothing about which ids exist. `VerifyCredentials` is internal: only a service
//! account whose token carries `credentials:verify` (Auth's) may call it; the account
//! RPCs Auth's verification, recovery and MFA flows call (`FindUserByEmail`,
//! `SetPassword`, `MarkEmailVerified`, `SetMfaEnabled`) need `accounts:manage`, which
//! only Auth's built-in client holds.

use std::sync::Arc;

use bulwark_kernel::Kernel;
use bulwark_kernel::caller::TokenVerifier;
use bulwark_kernel::clients::AuthzApi;
use bulwark_kernel::outbox::OutboxRelay;
use bulwark_kernel::request::{PermissionSource, Refusal, RequestLayer};
use bulwark_kernel::tonic::{Request, Response, Status};
use bulwark_proto::audit::v1::Outcome;
use bulwark_proto::identity::v1::identity_service_server::IdentityService;
use bulwark_proto::identity::v1::{
    self as api, CreateUserRequest, DeactivateUserRequest, FindUserByEmailRequest,
    FindUserByEmailResponse, GetMeRequest, GetUserRequest, MarkEmailVerifiedRequest,
    SetMfaEnabledRequest, SetPasswordRequest, SetPasswordResponse, UpdateDisplayNameRequest,
    VerifyCredentialsRequest, VerifyCredentialsResponse,
};
use uuid::Uuid;

use crate::credentials::Passwords;
use crate::domain::{
    DisplayName, Email, InvalidInput, LoginAttempt, LookupEmail, NewUser, Password, User, UserId,
    events,
};
use crate::error::Error;
use crate::store;

/// Permission to read another user's record.
pub const USERS_READ: &str = "users:read";
/// Permission to change or deactivate another user.
pub const USERS_WRITE: &str = "users:write";
/// Permission (of a service account) to check passwords.
pub const CREDENTIALS_VERIFY: &str = "credentials:verify";
/// Permission (of a service account: Auth's) to look accounts up by email and change
/// their password, verification and MFA state.
pub const ACCOUNTS_MANAGE: &str = "accounts:manage";

/// The identity service's handlers.
#[derive(Clone)]
pub struct IdentityHandlers {
    kernel: Kernel,
    access: RequestLayer,
    relay: OutboxRelay,
    passwords: Passwords,
    /// The bootstrap admin, which is never deactivated (that would lock everyone out).
    admin_id: Uuid,
}

impl std::fmt::Debug for IdentityHandlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityHandlers")
            .field("kernel", &self.kernel)
            .field("admin_id", &self.admin_id)
            .finish_non_exhaustive()
    }
}

impl IdentityHandlers {
    pub fn new(
        kernel: Kernel,
        verifier: Arc<TokenVerifier>,
        authz: Arc<dyn AuthzApi>,
        relay: OutboxRelay,
        passwords: Passwords,
        admin_id: Uuid,
    ) -> Self {
        let authz: Arc<dyn PermissionSource> = Arc::new(authz);
        Self {
            kernel,
            access: RequestLayer::new(verifier, authz),
            relay,
            passwords,
            admin_id,
        }
    }

    /// The status for `error`; internal errors go to the error bus first.
    fn reject(&self, error: Error) -> Status {
        if error.is_internal() {
            self.kernel.errors.error("grpc", &error);
        }
        error.into()
    }

    async fn conn(&self) -> Result<bulwark_kernel::db::DbConnection<'_>, Error> {
        Ok(self.kernel.db.conn().await?)
    }

    async fn register(&self, request: CreateUserRequest) -> Result<User, Error> {
        let email = Email::parse(&request.email);
        let password = Password::parse(request.password);
        let display_name = DisplayName::parse(&request.display_name);
        let (email, password, display_name) = match (email, password, display_name) {
            (Ok(email), Ok(password), Ok(name)) => (email, password, name),
            (email, password, name) => {
                let errors = [email.err(), password.err(), name.err()];
                return Err(InvalidInput(errors.into_iter().flatten().collect()).into());
            }
        };
        let user = NewUser {
            id: Uuid::new_v4(),
            email,
            display_name,
            password_hash: self.passwords.hash(password).await?,
        };
        let mut conn = self.conn().await?;
        let created = store::insert_user(&mut conn, &user, events::registered(user.id)).await?;
        self.relay.kick();
        tracing::info!(user_id = %created.id, "user registered");
        Ok(created)
    }

    async fn me(&self, request: &Request<GetMeRequest>) -> Result<User, Error> {
        let caller = self.access.caller(request).await?;
        // A service account is no user: it has no record here.
        let id = caller.user_id().ok_or(Error::NotFound)?;
        let mut conn = self.conn().await?;
        store::find(&mut conn, id).await?.ok_or(Error::NotFound)
    }

    /// The user itself, or a holder of `users:read` (Auth's service account, when it
    /// confirms an account is still active on refresh).
    async fn user(&self, request: &Request<GetUserRequest>) -> Result<User, Error> {
        let caller = self.access.caller(request).await?;
        let UserId(id) = UserId::parse("id", &request.get_ref().id)?;
        self.access.require_self_or(&caller, id, USERS_READ).await?;
        let mut conn = self.conn().await?;
        store::find(&mut conn, id).await?.ok_or(Error::NotFound)
    }

    async fn rename(&self, request: &Request<UpdateDisplayNameRequest>) -> Result<User, Error> {
        let caller = self.access.caller(request).await?;
        let message = request.get_ref();
        let id = UserId::parse("id", &message.id);
        let name = DisplayName::parse(&message.display_name);
        let (UserId(id), name) = match (id, name) {
            (Ok(id), Ok(name)) => (id, name),
            (id, name) => {
                return Err(
                    InvalidInput([id.err(), name.err()].into_iter().flatten().collect()).into(),
                );
            }
        };
        let authorized = self.access.require_self_or(&caller, id, USERS_WRITE).await;
        if let Err(Refusal::PermissionDenied(_)) = authorized {
            let event = events::display_name_updated(&caller.actor_id(), id, Outcome::Denied);
            self.record_denied(event).await;
        }
        authorized?;
        let event = events::display_name_updated(&caller.actor_id(), id, Outcome::Success);
        let mut conn = self.conn().await?;
        let user = store::update_display_name(&mut conn, id, name.as_str(), event)
            .await?
            .ok_or(Error::NotFound)?;
        self.relay.kick();
        tracing::info!(user_id = %id, actor = %caller.actor_id(), "display name updated");
        Ok(user)
    }

    async fn deactivate(&self, request: &Request<DeactivateUserRequest>) -> Result<User, Error> {
        let caller = self.access.caller(request).await?;
        let UserId(id) = UserId::parse("id", &request.get_ref().id)?;
        // Only holders of users:write, not the user themselves: deactivation is an
        // administrative act.
        let authorized = self.access.require(&caller, USERS_WRITE).await;
        if let Err(Refusal::PermissionDenied(_)) = authorized {
            let event = events::deactivated(&caller.actor_id(), id, Outcome::Denied, None);
            self.record_denied(event).await;
        }
        authorized?;
        if id == self.admin_id {
            return Err(Error::ProtectedUser);
        }
        let mut conn = self.conn().await?;
        let user = store::deactivate(&mut conn, id, |was_active| {
            events::deactivated(&caller.actor_id(), id, Outcome::Success, Some(was_active))
        })
        .await?
        .ok_or(Error::NotFound)?;
        self.relay.kick();
        tracing::info!(user_id = %id, actor = %caller.actor_id(), "user deactivated");
        Ok(user)
    }

    /// Records a refused write. Failing to record it is reported; the caller gets
    /// the refusal either way.
    async fn record_denied(&self, event: bulwark_kernel::outbox::NewAuditEvent) {
        let recorded = match self.conn().await {
            Ok(mut conn) => store::record(&mut conn, event).await,
            Err(error) => Err(error),
        };
        match recorded {
            Ok(()) => self.relay.kick(),
            Err(error) => self.kernel.errors.error("grpc", &error),
        }
    }

    async fn check_credentials(
        &self,
        request: Request<VerifyCredentialsRequest>,
    ) -> Result<VerifyCredentialsResponse, Error> {
        // Only Auth may ask, with its service token: a credential oracle open to anyone
        // who reaches this port would bypass login's rate limits, lockout and audit.
        self.access.service(&request, CREDENTIALS_VERIFY).await?;
        let request = request.into_inner();
        let attempt = LoginAttempt::parse(&request.email, request.password)?;
        let mut conn = self.conn().await?;
        let stored = store::credentials(&mut conn, &attempt.normalized_email).await?;
        // Back to the pool before the slow hash.
        drop(conn);
        let (user, hash) = match stored {
            Some(stored) => (Some((stored.id, stored.active)), Some(stored.password_hash)),
            None => (None, None),
        };
        let matches = self.passwords.verify(attempt.password, hash).await?;
        match user {
            Some((id, active)) if matches => Ok(VerifyCredentialsResponse {
                user_id: id.to_string(),
                active,
            }),
            _ => Err(Error::InvalidCredentials),
        }
    }

    async fn find_by_email(
        &self,
        request: Request<FindUserByEmailRequest>,
    ) -> Result<FindUserByEmailResponse, Error> {
        self.access.service(&request, ACCOUNTS_MANAGE).await?;
        let email = LookupEmail::parse(&request.get_ref().email)?;
        let mut conn = self.conn().await?;
        let user = store::find_by_email(&mut conn, &email.normalized)
            .await?
            .ok_or(Error::NotFound)?;
        Ok(FindUserByEmailResponse {
            user_id: user.id.to_string(),
            email: user.email,
            active: user.active,
        })
    }

    async fn replace_password(&self, request: Request<SetPasswordRequest>) -> Result<(), Error> {
        self.access.service(&request, ACCOUNTS_MANAGE).await?;
        let SetPasswordRequest { user_id, password } = request.into_inner();
        let UserId(id) = UserId::parse("user_id", &user_id)?;
        let password = Password::parse(password)?;
        // Unknown users are refused before the slow hash.
        if store::find(&mut *self.conn().await?, id).await?.is_none() {
            return Err(Error::NotFound);
        }
        let hash = self.passwords.hash(password).await?;
        let mut conn = self.conn().await?;
        if !store::set_password_hash(&mut conn, id, &hash).await? {
            return Err(Error::NotFound);
        }
        tracing::info!(user_id = %id, "password replaced");
        Ok(())
    }

    async fn mark_verified(
        &self,
        request: Request<MarkEmailVerifiedRequest>,
    ) -> Result<User, Error> {
        self.access.service(&request, ACCOUNTS_MANAGE).await?;
        let UserId(id) = UserId::parse("user_id", &request.get_ref().user_id)?;
        let mut conn = self.conn().await?;
        let user = store::mark_email_verified(&mut conn, id)
            .await?
            .ok_or(Error::NotFound)?;
        tracing::info!(user_id = %id, "email verified");
        Ok(user)
    }

    async fn set_mfa(&self, request: Request<SetMfaEnabledRequest>) -> Result<User, Error> {
        self.access.service(&request, ACCOUNTS_MANAGE).await?;
        let UserId(id) = UserId::parse("user_id", &request.get_ref().user_id)?;
        let enabled = request.get_ref().enabled;
        let mut conn = self.conn().await?;
        let user = store::set_mfa_enabled(&mut conn, id, enabled)
            .await?
            .ok_or(Error::NotFound)?;
        tracing::info!(user_id = %id, enabled, "second factor set");
        Ok(user)
    }
}

#[bulwark_kernel::tonic::async_trait]
impl IdentityService for IdentityHandlers {
    async fn create_user(
        &self,
        request: Request<CreateUserRequest>,
    ) -> Result<Response<api::User>, Status> {
        self.register(request.into_inner())
            .await
            .map(|user| Response::new(user.into()))
            .map_err(|e| self.reject(e))
    }

    async fn get_me(&self, request: Request<GetMeRequest>) -> Result<Response<api::User>, Status> {
        self.me(&request)
            .await
            .map(|user| Response::new(user.into()))
            .map_err(|e| self.reject(e))
    }

    async fn get_user(
        &self,
        request: Request<GetUserRequest>,
    ) -> Result<Response<api::User>, Status> {
        self.user(&request)
            .await
            .map(|user| Response::new(user.into()))
            .map_err(|e| self.reject(e))
    }

    async fn update_display_name(
        &self,
        request: Request<UpdateDisplayNameRequest>,
    ) -> Result<Response<api::User>, Status> {
        self.rename(&request)
            .await
            .map(|user| Response::new(user.into()))
            .map_err(|e| self.reject(e))
    }

    async fn deactivate_user(
        &self,
        request: Request<DeactivateUserRequest>,
    ) -> Result<Response<api::User>, Status> {
        self.deactivate(&request)
            .await
            .map(|user| Response::new(user.into()))
            .map_err(|e| self.reject(e))
    }

    async fn verify_credentials(
        &self,
        request: Request<VerifyCredentialsRequest>,
    ) -> Result<Response<VerifyCredentialsResponse>, Status> {
        self.check_credentials(request)
            .await
            .map(Response::new)
            .map_err(|e| self.reject(e))
    }

    async fn find_user_by_email(
        &self,
        request: Request<FindUserByEmailRequest>,
    ) -> Result<Response<FindUserByEmailResponse>, Status> {
        self.find_by_email(request)
            .await
            .map(Response::new)
            .map_err(|e| self.reject(e))
    }

    async fn set_password(
        &self,
        request: Request<SetPasswordRequest>,
    ) -> Result<Response<SetPasswordResponse>, Status> {
        self.replace_password(request)
            .await
            .map(|()| Response::new(SetPasswordResponse {}))
            .map_err(|e| self.reject(e))
    }

    async fn mark_email_verified(
        &self,
        request: Request<MarkEmailVerifiedRequest>,
    ) -> Result<Response<api::User>, Status> {
        self.mark_verified(request)
            .await
            .map(|user| Response::new(user.into()))
            .map_err(|e| self.reject(e))
    }

    async fn set_mfa_enabled(
        &self,
        request: Request<SetMfaEnabledRequest>,
    ) -> Result<Response<api::User>, Status> {
        self.set_mfa(request)
            .await
            .map(|user| Response::new(user.into()))
            .map_err(|e| self.reject(e))
    }
}
