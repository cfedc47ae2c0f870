//! The answer to a rate-limit question, per descriptor and overall.

use std::time::Duration;

use crate::limits::Rate;

/// One descriptor's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescriptorVerdict {
    pub over_limit: bool,
    /// The limit that was applied; `None` when none applies (unknown or unlimited).
    pub limit: Option<AppliedLimit>,
    /// Requests still allowed right now (`u32::MAX` for unlimited, as Envoy's ratelimit).
    pub remaining: u32,
    /// Over the limit: how long until this request would be allowed (what `Retry-After`
    /// needs). Allowed: how long until the full quota is back.
    pub reset_after: Option<Duration>,
}

/// A limit as reported back: its rate and optional name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedLimit {
    pub rate: Rate,
    pub name: Option<String>,
}

impl DescriptorVerdict {
    /// No configured limit matches: allowed, nothing reported.
    pub fn no_limit() -> Self {
        Self {
            over_limit: false,
            limit: None,
            remaining: 0,
            reset_after: None,
        }
    }

    pub fn unlimited() -> Self {
        Self {
            remaining: u32::MAX,
            ..Self::no_limit()
        }
    }
}

/// The verdicts of one request, in the order of its descriptors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub statuses: Vec<DescriptorVerdict>,
}

impl Verdict {
    /// Refused when any descriptor is over its (enforced) limit.
    pub fn over_limit(&self) -> bool {
        self.statuses.iter().any(|s| s.over_limit)
    }

    /// The status that response headers describe: an over-limit one first, else the
    /// one with the fewest requests remaining, so clients see the tightest limit.
    pub fn governing(&self) -> Option<&DescriptorVerdict> {
        self.statuses
            .iter()
            .filter(|s| s.limit.is_some())
            .min_by_key(|s| (!s.over_limit, s.remaining))
    }
}
