//! Server bootstrap: boots the kernel (error bus, metrics, database with migrations,
//! Redis), serves the app's gRPC services behind the kernel's tower layers plus the
//! admin HTTP server, and shuts down in order on SIGTERM/SIGINT.
//!
//! Shutdown order: report not ready and NOT_SERVING (gauge `bulwark_draining` 1), keep
//! serving for `grpc.drain_delay_ms` while balancers take the instance out, stop
//! accepting and drain in-flight calls within the grace period, run the app's shutdown
//! hooks in registration order (deregistration, relays), stop the admin server, close
//! the pools, drain the error bus.

pub mod observe;
pub mod recover;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use secrecy::ExposeSecret as _;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::server::NamedService;
use tonic_health::ServingStatus;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use crate::clients::ServiceClients;
use crate::config::{KernelConfig, Settings};
use crate::consul::{ConsulAgent, Registration};
use crate::db::{Database, DbError};
use crate::error_bus::{ErrorBus, ErrorBusWorker, SentrySink};
use crate::health::Readiness;
use crate::metrics::Metrics;
use crate::redis::{Redis, RedisError};
use crate::schema::Schema;

/// How long a service waits for Postgres at start before giving up.
pub(crate) const DATABASE_START_WAIT: Duration = Duration::from_secs(30);
/// Bound on each shutdown hook and on the admin server's drain.
const HOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// How often readiness is mirrored into the gRPC health service.
const HEALTH_MIRROR_PERIOD: Duration = Duration::from_secs(2);

/// What a service binary is: its name, default ports, and whether it creates the
/// bootstrap admin from `admin_password`.
#[derive(Debug, Clone, Copy)]
pub struct ServiceSpec {
    pub name: &'static str,
    pub default_grpc_port: u16,
    pub default_http_port: u16,
    /// Reads `admin_password`, so refuses the documented default outside `local`
    /// (`bootstrap::check_admin_password`). Only the service that creates the admin;
    /// the others neither need the secret nor refuse its absence.
    pub reads_admin_password: bool,
}

impl ServiceSpec {
    pub const fn new(name: &'static str, default_grpc_port: u16, default_http_port: u16) -> Self {
        Self {
            name,
            default_grpc_port,
            default_http_port,
            reads_admin_password: false,
        }
    }

    /// This service creates the bootstrap admin from `admin_password`.
    pub const fn reading_admin_password(self) -> Self {
        Self {
            reads_admin_password: true,
            ..self
        }
    }
}

