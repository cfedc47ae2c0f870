//! A private PostgreSQL 15 cluster for one test: initdb into the test's directory, the
//! `bulwark` database with one LOGIN role and schema per service, and a postmaster that
//! can be stopped and started again on the same port.
//!
//! initdb and postgres refuse to run as root, so under root they run as the `postgres`
//! user (through setpriv, which execs in place: the child we hold is the postmaster
//! itself, so stopping it is one signal). Authentication is `trust`: the cluster listens
//! on 127.0.0.1 only and lives as long as the test.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::process::ManagedChild;
use crate::wait::poll_until;
use crate::workspace::postgres_bin_dir;

/// One cluster; dropping it shuts the postmaster down immediately.
#[derive(Debug)]
pub struct Postgres {
    bin: PathBuf,
    home: PathBuf,
    port: u16,
    log: PathBuf,
    as_postgres_user: bool,
    postmaster: Option<ManagedChild>,
}

pub(crate) fn running_as_root() -> bool {
    fs::metadata("/proc/self")
        .map(|meta| meta.uid() == 0)
        .unwrap_or(false)
}

/// uid and gid of the `postgres` user, from /etc/passwd.
pub(crate) fn postgres_user_ids() -> anyhow::Result<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.first() == Some(&"postgres") && fields.len() > 3 {
            return Ok((fields[2].parse()?, fields[3].parse()?));
        }
    }
    bail!(
        "running as root needs a `postgres` user to own the test cluster (apt-get install postgresql-15 creates it)"
    )
}

impl Postgres {
    /// Runs initdb in `<dir>/pg`; output of the cluster goes to `log`.
    pub fn init(dir: &Path, port: u16, log: &Path) -> anyhow::Result<Self> {
        let bin = postgres_bin_dir()?;
        let home = dir.join("pg");
        fs::create_dir_all(&home)?;
        let as_postgres_user = running_as_root();
        if as_postgres_user {
            let (uid, gid) = postgres_user_ids()?;
            std::os::unix::fs::chown(&home, Some(uid), Some(gid))
                .with_context(|| format!("giving {} to the postgres user", home.display()))?;
            fs::set_permissions(&home, fs::Permissions::from_mode(0o700))?;
            // Every directory above must be searchable by the postgres user.
            fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
        }
        let cluster = Self {
            bin,
            home,
            port,
            log: log.to_path_buf(),
            as_postgres_user,
            postmaster: None,
        };
        let output = cluster
            .command("initdb")
            .arg("-D")
            .arg(cluster.data_dir())
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ])
            .output()
            .context("running initdb")?;
        if !output.status.success() {
            bail!(
                "initdb failed ({}):\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(cluster)
    }

    /// A server binary of the cluster, run as its owner.
    fn command(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        let mut command = if self.as_postgres_user {
            let mut setpriv = Command::new("setpriv");
            setpriv
                .args([
                    "--reuid=postgres",
                    "--regid=postgres",
                    "--init-groups",
                    "--",
                ])
                .arg(program);
            setpriv
        } else {
            Command::new(program)
        };
        // The test's working directory may be closed to the postgres user.
        command.current_dir(&self.home);
        command
    }

    fn data_dir(&self) -> PathBuf {
        self.home.join("data")
    }

    /// The TCP port (on 127.0.0.1), the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The log of the postmaster.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Starts the postmaster and waits until it accepts connections.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        if self
            .postmaster
            .as_mut()
            .is_some_and(|pm| pm.exited().is_none())
        {
            return Ok(());
        }
        let mut command = self.command("postgres");
        command
            .arg("-D")
            .arg(self.data_dir())
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-k"])
            .arg(&self.home)
            // A throwaway cluster: durability buys nothing and costs seconds.
            .args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]);
        self.postmaster = Some(ManagedChild::spawn("postgres", &mut command, &self.log)?);
        let (bin, port) = (self.bin.clone(), self.port);
        poll_until(
            "postgres accepting connections",
            Duration::from_secs(30),
            || {
                let bin = bin.clone();
                async move { pg_isready(&bin, port) }
            },
        )
        .await
    }

    /// Stops the postmaster (fast shutdown: sessions are cut, the port closes).
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut postmaster) = self.postmaster.take() {
            let status = postmaster.stop("INT", Duration::from_secs(20))?;
            anyhow::ensure!(
                status.success(),
                "postgres fast shutdown ended with {status}"
            );
        }
        Ok(())
    }

    /// Runs SQL as the superuser against `database`, returns psql's unaligned output.
    pub fn psql(&self, database: &str, sql: &str) -> anyhow::Result<String> {
        self.psql_as("postgres", database, sql)
    }

    /// Runs SQL as `role` (the cluster trusts loopback) against `database`; an error
    /// carries psql's message, Postgres's refusal included.
    pub fn psql_as(&self, role: &str, database: &str, sql: &str) -> anyhow::Result<String> {
        let output = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
                role,
            ])
            .args(["-p", &self.port.to_string(), "-d", database, "-c", sql])
            .env("PGCONNECT_TIMEOUT", "5")
            .output()
            .context("running psql")?;
        if !output.status.success() {
            bail!(
                "psql failed on `{sql}`: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Creates the `bulwark` database and, per service, as the mesh command does: role
    /// `<svc>_owner` owning schema `<svc>` (it runs the migrations) and role `<svc>_svc`
    /// that owns nothing (the service runs as it, with the grants `migrate` gives it).
    pub fn provision(&self, services: &[&str]) -> anyhow::Result<()> {
        self.psql("postgres", "CREATE DATABASE bulwark")?;
        for service in services {
            self.psql(
                "bulwark",
                &format!(
                    "CREATE ROLE {service}_owner LOGIN PASSWORD '{service}-owner-e2e'; \
                     CREATE ROLE {service}_svc LOGIN PASSWORD '{service}-e2e'; \
                     CREATE SCHEMA {service} AUTHORIZATION {service}_owner;"
                ),
            )?;
        }
        Ok(())
    }

    /// The URL a service connects with, as its runtime role.
    pub fn url_for(&self, service: &str) -> String {
        format!(
            "postgres://{service}_svc:{service}-e2e@127.0.0.1:{}/bulwark",
            self.port
        )
    }

    /// The URL `bulwark-<svc> migrate` connects with, as the schema's owner.
    pub fn owner_url_for(&self, service: &str) -> String {
        format!(
            "postgres://{service}_owner:{service}-owner-e2e@127.0.0.1:{}/bulwark",
            self.port
        )
    }
}

pub(crate) fn pg_isready(bin: &Path, port: u16) -> Result<(), String> {
    let output = Command::new(bin.join("pg_isready"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-d",
            "postgres",
            "-t",
            "1",
        ])
        .output()
        .map_err(|err| format!("pg_isready did not run: {err}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Immediate shutdown lets the postmaster release its shared memory itself.
        if let Some(mut postmaster) = self.postmaster.take() {
            postmaster.stop("QUIT", Duration::from_secs(5)).ok();
        }
    }
}
