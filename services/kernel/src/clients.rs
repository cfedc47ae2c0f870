//! Typed clients of the core services. Each service is one async trait, so callers
//! (and their tests) depend on the operation, not on tonic; the factory builds tonic
//! clients from configured endpoints that carry the caller's `traceparent` and request
//! id, a deadline per attempt, and retries on UNAVAILABLE for idempotent calls.
//!
//! An endpoint is one address (a Consul sidecar's upstream, a load balancer, a single
//! instance) or a comma-separated list of replicas: each attempt then goes to the next
//! replica in turn, so a retry after UNAVAILABLE reaches another one.

mod replicas;
mod service_token;

use std::sync::Arc;
use std::time::Duration;

use bulwark_proto::audit::v1::audit_service_client::AuditServiceClient;
use bulwark_proto::audit::v1::{AppendEventsRequest, AppendEventsResponse, AuditEvent};
use bulwark_proto::auth::v1::auth_service_client::AuthServiceClient;
use bulwark_proto::auth::v1::{GetJwksRequest, Jwks};
use bulwark_proto::authz::v1::authz_service_client::AuthzServiceClient;
use bulwark_proto::authz::v1::{
    CheckRequest, ListUserRolesRequest, ListUserRolesResponse, ResolveRolesRequest,
    ResolveRolesResponse,
};
use bulwark_proto::identity::v1::identity_service_client::IdentityServiceClient;
use bulwark_proto::identity::v1::{
    FindUserByEmailRequest, FindUserByEmailResponse, GetUserRequest, MarkEmailVerifiedRequest,
    SetMfaEnabledRequest, SetPasswordRequest, User, VerifyCredentialsRequest,
    VerifyCredentialsResponse,
};
use futures::future::BoxFuture;
use tonic::Status;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::config::{ClientsConfig, ServiceAccountConfig};

pub use replicas::{Replicas, endpoint_list};
pub use service_token::{ServiceTokens, form_encode};

tokio::task_local! {
    /// The request id of the RPC being served, passed on to outgoing calls.
    pub static REQUEST_ID: String;
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("clients.{service} is not configured")]
    NotConfigured { service: &'static str },
    #[error("clients.{service}: invalid endpoint `{endpoint}`: {source}")]
    Endpoint {
        service: &'static str,
        endpoint: String,
        source: tonic::transport::Error,
    },
}

/// Identity operations other services use.
pub trait IdentityApi: Send + Sync {
    fn verify_credentials(
        &self,
        email: String,
        password: String,
    ) -> BoxFuture<'_, Result<VerifyCredentialsResponse, Status>>;
    fn get_user(&self, id: String) -> BoxFuture<'_, Result<User, Status>>;
    /// The account registered under `email` (NOT_FOUND when none is).
    fn find_user_by_email(
        &self,
        email: String,
    ) -> BoxFuture<'_, Result<FindUserByEmailResponse, Status>>;
    /// Replaces the user's password; Identity hashes it and enforces its length.
    fn set_password(&self, user_id: String, password: String) -> BoxFuture<'_, Result<(), Status>>;
    /// Marks the user's email verified and returns the user.
    fn mark_email_verified(&self, user_id: String) -> BoxFuture<'_, Result<User, Status>>;
    /// Sets whether the user's logins need a second factor and returns the user.
    fn set_mfa_enabled(
        &self,
        user_id: String,
        enabled: bool,
    ) -> BoxFuture<'_, Result<User, Status>>;
}

/// Auth operations other services use.
pub trait AuthApi: Send + Sync {
    fn get_jwks(&self) -> BoxFuture<'_, Result<Jwks, Status>>;
}

/// Authorization decisions.
pub trait AuthzApi: Send + Sync {
    fn check(&self, subject: String, permission: String) -> BoxFuture<'_, Result<bool, Status>>;
    fn list_user_roles(
        &self,
        user_id: String,
    ) -> BoxFuture<'_, Result<ListUserRolesResponse, Status>>;
    fn resolve_roles(
        &self,
        roles: Vec<String>,
    ) -> BoxFuture<'_, Result<ResolveRolesResponse, Status>>;
}

