//! The figures of one run: a table on the terminal, `xtask/results/services.md`, and
//! `services.json` for the chart.

use std::fmt::Write as _;
use std::time::Duration;

use super::cpu::Usage;
use super::load::Measurement;
use crate::charts::figures::{Percentile, Scenario, ServicesFigures};

/// The percentiles the chart draws.
const CHARTED_PERCENTILES: [f64; 4] = [50.0, 90.0, 95.0, 99.0];

/// One measured scenario.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub measurement: Measurement,
    pub cpu: Usage,
}

/// A target of issue #3 with its measurement and the bare-edge reference at the same rate.
#[derive(Debug, Clone)]
pub struct Target {
    pub what: &'static str,
    pub limit: Duration,
    pub measured: Row,
    pub reference: Row,
}

impl Target {
    /// Met when p95 is under the limit and every request answered 200.
    pub fn passed(&self) -> bool {
        self.measured.measurement.percentile(95.0) < self.limit
            && self.measured.measurement.error_count() == 0
    }

    fn verdict(&self) -> &'static str {
        if self.passed() { "PASS" } else { "FAIL" }
    }

    /// p95 above the reference's p95: what the services add to the bare edge.
    fn service_cost(&self) -> Duration {
        self.measured
            .measurement
            .percentile(95.0)
            .saturating_sub(self.reference.measurement.percentile(95.0))
    }
}

/// Everything the report says besides the figures.
#[derive(Debug, Clone)]
pub struct RunNotes {
    pub date: String,
    pub commit: String,
    pub machine: String,
    pub load_before: String,
    pub setup: Vec<String>,
    pub solo: Solo,
}

/// Median latencies with one request in flight at a time, on the idle mesh before the load.
#[derive(Debug, Clone, Copy)]
pub struct Solo {
    pub healthz: Duration,
    pub me: Duration,
    /// The setup's logins (one per user).
    pub login: Duration,
}

pub fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

fn errors(m: &Measurement) -> String {
    if m.errors.is_empty() {
        return "0".to_owned();
    }
    let detail: Vec<String> = m.errors.iter().map(|(r, n)| format!("{n}× {r}")).collect();
    format!("{} ({})", m.error_count(), detail.join(", "))
}

fn cpu(u: &Usage) -> String {
    format!(
        "{:.2} ({:.2} / {:.2} / {:.2})",
        u.busy,
        u.mesh,
        u.generator,
        u.others_total()
    )
}

/// The mesh's CPU time per answered request: what one request costs whatever else
/// the machine is doing.
fn cpu_per_request(row: &Row) -> Duration {
    let rate = row.measurement.achieved_rate;
    if rate > 0.0 {
        Duration::from_secs_f64(row.cpu.mesh / rate)
    } else {
        Duration::ZERO
    }
}

/// Each target's reference and measured scenario, in the tables' order, for the chart.
pub fn figures(notes: &RunNotes, targets: &[Target]) -> ServicesFigures {
    let scenario = |row: &Row, limit: Option<Percentile>| {
        let m = &row.measurement;
        Scenario {
            name: row.name.clone(),
            rate: m.rate,
            achieved_per_second: m.achieved_rate,
            requests: m.requests,
            errors: m.error_count(),
            latency_ms: CHARTED_PERCENTILES
                .iter()
                .map(|&percentile| Percentile {
                    percentile,
                    ms: m.percentile(percentile).as_secs_f64() * 1000.0,
                })
                .collect(),
            limit,
        }
    };
    ServicesFigures {
        run: notes.date.clone(),
        commit: notes.commit.clone(),
        scenarios: targets
            .iter()
            .flat_map(|t| {
                let limit = Percentile {
                    percentile: 95.0,
                    ms: t.limit.as_secs_f64() * 1000.0,
                };
                [
                    scenario(&t.reference, None),
                    scenario(&t.measured, Some(limit)),
                ]
            })
            .collect(),
    }
}

