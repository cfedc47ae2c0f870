//! The mesh's own PostgreSQL 15 cluster (not the system one), initialised once and kept:
//! scram-sha-256 for host connections, 127.0.0.1 only, a random superuser password in the
//! secrets, and per service a schema owned by `<svc>_owner` (migrations) and a runtime
//! role `<svc>_svc` that owns nothing.
//!
//! initdb refuses to run as root, so as root the cluster belongs to the `postgres` user;
//! when that user cannot reach the state directory (a checkout under /root, say) the
//! cluster lives in `/var/tmp/bulwark-<hash of the state path>/` and `<state>/pg` links to it.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::Context;
use sha2::Digest as _;

use super::secrets::Secrets;
use super::settings::Settings;
use super::ui::{failure, failure_with_log, info};
use crate::postgres::{pg_isready, running_as_root};
use crate::service::ServiceKind;

/// The mesh's cluster.
#[derive(Debug, Clone)]
pub(crate) struct Cluster {
    bin: PathBuf,
    home: PathBuf,
    port: u16,
    as_root: bool,
    secrets: Secrets,
}

impl Cluster {
    pub fn new(settings: &Settings) -> Self {
        let as_root = running_as_root();
        Self {
            bin: settings.pg_bin.clone(),
            home: home(&settings.state, as_root),
            port: settings.pg_port,
            as_root,
            secrets: Secrets::new(&settings.secrets()),
        }
    }

    pub fn data(&self) -> PathBuf {
        self.home.join("data")
    }

    pub fn log(&self) -> PathBuf {
        self.home.join("postgres.log")
    }

    /// A cluster tool run as the cluster's owner (from `/`: the caller's directory may be
    /// closed to the postgres user).
    fn command(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        if self.as_root {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command.current_dir("/");
            command
        } else {
            Command::new(program)
        }
    }

