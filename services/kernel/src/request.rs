//! The one request layer of every service: who is calling (a verified bearer token,
//! never where the call came from or which headers it lacks), whether the caller holds a
//! permission, whether it is a service account, and one mapping of every refusal to a
//! gRPC status, so that no two services answer the same failure differently.
//!
//! Users' permissions are Authz's to decide (asked per call, cached there); a service
//! account's are the ones Auth signed into its token when it was issued.

use std::sync::Arc;

use futures::future::BoxFuture;
use tonic::{Request, Status};
use uuid::Uuid;

use crate::caller::{Caller, TokenVerifier, UNAUTHENTICATED_MESSAGE, bearer_token};
use crate::clients::AuthzApi;
use crate::permission::{Permission, PermissionSet};

/// Who decides whether a user holds a permission: Authz, remotely for every service but
/// Authz itself, which answers from its own tables.
pub trait PermissionSource: Send + Sync {
    /// Whether `user` holds `permission`. An error is a failed decision, never "no".
    fn user_holds<'a>(
        &'a self,
        user: Uuid,
        permission: &'a Permission,
    ) -> BoxFuture<'a, Result<bool, Status>>;
}

impl PermissionSource for Arc<dyn AuthzApi> {
    fn user_holds<'a>(
        &'a self,
        user: Uuid,
        permission: &'a Permission,
    ) -> BoxFuture<'a, Result<bool, Status>> {
        self.check(user.to_string(), permission.as_str().to_owned())
    }
}

/// Why a call was refused before the service's own logic ran.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// No bearer token, or one that does not verify (the reason is logged only).
    #[error("{UNAUTHENTICATED_MESSAGE}")]
    Unauthenticated,
    /// The caller is known but lacks the permission.
    #[error("requires permission {0}")]
    PermissionDenied(String),
    /// An internal RPC called with a user's token: only service accounts may call it.
    #[error("requires a service account with permission {0}")]
    ServiceOnly(String),
    /// Authz did not answer in time or is down: worth retrying.
    #[error("authorization is unavailable: {0}")]
    AuthzUnavailable(Status),
    /// Authz answered something it never should, or the check itself is broken.
    #[error("authorization failed: {0}")]
    AuthzFailed(Status),
}

/// The message of [`Refusal::AuthzUnavailable`] as clients see it.
pub const AUTHZ_UNAVAILABLE_MESSAGE: &str = "authorization is unavailable, try again";

impl Refusal {
    /// Classifies a failed permission decision, once for every service: a slow or
    /// unreachable Authz is unavailability (the client may retry), anything else is a
    /// defect worth a report.
    pub fn from_authz(status: Status) -> Self {
        if crate::clients::is_unavailable(&status) {
            Self::AuthzUnavailable(status)
        } else {
            Self::AuthzFailed(status)
        }
    }

    /// Refusals that are the platform's fault, not the caller's: report them.
    pub fn is_internal(&self) -> bool {
        matches!(self, Self::AuthzFailed(_))
    }
}

impl From<Refusal> for Status {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Unauthenticated => Status::unauthenticated(UNAUTHENTICATED_MESSAGE),
            Refusal::PermissionDenied(_) | Refusal::ServiceOnly(_) => {
                Status::permission_denied(refusal.to_string())
            }
            Refusal::AuthzUnavailable(_) => Status::unavailable(AUTHZ_UNAVAILABLE_MESSAGE),
            Refusal::AuthzFailed(_) => Status::internal("internal error"),
        }
    }
}

/// Authenticates callers and checks their permissions. Cheap to clone.
#[derive(Clone)]
pub struct RequestLayer {
    verifier: Arc<TokenVerifier>,
    permissions: Arc<dyn PermissionSource>,
}

impl std::fmt::Debug for RequestLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestLayer")
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}

impl RequestLayer {
    pub fn new(verifier: Arc<TokenVerifier>, permissions: Arc<dyn PermissionSource>) -> Self {
        Self {
            verifier,
            permissions,
        }
    }

    /// The token verifier (Auth reloads its keys after a rotation).
    pub fn verifier(&self) -> &Arc<TokenVerifier> {
        &self.verifier
    }

    /// The caller of `request`, from its `authorization: Bearer` metadata.
    pub async fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Refusal> {
        let Some(token) = bearer_token(request.metadata()) else {
            tracing::info!("no bearer token");
            return Err(Refusal::Unauthenticated);
        };
        let caller = self.verifier.verify(token).await.map_err(|error| {
            tracing::info!(%error, "bearer token refused");
            Refusal::Unauthenticated
        })?;
        // Every later log line of the call names who made it, as verified.
        tracing::Span::current().record("caller", caller.actor_id());
        Ok(caller)
    }

