//! The figures the edge's charts are drawn from (`xtask/results/edge.json`): every
//! round's req/s of each case, and wrk's percentiles of its median round, as in the table.

use super::rounds::{CaseRounds, median_index};
use crate::charts::figures::{EdgeCase, EdgeFigures, Percentile};

/// `cases` in the table's order.
pub fn edge_figures(run: &str, rounds: usize, cases: &[&CaseRounds]) -> EdgeFigures {
    EdgeFigures {
        run: run.to_owned(),
        rounds,
        note: None,
        cases: cases
            .iter()
            .filter_map(|case| {
                let per_second = case.per_second();
                let median = median_index(&per_second);
                let measured = &case.runs.get(median)?.measured;
                let ms = |us: u64| us as f64 / 1000.0;
                Some(EdgeCase {
                    key: case.key.to_owned(),
                    label: case.label.to_owned(),
                    median_round: median + 1,
                    per_second,
                    latency_ms: vec![
                        Percentile {
                            percentile: 50.0,
                            ms: ms(measured.p50_us),
                        },
                        Percentile {
                            percentile: 90.0,
                            ms: ms(measured.p90_us),
                        },
                        Percentile {
                            percentile: 99.0,
                            ms: ms(measured.p99_us),
                        },
                    ],
                    errors: case.errors(),
                })
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::charts::figures::Figures as _;

    /// `edge.json` may have been written by hand from a report's table: its median rounds
    /// must still be the ones this benchmark would pick, or the chart marks another round.
    #[test]
    fn committed_figures_mark_the_median_round_as_the_report_picks_it() {
        let path = crate::charts::results_dir().join("edge.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let figures: EdgeFigures = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} does not read: {e}", path.display()));
        if let Err(e) = figures.validate() {
            panic!("{}: {e:#}", path.display());
        }
        for case in &figures.cases {
            assert_eq!(
                case.median_round,
                median_index(&case.per_second) + 1,
                "case {}: round {} is marked as the median of {:?}",
                case.key,
                case.median_round,
                case.per_second
            );
        }
    }
}
