//! What Linux's `/proc/<pid>/stat` says of a process: its command name, its parent and
//! the CPU time it has used, for the benchmarks' CPU accounting.

use std::sync::OnceLock;

/// One process's line of `/proc/<pid>/stat`, the fields the benchmarks read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessStat {
    /// The kernel's command name, cut at 15 bytes (`bulwark-identit`).
    pub command: String,
    /// The state letter: `R` running, `S` sleeping, `Z` zombie, `X` dead, ...
    pub state: char,
    pub parent: u32,
    /// User and system time of all its threads, in clock ticks
    /// ([`clock_ticks_per_second`]).
    pub cpu_ticks: u64,
}

/// `/proc/<pid>/stat` of a running process; `None` once it is gone (or without `/proc`).
pub fn process_stat(pid: u32) -> Option<ProcessStat> {
    parse(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn parse(text: &str) -> Option<ProcessStat> {
    // The command name is in parentheses and may itself hold spaces or parentheses.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let command = text.get(open + 1..close)?.to_owned();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let state = rest.first()?.chars().next()?;
    let parent = rest.get(1)?.parse().ok()?;
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some(ProcessStat {
        command,
        state,
        parent,
        cpu_ticks: utime + stime,
    })
}

/// The process exists and has not exited (a zombie has, and waits to be reaped).
pub fn process_running(pid: u32) -> bool {
    process_stat(pid).is_some_and(|stat| !matches!(stat.state, 'Z' | 'X'))
}

/// The unit of `/proc`'s CPU times (`getconf CLK_TCK`, asked once; 100 if it cannot be).
pub fn clock_ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_name_with_parentheses_and_spaces_does_not_shift_the_fields() {
        let line = "4242 (envoy (main) x) S 17 4242 17 0 -1 4194560 500 0 0 0 250 31 0 0 20 0 9 0";
        assert_eq!(
            parse(line),
            Some(ProcessStat {
                command: "envoy (main) x".to_owned(),
                state: 'S',
                parent: 17,
                cpu_ticks: 281,
            })
        );
        assert_eq!(parse("4242 (cut"), None, "a line without its fields parses");
    }

    #[test]
    fn own_process_stat_is_readable() {
        let stat = process_stat(std::process::id())
            .unwrap_or_else(|| panic!("/proc/{}/stat is not readable", std::process::id()));
        assert!(!stat.command.is_empty(), "no command name in {stat:?}");
        assert!(stat.parent > 0, "no parent pid in {stat:?}");
        assert!(
            clock_ticks_per_second() >= 1.0,
            "clock ticks per second: {}",
            clock_ticks_per_second()
        );
    }
}
