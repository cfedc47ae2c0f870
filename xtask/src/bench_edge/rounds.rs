//! Rounds: every case runs once per round, the order reversed every other round, and the
//! figures are reduced to medians, so a machine whose speed drifts over minutes cannot
//! decide a ratio by which side it happened to measure while it was fast.

use super::run_case::CaseResult;

/// The order of round `round` (counted from 0): as given in even rounds, reversed in odd
/// ones, so of two cases that run next to each other neither is always measured first.
pub fn round_order<T: Copy>(items: &[T], round: usize) -> Vec<T> {
    let mut order = items.to_vec();
    if round % 2 == 1 {
        order.reverse();
    }
    order
}

/// The index of the median of `values`; of an even count the lower of the two middle
/// values (a conservative figure, and always one that was measured). 0 when empty.
pub fn median_index(values: &[f64]) -> usize {
    let mut indices: Vec<usize> = (0..values.len()).collect();
    // Stable: of equal values the earlier round is taken.
    indices.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    indices
        .get(values.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0)
}

/// Every round's run of one case, in round order.
#[derive(Debug)]
pub struct CaseRounds {
    pub key: &'static str,
    pub label: &'static str,
    pub runs: Vec<CaseResult>,
}

impl CaseRounds {
    pub fn per_second(&self) -> Vec<f64> {
        self.runs.iter().map(|r| r.measured.per_second()).collect()
    }

    /// The run whose req/s is the median: its latencies, CPU and load are reported.
    pub fn median_run(&self) -> Option<&CaseResult> {
        self.runs.get(median_index(&self.per_second()))
    }

    pub fn errors(&self) -> u64 {
        self.runs.iter().map(CaseResult::errors).sum()
    }
}

/// A target's ratio over the rounds: numerator / denominator within each round, whose
/// two runs were measured minutes apart at most, and the median of those ratios.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundRatios {
    pub per_round: Vec<f64>,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl RoundRatios {
    /// `None` when no round has both sides.
    pub fn new(numerator: &[f64], denominator: &[f64]) -> Option<Self> {
        let per_round: Vec<f64> = numerator
            .iter()
            .zip(denominator)
            .map(|(n, d)| n / d.max(1.0))
            .collect();
        let median = *per_round.get(median_index(&per_round))?;
        Some(Self {
            median,
            min: per_round.iter().copied().fold(f64::INFINITY, f64::min),
            max: per_round.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            per_round,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench_edge::cases::CASES;

    #[test]
    fn median_index_of_odd_count_is_the_middle_value() {
        assert_eq!(median_index(&[41_230.0, 39_870.0, 43_010.0]), 0);
        assert_eq!(median_index(&[5.0, 1.0, 3.0, 4.0, 2.0]), 2);
        assert_eq!(median_index(&[7.0]), 0);
    }

    #[test]
    fn median_index_of_even_count_is_the_lower_middle_value() {
        assert_eq!(median_index(&[30.0, 10.0]), 1, "of two rounds, the slower");
        assert_eq!(
            median_index(&[40.0, 10.0, 30.0, 20.0]),
            3,
            "of 10, 20, 30, 40 the lower median is 20, measured in round 3"
        );
    }

    #[test]
    fn median_index_of_ties_takes_the_earlier_round_and_of_nothing_zero() {
        assert_eq!(median_index(&[2.0, 2.0, 2.0]), 1);
        assert_eq!(median_index(&[3.0, 1.0, 1.0]), 2);
        assert_eq!(median_index(&[]), 0);
    }

    #[test]
    fn round_ratios_pair_runs_of_the_same_round_and_take_the_median() {
        let ratios = RoundRatios::new(&[90.0, 60.0, 120.0], &[100.0, 100.0, 100.0])
            .unwrap_or_else(|| panic!("three rounds on both sides gave no ratios"));
        assert_eq!(ratios.per_round, vec![0.9, 0.6, 1.2]);
        assert_eq!(ratios.median, 0.9);
        assert_eq!((ratios.min, ratios.max), (0.6, 1.2));
    }

    #[test]
    fn round_ratios_of_even_count_take_the_lower_median() {
        let ratios = RoundRatios::new(&[80.0, 100.0], &[100.0, 100.0])
            .unwrap_or_else(|| panic!("two rounds on both sides gave no ratios"));
        assert_eq!(ratios.median, 0.8);
    }

    #[test]
    fn round_ratios_need_a_round_with_both_sides() {
        assert_eq!(RoundRatios::new(&[], &[100.0]), None);
    }

    #[test]
    fn order_alternates_so_no_side_of_a_target_always_runs_first() {
        let cases: Vec<&str> = CASES.iter().map(|c| c.key).collect();
        assert_eq!(
            round_order(&cases, 0),
            cases,
            "round 1 runs in the listed order"
        );
        assert_eq!(
            round_order(&cases, 2),
            cases,
            "round 3 runs in the listed order"
        );
        let reversed: Vec<&str> = cases.iter().rev().copied().collect();
        assert_eq!(round_order(&cases, 1), reversed, "round 2 runs reversed");
        for (first, second) in [
            ("b", "d"),
            ("c-eddsa", "e-eddsa"),
            ("c-rs256", "e-rs256"),
            ("g", "f"),
            ("d-500", "h"),
            ("h", "g-500"),
        ] {
            let runs_first = |round| {
                let order = round_order(&cases, round);
                let at = |key| order.iter().position(|k| *k == key);
                at(first) < at(second)
            };
            assert_ne!(
                runs_first(0),
                runs_first(1),
                "{first} and {second} ran in the same order in rounds 1 and 2"
            );
        }
    }
}
