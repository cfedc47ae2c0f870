//! The limit configuration: Envoy ratelimit's YAML format (one domain per file, a tree
//! of descriptors), validated at load with errors naming the field inside the file, and
//! the lookup of the limit that applies to a request's descriptor.

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::metrics::{DecisionCounters, LeaseCounters};
use crate::request::{Entry, MAX_DOMAIN_BYTES, MAX_ENTRIES, MAX_KEY_BYTES, MAX_VALUE_BYTES};

/// Longest `rate_limit.name`.
const MAX_NAME_BYTES: usize = 128;

/// The unit of a limit: the length of the period `requests_per_unit` refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Second,
    Minute,
    Hour,
    Day,
}

impl Unit {
    /// `second`, `minute`, `hour` or `day`, in any case (Envoy's files use both).
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "second" => Some(Self::Second),
            "minute" => Some(Self::Minute),
            "hour" => Some(Self::Hour),
            "day" => Some(Self::Day),
            _ => None,
        }
    }

    pub fn period(self) -> Duration {
        Duration::from_secs(match self {
            Self::Second => 1,
            Self::Minute => 60,
            Self::Hour => 3_600,
            Self::Day => 86_400,
        })
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Second => "second",
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::Day => "day",
        })
    }
}

/// `requests_per_unit` requests per `unit`; both are validated (at least one request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub requests_per_unit: u32,
    pub unit: Unit,
}

impl Rate {
    /// Requests per second, the rate leasing compares with its threshold.
    pub fn per_second(self) -> f64 {
        f64::from(self.requests_per_unit) / self.unit.period().as_secs_f64()
    }
}

/// What a matched descriptor is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Always allowed; Redis is not asked.
    Unlimited,
    Limited(Rate),
}

/// One configured limit: a node of a domain's descriptor tree that carries a policy.
#[derive(Debug)]
pub struct LimitRule {
    pub domain: String,
    /// The node's path in the tree (`route=/v1/users;client_ip`); the `descriptor`
    /// label of its metrics, bounded by the configuration rather than by traffic.
    pub descriptor: String,
    pub policy: Policy,
    /// Counted and reported, but never refuses.
    pub shadow: bool,
    /// `rate_limit.name`, echoed in `RateLimitResponse.RateLimit.name`.
    pub name: Option<String>,
    pub counters: DecisionCounters,
    /// Items of lease calls (`LeaseService`) answered by this limit.
    pub lease_counters: LeaseCounters,
}

/// What the configuration says about one request descriptor.
#[derive(Debug, Clone, Copy)]
pub enum Lookup<'a> {
    /// No node matches, or the matching node carries no limit: allowed, as in Envoy's
    /// ratelimit.
    NoLimit,
    Rule(&'a Arc<LimitRule>),
}

/// Every configured domain; swapped whole on reload.
#[derive(Debug, Default)]
pub struct Limits {
    domains: HashMap<String, DomainLimits>,
}

/// One domain's descriptor tree.
#[derive(Debug)]
pub struct DomainLimits {
    name: String,
    root: Node,
}

#[derive(Debug, Default)]
struct Node {
    children: HashMap<String, Children>,
    rule: Option<Arc<LimitRule>>,
}

/// The nodes under one key: by exact value, and the one without a value that matches
/// any value (each distinct value then has its own counter).
#[derive(Debug, Default)]
struct Children {
    by_value: HashMap<String, Node>,
    any_value: Option<Box<Node>>,
}

/// A refused limit file: where (file and field) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {}{reason}", field_prefix(.field))]
pub struct LimitsError {
    /// The file the text came from.
    pub file: String,
    /// Dotted path inside the file, e.g. `descriptors[1].rate_limit.unit`; empty for
    /// problems with the file as a whole.
    pub field: String,
    pub reason: String,
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("{field}: ")
    }
}

