//! Finding Envoy and the built filter, rendering `smoke.yaml`, and running Envoy.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client;

/// A free loopback port (the shared e2e harness's).
pub fn free_port() -> u16 {
    bulwark_e2e::free_port().expect("finding a free port on 127.0.0.1")
}

struct Rendered {
    dir: PathBuf,
    config: PathBuf,
    log: PathBuf,
    port: u16,
    admin_port: u16,
}

/// Ports of the local servers behind Envoy.
#[derive(Clone, Copy)]
pub struct Backends {
    /// JWKS and echo server.
    pub upstream: u16,
    /// Rate-limit service (any free port when the test runs none).
    pub ratelimit: u16,
}

fn render(plugin_config: &Value, backends: Backends) -> Rendered {
    let template = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/envoy/smoke.yaml"),
    )
    .unwrap();
    let (port, admin_port) = (free_port(), free_port());
    let wasm = bulwark_e2e::gateway_filter_wasm().unwrap_or_else(|e| panic!("{e:#}"));
    // The JSON sits in a single-quoted YAML scalar; JSON never needs a single quote here.
    let plugin_json = plugin_config.to_string();
    assert!(
        !plugin_json.contains('\''),
        "plugin config must not contain single quotes"
    );
    let rendered = template
        .replace("{{LISTEN_PORT}}", &port.to_string())
        .replace("{{ADMIN_PORT}}", &admin_port.to_string())
        .replace("{{UPSTREAM_PORT}}", &backends.upstream.to_string())
        .replace("{{RATELIMIT_PORT}}", &backends.ratelimit.to_string())
        .replace("{{WASM}}", &wasm.display().to_string())
        .replace("{{PLUGIN_CONFIG}}", &plugin_json);
    assert!(
        !rendered.contains("{{"),
        "unreplaced placeholder in smoke.yaml"
    );
    let dir = std::env::temp_dir().join(format!(
        "bulwark-gateway-smoke-{}-{port}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("envoy.yaml");
    std::fs::write(&config, rendered).unwrap();
    let log = dir.join("envoy.log");
    Rendered {
        dir,
        config,
        log,
        port,
        admin_port,
    }
}

fn command(rendered: &Rendered) -> Command {
    let envoy = bulwark_e2e::envoy_binary().unwrap_or_else(|e| panic!("{e:#}"));
    let mut command = Command::new(envoy);
    command
        .arg("-c")
        .arg(&rendered.config)
        .args([
            "--use-dynamic-base-id",
            "--concurrency",
            "2",
            "-l",
            "info",
            "--log-path",
        ])
        .arg(&rendered.log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

fn tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A running Envoy, killed on drop.
pub struct Envoy {
    pub port: u16,
    pub admin_port: u16,
    child: Child,
    rendered: Rendered,
}

impl Envoy {
    /// Starts Envoy and waits until its admin endpoint says LIVE.
    pub fn start(plugin_config: &Value, backends: Backends) -> Self {
        let rendered = render(plugin_config, backends);
        let child = command(&rendered)
            .spawn()
            .unwrap_or_else(|e| panic!("starting envoy: {e}"));
        let mut envoy = Self {
            port: rendered.port,
            admin_port: rendered.admin_port,
            child,
            rendered,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = envoy.child.try_wait() {
                panic!(
                    "envoy exited with {status} before becoming ready; log:\n{}",
                    envoy.log_tail()
                );
            }
            let ready = client::try_request(envoy.admin_port, "GET", "/ready", &[]);
            if ready.is_ok_and(|r| r.body.trim() == "LIVE") {
                return envoy;
            }
            assert!(
                Instant::now() < deadline,
                "envoy not ready after 30 s; log:\n{}",
                envoy.log_tail()
            );
            sleep(Duration::from_millis(200));
        }
    }

    pub fn log_tail(&self) -> String {
        tail(&self.rendered.log)
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.rendered.dir);
    }
}

/// Runs Envoy until it exits by itself (or `limit` passes), for configs it must refuse.
pub fn run_to_exit(
    plugin_config: &Value,
    backends: Backends,
    limit: Duration,
) -> (ExitStatus, String) {
    let rendered = render(plugin_config, backends);
    let mut child = command(&rendered)
        .spawn()
        .unwrap_or_else(|e| panic!("starting envoy: {e}"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "envoy still running after {limit:?} with an invalid config; log:\n{}",
                tail(&rendered.log)
            );
        }
        sleep(Duration::from_millis(100));
    };
    let log = std::fs::read_to_string(&rendered.log).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&rendered.dir);
    (status, log)
}
