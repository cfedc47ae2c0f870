//! The rate-limit service's own counters of one domain, read from its `/metrics` around a
//! measured run: they show how a case's limit was served (leased or exact) and how many
//! calls that took.

use super::http_client::http_get;

/// Counters of one domain (`ratelimit_*_total`, summed over descriptors).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ServiceCounters {
    /// Lease items answered LEASED (`ratelimit_lease_grants_total{mode="leased"}`).
    pub leased_grants: f64,
    /// Lease items decided EXACT, one hit each.
    pub exact_grants: f64,
    /// Lease items refused (`outcome="over_limit"`, any mode).
    pub refused_grants: f64,
    /// Hits granted by leased items (`ratelimit_leased_hits_total`).
    pub leased_hits: f64,
    /// `ratelimit_decisions_total`, every decision: `ShouldRateLimit` descriptors, exact
    /// items, and one per leased item.
    pub decisions: f64,
}

impl ServiceCounters {
    /// The counters of `domain` on the service whose admin port is `http_port`; zero
    /// when the page cannot be read (the report then shows nothing was counted).
    pub async fn read(http_port: u16, domain: &str) -> Self {
        match http_get(http_port, "/metrics", None).await {
            Ok(reply) if reply.status == 200 => Self::parse(&reply.body, domain),
            _ => Self::default(),
        }
    }

    fn parse(text: &str, domain: &str) -> Self {
        let mut counters = Self::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            if label(labels, "domain") != Some(domain) {
                continue;
            }
            match name {
                "ratelimit_lease_grants_total" => {
                    if label(labels, "outcome") == Some("over_limit") {
                        counters.refused_grants += value;
                    }
                    match label(labels, "mode") {
                        Some("leased") => counters.leased_grants += value,
                        Some("exact") => counters.exact_grants += value,
                        _ => {}
                    }
                }
                "ratelimit_leased_hits_total" => counters.leased_hits += value,
                "ratelimit_decisions_total" => counters.decisions += value,
                _ => {}
            }
        }
        counters
    }

    /// What was counted between `before` and `self`.
    pub fn since(&self, before: &Self) -> Self {
        Self {
            leased_grants: self.leased_grants - before.leased_grants,
            exact_grants: self.exact_grants - before.exact_grants,
            refused_grants: self.refused_grants - before.refused_grants,
            leased_hits: self.leased_hits - before.leased_hits,
            decisions: self.decisions - before.decisions,
        }
    }
}

/// The value of label `name` in `a="x",b="y"}` (the part after `{`).
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    let start = labels
        .split(',')
        .find_map(|pair| pair.trim().strip_prefix(name)?.strip_prefix("=\""))?;
    start.split('"').next()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"# TYPE ratelimit_lease_grants_total counter
ratelimit_lease_grants_total{domain="bench-edge-bearer",descriptor="user_id",mode="leased",outcome="ok"} 1200
ratelimit_lease_grants_total{domain="bench-edge-bearer",descriptor="user_id",mode="leased",outcome="over_limit"} 7
ratelimit_lease_grants_total{domain="bench-edge",descriptor="user_id",mode="exact",outcome="ok"} 99999
ratelimit_leased_hits_total{domain="bench-edge-bearer",descriptor="user_id"} 15000
ratelimit_decisions_total{domain="bench-edge-bearer",descriptor="user_id",decision="ok"} 1200
ratelimit_decisions_total{domain="bench-edge-bearer",descriptor="user_id",decision="over_limit"} 7
"#;

    #[test]
    fn counters_of_one_domain_are_summed_by_mode_and_outcome() {
        let counters = ServiceCounters::parse(PAGE, "bench-edge-bearer");
        assert_eq!(
            counters,
            ServiceCounters {
                leased_grants: 1207.0,
                exact_grants: 0.0,
                refused_grants: 7.0,
                leased_hits: 15000.0,
                decisions: 1207.0,
            },
            "the other domain's exact grants must not count"
        );
        let exact = ServiceCounters::parse(PAGE, "bench-edge");
        assert_eq!((exact.exact_grants, exact.leased_grants), (99999.0, 0.0));
    }

    #[test]
    fn a_label_that_prefixes_another_is_not_taken_for_it() {
        assert_eq!(label(r#"domainx="a",domain="b"}"#, "domain"), Some("b"));
        assert_eq!(label(r#"mode="leased"}"#, "domain"), None);
    }
}