impl Limits {
    /// Limits made of `domains`; two files configuring the same domain are refused.
    pub fn from_domains(domains: Vec<(String, DomainLimits)>) -> Result<Self, LimitsError> {
        let mut by_name: HashMap<String, (String, DomainLimits)> = HashMap::new();
        for (source, domain) in domains {
            match by_name.entry(domain.name.clone()) {
                MapEntry::Occupied(first) => {
                    return Err(LimitsError {
                        file: source,
                        field: "domain".to_owned(),
                        reason: format!(
                            "domain {:?} is already configured in {}",
                            domain.name,
                            first.get().0
                        ),
                    });
                }
                MapEntry::Vacant(slot) => {
                    slot.insert((source, domain));
                }
            }
        }
        Ok(Self {
            domains: by_name
                .into_iter()
                .map(|(name, (_, domain))| (name, domain))
                .collect(),
        })
    }

    /// One file's text as the only domain.
    pub fn parse(source: &str, text: &str) -> Result<Self, LimitsError> {
        Self::from_domains(vec![(
            source.to_owned(),
            DomainLimits::parse(source, text)?,
        )])
    }

    pub fn domain(&self, name: &str) -> Option<&DomainLimits> {
        self.domains.get(name)
    }

    pub fn domain_names(&self) -> impl Iterator<Item = &str> {
        self.domains.keys().map(String::as_str)
    }
}