    /// The postmaster runs (pg_ctl status).
    pub fn running(&self) -> bool {
        self.data().is_dir()
            && self
                .command("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .arg("status")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
    }

    /// The postmaster's pid, from its pid file.
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    pub fn ready(&self) -> bool {
        pg_isready(&self.bin, self.port).is_ok()
    }

    /// Makes the cluster's home (linked from the state directory when it lives elsewhere)
    /// and runs initdb once.
    pub fn init_once(&self, state: &Path) -> anyhow::Result<()> {
        let link = state.join("pg");
        if self.home != link && std::fs::symlink_metadata(&link).is_err() {
            info(&format!(
                "the postgres user cannot reach {}; cluster lives in {}",
                state.display(),
                self.home.display()
            ));
            std::fs::create_dir_all(&self.home)?;
            std::os::unix::fs::symlink(&self.home, &link).with_context(|| {
                format!("linking {} to {}", link.display(), self.home.display())
            })?;
        }
        if self.data().join("PG_VERSION").is_file() {
            info(&format!("reusing cluster {}", self.data().display()));
            return Ok(());
        }
        info(&format!("initdb (once) into {}", self.data().display()));
        std::fs::create_dir_all(&self.home)?;
        if self.as_root {
            let (uid, gid) = crate::postgres::postgres_user_ids()?;
            std::os::unix::fs::chown(&self.home, Some(uid), Some(gid))
                .with_context(|| format!("giving {} to the postgres user", self.home.display()))?;
            std::fs::set_permissions(&self.home, std::fs::Permissions::from_mode(0o700))?;
        }
        let pwfile = self.home.join(".initdb-pw");
        std::fs::write(&pwfile, self.secrets.get("pg-superuser", 16)?)?;
        std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o600))?;
        if self.as_root {
            let (uid, gid) = crate::postgres::postgres_user_ids()?;
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid))?;
        }
        let log = self.home.join("initdb.log");
        let output = self
            .command("initdb")
            .arg("-D")
            .arg(self.data())
            .args(["-U", "postgres"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args([
                "--auth-host=scram-sha-256",
                "--auth-local=peer",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ])
            .output();
        let _ = std::fs::remove_file(&pwfile);
        let output = output.context("running initdb")?;
        write_output(&log, &output)?;
        if !output.status.success() {
            return Err(failure_with_log("initdb failed", &log));
        }
        Ok(())
    }

    /// Starts the postmaster on 127.0.0.1 (pg_ctl waits until it accepts connections).
    pub fn start(&self, wait_secs: u64) -> anyhow::Result<()> {
        let status = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.log())
            .args(["-w", "-t", &wait_secs.to_string(), "-o"])
            .arg(format!(
                "-h 127.0.0.1 -p {} -k '{}'",
                self.port,
                self.home.display()
            ))
            .arg("start")
            .stdout(Stdio::null())
            .status()
            .context("running pg_ctl start")?;
        if status.success() {
            Ok(())
        } else {
            Err(failure_with_log("pg_ctl start failed", &self.log()))
        }
    }

    /// Fast shutdown (sessions are cut), waiting for the postmaster to exit; `true` when
    /// there was one to stop.
    pub fn stop(&self) -> anyhow::Result<bool> {
        if !self.running() {
            return Ok(false);
        }
        let status = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "fast", "-w", "stop"])
            .stdout(Stdio::null())
            .status()
            .context("running pg_ctl stop")?;
        anyhow::ensure!(status.success(), "pg_ctl stop failed ({status})");
        Ok(true)
    }

    /// Runs SQL (from standard input, so it may span lines) as the superuser against
    /// `database`; psql's unaligned output.
    pub fn psql(&self, database: &str, sql: &str) -> anyhow::Result<String> {
        let mut child = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-h",
                "127.0.0.1",
            ])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                database,
            ])
            .env("PGPASSWORD", self.secrets.get("pg-superuser", 16)?)
            .env("PGOPTIONS", "-c client_min_messages=warning")
            .env("PGCONNECT_TIMEOUT", "5")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running psql")?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(sql.as_bytes())?;
        }
        let output = child.wait_with_output()?;
        if !output.status.success() {
            anyhow::bail!("psql: {}", String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// The `bulwark` database and, per service, its two roles (passwords in the secrets)
    /// and its schema. Idempotent: a cluster made before the owner role existed has the
    /// schema handed to `<svc>_owner`.
    pub fn provision(&self, log: &Path) -> anyhow::Result<()> {
        let exists = self.psql(
            "postgres",
            "SELECT 1 FROM pg_database WHERE datname = 'bulwark'",
        );
        if exists.map_err(|err| failure_with_log(format!("{err:#}"), log))? != "1" {
            self.psql("postgres", "CREATE DATABASE bulwark")
                .map_err(|err| {
                    failure_with_log(format!("could not create database bulwark: {err:#}"), log)
                })?;
        }
        for service in ServiceKind::ALL {
            let svc = service.name();
            let owner_pw = self.secrets.get(&format!("pg-{svc}-owner"), 16)?;
            let pw = self.secrets.get(&format!("pg-{svc}"), 16)?;
            let sql = format!(
                "DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{svc}_owner') THEN
    CREATE ROLE {svc}_owner LOGIN PASSWORD '{owner_pw}';
  ELSE
    ALTER ROLE {svc}_owner LOGIN PASSWORD '{owner_pw}';
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{svc}_svc') THEN
    CREATE ROLE {svc}_svc LOGIN PASSWORD '{pw}';
  ELSE
    ALTER ROLE {svc}_svc LOGIN PASSWORD '{pw}';
  END IF;
END $$;
CREATE SCHEMA IF NOT EXISTS {svc} AUTHORIZATION {svc}_owner;
ALTER SCHEMA {svc} OWNER TO {svc}_owner;
REASSIGN OWNED BY {svc}_svc TO {svc}_owner;
ALTER ROLE {svc}_owner IN DATABASE bulwark SET search_path = {svc};
ALTER ROLE {svc}_svc IN DATABASE bulwark SET search_path = {svc};
"
            );
            self.psql("bulwark", &sql).map_err(|err| {
                failure_with_log(
                    format!(
                        "could not provision roles {svc}_owner, {svc}_svc / schema {svc}: {err:#}"
                    ),
                    log,
                )
            })?;
        }
        Ok(())
    }

    /// Drops the databases (and roles) that earlier test runs made (`test_<uuid>`);
    /// how many databases it dropped.
    pub fn drop_test_databases(&self) -> anyhow::Result<usize> {
        let databases = self.psql(
            "postgres",
            r"SELECT datname FROM pg_database WHERE datname LIKE 'test\_%'",
        )?;
        let mut dropped = 0;
        for db in databases.lines().filter(|db| !db.is_empty()) {
            self.psql("postgres", &format!("DROP DATABASE IF EXISTS \"{db}\""))?;
            dropped += 1;
        }
        let roles = self.psql(
            "postgres",
            r"SELECT rolname FROM pg_roles WHERE rolname LIKE 'test\_%'",
        )?;
        for role in roles.lines().filter(|role| !role.is_empty()) {
            let _ = self.psql("postgres", &format!("DROP ROLE IF EXISTS \"{role}\""));
        }
        Ok(dropped)
    }

    /// The superuser's URL, for the tests' own databases.
    pub fn superuser_url(&self) -> anyhow::Result<String> {
        Ok(format!(
            "postgres://postgres:{}@127.0.0.1:{}/postgres",
            self.secrets.get("pg-superuser", 16)?,
            self.port
        ))
    }

    /// The URL a service connects with: as its runtime role, or as its schema's owner.
    pub fn url(&self, service: ServiceKind, owner: bool) -> anyhow::Result<String> {
        let svc = service.name();
        let (role, secret) = if owner {
            (format!("{svc}_owner"), format!("pg-{svc}-owner"))
        } else {
            (format!("{svc}_svc"), format!("pg-{svc}"))
        };
        Ok(format!(
            "postgres://{role}:{}@127.0.0.1:{}/bulwark",
            self.secrets.get(&secret, 16)?,
            self.port
        ))
    }

    /// A message for a cluster that could not start because the port is taken.
    pub fn port_taken(&self) -> anyhow::Error {
        failure(format!(
            "port {} is taken by another program; set BULWARK_PG_PORT to a free port",
            self.port
        ))
    }
}

/// The cluster's home: `<state>/pg` (or where its link points) when the cluster's owner
/// can reach it, else a directory under /var/tmp keyed by the state directory's path.
fn home(state: &Path, as_root: bool) -> PathBuf {
    let link = state.join("pg");
    if let Ok(meta) = std::fs::symlink_metadata(&link) {
        if meta.file_type().is_symlink() {
            return std::fs::canonicalize(&link).unwrap_or(link);
        }
        return link;
    }
    if !as_root {
        return link;
    }
    let reachable = Command::new("runuser")
        .args(["-u", "postgres", "--", "test", "-x"])
        .arg(state)
        .status()
        .is_ok_and(|status| status.success());
    if reachable {
        return link;
    }
    let digest = sha2::Sha256::digest(state.as_os_str().as_encoded_bytes());
    let hash = crate::accounts::hex(&digest[..6]);
    PathBuf::from(format!("/var/tmp/bulwark-{hash}/pg"))
}

fn write_output(log: &Path, output: &Output) -> anyhow::Result<()> {
    let mut file = std::fs::File::create(log)?;
    file.write_all(&output.stdout)?;
    file.write_all(&output.stderr)?;
    Ok(())
}
