//! Release builds of the services and the filter. The e2e harness looks for the service
//! binaries next to the running executable first, `<target>/release` for this task, and
//! the benchmark checks afterwards that every service runs from there.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::bench_edge::tools::{build_wasm, cargo};

/// The path of this executable, `<target>/release/xtask`, taken before anything is
/// built: `cargo build --release --workspace --bins` relinks it (the workspace's feature
/// set differs from xtask's alone), after which the running process's own path reads
/// `... (deleted)`.
pub fn this_executable() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the running xtask executable")?;
    let dir = exe
        .parent()
        .context("the xtask executable has no parent directory")?;
    if dir.file_name().and_then(|n| n.to_str()) != Some("release") {
        bail!(
            "this task must run from a release build (it runs from {}); use `cargo xtask <task>`",
            dir.display()
        );
    }
    Ok(exe)
}

/// `<target>/release`, resolved: where `cargo build --release` put the services, next to
/// this executable.
pub fn release_dir(exe: &Path) -> anyhow::Result<PathBuf> {
    let dir = exe
        .parent()
        .context("the xtask executable has no parent directory")?;
    dir.canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))
}

/// Steps 1 and 2 of the tools that run the mesh on release builds: the services, then the
/// gateway filter (or, with `build` false, says both are skipped). `step` prints a step.
pub fn build_services_and_filter(build: bool, step: impl Fn(usize, &str)) -> anyhow::Result<()> {
    if !build {
        step(1, "building the services: skipped (--no-build)");
        step(2, "building the gateway filter: skipped (--no-build)");
        return Ok(());
    }
    step(
        1,
        "building the services (cargo build --release --workspace --bins)",
    );
    cargo(&["build", "--release", "--workspace", "--bins"])?;
    step(
        2,
        "building the gateway filter (wasm32-wasip1, profile wasm)",
    );
    build_wasm().map(drop)
}

/// Fails unless the process `pid` runs an executable from `release`.
pub fn ensure_runs_release(name: &str, pid: u32, release: &Path) -> anyhow::Result<()> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .with_context(|| format!("reading the executable of {name} (pid {pid})"))?;
    if exe.parent() != Some(release) {
        bail!(
            "{name} runs {}, not the release build in {}: the harness found other binaries first",
            exe.display(),
            release.display()
        );
    }
    Ok(())
}
