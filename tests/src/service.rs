//! One Bulwark service binary, started with the environment the kernel reads
//! (`BULWARK_*`, `__` between sections) and watched through its admin port.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::process::{ManagedChild, tail};
use crate::workspace::{workspace_binary, workspace_root};

/// The four services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceKind {
    /// `bulwark-identity`: users and credentials.
    Identity,
    /// `bulwark-auth`: tokens and signing keys.
    Auth,
    /// `bulwark-authz`: roles and permission checks.
    Authz,
    /// `bulwark-audit`: the audit log.
    Audit,
    /// `bulwark-ratelimit`: the edge's rate limits, counted in Redis (no database).
    Ratelimit,
}

impl ServiceKind {
    /// The four core services (each with a database schema), in start order.
    pub const ALL: [Self; 4] = [Self::Identity, Self::Auth, Self::Authz, Self::Audit];

    /// Every service process, the rate-limit service included.
    pub const EVERY: [Self; 5] = [
        Self::Identity,
        Self::Auth,
        Self::Authz,
        Self::Audit,
        Self::Ratelimit,
    ];

    /// Short name: binary suffix, schema and role prefix, log file name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Auth => "auth",
            Self::Authz => "authz",
            Self::Audit => "audit",
            Self::Ratelimit => "ratelimit",
        }
    }

    /// The OAuth client id of the service's own account (its name); `None` for the
    /// rate-limit service, which calls no other service and has no account.
    pub fn client_id(self) -> Option<&'static str> {
        match self {
            Self::Ratelimit => None,
            core => Some(core.name()),
        }
    }

    /// Full gRPC service name, the prefix of its request paths.
    pub fn grpc_service(self) -> &'static str {
        match self {
            Self::Identity => "bulwark.identity.v1.IdentityService",
            Self::Auth => "bulwark.auth.v1.AuthService",
            Self::Authz => "bulwark.authz.v1.AuthzService",
            Self::Audit => "bulwark.audit.v1.AuditService",
            Self::Ratelimit => "envoy.service.ratelimit.v3.RateLimitService",
        }
    }
}

/// What a service process is started with.
#[derive(Debug, Clone)]
pub(crate) struct ServiceLaunch {
    pub kind: ServiceKind,
    /// Which instance of the service this is (0 for the first).
    pub replica: usize,
    pub grpc_port: u16,
    pub admin_port: u16,
    pub database_url: String,
    /// The schema owner's URL: `bulwark-<svc> migrate` runs with it before the service
    /// first starts (unset for the rate-limit service, which has no schema).
    pub owner_database_url: Option<String>,
    pub redis_url: Option<String>,
    /// gRPC URL of every service, for the `BULWARK_CLIENTS__*` settings.
    pub clients: Vec<(ServiceKind, String)>,
    /// Settings that point it at other parts of the mesh (Auth: SMTP server, public URL).
    pub mesh_env: Vec<(String, String)>,
    /// Its secrets: its service account, for Auth every built-in client's secret, for
    /// Audit its checkpoint key and directory (`BULWARK_SERVICE_ACCOUNT__*`,
    /// `BULWARK_AUTH__SERVICE_CLIENTS__*`, `BULWARK_AUDIT__CHECKPOINT_*`).
    pub secret_env: Vec<(String, String)>,
    /// Extra `BULWARK_*` settings of this test (a fault to inject, say).
    pub extra_env: Vec<(String, String)>,
}

/// A running service.
#[derive(Debug)]
pub struct Service {
    kind: ServiceKind,
    grpc_port: u16,
    admin_port: u16,
    launch: ServiceLaunch,
    process: ManagedChild,
}

impl Service {
    /// Runs `bulwark-<svc> migrate` as the schema's owner (when the launch names one),
    /// as a deployment's migration step does, then starts the service.
    pub(crate) fn spawn(launch: ServiceLaunch, log: &Path) -> anyhow::Result<Self> {
        if let Some(owner_url) = &launch.owner_database_url {
            migrate(&launch, owner_url)?;
        }
        let process = spawn_process(&launch, log)?;
        Ok(Self {
            kind: launch.kind,
            grpc_port: launch.grpc_port,
            admin_port: launch.admin_port,
            launch,
            process,
        })
    }

    /// Stops the service the way an orchestrator does (SIGTERM, then a kill after
    /// `grace`); returns its exit status.
    pub fn stop(&mut self, grace: Duration) -> anyhow::Result<std::process::ExitStatus> {
        self.process.stop("TERM", grace)
    }

    /// Starts the service again with the same ports and settings (its log continues)
    /// and waits until it is ready.
    pub async fn restart(
        &mut self,
        http: &reqwest::Client,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let log = self.process.log().to_path_buf();
        self.process = spawn_process(&self.launch, &log)?;
        self.wait_ready(http, timeout).await
    }

    /// Which service this is.
    pub fn kind(&self) -> ServiceKind {
        self.kind
    }

    /// Which replica of its service this is (0 for the first).
    pub fn replica(&self) -> usize {
        self.launch.replica
    }

