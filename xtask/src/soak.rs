//! `cargo xtask soak`: the fault soak of `bulwark_e2e::soak` on release builds, for a
//! configured time. It prints each fault as it happens, then the error rate during each
//! fault and the time to recover, and the checks (audit events lost or duplicated, the
//! chain, refresh tokens redeemed twice, 5xx outside fault windows); it writes
//! `xtask/results/soak.md` and `soak.svg` (error rate and latency over time, the fault
//! windows shaded) and fails when a check fails.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use bulwark_e2e::soak::{SoakPlan, SoakReport};
use plotters::prelude::*;

use crate::bench_services::release;
use crate::charts::style::{self, AXIS_FONT, FONT, WIDTH};

const USAGE: &str =
    "usage: cargo xtask soak [--minutes N] [--rate R] [--replicas N] [--envoys M] [--no-build]

  --minutes N    how long the traffic runs (default 10; fractions allowed, e.g. 0.5)
  --rate R       requests per second of mixed traffic (default 100)
  --replicas N   replicas of every service (default 2, at least 2)
  --envoys M     Envoy instances (default 2)
  --no-build     skip the release builds (use the binaries and filter already built)

Writes xtask/results/soak.md and soak.svg.";

const STEPS: usize = 4;

fn step(n: usize, what: &str) {
    eprintln!("[{n}/{STEPS}] {what}");
}

pub async fn run(args: &[String]) -> anyhow::Result<()> {
    let mut plan = SoakPlan::new(Duration::from_secs(600));
    let mut build = true;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .with_context(|| format!("{name} needs a value\n\n{USAGE}"))
        };
        match arg.as_str() {
            "--minutes" => {
                let minutes: f64 = value("--minutes")?
                    .parse()
                    .ok()
                    .filter(|m: &f64| m.is_finite() && *m >= 0.5)
                    .with_context(|| {
                        format!("--minutes must be a number, at least 0.5\n\n{USAGE}")
                    })?;
                plan.duration = Duration::from_secs_f64(minutes * 60.0);
            }
            "--rate" => {
                plan.rate = value("--rate")?
                    .parse()
                    .ok()
                    .filter(|r| (1..=2000).contains(r))
                    .with_context(|| {
                        format!("--rate must be 1 to 2000 requests a second\n\n{USAGE}")
                    })?;
            }
            "--replicas" => {
                plan.replicas = value("--replicas")?
                    .parse()
                    .ok()
                    .filter(|n| (2..=5).contains(n))
                    .with_context(|| {
                        format!("--replicas must be 2 to 5 (a fault kills one of them)\n\n{USAGE}")
                    })?;
            }
            "--envoys" => {
                plan.envoys = value("--envoys")?
                    .parse()
                    .ok()
                    .filter(|n| (1..=4).contains(n))
                    .with_context(|| format!("--envoys must be 1 to 4\n\n{USAGE}"))?;
            }
            "--no-build" => build = false,
            "-h" | "--help" => {
                eprintln!("{USAGE}");
                return Ok(());
            }
            other => bail!("soak: unknown argument `{other}`\n\n{USAGE}"),
        }
    }

    // Before building: the build relinks this executable.
    release::release_dir(&release::this_executable()?)?;
    release::build_services_and_filter(build, step)?;
    step(
        3,
        &format!(
            "soaking for {:.1} minutes (faults every ~20 s)",
            plan.duration.as_secs_f64() / 60.0
        ),
    );
    let report = bulwark_e2e::soak::run(plan, |line| eprintln!("      {line}")).await?;

    step(4, "writing xtask/results/soak.md and soak.svg");
    let results = crate::charts::results_dir();
    let markdown = markdown(&report);
    std::fs::write(results.join("soak.md"), &markdown)
        .with_context(|| format!("writing {}", results.join("soak.md").display()))?;
    write_chart(&report, &results.join("soak.svg"))?;
    print_report(&markdown);
    let problems = report.problems();
    if !problems.is_empty() {
        bail!("the soak found problems:\n{}", problems.join("\n"));
    }
    Ok(())
}

