//! Service-account tokens on outgoing calls, against in-process gRPC peers: the token
//! comes from Auth's client-credentials endpoint with HTTP Basic, is sent as a bearer on
//! every call to another service, is reused while fresh and renewed once due, and a
//! service without a valid token fails its calls UNAVAILABLE instead of sending none.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bulwark_kernel::ServiceSpec;
use bulwark_kernel::clients::ServiceClients;
use bulwark_kernel::config::{KernelConfig, ServiceAccountConfig};
use bulwark_proto::auth::v1::auth_service_server::{AuthService, AuthServiceServer};
use bulwark_proto::auth::v1::{
    AccessToken, ChangePasswordRequest, ChangePasswordResponse, ConfirmPasswordResetRequest,
    ConfirmPasswordResetResponse, ConfirmTotpRequest, ConfirmTotpResponse, CreateClientRequest,
    CreateClientResponse, DeleteClientRequest, DeleteClientResponse, DisableTotpRequest,
    DisableTotpResponse, EnrollTotpRequest, EnrollTotpResponse, GetJwksRequest, Jwks,
    ListRevokedSessionsRequest, ListRevokedSessionsResponse, ListSessionsRequest,
    ListSessionsResponse, LoginMfaRequest, LoginRequest, LoginResponse, LogoutRequest,
    LogoutResponse, RefreshRequest, RequestEmailVerificationRequest,
    RequestEmailVerificationResponse, RequestPasswordResetRequest, RequestPasswordResetResponse,
    RevokeSessionRequest, RevokeSessionResponse, RotateSigningKeyRequest, RotateSigningKeyResponse,
    TokenPair, VerifyEmailRequest,
};
use bulwark_proto::google::api::HttpBody;
use bulwark_proto::identity::v1::identity_service_server::{
    IdentityService, IdentityServiceServer,
};
use bulwark_proto::identity::v1::{
    CreateUserRequest, DeactivateUserRequest, FindUserByEmailRequest, FindUserByEmailResponse,
    GetMeRequest, GetUserRequest, MarkEmailVerifiedRequest, SetMfaEnabledRequest,
    SetPasswordRequest, SetPasswordResponse, UpdateDisplayNameRequest, User,
    VerifyCredentialsRequest, VerifyCredentialsResponse,
};
use secrecy::SecretString;
use tonic::{Code, Request, Response, Status};

const SECRET: &str = "0123456789abcdef0123456789abcdef-secret";

/// Auth, faked: issues `tok-<n>` valid for `expires_in` seconds, or fails when `down`.
#[derive(Default)]
struct FakeAuth {
    issued: AtomicU32,
    expires_in: AtomicI32,
    down: AtomicBool,
    authorization: Mutex<Vec<String>>,
}

fn unused<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("not used"))
}