/// Why a service could not start.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error(transparent)]
    Database(#[from] DbError),
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0:#}")]
    App(#[from] anyhow::Error),
}

type ShutdownHook = (String, Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>);

/// Everything a service's handlers get from the kernel. Cheap to clone.
#[derive(Clone)]
pub struct Kernel {
    settings: Arc<Settings>,
    pub errors: ErrorBus,
    pub metrics: Metrics,
    pub db: Database,
    pub redis: Option<Redis>,
    pub readiness: Readiness,
    pub clients: ServiceClients,
    hooks: Arc<Mutex<Vec<ShutdownHook>>>,
    bus_worker: Arc<Mutex<Option<ErrorBusWorker>>>,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel")
            .field("service", &self.config().service.name)
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

impl Kernel {
    /// Starts the error bus and metrics, connects to Postgres as the runtime role
    /// (waiting for it a while) after checking that `schema` is migrated and the role
    /// owns nothing, and connects Redis when configured.
    pub async fn boot(settings: Settings, schema: Schema) -> Result<Self, BootError> {
        Self::boot_with(settings, Some(schema)).await
    }

    /// Like [`Kernel::boot`] for a service that keeps no state in Postgres: no
    /// connection is made and [`Kernel::db`] is [`Database::absent`].
    pub async fn boot_stateless(settings: Settings) -> Result<Self, BootError> {
        Self::boot_with(settings, None).await
    }

    async fn boot_with(settings: Settings, schema: Option<Schema>) -> Result<Self, BootError> {
        let config = &settings.kernel;
        let service = config.service.name.clone();
        let sentry = config.sentry.dsn.as_ref().map(|dsn| SentrySink {
            dsn: dsn.expose_secret().into(),
            service: service.clone(),
            environment: config.service.environment.clone(),
            release: format!("bulwark-{service}@{}", env!("CARGO_PKG_VERSION")),
        });
        let (errors, bus_worker) = ErrorBus::start(sentry);
        let metrics = Metrics::install(&service);
        let readiness = Readiness::default();

        let db = match schema {
            Some(schema) => {
                let db = Database::connect(
                    &config.database,
                    schema,
                    &format!("bulwark-{service}"),
                    DATABASE_START_WAIT,
                )
                .await?;
                tracing::info!(schema = db.schema(), "database ready");
                readiness.add(Arc::new(db.clone()));
                let pool_db = db.clone();
                let pool_service = service.clone();
                metrics.on_scrape(move || pool_db.record_pool_gauges(&pool_service));
                db
            }
            None => Database::absent(),
        };

        let redis = match config.redis.url {
            Some(_) => {
                let redis = Redis::connect(&config.redis)?;
                readiness.add(Arc::new(redis.clone()));
                Some(redis)
            }
            None => None,
        };

        let clients =
            ServiceClients::with_service_account(config.clients.clone(), &config.service_account)
                .map_err(|e| BootError::App(e.into()))?;

        Ok(Self {
            settings: Arc::new(settings),
            errors,
            metrics,
            db,
            redis,
            readiness,
            clients,
            hooks: Arc::default(),
            bus_worker: Arc::new(Mutex::new(Some(bus_worker))),
        })
    }

    pub fn config(&self) -> &KernelConfig {
        &self.settings.kernel
    }

    /// All configuration layers, for the service's own sections.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Runs `hook` during shutdown, after in-flight calls have drained, in the order
    /// hooks were registered; each is bounded by a timeout.
    pub fn on_shutdown<F, Fut>(&self, name: &str, hook: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        if let Ok(mut hooks) = self.hooks.lock() {
            hooks.push((name.to_owned(), Box::new(move || Box::pin(hook()))));
        }
    }

    /// Binds both listeners and serves until [`Running::shutdown`] is called.
    pub async fn serve(self, services: GrpcServices) -> Result<Running, BootError> {
        let config = self.config().clone();
        let grpc_listener = bind("grpc.listen", config.grpc.listen).await?;
        let http_listener = bind("http.listen", config.http.listen).await?;
        let grpc_addr = local_addr("grpc.listen", &grpc_listener, config.grpc.listen)?;
        let http_addr = local_addr("http.listen", &http_listener, config.http.listen)?;
        if let Some(address) = &config.consul.address {
            self.register_with_consul(address, grpc_addr, http_addr);
        }
        let (trigger, triggered) = oneshot::channel();
        let task =
            tokio::spawn(self.serve_until(services, grpc_listener, http_listener, triggered));
        tracing::info!(%grpc_addr, %http_addr, "serving");
        Ok(Running {
            grpc_addr,
            http_addr,
            trigger: Some(trigger),
            task,
        })
    }

    /// Registers with the local Consul agent in the background (retrying while the
    /// agent is unreachable) and deregisters first among the shutdown hooks.
    fn register_with_consul(&self, address: &str, grpc: SocketAddr, admin: SocketAddr) {
        let config = &self.config().consul;
        let agent = ConsulAgent::new(address, config.token.clone());
        let service = &self.config().service.name;
        let used = self.clients.used();
        let upstreams = crate::consul::upstreams(
            service,
            used.iter()
                .map(|(name, endpoint)| (*name, endpoint.as_str())),
        );
        let registration = Registration::new(
            service,
            grpc,
            admin,
            config.service_address.as_deref(),
            upstreams,
        );
        let id = registration.id.clone();
        let errors = self.errors.clone();
        let register_agent = agent.clone();
        let registering = tokio::spawn(async move {
            let mut delay = Duration::from_millis(500);
            loop {
                match register_agent.register(&registration).await {
                    Ok(()) => {
                        tracing::info!(id = %registration.id, "registered with Consul");
                        return;
                    }
                    Err(error) => {
                        errors.error("consul", &error);
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(30));
                    }
                }
            }
        });
        if let Ok(mut hooks) = self.hooks.lock() {
            hooks.insert(
                0,
                (
                    "consul deregistration".to_owned(),
                    Box::new(move || {
                        Box::pin(async move {
                            registering.abort();
                            match agent.deregister(&id).await {
                                Ok(()) => tracing::info!(%id, "deregistered from Consul"),
                                Err(error) => {
                                    tracing::warn!(%error, "Consul deregistration failed")
                                }
                            }
                        })
                    }),
                ),
            );
        }
    }

    async fn serve_until(
        self,
        services: GrpcServices,
        grpc_listener: TcpListener,
        http_listener: TcpListener,
        triggered: oneshot::Receiver<()>,
    ) {
        let config = self.config().clone();
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        let names = services.names.clone();
        set_health(&health_reporter, &names, ServingStatus::Serving).await;
        metrics::gauge!("bulwark_draining").set(0.0);
        let mut routes = services.routes;
        routes.add_service(health_service);

        let layers = tower::ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(observe::ObserveLayer)
            .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                config.grpc.concurrency_limit,
            ))
            .layer(recover::CatchPanicLayer::new(self.errors.clone()))
            .layer(recover::FaultLayer::new(config.faults.panic_rpc.as_deref()))
            .into_inner();

        let (grpc_stop, grpc_stopped) = oneshot::channel::<()>();
        let grpc = tonic::transport::Server::builder()
            .timeout(Duration::from_millis(config.grpc.request_timeout_ms))
            .layer(layers)
            .add_routes(routes.routes())
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(grpc_listener),
                async {
                    let _ = grpc_stopped.await;
                },
            );
        let mut grpc = tokio::spawn(grpc);

        let (http_stop, http_stopped) = oneshot::channel::<()>();
        let admin = crate::admin::router(
            self.readiness.clone(),
            self.metrics.clone(),
            self.errors.clone(),
        );
        let http = tokio::spawn(async move {
            axum::serve(http_listener, admin)
                .with_graceful_shutdown(async {
                    let _ = http_stopped.await;
                })
                .await
        });

        let mirror = tokio::spawn(mirror_readiness(
            self.readiness.clone(),
            health_reporter.clone(),
            names.clone(),
        ));

        // Wait for the trigger, or for the gRPC server to fail on its own.
        let early_exit = tokio::select! {
            _ = triggered => None,
            result = &mut grpc => Some(result),
        };
        if let Some(result) = early_exit {
            tracing::error!(?result, "gRPC server stopped unexpectedly");
        }

        tracing::info!("shutting down: no longer ready");
        mirror.abort();
        self.readiness.start_draining();
        set_health(&health_reporter, &names, ServingStatus::NotServing).await;
        metrics::gauge!("bulwark_draining").set(1.0);
        let delay = Duration::from_millis(config.grpc.drain_delay_ms);
        if !delay.is_zero() {
            tracing::info!(
                ?delay,
                "shutting down: still serving while balancers take this instance out"
            );
            tokio::time::sleep(delay).await;
        }

        let grace = Duration::from_millis(config.grpc.shutdown_grace_ms);
        tracing::info!(?grace, "shutting down: draining in-flight calls");
        let _ = grpc_stop.send(());
        if !grpc.is_finished() && tokio::time::timeout(grace, &mut grpc).await.is_err() {
            tracing::warn!(
                ?grace,
                "in-flight calls did not finish within the grace period; cutting them"
            );
            grpc.abort();
        }

        let hooks = self
            .hooks
            .lock()
            .map(|mut h| std::mem::take(&mut *h))
            .unwrap_or_default();
        for (name, hook) in hooks {
            tracing::info!(hook = %name, "shutting down: running hook");
            if tokio::time::timeout(HOOK_TIMEOUT, hook()).await.is_err() {
                tracing::warn!(hook = %name, "shutdown hook timed out");
            }
        }

        let _ = http_stop.send(());
        if tokio::time::timeout(HOOK_TIMEOUT, http).await.is_err() {
            tracing::warn!("admin server did not stop in time");
        }

        tracing::info!("shutting down: closing pools");
        let worker = self.bus_worker.lock().ok().and_then(|mut w| w.take());
        drop(self);
        if let Some(worker) = worker {
            worker.close(HOOK_TIMEOUT).await;
        }
        tracing::info!("stopped");
    }
}

