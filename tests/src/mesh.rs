//! A whole or partial Bulwark mesh for one test, built from the parts it needs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::accounts::ServiceAccounts;
use crate::checkpoints::AuditCheckpoints;
use crate::envoy::{Envoy, EnvoyOptions, RATELIMIT_TIMEOUT};
use crate::mail::MailServer;
use crate::net::free_port;
use crate::postgres::Postgres;
use crate::process::tail;
use crate::redis::Redis;
use crate::service::{Service, ServiceKind, ServiceLaunch};

const SERVICE_READY_TIMEOUT: Duration = Duration::from_secs(60);
const ENVOY_READY_TIMEOUT: Duration = Duration::from_secs(30);
const LOG_TAIL_LINES: usize = 40;

/// Which parts to start. Services bring PostgreSQL and Redis along; Auth brings an
/// SMTP server ([`Mesh::mail`]).
#[derive(Debug, Default)]
pub struct MeshBuilder {
    postgres: bool,
    redis: bool,
    services: Vec<ServiceKind>,
    /// Instances of each started service (at least 1).
    replicas: usize,
    /// Envoy instances and the workers of each.
    envoys: (usize, u32),
    service_env: Vec<(ServiceKind, String, String)>,
    /// OTLP/gRPC endpoint every service and Envoy export spans to.
    otlp: Option<String>,
    /// The gateway filter's rate-limit call budget; production's when unset.
    ratelimit_timeout: Option<Duration>,
}

impl MeshBuilder {
    /// A PostgreSQL cluster with the `bulwark` database, roles and schemas.
    pub fn postgres(mut self) -> Self {
        self.postgres = true;
        self
    }

    /// A Redis server.
    pub fn redis(mut self) -> Self {
        self.redis = true;
        self
    }

    /// One service (and PostgreSQL and Redis for it).
    pub fn service(mut self, kind: ServiceKind) -> Self {
        if !self.services.contains(&kind) {
            self.services.push(kind);
        }
        self.postgres = true;
        self.redis = true;
        self
    }

    /// All four services.
    pub fn all_services(self) -> Self {
        ServiceKind::ALL.into_iter().fold(self, Self::service)
    }

    /// The Envoy edge in front of whichever services run (the others answer 503),
    /// with the gateway filter and the rate-limit service (and Redis) it calls.
    pub fn envoy(self) -> Self {
        self.envoys(1, 1)
    }

    /// `count` Envoy instances of `workers` worker threads each, every one a whole edge
    /// in front of the same services, rate-limit service and Redis (the fleet that
    /// shares one set of global limits).
    pub fn envoys(mut self, count: usize, workers: u32) -> Self {
        self.envoys = (count.max(1), workers.max(1));
        self.service(ServiceKind::Ratelimit)
    }

    /// `count` replicas of every service started (1 when never called): each its own
    /// process on its own ports, sharing the database and Redis. Envoy balances over
    /// them, and the services' clients list them all (each call goes to the next, a
    /// retry to another).
    pub fn replicas(mut self, count: usize) -> Self {
        self.replicas = count.max(1);
        self
    }

    /// An extra environment variable for one service, e.g. a fault to inject. It wins
    /// over the harness's own settings, service-account secrets included.
    pub fn service_env(mut self, kind: ServiceKind, key: &str, value: &str) -> Self {
        self.service_env
            .push((kind, key.to_owned(), value.to_owned()));
        self
    }

    /// Exports every service's and every Envoy's spans to the OTLP/gRPC `endpoint`
    /// (`http://127.0.0.1:<port>`, e.g. [`crate::OtlpReceiver::endpoint`]); Envoy then
    /// samples every request.
    pub fn otlp(mut self, endpoint: &str) -> Self {
        self.otlp = Some(endpoint.to_owned());
        self
    }

    /// The gateway filter's budget for a rate-limit call, instead of production's 50 ms
    /// ([`crate::envoy::RATELIMIT_TIMEOUT`]): for tests of what the edge answers rather
    /// than of how it copes with a slow limiter, on a machine whose load would otherwise
    /// make calls overrun the budget now and then.
    pub fn ratelimit_timeout(mut self, timeout: Duration) -> Self {
        self.ratelimit_timeout = Some(timeout);
        self
    }

