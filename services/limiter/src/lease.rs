//! Leased quotas: an edge instance takes a budget of hits of a descriptor's limit, spends
//! it locally and renews it in batches, instead of asking once per request
//! (`bulwark.ratelimit.v1.LeaseService`). Hits are counted in the limit's GCRA bucket when
//! they are granted, in the same buckets `check` counts in, so the fleet never admits a
//! hit the bucket did not admit first.
//!
//! Each item of a [`LeaseRequest`] is answered in one of three modes:
//!
//! - [`LeaseMode::Unlimited`]: no limit applies (no rule, or `unlimited: true`); nothing
//!   is counted and Redis is not asked.
//! - [`LeaseMode::Exact`]: shadow-mode limits and limits slower than
//!   [`LeasePolicy::min_rate_per_second`] are decided per request as `check` decides
//!   one hit; a spend of 0 only reads the bucket.
//! - [`LeaseMode::Leased`]: with `available` the hits that fit in the bucket now, the
//!   item is refused (OVER_LIMIT, nothing granted) when `available < max(spend, 1)`;
//!   otherwise it is granted `max(spend, min(lease_size - held, max(1, available / 2)))`
//!   hits, which fill the bucket. Near exhaustion grants halve, so the last hits are
//!   spread over the instances that still ask, and a grant never exceeds `available`.
//!
//! An instance holds at most [`LeasePolicy::lease_size`] hits of a descriptor (its spend
//! aside), so over any window the fleet admits at most `instances x lease_size` hits
//! more than exact counting would, and never more than the bucket itself admitted.

use std::time::Duration;

use crate::limiter::{Limiter, LimiterError, Outcome, ScriptName, counted_verdict, period_micros};
use crate::limits::{DomainLimits, LimitRule, Lookup, Policy, Rate};
use crate::metrics::Decision;
use crate::request::{Descriptor, InvalidRequest, check_domain, check_entries, invalid};
use crate::verdict::{AppliedLimit, DescriptorVerdict};

/// The lease script: every counted item of one call, in order, on Redis's clock.
pub const LEASE_LUA: &str = include_str!("lease.lua");

/// The most items any lease request may carry, whatever the configured maximum.
pub const MAX_LEASE_ITEMS: usize = 1024;

/// The default most items of one lease request (`ratelimit.lease.max_items`).
pub const DEFAULT_MAX_LEASE_ITEMS: usize = 64;

/// How leases are sized and how long they last.
#[derive(Debug, Clone, PartialEq)]
pub struct LeasePolicy {
    /// Limits slower than this many requests per second are decided exactly: their
    /// lease would hold too few hits to save calls, and a held hit would be a large
    /// share of the limit.
    pub min_rate_per_second: f64,
    /// A lease holds this many seconds of the limit's rate:
    /// `lease_size = max(1, floor(rate_per_second x lease_seconds))`, at most half the
    /// limit (and at least 1).
    pub lease_seconds: f64,
    /// How long a leased or unlimited answer may be used.
    pub valid_for: Duration,
}

impl Default for LeasePolicy {
    fn default() -> Self {
        Self {
            min_rate_per_second: 50.0,
            lease_seconds: 0.2,
            valid_for: Duration::from_millis(2_000),
        }
    }
}

/// A lease policy that cannot work: the field and the rule, e.g.
/// `lease_seconds must be a finite number greater than 0`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {rule}")]
pub struct InvalidLeasePolicy {
    pub field: &'static str,
    pub rule: String,
}

impl LeasePolicy {
    pub fn validate(&self) -> Result<(), InvalidLeasePolicy> {
        if !(self.min_rate_per_second.is_finite() && self.min_rate_per_second >= 0.0) {
            return Err(InvalidLeasePolicy {
                field: "min_rate_per_second",
                rule: format!(
                    "must be a finite number of at least 0 (0 leases every limit), not {}",
                    self.min_rate_per_second
                ),
            });
        }
        if !(self.lease_seconds.is_finite() && self.lease_seconds > 0.0) {
            return Err(InvalidLeasePolicy {
                field: "lease_seconds",
                rule: format!(
                    "must be a finite number greater than 0, not {}",
                    self.lease_seconds
                ),
            });
        }
        if self.valid_for.is_zero() {
            return Err(InvalidLeasePolicy {
                field: "valid_for",
                rule: "must be greater than 0".to_owned(),
            });
        }
        Ok(())
    }

