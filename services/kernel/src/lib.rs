//! The shared infrastructure of every Bulwark service: configuration, telemetry,
//! health, metrics, the error bus, server bootstrap, database and Redis pools, typed
//! clients with service-account tokens, the request layer, and the rate limiter.
//!
//! A service's `main` is one call to [`run`]; its handlers receive a [`Kernel`].

pub mod admin;
pub mod bootstrap;
pub mod caller;
pub mod clients;
pub mod config;
pub mod consul;
pub mod db;
pub mod error_bus;
pub mod health;
pub mod metrics;
pub mod outbox;
pub mod permission;
pub mod ratelimit;
pub mod redis;
pub mod request;
pub mod server;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod timestamp;

use std::process::ExitCode;

pub use diesel_migrations::{EmbeddedMigrations, embed_migrations};
pub use server::{BootError, GrpcServices, Kernel, Running, ServiceSpec};
pub use tonic;

use config::Settings;
use telemetry::Telemetry;

/// Runs one service binary: loads and validates configuration (a bad value, or the
/// default admin password outside `local`, exits with status 2 and a message naming
/// the key), sets up telemetry, boots the kernel,
/// builds the app's gRPC services with `build`, serves, and shuts down in order on
/// SIGTERM/SIGINT.
pub async fn run<F, Fut>(spec: ServiceSpec, migrations: EmbeddedMigrations, build: F) -> ExitCode
where
    F: FnOnce(Kernel) -> Fut,
    Fut: Future<Output = anyhow::Result<GrpcServices>>,
{
    run_with(spec, Some(migrations), build).await
}

/// [`run`] for a service that keeps no state in Postgres (no connection is made).
pub async fn run_stateless<F, Fut>(spec: ServiceSpec, build: F) -> ExitCode
where
    F: FnOnce(Kernel) -> Fut,
    Fut: Future<Output = anyhow::Result<GrpcServices>>,
{
    run_with(spec, None, build).await
}

async fn run_with<F, Fut>(
    spec: ServiceSpec,
    migrations: Option<EmbeddedMigrations>,
    build: F,
) -> ExitCode
where
    F: FnOnce(Kernel) -> Fut,
    Fut: Future<Output = anyhow::Result<GrpcServices>>,
{
    let loaded = Settings::load(&spec).and_then(|settings| {
        if spec.reads_admin_password {
            bootstrap::check_admin_password(&settings)?;
        }
        Ok(settings)
    });
    let settings = match loaded {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("bulwark-{}: {error}", spec.name);
            return ExitCode::from(2);
        }
    };
    let telemetry = match Telemetry::init(&settings.kernel.service.name, &settings.kernel.telemetry)
    {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("bulwark-{}: {error}", spec.name);
            return ExitCode::from(2);
        }
    };
    install_panic_hook();

    let started = async {
        let kernel = match migrations {
            Some(migrations) => Kernel::boot(settings, migrations).await?,
            None => Kernel::boot_stateless(settings).await?,
        };
        let services = build(kernel.clone()).await?;
        kernel.serve(services).await
    }
    .await;
    let code = match started {
        Ok(running) => {
            running.until_signal().await;
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(%error, "failed to start");
            eprintln!("bulwark-{}: failed to start: {error}", spec.name);
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}

/// Installs ring as the process's one rustls crypto provider (Sentry's and Consul's
/// HTTP clients need one; two providers in one binary panic). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Panics are logged as JSON through `tracing` (inside the request's span, so with
/// its trace id) instead of as bare text on stderr.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = server::recover::panic_message(info.payload());
        tracing::error!(%location, panic = %message, "panicked");
    }));
}
