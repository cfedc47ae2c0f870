//! Filling the `{{NAME}}` placeholders of the repository's config templates
//! (`envoy/edge.yaml`, the Prometheus scrape template, the benchmarks' Envoy pieces).

use std::fmt::Write as _;

use anyhow::bail;

/// Replaces every `{{NAME}}` of `template` (read from `source`, named in the error) with
/// its value; a placeholder left over is an error that quotes it.
pub fn fill_placeholders<K: AsRef<str>, V: AsRef<str>>(
    source: &str,
    template: &str,
    values: &[(K, V)],
) -> anyhow::Result<String> {
    let mut text = template.to_owned();
    for (name, value) in values {
        text = text.replace(&format!("{{{{{}}}}}", name.as_ref()), value.as_ref());
    }
    if let Some(start) = text.find("{{") {
        let rest = &text[start..];
        let end = rest.find("}}").map_or(rest.len().min(40), |end| end + 2);
        bail!(
            "{source} has a placeholder that is not filled: {}",
            &rest[..end]
        );
    }
    Ok(text)
}

/// Replaces each line that holds nothing but `{{NAME}}` with the lines of `block`, each
/// indented as the placeholder was, so a YAML block can be put in at any depth (blank
/// lines of `block` stay blank). Other placeholders are left for [`fill_placeholders`].
pub fn fill_block(template: &str, name: &str, block: &str) -> String {
    let marker = format!("{{{{{name}}}}}");
    let mut out = String::with_capacity(template.len() + block.len());
    for line in template.lines() {
        if line.trim() == marker {
            let indent = &line[..line.len() - line.trim_start().len()];
            for block_line in block.lines() {
                if block_line.trim().is_empty() {
                    out.push('\n');
                } else {
                    let _ = writeln!(out, "{indent}{block_line}");
                }
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_is_filled_and_one_left_over_is_named() {
        let filled = fill_placeholders("t", "a: {{ONE}} {{ONE}}", &[("ONE", "1")]);
        assert_eq!(filled.ok().as_deref(), Some("a: 1 1"));
        let err = fill_placeholders("t.yaml", "a: {{ONE}}\nb: {{TWO}}", &[("ONE", "1")])
            .expect_err("TWO is not filled");
        assert!(
            err.to_string().contains("t.yaml") && err.to_string().contains("{{TWO}}"),
            "{err}"
        );
    }

    #[test]
    fn a_block_takes_the_indent_of_its_placeholder_line_only() {
        let template = "a:\n  {{BLOCK}}\nb: {{BLOCK}}\n";
        let filled = fill_block(template, "BLOCK", "- x: 1\n\n  y: {{PORT}}\n");
        assert_eq!(
            filled, "a:\n  - x: 1\n\n    y: {{PORT}}\nb: {{BLOCK}}\n",
            "a placeholder inside a line is not a block"
        );
    }
}
