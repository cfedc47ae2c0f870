//! The benchmarks' charts: each benchmark writes its figures as JSON beside its Markdown
//! table in `xtask/results/` and draws SVG charts from that JSON; `cargo xtask charts`
//! draws them again from the JSON alone, without running a benchmark.

pub mod figures;
mod latency;
pub(crate) mod style;
mod throughput;
#[cfg(test)]
mod xml_check;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use figures::{EdgeFigures, Figures, ServicesFigures};

const USAGE: &str = "usage: cargo xtask charts

Draws the benchmarks' SVG charts again from the figures they wrote
(xtask/results/edge.json, services.json), without running them:
  edge.json      -> edge-throughput.svg, edge-latency.svg
  services.json  -> services-latency.svg";

pub fn results_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("results")
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    if let Some(arg) = args.first() {
        if arg == "-h" || arg == "--help" {
            eprintln!("{USAGE}");
            return Ok(());
        }
        bail!("charts: unknown argument `{arg}`\n\n{USAGE}");
    }
    let dir = results_dir();
    let mut drawn = 0;
    if let Some(edge) = read_figures::<EdgeFigures>(&dir)? {
        write_charts(&dir, &edge_charts(&edge)?)?;
        drawn += 1;
    }
    if let Some(services) = read_figures::<ServicesFigures>(&dir)? {
        write_charts(&dir, &services_charts(&services)?)?;
        drawn += 1;
    }
    if drawn == 0 {
        bail!(
            "no figures in {}: run `cargo xtask bench-edge` or `cargo xtask bench-services` first",
            dir.display()
        );
    }
    Ok(())
}

/// `edge.json` and the edge's charts, in `dir`.
pub fn write_edge(dir: &Path, figures: &EdgeFigures) -> anyhow::Result<()> {
    write_json(dir, figures)?;
    write_charts(dir, &edge_charts(figures)?)
}

/// `services.json` and the services' chart, in `dir`.
pub fn write_services(dir: &Path, figures: &ServicesFigures) -> anyhow::Result<()> {
    write_json(dir, figures)?;
    write_charts(dir, &services_charts(figures)?)
}

/// The figures of `T::FILE` in `dir`, or `None` when there is no such file.
fn read_figures<T: Figures>(dir: &Path) -> anyhow::Result<Option<T>> {
    let path = dir.join(T::FILE);
    let path = path.as_path();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("no {}: its charts are not drawn", path.display());
            return Ok(None);
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let figures: T =
        serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
    figures
        .validate()
        .with_context(|| format!("the figures in {}", path.display()))?;
    Ok(Some(figures))
}

/// Checked first, so a run never leaves figures that `cargo xtask charts` refuses.
fn write_json<T: Figures>(dir: &Path, figures: &T) -> anyhow::Result<()> {
    figures
        .validate()
        .with_context(|| format!("the figures for {}", T::FILE))?;
    let mut json = serde_json::to_string_pretty(figures)?;
    json.push('\n');
    write(&dir.join(T::FILE), &json)
}

