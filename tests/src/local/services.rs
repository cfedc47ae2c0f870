//! The services' replicas: their settings, secrets and migrations, started replica by
//! replica as a deployment rolls out, and restarted only when their binary, a secret or
//! their settings changed since they started.

use std::time::SystemTime;

use sha2::Digest as _;

use super::Local;
use super::settings::{replica_label, replica_name};
use super::ui::{failure, failure_with_log, info, step};
use crate::service::ServiceKind;

/// The database connections a service's replicas share (at least 2 each), so that every
/// replica fits the cluster's 100 connections.
const SERVICE_DB_CONNECTIONS: usize = 10;

impl Local {
    /// Replica `replica`'s settings, as `BULWARK_*` variables.
    pub(super) fn service_env(
        &self,
        service: ServiceKind,
        replica: usize,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let s = &self.settings;
        let root = s.root.display();
        // An override from the environment, as `${NAME:-default}` reads it.
        let setting = |name: &str, default: String| {
            std::env::var(name)
                .ok()
                .filter(|value| !value.is_empty())
                .unwrap_or(default)
        };
        let mut env: Vec<(String, String)> = vec![
            (
                "BULWARK_GRPC__LISTEN".into(),
                format!("127.0.0.1:{}", s.grpc_port(service, replica)),
            ),
            (
                "BULWARK_HTTP__LISTEN".into(),
                format!("127.0.0.1:{}", s.admin_port(service, replica)),
            ),
            (
                "BULWARK_DATABASE__URL".into(),
                self.cluster.url(service, false)?,
            ),
            ("BULWARK_DATABASE__SCHEMA".into(), service.name().into()),
            (
                "BULWARK_REDIS__URL".into(),
                format!("redis://127.0.0.1:{}", s.redis_port),
            ),
            ("BULWARK_TELEMETRY__LOG_FORMAT".into(), "json".into()),
            (
                "BULWARK_TELEMETRY__LOG_LEVEL".into(),
                setting("BULWARK_LOG_LEVEL", "info".into()),
            ),
            ("BULWARK_ADMIN_EMAIL".into(), s.admin_email.clone()),
            ("BULWARK_ADMIN_PASSWORD".into(), s.admin_password.clone()),
            (
                "BULWARK_RATELIMIT__CONFIG_PATH".into(),
                setting(
                    "BULWARK_RATELIMIT__CONFIG_PATH",
                    format!("{root}/services/ratelimit/limits.yaml"),
                ),
            ),
        ];
        if s.replicas > 1 && service != ServiceKind::Ratelimit {
            let share = (SERVICE_DB_CONNECTIONS / s.replicas).max(2);
            env.push((
                "BULWARK_DATABASE__MAX_CONNECTIONS".into(),
                setting("BULWARK_DATABASE__MAX_CONNECTIONS", share.to_string()),
            ));
        }
        if let Some(endpoint) = &s.otlp_endpoint {
            env.push(("BULWARK_TELEMETRY__OTLP_ENDPOINT".into(), endpoint.clone()));
        }
        // Every replica of each service: a call attempt goes to the next one.
        for other in ServiceKind::ALL {
            let urls: Vec<String> = (0..s.replicas)
                .map(|i| format!("http://127.0.0.1:{}", s.grpc_port(other, i)))
                .collect();
            env.push((
                format!("BULWARK_CLIENTS__{}", other.name().to_uppercase()),
                urls.join(","),
            ));
        }
        // Its own service account (the rate-limit service calls nobody and has none);
        // Auth also checks every built-in client's secret.
        if let Some(client_id) = service.client_id() {
            env.push((
                "BULWARK_SERVICE_ACCOUNT__CLIENT_ID".into(),
                client_id.into(),
            ));
            env.push((
                "BULWARK_SERVICE_ACCOUNT__CLIENT_SECRET".into(),
                self.client_secret(service)?,
            ));
        }
        if service == ServiceKind::Auth {
            for client in ServiceKind::ALL {
                env.push((
                    format!(
                        "BULWARK_AUTH__SERVICE_CLIENTS__{}",
                        client.name().to_uppercase()
                    ),
                    self.client_secret(client)?,
                ));
            }
            // The key-encryption key that seals Auth's signing keys in the database.
            env.push((
                "BULWARK_AUTH__KEY_ENCRYPTION__KEYS__LOCAL".into(),
                self.secrets.get("kek-local", 32)?,
            ));
            // Mail goes to the mesh's SMTP server, links point at the edge (unless set).
            env.push((
                "BULWARK_AUTH__SMTP_URL".into(),
                setting(
                    "BULWARK_AUTH__SMTP_URL",
                    format!("smtp://127.0.0.1:{}", s.mail_port),
                ),
            ));
            env.push((
                "BULWARK_AUTH__PUBLIC_BASE_URL".into(),
                setting(
                    "BULWARK_AUTH__PUBLIC_BASE_URL",
                    format!("http://127.0.0.1:{}", s.edge_port),
                ),
            ));
        }
        if service == ServiceKind::Audit {
            // Its own limits (VerifyChain per caller), counted in the same Redis.
            env.push((
                "BULWARK_AUDIT__CHECKPOINT_KEY".into(),
                self.secrets.get("audit-checkpoint-key", 32)?,
            ));
            env.push((
                "BULWARK_AUDIT__CHECKPOINT_DIR".into(),
                s.checkpoints().display().to_string(),
            ));
            env.push((
                "BULWARK_AUDIT__LIMITS_PATH".into(),
                setting(
                    "BULWARK_AUDIT__LIMITS_PATH",
                    format!("{root}/services/audit/limits.yaml"),
                ),
            ));
        }
        Ok(env)
    }

