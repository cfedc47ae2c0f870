//! `cargo xtask fuzz`: runs the fuzz targets of `fuzz/` (cargo fuzz, libFuzzer) one after
//! another, each for a time budget (and optionally a number of executions), then prints
//! the executions, speed and coverage of each and fails if any target crashed.
//!
//! Stable Rust only: the targets are built with `--sanitizer none` (AddressSanitizer
//! needs a nightly compiler), which still gives libFuzzer its coverage instrumentation;
//! the code under test forbids `unsafe`, so the sanitizer would add little.

mod libfuzzer;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use libfuzzer::FinalStats;

use crate::bench_edge::tools::cargo_command;

const USAGE: &str =
    "usage: cargo xtask fuzz [TARGET...] [--time DURATION] [--runs N] [--cmin] [--dev]

  TARGET         targets to run (default: every file in fuzz/fuzz_targets/)
  --time D       budget per target: 90s, 30m, 1h (default 60s)
  --runs N       stop a target after N executions, if that comes before --time
  --cmin         minimize each target's corpus (cargo fuzz cmin) after its run
  --dev          build without optimizations (faster to build, slower to run)

Corpora: fuzz/corpus/<target>/ (grows; the committed one is minimized) read with the
hand-made seeds in fuzz/seeds/<target>/. Crashes: fuzz/artifacts/<target>/.
Logs: fuzz/logs/<target>.log. cargo-fuzz is installed when missing.";

/// What to run and for how long.
#[derive(Debug, Clone)]
pub struct Options {
    pub targets: Vec<String>,
    pub time: Duration,
    pub runs: Option<u64>,
    pub cmin: bool,
    pub dev: bool,
    /// Whether new inputs go into `fuzz/corpus/<target>/` (else a temporary directory,
    /// so a test run leaves the checkout as it was).
    pub grow_corpus: bool,
}

impl Options {
    fn parse(args: &[String]) -> anyhow::Result<Option<Self>> {
        let mut options = Self {
            targets: Vec::new(),
            time: Duration::from_secs(60),
            runs: None,
            cmin: false,
            dev: false,
            grow_corpus: true,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--time" => {
                    let value = args.next().context("--time needs a value")?;
                    options.time = parse_duration(value)?;
                }
                "--runs" => {
                    let value = args.next().context("--runs needs a value")?;
                    options.runs = Some(value.parse().with_context(|| format!("--runs {value}"))?);
                }
                "--cmin" => options.cmin = true,
                "--dev" => options.dev = true,
                "-h" | "--help" => return Ok(None),
                flag if flag.starts_with('-') => bail!("fuzz: unknown option `{flag}`\n\n{USAGE}"),
                target => options.targets.push(target.to_owned()),
            }
        }
        Ok(Some(options))
    }
}

/// `90s`, `30m`, `1h`, or plain seconds.
fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let number: u64 = number
        .parse()
        .with_context(|| format!("`{text}` is not a duration like 90s, 30m or 1h"))?;
    let seconds = match unit {
        "s" => number,
        "m" => number * 60,
        "h" => number * 3600,
        _ => bail!("`{text}`: the unit must be s, m or h"),
    };
    Ok(Duration::from_secs(seconds))
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let Some(options) = Options::parse(args)? else {
        eprintln!("{USAGE}");
        return Ok(());
    };
    ensure_cargo_fuzz()?;
    let reports = run_targets(&repo_root(), &options)?;
    print_table(&reports);
    check_reports(&reports)
}

/// The repository: `fuzz/` and `fuzz_targets/` are found from here.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Whether `cargo fuzz` answers.
pub fn cargo_fuzz_installed() -> bool {
    cargo_command()
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Installs cargo-fuzz from crates.io when `cargo fuzz` does not answer.
fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    if cargo_fuzz_installed() {
        return Ok(());
    }
    eprintln!("cargo-fuzz is missing; installing it: cargo install cargo-fuzz --locked");
    let status = cargo_command()
        .args(["install", "cargo-fuzz", "--locked"])
        .status()
        .context("running cargo install cargo-fuzz")?;
    if !status.success() || !cargo_fuzz_installed() {
        bail!("cargo install cargo-fuzz --locked failed ({status})");
    }
    Ok(())
}

/// The targets: one file each in `fuzz/fuzz_targets/`.
pub fn all_targets(root: &Path) -> anyhow::Result<Vec<String>> {
    let dir = root.join("fuzz/fuzz_targets");
    let mut targets = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "rs")
            && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
        {
            targets.push(stem.to_owned());
        }
    }
    targets.sort();
    Ok(targets)
}