/// Delivery of audit events (idempotent: Audit drops duplicate ids).
pub trait AuditApi: Send + Sync {
    fn append_events(
        &self,
        events: Vec<AuditEvent>,
    ) -> BoxFuture<'_, Result<AppendEventsResponse, Status>>;
}

/// Whether a failed call to another service means it is down or slow (worth a retry
/// later; answered UNAVAILABLE) rather than a defect on either side. A client-side
/// deadline expiring surfaces as CANCELLED ("Timeout expired"): the dependency is slow.
pub fn is_unavailable(status: &Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::ResourceExhausted
            | tonic::Code::Cancelled
    )
}

/// Adds `traceparent` and `x-request-id` of the current call to every request.
#[derive(Debug, Clone, Copy, Default)]
pub struct ContextInterceptor;

impl tonic::service::Interceptor for ContextInterceptor {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        let mut headers = http::HeaderMap::new();
        crate::telemetry::inject_current_context(&mut headers);
        for (name, value) in &headers {
            if let Ok(value) = tonic::metadata::MetadataValue::try_from(value.as_bytes()) {
                request.metadata_mut().insert(
                    tonic::metadata::MetadataKey::from_bytes(name.as_str().as_bytes())
                        .map_err(|_| Status::internal("invalid propagation header"))?,
                    value,
                );
            }
        }
        if let Ok(Ok(value)) =
            REQUEST_ID.try_with(|id| tonic::metadata::MetadataValue::try_from(id.as_str()))
        {
            request.metadata_mut().insert("x-request-id", value);
        }
        Ok(request)
    }
}

type Intercepted = InterceptedService<Channel, ContextInterceptor>;

/// Deadline, retry policy and credential of outgoing calls.
#[derive(Debug, Clone)]
pub struct CallPolicy {
    pub timeout: Duration,
    pub retries: u32,
    /// This service's own token, sent on every call; `None` sends none (a service
    /// without a service account: the other services refuse its internal calls).
    pub tokens: Option<Arc<ServiceTokens>>,
}

impl CallPolicy {
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.timeout);
        if let Some(header) = self.tokens.as_ref().and_then(|t| t.header()) {
            request.metadata_mut().insert("authorization", header);
        }
        request
    }

    /// The same policy without a credential, for public calls (the JWKS).
    fn anonymous(&self) -> Self {
        Self {
            tokens: None,
            ..self.clone()
        }
    }

    /// Runs an idempotent call, retrying UNAVAILABLE with a short exponential backoff.
    /// Each attempt first makes sure the service token is fresh.
    pub async fn idempotent<T, F, Fut>(&self, mut call: F) -> Result<T, Status>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let mut attempt = 0;
        loop {
            let ready = match &self.tokens {
                Some(tokens) => tokens.ensure().await,
                None => Ok(()),
            };
            let result = match ready {
                Ok(()) => call().await,
                Err(status) => Err(status),
            };
            match result {
                Err(status)
                    if status.code() == tonic::Code::Unavailable && attempt < self.retries =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(25 << attempt)).await;
                }
                result => return result,
            }
        }
    }
}

/// Builds the typed clients from `clients.*` configuration; with a service account
/// (`service_account.*`), every call they make carries its token.
#[derive(Debug, Clone)]
pub struct ServiceClients {
    config: ClientsConfig,
    tokens: Option<Arc<ServiceTokens>>,
    /// The services a client was built for, with their endpoints: what the service
    /// calls, and so the upstreams its Connect sidecar needs.
    used: Arc<std::sync::Mutex<std::collections::BTreeMap<&'static str, String>>>,
}

impl ServiceClients {
    /// Clients whose calls carry no token.
    pub fn new(config: ClientsConfig) -> Self {
        Self {
            config,
            tokens: None,
            used: Arc::default(),
        }
    }

    /// `(service, endpoint)` of every client built so far (the service account's
    /// channel to Auth included).
    pub fn used(&self) -> Vec<(&'static str, String)> {
        self.used
            .lock()
            .map(|used| used.iter().map(|(k, v)| (*k, v.clone())).collect())
            .unwrap_or_default()
    }

