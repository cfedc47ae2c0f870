//! For the chart tests: a strict reader of the XML subset an SVG chart is written in
//! (elements, quoted attributes, text, character entities, comments, a declaration), which
//! rejects what is not well-formed and lists the elements, so a test can count bars and
//! read labels. The workspace has no XML crate, and this subset needs none.

use std::fmt::Write as _;

use plotters::style::RGBColor;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub attributes: Vec<(String, String)>,
    /// The element's own text, entities decoded, trimmed.
    pub text: String,
}

impl Element {
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A well-formed document's elements in document order; the first is the root.
#[derive(Debug)]
pub struct Document {
    elements: Vec<Element>,
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
        Reader {
            rest: text,
            elements: Vec::new(),
            open: Vec::new(),
        }
        .read()
    }

    pub fn root_name(&self) -> &str {
        self.elements.first().map_or("", |e| e.name.as_str())
    }

    /// Elements named `name` whose `attribute` is `value`.
    pub fn count(&self, name: &str, attribute: &str, value: &str) -> usize {
        self.elements
            .iter()
            .filter(|e| e.name == name && e.attribute(attribute) == Some(value))
            .count()
    }

    /// The text of every `<text>` element.
    pub fn texts(&self) -> Vec<String> {
        self.elements
            .iter()
            .filter(|e| e.name == "text")
            .map(|e| e.text.clone())
            .collect()
    }
}

struct Reader<'a> {
    rest: &'a str,
    elements: Vec<Element>,
    /// Indices into `elements` of the elements not yet closed, outermost first.
    open: Vec<usize>,
}

impl Reader<'_> {
    fn read(mut self) -> Result<Document, String> {
        self.rest = self.rest.trim_start();
        if self.rest.starts_with("<?xml") {
            self.skip_past("?>")?;
        }
        while !self.rest.is_empty() {
            if self.rest.starts_with("<!--") {
                self.skip_past("-->")?;
            } else if let Some(after) = self.rest.strip_prefix("</") {
                self.rest = after;
                self.end_tag()?;
            } else if let Some(after) = self.rest.strip_prefix('<') {
                self.rest = after;
                self.start_tag()?;
            } else {
                self.text()?;
            }
        }
        if let Some(&unclosed) = self.open.last() {
            return Err(format!(
                "<{}> is never closed",
                self.elements[unclosed].name
            ));
        }
        if self.elements.is_empty() {
            return Err("no root element".to_owned());
        }
        Ok(Document {
            elements: self.elements,
        })
    }

    fn skip_past(&mut self, end: &str) -> Result<(), String> {
        let at = self
            .rest
            .find(end)
            .ok_or_else(|| format!("`{end}` missing"))?;
        self.rest = &self.rest[at + end.len()..];
        Ok(())
    }

    fn name(&mut self) -> Result<String, String> {
        let end = self
            .rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || "-_.:".contains(c)))
            .unwrap_or(self.rest.len());
        let name = &self.rest[..end];
        if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            return Err(format!("bad name at `{}`", preview(self.rest)));
        }
        self.rest = &self.rest[end..];
        Ok(name.to_owned())
    }

    fn start_tag(&mut self) -> Result<(), String> {
        if !self.elements.is_empty() && self.open.is_empty() {
            return Err(format!(
                "a second root element at `<{}`",
                preview(self.rest)
            ));
        }
        let name = self.name()?;
        let mut attributes: Vec<(String, String)> = Vec::new();
        loop {
            let trimmed = self.rest.trim_start();
            let spaced = trimmed.len() < self.rest.len();
            self.rest = trimmed;
            if let Some(after) = self.rest.strip_prefix("/>") {
                self.rest = after;
                self.push(name, attributes, false);
                return Ok(());
            }
            if let Some(after) = self.rest.strip_prefix('>') {
                self.rest = after;
                self.push(name, attributes, true);
                return Ok(());
            }
            if !spaced {
                return Err(format!(
                    "<{name}>: no space before `{}`",
                    preview(self.rest)
                ));
            }
            let attribute = self.name()?;
            let after = self
                .rest
                .strip_prefix('=')
                .ok_or_else(|| format!("<{name}>: `{attribute}` has no `=`"))?;
            let quote = after
                .chars()
                .next()
                .filter(|c| *c == '"' || *c == '\'')
                .ok_or_else(|| format!("<{name}>: `{attribute}` is not quoted"))?;
            let value_and_rest = &after[1..];
            let end = value_and_rest
                .find(quote)
                .ok_or_else(|| format!("<{name}>: `{attribute}` is never closed"))?;
            let raw = &value_and_rest[..end];
            if raw.contains('<') {
                return Err(format!("<{name}>: `<` in the value of `{attribute}`"));
            }
            if attributes.iter().any(|(n, _)| *n == attribute) {
                return Err(format!("<{name}>: `{attribute}` given twice"));
            }
            attributes.push((attribute, decode(raw)?));
            self.rest = &value_and_rest[end + 1..];
        }
    }

    fn push(&mut self, name: String, attributes: Vec<(String, String)>, opened: bool) {
        self.elements.push(Element {
            name,
            attributes,
            text: String::new(),
        });
        if opened {
            self.open.push(self.elements.len() - 1);
        }
    }

    fn end_tag(&mut self) -> Result<(), String> {
        let name = self.name()?;
        self.rest = self.rest.trim_start();
        self.rest = self
            .rest
            .strip_prefix('>')
            .ok_or_else(|| format!("</{name}: no `>`"))?;
        match self.open.pop() {
            Some(index) if self.elements[index].name == name => Ok(()),
            Some(index) => Err(format!("</{name}> closes <{}>", self.elements[index].name)),
            None => Err(format!("</{name}> closes nothing")),
        }
    }

    fn text(&mut self) -> Result<(), String> {
        let end = self.rest.find('<').unwrap_or(self.rest.len());
        let raw = &self.rest[..end];
        self.rest = &self.rest[end..];
        let decoded = decode(raw)?;
        match self.open.last() {
            Some(&index) => {
                let element = &mut self.elements[index];
                element.text = format!("{}{}", element.text, decoded).trim().to_owned();
                Ok(())
            }
            None if decoded.trim().is_empty() => Ok(()),
            None => Err(format!("text outside the root: `{}`", preview(raw))),
        }
    }
}