    /// The most hits an instance may hold of a limit of `rate`, or `None` when the
    /// limit is too slow to lease and is decided exactly.
    pub fn lease_size(&self, rate: Rate) -> Option<u32> {
        let per_second = rate.per_second();
        if per_second < self.min_rate_per_second {
            return None;
        }
        // A hair over the product, so that 0.2 s of 50/s is 10 and not 9.999...
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a non-negative float; `as` saturates at u32::MAX"
        )]
        let size = (per_second * self.lease_seconds + 1e-9).floor() as u32;
        let cap = (rate.requests_per_unit / 2).max(1);
        Some(size.clamp(1, cap))
    }
}

/// One descriptor to lease for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseItem {
    /// Looked up as `check` looks descriptors up; an override is refused.
    pub descriptor: Descriptor,
    /// Hits the caller still holds unspent: a leased grant tops them up to at most
    /// `lease_size`.
    pub held: u32,
    /// Hits needed now, 0 or 1: 1 when a request waits on the answer.
    pub spend: u32,
}

/// A lease request that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRequest {
    pub domain: String,
    /// Granted in this order; a descriptor may appear more than once.
    pub items: Vec<LeaseItem>,
}

impl LeaseRequest {
    /// Validates a request of 1 to `max_items` items (never more than
    /// [`MAX_LEASE_ITEMS`]); every refusal names the field, as [`crate::CheckRequest`]'s do.
    pub fn new(
        domain: impl Into<String>,
        items: Vec<LeaseItem>,
        max_items: usize,
    ) -> Result<Self, InvalidRequest> {
        let domain = domain.into();
        check_domain(&domain)?;
        let max_items = max_items.clamp(1, MAX_LEASE_ITEMS);
        if items.is_empty() || items.len() > max_items {
            return Err(invalid(
                "items",
                format!("must hold 1 to {max_items} items"),
            ));
        }
        for (i, item) in items.iter().enumerate() {
            let at = format!("items[{i}].descriptor");
            check_entries(&at, &item.descriptor)?;
            if item.descriptor.limit_override.is_some() {
                return Err(invalid(
                    format!("{at}.limit"),
                    "must not be set: only configured limits are leased",
                ));
            }
            if item.spend > 1 {
                return Err(invalid(format!("items[{i}].spend"), "must be 0 or 1"));
            }
        }
        Ok(Self { domain, items })
    }
}

/// How an item was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseMode {
    /// No limit applies: nothing counted; requests pass without asking until
    /// `valid_for` has passed.
    Unlimited,
    /// Decided exactly: `granted` is the decision on `spend` alone.
    Exact,
    /// `granted` hits, `spend` included, are the caller's until `valid_for` has passed.
    Leased,
}

impl LeaseMode {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Unlimited => "unlimited",
            Self::Exact => "exact",
            Self::Leased => "leased",
        }
    }
}

/// The answer to one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub mode: LeaseMode,
    /// Hits granted and counted, `spend` included (a shadow-mode limit's hit is granted
    /// even over the limit, and then not counted).
    pub granted: u32,
    /// The limit after this grant, as `check` reports it: `over_limit` when not even the
    /// hits needed fit; `remaining` hits still in the bucket (held hits are not in it);
    /// `reset_after` until the bucket is empty, or, refused, until the hits needed fit.
    pub status: DescriptorVerdict,
    /// For [`LeaseMode::Leased`]: the most hits an instance may hold; 0 otherwise.
    pub lease_size: u32,
    /// For [`LeaseMode::Leased`] and [`LeaseMode::Unlimited`]: how long the answer may
    /// be used.
    pub valid_for: Option<Duration>,
}

/// The grants of one request, in the order of its items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub grants: Vec<Grant>,
}