    /// Passes when `caller` holds `permission`: a service account when its token carries
    /// it, a user when Authz says so.
    pub async fn require(&self, caller: &Caller, permission: &str) -> Result<(), Refusal> {
        let wanted = Permission::parse("permission", permission).map_err(|error| {
            Refusal::AuthzFailed(Status::internal(format!("malformed check: {error}")))
        })?;
        let allowed = match caller.user_id() {
            Some(user) => self
                .permissions
                .user_holds(user, &wanted)
                .await
                .map_err(Refusal::from_authz)?,
            None => PermissionSet::from_texts(caller.permissions.iter().map(String::as_str))
                .allows(&wanted),
        };
        if allowed {
            Ok(())
        } else {
            Err(Refusal::PermissionDenied(permission.to_owned()))
        }
    }

    /// Passes when `caller` is the user `user` or holds `permission`.
    pub async fn require_self_or(
        &self,
        caller: &Caller,
        user: Uuid,
        permission: &str,
    ) -> Result<(), Refusal> {
        if caller.user_id() == Some(user) {
            return Ok(());
        }
        self.require(caller, permission).await
    }

    /// The caller of `request` when it holds `permission`.
    pub async fn authorize<T>(
        &self,
        request: &Request<T>,
        permission: &str,
    ) -> Result<Caller, Refusal> {
        let caller = self.caller(request).await?;
        self.require(&caller, permission).await?;
        Ok(caller)
    }

    /// The caller of an internal RPC: a service account whose token carries
    /// `permission`. A user's token is refused whatever Authz would say, so no grant of
    /// a role to a person ever opens a service-to-service RPC.
    pub async fn service<T>(
        &self,
        request: &Request<T>,
        permission: &str,
    ) -> Result<Caller, Refusal> {
        let caller = self.caller(request).await?;
        if caller.user_id().is_some() {
            tracing::info!(permission, "internal RPC called with a user's token");
            return Err(Refusal::ServiceOnly(permission.to_owned()));
        }
        self.require(&caller, permission)
            .await
            .map_err(|refusal| match refusal {
                Refusal::PermissionDenied(p) => Refusal::ServiceOnly(p),
                other => other,
            })?;
        Ok(caller)
    }
}

