//! Requests per second per case: a bar at the median round, a dot for every round and a
//! line from the slowest round to the fastest, so the spread a shared machine gives is
//! seen beside the figure the report checks.

use plotters::prelude::*;

use super::style::{self, AXIS_FONT, FONT, HEIGHT, WIDTH};

pub const MEDIAN_BAR: RGBColor = RGBColor(158, 202, 225);
pub const ROUND_DOT: RGBColor = RGBColor(8, 69, 148);
const SPREAD_LINE: RGBColor = RGBColor(60, 60, 60);
const BAR_HALF_WIDTH: f64 = 0.32;

/// One case: its per-round figures and which of them is the median.
#[derive(Debug, Clone, Copy)]
pub struct Case<'a> {
    pub key: &'a str,
    pub per_round: &'a [f64],
    pub median: f64,
}

#[derive(Debug, Clone, Copy)]
pub struct Chart<'a> {
    pub title: &'a str,
    pub subtitle: &'a str,
    pub cases: &'a [Case<'a>],
}

/// The chart as an SVG document.
pub fn svg(chart: &Chart<'_>) -> anyhow::Result<String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let area = style::titled(&root, chart.title, chart.subtitle)?;
        let top = chart
            .cases
            .iter()
            .flat_map(|c| c.per_round.iter().copied())
            .fold(0.0, f64::max);
        let keys: Vec<&str> = chart.cases.iter().map(|c| c.key).collect();
        let mut plot = ChartBuilder::on(&area)
            .margin(12)
            // Room for the last case's figure, written right of its bar.
            .margin_right(48)
            .x_label_area_size(44)
            .y_label_area_size(76)
            .build_cartesian_2d(style::categories(keys.len()), 0.0..nice_ceiling(top))?;
        plot.configure_mesh()
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .x_desc("case")
            .y_desc("requests per second")
            .x_label_formatter(&|x| style::category_label(&keys, *x))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .label_style(AXIS_FONT)
            .axis_desc_style(FONT)
            .draw()?;

        let at = |i: usize| i as f64;
        plot.draw_series(chart.cases.iter().enumerate().map(|(i, case)| {
            Rectangle::new(
                [
                    (at(i) - BAR_HALF_WIDTH, 0.0),
                    (at(i) + BAR_HALF_WIDTH, case.median),
                ],
                MEDIAN_BAR.filled(),
            )
        }))?;
        plot.draw_series(chart.cases.iter().enumerate().filter_map(|(i, case)| {
            let low = case.per_round.iter().copied().reduce(f64::min)?;
            let high = case.per_round.iter().copied().reduce(f64::max)?;
            Some(PathElement::new(
                [(at(i), low), (at(i), high)],
                SPREAD_LINE.stroke_width(1),
            ))
        }))?;
        plot.draw_series(chart.cases.iter().enumerate().flat_map(|(i, case)| {
            case.per_round
                .iter()
                .map(move |&v| Circle::new((at(i), v), 3, ROUND_DOT.filled()))
        }))?;
        plot.draw_series(chart.cases.iter().enumerate().map(|(i, case)| {
            Text::new(
                format!("{:.0}", case.median),
                (at(i) + BAR_HALF_WIDTH + 0.02, case.median),
                AXIS_FONT,
            )
        }))?;
        root.present()?;
    }
    Ok(out)
}

/// A round upper bound a little above `top`, so the highest dot is not on the frame.
fn nice_ceiling(top: f64) -> f64 {
    let wanted = (top * 1.08).max(1.0);
    let power = 10f64.powf(wanted.log10().floor());
    [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|&v| v >= wanted)
        .unwrap_or(10.0 * power)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::charts::xml_check::{Document, hex};

    fn chart_of(cases: &[Case<'_>]) -> Document {
        let svg = svg(&Chart {
            title: "bench-edge: requests per second",
            subtitle: "synthetic figures",
            cases,
        })
        .unwrap_or_else(|e| panic!("drawing failed: {e:#}"));
        Document::parse(&svg).unwrap_or_else(|e| panic!("not well-formed SVG ({e}):\n{svg}"))
    }

    #[test]
    fn one_bar_per_case_and_one_dot_per_round() {
        let cases = [
            Case {
                key: "a",
                per_round: &[25391.0, 24833.0, 19338.0, 14965.0],
                median: 19338.0,
            },
            Case {
                key: "d-500",
                per_round: &[15688.0, 14050.0, 19869.0, 15544.0],
                median: 15544.0,
            },
            Case {
                key: "e-rs256",
                per_round: &[1365.0, 1282.0, 1533.0, 1125.0],
                median: 1282.0,
            },
        ];
        let doc = chart_of(&cases);
        assert_eq!(doc.root_name(), "svg");
        let bars = doc.count("rect", "fill", &hex(MEDIAN_BAR));
        assert_eq!(bars, 3, "one median bar per case");
        let dots = doc.count("circle", "fill", &hex(ROUND_DOT));
        assert_eq!(dots, 12, "one dot per case and round (3 × 4)");
        let texts = doc.texts();
        for wanted in [
            "requests per second",
            "case",
            "a",
            "d-500",
            "e-rs256",
            "bench-edge: requests per second",
            "synthetic figures",
            "19338",
        ] {
            assert!(
                texts.iter().any(|t| t == wanted),
                "no text `{wanted}` in the chart; its texts: {texts:?}"
            );
        }
    }

    #[test]
    fn the_axis_holds_the_fastest_round() {
        assert_eq!(nice_ceiling(25391.0), 30000.0);
        assert_eq!(nice_ceiling(1533.0), 2000.0);
        assert_eq!(nice_ceiling(9000.0), 10000.0);
        assert!(nice_ceiling(0.0) >= 1.0, "an empty chart still has an axis");
    }
}