impl Limiter {
    /// Answers `request`: items without a limit or with an unlimited one need no Redis;
    /// all others are counted in one call of the lease script, in order.
    pub async fn lease(&self, request: &LeaseRequest) -> Result<Lease, LimiterError> {
        let limits = self.limits();
        let policy = self.lease_policy();
        let mut call = ScriptCall::default();
        let plans: Vec<ItemPlan<'_>> = match limits.domain(&request.domain) {
            None => request.items.iter().map(|_| ItemPlan::NoLimit).collect(),
            Some(domain) => request
                .items
                .iter()
                .map(|item| plan(domain, item, policy, &mut call))
                .collect(),
        };
        let outcomes = if call.keys.is_empty() {
            Vec::new()
        } else {
            let reply = self.run(ScriptName::Lease, &call.keys, &call.args).await?;
            parse_outcomes(&reply, call.keys.len())?
        };
        let grants = plans
            .into_iter()
            .map(|plan| grant(plan, &outcomes, policy))
            .collect::<Result<_, _>>()?;
        Ok(Lease { grants })
    }
}

/// What one item needs; `slot` is its place among the script's items.
enum ItemPlan<'a> {
    NoLimit,
    Unlimited(&'a LimitRule),
    Exact {
        slot: usize,
        rule: &'a LimitRule,
        rate: Rate,
        spend: u32,
    },
    Leased {
        slot: usize,
        rule: &'a LimitRule,
        rate: Rate,
        lease_size: u32,
    },
}

/// How the script decides an item (its third argument).
#[derive(Clone, Copy)]
enum Kind {
    Exact = 0,
    ExactShadow = 1,
    Leased = 2,
}

/// The keys and arguments of one script call.
#[derive(Default)]
struct ScriptCall {
    keys: Vec<String>,
    args: Vec<u64>,
}

impl ScriptCall {
    fn push(
        &mut self,
        key: String,
        rate: Rate,
        kind: Kind,
        spend: u32,
        held: u32,
        lease_size: u32,
    ) -> usize {
        self.keys.push(key);
        self.args.extend([
            u64::from(rate.requests_per_unit),
            period_micros(rate),
            kind as u64,
            u64::from(spend),
            u64::from(held),
            u64::from(lease_size),
        ]);
        self.keys.len() - 1
    }
}

fn plan<'a>(
    domain: &'a DomainLimits,
    item: &LeaseItem,
    policy: &LeasePolicy,
    call: &mut ScriptCall,
) -> ItemPlan<'a> {
    let rule = match domain.find(&item.descriptor.entries) {
        Lookup::NoLimit => return ItemPlan::NoLimit,
        Lookup::Rule(rule) => rule.as_ref(),
    };
    let rate = match rule.policy {
        Policy::Unlimited => return ItemPlan::Unlimited(rule),
        Policy::Limited(rate) => rate,
    };
    let key = crate::limiter::bucket_key(domain.name(), &item.descriptor);
    match policy.lease_size(rate).filter(|_| !rule.shadow) {
        Some(lease_size) => ItemPlan::Leased {
            slot: call.push(key, rate, Kind::Leased, item.spend, item.held, lease_size),
            rule,
            rate,
            lease_size,
        },
        None => {
            let kind = if rule.shadow {
                Kind::ExactShadow
            } else {
                Kind::Exact
            };
            ItemPlan::Exact {
                slot: call.push(key, rate, kind, item.spend, 0, 0),
                rule,
                rate,
                spend: item.spend,
            }
        }
    }
}

/// What the script said about one item.
#[derive(Debug, Clone, Copy)]
struct ItemOutcome {
    /// The hits needed fit.
    fits: bool,
    granted: u32,
    remaining: u32,
    until_empty: Duration,
    until_fits: Duration,
}

fn parse_outcomes(reply: &[i64], items: usize) -> Result<Vec<ItemOutcome>, LimiterError> {
    if reply.len() != 5 * items {
        return Err(LimiterError::Reply(format!(
            "{} integers for {items} lease items",
            reply.len()
        )));
    }
    let micros = |value: i64| Duration::from_micros(u64::try_from(value).unwrap_or(0));
    let count = |value: i64| u32::try_from(value.max(0)).unwrap_or(u32::MAX);
    Ok(reply
        .chunks_exact(5)
        .map(|five| ItemOutcome {
            fits: five[0] == 1,
            granted: count(five[1]),
            remaining: count(five[2]),
            until_empty: micros(five[3]),
            until_fits: micros(five[4]),
        })
        .collect())
}