#[tonic::async_trait]
impl AuthService for FakeAuth {
    async fn request_email_verification(
        &self,
        _: Request<RequestEmailVerificationRequest>,
    ) -> Result<Response<RequestEmailVerificationResponse>, Status> {
        unused()
    }
    async fn verify_email(&self, _: Request<VerifyEmailRequest>) -> Result<Response<User>, Status> {
        unused()
    }
    async fn request_password_reset(
        &self,
        _: Request<RequestPasswordResetRequest>,
    ) -> Result<Response<RequestPasswordResetResponse>, Status> {
        unused()
    }
    async fn confirm_password_reset(
        &self,
        _: Request<ConfirmPasswordResetRequest>,
    ) -> Result<Response<ConfirmPasswordResetResponse>, Status> {
        unused()
    }
    async fn change_password(
        &self,
        _: Request<ChangePasswordRequest>,
    ) -> Result<Response<ChangePasswordResponse>, Status> {
        unused()
    }
    async fn login(&self, _: Request<LoginRequest>) -> Result<Response<LoginResponse>, Status> {
        unused()
    }
    async fn login_mfa(&self, _: Request<LoginMfaRequest>) -> Result<Response<TokenPair>, Status> {
        unused()
    }
    async fn enroll_totp(
        &self,
        _: Request<EnrollTotpRequest>,
    ) -> Result<Response<EnrollTotpResponse>, Status> {
        unused()
    }
    async fn confirm_totp(
        &self,
        _: Request<ConfirmTotpRequest>,
    ) -> Result<Response<ConfirmTotpResponse>, Status> {
        unused()
    }
    async fn disable_totp(
        &self,
        _: Request<DisableTotpRequest>,
    ) -> Result<Response<DisableTotpResponse>, Status> {
        unused()
    }
    async fn refresh(&self, _: Request<RefreshRequest>) -> Result<Response<TokenPair>, Status> {
        unused()
    }
    async fn logout(&self, _: Request<LogoutRequest>) -> Result<Response<LogoutResponse>, Status> {
        unused()
    }
    async fn list_sessions(
        &self,
        _: Request<ListSessionsRequest>,
    ) -> Result<Response<ListSessionsResponse>, Status> {
        unused()
    }
    async fn revoke_session(
        &self,
        _: Request<RevokeSessionRequest>,
    ) -> Result<Response<RevokeSessionResponse>, Status> {
        unused()
    }
    async fn list_revoked_sessions(
        &self,
        _: Request<ListRevokedSessionsRequest>,
    ) -> Result<Response<ListRevokedSessionsResponse>, Status> {
        unused()
    }
    async fn get_jwks(&self, _: Request<GetJwksRequest>) -> Result<Response<Jwks>, Status> {
        unused()
    }
    async fn rotate_signing_key(
        &self,
        _: Request<RotateSigningKeyRequest>,
    ) -> Result<Response<RotateSigningKeyResponse>, Status> {
        unused()
    }
    async fn create_client(
        &self,
        _: Request<CreateClientRequest>,
    ) -> Result<Response<CreateClientResponse>, Status> {
        unused()
    }
    async fn delete_client(
        &self,
        _: Request<DeleteClientRequest>,
    ) -> Result<Response<DeleteClientResponse>, Status> {
        unused()
    }
    async fn issue_token(
        &self,
        request: Request<HttpBody>,
    ) -> Result<Response<AccessToken>, Status> {
        let authorization = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if let Ok(mut seen) = self.authorization.lock() {
            seen.push(authorization);
        }
        let body = request.into_inner();
        assert_eq!(body.content_type, "application/x-www-form-urlencoded");
        assert_eq!(body.data, b"grant_type=client_credentials");
        if self.down.load(Ordering::SeqCst) {
            return Err(Status::unavailable("auth is down"));
        }
        let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(Response::new(AccessToken {
            access_token: format!("tok-{n}"),
            token_type: "Bearer".to_owned(),
            expires_in: self.expires_in.load(Ordering::SeqCst),
        }))
    }
}

/// Identity, faked: records the `authorization` of every VerifyCredentials.
#[derive(Default)]
struct FakeIdentity {
    bearers: Mutex<Vec<Option<String>>>,
}

#[tonic::async_trait]
impl IdentityService for FakeIdentity {
    async fn create_user(&self, _: Request<CreateUserRequest>) -> Result<Response<User>, Status> {
        unused()
    }
    async fn get_me(&self, _: Request<GetMeRequest>) -> Result<Response<User>, Status> {
        unused()
    }
    async fn get_user(&self, _: Request<GetUserRequest>) -> Result<Response<User>, Status> {
        unused()
    }
    async fn update_display_name(
        &self,
        _: Request<UpdateDisplayNameRequest>,
    ) -> Result<Response<User>, Status> {
        unused()
    }
    async fn deactivate_user(
        &self,
        _: Request<DeactivateUserRequest>,
    ) -> Result<Response<User>, Status> {
        unused()
    }
    async fn find_user_by_email(
        &self,
        _: Request<FindUserByEmailRequest>,
    ) -> Result<Response<FindUserByEmailResponse>, Status> {
        unused()
    }
    async fn set_password(
        &self,
        _: Request<SetPasswordRequest>,
    ) -> Result<Response<SetPasswordResponse>, Status> {
        unused()
    }
    async fn mark_email_verified(
        &self,
        _: Request<MarkEmailVerifiedRequest>,
    ) -> Result<Response<User>, Status> {
        unused()
    }
    async fn set_mfa_enabled(
        &self,
        _: Request<SetMfaEnabledRequest>,
    ) -> Result<Response<User>, Status> {
        unused()
    }
    async fn verify_credentials(
        &self,
        request: Request<VerifyCredentialsRequest>,
    ) -> Result<Response<VerifyCredentialsResponse>, Status> {
        let bearer = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Ok(mut seen) = self.bearers.lock() {
            seen.push(bearer);
        }
        Ok(Response::new(VerifyCredentialsResponse {
            user_id: String::new(),
            active: true,
        }))
    }
}

async fn serve(router: tonic::transport::server::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("addr: {e}"));
    tokio::spawn(
        router.serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    addr
}

