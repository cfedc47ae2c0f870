//! The local mesh behind `deploy/local/mesh`: PostgreSQL, Redis, an SMTP server, N
//! replicas of each service, the Envoy edge and Prometheus as long-lived processes with
//! their state in `<checkout>/.bulwark/`, which outlive the command (`up`) until `down`.
//! The shell script installs the tools and builds; this runs everything else
//! (`bulwark-mesh up|down|status|logs|test`). The README's "Local mesh" and the script's
//! header document the commands and settings.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cluster;
mod components;
mod daemons;
mod report;
mod secrets;
mod services;
mod settings;
mod ui;

use std::future::Future;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use cluster::Cluster;
use daemons::Daemons;
use secrets::Secrets;
use settings::Settings;
use ui::{failure, failure_with_log, info, plan_steps, step, warn};

use crate::service::ServiceKind;
use crate::wait::poll_until;

/// How long one HTTP probe of a component may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// The steps each command takes after the shell's own (installing, building);
/// `deploy/local/mesh` counts them too (`MESH_UP_STEPS`, `MESH_TEST_STEPS`).
const UP_STEPS: usize = 7;
const TEST_STEPS: usize = 3;

/// One local mesh: its settings and the handles on its state.
#[derive(Debug)]
pub(crate) struct Local {
    settings: Settings,
    daemons: Daemons,
    secrets: Secrets,
    cluster: Cluster,
    http: reqwest::Client,
}

