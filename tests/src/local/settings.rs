//! The local mesh's settings: where its state lives and which ports each component and
//! each service replica listens on, from the `BULWARK_*` environment the README documents.

use std::collections::HashMap;
use std::env;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use super::ui::failure;
use crate::envoy::CORS_ORIGIN_REGEX;
use crate::service::ServiceKind;

/// The step between the default ports of consecutive replicas.
pub(crate) const REPLICA_PORT_STEP: u32 = 100;
/// The most replicas of a service: each holds Postgres connections, and the mesh's
/// cluster accepts 100.
pub(crate) const MAX_REPLICAS: usize = 9;

/// Every path and port of one local mesh.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The checkout.
    pub root: PathBuf,
    /// `BULWARK_STATE_DIR`, else `<root>/.bulwark`.
    pub state: PathBuf,
    /// The tools shared by every state directory of the checkout (Envoy, aiosmtpd).
    pub venv: PathBuf,
    pub target_dir: PathBuf,
    pub pg_bin: PathBuf,
    pub edge_port: u16,
    pub edge_admin_port: u16,
    pub pg_port: u16,
    pub redis_port: u16,
    pub mail_port: u16,
    pub prometheus_port: u16,
    /// Prometheus's scrape and evaluation interval, as Prometheus spells it (`15s`).
    pub scrape_interval: String,
    pub otlp_endpoint: Option<String>,
    /// The percentage of requests the edge traces when `otlp_endpoint` is set.
    pub trace_sampling: String,
    pub ratelimit_timeout_ms: String,
    pub cors_origin_regex: String,
    /// How long a component gets to become healthy.
    pub wait: Duration,
    /// Each service's gRPC and admin ports as configured: one port, or one per replica.
    grpc_ports: HashMap<ServiceKind, Vec<u32>>,
    admin_ports: HashMap<ServiceKind, Vec<u32>>,
    /// How many replicas of every service this run deals with.
    pub replicas: usize,
    pub admin_email: String,
    pub admin_password: String,
}

/// The environment a [`Settings`] is read from: a variable's value, `None` when unset
/// or empty.
type Vars<'a> = &'a dyn Fn(&str) -> Option<String>;

fn var_or(vars: Vars<'_>, name: &str, default: &str) -> String {
    vars(name).unwrap_or_else(|| default.to_owned())
}

/// A port setting: a number from 1 to 65535, else an error naming the variable.
fn port_var(vars: Vars<'_>, name: &str, default: u16) -> anyhow::Result<u16> {
    let Some(value) = vars(name) else {
        return Ok(default);
    };
    match value.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(failure(format!(
            "{name}='{value}' is not a port number from 1 to 65535"
        ))),
    }
}

/// A service's port setting: one port or a comma-separated list (one per replica).
fn port_list_var(
    vars: Vars<'_>,
    service: ServiceKind,
    kind: &str,
    default: u32,
) -> anyhow::Result<Vec<u32>> {
    let name = format!("BULWARK_{}_{kind}_PORT", service.name().to_uppercase());
    let Some(value) = vars(&name) else {
        return Ok(vec![default]);
    };
    value
        .split(',')
        .map(|port| {
            port.parse::<u32>()
                .ok()
                .filter(|p| (1..=99_999).contains(p))
        })
        .collect::<Option<Vec<u32>>>()
        .ok_or_else(|| {
            failure(format!(
                "{}: '{value}' is not a port or a comma-separated list of ports (check {name})",
                service.name()
            ))
        })
}

fn default_ports(service: ServiceKind) -> (u32, u32) {
    match service {
        ServiceKind::Identity => (50051, 9101),
        ServiceKind::Auth => (50052, 9102),
        ServiceKind::Authz => (50053, 9103),
        ServiceKind::Audit => (50054, 9104),
        ServiceKind::Ratelimit => (50055, 9105),
    }
}

