//! The figures a benchmark writes as JSON beside its Markdown table
//! (`xtask/results/edge.json`, `services.json`): what its charts are drawn from, so
//! `cargo xtask charts` can redraw them without running the benchmark again.

use anyhow::{bail, ensure};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A benchmark's figures as its JSON file holds them.
pub trait Figures: Serialize + DeserializeOwned {
    /// The file in `xtask/results/`.
    const FILE: &'static str;

    /// Fails on figures no chart can be drawn from.
    fn validate(&self) -> anyhow::Result<()>;
}

/// One latency percentile: `{"percentile": 99, "ms": 10.63}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentile {
    pub percentile: f64,
    pub ms: f64,
}

/// `cargo xtask bench-edge`: every case once per round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdgeFigures {
    /// When the run started, as its report says (`2026-12-02 14:40 UTC`).
    pub run: String,
    pub rounds: usize,
    /// Where the figures came from when a run did not write them itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub cases: Vec<EdgeCase>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdgeCase {
    pub key: String,
    pub label: String,
    /// Requests per second of each round, in round order.
    pub per_second: Vec<f64>,
    /// The round (counted from 1) whose req/s is the median over the rounds: the table's
    /// req/s, and the round its latencies are from.
    pub median_round: usize,
    /// wrk's latency percentiles of the median round, lowest percentile first.
    pub latency_ms: Vec<Percentile>,
    /// Summed over the rounds.
    pub errors: u64,
}

impl EdgeCase {
    pub fn median_per_second(&self) -> f64 {
        self.median_round
            .checked_sub(1)
            .and_then(|i| self.per_second.get(i))
            .copied()
            .unwrap_or(0.0)
    }
}

impl Figures for EdgeFigures {
    const FILE: &'static str = "edge.json";

    /// Every case has a figure per round and its median round among them.
    fn validate(&self) -> anyhow::Result<()> {
        ensure!(!self.cases.is_empty(), "no cases");
        for case in &self.cases {
            ensure!(
                case.per_second.len() == self.rounds,
                "case {}: {} req/s figures for {} rounds",
                case.key,
                case.per_second.len(),
                self.rounds
            );
            ensure!(
                (1..=self.rounds).contains(&case.median_round),
                "case {}: median round {} is not one of rounds 1 to {}",
                case.key,
                case.median_round,
                self.rounds
            );
            check_percentiles(&case.key, &case.latency_ms)?;
        }
        Ok(())
    }
}

/// `cargo xtask bench-services`: one measured window per scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServicesFigures {
    pub run: String,
    pub commit: String,
    pub scenarios: Vec<Scenario>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    pub name: String,
    /// The open loop's fixed rate, requests per second.
    pub rate: u32,
    pub achieved_per_second: f64,
    pub requests: usize,
    pub errors: usize,
    /// Lowest percentile first.
    pub latency_ms: Vec<Percentile>,
    /// The target this scenario is checked against; none for the bare-edge references.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<Percentile>,
}

impl Figures for ServicesFigures {
    const FILE: &'static str = "services.json";

    fn validate(&self) -> anyhow::Result<()> {
        ensure!(!self.scenarios.is_empty(), "no scenarios");
        for scenario in &self.scenarios {
            check_percentiles(&scenario.name, &scenario.latency_ms)?;
        }
        Ok(())
    }
}

fn check_percentiles(what: &str, percentiles: &[Percentile]) -> anyhow::Result<()> {
    ensure!(!percentiles.is_empty(), "{what}: no latency percentiles");
    for pair in percentiles.windows(2) {
        if pair[0].percentile >= pair[1].percentile {
            bail!(
                "{what}: percentiles out of order ({} before {})",
                pair[0].percentile,
                pair[1].percentile
            );
        }
    }
    for p in percentiles {
        ensure!(
            p.ms > 0.0 && p.ms.is_finite(),
            "{what}: p{} of {} ms cannot be drawn on a log scale",
            p.percentile,
            p.ms
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(per_second: Vec<f64>, median_round: usize) -> EdgeCase {
        EdgeCase {
            key: "a".to_owned(),
            label: "no filter".to_owned(),
            per_second,
            median_round,
            latency_ms: vec![
                Percentile {
                    percentile: 50.0,
                    ms: 0.5,
                },
                Percentile {
                    percentile: 99.0,
                    ms: 10.6,
                },
            ],
            errors: 0,
        }
    }

    #[test]
    fn edge_figures_survive_json() {
        let figures = EdgeFigures {
            run: "2026-12-02 14:40 UTC".to_owned(),
            rounds: 3,
            note: None,
            cases: vec![case(vec![100.0, 90.0, 110.0], 1)],
        };
        let json = serde_json::to_string(&figures).unwrap_or_default();
        assert!(!json.contains("note"), "an absent note is left out: {json}");
        let back: EdgeFigures = serde_json::from_str(&json)
            .unwrap_or_else(|e| panic!("edge figures did not read back ({e}): {json}"));
        assert_eq!(back, figures);
        assert_eq!(back.cases[0].median_per_second(), 100.0);
    }

    #[test]
    fn edge_figures_need_a_figure_per_round_and_a_median_among_them() {
        let with = |case| EdgeFigures {
            run: String::new(),
            rounds: 3,
            note: None,
            cases: vec![case],
        };
        assert!(with(case(vec![1.0, 2.0, 3.0], 2)).validate().is_ok());
        let short = with(case(vec![1.0, 2.0], 2)).validate();
        assert!(short.is_err(), "two figures for three rounds passed");
        let outside = with(case(vec![1.0, 2.0, 3.0], 4)).validate();
        assert!(outside.is_err(), "median round 4 of 3 passed");
        let zero = with(case(vec![1.0, 2.0, 3.0], 0)).validate();
        assert!(zero.is_err(), "median round 0 passed (rounds count from 1)");
    }

    #[test]
    fn percentiles_must_rise_and_be_positive() {
        let p = |percentile, ms| Percentile { percentile, ms };
        assert!(check_percentiles("x", &[p(50.0, 1.0), p(99.0, 2.0)]).is_ok());
        assert!(check_percentiles("x", &[p(99.0, 2.0), p(50.0, 1.0)]).is_err());
        assert!(check_percentiles("x", &[p(50.0, 0.0)]).is_err());
        assert!(check_percentiles("x", &[]).is_err());
    }
}
