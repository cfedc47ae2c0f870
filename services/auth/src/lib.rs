//! The Auth service: login, token refresh and logout, service accounts and their
//! client-credentials tokens, the signing keys behind the JWKS, and the account flows
//! (email verification, password reset and change) with the mail they send.

mod accounts;
mod audit_trail;
mod config;
// Public for the fuzz targets (`fuzz/`), which feed it untrusted requests.
pub mod domain;
mod error;
mod grpc;
mod key_encryption;
mod keys;
mod lockout;
// Public for the integration tests, which enqueue mail and watch it arrive.
pub mod mail;
mod mfa;
mod schema;
mod service_accounts;
mod sessions;
mod store;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bulwark_kernel::caller::TokenVerifier;
use bulwark_kernel::clients::{AuditApi, AuthzApi, ClientError, IdentityApi};
use bulwark_kernel::request::{PermissionSource, RequestLayer};
use bulwark_kernel::{
    EmbeddedMigrations, GrpcServices, Kernel, Schema, ServiceSpec, embed_migrations,
};
use bulwark_proto::auth::v1::auth_service_server::AuthServiceServer;

pub use accounts::RESET_ANSWER_FLOOR;
pub use config::DEFAULT_SIGNING_KEY_CACHE_SECONDS;
pub use grpc::AuthHandlers;

use accounts::AccountFlows;
use audit_trail::AuditTrail;
use config::AuthConfig;
use keys::{KeyRing, TableKeys};
use lockout::LoginLockout;
use mfa::Mfa;
use service_accounts::ServiceAccounts;
use sessions::Sessions;

/// Name and default ports (gRPC 50052, admin HTTP 9102).
pub const SPEC: ServiceSpec = ServiceSpec::new("auth", 50052, 9102);

/// The schema: embedded migrations, applied by `bulwark-auth migrate` as the schema's
/// owner, and the grants (`grants.sql`) that are all its runtime role may do.
pub const SCHEMA: Schema = Schema::new(&MIGRATIONS, include_str!("../grants.sql"));
const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The services Auth calls. [`app`] builds the real clients; tests pass fakes to
/// [`app_with`].
pub struct Deps {
    pub identity: Arc<dyn IdentityApi>,
    pub authz: Arc<dyn AuthzApi>,
    /// Where the outbox relay delivers audit events.
    pub audit: Arc<dyn AuditApi>,
}

impl std::fmt::Debug for Deps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deps").finish_non_exhaustive()
    }
}

impl Deps {
    /// The typed gRPC clients from the kernel's `clients.*` configuration.
    pub fn from_kernel(kernel: &Kernel) -> Result<Self, ClientError> {
        Ok(Self {
            identity: kernel.clients.identity()?,
            authz: kernel.clients.authz()?,
            audit: kernel.clients.audit()?,
        })
    }
}

/// Builds the gRPC services this binary serves.
pub async fn app(kernel: Kernel) -> anyhow::Result<GrpcServices> {
    let deps = Deps::from_kernel(&kernel)?;
    app_with(kernel, deps).await
}

/// Builds the service over the given dependencies: reads the `[auth]` section,
/// starts the audit outbox relay and the mail relay, and makes sure a signing key
/// exists.
pub async fn app_with(kernel: Kernel, deps: Deps) -> anyhow::Result<GrpcServices> {
    let config: AuthConfig = kernel.settings().section("auth")?;
    config.validate().map_err(anyhow::Error::msg)?;
    let mail_settings = config.mail_settings().map_err(anyhow::Error::msg)?;
    let tokens = kernel.config().tokens.clone();

    let sealing = Arc::new(key_encryption::KeyEncryption::from_config(
        &config.key_encryption,
    )?);
    let lockout = LoginLockout::start(&kernel, config.lockout.policy(), &sealing)?;
    let relay = kernel.start_outbox_relay_with(deps.audit);
    let mailer = mail::Mailer::start(&kernel, mail_settings);
    let keys = KeyRing::open(
        kernel.db.clone(),
        sealing.clone(),
        config.access_ttl(),
        Duration::from_secs(tokens.leeway_seconds),
        config.key_activation_delay(),
        config.signing_key_cache(),
    )
    .await
    .context("cannot load or create the signing key")?;
    let verifier = Arc::new(TokenVerifier::new(
        TableKeys::new(kernel.db.clone()),
        tokens.clone(),
    ));
    let keys = Arc::new(keys);
    let audit = AuditTrail::new(kernel.db.clone(), relay);
    let accounts = Arc::new(ServiceAccounts::new(
        kernel.db.clone(),
        keys.clone(),
        deps.authz.clone(),
        audit.clone(),
        tokens.clone(),
        config.access_token_ttl_seconds,
        &config.service_clients,
    ));
    let mfa = Arc::new(Mfa {
        db: kernel.db.clone(),
        sealing,
        identity: deps.identity.clone(),
        audit: audit.clone(),
    });
    let flows = Arc::new(AccountFlows {
        db: kernel.db.clone(),
        identity: deps.identity.clone(),
        mailer,
        audit: audit.clone(),
    });
    let sessions = Arc::new(Sessions {
        db: kernel.db.clone(),
        keys,
        identity: deps.identity,
        authz: deps.authz.clone(),
        audit,
        config,
        tokens,
        lockout,
        mfa,
    });

    let permissions: Arc<dyn PermissionSource> = Arc::new(deps.authz);
    let access = RequestLayer::new(verifier, permissions);
    let handlers = AuthHandlers::new(kernel.clone(), sessions, accounts, flows, access);
    let server = bulwark_kernel::grpc_limits!(kernel, AuthServiceServer::new(handlers));
    Ok(GrpcServices::new().with(server))
}
