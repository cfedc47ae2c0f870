//! Latency percentiles per case: a group of bars per case, one per percentile, on a
//! logarithmic axis (a fast case's p50 and a slow one's p99 are three orders apart), with
//! a case's target drawn over its group where it has one.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::figures::Percentile;
use super::style::{self, AXIS_FONT, FONT, HEIGHT, WIDTH};

/// Lighter for lower percentiles; a chart with more percentiles reuses the darkest.
pub const SERIES_COLORS: [RGBColor; 4] = [
    RGBColor(158, 202, 225),
    RGBColor(66, 146, 198),
    RGBColor(8, 81, 156),
    RGBColor(8, 38, 84),
];
pub const LIMIT_COLOR: RGBColor = RGBColor(203, 24, 29);
/// The share of a category's width its bars take.
const GROUP_WIDTH: f64 = 0.8;

#[derive(Debug, Clone, Copy)]
pub struct Group<'a> {
    pub label: &'a str,
    /// Lowest percentile first.
    pub percentiles: &'a [Percentile],
    /// A target on one percentile, drawn as a line over the group.
    pub limit: Option<Percentile>,
}

#[derive(Debug, Clone, Copy)]
pub struct Chart<'a> {
    pub title: &'a str,
    pub subtitle: &'a str,
    pub x_desc: &'a str,
    pub groups: &'a [Group<'a>],
}

/// Every percentile any group has, lowest first: one bar series each.
fn series(groups: &[Group<'_>]) -> Vec<f64> {
    let mut all: Vec<f64> = groups
        .iter()
        .flat_map(|g| g.percentiles.iter().map(|p| p.percentile))
        .collect();
    all.sort_by(f64::total_cmp);
    all.dedup();
    all
}

pub fn series_color(index: usize) -> RGBColor {
    SERIES_COLORS[index.min(SERIES_COLORS.len() - 1)]
}

/// `p50`, `p99.9`.
fn percentile_name(percentile: f64) -> String {
    format!("p{percentile}")
}

fn ms_label(ms: f64) -> String {
    if ms < 1.0 {
        format!("{ms} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// The chart as an SVG document.
pub fn svg(chart: &Chart<'_>) -> anyhow::Result<String> {
    let series = series(chart.groups);
    let values = chart
        .groups
        .iter()
        .flat_map(|g| g.percentiles.iter().chain(g.limit.as_ref()).map(|p| p.ms));
    let (low, high) = log_bounds(values);
    let labels: Vec<&str> = chart.groups.iter().map(|g| g.label).collect();
    let bar_width = GROUP_WIDTH / series.len().max(1) as f64;
    let left_of =
        |group: usize, slot: usize| group as f64 - GROUP_WIDTH / 2.0 + slot as f64 * bar_width;

    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let area = style::titled(&root, chart.title, chart.subtitle)?;
        let mut plot = ChartBuilder::on(&area)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(76)
            .build_cartesian_2d(
                style::categories(labels.len()),
                (low..high).log_scale().with_key_points(ticks(low, high)),
            )?;
        plot.configure_mesh()
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .x_desc(chart.x_desc)
            .y_desc("latency (log scale)")
            .x_label_formatter(&|x| style::category_label(&labels, *x))
            .y_label_formatter(&|y| ms_label(*y))
            .label_style(AXIS_FONT)
            .axis_desc_style(FONT)
            .draw()?;

        for (slot, &percentile) in series.iter().enumerate() {
            let color = series_color(slot);
            let bars = chart.groups.iter().enumerate().filter_map(|(group, g)| {
                let found = g.percentiles.iter().find(|p| p.percentile == percentile)?;
                let left = left_of(group, slot);
                Some(Rectangle::new(
                    [(left, low), (left + bar_width * 0.9, found.ms)],
                    color.filled(),
                ))
            });
            plot.draw_series(bars)?
                .label(percentile_name(percentile))
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled())
                });
        }

        let limits: Vec<(usize, Percentile)> = chart
            .groups
            .iter()
            .enumerate()
            .filter_map(|(i, g)| Some((i, g.limit?)))
            .collect();
        if !limits.is_empty() {
            plot.draw_series(limits.iter().map(|&(group, limit)| {
                PathElement::new(
                    [
                        (left_of(group, 0) - 0.03, limit.ms),
                        (left_of(group, series.len()) + 0.03, limit.ms),
                    ],
                    LIMIT_COLOR.stroke_width(2),
                )
            }))?
            .label("target")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], LIMIT_COLOR.stroke_width(2)));
            plot.draw_series(limits.iter().map(|&(group, limit)| {
                Text::new(
                    format!(
                        "{} < {}",
                        percentile_name(limit.percentile),
                        ms_label(limit.ms)
                    ),
                    (left_of(group, 0), limit.ms),
                    TextStyle::from(AXIS_FONT)
                        .color(&LIMIT_COLOR)
                        .pos(Pos::new(HPos::Left, VPos::Bottom)),
                )
            }))?;
        }

        plot.configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font(AXIS_FONT)
            .draw()?;
        root.present()?;
    }
    Ok(out)
}