impl Settings {
    /// The settings of the checkout at `root` from the environment.
    pub fn from_env(root: &Path) -> anyhow::Result<Self> {
        Self::from_vars(root, &|name| env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// The settings of the checkout at `root` from the variables `vars` gives.
    fn from_vars(root: &Path, vars: Vars<'_>) -> anyhow::Result<Self> {
        let var = |name: &str| vars(name);
        let state = var("BULWARK_STATE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join(".bulwark"));
        let target_dir = var("CARGO_TARGET_DIR")
            .map(|dir| root.join(dir))
            .unwrap_or_else(|| root.join("target"));
        let wait = var_or(vars, "BULWARK_WAIT_SECS", "60");
        let wait = wait
            .parse::<u64>()
            .ok()
            .filter(|secs| *secs > 0)
            .ok_or_else(|| {
                failure(format!(
                    "BULWARK_WAIT_SECS='{wait}' is not a number of seconds"
                ))
            })?;
        let mut grpc_ports = HashMap::new();
        let mut admin_ports = HashMap::new();
        for service in ServiceKind::EVERY {
            let (grpc, admin) = default_ports(service);
            grpc_ports.insert(service, port_list_var(vars, service, "GRPC", grpc)?);
            admin_ports.insert(service, port_list_var(vars, service, "ADMIN", admin)?);
        }
        Ok(Self {
            root: root.to_path_buf(),
            venv: root.join(".bulwark/venv"),
            state,
            target_dir,
            pg_bin: PathBuf::from(var_or(vars, "BULWARK_PG_BIN", "/usr/lib/postgresql/15/bin")),
            edge_port: port_var(vars, "BULWARK_EDGE_PORT", 8080)?,
            edge_admin_port: port_var(vars, "BULWARK_EDGE_ADMIN_PORT", 9901)?,
            pg_port: port_var(vars, "BULWARK_PG_PORT", 5432)?,
            redis_port: port_var(vars, "BULWARK_REDIS_PORT", 6379)?,
            mail_port: port_var(vars, "BULWARK_MAIL_PORT", 2525)?,
            prometheus_port: port_var(vars, "BULWARK_PROMETHEUS_PORT", 9090)?,
            scrape_interval: var_or(vars, "BULWARK_SCRAPE_INTERVAL", "15s"),
            otlp_endpoint: var("BULWARK_OTLP_ENDPOINT"),
            trace_sampling: var_or(vars, "BULWARK_TRACE_SAMPLING", "100"),
            ratelimit_timeout_ms: var_or(vars, "BULWARK_RATELIMIT_TIMEOUT_MS", "50"),
            cors_origin_regex: var_or(vars, "BULWARK_CORS_ORIGIN_REGEX", CORS_ORIGIN_REGEX),
            wait: Duration::from_secs(wait),
            grpc_ports,
            admin_ports,
            replicas: 1,
            admin_email: var_or(vars, "BULWARK_ADMIN_EMAIL", "admin@bulwark.local"),
            admin_password: var_or(vars, "BULWARK_ADMIN_PASSWORD", "bulwark-admin-change-me"),
        })
    }

    pub fn logs(&self) -> PathBuf {
        self.state.join("logs")
    }

    pub fn run(&self) -> PathBuf {
        self.state.join("run")
    }

    pub fn secrets(&self) -> PathBuf {
        self.state.join("secrets")
    }

    pub fn checkpoints(&self) -> PathBuf {
        self.state.join("audit-checkpoints")
    }

    pub fn maildir(&self) -> PathBuf {
        self.state.join("mail")
    }

    pub fn prometheus_dir(&self) -> PathBuf {
        self.state.join("prometheus")
    }

    /// The log file of a component or replica (`auth-1`).
    pub fn log(&self, name: &str) -> PathBuf {
        self.logs().join(format!("{name}.log"))
    }

    /// A debug binary of the workspace.
    pub fn binary(&self, name: &str) -> PathBuf {
        self.target_dir.join("debug").join(name)
    }

    /// The built gateway filter.
    pub fn wasm(&self) -> PathBuf {
        self.target_dir
            .join("wasm32-wasip1/wasm/bulwark_gateway_filter.wasm")
    }

    /// `path` relative to the checkout, as messages name files.
    pub fn rel(&self, path: &Path) -> String {
        super::ui::relative(&self.root, path)
    }

    /// Makes the state directory's parts (the secrets' directory closed to others).
    pub fn make_dirs(&self) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        for dir in [
            self.state.clone(),
            self.logs(),
            self.run(),
            self.secrets(),
            self.state.join("envoy"),
            self.state.join("redis"),
            self.prometheus_dir().join("data"),
        ] {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::set_permissions(self.secrets(), std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("closing {}", self.secrets().display()))
    }

    /// Sets the replica count, refused unless it is a whole number from 1 to 9.
    pub fn set_replicas(&mut self, value: &str) -> anyhow::Result<()> {
        self.replicas = value
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_REPLICAS).contains(n))
            .ok_or_else(|| {
                failure(format!(
                    "--replicas '{value}' is not a number of replicas from 1 to {MAX_REPLICAS} (each replica holds Postgres connections, and the mesh's cluster accepts 100); e.g. up --replicas 2"
                ))
            })?;
        Ok(())
    }

    /// Replica `i`'s gRPC port: the i-th of the configured list, else the first + 100*i
    /// (which may pass 65535: [`Settings::check_ports`] refuses that).
    pub fn grpc_port_raw(&self, service: ServiceKind, replica: usize) -> u32 {
        replica_port(&self.grpc_ports[&service], replica)
    }

    pub fn admin_port_raw(&self, service: ServiceKind, replica: usize) -> u32 {
        replica_port(&self.admin_ports[&service], replica)
    }

    /// Replica `i`'s gRPC port, once [`Settings::check_ports`] has passed.
    pub fn grpc_port(&self, service: ServiceKind, replica: usize) -> u16 {
        u16::try_from(self.grpc_port_raw(service, replica)).unwrap_or(0)
    }

    pub fn admin_port(&self, service: ServiceKind, replica: usize) -> u16 {
        u16::try_from(self.admin_port_raw(service, replica)).unwrap_or(0)
    }

    /// Every port the mesh listens on is a port number, and no two are the same.
    pub fn check_ports(&self) -> anyhow::Result<()> {
        let mut entries: Vec<(String, u32)> = vec![
            ("edge".into(), self.edge_port.into()),
            ("edge admin".into(), self.edge_admin_port.into()),
            ("postgres".into(), self.pg_port.into()),
            ("redis".into(), self.redis_port.into()),
            ("mail".into(), self.mail_port.into()),
            ("prometheus".into(), self.prometheus_port.into()),
        ];
        for service in ServiceKind::EVERY {
            for replica in 0..self.replicas {
                let label = replica_label(service, replica);
                entries.push((
                    format!("{label} gRPC"),
                    self.grpc_port_raw(service, replica),
                ));
                entries.push((
                    format!("{label} admin"),
                    self.admin_port_raw(service, replica),
                ));
            }
        }
        let hint = if self.replicas == 1 {
            String::new()
        } else {
            format!(
                " (replica i listens on its service's ports + {REPLICA_PORT_STEP}*i unless BULWARK_<SVC>_GRPC_PORT / _ADMIN_PORT list a port per replica: choose fewer replicas or other ports)"
            )
        };
        let mut owners: HashMap<u32, String> = HashMap::new();
        for (name, port) in entries {
            if !(1..=65535).contains(&port) {
                return Err(failure(format!(
                    "{name}: port '{port}' is not a port number from 1 to 65535{hint}"
                )));
            }
            if let Some(owner) = owners.get(&port) {
                return Err(failure(format!(
                    "{name} and {owner} would both listen on port {port}{hint}"
                )));
            }
            owners.insert(port, name);
        }
        Ok(())
    }
}

fn replica_port(ports: &[u32], replica: usize) -> u32 {
    match ports.get(replica) {
        Some(port) => *port,
        None => {
            let first = ports.first().copied().unwrap_or(0);
            let step = u32::try_from(replica).unwrap_or(u32::MAX / REPLICA_PORT_STEP);
            first.saturating_add(REPLICA_PORT_STEP.saturating_mul(step))
        }
    }
}

/// The name of replica `i`'s pid and log files: `auth` for replica 0, `auth-1` after.
pub(crate) fn replica_name(service: ServiceKind, replica: usize) -> String {
    if replica == 0 {
        service.name().to_owned()
    } else {
        format!("{}-{replica}", service.name())
    }
}

/// How the table names replica `i`: `auth`, `auth#1` (as the tests do).
pub(crate) fn replica_label(service: ServiceKind, replica: usize) -> String {
    if replica == 0 {
        service.name().to_owned()
    } else {
        format!("{}#{replica}", service.name())
    }
}

/// The service and replica of a pid name (`auth-1`), if it is one.
pub(crate) fn parse_replica_name(name: &str) -> Option<(ServiceKind, usize)> {
    let (service, replica) = match name.split_once('-') {
        Some((service, replica)) => (service, replica.parse().ok()?),
        None => (name, 0),
    };
    let kind = ServiceKind::EVERY
        .into_iter()
        .find(|kind| kind.name() == service)?;
    Some((kind, replica))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_ports_follow_the_list_then_step_by_a_hundred() {
        assert_eq!(replica_port(&[50052], 0), 50052);
        assert_eq!(replica_port(&[50052], 2), 50252);
        assert_eq!(replica_port(&[50052, 60052], 1), 60052);
        assert_eq!(
            replica_port(&[65500], 1),
            65600,
            "past 65535 is kept to be refused"
        );
    }

    fn settings(vars: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_vars(Path::new("/checkout"), &|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_are_the_documented_ports_and_state_directory() {
        let s = settings(&[]).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(s.state, Path::new("/checkout/.bulwark"));
        assert_eq!(
            (s.edge_port, s.edge_admin_port, s.pg_port),
            (8080, 9901, 5432)
        );
        assert_eq!(s.grpc_port(ServiceKind::Auth, 0), 50052);
        assert_eq!(s.admin_port(ServiceKind::Ratelimit, 0), 9105);
        assert_eq!(s.wait, Duration::from_secs(60));
        s.check_ports().unwrap_or_else(|e| panic!("{e:#}"));
    }

    #[test]
    fn bad_settings_are_refused_naming_the_variable() {
        for (vars, expected) in [
            (
                [("BULWARK_EDGE_PORT", "80x")],
                "BULWARK_EDGE_PORT='80x' is not a port number",
            ),
            (
                [("BULWARK_AUTH_GRPC_PORT", "1,two")],
                "auth: '1,two' is not a port or a comma-separated list of ports (check BULWARK_AUTH_GRPC_PORT)",
            ),
            (
                [("BULWARK_WAIT_SECS", "0")],
                "BULWARK_WAIT_SECS='0' is not a number of seconds",
            ),
        ] {
            let err = settings(&vars).expect_err("a bad setting was taken");
            assert!(err.to_string().contains(expected), "{vars:?}: {err}");
        }
    }

    #[test]
    fn ports_that_collide_or_pass_65535_are_refused_naming_both_owners() {
        let s = settings(&[("BULWARK_REDIS_PORT", "9901")]).unwrap_or_else(|e| panic!("{e:#}"));
        let err = s.check_ports().expect_err("redis on the edge admin port");
        assert_eq!(
            err.to_string(),
            "redis and edge admin would both listen on port 9901"
        );
        let mut s = settings(&[("BULWARK_IDENTITY_GRPC_PORT", "65500")])
            .unwrap_or_else(|e| panic!("{e:#}"));
        s.set_replicas("2").unwrap_or_else(|e| panic!("{e:#}"));
        let err = s.check_ports().expect_err("identity#1 past 65535");
        assert!(
            err.to_string()
                .starts_with("identity#1 gRPC: port '65600' is not a port number"),
            "{err}"
        );
        // Two replicas of ports 100 apart collide with the next service's replica 0.
        s = settings(&[
            ("BULWARK_AUTH_ADMIN_PORT", "9102"),
            ("BULWARK_AUTHZ_ADMIN_PORT", "9202"),
        ])
        .unwrap_or_else(|e| panic!("{e:#}"));
        s.set_replicas("2").unwrap_or_else(|e| panic!("{e:#}"));
        let err = s.check_ports().expect_err("auth#1 on authz's admin port");
        assert!(
            err.to_string().contains("would both listen on port 9202")
                && err
                    .to_string()
                    .contains("choose fewer replicas or other ports"),
            "{err}"
        );
        for bad in ["0", "10", "two", ""] {
            assert!(s.set_replicas(bad).is_err(), "--replicas {bad:?} was taken");
        }
    }

    #[test]
    fn replica_names_and_labels_round_trip() {
        assert_eq!(replica_name(ServiceKind::Auth, 0), "auth");
        assert_eq!(replica_name(ServiceKind::Auth, 1), "auth-1");
        assert_eq!(replica_label(ServiceKind::Auth, 1), "auth#1");
        assert_eq!(parse_replica_name("authz-3"), Some((ServiceKind::Authz, 3)));
        assert_eq!(parse_replica_name("audit"), Some((ServiceKind::Audit, 0)));
        assert_eq!(parse_replica_name("envoy"), None);
        assert_eq!(parse_replica_name("auth-x"), None);
    }
}
