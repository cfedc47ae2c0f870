//! A child process that writes to a log file and is killed when dropped.

use std::fs::File;
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};

use crate::proc_stat::{clock_ticks_per_second, process_stat};
use crate::wait::poll_until_or;

/// Lines of its log an error about a process quotes.
const LOG_TAIL_LINES: usize = 20;

/// A started process; stdout and stderr go to `log`. Dropping it kills the process.
#[derive(Debug)]
pub struct ManagedChild {
    name: String,
    child: Child,
    log: PathBuf,
}

impl ManagedChild {
    /// Starts `command` with stdin closed and both output streams appended to `log`.
    pub fn spawn(name: &str, command: &mut Command, log: &Path) -> anyhow::Result<Self> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening log {}", log.display()))?;
        let err = out.try_clone()?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name}: {command:?}"))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log: log.to_path_buf(),
        })
    }

    /// The component's name, as used in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log file that receives the process's output.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// CPU seconds the process has used so far (user and system, all its threads);
    /// `None` once it has exited.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let stat = process_stat(self.pid())?;
        Some(stat.cpu_ticks as f64 / clock_ticks_per_second())
    }

    /// Calls `check` every 100 ms until it returns `Ok`, as [`crate::poll_until`] does,
    /// but gives up at once when the process exits; either failure quotes the end of its
    /// log.
    pub async fn wait_ready<F, Fut, T>(
        &mut self,
        what: &str,
        timeout: Duration,
        check: F,
    ) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        let Self { name, child, log } = self;
        let exited = || {
            let status = child.try_wait().ok().flatten()?;
            Some(anyhow!("{name} exited ({status})"))
        };
        poll_until_or(what, timeout, exited, check)
            .await
            .map_err(|err| {
                anyhow!(
                    "{err:#}; the log of {name} ({}) ends with:\n{}",
                    log.display(),
                    tail(log, LOG_TAIL_LINES)
                )
            })
    }

    /// Sends a signal by name (`TERM`, `INT`, `QUIT`) with kill(1).
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .context("running kill(1)")?;
        anyhow::ensure!(
            status.success(),
            "kill -{signal} {} ({}) failed",
            self.pid(),
            self.name
        );
        Ok(())
    }

    /// Sends `signal`, waits up to `grace` for the exit, then kills.
    pub fn stop(&mut self, signal: &str, grace: Duration) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.exited() {
            return Ok(status);
        }
        self.signal(signal)?;
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Ok(status);
            }
            thread::sleep(Duration::from_millis(50));
        }
        self.child.kill().ok();
        Ok(self.child.wait()?)
    }
}

impl Drop for ManagedChild {
    fn drop(&mut self) {
        if self.exited().is_none() {
            self.child.kill().ok();
            self.child.wait().ok();
        }
    }
}

/// The last `lines` lines of a log file (a note instead if it cannot be read).
pub fn tail(path: &Path, lines: usize) -> String {
    const WINDOW: u64 = 64 * 1024;
    let mut text = String::new();
    let read = File::open(path).and_then(|mut file| {
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(WINDOW)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        text = String::from_utf8_lossy(&bytes).into_owned();
        Ok(())
    });
    if let Err(err) = read {
        return format!("(cannot read {}: {err})", path.display());
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(name: &str, script: &str, dir: &Path) -> ManagedChild {
        ManagedChild::spawn(
            name,
            Command::new("sh").args(["-c", script]),
            &dir.join(format!("{name}.log")),
        )
        .unwrap_or_else(|e| panic!("starting {name}: {e:#}"))
    }

    #[test]
    fn cpu_seconds_count_the_child_busy_and_end_with_it() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut busy = shell("busy", "while :; do :; done", dir.path());
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut used = 0.0;
        while used < 0.1 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
            used = busy
                .cpu_seconds()
                .unwrap_or_else(|| panic!("no CPU time for the running pid {}", busy.pid()));
        }
        assert!(
            used >= 0.1,
            "a busy loop used only {used} CPU seconds in 20 s"
        );
        busy.stop("KILL", Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(busy.cpu_seconds(), None, "CPU time of a reaped process");
    }

    #[tokio::test]
    async fn waiting_for_a_process_that_exits_fails_at_once_with_its_log() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut child = shell("crasher", "echo 'bad config at line 3'; exit 3", dir.path());
        let started = Instant::now();
        let err = child
            .wait_ready("crasher ready", Duration::from_secs(30), || async {
                Err::<(), _>("no answer".to_owned())
            })
            .await
            .expect_err("a process that exited was taken as ready");
        let message = format!("{err:#}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "gave up only after {:?}",
            started.elapsed()
        );
        assert!(
            message.contains("crasher exited") && message.contains("bad config at line 3"),
            "the error names neither the exit nor the log: {message}"
        );
    }

    #[tokio::test]
    async fn waiting_ends_with_the_check_value_or_its_last_reason() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut child = shell("sleeper", "sleep 30", dir.path());
        let mut calls = 0;
        let value = child
            .wait_ready("third call", Duration::from_secs(10), || {
                calls += 1;
                let calls = calls;
                async move {
                    if calls == 3 {
                        Ok(calls)
                    } else {
                        Err(format!("call {calls}"))
                    }
                }
            })
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(value, 3);
        let err = child
            .wait_ready("never", Duration::from_millis(300), || async {
                Err::<(), _>("still closed".to_owned())
            })
            .await
            .expect_err("a check that never passes passed");
        assert!(
            format!("{err:#}").contains("still closed"),
            "the timeout does not give the last reason: {err:#}"
        );
    }
}