fn grant(
    plan: ItemPlan<'_>,
    outcomes: &[ItemOutcome],
    policy: &LeasePolicy,
) -> Result<Grant, LimiterError> {
    let outcome = |slot: usize| {
        outcomes
            .get(slot)
            .copied()
            .ok_or_else(|| LimiterError::Reply(format!("no result for lease item {slot}")))
    };
    let grant = match plan {
        ItemPlan::NoLimit => unlimited(DescriptorVerdict::no_limit(), policy),
        ItemPlan::Unlimited(rule) => {
            rule.counters.record(Decision::Ok);
            rule.lease_counters.record(LeaseMode::Unlimited, false, 0);
            unlimited(DescriptorVerdict::unlimited(), policy)
        }
        ItemPlan::Exact {
            slot,
            rule,
            rate,
            spend,
        } => {
            let outcome = outcome(slot)?;
            let counted = Outcome {
                admitted: outcome.fits,
                remaining: outcome.remaining,
                until_empty: outcome.until_empty,
                until_admitted: outcome.until_fits,
            };
            let (decision, status) =
                counted_verdict(&counted, rate, rule.shadow, rule.name.clone());
            // A spend of 0 only looked at the bucket: no request was decided.
            if spend > 0 {
                rule.counters.record(decision);
            }
            rule.lease_counters
                .record(LeaseMode::Exact, status.over_limit, outcome.granted);
            Grant {
                mode: LeaseMode::Exact,
                granted: outcome.granted,
                status,
                lease_size: 0,
                valid_for: None,
            }
        }
        ItemPlan::Leased {
            slot,
            rule,
            rate,
            lease_size,
        } => {
            let outcome = outcome(slot)?;
            let over_limit = !outcome.fits;
            rule.counters.record(if over_limit {
                Decision::OverLimit
            } else {
                Decision::Ok
            });
            rule.lease_counters
                .record(LeaseMode::Leased, over_limit, outcome.granted);
            Grant {
                mode: LeaseMode::Leased,
                granted: outcome.granted,
                status: DescriptorVerdict {
                    over_limit,
                    limit: Some(AppliedLimit {
                        rate,
                        name: rule.name.clone(),
                    }),
                    remaining: if over_limit { 0 } else { outcome.remaining },
                    reset_after: Some(if over_limit {
                        outcome.until_fits
                    } else {
                        outcome.until_empty
                    }),
                },
                lease_size,
                valid_for: Some(policy.valid_for),
            }
        }
    };
    Ok(grant)
}

