//! Who used the machine's CPU during a measured window, from `/proc`: the mesh (every
//! process this benchmark started), the load generator (this process) and everything
//! else, so that a figure measured on a shared machine says how shared it was.

use std::collections::HashMap;
use std::fs;
use std::time::Instant;

use bulwark_e2e::{ProcessStat, clock_ticks_per_second, process_stat};

/// CPU counters at one instant (clock ticks, as `/proc` counts them).
#[derive(Debug, Clone)]
pub struct Snapshot {
    at: Instant,
    machine_idle: u64,
    machine_steal: u64,
    /// pid -> (command name, ticks used so far, whether it descends from this process).
    processes: HashMap<u32, (String, u64, bool)>,
}

/// CPU use over a window, in cores (2.0 = both cores of a 2-core machine busy).
#[derive(Debug, Clone)]
pub struct Usage {
    pub busy: f64,
    /// Time the hypervisor gave this machine's CPUs to someone else.
    pub stolen: f64,
    pub mesh: f64,
    pub generator: f64,
    /// The mesh's share by program (`envoy`, `bulwark-identity`, `postgres`, ...), largest first.
    pub mesh_parts: Vec<(String, f64)>,
    /// Busy time of processes this benchmark did not start, by command, largest first.
    pub others: Vec<(String, f64)>,
}

impl Usage {
    pub fn others_total(&self) -> f64 {
        (self.busy - self.mesh - self.generator).max(0.0)
    }

    /// `rustc 0.9, cargo 0.1`: the largest other consumers.
    pub fn others_summary(&self) -> String {
        summary(&self.others, 3)
    }

    /// `envoy 0.40, bulwark-identity 0.30, ...`: where the mesh's CPU went.
    pub fn mesh_summary(&self) -> String {
        summary(&self.mesh_parts, 8)
    }
}

fn summary(parts: &[(String, f64)], at_most: usize) -> String {
    let top: Vec<String> = parts
        .iter()
        .filter(|(_, cores)| *cores >= 0.01)
        .take(at_most)
        .map(|(name, cores)| format!("{name} {cores:.2}"))
        .collect();
    if top.is_empty() {
        "nothing notable".to_owned()
    } else {
        top.join(", ")
    }
}

/// Reads the counters now; an unreadable `/proc` gives an empty snapshot.
pub fn snapshot() -> Snapshot {
    let at = Instant::now();
    let (machine_idle, machine_steal) = idle_and_steal_ticks().unwrap_or((0, 0));
    let me = std::process::id();
    let mut stats: HashMap<u32, ProcessStat> = HashMap::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            if let Some(stat) = process_stat(pid) {
                stats.insert(pid, stat);
            }
        }
    }
    let processes = stats
        .iter()
        .map(|(&pid, stat)| {
            let ours = pid != me && descends_from(pid, me, &stats);
            // The kernel's command name is cut at 15 bytes (`bulwark-identit`); the
            // mesh's programs are named from their command line instead.
            let name = if ours {
                program_name(pid).unwrap_or_else(|| stat.command.clone())
            } else {
                stat.command.clone()
            };
            (pid, (name, stat.cpu_ticks, ours))
        })
        .collect();
    Snapshot {
        at,
        machine_idle,
        machine_steal,
        processes,
    }
}

/// The CPU used between two snapshots, against the wall-clock time between them.
///
/// Busy time is the wall time minus idle time: the kernel's per-CPU user and system
/// counters are sampled at timer ticks and miss much of a workload of short bursts (a
/// mesh answering 500 requests/s), while idle time and each process's own times are
/// measured precisely.
pub fn usage(before: &Snapshot, after: &Snapshot, cores: usize) -> Usage {
    let seconds = after.at.duration_since(before.at).as_secs_f64();
    if seconds <= 0.0 {
        return Usage {
            busy: 0.0,
            stolen: 0.0,
            mesh: 0.0,
            generator: 0.0,
            mesh_parts: Vec::new(),
            others: Vec::new(),
        };
    }
    let ticks_per_second = clock_ticks_per_second();
    let to_cores = |ticks: u64| ticks as f64 / ticks_per_second / seconds;
    let idle = to_cores(after.machine_idle.saturating_sub(before.machine_idle));
    let me = std::process::id();
    let mut generator = 0;
    let mut mesh: HashMap<&str, u64> = HashMap::new();
    let mut others: HashMap<&str, u64> = HashMap::new();
    for (pid, (name, ticks, ours)) in &after.processes {
        let earlier = before.processes.get(pid).map_or(0, |(_, t, _)| *t);
        let used = ticks.saturating_sub(earlier);
        if *pid == me {
            generator += used;
        } else if *ours {
            *mesh.entry(name.as_str()).or_default() += used;
        } else {
            *others.entry(name.as_str()).or_default() += used;
        }
    }
    let by_program = |parts: HashMap<&str, u64>| {
        let mut parts: Vec<(String, f64)> = parts
            .into_iter()
            .map(|(name, ticks)| (name.to_owned(), to_cores(ticks)))
            .collect();
        parts.sort_by(|a, b| b.1.total_cmp(&a.1));
        parts
    };
    let mesh_parts = by_program(mesh);
    Usage {
        busy: (cores as f64 - idle).max(0.0),
        stolen: to_cores(after.machine_steal.saturating_sub(before.machine_steal)),
        mesh: mesh_parts.iter().map(|(_, cores)| cores).sum(),
        generator: to_cores(generator),
        mesh_parts,
        others: by_program(others),
    }
}

/// Idle (with iowait) and steal ticks summed over every CPU, from the first line of
/// `/proc/stat`.
fn idle_and_steal_ticks() -> Option<(u64, u64)> {
    let text = fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = text
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((idle, fields.get(7).copied().unwrap_or(0)))
}

/// The program a process runs, from its command line: `/x/bulwark-identity` gives
/// `bulwark-identity`, a PostgreSQL backend's `postgres: identity_svc ...` gives `postgres`.
fn program_name(pid: u32) -> Option<String> {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let argv0 = cmdline.split(|b| *b == 0).next()?;
    let argv0 = String::from_utf8_lossy(argv0);
    let first = argv0.split_whitespace().next()?;
    let program = first.rsplit('/').next()?.trim_end_matches(':');
    (!program.is_empty()).then(|| program.to_owned())
}

fn descends_from(pid: u32, ancestor: u32, stats: &HashMap<u32, ProcessStat>) -> bool {
    let mut current = pid;
    // A bounded walk: /proc is read while processes come and go.
    for _ in 0..64 {
        match stats.get(&current).map(|stat| stat.parent) {
            Some(parent) if parent == ancestor => return true,
            Some(parent) if parent > 1 => current = parent,
            _ => return false,
        }
    }
    false
}