/// How one target's run went.
#[derive(Debug, Clone)]
pub struct TargetReport {
    pub target: String,
    pub stats: FinalStats,
    pub elapsed: Duration,
    pub corpus_files: usize,
    pub corpus_bytes: u64,
    pub log: PathBuf,
    /// Why the run failed (a crash, a timeout, a failed build), if it did.
    pub failure: Option<String>,
}

fn build_flags(options: &Options) -> Vec<&'static str> {
    let mut flags = vec!["--sanitizer", "none"];
    if options.dev {
        flags.push("--dev");
    }
    flags
}

/// Builds every chosen target once, then runs each in turn.
pub fn run_targets(root: &Path, options: &Options) -> anyhow::Result<Vec<TargetReport>> {
    let known = all_targets(root)?;
    let targets = if options.targets.is_empty() {
        known
    } else {
        for target in &options.targets {
            if !known.contains(target) {
                bail!("no fuzz target `{target}` (known: {})", known.join(", "));
            }
        }
        options.targets.clone()
    };
    let logs = root.join("fuzz/logs");
    std::fs::create_dir_all(&logs)?;
    eprintln!(
        "building {} fuzz target(s): cargo fuzz build {}",
        targets.len(),
        build_flags(options).join(" ")
    );
    let build_log = logs.join("build.log");
    let mut build = cargo_command();
    build
        .current_dir(root)
        .args(["fuzz", "build"])
        .args(build_flags(options));
    if targets.len() == 1 {
        build.arg(&targets[0]);
    }
    run_logged(&mut build, &build_log)
        .and_then(|status| {
            if status.success() {
                Ok(())
            } else {
                bail!("{status}")
            }
        })
        .with_context(|| format!("cargo fuzz build failed; see {}", build_log.display()))?;
    targets
        .iter()
        .map(|target| run_target(root, target, options))
        .collect()
}

fn run_logged(command: &mut Command, log: &Path) -> anyhow::Result<std::process::ExitStatus> {
    let file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let status = command
        .stdout(file.try_clone()?)
        .stderr(file)
        .status()
        .context("starting cargo")?;
    Ok(status)
}

fn run_target(root: &Path, target: &str, options: &Options) -> anyhow::Result<TargetReport> {
    let corpus = root.join("fuzz/corpus").join(target);
    let seeds = root.join("fuzz/seeds").join(target);
    let artifacts = root.join("fuzz/artifacts").join(target);
    std::fs::create_dir_all(&corpus)?;
    std::fs::create_dir_all(&artifacts)?;
    let log = root.join("fuzz/logs").join(format!("{target}.log"));
    eprintln!(
        "fuzzing {target} for {}s{} (log: {})",
        options.time.as_secs(),
        options
            .runs
            .map(|r| format!(" or {r} executions"))
            .unwrap_or_default(),
        log.display()
    );
    // libFuzzer writes new inputs into the first directory and only reads the others.
    let scratch = tempfile::tempdir()?;
    let mut command = cargo_command();
    command
        .current_dir(root)
        .args(["fuzz", "run"])
        .args(build_flags(options))
        .arg(target);
    if !options.grow_corpus {
        command.arg(scratch.path());
    }
    command.arg(&corpus);
    if seeds.is_dir() {
        command.arg(&seeds);
    }
    command.arg("--").args([
        format!("-max_total_time={}", options.time.as_secs().max(1)),
        format!("-artifact_prefix={}/", artifacts.display()),
        "-print_final_stats=1".to_owned(),
        // A single input taking this long is a finding (a hang), not a slow machine.
        "-timeout=10".to_owned(),
        "-rss_limit_mb=2048".to_owned(),
    ]);
    if let Some(runs) = options.runs {
        command.arg(format!("-runs={runs}"));
    }
    let started = Instant::now();
    let status = run_logged(&mut command, &log)?;
    let elapsed = started.elapsed();
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    let stats = libfuzzer::final_stats(&output);
    let failure = (!status.success()).then(|| libfuzzer::failure_summary(&output, status));
    if options.cmin && failure.is_none() {
        minimize(root, target, options)?;
    }
    let (corpus_files, corpus_bytes) = dir_size(&corpus)?;
    Ok(TargetReport {
        target: target.to_owned(),
        stats,
        elapsed,
        corpus_files,
        corpus_bytes,
        log,
        failure,
    })
}