fn write_charts(dir: &Path, charts: &[(&str, String)]) -> anyhow::Result<()> {
    for (name, svg) in charts {
        write(&dir.join(name), svg)?;
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// `edge-throughput.svg` and `edge-latency.svg`.
fn edge_charts(figures: &EdgeFigures) -> anyhow::Result<Vec<(&'static str, String)>> {
    let cases: Vec<throughput::Case<'_>> = figures
        .cases
        .iter()
        .map(|c| throughput::Case {
            key: &c.key,
            per_round: &c.per_second,
            median: c.median_per_second(),
        })
        .collect();
    let throughput = throughput::svg(&throughput::Chart {
        title: "bench-edge: requests per second per case",
        subtitle: &format!(
            "Run {}, {} rounds. Bar and figure: the median round; dots: every round; \
             line: slowest to fastest round.",
            figures.run, figures.rounds
        ),
        cases: &cases,
    })?;
    let groups: Vec<latency::Group<'_>> = figures
        .cases
        .iter()
        .map(|c| latency::Group {
            label: &c.key,
            percentiles: &c.latency_ms,
            limit: None,
        })
        .collect();
    let latency = latency::svg(&latency::Chart {
        title: "bench-edge: latency per case (wrk, the median round)",
        subtitle: &format!("Run {}; 16 connections, one Envoy worker.", figures.run),
        x_desc: "case",
        groups: &groups,
    })?;
    Ok(vec![
        ("edge-throughput.svg", throughput),
        ("edge-latency.svg", latency),
    ])
}

/// `services-latency.svg`: the services run at fixed rates, so latency is their figure.
fn services_charts(figures: &ServicesFigures) -> anyhow::Result<Vec<(&'static str, String)>> {
    let labels: Vec<String> = figures
        .scenarios
        .iter()
        .map(|s| format!("{} at {}/s", s.name, s.rate))
        .collect();
    let groups: Vec<latency::Group<'_>> = figures
        .scenarios
        .iter()
        .zip(&labels)
        .map(|(s, label)| latency::Group {
            label,
            percentiles: &s.latency_ms,
            limit: s.limit,
        })
        .collect();
    let latency = latency::svg(&latency::Chart {
        title: "bench-services: latency through the edge (open loop, fixed rate)",
        subtitle: &format!(
            "Run {}, commit {}. Each target beside the bare edge's GET /healthz at its rate.",
            figures.run, figures.commit
        ),
        x_desc: "scenario",
        groups: &groups,
    })?;
    Ok(vec![("services-latency.svg", latency)])
}

#[cfg(test)]
mod tests {
    use super::figures::{Percentile, Scenario};
    use super::*;

    /// The committed charts are what `cargo xtask charts` draws from the committed
    /// figures: neither was edited by hand nor left behind by a change to the drawing.
    #[test]
    fn committed_charts_are_drawn_from_committed_figures() {
        let dir = results_dir();
        let mut charts = Vec::new();
        let edge = read_figures::<EdgeFigures>(&dir)
            .unwrap_or_else(|e| panic!("{e:#}"))
            .unwrap_or_else(|| panic!("xtask/results/edge.json is missing"));
        charts.extend(edge_charts(&edge).unwrap_or_else(|e| panic!("{e:#}")));
        if let Some(services) =
            read_figures::<ServicesFigures>(&dir).unwrap_or_else(|e| panic!("{e:#}"))
        {
            charts.extend(services_charts(&services).unwrap_or_else(|e| panic!("{e:#}")));
        }
        for (name, drawn) in charts {
            let committed = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
            assert!(
                committed == drawn,
                "xtask/results/{name} is not what its JSON draws: run `cargo xtask charts`"
            );
        }
    }

    #[test]
    fn services_chart_labels_each_scenario_with_its_rate() {
        let p = |percentile, ms| Percentile { percentile, ms };
        let scenario = |name: &str, rate, limit| Scenario {
            name: name.to_owned(),
            rate,
            achieved_per_second: f64::from(rate),
            requests: 200,
            errors: 0,
            latency_ms: vec![p(50.0, 1.0), p(95.0, 3.0), p(99.0, 4.0)],
            limit,
        };
        let figures = ServicesFigures {
            run: "2026-11-22 00:13 UTC".to_owned(),
            commit: "b5aaca9".to_owned(),
            scenarios: vec![
                scenario("GET /healthz (bare edge)", 20, None),
                scenario("POST /v1/auth/login", 20, Some(p(95.0, 100.0))),
            ],
        };
        let charts = services_charts(&figures).unwrap_or_else(|e| panic!("{e:#}"));
        let [(name, svg)] = charts.as_slice() else {
            panic!("one chart expected, got {}", charts.len());
        };
        assert_eq!(*name, "services-latency.svg");
        let doc = xml_check::Document::parse(svg).unwrap_or_else(|e| panic!("{e}"));
        let texts = doc.texts();
        for wanted in [
            "GET /healthz (bare edge) at 20/s",
            "POST /v1/auth/login at 20/s",
            "p95 < 100 ms",
        ] {
            assert!(
                texts.iter().any(|t| t == wanted),
                "no `{wanted}` in {texts:?}"
            );
        }
    }
}