    /// Clients whose calls carry the service account's token, obtained from the Auth
    /// service at `clients.auth`. Without a service account this is [`Self::new`].
    pub fn with_service_account(
        config: ClientsConfig,
        account: &ServiceAccountConfig,
    ) -> Result<Self, ClientError> {
        let mut clients = Self::new(config);
        if let (Some(id), Some(secret)) = (&account.client_id, &account.client_secret) {
            let channels = clients.plain_channels("auth", clients.config.auth.as_ref())?;
            clients.tokens = Some(Arc::new(ServiceTokens::new(
                id.clone(),
                secret.clone(),
                channels,
                Duration::from_millis(clients.config.timeout_ms),
            )));
        }
        Ok(clients)
    }

    /// The service account's tokens, when one is configured.
    pub fn service_tokens(&self) -> Option<&Arc<ServiceTokens>> {
        self.tokens.as_ref()
    }

    /// The policy of the typed client of `service`, which calls it as this service's
    /// account; without one, says once per client built that its calls will be refused.
    fn policy_for(&self, service: &'static str) -> CallPolicy {
        if self.tokens.is_none() {
            tracing::warn!(
                service,
                "service_account is not configured: calls to {service} carry no token, \
                 and its internal RPCs will refuse them"
            );
        }
        self.policy()
    }

    fn policy(&self) -> CallPolicy {
        CallPolicy {
            timeout: Duration::from_millis(self.config.timeout_ms),
            retries: self.config.retries,
            tokens: self.tokens.clone(),
        }
    }

    /// Lazily connecting channels, one per replica of the endpoint: building a client
    /// never waits for a peer.
    fn channels(
        &self,
        service: &'static str,
        endpoint: Option<&String>,
    ) -> Result<Replicas<Intercepted>, ClientError> {
        Ok(self
            .plain_channels(service, endpoint)?
            .map(|channel| InterceptedService::new(channel, ContextInterceptor)))
    }

    fn plain_channels(
        &self,
        service: &'static str,
        endpoint: Option<&String>,
    ) -> Result<Replicas<Channel>, ClientError> {
        let endpoint = endpoint.ok_or(ClientError::NotConfigured { service })?;
        if let Ok(mut used) = self.used.lock() {
            used.insert(service, endpoint.clone());
        }
        let channels = endpoint_list(endpoint)
            .map(|one| {
                Ok(Endpoint::from_shared(one.to_owned())
                    .map_err(|source| ClientError::Endpoint {
                        service,
                        endpoint: one.to_owned(),
                        source,
                    })?
                    .connect_timeout(Duration::from_millis(self.config.timeout_ms))
                    .tcp_nodelay(true)
                    .connect_lazy())
            })
            .collect::<Result<Vec<_>, ClientError>>()?;
        Replicas::new(channels).ok_or(ClientError::NotConfigured { service })
    }

    pub fn identity(&self) -> Result<Arc<dyn IdentityApi>, ClientError> {
        let channels = self.channels("identity", self.config.identity.as_ref())?;
        Ok(Arc::new(GrpcIdentity {
            client: channels.map(IdentityServiceClient::new),
            policy: self.policy_for("identity"),
        }))
    }

    pub fn auth(&self) -> Result<Arc<dyn AuthApi>, ClientError> {
        let channels = self.channels("auth", self.config.auth.as_ref())?;
        Ok(Arc::new(GrpcAuth {
            client: channels.map(AuthServiceClient::new),
            // The JWKS is public: fetching it never waits for a token of our own.
            policy: self.policy().anonymous(),
        }))
    }

    pub fn authz(&self) -> Result<Arc<dyn AuthzApi>, ClientError> {
        let channels = self.channels("authz", self.config.authz.as_ref())?;
        Ok(Arc::new(GrpcAuthz {
            client: channels.map(AuthzServiceClient::new),
            policy: self.policy_for("authz"),
        }))
    }

    pub fn audit(&self) -> Result<Arc<dyn AuditApi>, ClientError> {
        let channels = self.channels("audit", self.config.audit.as_ref())?;
        Ok(Arc::new(GrpcAudit {
            client: channels.map(AuditServiceClient::new),
            policy: self.policy_for("audit"),
        }))
    }
}