async fn set_health(
    reporter: &tonic_health::server::HealthReporter,
    names: &[&'static str],
    status: ServingStatus,
) {
    reporter.set_service_status("", status).await;
    for name in names {
        reporter.set_service_status(*name, status).await;
    }
}

/// Keeps `grpc.health.v1` in step with `/ready`, so gRPC balancers see the same state.
async fn mirror_readiness(
    readiness: Readiness,
    reporter: tonic_health::server::HealthReporter,
    names: Vec<&'static str>,
) {
    let mut last = None;
    loop {
        tokio::time::sleep(HEALTH_MIRROR_PERIOD).await;
        let ready = readiness.report().await.ready;
        if last != Some(ready) {
            let status = if ready {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            set_health(&reporter, &names, status).await;
            last = Some(ready);
        }
    }
}

async fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener, BootError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BootError::Bind { key, addr, source })
}

fn local_addr(
    key: &'static str,
    listener: &TcpListener,
    addr: SocketAddr,
) -> Result<SocketAddr, BootError> {
    listener
        .local_addr()
        .map_err(|source| BootError::Bind { key, addr, source })
}

/// The gRPC services an app serves; the kernel adds `grpc.health.v1`.
#[derive(Debug, Default)]
pub struct GrpcServices {
    routes: tonic::service::RoutesBuilder,
    names: Vec<&'static str>,
}

impl GrpcServices {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one generated tonic server (configure it with [`crate::grpc_limits!`]).
    pub fn with<S>(mut self, service: S) -> Self
    where
        S: tower::Service<http::Request<tonic::body::Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.names.push(S::NAME);
        self.routes.add_service(service);
        self
    }
}

/// Applies the kernel's message-size limits and gzip to a generated tonic server.
#[macro_export]
macro_rules! grpc_limits {
    ($kernel:expr, $server:expr) => {{
        let limit = $kernel.config().grpc.max_message_bytes;
        $server
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit)
            .accept_compressed($crate::tonic::codec::CompressionEncoding::Gzip)
            .send_compressed($crate::tonic::codec::CompressionEncoding::Gzip)
    }};
}

/// A serving service; dropping it does not stop it, [`Running::shutdown`] does.
#[derive(Debug)]
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    trigger: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Running {
    /// Runs the ordered shutdown and waits for it to finish.
    pub async fn shutdown(mut self) {
        if let Some(trigger) = self.trigger.take() {
            let _ = trigger.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Serves until SIGTERM or SIGINT, then shuts down in order.
    pub async fn until_signal(self) {
        shutdown_signal().await;
        self.shutdown().await;
    }
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                futures::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = futures::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}