#[expect(
    clippy::print_stdout,
    reason = "the report is the command's output; progress goes to stderr"
)]
fn print_report(markdown: &str) {
    println!("\n{markdown}");
}

fn markdown(report: &SoakReport) -> String {
    let plan = &report.plan;
    let traffic = &report.traffic;
    let mut md = String::new();
    let _ = writeln!(md, "# Fault soak (`cargo xtask soak`)\n");
    let _ = writeln!(
        md,
        "Run {} on {} cores, load average {} at the end. Release builds; {} replicas of every \
         service behind {} Envoys (one worker each), PostgreSQL and Redis, all on 127.0.0.1. \
         Traffic: {} requests a second for {:.1} minutes, open loop, over {} users: per 20 \
         requests 1 login, 5 authorization checks, 1 refresh and 13 `GET /v1/users/me`, each \
         with its own sampled trace id. A fault every ~20 s; its window runs from the fault \
         until 6 s after the component is back (ready again, or resumed).\n",
        now(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split(' ')
            .next()
            .unwrap_or("?"),
        plan.replicas,
        plan.envoys,
        plan.rate,
        traffic.elapsed.as_secs_f64() / 60.0,
        plan.users,
    );
    let _ = writeln!(md, "## Faults\n");
    let _ = writeln!(
        md,
        "| at | fault | back after | requests | failed | error rate | recovered after it was back |"
    );
    let _ = writeln!(md, "|---:|---|---:|---:|---:|---:|---:|");
    for window in &report.windows {
        let _ = writeln!(
            md,
            "| {:.1} s | {} | {:.1} s | {} | {} | {:.2} % | {:.2} s |",
            window.start.as_secs_f64(),
            window.fault,
            (window.back - window.start).as_secs_f64(),
            window.requests,
            window.failed,
            window.error_rate() * 100.0,
            window.recovery.as_secs_f64()
        );
    }
    let _ = writeln!(md, "\n## Checks\n");
    let audit = &report.audit;
    let outside = report.failures_outside.len();
    let mark = |ok: bool| if ok { "**PASS**" } else { "**FAIL**" };
    let _ = writeln!(md, "| check | result | |");
    let _ = writeln!(md, "|---|---|---|");
    let _ = writeln!(
        md,
        "| every login and refresh answered 200 has its audit event | {} of {} lost | {} |",
        audit.lost,
        audit.succeeded,
        mark(audit.lost == 0)
    );
    let _ = writeln!(
        md,
        "| no audit event twice (same trace id and action) | {} duplicated | {} |",
        audit.duplicated,
        mark(audit.duplicated == 0)
    );
    let _ = writeln!(
        md,
        "| the audit chain verifies (`VerifyChain`, {} events) | {} | {} |",
        audit.events,
        if audit.chain_ok { "intact" } else { "broken" },
        mark(audit.chain_ok)
    );
    let _ = writeln!(
        md,
        "| no refresh token redeemed twice ({} redeemed) | {} twice | {} |",
        traffic.redeemed.len(),
        report.redeemed_twice,
        mark(report.redeemed_twice == 0)
    );
    let _ = writeln!(
        md,
        "| a redeemed refresh token sent again is refused | {} | {} |",
        if report.reuse_refused {
            "401"
        } else {
            "accepted"
        },
        mark(report.reuse_refused)
    );
    let _ = writeln!(
        md,
        "| no 5xx (or unanswered request) outside the fault windows | {outside} | {} |",
        mark(outside == 0)
    );
    let _ = writeln!(
        md,
        "\nLogins and refreshes that failed at the client but whose event is in Audit \
         (committed, the answer lost to the fault): {}.\n",
        audit.committed_unanswered
    );
    let _ = writeln!(md, "## Traffic\n");
    let _ = writeln!(md, "| request | sent | answered 200 |");
    let _ = writeln!(md, "|---|---:|---:|");
    for (kind, sent, ok) in traffic.per_kind() {
        let _ = writeln!(md, "| {} | {sent} | {ok} |", kind.name());
    }
    let _ = writeln!(
        md,
        "\n{} requests in {:.1} s. ![error rate and latency over time](soak.svg)",
        traffic.outcomes.len(),
        traffic.elapsed.as_secs_f64()
    );
    md
}

fn now() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default()
}