/// `cargo fuzz cmin`: keeps the smallest set of corpus files with the same coverage.
fn minimize(root: &Path, target: &str, options: &Options) -> anyhow::Result<()> {
    let log = root.join("fuzz/logs").join(format!("{target}.cmin.log"));
    eprintln!("minimizing the corpus of {target} (log: {})", log.display());
    let mut command = cargo_command();
    command
        .current_dir(root)
        .args(["fuzz", "cmin"])
        .args(build_flags(options))
        .arg(target)
        .arg(root.join("fuzz/corpus").join(target));
    let status = run_logged(&mut command, &log)?;
    if !status.success() {
        bail!(
            "cargo fuzz cmin {target} failed ({status}); see {}",
            log.display()
        );
    }
    Ok(())
}

fn dir_size(dir: &Path) -> anyhow::Result<(usize, u64)> {
    let mut files = 0;
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir)? {
        let metadata = entry?.metadata()?;
        if metadata.is_file() {
            files += 1;
            bytes += metadata.len();
        }
    }
    Ok((files, bytes))
}

#[allow(clippy::print_stdout, reason = "the table is the command's output")]
fn print_table(reports: &[TargetReport]) {
    println!(
        "| target | executions | exec/s | cov | ft | corpus (files / bytes) | time | result |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    for r in reports {
        let s = &r.stats;
        let show = |v: Option<u64>| v.map_or_else(|| "?".to_owned(), |v| v.to_string());
        println!(
            "| {} | {} | {} | {} | {} | {} / {} | {}s | {} |",
            r.target,
            show(s.executions),
            show(s.exec_per_sec),
            show(s.cov),
            show(s.ft),
            r.corpus_files,
            r.corpus_bytes,
            r.elapsed.as_secs(),
            r.failure.as_deref().unwrap_or("ok"),
        );
    }
}

/// Fails when any target failed, naming each with its log.
pub fn check_reports(reports: &[TargetReport]) -> anyhow::Result<()> {
    let failed: Vec<String> = reports
        .iter()
        .filter_map(|r| {
            r.failure
                .as_ref()
                .map(|why| format!("{}: {why} (log: {})", r.target, r.log.display()))
        })
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        bail!("fuzz targets failed:\n  {}", failed.join("\n  "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_seconds_minutes_and_hours() {
        for (text, seconds) in [("90", 90), ("90s", 90), ("30m", 1800), ("1h", 3600)] {
            assert_eq!(
                parse_duration(text).ok(),
                Some(Duration::from_secs(seconds)),
                "{text}"
            );
        }
        for bad in ["", "m", "5d", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
    }

    /// CI's smoke: builds every target, replays its committed corpus and seeds and
    /// fuzzes each briefly. Needs cargo-fuzz (`deploy/local/mesh test` installs it).
    #[test]
    fn every_fuzz_target_replays_its_corpus_and_survives_a_short_run() {
        assert!(
            cargo_fuzz_installed(),
            "cargo-fuzz is not installed, so the fuzz targets cannot be built: run \
             `cargo install cargo-fuzz --locked` (deploy/local/mesh test installs it)"
        );
        let root = repo_root();
        let options = Options {
            targets: Vec::new(),
            time: SMOKE_TIME,
            runs: None,
            cmin: false,
            // Unoptimized: a shorter build matters more here than speed over 5 s.
            dev: true,
            grow_corpus: false,
        };
        let reports = match run_targets(&root, &options) {
            Ok(reports) => reports,
            Err(error) => panic!("{error:#}"),
        };
        assert_eq!(
            reports.len(),
            all_targets(&root).map(|t| t.len()).unwrap_or_default(),
            "not every target ran"
        );
        for report in &reports {
            // libFuzzer says INITED once every corpus and seed input has run.
            let log = std::fs::read_to_string(&report.log).unwrap_or_default();
            assert!(
                report.failure.is_some()
                    || (log.contains("INITED") && report.stats.executions.unwrap_or(0) > 0),
                "{} did not replay its corpus (log: {})",
                report.target,
                report.log.display()
            );
        }
        if let Err(error) = check_reports(&reports) {
            panic!("{error:#}");
        }
    }

    /// Per target in the smoke: enough to replay the corpus and mutate a little.
    const SMOKE_TIME: Duration = Duration::from_secs(5);
}