    fn client_secret(&self, service: ServiceKind) -> anyhow::Result<String> {
        self.secrets.get(&format!("client-{}", service.name()), 32)
    }

    /// The secret files whose values a service's environment holds.
    fn secret_names(service: ServiceKind) -> Vec<String> {
        let mut names: Vec<String> = match service {
            ServiceKind::Auth => ServiceKind::ALL
                .iter()
                .map(|s| format!("client-{}", s.name()))
                .chain(["kek-local".to_owned()])
                .collect(),
            ServiceKind::Audit => vec!["client-audit".into(), "audit-checkpoint-key".into()],
            ServiceKind::Ratelimit => Vec::new(),
            other => vec![format!("client-{}", other.name())],
        };
        if service != ServiceKind::Ratelimit {
            names.push(format!("pg-{}", service.name()));
        }
        names
    }

    /// Makes the missing service-account secrets, the key-encryption key and the
    /// checkpoint key now, so that a bad one stops `up` before anything starts.
    pub(super) fn ensure_secrets(&self) -> anyhow::Result<()> {
        let s = &self.settings;
        let rel = |name: &str| s.rel(&self.secrets.path(name));
        for service in ServiceKind::ALL {
            let name = format!("client-{}", service.name());
            self.secrets.key(
                &name,
                &rel(&name),
                "delete it and run again to make a new one",
            )?;
        }
        self.secrets.key(
            "kek-local",
            &rel("kek-local"),
            "it seals Auth's signing keys, so restore it (a new one cannot open them)",
        )?;
        let names: Vec<&str> = ServiceKind::ALL.iter().map(|s| s.name()).collect();
        info(&format!(
            "service-account secrets in {}/client-{{{}}} (delete one and run up again to rotate it)",
            s.rel(&s.secrets()),
            names.join(",")
        ));
        self.secrets.key(
            "audit-checkpoint-key",
            &rel("audit-checkpoint-key"),
            "delete it and run again to make a new one",
        )?;
        info(&format!(
            "audit checkpoint key in {}, checkpoint files in {}",
            rel("audit-checkpoint-key"),
            s.rel(&s.checkpoints())
        ));
        Ok(())
    }