struct GrpcIdentity {
    client: Replicas<IdentityServiceClient<Intercepted>>,
    policy: CallPolicy,
}

impl IdentityApi for GrpcIdentity {
    fn verify_credentials(
        &self,
        email: String,
        password: String,
    ) -> BoxFuture<'_, Result<VerifyCredentialsResponse, Status>> {
        Box::pin(self.policy.idempotent(move || {
            let mut client = self.client.next();
            let request = self.policy.request(VerifyCredentialsRequest {
                email: email.clone(),
                password: password.clone(),
            });
            async move {
                client
                    .verify_credentials(request)
                    .await
                    .map(tonic::Response::into_inner)
            }
        }))
    }

    fn get_user(&self, id: String) -> BoxFuture<'_, Result<User, Status>> {
        Box::pin(self.policy.idempotent(move || {
            let mut client = self.client.next();
            let request = self.policy.request(GetUserRequest { id: id.clone() });
            async move {
                client
                    .get_user(request)
                    .await
                    .map(tonic::Response::into_inner)
            }
        }))
    }

    fn find_user_by_email(
        &self,
        email: String,
    ) -> BoxFuture<'_, Result<FindUserByEmailResponse, Status>> {
        Box::pin(self.policy.idempotent(move || {
            let mut client = self.client.next();
            let request = self.policy.request(FindUserByEmailRequest {
                email: email.clone(),
            });
            async move {
                client
                    .find_user_by_email(request)
                    .await
                    .map(tonic::Response::into_inner)
            }
        }))
    }

    // Setting the same password twice leaves the same state: idempotent, so retried.
    fn set_password(&self, user_id: String, password: String) -> BoxFuture<'_, Result<(), Status>> {
        Box::pin(self.policy.idempotent(move || {
            let mut client = self.client.next();
            let request = self.policy.request(SetPasswordRequest {
                user_id: user_id.clone(),
                password: password.clone(),
            });
            async move { client.set_password(request).await.map(|_| ()) }
        }))
    }

    fn mark_email_verified(&self, user_id: String) -> BoxFuture<'_, Result<User, Status>> {
        Box::pin(self.policy.idempotent(move || {
            let mut client = self.client.next();
            let request = self.policy.request(MarkEmailVerifiedRequest {
                user_id: user_id.clone(),
            });
            async move {
                client
                    .mark_email_verified(request)
                    .await
                    .map(tonic::Response::into_inner)
            }
        }))
    }

    fn set_mfa_enabled(
        &self,
        user_id: String,
        enabled: bool,
    ) -> BoxFuture<'_, Result<User, Status>> {
        Box::pin(self.policy.idempotent(move || {
            let mut client = self.client.next();
            let request = self.policy.request(SetMfaEnabledRequest {
                user_id: user_id.clone(),
                enabled,
            });
            async move {
                client
                    .set_mfa_enabled(request)
                    .await
                    .map(tonic::Response::into_inner)
            }
        }))
    }
}

struct GrpcAuth {
    client: Replicas<AuthServiceClient<Intercepted>>,
    policy: CallPolicy,
}

impl AuthApi for GrpcAuth {
    fn get_jwks(&self) -> BoxFuture<'_, Result<Jwks, Status>> {
        Box::pin(self.policy.idempotent(move || {
            let mut client = self.client.next();
            let request = self.policy.request(GetJwksRequest {});
            async move {
                client
                    .get_jwks(request)
                    .await
                    .map(tonic::Response::into_inner)
            }
        }))
    }
}

struct GrpcAuthz {
    client: Replicas<AuthzServiceClient<Intercepted>>,
    policy: CallPolicy,
}

