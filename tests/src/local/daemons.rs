//! The mesh's long-lived processes: started in a session of their own (a Ctrl-C in the
//! terminal does not reach them), outliving the command, and known by the pid files in
//! `<state>/run/` (`NAME.pid`, and `NAME.cmd`: the program the pid's command line must
//! hold for the pid to still be ours, since pids are recycled).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::ui::{info, warn};
use crate::proc_stat::process_running;

/// How long a process gets to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The pid files of one state directory.
#[derive(Debug)]
pub(crate) struct Daemons {
    run: PathBuf,
    /// The processes this command started, to reap those it stops again (a `test` run
    /// stops the Redis it started) instead of leaving zombies.
    children: Mutex<HashMap<u32, Child>>,
}

impl Daemons {
    pub fn new(run: &Path) -> Self {
        Self {
            run: run.to_path_buf(),
            children: Mutex::new(HashMap::new()),
        }
    }

    pub fn file(&self, name: &str, extension: &str) -> PathBuf {
        self.run.join(format!("{name}.{extension}"))
    }

    /// The recorded pid of `name`, alive or not.
    pub fn pid(&self, name: &str) -> Option<u32> {
        std::fs::read_to_string(self.file(name, "pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The recorded pid of `name` while that process runs and is still the one started.
    pub fn alive(&self, name: &str) -> Option<u32> {
        let pid = self.pid(name)?;
        if !process_running(pid) {
            return None;
        }
        let Ok(program) = std::fs::read_to_string(self.file(name, "cmd")) else {
            return Some(pid);
        };
        contains(&command_line(pid)?, program.as_bytes()).then_some(pid)
    }

    /// Starts `command` detached (its own session, stdin closed, both output streams to
    /// `log`, the previous log kept as `log.1`) and records it as `name`, recognised by
    /// `marker` in its command line.
    pub fn start(
        &self,
        name: &str,
        log: &Path,
        marker: &str,
        command: &Command,
    ) -> anyhow::Result<u32> {
        if std::fs::metadata(log).is_ok_and(|meta| meta.len() > 0) {
            let mut old = log.as_os_str().to_owned();
            old.push(".1");
            std::fs::rename(log, &old).with_context(|| format!("rotating {}", log.display()))?;
        }
        let out =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        // setsid(1) execs the program in place: the pid it gets is the program's.
        let mut detached = Command::new("setsid");
        detached
            .arg(command.get_program())
            .args(command.get_args())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (key, value) in command.get_envs() {
            match value {
                Some(value) => detached.env(key, value),
                None => detached.env_remove(key),
            };
        }
        if let Some(dir) = command.get_current_dir() {
            detached.current_dir(dir);
        }
        let child = detached
            .spawn()
            .with_context(|| format!("starting {name}: setsid {command:?}"))?;
        let pid = child.id();
        if let Ok(mut children) = self.children.lock() {
            children.insert(pid, child);
        }
        std::fs::write(self.file(name, "pid"), format!("{pid}\n"))?;
        std::fs::write(self.file(name, "cmd"), marker)?;
        Ok(pid)
    }

    /// SIGTERM, up to 10 s for the exit, then SIGKILL; forgets the pid either way and
    /// says what it stopped.
    pub fn stop(&self, name: &str) {
        if let Some(pid) = self.stop_quietly(name) {
            info(&format!("stopped {name} (pid {pid})"));
        }
    }

    /// [`Daemons::stop`] without a word unless it has to kill; the pid it stopped.
    pub fn stop_quietly(&self, name: &str) -> Option<u32> {
        let Some(pid) = self.alive(name) else {
            let _ = std::fs::remove_file(self.file(name, "pid"));
            return None;
        };
        signal(pid, "TERM");
        let deadline = Instant::now() + STOP_GRACE;
        while process_running(pid) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(100));
        }
        if process_running(pid) {
            warn(&format!(
                "{name} did not stop within {STOP_GRACE:?}; killing it"
            ));
            signal(pid, "KILL");
        }
        let child = self.children.lock().ok().and_then(|mut c| c.remove(&pid));
        if let Some(mut child) = child {
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.file(name, "pid"));
        Some(pid)
    }

    /// [`Daemons::stop`] for each, all at once (a service keeps serving for 3 s after
    /// SIGTERM while balancers take it out, so one after another would add up).
    pub fn stop_all(&self, names: &[String]) {
        thread::scope(|scope| {
            for name in names {
                scope.spawn(move || self.stop(name));
            }
        });
    }
}

/// Sends a signal by name with kill(1); a process already gone is not an error.
pub(crate) fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

/// The command line of a process. It reads as empty while the process execs (setsid(1)
/// becoming the program), so an empty one is read again for a moment.
fn command_line(pid: u32) -> Option<Vec<u8>> {
    for _ in 0..50 {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        if !cmdline.is_empty() {
            return Some(cmdline);
        }
        thread::sleep(Duration::from_millis(10));
    }
    None
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_started_process_is_alive_until_stopped_and_a_recycled_pid_is_not_ours() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let daemons = Daemons::new(dir.path());
        let log = dir.path().join("sleeper.log");
        let pid = daemons
            .start("sleeper", &log, "sleep", Command::new("sleep").arg("30"))
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(daemons.alive("sleeper"), Some(pid));
        // Another program under the recorded pid is not the one started.
        std::fs::write(daemons.file("sleeper", "cmd"), "redis-server")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(daemons.alive("sleeper"), None, "a pid of another program");
        std::fs::write(daemons.file("sleeper", "cmd"), "sleep").unwrap_or_else(|e| panic!("{e}"));
        daemons.stop("sleeper");
        assert!(!process_running(pid), "pid {pid} still runs after stop");
        assert_eq!(daemons.pid("sleeper"), None, "the pid file is left");
    }
}