    /// Why running replica `name` needs a restart, if it does: a rebuilt binary, a secret
    /// made since, or other settings (the replica count changes every client list).
    fn restart_reason(
        &self,
        service: ServiceKind,
        name: &str,
        env: &[(String, String)],
    ) -> Option<&'static str> {
        let modified = |path: &std::path::Path| std::fs::metadata(path).ok()?.modified().ok();
        let started = modified(&self.daemons.file(name, "pid")).unwrap_or(SystemTime::UNIX_EPOCH);
        let binary = self.settings.binary(&format!("bulwark-{}", service.name()));
        let recorded = std::fs::read_to_string(self.daemons.file(name, "settings")).ok();
        if modified(&binary).is_some_and(|built| built > started) {
            Some("binary rebuilt since start")
        } else if self
            .secrets
            .newest(&Self::secret_names(service))
            .is_some_and(|made| made > started)
        {
            Some("a secret changed since start")
        } else if recorded.as_deref().is_none_or(|r| r.trim().is_empty()) {
            Some("started without a record of its settings")
        } else if recorded.as_deref().map(str::trim) != Some(settings_digest(env).as_str()) {
            Some("settings changed since start")
        } else {
            None
        }
    }

    /// The pid names of `service`'s replicas that may be running: those of the recorded
    /// count, and any other with a pid file (left by an interrupted `up`).
    pub(super) fn replica_names(&self, service: ServiceKind) -> Vec<String> {
        let mut names: Vec<String> = (0..self.recorded_replicas())
            .map(|i| replica_name(service, i))
            .collect();
        let prefix = format!("{}-", service.name());
        let mut extra: Vec<String> = std::fs::read_dir(self.settings.run())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let file = entry.file_name().to_string_lossy().into_owned();
                let name = file.strip_suffix(".pid")?;
                let index = name.strip_prefix(&prefix)?;
                index.parse::<usize>().ok().map(|_| name.to_owned())
            })
            .filter(|name| !names.contains(name))
            .collect();
        extra.sort();
        names.extend(extra);
        names
    }

    /// The replica count the last `up` recorded (1 when there is none, as after `down`).
    pub(super) fn recorded_replicas(&self) -> usize {
        std::fs::read_to_string(self.settings.run().join("replicas"))
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .filter(|n| (1..=super::settings::MAX_REPLICAS).contains(n))
            .unwrap_or(1)
    }

    /// Starts every service's replicas (or leaves running those that are current).
    pub(super) async fn start_services(&self) -> anyhow::Result<()> {
        let s = &self.settings;
        let names: Vec<&str> = ServiceKind::EVERY.iter().map(|k| k.name()).collect();
        step(&format!(
            "Starting the services ({}), {} replica(s) each ...",
            names.join(" "),
            s.replicas
        ));
        self.ensure_secrets()?;
        for service in ServiceKind::EVERY {
            let binary = s.binary(&format!("bulwark-{}", service.name()));
            if !binary.is_file() {
                return Err(failure(format!(
                    "{} is missing after the build",
                    binary.display()
                )));
            }
        }
        self.stop_extra_replicas();
        std::fs::write(s.run().join("replicas"), format!("{}\n", s.replicas))?;
        // Replica by replica, as a deployment rolls out: replica 0 migrates and does what
        // a first start does (Auth's signing key, the bootstrap admin) before another
        // starts, and a replica restarted is ready before the next one stops.
        for replica in 0..s.replicas {
            self.start_replicas(replica).await?;
        }
        Ok(())
    }

    /// Stops the replicas past the count `up` was asked for.
    fn stop_extra_replicas(&self) {
        let extra: Vec<String> = ServiceKind::EVERY
            .into_iter()
            .flat_map(|service| self.replica_names(service))
            .filter(|name| {
                super::settings::parse_replica_name(name)
                    .is_some_and(|(_, i)| i >= self.settings.replicas)
            })
            .collect();
        if extra.is_empty() {
            return;
        }
        info(&format!(
            "the mesh now runs {} replica(s) of each service: stopping {}",
            self.settings.replicas,
            extra.join(" ")
        ));
        self.daemons.stop_all(&extra);
        for name in &extra {
            let _ = std::fs::remove_file(self.daemons.file(name, "settings"));
            let _ = std::fs::remove_file(self.daemons.file(name, "cmd"));
        }
    }

    /// Starts (or restarts, or leaves running) replica `replica` of every service and
    /// waits until each is ready. Replica 0 runs the service's migrations first.
    async fn start_replicas(&self, replica: usize) -> anyhow::Result<()> {
        let s = &self.settings;
        let mut restart = Vec::new();
        let mut start = Vec::new();
        for service in ServiceKind::EVERY {
            let name = replica_name(service, replica);
            let label = replica_label(service, replica);
            if let Some(pid) = self.daemons.alive(&name) {
                let env = self.service_env(service, replica)?;
                match self.restart_reason(service, &name, &env) {
                    None => {
                        info(&format!("{label}: already running (pid {pid})"));
                        continue;
                    }
                    Some(reason) => {
                        info(&format!("{label}: {reason}, restarting"));
                        restart.push(name);
                    }
                }
            }
            start.push(service);
        }
        self.daemons.stop_all(&restart);
        for &service in &start {
            let name = replica_name(service, replica);
            let label = replica_label(service, replica);
            let binary = s.binary(&format!("bulwark-{}", service.name()));
            let (grpc, admin) = (
                s.grpc_port(service, replica),
                s.admin_port(service, replica),
            );
            if port_busy(grpc) || port_busy(admin) {
                return Err(failure(format!(
                    "{label}: port {grpc} or {admin} is taken by another program"
                )));
            }
            let env = self.service_env(service, replica)?;
            if service != ServiceKind::Ratelimit && replica == 0 {
                self.migrate(service, &binary, &env)?;
            }
            let mut command = std::process::Command::new(&binary);
            command.envs(env.iter().map(|(k, v)| (k, v)));
            let pid = self.daemons.start(
                &name,
                &s.log(&name),
                &binary.display().to_string(),
                &command,
            )?;
            std::fs::write(self.daemons.file(&name, "settings"), settings_digest(&env))?;
            info(&format!(
                "{label}: started (pid {pid}), gRPC 127.0.0.1:{grpc}, admin 127.0.0.1:{admin}"
            ));
        }
        for service in ServiceKind::EVERY {
            let name = replica_name(service, replica);
            let label = replica_label(service, replica);
            let log = s.log(&name);
            self.wait_for(&label, &log, || async {
                self.service_ready(service, replica).await || self.daemons.alive(&name).is_none()
            })
            .await?;
            if self.daemons.alive(&name).is_none() {
                return Err(failure_with_log(
                    format!("{label} exited during start"),
                    &log,
                ));
            }
        }
        Ok(())
    }

    /// `bulwark-<svc> migrate` as the schema's owner (the migrations, then the runtime
    /// role's grants); the service itself never sees that URL.
    fn migrate(
        &self,
        service: ServiceKind,
        binary: &std::path::Path,
        env: &[(String, String)],
    ) -> anyhow::Result<()> {
        let svc = service.name();
        let log = self.settings.logs().join(format!("{svc}-migrate.log"));
        let output = std::process::Command::new(binary)
            .arg("migrate")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env(
                "BULWARK_DATABASE__OWNER_URL",
                self.cluster.url(service, true)?,
            )
            .output()?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::write(&log, &text)?;
        if !output.status.success() {
            return Err(failure_with_log(format!("{svc}: migrate failed"), &log));
        }
        let last = text.lines().last().unwrap_or_default();
        let prefix = format!("bulwark-{svc}: ");
        info(&format!(
            "{svc}: {}",
            last.strip_prefix(&prefix).unwrap_or(last)
        ));
        Ok(())
    }

    /// The replica answers `/ready` with 200.
    pub(super) async fn service_ready(&self, service: ServiceKind, replica: usize) -> bool {
        self.http_status(self.settings.admin_port(service, replica), "/ready")
            .await
            == Some(200)
    }
}

/// A digest of a replica's settings (not the settings: they hold secrets), kept beside
/// its pid to tell whether a running replica has today's settings.
fn settings_digest(env: &[(String, String)]) -> String {
    let mut hasher = sha2::Sha256::new();
    for (name, value) in env {
        hasher.update(format!("{name}={value}\n"));
    }
    crate::accounts::hex(&hasher.finalize())
}

/// Something accepts connections on the loopback port.
pub(super) fn port_busy(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], port).into(),
        std::time::Duration::from_millis(500),
    )
    .is_ok()
}