struct Peers {
    auth: Arc<FakeAuth>,
    identity: Arc<FakeIdentity>,
    clients: ServiceClients,
}

async fn peers(expires_in: i32, account: Option<(&str, &str)>) -> Peers {
    let auth = Arc::new(FakeAuth::default());
    auth.expires_in.store(expires_in, Ordering::SeqCst);
    let identity = Arc::new(FakeIdentity::default());
    let auth_addr = serve(
        tonic::transport::Server::builder().add_service(AuthServiceServer::from_arc(auth.clone())),
    )
    .await;
    let identity_addr = serve(
        tonic::transport::Server::builder()
            .add_service(IdentityServiceServer::from_arc(identity.clone())),
    )
    .await;
    let mut config = KernelConfig::defaults(&ServiceSpec::new("test", 0, 0)).clients;
    config.auth = Some(format!("http://{auth_addr}"));
    config.identity = Some(format!("http://{identity_addr}"));
    config.retries = 0;
    let account = ServiceAccountConfig {
        client_id: account.map(|(id, _)| id.to_owned()),
        client_secret: account.map(|(_, secret)| SecretString::from(secret.to_owned())),
    };
    let clients = ServiceClients::with_service_account(config, &account)
        .unwrap_or_else(|e| panic!("clients: {e}"));
    Peers {
        auth,
        identity,
        clients,
    }
}

impl Peers {
    async fn call(&self) -> Result<(), Status> {
        let identity = self.clients.identity().unwrap_or_else(|e| panic!("{e}"));
        identity
            .verify_credentials("a@example.com".into(), "pw".into())
            .await
            .map(|_| ())
    }

    fn bearers(&self) -> Vec<Option<String>> {
        self.identity
            .bearers
            .lock()
            .map(|b| b.clone())
            .unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_carry_the_accounts_token_obtained_with_http_basic_and_reused_while_fresh() {
    let peers = peers(900, Some(("identity", SECRET))).await;
    for _ in 0..3 {
        peers
            .call()
            .await
            .unwrap_or_else(|s| panic!("call failed: {s:?}"));
    }
    assert_eq!(
        peers.auth.issued.load(Ordering::SeqCst),
        1,
        "a fresh token was fetched again"
    );
    assert_eq!(peers.bearers(), vec![Some("Bearer tok-1".to_owned()); 3]);
    let basic = format!("Basic {}", STANDARD.encode(format!("identity:{SECRET}")));
    let seen = peers
        .auth
        .authorization
        .lock()
        .map(|a| a.clone())
        .unwrap_or_default();
    assert_eq!(
        seen,
        vec![basic],
        "the client did not authenticate with HTTP Basic"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_due_for_renewal_is_renewed_and_kept_if_renewal_fails_while_valid() {
    // 20 s tokens are due at once (renewal starts 30 s before expiry) but stay valid.
    let peers = peers(20, Some(("identity", SECRET))).await;
    peers.call().await.unwrap_or_else(|s| panic!("{s:?}"));
    peers.call().await.unwrap_or_else(|s| panic!("{s:?}"));
    assert_eq!(
        peers.auth.issued.load(Ordering::SeqCst),
        2,
        "a due token was not renewed"
    );
    peers.auth.down.store(true, Ordering::SeqCst);
    peers
        .call()
        .await
        .unwrap_or_else(|s| panic!("a still-valid token was dropped when renewal failed: {s:?}"));
    assert_eq!(
        peers.bearers(),
        vec![
            Some("Bearer tok-1".to_owned()),
            Some("Bearer tok-2".to_owned()),
            Some("Bearer tok-2".to_owned())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_valid_token_calls_fail_unavailable_and_never_go_out_bare() {
    let peers = peers(900, Some(("identity", SECRET))).await;
    peers.auth.down.store(true, Ordering::SeqCst);
    let status = peers
        .call()
        .await
        .err()
        .unwrap_or_else(|| panic!("the call went out without a token"));
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("identity"),
        "the account is not named: {}",
        status.message()
    );
    assert!(
        peers.bearers().is_empty(),
        "Identity was called without a token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_service_account_calls_carry_no_token() {
    let peers = peers(900, None).await;
    peers.call().await.unwrap_or_else(|s| panic!("{s:?}"));
    assert_eq!(peers.bearers(), vec![None]);
    assert_eq!(peers.auth.issued.load(Ordering::SeqCst), 0);
}
