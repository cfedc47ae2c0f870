//! `deploy/local/mesh` itself, run as a user runs it: `up --no-build` (the test run has
//! built everything) on free ports with a state directory of the test's own, then
//! Prometheus's API, `status` with everything healthy and with a service killed, and
//! `down`. The mesh's own PostgreSQL cluster, Redis, SMTP server, services, Envoy and
//! Prometheus are the real ones.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use bulwark_e2e::{free_port, gateway_filter_wasm, poll_until, workspace_root};
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
    prometheus_port: u16,
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
    fn new() -> Self {
        let state = tempfile::tempdir().expect("a state directory");
        let port = || free_port().expect("a free port").to_string();
        let edge_port = free_port().expect("a free port");
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
            ("BULWARK_EDGE_ADMIN_PORT".to_owned(), port()),
            ("BULWARK_PG_PORT".to_owned(), port()),
            ("BULWARK_REDIS_PORT".to_owned(), port()),
            ("BULWARK_MAIL_PORT".to_owned(), port()),
            (
                "BULWARK_PROMETHEUS_PORT".to_owned(),
                prometheus_port.to_string(),
            ),
            ("BULWARK_SCRAPE_INTERVAL".to_owned(), "1s".to_owned()),
        ];
        for service in SERVICES {
            let upper = service.to_uppercase();
            env.push((format!("BULWARK_{upper}_GRPC_PORT"), port()));
            env.push((format!("BULWARK_{upper}_ADMIN_PORT"), port()));
        }
        Self {
            state,
            env,
            edge_port,
            prometheus_port,
        }
    }

    /// Runs `deploy/local/mesh ARGS` without a terminal.
    fn run(&self, args: &[&str]) -> Output {
        let script = workspace_root().join("deploy/local/mesh");
        Command::new("bash")
            .arg(&script)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env_remove("BULWARK_OTLP_ENDPOINT")
            .output()
            .unwrap_or_else(|err| panic!("running {} {}: {err}", script.display(), args.join(" ")))
    }

    fn prometheus_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.prometheus_port)
    }

    /// The pid of a component the command started.
    fn pid(&self, name: &str) -> i32 {
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
    let mesh = MeshCommand::new();
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
