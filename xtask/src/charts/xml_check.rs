//! For the chart tests: an SVG chart parsed by `roxmltree` (which refuses what is not
//! well-formed XML), with the few questions the tests ask of it: the root's name, how
//! many elements have a colour, and the labels.

use std::fmt::Write as _;

use plotters::style::RGBColor;

/// A well-formed document, kept as its text; each question parses it again.
#[derive(Debug)]
pub struct Document {
    text: String,
}

/// A colour as the SVG backend writes it: `#08458F`.
pub fn hex(color: RGBColor) -> String {
    let RGBColor(r, g, b) = color;
    let mut out = String::from("#");
    for part in [r, g, b] {
        let _ = write!(out, "{part:02X}");
    }
    out
}

impl Document {
    pub fn parse(text: &str) -> Result<Self, String> {
        roxmltree::Document::parse(text).map_err(|e| e.to_string())?;
        Ok(Self {
            text: text.to_owned(),
        })
    }

    fn tree(&self) -> roxmltree::Document<'_> {
        roxmltree::Document::parse(&self.text).unwrap_or_else(|e| panic!("parsed before: {e}"))
    }

    pub fn root_name(&self) -> String {
        self.tree().root_element().tag_name().name().to_owned()
    }

    /// Elements named `name` whose `attribute` is `value`.
    pub fn count(&self, name: &str, attribute: &str, value: &str) -> usize {
        self.tree()
            .descendants()
            .filter(|n| n.is_element() && n.tag_name().name() == name)
            .filter(|n| n.attribute(attribute) == Some(value))
            .count()
    }

    /// The text of every `<text>` element, entities decoded, trimmed.
    pub fn texts(&self) -> Vec<String> {
        self.tree()
            .descendants()
            .filter(|n| n.is_element() && n.tag_name().name() == "text")
            .map(|n| {
                n.descendants()
                    .filter(|t| t.is_text())
                    .filter_map(|t| t.text())
                    .collect::<String>()
                    .trim()
                    .to_owned()
            })
            .collect()
    }
}