    /// `auth` for the first replica, `auth#1` for the second, and so on.
    pub fn label(&self) -> String {
        label(self.kind, self.launch.replica)
    }

    /// Sends a signal by name (`STOP`, `CONT`, ...) and returns at once.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        self.process.signal(signal)
    }

    /// Sends SIGTERM and returns at once (the service drains and exits on its own; see
    /// [`Service::exit_status`]).
    pub fn terminate(&self) -> anyhow::Result<()> {
        self.process.signal("TERM")
    }

    /// `Some(status)` once the process has exited.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.process.exited()
    }

    /// Kills the process at once (SIGKILL), as a crash or an OOM kill would.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.process.stop("KILL", Duration::from_secs(5))?;
        Ok(())
    }

    /// `http://127.0.0.1:<grpc port>`, for a tonic client.
    pub fn grpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// The gRPC port.
    pub fn grpc_port(&self) -> u16 {
        self.grpc_port
    }

    /// `http://127.0.0.1:<admin port><path>`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    /// The service's log (JSON lines).
    pub fn log(&self) -> &Path {
        self.process.log()
    }

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// `Err` with the exit status once the process has exited.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        match self.process.exited() {
            None => Ok(()),
            Some(status) => bail!(
                "{} exited ({status}); its log ends with:\n{}",
                self.label(),
                tail(self.log(), 30)
            ),
        }
    }

    /// Waits until `/healthz` and `/ready` answer 200; fails early if the process exits.
    pub(crate) async fn wait_ready(
        &mut self,
        http: &reqwest::Client,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let what = format!("{} ready", self.label());
        let urls = ["/healthz", "/ready"].map(|path| (path, self.admin_url(path)));
        self.process
            .wait_ready(&what, timeout, || ready_state(http, &urls))
            .await
    }
}

fn migrate(launch: &ServiceLaunch, owner_url: &str) -> anyhow::Result<()> {
    let name = launch.kind.name();
    let output = service_command(launch)?
        .arg("migrate")
        .env("BULWARK_DATABASE__OWNER_URL", owner_url)
        .output()
        .with_context(|| format!("running bulwark-{name} migrate"))?;
    if !output.status.success() {
        bail!(
            "bulwark-{name} migrate failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

fn spawn_process(launch: &ServiceLaunch, log: &Path) -> anyhow::Result<ManagedChild> {
    ManagedChild::spawn(
        &label(launch.kind, launch.replica),
        &mut service_command(launch)?,
        log,
    )
}

fn label(kind: ServiceKind, replica: usize) -> String {
    match replica {
        0 => kind.name().to_owned(),
        n => format!("{}#{n}", kind.name()),
    }
}

/// The service's binary with the launch's settings (and none of the shell's).
fn service_command(launch: &ServiceLaunch) -> anyhow::Result<Command> {
    let name = launch.kind.name();
    let mut command = Command::new(workspace_binary(&format!("bulwark-{name}"))?);
    // Settings of the developer's shell must not leak into the test's services.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("BULWARK_") {
            command.env_remove(key);
        }
    }
    command
        .env(
            "BULWARK_GRPC__LISTEN",
            format!("127.0.0.1:{}", launch.grpc_port),
        )
        .env(
            "BULWARK_HTTP__LISTEN",
            format!("127.0.0.1:{}", launch.admin_port),
        )
        .env("BULWARK_DATABASE__URL", &launch.database_url)
        .env("BULWARK_DATABASE__SCHEMA", name)
        .env("BULWARK_TELEMETRY__LOG_FORMAT", "json")
        .env("BULWARK_TELEMETRY__LOG_LEVEL", "info");
    if let Some(url) = &launch.redis_url {
        command.env("BULWARK_REDIS__URL", url);
    }
    if launch.kind == ServiceKind::Ratelimit {
        command.env(
            "BULWARK_RATELIMIT__CONFIG_PATH",
            workspace_root().join("services/ratelimit/limits.yaml"),
        );
    }
    // Audit's own limits (VerifyChain per caller), as every deployment sets them.
    if launch.kind == ServiceKind::Audit {
        command.env(
            "BULWARK_AUDIT__LIMITS_PATH",
            workspace_root().join("services/audit/limits.yaml"),
        );
    }
    for (kind, url) in &launch.clients {
        command.env(
            format!("BULWARK_CLIENTS__{}", kind.name().to_uppercase()),
            url,
        );
    }
    // The test's own settings come last, so a test can replace a secret.
    for (key, value) in launch
        .mesh_env
        .iter()
        .chain(&launch.secret_env)
        .chain(&launch.extra_env)
    {
        command.env(key, value);
    }
    Ok(command)
}

/// `Ok` once every `(path, url)` answers 200.
async fn ready_state(http: &reqwest::Client, urls: &[(&str, String)]) -> Result<(), String> {
    for (path, url) in urls {
        let response = http
            .get(url)
            .send()
            .await
            .map_err(|err| format!("GET {path}: {err}"))?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            let body = response.text().await.unwrap_or_default();
            return Err(format!("GET {path} answered {status}: {body}"));
        }
    }
    Ok(())
}