/// Text or an attribute value with its entities decoded; a bare `&` is an error.
fn decode(raw: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let entity_and_rest = &rest[at + 1..];
        let end = entity_and_rest
            .find(';')
            .ok_or_else(|| format!("a bare `&` in `{}`", preview(raw)))?;
        let entity = &entity_and_rest[..end];
        let character = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .map(|hex| u32::from_str_radix(hex, 16))
                .or_else(|| entity.strip_prefix('#').map(str::parse))
                .and_then(Result::ok)
                .and_then(char::from_u32),
        };
        out.push(character.ok_or_else(|| format!("unknown entity `&{entity};`"))?);
        rest = &entity_and_rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn preview(text: &str) -> String {
    text.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_elements_attributes_and_text() {
        let doc = Document::parse(
            "<?xml version=\"1.0\"?>\n<svg width=\"10\" xmlns='http://www.w3.org/2000/svg'>\
             <!-- a comment --><rect fill=\"#08458F\"/><text x=\"1\">p50 &amp; p99 &#181;s</text></svg>\n",
        )
        .unwrap_or_else(|e| panic!("a well-formed document was refused: {e}"));
        assert_eq!(doc.root_name(), "svg");
        assert_eq!(doc.count("rect", "fill", "#08458F"), 1);
        assert_eq!(doc.texts(), ["p50 & p99 µs"]);
    }

    #[test]
    fn refuses_what_is_not_well_formed() {
        for (bad, why) in [
            ("<svg><rect></svg>", "a crossed end tag"),
            ("<svg><rect/>", "an unclosed root"),
            ("<svg/><svg/>", "two roots"),
            ("<svg a=\"1\" a=\"2\"/>", "a repeated attribute"),
            ("<svg a=1/>", "an unquoted attribute"),
            ("<svg a=\"1\"b=\"2\"/>", "attributes without space"),
            ("<svg><text>a & b</text></svg>", "a bare ampersand"),
            ("<svg><text>&nbsp;</text></svg>", "an HTML-only entity"),
            ("<svg></svg>trailing", "text after the root"),
            ("", "nothing"),
        ] {
            assert!(Document::parse(bad).is_err(), "{why} was accepted: {bad}");
        }
    }

    #[test]
    fn hex_is_written_as_the_svg_backend_writes_it() {
        assert_eq!(hex(RGBColor(8, 69, 148)), "#084594");
    }
}