impl crate::Kernel {
    /// The request layer of a service that asks Authz for users' permissions.
    pub fn request_layer(&self) -> Result<RequestLayer, crate::clients::ClientError> {
        let authz: Arc<dyn PermissionSource> = Arc::new(self.clients.authz()?);
        Ok(RequestLayer::new(self.token_verifier()?, authz))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tonic::Code;

    use super::*;
    use crate::testing::TestTokens;

    /// Authz, faked: answers with `answer` and records every question.
    struct FakeAuthz {
        answer: Result<bool, Status>,
        asked: Mutex<Vec<(Uuid, String)>>,
    }

    impl PermissionSource for FakeAuthz {
        fn user_holds<'a>(
            &'a self,
            user: Uuid,
            permission: &'a Permission,
        ) -> BoxFuture<'a, Result<bool, Status>> {
            if let Ok(mut asked) = self.asked.lock() {
                asked.push((user, permission.to_string()));
            }
            let answer = self.answer.clone();
            Box::pin(async move { answer })
        }
    }

    fn layer(answer: Result<bool, Status>) -> (RequestLayer, Arc<FakeAuthz>, TestTokens) {
        let tokens = TestTokens::new();
        let authz = Arc::new(FakeAuthz {
            answer,
            asked: Mutex::new(Vec::new()),
        });
        let source: Arc<dyn PermissionSource> = authz.clone();
        (RequestLayer::new(tokens.verifier(), source), authz, tokens)
    }

    fn asked(authz: &FakeAuthz) -> Vec<(Uuid, String)> {
        authz.asked.lock().map(|a| a.clone()).unwrap_or_default()
    }

    #[tokio::test]
    async fn no_token_or_a_forged_one_is_unauthenticated_whatever_the_headers() {
        let (layer, _, _) = layer(Ok(true));
        // Headers that once made a call look internal, or look like it came via the edge.
        let mut request = crate::testing::with_edge_headers(
            Request::new(()),
            "/v1/users/me",
            "0192f0c4-7d4e-7b1a-9f00-000000000001",
        );
        let refusal = layer.caller(&request).await.err();
        assert!(
            matches!(refusal, Some(Refusal::Unauthenticated)),
            "{refusal:?}"
        );
        request.metadata_mut().insert(
            "authorization",
            "Bearer e30.e30.AAAA".parse().unwrap_or_else(|_| panic!()),
        );
        let refusal = layer.service(&request, "audit:append").await.err();
        assert!(
            matches!(refusal, Some(Refusal::Unauthenticated)),
            "{refusal:?}"
        );
    }

    #[tokio::test]
    async fn users_permissions_are_asked_of_authz() {
        let user = Uuid::new_v4();
        let (allowing, authz, tokens) = layer(Ok(true));
        let caller = allowing
            .authorize(&tokens.request(user, ()), "users:read")
            .await
            .unwrap_or_else(|e| panic!("refused: {e}"));
        assert_eq!(caller.user_id(), Some(user));
        assert_eq!(asked(&authz), vec![(user, "users:read".to_owned())]);

        let (denying, _, tokens) = layer(Ok(false));
        let refusal = denying
            .authorize(&tokens.request(user, ()), "users:read")
            .await
            .err();
        assert!(
            matches!(&refusal, Some(Refusal::PermissionDenied(p)) if p == "users:read"),
            "{refusal:?}"
        );
    }

    #[tokio::test]
    async fn a_failed_decision_is_classified_once() {
        let user = Uuid::new_v4();
        for (answer, code) in [
            (Status::unavailable("down"), Code::Unavailable),
            (Status::cancelled("Timeout expired"), Code::Unavailable),
            (Status::internal("boom"), Code::Internal),
        ] {
            let (layer, _, tokens) = layer(Err(answer));
            let refusal = layer
                .authorize(&tokens.request(user, ()), "users:read")
                .await
                .err()
                .unwrap_or_else(|| panic!("allowed without a decision"));
            assert_eq!(Status::from(refusal).code(), code);
        }
    }

    #[tokio::test]
    async fn the_user_themselves_needs_no_permission() {
        let user = Uuid::new_v4();
        let (layer, authz, tokens) = layer(Ok(false));
        let caller = layer
            .caller(&tokens.request(user, ()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            layer
                .require_self_or(&caller, user, "users:read")
                .await
                .is_ok()
        );
        assert!(
            asked(&authz).is_empty(),
            "Authz was asked about the user's own record"
        );
        let other = layer
            .require_self_or(&caller, Uuid::new_v4(), "users:read")
            .await;
        assert!(
            matches!(other, Err(Refusal::PermissionDenied(_))),
            "{other:?}"
        );
    }

    #[tokio::test]
    async fn internal_rpcs_take_only_a_service_token_with_the_permission() {
        let (layer, authz, tokens) = layer(Ok(true));
        // A user, even one Authz would allow everything, is not a service.
        let refusal = layer
            .service(&tokens.request(Uuid::new_v4(), ()), "audit:append")
            .await
            .err();
        assert!(
            matches!(refusal, Some(Refusal::ServiceOnly(_))),
            "{refusal:?}"
        );

        let caller = layer
            .service(
                &tokens.client_request("identity", &["audit:append", "roles:read"], ()),
                "audit:append",
            )
            .await
            .unwrap_or_else(|e| panic!("refused: {e}"));
        assert!(caller.is_service());
        assert_eq!(caller.actor_id(), "client:identity");

        let refusal = layer
            .service(
                &tokens.client_request("audit", &["roles:read"], ()),
                "credentials:verify",
            )
            .await
            .err();
        assert!(
            matches!(&refusal, Some(Refusal::ServiceOnly(p)) if p == "credentials:verify"),
            "{refusal:?}"
        );
        assert!(
            asked(&authz).is_empty(),
            "a service's permissions are its token's"
        );
    }

    #[tokio::test]
    async fn a_service_token_grants_through_wildcards_like_authz_roles() {
        let (layer, _, tokens) = layer(Ok(false));
        let request = tokens.client_request("ops", &["audit:*"], ());
        assert!(layer.authorize(&request, "audit:read").await.is_ok());
        let refusal = layer.authorize(&request, "users:read").await.err();
        assert!(
            matches!(refusal, Some(Refusal::PermissionDenied(_))),
            "{refusal:?}"
        );
    }

    #[test]
    fn every_refusal_has_one_status() {
        for (refusal, code, message) in [
            (
                Refusal::Unauthenticated,
                Code::Unauthenticated,
                UNAUTHENTICATED_MESSAGE,
            ),
            (
                Refusal::PermissionDenied("users:read".into()),
                Code::PermissionDenied,
                "requires permission users:read",
            ),
            (
                Refusal::ServiceOnly("audit:append".into()),
                Code::PermissionDenied,
                "requires a service account with permission audit:append",
            ),
            (
                Refusal::from_authz(Status::unavailable("connection refused")),
                Code::Unavailable,
                AUTHZ_UNAVAILABLE_MESSAGE,
            ),
            (
                Refusal::from_authz(Status::cancelled("Timeout expired")),
                Code::Unavailable,
                AUTHZ_UNAVAILABLE_MESSAGE,
            ),
            (
                Refusal::from_authz(Status::deadline_exceeded("slow")),
                Code::Unavailable,
                AUTHZ_UNAVAILABLE_MESSAGE,
            ),
            (
                Refusal::from_authz(Status::internal("SELECT * FROM grants")),
                Code::Internal,
                "internal error",
            ),
            (
                Refusal::from_authz(Status::permission_denied("authz refused us")),
                Code::Internal,
                "internal error",
            ),
        ] {
            let status = Status::from(refusal);
            assert_eq!(status.code(), code, "{message}");
            assert_eq!(status.message(), message);
        }
    }

    #[test]
    fn only_a_broken_decision_is_reported() {
        assert!(Refusal::from_authz(Status::internal("x")).is_internal());
        assert!(!Refusal::from_authz(Status::unavailable("x")).is_internal());
        assert!(!Refusal::Unauthenticated.is_internal());
        assert!(!Refusal::PermissionDenied("a:b".into()).is_internal());
    }
}