impl DomainLimits {
    /// Parses and validates one limit file.
    pub fn parse(source: &str, text: &str) -> Result<Self, LimitsError> {
        let fail = |field: String, reason: String| LimitsError {
            file: source.to_owned(),
            field,
            reason,
        };
        let deserializer = serde_yaml_ng::Deserializer::from_str(text);
        let raw: RawFile = serde_path_to_error::deserialize(deserializer).map_err(|error| {
            let field = match error.path().to_string() {
                root if root == "." => String::new(),
                path => path,
            };
            let reason = error.into_inner().to_string();
            // serde_yaml_ng prefixes nested errors with its own (shorter) copy of the path.
            let reason = match reason.split_once(": ") {
                Some((path, rest)) if !path.is_empty() && field.starts_with(path) => {
                    rest.to_owned()
                }
                _ => reason,
            };
            fail(field, reason)
        })?;
        let name = raw
            .domain
            .ok_or_else(|| fail("domain".to_owned(), "is required".to_owned()))?;
        if name.is_empty() || name.len() > MAX_DOMAIN_BYTES {
            return Err(fail(
                "domain".to_owned(),
                format!("must be 1 to {MAX_DOMAIN_BYTES} bytes"),
            ));
        }
        let mut builder = TreeBuilder {
            domain: &name,
            problem: None,
        };
        let root = builder.children(raw.descriptors.unwrap_or_default(), "descriptors", "", 1);
        match builder.problem {
            Some((field, reason)) => Err(fail(field, reason)),
            None => Ok(Self {
                name: name.clone(),
                root: Node {
                    children: root,
                    rule: None,
                },
            }),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The limit for one descriptor, walking the tree as Envoy's ratelimit does: at each
    /// entry an exact `key`+`value` node wins over a `key`-only node; the node reached by
    /// the last entry decides.
    pub fn find(&self, entries: &[Entry]) -> Lookup<'_> {
        let mut node = &self.root;
        for entry in entries {
            let Some(children) = node.children.get(&entry.key) else {
                return Lookup::NoLimit;
            };
            node = match children.by_value.get(&entry.value) {
                Some(exact) => exact,
                None => match &children.any_value {
                    Some(any) => any,
                    None => return Lookup::NoLimit,
                },
            };
        }
        match &node.rule {
            Some(rule) => Lookup::Rule(rule),
            None => Lookup::NoLimit,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    domain: Option<String>,
    descriptors: Option<Vec<RawDescriptor>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDescriptor {
    key: Option<String>,
    value: Option<String>,
    rate_limit: Option<RawRateLimit>,
    /// Bulwark's spelling; Envoy's is `rate_limit.unlimited`. Both are accepted.
    #[serde(default)]
    unlimited: bool,
    #[serde(default)]
    shadow_mode: bool,
    descriptors: Option<Vec<RawDescriptor>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    unit: Option<String>,
    requests_per_unit: Option<u32>,
    #[serde(default)]
    unlimited: bool,
    name: Option<String>,
}

/// Turns raw descriptors into the tree, stopping at the first problem (its field path
/// and reason are kept).
struct TreeBuilder<'a> {
    domain: &'a str,
    problem: Option<(String, String)>,
}

impl TreeBuilder<'_> {
    fn fail(&mut self, field: String, reason: impl Into<String>) {
        if self.problem.is_none() {
            self.problem = Some((field, reason.into()));
        }
    }

    fn children(
        &mut self,
        raw: Vec<RawDescriptor>,
        field: &str,
        parent_label: &str,
        depth: usize,
    ) -> HashMap<String, Children> {
        let mut children: HashMap<String, Children> = HashMap::new();
        if depth > MAX_ENTRIES && !raw.is_empty() {
            self.fail(
                field.to_owned(),
                format!("descriptors nest at most {MAX_ENTRIES} levels deep"),
            );
            return children;
        }
        let mut seen: HashMap<(String, Option<String>), usize> = HashMap::new();
        for (index, descriptor) in raw.into_iter().enumerate() {
            let at = format!("{field}[{index}]");
            let Some((key, value, node)) = self.descriptor(descriptor, &at, parent_label, depth)
            else {
                return children;
            };
            if let Some(first) = seen.insert((key.clone(), value.clone()), index) {
                let what = match &value {
                    Some(value) => format!("key {key:?} and value {value:?}"),
                    None => format!("key {key:?} without a value"),
                };
                self.fail(at, format!("duplicates {field}[{first}] ({what})"));
                return children;
            }
            let slot = children.entry(key).or_default();
            match value {
                Some(value) => {
                    slot.by_value.insert(value, node);
                }
                None => slot.any_value = Some(Box::new(node)),
            }
        }
        children
    }

    fn descriptor(
        &mut self,
        raw: RawDescriptor,
        at: &str,
        parent_label: &str,
        depth: usize,
    ) -> Option<(String, Option<String>, Node)> {
        let key = match raw.key {
            None => {
                self.fail(format!("{at}.key"), "is required");
                return None;
            }
            Some(key) if key.is_empty() || key.len() > MAX_KEY_BYTES => {
                self.fail(
                    format!("{at}.key"),
                    format!("must be 1 to {MAX_KEY_BYTES} bytes"),
                );
                return None;
            }
            Some(key) => key,
        };
        if let Some(value) = &raw.value
            && (value.is_empty() || value.len() > MAX_VALUE_BYTES)
        {
            self.fail(
                format!("{at}.value"),
                format!("must be 1 to {MAX_VALUE_BYTES} bytes (leave it out to match any value)"),
            );
            return None;
        }
        let own = match &raw.value {
            Some(value) => format!("{key}={value}"),
            None => key.clone(),
        };
        let label = if parent_label.is_empty() {
            own
        } else {
            format!("{parent_label};{own}")
        };
        let (policy, name) = self.policy(raw.rate_limit, raw.unlimited, at)?;
        if raw.shadow_mode && !matches!(policy, Some(Policy::Limited(_))) {
            self.fail(
                format!("{at}.shadow_mode"),
                "needs a rate_limit with unit and requests_per_unit",
            );
            return None;
        }
        let children = self.children(
            raw.descriptors.unwrap_or_default(),
            &format!("{at}.descriptors"),
            &label,
            depth + 1,
        );
        if self.problem.is_some() {
            return None;
        }
        let rule = policy.map(|policy| {
            Arc::new(LimitRule {
                domain: self.domain.to_owned(),
                counters: DecisionCounters::new(self.domain, &label),
                lease_counters: LeaseCounters::new(
                    self.domain,
                    &label,
                    matches!(policy, Policy::Limited(_)),
                ),
                descriptor: label,
                policy,
                shadow: raw.shadow_mode,
                name,
            })
        });
        Some((key, raw.value, Node { children, rule }))
    }

    /// The node's policy (none when it only groups nested descriptors) and its name.
    #[allow(clippy::type_complexity, reason = "a private two-part answer")]
    fn policy(
        &mut self,
        raw: Option<RawRateLimit>,
        unlimited: bool,
        at: &str,
    ) -> Option<(Option<Policy>, Option<String>)> {
        let Some(raw) = raw else {
            return Some((unlimited.then_some(Policy::Unlimited), None));
        };
        let field = |name: &str| format!("{at}.rate_limit.{name}");
        if let Some(name) = &raw.name
            && (name.is_empty() || name.len() > MAX_NAME_BYTES)
        {
            self.fail(
                field("name"),
                format!("must be 1 to {MAX_NAME_BYTES} bytes"),
            );
            return None;
        }
        if unlimited || raw.unlimited {
            for (present, name) in [
                (raw.unit.is_some(), "unit"),
                (raw.requests_per_unit.is_some(), "requests_per_unit"),
            ] {
                if present {
                    self.fail(field(name), "must not be set on an unlimited descriptor");
                    return None;
                }
            }
            return Some((Some(Policy::Unlimited), raw.name));
        }
        let unit = match raw.unit.as_deref() {
            None => {
                self.fail(field("unit"), "is required (second, minute, hour or day)");
                return None;
            }
            Some(text) => match Unit::parse(text) {
                Some(unit) => unit,
                None => {
                    self.fail(
                        field("unit"),
                        format!("unknown unit {text:?} (expected second, minute, hour or day)"),
                    );
                    return None;
                }
            },
        };
        let requests_per_unit = match raw.requests_per_unit {
            None => {
                self.fail(field("requests_per_unit"), "is required");
                return None;
            }
            Some(0) => {
                self.fail(
                    field("requests_per_unit"),
                    "must be at least 1 (use unlimited: true for no limit)",
                );
                return None;
            }
            Some(n) => n,
        };
        Some((
            Some(Policy::Limited(Rate {
                requests_per_unit,
                unit,
            })),
            raw.name,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DomainLimits, LimitsError> {
        DomainLimits::parse("limits.yaml", text)
    }

    fn refused(text: &str) -> LimitsError {
        match parse(text) {
            Ok(_) => panic!("accepted a bad file:\n{text}"),
            Err(error) => error,
        }
    }

    fn entries(pairs: &[(&str, &str)]) -> Vec<Entry> {
        pairs
            .iter()
            .map(|(key, value)| Entry {
                key: (*key).to_owned(),
                value: (*value).to_owned(),
            })
            .collect()
    }

    fn rule<'a>(limits: &'a DomainLimits, pairs: &[(&str, &str)]) -> Option<&'a Arc<LimitRule>> {
        match limits.find(&entries(pairs)) {
            Lookup::Rule(rule) => Some(rule),
            Lookup::NoLimit => None,
        }
    }

    const EDGE: &str = r#"
domain: edge
descriptors:
  - key: route
    value: /v1/auth/login
    descriptors:
      - key: client_ip
        rate_limit: { unit: minute, requests_per_unit: 10 }
  - key: route
    descriptors:
      - key: client_ip
        rate_limit: { unit: HOUR, requests_per_unit: 1000, name: any-route }
  - key: user_id
    rate_limit: { unit: second, requests_per_unit: 100 }
    shadow_mode: true
  - key: user_id
    value: admin
    unlimited: true
  - key: service
    rate_limit: { unlimited: true }
"#;

    #[test]
    fn exact_value_wins_over_any_value_and_the_last_entry_decides() {
        let limits = parse(EDGE).unwrap_or_else(|e| panic!("refused: {e}"));
        let login = rule(
            &limits,
            &[("route", "/v1/auth/login"), ("client_ip", "1.2.3.4")],
        )
        .unwrap_or_else(|| panic!("login limit not found"));
        assert_eq!(
            login.policy,
            Policy::Limited(Rate {
                requests_per_unit: 10,
                unit: Unit::Minute
            })
        );
        assert_eq!(login.descriptor, "route=/v1/auth/login;client_ip");
        let other = rule(&limits, &[("route", "/v1/users"), ("client_ip", "1.2.3.4")])
            .unwrap_or_else(|| panic!("key-only route limit not found"));
        assert_eq!(other.name.as_deref(), Some("any-route"));
        assert_eq!(other.descriptor, "route;client_ip");
        assert!(
            rule(&limits, &[("route", "/v1/auth/login")]).is_none(),
            "a node without rate_limit must not limit"
        );
        assert!(
            rule(
                &limits,
                &[("route", "/x"), ("client_ip", "1.2.3.4"), ("extra", "1")]
            )
            .is_none(),
            "entries past the tree must not match"
        );
        assert!(rule(&limits, &[("tenant", "a")]).is_none());
    }

    #[test]
    fn shadow_and_both_unlimited_spellings_are_read() {
        let limits = parse(EDGE).unwrap_or_else(|e| panic!("refused: {e}"));
        let user = rule(&limits, &[("user_id", "u1")]).unwrap_or_else(|| panic!("user limit"));
        assert!(user.shadow);
        let admin = rule(&limits, &[("user_id", "admin")]).unwrap_or_else(|| panic!("admin"));
        assert_eq!(admin.policy, Policy::Unlimited);
        let service = rule(&limits, &[("service", "x")]).unwrap_or_else(|| panic!("service"));
        assert_eq!(service.policy, Policy::Unlimited);
    }

    #[test]
    fn errors_name_the_field_inside_the_file() {
        for (text, field, reason) in [
            (
                "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, requests_per_unit: 1}\n  - key: b\n    rate_limit: {unit: weeks, requests_per_unit: 1}\n",
                "descriptors[1].rate_limit.unit",
                "unknown unit \"weeks\"",
            ),
            (
                "domain: d\ndescriptors:\n  - key: a\n    descriptors:\n      - rate_limit: {unit: second, requests_per_unit: 1}\n",
                "descriptors[0].descriptors[0].key",
                "is required",
            ),
            (
                "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, requests_per_unit: 0}\n",
                "descriptors[0].rate_limit.requests_per_unit",
                "at least 1",
            ),
            (
                "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second}\n",
                "descriptors[0].rate_limit.requests_per_unit",
                "is required",
            ),
            (
                "domain: d\ndescriptors:\n  - key: a\n    unlimited: true\n    rate_limit: {unit: second, requests_per_unit: 5}\n",
                "descriptors[0].rate_limit.unit",
                "unlimited",
            ),
            (
                "domain: d\ndescriptors:\n  - key: a\n    shadow_mode: true\n",
                "descriptors[0].shadow_mode",
                "needs a rate_limit",
            ),
            (
                "domain: d\ndescriptors:\n  - key: a\n    value: x\n  - key: a\n    value: x\n",
                "descriptors[1]",
                "duplicates descriptors[0]",
            ),
            ("descriptors: []\n", "domain", "is required"),
            ("domain: ''\n", "domain", "1 to"),
        ] {
            let error = refused(text);
            assert_eq!(error.field, field, "wrong field for:\n{text}\n{error}");
            assert!(
                error.reason.contains(reason),
                "reason {:?} lacks {reason:?} for:\n{text}",
                error.reason
            );
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("limits.yaml: {field}: ")),
                "message does not lead with file and field: {error}"
            );
        }
    }

    #[test]
    fn unknown_fields_and_wrong_types_name_their_path() {
        let error = refused(
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, requests_per_unit: 5, replaces: []}\n",
        );
        assert_eq!(error.field, "descriptors[0].rate_limit.replaces");
        assert!(error.reason.contains("unknown field `replaces`"), "{error}");
        let error = refused(
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, requests_per_unit: many}\n",
        );
        assert_eq!(error.field, "descriptors[0].rate_limit.requests_per_unit");
        assert!(error.reason.contains("line 4"), "no location: {error}");
        let error = refused("domain: \"unterminated\n");
        assert!(
            error.reason.contains("line"),
            "syntax error without a line: {error}"
        );
    }

    #[test]
    fn the_same_domain_in_two_files_is_refused() {
        let a = parse("domain: d\n").unwrap_or_else(|e| panic!("{e}"));
        let b = parse("domain: d\n").unwrap_or_else(|e| panic!("{e}"));
        let error = Limits::from_domains(vec![("a.yaml".into(), a), ("b.yaml".into(), b)])
            .err()
            .unwrap_or_else(|| panic!("duplicate domain accepted"));
        assert!(
            error.to_string().contains("already configured in"),
            "{error}"
        );
    }
}
