//! What the cases run: the builds (gateway filter, empty filter, rate-limit service) and
//! the Envoy configurations, rendered from the templates `cargo xtask bench-edge` uses
//! (`xtask/bench/edge/`) with the same plugin configuration, so that the figures here
//! price the benchmark's cases.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail, ensure};
use serde_json::json;

use super::tokens::{AUDIENCE, ISSUER};

/// The rate-limit domain of the configuration and the service's limits.
pub const RATELIMIT_DOMAIN: &str = "edge-costs";
/// The gateway filter's default token cache size (as in bench-edge).
const TOKEN_CACHE_SIZE: usize = 1024;

/// Which filter the Envoy runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// `xtask/empty-filter`: returns at once from every callback.
    Empty,
    /// The gateway filter without rate limiting.
    Gateway,
    /// The gateway filter with a per-user limit.
    GatewayRateLimited,
}

/// Which route answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The router's direct response (bench-edge's cases without rate limiting).
    Direct,
    /// Routed to `sink`, answered by the local responder (bench-edge's rate-limit cases).
    Routed,
}

/// Ports and the filter one Envoy configuration needs.
#[derive(Debug, Clone)]
pub struct Site {
    pub listen_port: u16,
    pub admin_port: u16,
    pub jwks_port: u16,
    pub ratelimit_port: u16,
    pub wasm: PathBuf,
}

pub fn workspace_root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || workspace_root().join("target"),
        |dir| {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        },
    )
}

/// What the builds produced.
#[derive(Debug)]
pub struct Artefacts {
    pub gateway_wasm: PathBuf,
    pub empty_wasm: PathBuf,
    ratelimit: Option<PathBuf>,
}

impl Artefacts {
    pub fn ratelimit(&self) -> anyhow::Result<PathBuf> {
        self.ratelimit
            .clone()
            .context("bulwark-ratelimit was not built")
    }
}

/// Runs `cargo <args>` at the workspace root; cargo decides what is out of date.
fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("[build] cargo {}", args.join(" "));
    let status = std::process::Command::new(cargo)
        .args(args)
        .current_dir(workspace_root())
        .status()
        .context("running cargo")?;
    ensure!(status.success(), "`cargo {}` failed", args.join(" "));
    Ok(())
}

fn built(path: PathBuf) -> anyhow::Result<PathBuf> {
    ensure!(
        path.is_file(),
        "{} is missing after the build",
        path.display()
    );
    Ok(path)
}

/// Builds both filters (same SDK, same `wasm` profile) and, when a case needs it, the
/// rate-limit service.
pub fn build(ratelimit: bool) -> anyhow::Result<Artefacts> {
    let wasm = [
        "build",
        "-p",
        "bulwark-gateway-filter",
        "--target",
        "wasm32-wasip1",
        "--profile",
        "wasm",
    ];
    cargo(&wasm)?;
    // Its own workspace: cargo is pointed at its manifest, and at this workspace's target
    // directory, which it would not use by itself.
    let target = target_dir();
    cargo(&[
        "build",
        "--manifest-path",
        "xtask/empty-filter/Cargo.toml",
        "--target",
        "wasm32-wasip1",
        "--profile",
        "wasm",
        "--target-dir",
        &target.display().to_string(),
    ])?;
    let out = target.join("wasm32-wasip1/wasm");
    let ratelimit = if ratelimit {
        cargo(&["build", "--release", "-p", "bulwark-ratelimit"])?;
        Some(built(target_dir().join("release/bulwark-ratelimit"))?)
    } else {
        None
    };
    Ok(Artefacts {
        gateway_wasm: built(out.join("bulwark_gateway_filter.wasm"))?,
        empty_wasm: built(out.join("bulwark_empty_filter.wasm"))?,
        ratelimit,
    })
}

fn template(name: &str) -> anyhow::Result<String> {
    let path = workspace_root().join("xtask/bench/edge").join(name);
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// Replaces a placeholder that stands alone on its line with `block`, each line indented
/// like the placeholder (as bench-edge renders these templates).
fn fill_block(text: &str, name: &str, block: &str) -> String {
    let marker = format!("{{{{{name}}}}}");
    let mut out = String::with_capacity(text.len() + block.len());
    for line in text.lines() {
        if line.trim() == marker {
            let indent = &line[..line.len() - line.trim_start().len()];
            for block_line in block.lines().filter(|l| !l.trim().is_empty()) {
                let _ = writeln!(out, "{indent}{block_line}");
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// bench-edge's plugin configuration: issuer, audience, cache, JWKS cluster, and in the
/// rate-limit cases a per-user limit that fails closed.
fn plugin_config(rate_limited: bool) -> serde_json::Value {
    let mut config = json!({
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "token_cache_size": TOKEN_CACHE_SIZE,
        "jwks": { "cluster": "jwks", "authority": "jwks", "path": "/.well-known/jwks.json" },
    });
    if rate_limited {
        config["rate_limit"] = json!({
            "cluster": "ratelimit",
            "domain": RATELIMIT_DOMAIN,
            "timeout_ms": 500,
            "client_ip_routes": [],
            "per_user": { "enabled": true, "failure_mode": "closed" },
        });
    }
    config
}

pub fn render(filter: Filter, route: Route, site: &Site) -> anyhow::Result<String> {
    let plugin = plugin_config(filter == Filter::GatewayRateLimited).to_string();
    let mut filters = template("gateway_filter.yaml")?
        .replace("{{PLUGIN_CONFIG}}", &plugin)
        .replace("{{WASM}}", &site.wasm.display().to_string());
    let route = match route {
        Route::Direct => template("route_direct.yaml")?,
        Route::Routed => {
            filters.push_str(&template("local_responder.yaml")?);
            template("route_routed.yaml")?
        }
    };
    let config = fill_block(&template("envoy.yaml")?, "ROUTE", &route);
    let config = fill_block(&config, "HTTP_FILTERS", &filters)
        .replace("{{LISTEN_PORT}}", &site.listen_port.to_string())
        .replace("{{ADMIN_PORT}}", &site.admin_port.to_string())
        .replace("{{JWKS_PORT}}", &site.jwks_port.to_string())
        .replace("{{RATELIMIT_PORT}}", &site.ratelimit_port.to_string());
    if let Some(at) = config.find("{{") {
        let rest: String = config[at..].chars().take(40).collect();
        bail!("unfilled placeholder in the Envoy configuration: {rest}");
    }
    Ok(config)
}
