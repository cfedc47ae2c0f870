//! A limits file in Envoy ratelimit's YAML format, as the rate-limit service loads it
//! (`DomainLimits::parse`).
//!
//! Checked: an accepted file's domain name is within bounds; and every descriptor node
//! of the file, read independently as plain YAML, is found by the lookup with the
//! entries that lead to it (an exact value wins over a node without one), carrying the
//! node's limit, shadow flag, name and `key=value;key` label, or no limit when the node
//! has none.

use bulwark_limiter::limits::{DomainLimits, Lookup, Policy};
use bulwark_limiter::{Entry, Limits, Rate, Unit};
use serde_yaml_ng::{Mapping, Value};

use crate::fixtures;

/// Checks one limits file.
pub fn check(data: &[u8]) {
    // The service reads files as UTF-8 text; anything else is refused before parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = DomainLimits::parse("fuzz.yaml", text);
    let as_limits = Limits::parse("fuzz.yaml", text);
    assert_eq!(
        parsed.is_ok(),
        as_limits.is_ok(),
        "Limits and DomainLimits disagree"
    );
    let domain = match parsed {
        Ok(domain) => domain,
        Err(error) => {
            assert_eq!(error.file, "fuzz.yaml", "the error names another file");
            return;
        }
    };
    assert!(
        (1..=256).contains(&domain.name().len()),
        "domain {:?}",
        domain.name()
    );
    if let Ok(limits) = as_limits {
        assert_eq!(limits.domain_names().collect::<Vec<_>>(), [domain.name()]);
    }
    let Ok(Value::Mapping(file)) = serde_yaml_ng::from_str::<Value>(text) else {
        return;
    };
    // A tag (even the non-specific `!`) changes how a key or scalar reads in the typed
    // parse; the plain-YAML model does not follow tags, so a tagged file is not compared.
    if has_tag(&Value::Mapping(file.clone())) {
        return;
    }
    if let Some(Value::Sequence(nodes)) = file.get("descriptors") {
        check_children(&domain, nodes, &[], "");
    }
}

fn has_tag(value: &Value) -> bool {
    match value {
        Value::Tagged(_) => true,
        Value::Sequence(items) => items.iter().any(has_tag),
        Value::Mapping(map) => map.iter().any(|(k, v)| has_tag(k) || has_tag(v)),
        _ => false,
    }
}

/// One descriptor node, read from the YAML tree (`read_node` gives `None` for a node this
/// model does not read: a scalar that is not a string, a tag).
struct Node<'a> {
    key: &'a str,
    value: Option<&'a str>,
    expected: Option<(Policy, bool, Option<&'a str>)>,
    children: Option<&'a [Value]>,
}

fn read_node(node: &Value) -> Option<Node<'_>> {
    let map = node.as_mapping()?;
    let key = map.get("key")?.as_str()?;
    let value = optional(map, "value", Value::as_str)?;
    let unlimited = optional(map, "unlimited", Value::as_bool)?.unwrap_or(false);
    let shadow = optional(map, "shadow_mode", Value::as_bool)?.unwrap_or(false);
    let children = optional(map, "descriptors", |v| v.as_sequence().map(Vec::as_slice))?;
    let expected = match optional(map, "rate_limit", Value::as_mapping)? {
        None => unlimited.then_some((Policy::Unlimited, shadow, None)),
        Some(limit) => {
            let name = optional(limit, "name", Value::as_str)?;
            let also_unlimited = optional(limit, "unlimited", Value::as_bool)?.unwrap_or(false);
            if unlimited || also_unlimited {
                Some((Policy::Unlimited, shadow, name))
            } else {
                let unit = Unit::parse(optional(limit, "unit", Value::as_str)??)?;
                let requests = optional(limit, "requests_per_unit", Value::as_u64)??;
                let rate = Rate {
                    requests_per_unit: u32::try_from(requests).ok()?,
                    unit,
                };
                Some((Policy::Limited(rate), shadow, name))
            }
        }
    };
    Some(Node {
        key,
        value,
        expected,
        children,
    })
}

/// `Some(None)` when the member is absent or null, `Some(Some(v))` when `read` takes
/// it, `None` when it is there but of another type.
fn optional<'a, T>(
    map: &'a Mapping,
    name: &str,
    read: impl Fn(&'a Value) -> Option<T>,
) -> Option<Option<T>> {
    match map.get(name) {
        None | Some(Value::Null) => Some(None),
        Some(value) => read(value).map(Some),
    }
}

fn check_children(domain: &DomainLimits, nodes: &[Value], path: &[Entry], label: &str) {
    // A sibling this model cannot read (a key or value that is a YAML number, say) might
    // hold any value as text, so no level with one is checked.
    let Some(read) = nodes
        .iter()
        .map(read_node)
        .collect::<Option<Vec<Node<'_>>>>()
    else {
        return;
    };
    for node in &read {
        // A node without a value is reached by any value its exact siblings lack.
        let value = match node.value {
            Some(value) => value.to_owned(),
            None => {
                let taken = |candidate: &str| {
                    read.iter()
                        .any(|n| n.key == node.key && n.value == Some(candidate))
                };
                (0..)
                    .map(|i| format!("any-{i}"))
                    .find(|candidate| !taken(candidate))
                    .unwrap_or_default()
            }
        };
        let mut entries = path.to_vec();
        entries.push(Entry {
            key: node.key.to_owned(),
            value,
        });
        let own = match node.value {
            Some(value) => format!("{}={value}", node.key),
            None => node.key.to_owned(),
        };
        let label = if label.is_empty() {
            own
        } else {
            format!("{label};{own}")
        };
        match (domain.find(&entries), &node.expected) {
            (Lookup::NoLimit, None) => {}
            (Lookup::Rule(rule), Some((policy, shadow, name))) => {
                assert_eq!(rule.descriptor, label, "label of {entries:?}");
                assert_eq!(&rule.policy, policy, "policy of {label}");
                assert_eq!(&rule.shadow, shadow, "shadow of {label}");
                assert_eq!(rule.name.as_deref(), *name, "name of {label}");
                assert_eq!(rule.domain, domain.name());
            }
            (found, expected) => {
                panic!("{label}: the lookup found {found:?}, the file says {expected:?}")
            }
        }
        if let Some(children) = node.children {
            check_children(domain, children, &entries, &label);
        }
    }
}

/// The limits files Bulwark ships, and one with every feature of the format.
pub fn seeds() -> Vec<crate::Seed> {
    let every_feature = "\
domain: every-feature
descriptors:
  - key: route
    value: /v1/auth/login
    descriptors:
      - key: client_ip
        value: 203.0.113.7
        unlimited: true
      - key: client_ip
        rate_limit: { unit: Minute, requests_per_unit: 10, name: login-per-ip }
  - key: route
    rate_limit: { unlimited: true }
  - key: user_id
    shadow_mode: true
    rate_limit: { unit: second, requests_per_unit: 100 }
  - key: tenant
    descriptors:
      - key: plan
        value: free
        rate_limit: { unit: day, requests_per_unit: 1000 }
";
    vec![
        (
            "limits_yaml".to_owned(),
            fixtures::LIMITS_YAML.as_bytes().to_vec(),
        ),
        (
            "bench_services_limits_yaml".to_owned(),
            fixtures::BENCH_LIMITS_YAML.as_bytes().to_vec(),
        ),
        (
            "every_feature".to_owned(),
            every_feature.as_bytes().to_vec(),
        ),
    ]
}