fn unlimited(status: DescriptorVerdict, policy: &LeasePolicy) -> Grant {
    Grant {
        mode: LeaseMode::Unlimited,
        granted: 0,
        status,
        lease_size: 0,
        valid_for: Some(policy.valid_for),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Unit;

    fn rate(requests_per_unit: u32, unit: Unit) -> Rate {
        Rate {
            requests_per_unit,
            unit,
        }
    }

    fn item(pairs: &[(&str, &str)], held: u32, spend: u32) -> LeaseItem {
        LeaseItem {
            descriptor: Descriptor::new(pairs.iter().copied()),
            held,
            spend,
        }
    }

    #[test]
    fn lease_size_is_the_rate_over_lease_seconds_and_slow_limits_are_exact() {
        let policy = LeasePolicy::default();
        for (rate, expected) in [
            (rate(100, Unit::Second), Some(20)),
            (rate(50, Unit::Second), Some(10)),
            (rate(10, Unit::Minute), None),
            (rate(6_000, Unit::Minute), Some(20)),
            (rate(2_999, Unit::Minute), None),
            (rate(3_000, Unit::Minute), Some(10)),
            (rate(1_000_000, Unit::Second), Some(200_000)),
            (rate(u32::MAX, Unit::Second), Some(858_993_459)),
        ] {
            assert_eq!(
                policy.lease_size(rate),
                expected,
                "lease size of {} per {}",
                rate.requests_per_unit,
                rate.unit
            );
        }
    }

    #[test]
    fn lease_size_is_at_least_one_and_at_most_half_the_limit() {
        let policy = LeasePolicy {
            min_rate_per_second: 0.0,
            lease_seconds: 10.0,
            ..LeasePolicy::default()
        };
        // 10 s of 60/s is 600, but an instance may hold at most half the limit.
        assert_eq!(policy.lease_size(rate(60, Unit::Second)), Some(30));
        // 10 s of 1/hour is 0.003 hits: still one.
        assert_eq!(policy.lease_size(rate(1, Unit::Hour)), Some(1));
        // Half of 3 is 1.
        assert_eq!(policy.lease_size(rate(3, Unit::Second)), Some(1));
        let at_threshold = LeasePolicy {
            min_rate_per_second: 100.0,
            ..LeasePolicy::default()
        };
        assert_eq!(
            at_threshold.lease_size(rate(100, Unit::Second)),
            Some(20),
            "a limit at the threshold is not below it"
        );
    }

    #[test]
    fn policies_that_cannot_work_are_refused_naming_the_field() {
        for (policy, field) in [
            (
                LeasePolicy {
                    min_rate_per_second: -1.0,
                    ..LeasePolicy::default()
                },
                "min_rate_per_second",
            ),
            (
                LeasePolicy {
                    min_rate_per_second: f64::NAN,
                    ..LeasePolicy::default()
                },
                "min_rate_per_second",
            ),
            (
                LeasePolicy {
                    lease_seconds: 0.0,
                    ..LeasePolicy::default()
                },
                "lease_seconds",
            ),
            (
                LeasePolicy {
                    lease_seconds: f64::INFINITY,
                    ..LeasePolicy::default()
                },
                "lease_seconds",
            ),
            (
                LeasePolicy {
                    valid_for: Duration::ZERO,
                    ..LeasePolicy::default()
                },
                "valid_for",
            ),
        ] {
            match policy.validate() {
                Ok(()) => panic!("accepted a policy with a bad {field}: {policy:?}"),
                Err(error) => assert_eq!(error.field, field, "{error}"),
            }
        }
        assert_eq!(LeasePolicy::default().validate(), Ok(()));
    }

    #[test]
    fn lease_requests_are_validated_and_the_field_named() {
        let mut with_override = item(&[("k", "v")], 0, 0);
        with_override.descriptor.limit_override = Some(rate(5, Unit::Second));
        for (request, field) in [
            (
                LeaseRequest::new("", vec![item(&[("k", "v")], 0, 1)], 64),
                "domain",
            ),
            (LeaseRequest::new("d", vec![], 64), "items"),
            (
                LeaseRequest::new("d", vec![item(&[("k", "v")], 0, 0); 3], 2),
                "items",
            ),
            (
                LeaseRequest::new(
                    "d",
                    vec![item(&[("k", "v")], 0, 0); MAX_LEASE_ITEMS + 1],
                    usize::MAX,
                ),
                "items",
            ),
            (
                LeaseRequest::new("d", vec![item(&[("k", "v")], 0, 0), with_override], 64),
                "items[1].descriptor.limit",
            ),
            (
                LeaseRequest::new("d", vec![item(&[("k", "v")], 0, 2)], 64),
                "items[0].spend",
            ),
            (
                LeaseRequest::new("d", vec![item(&[], 0, 0)], 64),
                "items[0].descriptor.entries",
            ),
            (
                LeaseRequest::new("d", vec![item(&[("k", "v"), ("", "x")], 0, 0)], 64),
                "items[0].descriptor.entries[1].key",
            ),
        ] {
            match request {
                Ok(request) => panic!("accepted a request with a bad {field}: {request:?}"),
                Err(error) => assert_eq!(error.field, field, "{error}"),
            }
        }
        let ok = LeaseRequest::new("d", vec![item(&[("k", "v")], 7, 1); 2], 2)
            .unwrap_or_else(|e| panic!("a valid request refused: {e}"));
        assert_eq!(ok.items.len(), 2);
    }
}
