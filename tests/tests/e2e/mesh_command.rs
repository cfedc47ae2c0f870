//! `deploy/local/mesh` itself, run as a user runs it: `up --no-build` (the test run has
//! built everything) on free ports with a state directory of the test's own, then
//! Prometheus's API, `status` with everything healthy and with a service killed, and
//! `down`; and the same with `up --replicas 2`, through Envoy's view of the replicas and
//! a request that crosses the services. The mesh's own PostgreSQL cluster, Redis, SMTP
//! server, services, Envoy and Prometheus are the real ones.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use bulwark_e2e::{free_port, gateway_filter_wasm, poll_until, process_running, workspace_root};
use serde_json::Value;

use crate::support::shipped_rules;

const SERVICES: [&str; 5] = ["identity", "auth", "authz", "audit", "ratelimit"];
const DOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// A mesh started by the command in a temporary state directory; dropping it runs
/// `down` and removes the PostgreSQL cluster the command may have put under /var/tmp.
struct MeshCommand {
    state: tempfile::TempDir,
    env: Vec<(String, String)>,
    edge_port: u16,
    edge_admin_port: u16,
    prometheus_port: u16,
    /// Each service's gRPC and admin ports, one of each per replica.
    ports: Vec<(&'static str, Vec<u16>, Vec<u16>)>,
}

fn output_text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The target directory holding the debug binaries the test run built.
fn target_dir() -> PathBuf {
    let wasm = gateway_filter_wasm().unwrap_or_else(|err| panic!("{err:#}"));
    // <target>/wasm32-wasip1/wasm/bulwark_gateway_filter.wasm
    wasm.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| panic!("{} is not under a target directory", wasm.display()))
}

impl MeshCommand {
    /// A mesh of `replicas` replicas of every service. Each replica gets free ports of its
    /// own, listed per service (`BULWARK_AUTH_GRPC_PORT=p0,p1`): the command's default for
    /// replica i, the first port + 100*i, may be a port another test holds.
    fn new(replicas: usize) -> Self {
        let state = tempfile::tempdir().expect("a state directory");
        let port = || free_port().expect("a free port").to_string();
        let edge_port = free_port().expect("a free port");
        let edge_admin_port = free_port().expect("a free port");
        let prometheus_port = free_port().expect("a free port");
        let mut env = vec![
            (
                "BULWARK_STATE_DIR".to_owned(),
                state.path().display().to_string(),
            ),
            (
                "CARGO_TARGET_DIR".to_owned(),
                target_dir().display().to_string(),
            ),
            ("BULWARK_EDGE_PORT".to_owned(), edge_port.to_string()),
            (
                "BULWARK_EDGE_ADMIN_PORT".to_owned(),
                edge_admin_port.to_string(),
            ),
            ("BULWARK_PG_PORT".to_owned(), port()),
            ("BULWARK_REDIS_PORT".to_owned(), port()),
            ("BULWARK_MAIL_PORT".to_owned(), port()),
            (
                "BULWARK_PROMETHEUS_PORT".to_owned(),
                prometheus_port.to_string(),
            ),
            ("BULWARK_SCRAPE_INTERVAL".to_owned(), "1s".to_owned()),
        ];
        let free_ports = || {
            (0..replicas)
                .map(|_| free_port().expect("a free port"))
                .collect::<Vec<u16>>()
        };
        let list = |ports: &[u16]| {
            ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut ports = Vec::new();
        for service in SERVICES {
            let upper = service.to_uppercase();
            let (grpc, admin) = (free_ports(), free_ports());
            env.push((format!("BULWARK_{upper}_GRPC_PORT"), list(&grpc)));
            env.push((format!("BULWARK_{upper}_ADMIN_PORT"), list(&admin)));
            ports.push((service, grpc, admin));
        }
        Self {
            state,
            env,
            edge_port,
            edge_admin_port,
            prometheus_port,
            ports,
        }
    }

    /// Runs `deploy/local/mesh ARGS` without a terminal.
    fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, &[])
    }

    /// Runs `deploy/local/mesh ARGS` without a terminal, with `extra` in its environment.
    fn run_with(&self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let script = workspace_root().join("deploy/local/mesh");
        Command::new("bash")
            .arg(&script)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .envs(extra.iter().copied())
            .env_remove("BULWARK_OTLP_ENDPOINT")
            .output()
            .unwrap_or_else(|err| panic!("running {} {}: {err}", script.display(), args.join(" ")))
    }

    fn edge_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.edge_port)
    }

    fn prometheus_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.prometheus_port)
    }

    /// The pid of a component the command started.
    fn pid(&self, name: &str) -> u32 {
        let file = self.state.path().join("run").join(format!("{name}.pid"));
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|err| panic!("reading {}: {err}", file.display()));
        text.trim()
            .parse()
            .unwrap_or_else(|err| panic!("{} holds {text:?}: {err}", file.display()))
    }
}