/// The 1-2-5 steps around `values`, with room above for the target labels and legend.
fn log_bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (min, max) = values
        .filter(|v| *v > 0.0 && v.is_finite())
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if max == 0.0 {
        return (0.1, 10.0);
    }
    let below = steps_around(min / 1.2)
        .into_iter()
        .rfind(|s| *s <= min / 1.2);
    let above = steps_around(max * 4.0)
        .into_iter()
        .find(|s| *s >= max * 4.0);
    (below.unwrap_or(min / 2.0), above.unwrap_or(max * 5.0))
}

/// 1, 2 and 5 times the powers of ten from one below `value`'s to one above.
fn steps_around(value: f64) -> Vec<f64> {
    let power = value.log10().floor() as i32;
    (power - 1..=power + 1)
        .flat_map(|p| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(p)))
        .collect()
}

/// The axis' labelled values: every 1-2-5 step from `low` to `high`.
fn ticks(low: f64, high: f64) -> Vec<f64> {
    let first = low.log10().floor() as i32;
    let last = high.log10().ceil() as i32;
    (first..=last)
        .flat_map(|p| [1.0, 2.0, 5.0].map(|m| round_step(m * 10f64.powi(p))))
        .filter(|v| *v >= low * 0.999 && *v <= high * 1.001)
        .collect()
}

/// `0.30000000000000004` drawn as `0.3`.
fn round_step(value: f64) -> f64 {
    let digits = (-value.log10().floor()).max(0.0) as i32;
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::charts::xml_check::{Document, hex};

    fn p(percentile: f64, ms: f64) -> Percentile {
        Percentile { percentile, ms }
    }

    #[test]
    fn one_bar_per_case_and_percentile_and_a_line_per_target() {
        let fast = [p(50.0, 0.64), p(90.0, 0.81), p(99.0, 2.24)];
        // A case that recorded no p90: its slot stays empty, nothing is made up.
        let slow = [p(50.0, 5.3), p(99.0, 24.2)];
        let groups = [
            Group {
                label: "GET /healthz at 500/s",
                percentiles: &fast,
                limit: None,
            },
            Group {
                label: "GET /v1/users/me at 500/s",
                percentiles: &slow,
                limit: Some(p(95.0, 10.0)),
            },
        ];
        let svg = svg(&Chart {
            title: "bench-services: latency",
            subtitle: "synthetic figures",
            x_desc: "scenario",
            groups: &groups,
        })
        .unwrap_or_else(|e| panic!("drawing failed: {e:#}"));
        let doc =
            Document::parse(&svg).unwrap_or_else(|e| panic!("not well-formed SVG ({e}):\n{svg}"));
        assert_eq!(doc.root_name(), "svg");
        // Each series' legend entry is one more rectangle of its colour.
        for (slot, (name, bars)) in [("p50", 2), ("p90", 1), ("p99", 2)].iter().enumerate() {
            let drawn = doc.count("rect", "fill", &hex(series_color(slot)));
            assert_eq!(drawn, bars + 1, "{name}: {bars} bars and a legend swatch");
        }
        let limit_lines = doc.count("polyline", "stroke", &hex(LIMIT_COLOR));
        assert_eq!(limit_lines, 2, "one target line and its legend swatch");
        let texts = doc.texts();
        for wanted in [
            "latency (log scale)",
            "scenario",
            "GET /healthz at 500/s",
            "GET /v1/users/me at 500/s",
            "p50",
            "p90",
            "p99",
            "target",
            "p95 < 10 ms",
            "1 ms",
            "10 ms",
        ] {
            assert!(
                texts.iter().any(|t| t == wanted),
                "no text `{wanted}` in the chart; its texts: {texts:?}"
            );
        }
    }

    #[test]
    fn the_axis_spans_every_value_in_1_2_5_steps() {
        let (low, high) = log_bounds([0.47, 37.15].into_iter());
        assert!(low <= 0.47 && high >= 37.15, "{low}..{high}");
        assert_eq!(
            ticks(0.2, 200.0),
            [0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0]
        );
        assert_eq!(ticks(0.3, 0.6), [0.5]);
        assert_eq!(log_bounds(std::iter::empty()), (0.1, 10.0));
    }

    #[test]
    fn labels_keep_sub_millisecond_digits() {
        assert_eq!(ms_label(0.2), "0.2 ms");
        assert_eq!(ms_label(50.0), "50 ms");
        assert_eq!(percentile_name(99.0), "p99");
        assert_eq!(percentile_name(99.9), "p99.9");
    }
}
