//! Reading libFuzzer's output: the final statistics (`-print_final_stats=1`), the last
//! status line's coverage, and what a failed run found.

use std::process::ExitStatus;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// A run's figures; `None` where the output did not say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FinalStats {
    /// `stat::number_of_executed_units`.
    pub executions: Option<u64>,
    /// `stat::average_exec_per_sec`.
    pub exec_per_sec: Option<u64>,
    /// `cov:` of the last status line: coverage points (edges) reached.
    pub cov: Option<u64>,
    /// `ft:` of the last status line: features (edges with hit counts, compares...).
    pub ft: Option<u64>,
}

/// The figures of one run's output.
pub fn final_stats(output: &str) -> FinalStats {
    let stat = |name: &str| {
        output
            .lines()
            .rev()
            .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
    };
    let status = output.lines().rev().find(|line| line.contains(" cov: "));
    let field = |name: &str| {
        let line = status?;
        let mut words = line.split_whitespace();
        words.find(|w| *w == name)?;
        words.next()?.parse().ok()
    };
    FinalStats {
        executions: stat("stat::number_of_executed_units:"),
        exec_per_sec: stat("stat::average_exec_per_sec:"),
        cov: field("cov:"),
        ft: field("ft:"),
    }
}

/// One line on why a run failed: libFuzzer's verdict, the panic and the saved input.
pub fn failure_summary(output: &str, status: ExitStatus) -> String {
    let find = |needle: &str| {
        output
            .lines()
            .find(|line| line.contains(needle))
            .map(str::trim)
    };
    let verdict = find("==ERROR: libFuzzer").or_else(|| find("ERROR: libFuzzer"));
    let panic = find("panicked at").map(|line| {
        let message = output
            .lines()
            .skip_while(|l| !l.contains("panicked at"))
            .nth(1)
            .unwrap_or_default();
        format!("{line} {}", message.trim())
    });
    let artifact = output
        .lines()
        .find_map(|line| line.split("Test unit written to ").nth(1))
        .map(|path| {
            let path = path.trim();
            // A CI log outlives the checkout: small inputs are printed too.
            match std::fs::read(path) {
                Ok(bytes) if bytes.len() <= 4096 => {
                    format!("input saved to {path} (base64: {})", STANDARD.encode(bytes))
                }
                _ => format!("input saved to {path}"),
            }
        });
    let parts: Vec<String> = [verdict.map(str::to_owned), panic, artifact]
        .into_iter()
        .flatten()
        .collect();
    if parts.is_empty() {
        format!("cargo fuzz run exited with {status}")
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "\
INFO: Seed: 42
#2\tINITED cov: 10 ft: 11 corp: 1/1b exec/s: 0 rss: 30Mb
#1048576\tpulse  cov: 120 ft: 340 corp: 30/2Kb lim: 4096 exec/s: 349525 rss: 40Mb
#3000000\tDONE   cov: 125 ft: 351 corp: 31/2Kb lim: 4096 exec/s: 300000 rss: 41Mb
Done 3000000 runs in 10 second(s)
stat::number_of_executed_units: 3000000
stat::average_exec_per_sec:     300000
stat::new_units_added:          30
";

    #[test]
    fn final_stats_and_the_last_coverage_are_read() {
        assert_eq!(
            final_stats(OUTPUT),
            FinalStats {
                executions: Some(3_000_000),
                exec_per_sec: Some(300_000),
                cov: Some(125),
                ft: Some(351),
            }
        );
    }

    #[test]
    fn missing_figures_stay_unknown() {
        assert_eq!(
            final_stats("error: could not compile"),
            FinalStats::default()
        );
    }
}