/// Runs the mesh command `args` (`up --replicas 2`); the shell part has printed
/// `steps_done` numbered steps already. Failures are printed; the exit code says how it
/// ended.
pub async fn run(args: &[String], steps_done: usize) -> ExitCode {
    let root = crate::workspace::workspace_root();
    let result = match Settings::from_env(&root) {
        Ok(settings) => dispatch(settings, args, steps_done).await,
        Err(err) => Err(err),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            ui::report_failure(&err, &root);
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(
    settings: Settings,
    args: &[String],
    steps_done: usize,
) -> anyhow::Result<ExitCode> {
    let (command, rest) = match args.split_first() {
        Some((command, rest)) => (command.as_str(), rest),
        None => ("up", &[][..]),
    };
    let mut local = Local::new(settings)?;
    match command {
        "up" => {
            plan_steps(steps_done, UP_STEPS);
            local.up(rest).await.map(|()| ExitCode::SUCCESS)
        }
        "down" => local.down().map(|()| ExitCode::SUCCESS),
        "status" => Ok(local.status().await),
        "logs" => local.logs(rest).map(|()| ExitCode::SUCCESS),
        "test" => {
            plan_steps(steps_done, TEST_STEPS);
            local.test(rest).await
        }
        other => Err(failure(format!(
            "unknown command '{other}' (use: up [--no-build] [--replicas N], down, status, logs [component], test)"
        ))),
    }
}

impl Local {
    fn new(settings: Settings) -> anyhow::Result<Self> {
        settings.make_dirs()?;
        Ok(Self {
            daemons: Daemons::new(&settings.run()),
            secrets: Secrets::new(&settings.secrets()),
            cluster: Cluster::new(&settings),
            http: crate::net::http_client().timeout(PROBE_TIMEOUT).build()?,
            settings,
        })
    }

    /// `up [--no-build] [--replicas N]` (the shell part has built, unless `--no-build`).
    async fn up(&mut self, args: &[String]) -> anyhow::Result<()> {
        // Without --replicas, as many as the running mesh has (1 after `down`).
        self.settings.replicas = self.recorded_replicas();
        let mut built = true;
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--no-build" => built = false,
                "--replicas" => {
                    let value = args.next().ok_or_else(|| {
                        failure("--replicas needs a number (e.g. up --replicas 2)")
                    })?;
                    self.settings.set_replicas(value)?;
                }
                other => match other.strip_prefix("--replicas=") {
                    Some(value) => self.settings.set_replicas(value)?,
                    None => {
                        return Err(failure(format!(
                            "unknown option '{other}' for up (known: --no-build, --replicas N)"
                        )));
                    }
                },
            }
        }
        self.settings.check_ports()?;
        self.check_edge_settings()?;
        if !built {
            info(&format!(
                "not building (--no-build): using the binaries in {}",
                self.settings.rel(&self.settings.target_dir)
            ));
        }
        self.start_postgres().await?;
        self.start_redis().await?;
        self.start_mail().await?;
        self.write_descriptor()?;
        self.start_services().await?;
        self.start_envoy().await?;
        self.start_prometheus().await?;
        if !self.print_table().await {
            return Err(failure(
                "some components are not ready (see the table and their logs)",
            ));
        }
        if !self.prometheus_report(true).await {
            warn(
                "Prometheus reports targets down or alerts firing (above); see deploy/local/mesh status",
            );
        }
        self.print_summary();
        Ok(())
    }

    fn print_summary(&self) {
        let s = &self.settings;
        println!();
        println!(
            "Bulwark is up: http://127.0.0.1:{} (REST and gRPC). Stop it with: deploy/local/mesh down",
            s.edge_port
        );
        println!(
            "Prometheus: http://127.0.0.1:{} (targets, rules and SLO alerts; dashboards for Grafana in observability/grafana/)",
            s.prometheus_port
        );
        match &s.otlp_endpoint {
            Some(endpoint) => println!(
                "Traces: the edge ({} % sampled) and the services export to {endpoint}",
                s.trace_sampling
            ),
            None => println!(
                "Traces: not exported (set BULWARK_OTLP_ENDPOINT=http://host:4317 and run up again; README, \"Observability\")"
            ),
        }
        println!(
            "Bootstrap admin: {} / {} (set BULWARK_ADMIN_EMAIL / BULWARK_ADMIN_PASSWORD before the first start to choose them)",
            s.admin_email, s.admin_password
        );
        println!(
            "Audit checkpoints: {}/ (copy them off this machine; README, \"Audit checkpoints\")",
            s.rel(&s.checkpoints())
        );
        println!(
            "Mail: smtp://127.0.0.1:{} keeps every message Auth sends as one file in {}/new/ (README, \"Mail\")",
            s.mail_port,
            s.rel(&s.maildir())
        );
    }

    /// Stops everything; the state stays for the next `up`.
    fn down(&self) -> anyhow::Result<()> {
        println!("Stopping Bulwark ...");
        self.daemons.stop("prometheus");
        self.daemons.stop("envoy");
        // Every replica, also past the recorded count (an `up` interrupted while scaling).
        let replicas: Vec<String> = ServiceKind::EVERY
            .into_iter()
            .flat_map(|service| self.replica_names(service))
            .collect();
        self.daemons.stop_all(&replicas);
        let _ = std::fs::remove_file(self.settings.run().join("replicas"));
        self.daemons.stop("mail");
        self.daemons.stop("redis");
        if self.cluster.stop()? {
            info("stopped postgres");
        }
        println!(
            "Stopped. State is kept in {}; the next 'up' reuses it.",
            self.settings.rel(&self.settings.state)
        );
        Ok(())
    }

    /// The table, the scrape targets that are down and the alerts that fire; fails when
    /// anything is unhealthy.
    async fn status(&mut self) -> ExitCode {
        self.settings.replicas = self.recorded_replicas();
        let table = self.print_table().await;
        let prometheus = self.prometheus_report(false).await;
        if table && prometheus {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }

    /// Shows the logs (follows them on a terminal): one component's or replica's
    /// (`auth-1`, or the table's `auth#1`), or all.
    fn logs(&self, args: &[String]) -> anyhow::Result<()> {
        use std::io::IsTerminal as _;
        use std::os::unix::process::CommandExt as _;
        let logs = self.settings.logs();
        let files: Vec<std::path::PathBuf> = match args.first() {
            Some(name) => {
                let file = self.settings.log(&name.replace('#', "-"));
                if !file.exists() {
                    let mut known: Vec<String> = log_files(&logs)
                        .iter()
                        .filter_map(|f| Some(f.file_stem()?.to_string_lossy().into_owned()))
                        .collect();
                    known.sort();
                    return Err(failure(format!(
                        "no log for '{name}'; known: {}",
                        known.join(" ")
                    )));
                }
                vec![file]
            }
            None => {
                let files = log_files(&logs);
                if files.is_empty() {
                    return Err(failure(format!(
                        "no logs yet in {}; run: deploy/local/mesh up",
                        self.settings.rel(&logs)
                    )));
                }
                files
            }
        };
        let mut tail = std::process::Command::new("tail");
        tail.args(["-n", "50"]);
        if std::io::stdout().is_terminal() {
            tail.arg("-F");
        }
        let err = tail.args(&files).exec();
        Err(failure(format!("running tail: {err}")))
    }

    /// `test [args]`: PostgreSQL and Redis for the services' integration tests, then the
    /// whole suite (the end-to-end tests start their own); what it had to start it stops
    /// again, quietly, so the runner's summary stays the last line.
    async fn test(&self, args: &[String]) -> anyhow::Result<ExitCode> {
        use tokio::signal::unix::{SignalKind, signal};
        let start_postgres = !self.cluster.running();
        let start_redis = self.daemons.alive("redis").is_none();
        // A Ctrl-C reaches the runner (same process group), which stops; this process
        // outlives it to stop what it started.
        let _interrupt = signal(SignalKind::interrupt())?;
        let _terminate = signal(SignalKind::terminate())?;
        let outcome = self.run_tests(args).await;
        if start_redis {
            self.daemons.stop_quietly("redis");
        }
        if start_postgres {
            let _ = self.cluster.stop();
        }
        outcome
    }

    async fn run_tests(&self, args: &[String]) -> anyhow::Result<ExitCode> {
        self.start_postgres().await?;
        let dropped = self.cluster.drop_test_databases()?;
        info(&format!(
            "dropped {dropped} database(s) left by earlier test runs, and their roles"
        ));
        self.start_redis().await?;
        step("Running the tests ...");
        let s = &self.settings;
        let envoy = std::env::var("BULWARK_ENVOY")
            .ok()
            .filter(|path| !path.is_empty())
            .unwrap_or_else(|| s.venv.join("bin/envoy").display().to_string());
        let nextest = std::process::Command::new("cargo")
            .args(["nextest", "--version"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        let mut runner = std::process::Command::new("cargo");
        if nextest {
            runner.args(["nextest", "run", "--workspace"]);
        } else {
            runner.args(["test", "--workspace"]);
        }
        let status = runner
            .args(args)
            .current_dir(&s.root)
            .env("BULWARK_ENVOY", envoy)
            .env("BULWARK_TEST_PG_URL", self.cluster.superuser_url()?)
            .env(
                "BULWARK_TEST_REDIS_URL",
                format!("redis://127.0.0.1:{}", s.redis_port),
            )
            .status()
            .map_err(|err| failure(format!("running cargo: {err}")))?;
        Ok(ExitCode::from(
            status
                .code()
                .and_then(|code| u8::try_from(code).ok())
                .unwrap_or(1),
        ))
    }

    /// GETs `http://127.0.0.1:<port><path>`: the status and the body, `None` when nothing
    /// answers.
    async fn http_get(&self, port: u16, path: &str) -> Option<(u16, String)> {
        let response = self
            .http
            .get(format!("http://127.0.0.1:{port}{path}"))
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.unwrap_or_default()))
    }

    async fn http_status(&self, port: u16, path: &str) -> Option<u16> {
        self.http_get(port, path).await.map(|(status, _)| status)
    }

    /// Asks `check` until it holds ([`poll_until`]); after the wait the settings allow, a
    /// failure that names `what` and quotes its log.
    async fn wait_for<F, Fut>(&self, what: &str, log: &Path, mut check: F) -> anyhow::Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        poll_until(what, self.settings.wait, || {
            let healthy = check();
            async move {
                if healthy.await {
                    Ok(())
                } else {
                    Err("not yet".to_owned())
                }
            }
        })
        .await
        .map_err(|_| {
            failure_with_log(
                format!(
                    "{what} did not become healthy within {}s",
                    self.settings.wait.as_secs()
                ),
                log,
            )
        })
    }
}

/// The `.log` files of the logs directory, sorted.
fn log_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    files.sort();
    files
}
