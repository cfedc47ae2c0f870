//! What the cases run: the builds (gateway filter, empty filter, rate-limit service) and
//! the Envoy configurations, rendered from the templates `cargo xtask bench-edge` uses
//! (`xtask/bench/edge/`) with the same plugin configuration, so that the figures here
//! price the benchmark's cases.

use std::path::PathBuf;

use anyhow::{Context as _, ensure};

pub use crate::bench_edge::cases::Route;
pub use crate::bench_edge::envoy_config::Site;
use crate::bench_edge::envoy_config::{gateway_filter, render_with_filters};
use crate::bench_edge::tools::{build_wasm, cargo, target_dir};

/// The rate-limit domain of the configuration and the service's limits.
pub const RATELIMIT_DOMAIN: &str = "edge-costs";

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
    let gateway_wasm = build_wasm()?;
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
        gateway_wasm,
        empty_wasm: built(out.join("bulwark_empty_filter.wasm"))?,
        ratelimit,
    })
}

/// bench-edge's configuration of the case's filter: the site's Wasm (the gateway filter
/// or the empty filter) with the gateway filter's configuration, rate-limited in
/// [`RATELIMIT_DOMAIN`] for [`Filter::GatewayRateLimited`].
pub fn render(filter: Filter, route: Route, site: &Site) -> anyhow::Result<String> {
    let domain = (filter == Filter::GatewayRateLimited).then_some(RATELIMIT_DOMAIN);
    render_with_filters(vec![gateway_filter(site, domain)?], route, site)
}
