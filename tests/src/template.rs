//! Filling the `{{NAME}}` placeholders of the repository's config templates
//! (`envoy/edge.yaml`, the Prometheus scrape template).

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
}