    /// Starts the parts and waits until each is ready; the error names the part that
    /// failed and shows the end of its log.
    pub async fn start(self) -> anyhow::Result<Mesh> {
        let dir = tempfile::Builder::new()
            .prefix("bulwark-e2e-")
            .tempdir()
            .context("creating the test's temporary directory")?;
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs)?;
        let http = crate::net::http_client()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()?;
        let mut mesh = Mesh {
            envoys: Vec::new(),
            services: Vec::new(),
            mail: None,
            redis: None,
            postgres: None,
            logs,
            http,
            keep_dir: std::env::var_os("BULWARK_E2E_KEEP").is_some(),
            accounts: ServiceAccounts::generate()?,
            audit_checkpoints: AuditCheckpoints::generate(dir.path())?,
            dir,
        };

        if self.postgres {
            let log = mesh.logs.join("postgres.log");
            let start = async {
                let mut pg = Postgres::init(mesh.dir.path(), free_port()?, &log)?;
                pg.start().await?;
                // Only the core services own a schema; the rate-limit service has none.
                let names: Vec<&str> = ServiceKind::ALL.iter().map(|kind| kind.name()).collect();
                pg.provision(&names)?;
                anyhow::Ok(pg)
            };
            let pg = start.await.with_context(|| {
                format!(
                    "starting postgres; its log ends with:\n{}",
                    tail(&log, LOG_TAIL_LINES)
                )
            })?;
            mesh.postgres = Some(pg);
        }
        if self.redis {
            let log = mesh.logs.join("redis.log");
            let redis = Redis::start(&mesh.dir.path().join("redis"), free_port()?, &log)
                .await
                .with_context(|| {
                    format!(
                        "starting redis; its log ends with:\n{}",
                        tail(&log, LOG_TAIL_LINES)
                    )
                })?;
            mesh.redis = Some(redis);
        }

        if self.services.contains(&ServiceKind::Auth) {
            let log = mesh.logs.join("mail.log");
            let maildir = mesh.dir.path().join("mail");
            mesh.mail = Some(MailServer::start(&maildir, free_port()?, &log).await?);
        }
        // The first Envoy's ports are chosen now: Auth builds mailed links under its URL.
        let (envoys, workers) = self.envoys;
        let mut edge_ports = Vec::new();
        for _ in 0..envoys {
            edge_ports.push((free_port()?, free_port()?));
        }

        // Every service gets its replicas' ports, started or not, so that clients and
        // Envoy have an address for each (a closed port for those not started).
        let replicas = self.replicas.max(1);
        let mut grpc_ports: Vec<(ServiceKind, Vec<u16>)> = Vec::new();
        for kind in ServiceKind::EVERY {
            let ports = (0..replicas)
                .map(|_| free_port())
                .collect::<anyhow::Result<Vec<u16>>>()?;
            grpc_ports.push((kind, ports));
        }
        let clients: Vec<(ServiceKind, String)> = grpc_ports
            .iter()
            .filter(|(kind, _)| ServiceKind::ALL.contains(kind))
            .map(|(kind, ports)| {
                let urls: Vec<String> = ports
                    .iter()
                    .map(|port| format!("http://127.0.0.1:{port}"))
                    .collect();
                (*kind, urls.join(","))
            })
            .collect();
        for replica in 0..replicas {
            for kind in &self.services {
                let grpc_port = grpc_ports
                    .iter()
                    .find(|(k, _)| k == kind)
                    .map(|(_, ports)| ports[replica])
                    .context("every service has a port")?;
                let launch = ServiceLaunch {
                    kind: *kind,
                    replica,
                    grpc_port,
                    admin_port: free_port()?,
                    database_url: mesh
                        .postgres
                        .as_ref()
                        .map(|pg| pg.url_for(kind.name()))
                        .unwrap_or_default(),
                    // The first replica migrates the schema, as a deployment's one
                    // migration step does before its instances start.
                    owner_database_url: mesh
                        .postgres
                        .as_ref()
                        .filter(|_| *kind != ServiceKind::Ratelimit && replica == 0)
                        .map(|pg| pg.owner_url_for(kind.name())),
                    redis_url: mesh.redis.as_ref().map(Redis::url),
                    clients: clients.clone(),
                    mesh_env: mesh.mesh_env(*kind, edge_ports.first().map(|(port, _)| *port)),
                    secret_env: mesh.secret_env(*kind),
                    extra_env: self
                        .otlp
                        .iter()
                        .map(|endpoint| {
                            (
                                "BULWARK_TELEMETRY__OTLP_ENDPOINT".to_owned(),
                                endpoint.clone(),
                            )
                        })
                        .chain(
                            self.service_env
                                .iter()
                                .filter(|(k, _, _)| k == kind)
                                .map(|(_, key, value)| (key.clone(), value.clone())),
                        )
                        .collect(),
                };
                let log = mesh.logs.join(replica_log_name(kind.name(), replica));
                mesh.services.push(Service::spawn(launch, &log)?);
            }
            // The first replicas are ready (migrations done) before the next start.
            for service in mesh.services.iter_mut().filter(|s| s.replica() == replica) {
                service
                    .wait_ready(&mesh.http, SERVICE_READY_TIMEOUT)
                    .await?;
            }
        }