/// The table printed at the end of the run.
pub fn table(rows: &[&Row], targets: &[Target]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<28} {:>6} {:>9} {:>6} {:>10} {:>10} {:>10} {:>10}  {:<8} cpu cores busy (mesh / generator / other)",
        "scenario", "rate", "achieved", "reqs", "p50", "p95", "p99", "max", "errors"
    );
    for row in rows {
        let m = &row.measurement;
        let _ = writeln!(
            out,
            "{:<28} {:>4}/s {:>7.1}/s {:>6} {:>10} {:>10} {:>10} {:>10}  {:<8} {}",
            row.name,
            m.rate,
            m.achieved_rate,
            m.requests,
            ms(m.percentile(50.0)),
            ms(m.percentile(95.0)),
            ms(m.percentile(99.0)),
            ms(m.max()),
            errors(m),
            cpu(&row.cpu),
        );
    }
    out.push('\n');
    for target in targets {
        let _ = writeln!(
            out,
            "{}: {}  (p95 {} against < {}; bare edge p95 {}, services add {})",
            target.what,
            target.verdict(),
            ms(target.measured.measurement.percentile(95.0)),
            ms(target.limit),
            ms(target.reference.measurement.percentile(95.0)),
            ms(target.service_cost()),
        );
    }
    out
}

/// The Markdown written to `xtask/results/services.md`.
pub fn markdown(notes: &RunNotes, rows: &[&Row], targets: &[Target]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Service benchmark through the edge\n");
    let _ = writeln!(
        md,
        "Written by `cargo xtask bench-services` (issue #3); every run overwrites it.\n"
    );
    let _ = writeln!(md, "- Date: {}", notes.date);
    let _ = writeln!(md, "- Commit: {}", notes.commit);
    let _ = writeln!(md, "- Machine: {}", notes.machine);
    let _ = writeln!(md, "- Before the run: {}", notes.load_before);
    for line in &notes.setup {
        let _ = writeln!(md, "- {line}");
    }

    let _ = writeln!(md, "\n## Targets\n");
    let _ = writeln!(
        md,
        "| Target | p95 | Bare edge p95 (same rate) | Services add | Errors | Result |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---|");
    for t in targets {
        let _ = writeln!(
            md,
            "| {} < {} | {} | {} | {} | {} | **{}** |",
            t.what,
            ms(t.limit),
            ms(t.measured.measurement.percentile(95.0)),
            ms(t.reference.measurement.percentile(95.0)),
            ms(t.service_cost()),
            t.measured.measurement.error_count(),
            t.verdict(),
        );
    }
    let _ = writeln!(
        md,
        "\nOne request at a time on the idle mesh, before the load (median): \
         `GET /healthz` {}, `GET /v1/users/me` {}, `POST /v1/auth/login` {} (the setup's \
         logins, argon2id verification included).",
        ms(notes.solo.healthz),
        ms(notes.solo.me),
        ms(notes.solo.login)
    );

    let _ = writeln!(md, "\n## Figures\n");
    let _ = writeln!(
        md,
        "Latency runs from the moment a request was due to the end of its response body. \
         CPU is in cores busy during the measured window (this machine has {} cores): the \
         mesh (every process the benchmark started), the load generator, the rest of the \
         machine, and the time the hypervisor gave to other guests (stolen).\n",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    let _ = writeln!(
        md,
        "| Scenario | Rate | Achieved | Requests | Errors | p50 | p95 | p99 | max | Generator lag p99 | CPU busy | mesh | mesh CPU per request | generator | other (largest) | stolen |"
    );
    let _ = writeln!(
        md,
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"
    );
    for row in rows {
        let m = &row.measurement;
        let _ = writeln!(
            md,
            "| {} | {}/s | {:.1}/s | {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {} | {:.2} | {:.2} ({}) | {:.2} |",
            row.name,
            m.rate,
            m.achieved_rate,
            m.requests,
            errors(m),
            ms(m.percentile(50.0)),
            ms(m.percentile(95.0)),
            ms(m.percentile(99.0)),
            ms(m.max()),
            ms(m.start_lag_p99),
            row.cpu.busy,
            row.cpu.mesh,
            ms(cpu_per_request(row)),
            row.cpu.generator,
            row.cpu.others_total(),
            row.cpu.others_summary(),
            row.cpu.stolen,
        );
    }
    let _ = writeln!(
        md,
        "\n### Where the mesh's CPU went (cores, measured window)\n"
    );
    for row in rows {
        let _ = writeln!(md, "- {}: {}", row.name, row.cpu.mesh_summary());
    }
    md
}
