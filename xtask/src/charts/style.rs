//! What every chart shares: its size, fonts, title lines and an x axis of named
//! categories (cases or scenarios) centred on 0, 1, 2 ...
//!
//! Fonts are only named: the SVG backend writes text as `<text>` and the viewer picks the
//! face, so plotters needs no font files (its `ttf` feature stays off).

use std::ops::Range;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::prelude::*;

pub const WIDTH: u32 = 960;
pub const HEIGHT: u32 = 520;
pub const FONT: (&str, u32) = ("sans-serif", 15);
pub const AXIS_FONT: (&str, u32) = ("sans-serif", 13);
const TITLE_FONT: (&str, u32) = ("sans-serif", 20);
const SUBTITLE_FONT: (&str, u32) = ("sans-serif", 13);
const SUBTITLE_COLOR: RGBColor = RGBColor(90, 90, 90);

/// Draws the title and the line under it; returns the area below them.
pub fn titled<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    subtitle: &str,
) -> Result<DrawingArea<DB, Shift>, DrawingAreaErrorKind<DB::ErrorType>> {
    let below_title = root.titled(title, TITLE_FONT)?;
    if subtitle.is_empty() {
        return Ok(below_title);
    }
    below_title.titled(
        subtitle,
        TextStyle::from(SUBTITLE_FONT).color(&SUBTITLE_COLOR),
    )
}

/// An x axis for `count` categories: category `i` spans `i - 0.5` to `i + 0.5`, with a
/// tick in its middle only. (plotters' own `with_key_points` over an `f64` range loses
/// the label formatter, and its segmented axis has no room between ticks for bars.)
#[derive(Debug, Clone, Copy)]
pub struct Categories {
    count: usize,
}

pub fn categories(count: usize) -> Categories {
    Categories { count }
}

impl Ranged for Categories {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let share = (value + 0.5) / self.count.max(1) as f64;
        limit.0 + (share * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        (0..self.count).map(|i| i as f64).collect()
    }

    fn range(&self) -> Range<f64> {
        -0.5..self.count.max(1) as f64 - 0.5
    }
}

/// The name of the category whose tick is at `x`.
pub fn category_label(names: &[&str], x: f64) -> String {
    let index = x.round();
    if (x - index).abs() > 1e-6 || index < 0.0 {
        return String::new();
    }
    names
        .get(index as usize)
        .map_or_else(String::new, |name| (*name).to_owned())
}
