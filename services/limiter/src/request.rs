//! A validated rate-limit question: a domain, its descriptors and how many hits to
//! count, with a size limit on every string and list. Lease requests
//! ([`crate::lease::LeaseRequest`]) are held to the same sizes.

use crate::limits::Rate;

/// Longest domain name, in the request and in limit files.
pub const MAX_DOMAIN_BYTES: usize = 256;
/// Most descriptors in one request.
pub const MAX_DESCRIPTORS: usize = 16;
/// Most entries in one descriptor (and so the deepest descriptor tree).
pub const MAX_ENTRIES: usize = 16;
/// Longest entry key.
pub const MAX_KEY_BYTES: usize = 128;
/// Longest entry value (a route path, an IP, a user id...).
pub const MAX_VALUE_BYTES: usize = 1024;

/// One `key`/`value` pair of a descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
}

/// One descriptor: the entries a limit is looked up by, and optionally a limit the
/// caller sets itself (Envoy's `RateLimitDescriptor.limit`), which wins over the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub entries: Vec<Entry>,
    pub limit_override: Option<Rate>,
}

impl Descriptor {
    /// A descriptor of `(key, value)` pairs without an override.
    pub fn new<K: Into<String>, V: Into<String>>(
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            entries: entries
                .into_iter()
                .map(|(key, value)| Entry {
                    key: key.into(),
                    value: value.into(),
                })
                .collect(),
            limit_override: None,
        }
    }
}

/// A request that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRequest {
    pub domain: String,
    pub descriptors: Vec<Descriptor>,
    /// Requests this call counts (`hits_addend`, 0 meaning 1 as in Envoy).
    pub hits: u32,
}

/// Why a request was refused: the field and the rule, e.g.
/// `descriptors[0].entries[1].key: must be 1 to 128 bytes`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct InvalidRequest {
    pub field: String,
    pub rule: String,
}

pub(crate) fn invalid(field: impl Into<String>, rule: impl Into<String>) -> InvalidRequest {
    InvalidRequest {
        field: field.into(),
        rule: rule.into(),
    }
}

impl CheckRequest {
    pub fn new(
        domain: impl Into<String>,
        descriptors: Vec<Descriptor>,
        hits_addend: u32,
    ) -> Result<Self, InvalidRequest> {
        let domain = domain.into();
        check_domain(&domain)?;
        if descriptors.is_empty() || descriptors.len() > MAX_DESCRIPTORS {
            return Err(invalid(
                "descriptors",
                format!("must hold 1 to {MAX_DESCRIPTORS} descriptors"),
            ));
        }
        for (d, descriptor) in descriptors.iter().enumerate() {
            check_entries(&format!("descriptors[{d}]"), descriptor)?;
        }
        Ok(Self {
            domain,
            descriptors,
            hits: hits_addend.max(1),
        })
    }
}

/// The domain's size; shared by every request naming one.
pub(crate) fn check_domain(domain: &str) -> Result<(), InvalidRequest> {
    if domain.is_empty() || domain.len() > MAX_DOMAIN_BYTES {
        return Err(invalid(
            "domain",
            format!("must be 1 to {MAX_DOMAIN_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// A descriptor's entries, their count and sizes; `at` names the descriptor
/// (`descriptors[0]`, `items[2].descriptor`).
pub(crate) fn check_entries(at: &str, descriptor: &Descriptor) -> Result<(), InvalidRequest> {
    if descriptor.entries.is_empty() || descriptor.entries.len() > MAX_ENTRIES {
        return Err(invalid(
            format!("{at}.entries"),
            format!("must hold 1 to {MAX_ENTRIES} entries"),
        ));
    }
    for (e, entry) in descriptor.entries.iter().enumerate() {
        if entry.key.is_empty() || entry.key.len() > MAX_KEY_BYTES {
            return Err(invalid(
                format!("{at}.entries[{e}].key"),
                format!("must be 1 to {MAX_KEY_BYTES} bytes"),
            ));
        }
        if entry.value.len() > MAX_VALUE_BYTES {
            return Err(invalid(
                format!("{at}.entries[{e}].value"),
                format!("must be at most {MAX_VALUE_BYTES} bytes"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_hits_count_as_one() {
        let request = CheckRequest::new("d", vec![Descriptor::new([("k", "v")])], 0)
            .unwrap_or_else(|e| panic!("refused: {e}"));
        assert_eq!(request.hits, 1);
    }

    #[test]
    fn sizes_are_limited_and_the_field_named() {
        let long = "x".repeat(MAX_VALUE_BYTES + 1);
        for (request, field) in [
            (
                CheckRequest::new("", vec![Descriptor::new([("k", "v")])], 1),
                "domain",
            ),
            (CheckRequest::new("d", vec![], 1), "descriptors"),
            (
                CheckRequest::new(
                    "d",
                    vec![Descriptor::new(Vec::<(String, String)>::new())],
                    1,
                ),
                "descriptors[0].entries",
            ),
            (
                CheckRequest::new(
                    "d",
                    vec![
                        Descriptor::new([("k", "v")]),
                        Descriptor::new([("k", "v"), ("", "v")]),
                    ],
                    1,
                ),
                "descriptors[1].entries[1].key",
            ),
            (
                CheckRequest::new("d", vec![Descriptor::new([("k", long.as_str())])], 1),
                "descriptors[0].entries[0].value",
            ),
            (
                CheckRequest::new(
                    "d",
                    vec![Descriptor::new([("k", "v")]); MAX_DESCRIPTORS + 1],
                    1,
                ),
                "descriptors",
            ),
        ] {
            match request {
                Ok(_) => panic!("accepted a request with a bad {field}"),
                Err(error) => assert_eq!(error.field, field, "{error}"),
            }
        }
    }
}
