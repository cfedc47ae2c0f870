//! Release builds of the services and the filter, and a second run of this task that the
//! e2e harness points at them.
//!
//! The benchmark runs the mesh in a child process of itself whose `CARGO_TARGET_DIR` is a
//! temporary directory whose `debug` entry links to the release profile directory, and
//! checks afterwards which executable each service runs. (This predates the harness
//! looking next to the running executable first, which alone now finds the release
//! services; the child run is kept until it is simplified away.)

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The argument that tells a run of `bench-services` it is the child with the release view.
pub const IN_RELEASE_VIEW: &str = "--in-release-view";

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
            "bench-services must run from a release build (it runs from {}); use `cargo xtask bench-services`",
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

/// Runs `cargo <args>` in the workspace, its output going to the terminal.
pub fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(&cargo)
        .args(args)
        .current_dir(bulwark_e2e::workspace_root())
        .status()
        .with_context(|| format!("running {} {}", cargo.to_string_lossy(), args.join(" ")))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Runs `exe` (this task, as built now) as a child process that sees the release
/// binaries as the harness's `debug` ones; its exit status is this run's.
pub fn rerun_in_release_view(exe: &Path) -> anyhow::Result<()> {
    let release = release_dir(exe)?;
    let target = release
        .parent()
        .context("the release directory has no parent")?;
    let view = tempfile::Builder::new()
        .prefix("bulwark-bench-target-")
        .tempdir()
        .context("creating the release view directory")?;
    symlink(&release, &view.path().join("debug"))?;
    // The harness looks for the filter under $CARGO_TARGET_DIR first, then
    // <workspace>/target; point it at the target directory this build uses.
    symlink(
        &target.join("wasm32-wasip1"),
        &view.path().join("wasm32-wasip1"),
    )?;

    let status = Command::new(exe)
        .arg("bench-services")
        .arg(IN_RELEASE_VIEW)
        .env("CARGO_TARGET_DIR", view.path())
        .status()
        .with_context(|| format!("running {}", exe.display()))?;
    if !status.success() {
        bail!("the measuring run ended with {status}; its message is above");
    }
    Ok(())
}

fn symlink(original: &Path, link: &Path) -> anyhow::Result<()> {
    std::os::unix::fs::symlink(original, link)
        .with_context(|| format!("linking {} to {}", link.display(), original.display()))
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