const ERROR_COLOR: RGBColor = RGBColor(203, 24, 29);
const WINDOW_COLOR: RGBColor = RGBColor(240, 228, 200);
const P50_COLOR: RGBColor = RGBColor(66, 146, 198);
const P99_COLOR: RGBColor = RGBColor(8, 38, 84);

/// Two panels over the run's seconds: failed requests per second (%) and p50/p99
/// latency (log scale), with every fault's window shaded.
fn write_chart(report: &SoakReport, path: &Path) -> anyhow::Result<()> {
    let seconds = report.timeline.len().max(1) as f64;
    let windows: Vec<(f64, f64)> = report
        .windows
        .iter()
        .map(|w| (w.start.as_secs_f64(), w.end.as_secs_f64()))
        .collect();
    let max_error = report
        .timeline
        .iter()
        .map(|s| error_percent(s.failed, s.requests))
        .fold(1.0, f64::max)
        * 1.1;
    let max_ms = report
        .timeline
        .iter()
        .map(|s| s.p99_ms)
        .fold(10.0, f64::max)
        * 1.5;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, 720)).into_drawing_area();
        root.fill(&WHITE)?;
        let area = style::titled(
            &root,
            "Fault soak: errors and latency over time",
            &format!(
                "{} requests/s, {} replicas, {} Envoys; shaded: fault windows",
                report.plan.rate, report.plan.replicas, report.plan.envoys
            ),
        )?;
        let (top, bottom) = area.split_vertically(area.dim_in_pixel().1 / 2);

        let mut errors = ChartBuilder::on(&top)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..seconds, 0.0..max_error)?;
        errors
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .x_desc("seconds")
            .y_desc("failed requests (%)")
            .label_style(AXIS_FONT)
            .axis_desc_style(FONT)
            .draw()?;
        errors.draw_series(windows.iter().map(|&(start, end)| {
            Rectangle::new([(start, 0.0), (end, max_error)], WINDOW_COLOR.filled())
        }))?;
        errors
            .draw_series(LineSeries::new(
                report
                    .timeline
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (i as f64, error_percent(s.failed, s.requests))),
                ERROR_COLOR.stroke_width(2),
            ))?
            .label("failed %")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], ERROR_COLOR.stroke_width(2)));
        errors
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE)
            .label_font(AXIS_FONT)
            .draw()?;

        let mut latency = ChartBuilder::on(&bottom)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..seconds, (0.1..max_ms).log_scale())?;
        latency
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .x_desc("seconds")
            .y_desc("latency (ms, log scale)")
            .label_style(AXIS_FONT)
            .axis_desc_style(FONT)
            .draw()?;
        latency.draw_series(windows.iter().map(|&(start, end)| {
            Rectangle::new([(start, 0.1), (end, max_ms)], WINDOW_COLOR.filled())
        }))?;
        for (name, color, pick) in [
            (
                "p50",
                P50_COLOR,
                (|s: &bulwark_e2e::soak::Second| s.p50_ms) as fn(&_) -> f64,
            ),
            ("p99", P99_COLOR, |s: &bulwark_e2e::soak::Second| s.p99_ms),
        ] {
            latency
                .draw_series(LineSeries::new(
                    report
                        .timeline
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| s.requests > 0)
                        .map(|(i, s)| (i as f64, pick(s).max(0.1))),
                    color.stroke_width(2),
                ))?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 14, y)], color.stroke_width(2))
                });
        }
        latency
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE)
            .label_font(AXIS_FONT)
            .draw()?;
        root.present()?;
    }
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

fn error_percent(failed: usize, requests: usize) -> f64 {
    if requests == 0 {
        0.0
    } else {
        failed as f64 * 100.0 / requests as f64
    }
}