impl Drop for MeshCommand {
    fn drop(&mut self) {
        let output = self.run(&["down"]);
        if !output.status.success() {
            eprintln!("deploy/local/mesh down failed:\n{}", output_text(&output));
        }
        // As root the cluster may live under /var/tmp with a link in the state directory.
        let link = self.state.path().join("pg");
        if let Ok(target) = std::fs::read_link(&link)
            && let Some(home) = target.parent()
            && home.starts_with("/var/tmp")
        {
            let _ = std::fs::remove_dir_all(home);
        }
    }
}

async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    let response = http
        .get(url)
        .send()
        .await
        .unwrap_or_else(|err| panic!("GET {url}: {err}"));
    let text = response.text().await.unwrap_or_default();
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("GET {url}: not JSON ({err}): {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_starts_prometheus_with_every_target_healthy_and_status_reports_a_dead_service() {
    let mesh = MeshCommand::new(1);
    let up = mesh.run(&["up", "--no-build"]);
    let text = output_text(&up);
    assert!(
        up.status.success(),
        "deploy/local/mesh up --no-build failed:\n{text}"
    );
    let prometheus_line = format!("Prometheus: http://127.0.0.1:{}", mesh.prometheus_port);
    assert!(
        text.contains(&prometheus_line),
        "up does not print `{prometheus_line}`:\n{text}"
    );
    assert!(
        text.contains("6/6 targets up"),
        "up does not report every scrape target up:\n{text}"
    );
    assert!(
        text.contains(
            "Envoy healthy hosts: identity 1/1, auth 1/1, authz 1/1, audit 1/1, ratelimit 1/1"
        ),
        "up does not report one healthy host per service cluster:\n{text}"
    );
    assert!(
        table_row(&text, "auth#1").is_none(),
        "one replica, yet the table lists auth#1:\n{text}"
    );
    assert_steps_numbered(&text);

    // Prometheus itself: the six targets (five services and the edge) are up under their
    // service labels, and every shipped rule is loaded.
    let http = bulwark_e2e::http_client().build().expect("an HTTP client");
    let targets = get_json(&http, &mesh.prometheus_url("/api/v1/targets?state=active")).await;
    let active = targets["data"]["activeTargets"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let up_services: BTreeSet<&str> = active
        .iter()
        .filter(|t| t["health"] == "up")
        .filter_map(|t| t["labels"]["service"].as_str())
        .collect();
    let expected: BTreeSet<&str> = SERVICES.iter().copied().chain(["edge"]).collect();
    assert_eq!(up_services, expected, "targets up in Prometheus: {targets}");
    assert_eq!(active.len(), expected.len(), "active targets: {targets}");
    let rules = get_json(&http, &mesh.prometheus_url("/api/v1/rules")).await;
    let groups = rules["data"]["groups"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let loaded: usize = groups
        .iter()
        .map(|group| group["rules"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(loaded, shipped_rules().len(), "rules loaded: {rules}");
    for group in &groups {
        for rule in group["rules"].as_array().into_iter().flatten() {
            assert_eq!(rule["health"], "ok", "a rule does not evaluate: {rule}");
        }
    }

    // The edge answers through the mesh the command started.
    let healthz = http
        .get(format!("http://127.0.0.1:{}/healthz", mesh.edge_port))
        .send()
        .await
        .expect("GET /healthz through the edge");
    assert_eq!(healthz.status(), reqwest::StatusCode::OK);

    let status = mesh.run(&["status"]);
    let text = output_text(&status);
    assert!(
        status.status.success(),
        "status with everything up failed:\n{text}"
    );
    assert!(
        text.contains("6/6 targets up") && text.contains("Alerts firing: none"),
        "status does not report the targets and alerts:\n{text}"
    );

    // A service that dies: status names it as down (table and scrape target) and fails.
    let audit = mesh.pid("audit");
    let killed = Command::new("kill")
        .args(["-KILL", &audit.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success(), "kill -KILL {audit}");
    let mesh_ref = &mesh;
    poll_until(
        "status reports audit's scrape target down",
        DOWN_TIMEOUT,
        || async move {
            let status = mesh_ref.run(&["status"]);
            let text = output_text(&status);
            if !status.status.success()
                && text.contains("5/6 targets up")
                && text.contains("down  audit")
            {
                Ok(())
            } else {
                Err(format!("exit {}:\n{text}", status.status))
            }
        },
    )
    .await
    .unwrap_or_else(|err| panic!("{err:#}"));

    let down = mesh.run(&["down"]);
    assert!(
        down.status.success(),
        "down failed:\n{}",
        output_text(&down)
    );
    let status = mesh.run(&["status"]);
    assert!(
        !status.status.success(),
        "status after down succeeded:\n{}",
        output_text(&status)
    );
}

/// The `[k/N]` step lines of the script and of the binary it hands over to count to
/// one total N, and the last is step N.
fn assert_steps_numbered(text: &str) {
    let steps: Vec<(usize, usize)> = text
        .lines()
        .filter_map(|line| {
            let (k, rest) = line.strip_prefix('[')?.split_once('/')?;
            let (n, _) = rest.split_once(']')?;
            Some((k.parse().ok()?, n.parse().ok()?))
        })
        .collect();
    let total = steps.first().map_or(0, |(_, n)| *n);
    let numbers: Vec<usize> = steps.iter().map(|(k, _)| *k).collect();
    assert!(
        total > 0
            && steps.iter().all(|(_, n)| *n == total)
            && numbers == (1..=total).collect::<Vec<_>>(),
        "the steps are not numbered 1 to N of one N: {steps:?}\n{text}"
    );
}

/// The line for `label` (its first column) in the last table of `text`, if any.
fn table_row<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    let table = text.rsplit_once("COMPONENT")?.1;
    table
        .lines()
        .find(|line| line.split_whitespace().next() == Some(label))
}

/// The table's label of a replica: `auth`, `auth#1`.
fn replica_label(service: &str, replica: usize) -> String {
    if replica == 0 {
        service.to_owned()
    } else {
        format!("{service}#{replica}")
    }
}

/// The pid file name of a replica: `auth`, `auth-1`.
fn replica_name(service: &str, replica: usize) -> String {
    if replica == 0 {
        service.to_owned()
    } else {
        format!("{service}-{replica}")
    }
}

/// The hosts of an Envoy cluster that its health checks find healthy, from `/clusters`
/// (`auth::127.0.0.1:50052::health_flags::healthy`).
fn healthy_hosts(clusters: &str, cluster: &str) -> BTreeSet<String> {
    clusters
        .lines()
        .filter_map(|line| line.strip_prefix(&format!("{cluster}::")))
        .filter_map(|rest| rest.strip_suffix("::health_flags::healthy"))
        .map(str::to_owned)
        .collect()
}

/// POSTs JSON through the edge; the status and the body.
async fn post_json(
    http: &reqwest::Client,
    url: &str,
    body: &Value,
    bearer: Option<&str>,
) -> (reqwest::StatusCode, Value) {
    let mut request = http.post(url).json(body);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|err| panic!("POST {url}: {err}"));
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_with_two_replicas_runs_and_reports_each_and_down_stops_them_all() {
    const REPLICAS: usize = 2;
    let mesh = MeshCommand::new(REPLICAS);

    // Refused before anything starts: a count that is not one, and replica ports past
    // 65535 (identity at 65500 puts identity#1 at 65600, by the default step of 100).
    let zero = mesh.run(&["up", "--no-build", "--replicas", "0"]);
    let text = output_text(&zero);
    assert!(
        !zero.status.success() && text.contains("--replicas '0' is not a number of replicas"),
        "up --replicas 0 was not refused as it should be:\n{text}"
    );
    let past = mesh.run_with(
        &["up", "--no-build", "--replicas", "2"],
        &[("BULWARK_IDENTITY_GRPC_PORT", "65500")],
    );
    let text = output_text(&past);
    assert!(
        !past.status.success() && text.contains("identity#1 gRPC: port '65600'"),
        "replica ports past 65535 were not refused, naming identity#1's port 65600:\n{text}"
    );

    let up = mesh.run(&["up", "--no-build", "--replicas", "2"]);
    let text = output_text(&up);
    assert!(
        up.status.success(),
        "deploy/local/mesh up --no-build --replicas 2 failed:\n{text}"
    );
    for service in SERVICES {
        for replica in 0..REPLICAS {
            let label = replica_label(service, replica);
            let row = table_row(&text, &label)
                .unwrap_or_else(|| panic!("the table after up has no row {label}:\n{text}"));
            assert!(
                row.split_whitespace().any(|word| word == "ready"),
                "{label} is not ready in the table after up:\n{text}"
            );
        }
    }
    assert!(
        text.contains(
            "Envoy healthy hosts: identity 2/2, auth 2/2, authz 2/2, audit 2/2, ratelimit 2/2"
        ),
        "up does not report two healthy hosts per service cluster:\n{text}"
    );
    assert!(
        text.contains("11/11 targets up"),
        "up does not report every replica's scrape target up:\n{text}"
    );

    // Envoy's own view: both replicas of each service, healthy.
    let http = bulwark_e2e::http_client().build().expect("an HTTP client");
    let clusters_url = format!("http://127.0.0.1:{}/clusters", mesh.edge_admin_port);
    let clusters = http
        .get(&clusters_url)
        .send()
        .await
        .unwrap_or_else(|err| panic!("GET {clusters_url}: {err}"))
        .text()
        .await
        .unwrap_or_default();
    for (service, grpc, _) in &mesh.ports {
        let expected: BTreeSet<String> = grpc.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        assert_eq!(
            healthy_hosts(&clusters, service),
            expected,
            "healthy hosts of Envoy's {service} cluster:\n{clusters}"
        );
    }

    // Prometheus scrapes every replica, each under its service's label.
    let targets = get_json(&http, &mesh.prometheus_url("/api/v1/targets?state=active")).await;
    let active = targets["data"]["activeTargets"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let up_targets: BTreeSet<(String, String)> = active
        .iter()
        .filter(|t| t["health"] == "up")
        .map(|t| {
            (
                t["labels"]["service"].as_str().unwrap_or("?").to_owned(),
                t["labels"]["instance"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect();
    let mut expected: BTreeSet<(String, String)> = mesh
        .ports
        .iter()
        .flat_map(|(service, _, admin)| {
            admin
                .iter()
                .map(|port| ((*service).to_owned(), format!("127.0.0.1:{port}")))
        })
        .collect();
    expected.insert((
        "edge".to_owned(),
        format!("127.0.0.1:{}", mesh.edge_admin_port),
    ));
    assert_eq!(up_targets, expected, "targets up in Prometheus: {targets}");
    assert_eq!(active.len(), expected.len(), "active targets: {targets}");

    // Through the edge: register, log in (Auth asks Identity through its client list),
    // and read the caller's profile with the token (the gateway filter checks it against
    // Auth's keys).
    let healthz = http
        .get(mesh.edge_url("/healthz"))
        .send()
        .await
        .expect("GET /healthz through the edge");
    assert_eq!(healthz.status(), reqwest::StatusCode::OK);
    let email = format!("replicas-{}@example.com", std::process::id());
    let password = "replicas-correct-horse-9";
    let (status, body) = post_json(
        &http,
        &mesh.edge_url("/v1/users"),
        &serde_json::json!({"email": email, "password": password, "display_name": "Replicas"}),
        None,
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::OK, "registration: {body}");
    let (status, body) = post_json(
        &http,
        &mesh.edge_url("/v1/auth/login"),
        &serde_json::json!({"email": email, "password": password}),
        None,
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::OK, "login: {body}");
    let token = body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("login answered no access_token: {body}"))
        .to_owned();
    let me = http
        .get(mesh.edge_url("/v1/users/me"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET /v1/users/me through the edge");
    let status = me.status();
    let me: Value = me.json().await.unwrap_or_default();
    assert!(
        status == reqwest::StatusCode::OK && me["email"] == email.as_str(),
        "GET /v1/users/me answered {status}: {me}"
    );

    // A replica that dies: status names it (table, Envoy's hosts, its scrape target) and
    // fails, while the edge goes on serving from the other replica.
    let auth_1 = mesh.pid("auth-1");
    let killed = Command::new("kill")
        .args(["-KILL", &auth_1.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success(), "kill -KILL {auth_1}");
    let mesh_ref = &mesh;
    poll_until("status reports auth#1 down", DOWN_TIMEOUT, || async move {
        let status = mesh_ref.run(&["status"]);
        let text = output_text(&status);
        let row_down = table_row(&text, "auth#1")
            .is_some_and(|row| row.split_whitespace().any(|word| word == "down"));
        if !status.status.success()
            && row_down
            && text.contains("auth 1/2")
            && text.contains("10/11 targets up")
            && text.contains("down  auth")
        {
            Ok(())
        } else {
            Err(format!("exit {}:\n{text}", status.status))
        }
    })
    .await
    .unwrap_or_else(|err| panic!("{err:#}"));
    let jwks = get_json(&http, &mesh.edge_url("/.well-known/jwks.json")).await;
    assert!(
        jwks["keys"].as_array().is_some_and(|keys| !keys.is_empty()),
        "/.well-known/jwks.json with auth#1 down: {jwks}"
    );

    // `up` again keeps the running mesh's two replicas: it starts only the dead one.
    let again = mesh.run(&["up", "--no-build"]);
    let text = output_text(&again);
    assert!(again.status.success(), "up again failed:\n{text}");
    assert!(
        text.contains("auth#1: started")
            && text.contains("auth: already running")
            && text.contains("identity#1: already running"),
        "up again did not restart only auth#1:\n{text}"
    );
    assert!(
        text.contains("unchanged") && !text.contains("config or descriptor changed"),
        "up again rewrote the descriptor or restarted Envoy, though neither changed:\n{text}"
    );
    assert_steps_numbered(&text);
    poll_until("status healthy again", DOWN_TIMEOUT, || async move {
        let status = mesh_ref.run(&["status"]);
        if status.status.success() {
            Ok(())
        } else {
            Err(output_text(&status))
        }
    })
    .await
    .unwrap_or_else(|err| panic!("{err:#}"));

    // `down` stops every process the command started, both replicas of each service too.
    let mut started: Vec<(String, u32)> = Vec::new();
    for service in SERVICES {
        for replica in 0..REPLICAS {
            let name = replica_name(service, replica);
            started.push((name.clone(), mesh.pid(&name)));
        }
    }
    for name in ["envoy", "prometheus", "redis", "mail"] {
        started.push((name.to_owned(), mesh.pid(name)));
    }
    let postmaster = mesh.state.path().join("pg/data/postmaster.pid");
    let postgres = std::fs::read_to_string(&postmaster)
        .unwrap_or_else(|err| panic!("reading {}: {err}", postmaster.display()));
    started.push((
        "postgres".to_owned(),
        postgres
            .lines()
            .next()
            .and_then(|line| line.trim().parse().ok())
            .unwrap_or_else(|| panic!("{} holds no pid: {postgres}", postmaster.display())),
    ));
    let down = mesh.run(&["down"]);
    assert!(
        down.status.success(),
        "down failed:\n{}",
        output_text(&down)
    );
    let left: Vec<String> = started
        .iter()
        .filter(|(_, pid)| process_running(*pid))
        .map(|(name, pid)| format!("{name} (pid {pid})"))
        .collect();
    assert!(
        left.is_empty(),
        "still running after down: {}\n{}",
        left.join(", "),
        output_text(&down)
    );
    let status = mesh.run(&["status"]);
    assert!(
        !status.status.success(),
        "status after down succeeded:\n{}",
        output_text(&status)
    );
}