impl AuthzApi for GrpcAuthz {
    fn check(&self, subject: String, permission: String) -> BoxFuture<'_, Result<bool, Status>> {
        Box::pin(self.policy.idempotent(move || {
            let mut client = self.client.next();
            let request = self.policy.request(CheckRequest {
                subject: subject.clone(),
                permission: permission.clone(),
            });
            async move {
                let response = client.check(request).await?.into_inner();
                Ok(response.allowed.unwrap_or(false))
            }
        }))
    }

    fn list_user_roles(
        &self,
        user_id: String,
    ) -> BoxFuture<'_, Result<ListUserRolesResponse, Status>> {
        Box::pin(self.policy.idempotent(move || {
            let mut client = self.client.next();
            let request = self.policy.request(ListUserRolesRequest {
                user_id: user_id.clone(),
            });
            async move {
                client
                    .list_user_roles(request)
                    .await
                    .map(tonic::Response::into_inner)
            }
        }))
    }

    fn resolve_roles(
        &self,
        roles: Vec<String>,
    ) -> BoxFuture<'_, Result<ResolveRolesResponse, Status>> {
        Box::pin(self.policy.idempotent(move || {
            let mut client = self.client.next();
            let request = self.policy.request(ResolveRolesRequest {
                roles: roles.clone(),
            });
            async move {
                client
                    .resolve_roles(request)
                    .await
                    .map(tonic::Response::into_inner)
            }
        }))
    }
}

struct GrpcAudit {
    client: Replicas<AuditServiceClient<Intercepted>>,
    policy: CallPolicy,
}

impl AuditApi for GrpcAudit {
    fn append_events(
        &self,
        events: Vec<AuditEvent>,
    ) -> BoxFuture<'_, Result<AppendEventsResponse, Status>> {
        Box::pin(self.policy.idempotent(move || {
            let mut client = self.client.next();
            let request = self.policy.request(AppendEventsRequest {
                events: events.clone(),
            });
            async move {
                client
                    .append_events(request)
                    .await
                    .map(tonic::Response::into_inner)
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idempotent_calls_retry_unavailable_then_succeed() {
        let policy = CallPolicy {
            timeout: Duration::from_secs(1),
            retries: 2,
            tokens: None,
        };
        let attempts = AtomicU32::new(0);
        let result = policy
            .idempotent(|| {
                let n = attempts.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 2 {
                        Err(Status::unavailable("down"))
                    } else {
                        Ok(n)
                    }
                }
            })
            .await;
        assert_eq!(result.ok(), Some(2));
        assert_eq!(attempts.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_at_the_limit_and_other_errors_are_not_retried() {
        let policy = CallPolicy {
            timeout: Duration::from_secs(1),
            retries: 1,
            tokens: None,
        };
        let attempts = AtomicU32::new(0);
        let result: Result<(), Status> = policy
            .idempotent(|| {
                attempts.fetch_add(1, Ordering::SeqCst);
                async { Err(Status::unavailable("down")) }
            })
            .await;
        assert_eq!(result.map_err(|s| s.code()), Err(tonic::Code::Unavailable));
        assert_eq!(attempts.load(Ordering::SeqCst), 2, "one try plus one retry");

        let attempts = AtomicU32::new(0);
        let result: Result<(), Status> = policy
            .idempotent(|| {
                attempts.fetch_add(1, Ordering::SeqCst);
                async { Err(Status::permission_denied("no")) }
            })
            .await;
        assert_eq!(
            result.map_err(|s| s.code()),
            Err(tonic::Code::PermissionDenied)
        );
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn missing_endpoint_is_named() {
        let clients = ServiceClients::new(ClientsConfig {
            identity: None,
            auth: None,
            authz: None,
            audit: Some("not a uri".into()),
            timeout_ms: 100,
            retries: 0,
        });
        let error = clients
            .identity()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("clients.identity"), "{error}");
    }

    #[tokio::test]
    async fn outgoing_calls_carry_the_request_id_of_the_current_call() {
        let mut interceptor = ContextInterceptor;
        let request = REQUEST_ID
            .scope("req-42".to_owned(), async {
                tonic::service::Interceptor::call(&mut interceptor, tonic::Request::new(()))
            })
            .await
            .unwrap_or_else(|s| panic!("interceptor failed: {s}"));
        assert_eq!(
            request
                .metadata()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok()),
            Some("req-42")
        );
    }
}
