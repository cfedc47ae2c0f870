//! The mesh's infrastructure: PostgreSQL, Redis, the SMTP server, the API descriptor,
//! Envoy and Prometheus, each started once and left running (or reloaded, or restarted
//! when its configuration changed) by every later `up`.

use std::time::SystemTime;

use super::Local;
use super::services::port_busy;
use super::ui::{failure, failure_with_log, info, step};
use crate::envoy::{EdgeTemplate, JWKS_REFRESHES, admin_stat, render_edge};
use crate::prometheus::{admin_placeholder, prometheus_binary, promtool_binary, render_config};
use crate::service::ServiceKind;
use crate::wait::poll_until;

impl Local {
    pub(super) async fn start_postgres(&self) -> anyhow::Result<()> {
        let s = &self.settings;
        step(&format!(
            "Starting PostgreSQL 15 on 127.0.0.1:{} ...",
            s.pg_port
        ));
        let cluster = &self.cluster;
        cluster.init_once(&s.state)?;
        let log = cluster.log();
        let link = s.log("postgres");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&log, &link)?;
        if cluster.running() {
            let pid = cluster.pid().map_or("?".to_owned(), |p| p.to_string());
            info(&format!("already running (pid {pid})"));
        } else {
            if port_busy(s.pg_port) {
                return Err(cluster.port_taken());
            }
            cluster.start(s.wait.as_secs())?;
        }
        self.wait_for("postgres", &log, || async { cluster.ready() })
            .await?;
        cluster.provision(&log)?;
        info(
            "database bulwark: schema <svc> owned by <svc>_owner (migrations), services run as <svc>_svc (grants only)",
        );
        Ok(())
    }

    pub(super) async fn start_redis(&self) -> anyhow::Result<()> {
        let s = &self.settings;
        step(&format!("Starting Redis on 127.0.0.1:{} ...", s.redis_port));
        let dir = s.state.join("redis");
        let log = s.log("redis");
        if let Some(pid) = self.daemons.alive("redis") {
            info(&format!("already running (pid {pid})"));
        } else {
            if port_busy(s.redis_port) {
                return Err(failure(format!(
                    "port {} is taken by another program; set BULWARK_REDIS_PORT to a free port",
                    s.redis_port
                )));
            }
            let server = crate::redis::server_command(&dir, s.redis_port)?;
            self.daemons.start("redis", &log, "redis-server", &server)?;
        }
        let port = s.redis_port;
        self.wait_for(
            "redis",
            &log,
            || async move { crate::redis::ping(port).is_ok() },
        )
        .await
    }

    pub(super) async fn start_mail(&self) -> anyhow::Result<()> {
        let s = &self.settings;
        let maildir = s.maildir();
        step(&format!(
            "Starting the SMTP server (aiosmtpd) on 127.0.0.1:{}, mail kept in {}/new/ ...",
            s.mail_port,
            s.rel(&maildir)
        ));
        let log = s.log("mail");
        if let Some(pid) = self.daemons.alive("mail") {
            info(&format!("already running (pid {pid})"));
        } else {
            if port_busy(s.mail_port) {
                return Err(failure(format!(
                    "port {} is taken by another program; set BULWARK_MAIL_PORT to a free port",
                    s.mail_port
                )));
            }
            let python = s.venv.join("bin/python");
            let server = crate::mail::server_command(&python, &maildir, s.mail_port)?;
            self.daemons
                .start("mail", &log, crate::mail::MAILBOX_HANDLER, &server)?;
        }
        let port = s.mail_port;
        self.wait_for("mail", &log, || async move {
            crate::mail::greeting(port).is_ok()
        })
        .await
    }

    /// The API descriptor Envoy's transcoder reads.
    pub(super) fn write_descriptor(&self) -> anyhow::Result<()> {
        let s = &self.settings;
        step("Writing the API descriptor for Envoy's transcoder ...");
        let binary = s.binary("bulwark-descriptor");
        if !binary.is_file() {
            return Err(failure(format!(
                "{} is missing after the build",
                binary.display()
            )));
        }
        let out = s.state.join("envoy/bulwark.pb");
        let next = s.state.join("envoy/bulwark.next.pb");
        let log = s.log("descriptor");
        let output = std::process::Command::new(&binary).arg(&next).output()?;
        std::fs::write(&log, [output.stdout, output.stderr].concat())?;
        if !output.status.success() {
            return Err(failure_with_log("bulwark-descriptor failed", &log));
        }
        // Replaced only when it changed: a newer descriptor restarts Envoy.
        let written = std::fs::read(&next)?;
        if std::fs::read(&out).ok().as_ref() == Some(&written) {
            std::fs::remove_file(&next)?;
            info(&format!(
                "{} ({} bytes, unchanged)",
                s.rel(&out),
                written.len()
            ));
        } else {
            std::fs::rename(&next, &out)?;
            info(&format!("{} ({} bytes)", s.rel(&out), written.len()));
        }
        Ok(())
    }

    /// `envoy/edge.yaml` for this mesh: one endpoint per replica of each service.
    fn render_envoy(&self) -> anyhow::Result<String> {
        let s = &self.settings;
        let timeout = &s.ratelimit_timeout_ms;
        let timeout_ms = timeout
            .parse::<u32>()
            .ok()
            .filter(|ms| (1..=99_999).contains(ms))
            .ok_or_else(|| {
                failure(format!(
                    "BULWARK_RATELIMIT_TIMEOUT_MS='{timeout}' is not a number of milliseconds (1-99999)"
                ))
            })?;
        let sampling = match &s.otlp_endpoint {
            None => None,
            Some(_) => {
                let value = s.trace_sampling.clone();
                let ok = value
                    .parse::<f64>()
                    .is_ok_and(|p| (0.0..=100.0).contains(&p))
                    && value.bytes().all(|b| b.is_ascii_digit() || b == b'.');
                if !ok {
                    return Err(failure(format!(
                        "BULWARK_TRACE_SAMPLING='{value}' is not a percentage between 0 and 100"
                    )));
                }
                Some(value)
            }
        };
        let wasm = s.wasm();
        if !wasm.is_file() {
            return Err(failure(format!(
                "the gateway filter {} is not built (run up without --no-build)",
                wasm.display()
            )));
        }
        let upstreams: Vec<(ServiceKind, Vec<u16>)> = ServiceKind::EVERY
            .into_iter()
            .map(|kind| {
                (
                    kind,
                    (0..s.replicas).map(|i| s.grpc_port(kind, i)).collect(),
                )
            })
            .collect();
        let otlp_error = |endpoint: &str| {
            failure(format!(
                "BULWARK_OTLP_ENDPOINT='{endpoint}' is not http://host:port (an OTLP/gRPC collector without TLS, e.g. http://127.0.0.1:4317)"
            ))
        };
        render_edge(&EdgeTemplate {
            port: s.edge_port,
            admin_port: s.edge_admin_port,
            descriptor: &s.state.join("envoy/bulwark.pb"),
            cors_origin_regex: &s.cors_origin_regex,
            wasm: &wasm,
            otlp: s.otlp_endpoint.as_deref(),
            trace_sampling: sampling.as_deref(),
            ratelimit_timeout_ms: timeout_ms,
            upstreams: &upstreams,
        })
        .map_err(|err| match &s.otlp_endpoint {
            Some(endpoint) if format!("{err:#}").contains("OTLP endpoint") => otlp_error(endpoint),
            _ => err,
        })
    }

    /// Checks the OTLP endpoint and the edge's other settings before anything starts.
    pub(super) fn check_edge_settings(&self) -> anyhow::Result<()> {
        if let Some(endpoint) = &self.settings.otlp_endpoint {
            crate::envoy::tracing_values(Some(endpoint)).map_err(|_| {
                failure(format!(
                    "BULWARK_OTLP_ENDPOINT='{endpoint}' is not http://host:port (an OTLP/gRPC collector without TLS, e.g. http://127.0.0.1:4317)"
                ))
            })?;
        }
        Ok(())
    }

    pub(super) async fn start_envoy(&self) -> anyhow::Result<()> {
        let s = &self.settings;
        step(&format!(
            "Starting Envoy on 127.0.0.1:{} (admin 127.0.0.1:{}) ...",
            s.edge_port, s.edge_admin_port
        ));
        // Envoy picks its parser by the file's extension.
        let config = s.state.join("envoy/edge.yaml");
        let next = s.state.join("envoy/edge.next.yaml");
        std::fs::write(&next, self.render_envoy()?)?;
        let envoy = s.venv.join("bin/envoy");
        let validate_log = s.log("envoy-validate");
        let output = std::process::Command::new(&envoy)
            .args(["--mode", "validate", "-c"])
            .arg(&next)
            .output()?;
        std::fs::write(&validate_log, [output.stdout, output.stderr].concat())?;
        if !output.status.success() {
            return Err(failure_with_log(
                format!("Envoy rejected the rendered config {}", s.rel(&next)),
                &validate_log,
            ));
        }
        let log = s.log("envoy");
        if let Some(pid) = self.daemons.alive("envoy") {
            let started = modified(&self.daemons.file("envoy", "pid"));
            let same = std::fs::read(&next).ok() == std::fs::read(&config).ok();
            let newer = |path: &std::path::Path| modified(path) > started;
            if same && !newer(&s.state.join("envoy/bulwark.pb")) && !newer(&s.wasm()) {
                info(&format!("already running (pid {pid})"));
                std::fs::remove_file(&next)?;
                return self.wait_envoy(&log).await;
            }
            info("config or descriptor changed, restarting");
            self.daemons.stop("envoy");
        }
        std::fs::rename(&next, &config)?;
        if port_busy(s.edge_port) {
            return Err(failure(format!(
                "port {} is taken by another program; set BULWARK_EDGE_PORT to a free port",
                s.edge_port
            )));
        }
        let mut command = std::process::Command::new(&envoy);
        command
            .arg("-c")
            .arg(&config)
            .args(["--disable-hot-restart", "-l", "info"]);
        self.daemons
            .start("envoy", &log, &config.display().to_string(), &command)?;
        self.wait_envoy(&log).await
    }

    /// Envoy is ready and its health checks find every replica serving.
    async fn wait_envoy(&self, log: &std::path::Path) -> anyhow::Result<()> {
        self.wait_for("envoy", log, || self.envoy_ready()).await?;
        let hosts = poll_until(
            "every replica healthy in Envoy",
            self.settings.wait,
            || async {
                match self.envoy_hosts().await {
                    (line, true) => Ok(line),
                    (line, false) => Err(line),
                }
            },
        )
        .await;
        match hosts {
            Ok(line) => info(&line),
            Err(_) => {
                let (line, _) = self.envoy_hosts().await;
                return Err(failure_with_log(
                    format!(
                        "Envoy's health checks did not find every replica serving within {}s: {line}",
                        self.settings.wait.as_secs()
                    ),
                    log,
                ));
            }
        }
        // Until then the edge would refuse every token as signed by an unknown key.
        let admin = self.settings.edge_admin_port;
        self.wait_for(
            "the gateway filter's first JWKS fetch",
            log,
            || async move {
                admin_stat(&self.http, admin, JWKS_REFRESHES)
                    .await
                    .is_ok_and(|fetched| fetched > 0)
            },
        )
        .await?;
        info("gateway filter: Auth's signing keys loaded");
        Ok(())
    }

    /// The configuration Prometheus scrapes this mesh with.
    fn render_prometheus(&self) -> anyhow::Result<String> {
        let s = &self.settings;
        let template_path = s.root.join(crate::prometheus::CONFIG_TEMPLATE);
        let template = std::fs::read_to_string(&template_path)?;
        let mut values = vec![
            ("SCRAPE_INTERVAL", s.scrape_interval.clone()),
            (
                "RULES_DIR",
                s.root
                    .join(crate::prometheus::RULES_DIR)
                    .display()
                    .to_string(),
            ),
            ("ENVOY_ADMIN", format!("127.0.0.1:{}", s.edge_admin_port)),
        ];
        for kind in ServiceKind::EVERY {
            // Between the quotes of the target list: the replicas joined by `", "`.
            let targets: Vec<String> = (0..s.replicas)
                .map(|i| format!("127.0.0.1:{}", s.admin_port(kind, i)))
                .collect();
            values.push((admin_placeholder(kind), targets.join("\", \"")));
        }
        render_config(&template, &values)
    }

    pub(super) async fn start_prometheus(&self) -> anyhow::Result<()> {
        let s = &self.settings;
        step(&format!(
            "Starting Prometheus on http://127.0.0.1:{} (scraping every {}) ...",
            s.prometheus_port, s.scrape_interval
        ));
        let dir = s.prometheus_dir();
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, self.render_prometheus()?)?;
        let check_log = s.log("prometheus-check");
        let output = std::process::Command::new(promtool_binary()?)
            .args(["check", "config"])
            .arg(&config)
            .output()?;
        std::fs::write(&check_log, [output.stdout, output.stderr].concat())?;
        if !output.status.success() {
            return Err(failure_with_log(
                format!(
                    "promtool rejected the rendered configuration {} or the rules it loads",
                    s.rel(&config)
                ),
                &check_log,
            ));
        }
        let log = s.log("prometheus");
        if let Some(pid) = self.daemons.alive("prometheus") {
            // SIGHUP makes Prometheus read its configuration and rule files again.
            super::daemons::signal(pid, "HUP");
            info(&format!(
                "already running (pid {pid}); configuration and rules reloaded"
            ));
        } else {
            if port_busy(s.prometheus_port) {
                return Err(failure(format!(
                    "port {} is taken by another program; set BULWARK_PROMETHEUS_PORT to a free port",
                    s.prometheus_port
                )));
            }
            let mut command = std::process::Command::new(prometheus_binary()?);
            command
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg("--storage.tsdb.retention.time=7d")
                .arg(format!(
                    "--web.listen-address=127.0.0.1:{}",
                    s.prometheus_port
                ))
                .arg("--log.level=warn");
            self.daemons
                .start("prometheus", &log, &config.display().to_string(), &command)?;
        }
        self.wait_for("prometheus", &log, || self.prometheus_ready())
            .await?;
        info("rules: observability/prometheus/rules.yml and slo.yml (SLO burn-rate alerts)");
        Ok(())
    }
}

fn modified(path: &std::path::Path) -> SystemTime {
    std::fs::metadata(path)
        .and_then(|meta| meta.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}
