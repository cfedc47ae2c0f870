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
pub mod redis;
pub mod request;
pub mod schema;
pub mod server;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod timestamp;

use std::process::ExitCode;

pub use diesel_migrations::{EmbeddedMigrations, embed_migrations};
pub use schema::Schema;
pub use server::{BootError, GrpcServices, Kernel, Running, ServiceSpec};
pub use tonic;

use config::Settings;
use telemetry::Telemetry;

/// Runs one service binary. With no argument it serves: loads and validates
/// configuration (a bad value, or the default admin password outside `local`, exits
/// with status 2 and a message naming the key), sets up telemetry, boots the kernel
/// (which refuses an unmigrated schema or a runtime role that owns it), builds the
/// app's gRPC services with `build`, serves, and shuts down in order on SIGTERM/SIGINT.
///
/// `bulwark-<svc> migrate` instead connects as the schema's owner
/// (`database.owner_url`), applies the migrations, grants the runtime role what the
/// service needs ([`schema::migrate`]) and exits.
pub async fn run<F, Fut>(spec: ServiceSpec, schema: Schema, build: F) -> ExitCode
where
    F: FnOnce(Kernel) -> Fut,
    Fut: Future<Output = anyhow::Result<GrpcServices>>,
{
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] | ["serve"] => run_with(spec, Some(schema), build).await,
        ["migrate"] => migrate(spec, schema).await,
        ["help" | "-h" | "--help"] => {
            eprintln!("{}", usage(&spec));
            ExitCode::SUCCESS
        }
        other => {
            eprintln!(
                "bulwark-{}: unknown arguments {other:?}\n{}",
                spec.name,
                usage(&spec)
            );
            ExitCode::from(2)
        }
    }
}

fn usage(spec: &ServiceSpec) -> String {
    format!(
        "usage: bulwark-{name} [serve]   run the service (database.url: the runtime role)\n       \
         bulwark-{name} migrate   apply the migrations and the runtime role's grants \
         (database.owner_url: the schema's owner)\nconfiguration: BULWARK_CONFIG=<file.toml> \
         and BULWARK_* variables (README: Configuration)",
        name = spec.name
    )
}

/// `bulwark-<svc> migrate`: configuration as for serving (so the same file and
/// environment work), then [`schema::migrate`]; says what it applied.
async fn migrate(spec: ServiceSpec, schema: Schema) -> ExitCode {
    let settings = match Settings::load(&spec) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("bulwark-{}: {error}", spec.name);
            return ExitCode::from(2);
        }
    };
    let database = &settings.kernel.database;
    eprintln!(
        "bulwark-{}: migrating schema {} as its owner ...",
        spec.name, database.schema
    );
    let application = format!("bulwark-{}-migrate", spec.name);
    match schema::migrate(database, schema, &application, server::DATABASE_START_WAIT).await {
        Ok(migrated) => {
            let applied = if migrated.applied.is_empty() {
                "no pending migration".to_owned()
            } else {
                format!("applied {}", migrated.applied.join(", "))
            };
            eprintln!(
                "bulwark-{}: {applied}; role {} holds exactly the service's grants on schema {}",
                spec.name, migrated.runtime_role, database.schema
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("bulwark-{}: migrate failed: {error}", spec.name);
            ExitCode::FAILURE
        }
    }
}

/// [`run`] for a service that keeps no state in Postgres (no connection is made).
pub async fn run_stateless<F, Fut>(spec: ServiceSpec, build: F) -> ExitCode
where
    F: FnOnce(Kernel) -> Fut,
    Fut: Future<Output = anyhow::Result<GrpcServices>>,
{
    run_with(spec, None, build).await
}

async fn run_with<F, Fut>(spec: ServiceSpec, schema: Option<Schema>, build: F) -> ExitCode
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
        let kernel = match schema {
            Some(schema) => Kernel::boot(settings, schema).await?,
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