        if envoys > 0 {
            // With Auth in the mesh, an Envoy is handed out once it can verify tokens.
            let with_auth = mesh
                .services
                .iter()
                .any(|service| service.kind() == ServiceKind::Auth);
            let descriptor = mesh.dir.path().join("bulwark.pb");
            std::fs::write(&descriptor, bulwark_proto::FILE_DESCRIPTOR_SET)
                .context("writing the descriptor set for Envoy")?;
            for (index, ports) in edge_ports.into_iter().enumerate() {
                let dir = mesh.dir.path().join(format!("envoy-{index}"));
                std::fs::create_dir_all(&dir)?;
                let name = replica_log_name("envoy", index);
                let options = EnvoyOptions {
                    workers,
                    otlp: self.otlp.as_deref(),
                    ratelimit_timeout: self.ratelimit_timeout.unwrap_or(RATELIMIT_TIMEOUT),
                };
                let mut envoy = Envoy::spawn(
                    &dir,
                    ports,
                    &options,
                    &grpc_ports,
                    &descriptor,
                    &mesh.logs.join(name),
                )?;
                envoy.wait_ready(&mesh.http, ENVOY_READY_TIMEOUT).await?;
                if with_auth {
                    envoy.wait_for_keys(&mesh.http, ENVOY_READY_TIMEOUT).await?;
                }
                mesh.envoys.push(envoy);
            }
        }
        Ok(mesh)
    }
}

/// `<name>.log` for the first instance, `<name>-<index>.log` for the others.
fn replica_log_name(name: &str, index: usize) -> String {
    if index == 0 {
        format!("{name}.log")
    } else {
        format!("{name}-{index}.log")
    }
}

/// Running parts of the mesh. Dropping it stops them (Envoy first, PostgreSQL last);
/// when the test is failing, the end of every log is printed first.
#[derive(Debug)]
pub struct Mesh {
    // Fields drop in this order.
    envoys: Vec<Envoy>,
    services: Vec<Service>,
    mail: Option<MailServer>,
    redis: Option<Redis>,
    postgres: Option<Postgres>,
    logs: PathBuf,
    http: reqwest::Client,
    keep_dir: bool,
    dir: tempfile::TempDir,
    /// Fresh service-account secrets of this mesh (for every core service, started or not).
    accounts: ServiceAccounts,
    /// Audit's fresh checkpoint key and its directory.
    audit_checkpoints: AuditCheckpoints,
}

impl Mesh {
    /// Choose the parts to start.
    pub fn builder() -> MeshBuilder {
        MeshBuilder::default()
    }

