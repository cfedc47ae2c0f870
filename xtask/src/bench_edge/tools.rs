//! The external programs the benchmark drives (Envoy, wrk; redis-server is the e2e
//! harness's) and the workspace artefacts it builds first (the gateway filter, the
//! rate-limit service).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, ensure};
use bulwark_e2e::{on_path, workspace_root};

const WASM_BUILD: [&str; 6] = [
    "build",
    "-p",
    "bulwark-gateway-filter",
    "--target",
    "wasm32-wasip1",
    "--profile",
];
const RATELIMIT_BUILD: [&str; 4] = ["build", "--release", "-p", "bulwark-ratelimit"];

/// Where cargo puts what it builds: `$CARGO_TARGET_DIR` (relative to the workspace), else
/// `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || workspace_root().join("target"),
        |dir| workspace_root().join(dir),
    )
}

/// The external programs the benchmark drives.
#[derive(Debug)]
pub struct Tools {
    pub envoy: PathBuf,
    pub envoy_version: String,
    pub wrk: PathBuf,
}

impl Tools {
    pub fn find() -> anyhow::Result<Self> {
        let envoy = bulwark_e2e::envoy_binary()?;
        let version = Command::new(&envoy)
            .arg("--version")
            .output()
            .with_context(|| format!("running {} --version", envoy.display()))?;
        let envoy_version = String::from_utf8_lossy(&version.stdout)
            .split("version:")
            .nth(1)
            .unwrap_or("unknown")
            .trim()
            .to_owned();
        let wrk = on_path("wrk")
            .context("wrk not found on PATH: install it with `apt-get install wrk`")?;
        Ok(Self {
            envoy,
            envoy_version,
            wrk,
        })
    }
}

/// A `cargo` command at the workspace root, for xtask's every cargo call: the cargo that
/// runs xtask (`$CARGO`), else the one on `PATH`. Callers add arguments, a directory of
/// their own or where the output goes.
pub fn cargo_command() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(workspace_root());
    command
}

/// Runs `cargo <args>` at the workspace root with its output shown; cargo itself decides
/// whether anything is out of date, so an up-to-date artefact costs a no-op build.
pub fn cargo(args: &[&str]) -> anyhow::Result<()> {
    eprintln!("[build] cargo {}", args.join(" "));
    let status = cargo_command()
        .args(args)
        .status()
        .context("running cargo")?;
    ensure!(status.success(), "`cargo {}` failed", args.join(" "));
    Ok(())
}

/// Builds the gateway filter (a no-op when it is up to date) and returns its path.
pub fn build_wasm() -> anyhow::Result<PathBuf> {
    let mut args = WASM_BUILD.to_vec();
    args.push("wasm");
    cargo(&args)?;
    let path = target_dir().join("wasm32-wasip1/wasm/bulwark_gateway_filter.wasm");
    ensure!(
        path.is_file(),
        "{} is missing after the build",
        path.display()
    );
    Ok(path)
}

/// Builds the rate-limit service; an error says why it cannot be benchmarked.
pub fn build_ratelimit() -> anyhow::Result<PathBuf> {
    cargo(&RATELIMIT_BUILD).context(
        "bulwark-ratelimit does not build (see cargo's output above), so cases f and g and \
         the rate-limit service benchmark cannot run",
    )?;
    let path = target_dir().join("release/bulwark-ratelimit");
    ensure!(
        path.is_file(),
        "{} is missing after the build",
        path.display()
    );
    Ok(path)
}