    /// An HTTP/1.1 client with a 10 s timeout and no proxy.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The test's temporary directory (logs are in `logs/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Settings that point a service at the mesh's other parts: Auth sends mail to the
    /// mesh's SMTP server, with links under the first Envoy's URL.
    fn mesh_env(&self, kind: ServiceKind, edge_port: Option<u16>) -> Vec<(String, String)> {
        let mut env = Vec::new();
        if kind == ServiceKind::Auth {
            if let Some(mail) = &self.mail {
                env.push(("BULWARK_AUTH__SMTP_URL".to_owned(), mail.url()));
            }
            if let Some(port) = edge_port {
                env.push((
                    "BULWARK_AUTH__PUBLIC_BASE_URL".to_owned(),
                    format!("http://127.0.0.1:{port}"),
                ));
            }
        }
        env
    }

    /// A service's secrets: its account (and Auth's copies of every client secret),
    /// and Audit's checkpoint key and directory.
    fn secret_env(&self, kind: ServiceKind) -> Vec<(String, String)> {
        let mut env = self.accounts.env_for(kind);
        if kind == ServiceKind::Audit {
            env.extend(self.audit_checkpoints.env());
        }
        env
    }

    /// Where Audit writes its checkpoint files (it signs one a second when the log
    /// grew, with a key made for this mesh).
    pub fn audit_checkpoint_dir(&self) -> &Path {
        self.audit_checkpoints.dir()
    }

    /// A started service (its first replica).
    ///
    /// # Panics
    /// If the test did not ask the builder for it: a mistake in the test itself.
    pub fn service(&self, kind: ServiceKind) -> &Service {
        self.replica(kind, 0)
    }

    /// A started service (its first replica), mutably (to check that it still runs).
    ///
    /// # Panics
    /// If the test did not ask the builder for it.
    pub fn service_mut(&mut self, kind: ServiceKind) -> &mut Service {
        self.replica_mut(kind, 0)
    }

    /// Every replica of a service, in replica order (empty when not started).
    pub fn replicas(&self, kind: ServiceKind) -> Vec<&Service> {
        let mut replicas: Vec<&Service> = self
            .services
            .iter()
            .filter(|service| service.kind() == kind)
            .collect();
        replicas.sort_by_key(|service| service.replica());
        replicas
    }

    /// Every started service process, all replicas, in start order.
    pub fn all_services(&self) -> &[Service] {
        &self.services
    }

    /// One replica of a started service.
    ///
    /// # Panics
    /// If the test did not start that replica: a mistake in the test itself.
    pub fn replica(&self, kind: ServiceKind, replica: usize) -> &Service {
        self.services
            .iter()
            .find(|service| service.kind() == kind && service.replica() == replica)
            .unwrap_or_else(|| panic!("the test did not start {} #{replica}", kind.name()))
    }

    /// One replica of a started service, mutably.
    ///
    /// # Panics
    /// If the test did not start that replica.
    pub fn replica_mut(&mut self, kind: ServiceKind, replica: usize) -> &mut Service {
        self.services
            .iter_mut()
            .find(|service| service.kind() == kind && service.replica() == replica)
            .unwrap_or_else(|| panic!("the test did not start {} #{replica}", kind.name()))
    }

    /// `(client_id, client_secret)` of a core service's own account in this mesh, the
    /// credentials it gets Auth's tokens with (`IssueToken`). Every core service has one,
    /// started or not; Auth knows all four.
    ///
    /// # Panics
    /// For the rate-limit service, which has no account: a mistake in the test itself.
    pub fn service_credentials(&self, kind: ServiceKind) -> (String, String) {
        self.accounts
            .credentials(kind)
            .unwrap_or_else(|| panic!("{} has no service account", kind.name()))
    }

    /// `(id, hex)` of the key-encryption key that seals Auth's signing keys.
    pub fn auth_key_encryption_key(&self) -> (&'static str, String) {
        self.accounts.key_encryption_key()
    }

    /// The SMTP server Auth sends to; every message it received is a file in
    /// `mail().maildir()/new/`, and `mail().wait_for(to, timeout)` waits for the next one.
    ///
    /// # Panics
    /// If the test did not start Auth.
    pub fn mail(&self) -> &MailServer {
        self.mail
            .as_ref()
            .unwrap_or_else(|| panic!("the test did not start auth, so no SMTP server runs"))
    }

    /// The SMTP server, mutably (to stop and restart it).
    ///
    /// # Panics
    /// If the test did not start Auth.
    pub fn mail_mut(&mut self) -> &mut MailServer {
        self.mail
            .as_mut()
            .unwrap_or_else(|| panic!("the test did not start auth, so no SMTP server runs"))
    }

    /// The Envoy edge.
    ///
    /// # Panics
    /// If the test did not ask the builder for it.
    pub fn envoy(&self) -> &Envoy {
        self.envoys
            .first()
            .unwrap_or_else(|| panic!("the test did not start envoy"))
    }

    /// Every Envoy instance, in start order (the first is [`Mesh::envoy`]).
    pub fn envoys(&self) -> &[Envoy] {
        &self.envoys
    }

    /// `http://127.0.0.1:<edge port><path>`.
    pub fn edge_url(&self, path: &str) -> String {
        self.envoy().url(path)
    }

    /// PostgreSQL, if started.
    pub fn postgres(&self) -> Option<&Postgres> {
        self.postgres.as_ref()
    }

    /// Stops PostgreSQL (fast shutdown); the services keep running.
    pub fn stop_postgres(&mut self) -> anyhow::Result<()> {
        self.postgres
            .as_mut()
            .context("the test did not start postgres")?
            .stop()
    }

    /// Starts PostgreSQL again on the same port with the same data.
    pub async fn start_postgres(&mut self) -> anyhow::Result<()> {
        self.postgres
            .as_mut()
            .context("the test did not start postgres")?
            .start()
            .await
    }

    /// Stops one service (its first replica; SIGTERM with a 15 s grace); the rest of the
    /// mesh keeps running.
    pub fn stop_service(&mut self, kind: ServiceKind) -> anyhow::Result<()> {
        self.stop_replica(kind, 0)
    }

    /// Starts a stopped service (its first replica) again on its ports and waits until
    /// it is ready.
    pub async fn restart_service(&mut self, kind: ServiceKind) -> anyhow::Result<()> {
        self.restart_replica(kind, 0).await
    }

    /// Stops one replica as an orchestrator does (SIGTERM, a kill after 15 s); the
    /// others keep running.
    pub fn stop_replica(&mut self, kind: ServiceKind, replica: usize) -> anyhow::Result<()> {
        self.replica_mut(kind, replica)
            .stop(Duration::from_secs(15))?;
        Ok(())
    }

    /// Kills one replica at once (SIGKILL: no drain, no deregistration).
    pub fn kill_replica(&mut self, kind: ServiceKind, replica: usize) -> anyhow::Result<()> {
        self.replica_mut(kind, replica).kill()
    }

    /// Starts a stopped replica again on its ports and waits until it is ready.
    pub async fn restart_replica(
        &mut self,
        kind: ServiceKind,
        replica: usize,
    ) -> anyhow::Result<()> {
        let http = self.http.clone();
        self.replica_mut(kind, replica)
            .restart(&http, SERVICE_READY_TIMEOUT)
            .await
    }

    /// Redis, if started.
    pub fn redis(&self) -> Option<&Redis> {
        self.redis.as_ref()
    }

    /// Stops Redis; the services and Envoy keep running.
    pub fn stop_redis(&mut self) -> anyhow::Result<()> {
        self.redis
            .as_mut()
            .context("the test did not start redis")?
            .stop()
    }

    /// Starts Redis again on the same port (its counters start empty).
    pub async fn restart_redis(&mut self) -> anyhow::Result<()> {
        self.redis
            .as_mut()
            .context("the test did not start redis")?
            .restart()
            .await
    }

    /// The end of every component's log, for a failure message.
    pub fn log_report(&self) -> String {
        let mut logs: Vec<PathBuf> = std::fs::read_dir(&self.logs)
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        logs.sort();
        let mut report = String::new();
        for log in logs {
            report.push_str(&format!(
                "\n==> {} <==\n{}\n",
                log.display(),
                tail(&log, LOG_TAIL_LINES)
            ));
        }
        report
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- logs of the mesh under test ----{}", self.log_report());
        }
        if self.keep_dir {
            self.dir.disable_cleanup(true);
            eprintln!(
                "BULWARK_E2E_KEEP is set: keeping {}",
                self.dir.path().display()
            );
        }
    }
}
