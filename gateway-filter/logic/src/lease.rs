//! Leased quotas, shared by every worker of one Envoy (README, "Rate limits at edge
//! speed").
//!
//! The rate-limit service grants an instance a budget of hits of a descriptor's limit
//! (`bulwark.ratelimit.v1.LeaseService/Lease`); the hits are counted in the limit's
//! Redis bucket when granted. The instance spends them locally, one per request, and
//! renews in the background when it holds half a lease or less, so a request asks the
//! service only when the instance holds nothing. A refused lease leaves a local
//! over-limit verdict that answers 429 until a quarter of a lease fits again.
//!
//! The table lives in proxy-wasm shared data, so an instance holds one lease per
//! descriptor, not one per worker. It has a fixed number of slots (memory is bounded
//! whatever the number of users); a descriptor hashes to two candidate slots and takes
//! whichever is free. A descriptor that finds both taken is decided exactly, one call
//! per request, until one frees. Every change is a compare-and-swap on the slot: a
//! worker that loses the race reads again.
//!
//! One worker at a time renews a descriptor: the renewal is claimed in the slot
//! (`renew_after_ms` holds the claim's deadline, or a back-off after a failed call),
//! and a claim that outlives its deadline can be taken again. Hence an instance never
//! holds more than one lease size of a descriptor, which bounds how far the fleet can go
//! over a limit in any window: `instances x lease_size` hits beyond exact counting.

use std::time::Duration;

use crate::host::Host;
use crate::ratelimit::{DescriptorEntry, DescriptorStatus, LimitUnit};
use crate::response::{self, LocalResponse};

/// gRPC service of the lease call.
pub const LEASE_SERVICE: &str = "bulwark.ratelimit.v1.LeaseService";
/// gRPC method of the lease call.
pub const LEASE_METHOD: &str = "Lease";
/// Most items in one lease call (the service refuses more).
pub const MAX_ITEMS: usize = 64;
/// Back-off after a failed renewal, so a service that is down is not asked at every
/// tick for every descriptor.
pub const RENEW_BACKOFF_MS: u64 = 1_000;
/// Compare-and-swap attempts before a worker gives up on a slot and asks the service.
const CAS_ATTEMPTS: usize = 8;
/// Encoding version of a slot.
const SLOT_VERSION: u8 = 1;
/// Bytes of a slot before its descriptor key.
const SLOT_HEADER: usize = 3 + 4 * 4 + 4 * 8;

/// How a descriptor's limit is served, as the service answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantMode {
    /// No limit applies: requests pass without asking until the grant expires.
    Unlimited,
    /// Decided per request; nothing is leased.
    Exact,
    /// `granted` hits leased.
    Leased,
}

/// One item of the service's answer (`bulwark.ratelimit.v1.Grant`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// How the limit is served.
    pub mode: GrantMode,
    /// Hits granted and counted, the waiting request's included.
    pub granted: u32,
    /// The limit after the grant.
    pub status: DescriptorStatus,
    /// Most hits an instance holds at once (leased only).
    pub lease_size: u32,
    /// How long the grant may be used.
    pub valid_for: Duration,
}

/// What a slot holds for its descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotMode {
    /// Nothing usable (claimed for a first lease, or released).
    Empty,
    /// Leased hits.
    Leased,
    /// No limit applies until `valid_until_ms`.
    Unlimited,
}

/// One descriptor's lease in shared data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// Which descriptor ([`descriptor_key`]).
    pub descriptor: String,
    /// What the slot holds.
    pub mode: SlotMode,
    /// Hits held, unspent.
    pub held: u32,
    /// The lease size the service set; renewal starts at half of it.
    pub lease_size: u32,
    /// The limit (requests per unit) and its unit, for the response headers.
    pub limit: u32,
    /// Unit of `limit`.
    pub unit: LimitUnit,
    /// Hits left in the bucket at the last grant (held hits are not in it).
    pub remaining: u32,
    /// Held hits and an unlimited verdict are dropped at this time.
    pub valid_until_ms: u64,
    /// Requests are refused locally until this time.
    pub over_until_ms: u64,
    /// No worker may claim the renewal before this time: a claim's deadline, or a
    /// back-off after a failure. 0 when free.
    pub renew_after_ms: u64,
    /// When the bucket is empty again, as of the last grant.
    pub reset_at_ms: u64,
}

impl Slot {
    fn claimed(descriptor: &str, deadline_ms: u64) -> Self {
        Self {
            descriptor: descriptor.to_owned(),
            mode: SlotMode::Empty,
            held: 0,
            lease_size: 0,
            limit: 0,
            unit: LimitUnit::Unknown,
            remaining: 0,
            valid_until_ms: 0,
            over_until_ms: 0,
            renew_after_ms: deadline_ms,
            reset_at_ms: 0,
        }
    }

    /// Hits that may be spent now.
    pub fn usable(&self, now_ms: u64) -> u32 {
        if self.mode == SlotMode::Leased && now_ms < self.valid_until_ms {
            self.held
        } else {
            0
        }
    }

    /// Whether another descriptor may take this slot.
    pub fn is_free(&self, now_ms: u64) -> bool {
        (self.mode == SlotMode::Empty || now_ms >= self.valid_until_ms)
            && now_ms >= self.over_until_ms
            && now_ms >= self.renew_after_ms
    }

    /// How long a local over-limit verdict lasts at least: until a quarter of a lease
    /// has drained back into the bucket. The service says when one hit fits (10 ms at
    /// 100/s); asking again that soon would make a client hammering its limit cost the
    /// service a call every few milliseconds per Envoy. Waiting for a quarter lease does
    /// not lower the client's rate: what drains meanwhile stays in the bucket and is
    /// granted (halved) at the next call.
    fn min_refusal_ms(&self) -> u64 {
        if self.limit == 0 || self.lease_size == 0 {
            return 0;
        }
        let per_hit_ms = self.unit.seconds() * 1_000 / u64::from(self.limit);
        per_hit_ms * u64::from((self.lease_size / 4).max(1))
    }

    /// Serialized form (fixed header, then the descriptor key).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SLOT_HEADER + self.descriptor.len());
        out.push(SLOT_VERSION);
        out.push(match self.mode {
            SlotMode::Empty => 0,
            SlotMode::Leased => 1,
            SlotMode::Unlimited => 2,
        });
        out.push(unit_code(self.unit));
        for value in [self.held, self.lease_size, self.limit, self.remaining] {
            out.extend_from_slice(&value.to_le_bytes());
        }
        for value in [
            self.valid_until_ms,
            self.over_until_ms,
            self.renew_after_ms,
            self.reset_at_ms,
        ] {
            out.extend_from_slice(&value.to_le_bytes());
        }
        out.extend_from_slice(self.descriptor.as_bytes());
        out
    }

    /// Reads a stored slot; anything unreadable counts as an empty, free slot.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < SLOT_HEADER || bytes[0] != SLOT_VERSION {
            return None;
        }
        let mode = match bytes[1] {
            0 => SlotMode::Empty,
            1 => SlotMode::Leased,
            2 => SlotMode::Unlimited,
            _ => return None,
        };
        let u32_at = |at: usize| {
            bytes
                .get(at..at + 4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_le_bytes)
        };
        let u64_at = |at: usize| {
            bytes
                .get(at..at + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
        };
        Some(Self {
            mode,
            unit: LimitUnit::from_proto(i32::from(bytes[2])),
            held: u32_at(3)?,
            lease_size: u32_at(7)?,
            limit: u32_at(11)?,
            remaining: u32_at(15)?,
            valid_until_ms: u64_at(19)?,
            over_until_ms: u64_at(27)?,
            renew_after_ms: u64_at(35)?,
            reset_at_ms: u64_at(43)?,
            descriptor: String::from_utf8(bytes.get(SLOT_HEADER..)?.to_vec()).ok()?,
        })
    }

    /// `RateLimit-*` headers of a request admitted from this lease. Remaining is the
    /// bucket's count at the last grant plus the hits this instance still holds: an
    /// estimate, since other instances spend their own leases meanwhile.
    pub fn admitted_headers(&self, now_ms: u64) -> Vec<(String, String)> {
        if self.limit == 0 {
            return Vec::new();
        }
        let remaining = self.remaining.saturating_add(self.held).min(self.limit);
        vec![
            ("ratelimit-limit".to_owned(), self.limit.to_string()),
            ("ratelimit-remaining".to_owned(), remaining.to_string()),
            (
                "ratelimit-reset".to_owned(),
                seconds_until(self.reset_at_ms, now_ms).to_string(),
            ),
        ]
    }

    /// The 429 of the local over-limit verdict.
    pub fn refusal(&self, now_ms: u64) -> LocalResponse {
        let wait = seconds_until(self.over_until_ms, now_ms).to_string();
        let mut headers = Vec::with_capacity(4);
        if self.limit > 0 {
            headers.push(("ratelimit-limit".to_owned(), self.limit.to_string()));
        }
        headers.push(("ratelimit-remaining".to_owned(), "0".to_owned()));
        headers.push(("ratelimit-reset".to_owned(), wait.clone()));
        headers.push(("retry-after".to_owned(), wait));
        response::too_many_requests(headers)
    }
}

/// Whole seconds from `now_ms` until `at_ms`, rounded up, at least 1 (a client retrying
/// after a rounded-down value would be refused again).
fn seconds_until(at_ms: u64, now_ms: u64) -> u64 {
    at_ms.saturating_sub(now_ms).div_ceil(1_000).max(1)
}

fn unit_code(unit: LimitUnit) -> u8 {
    match unit {
        LimitUnit::Unknown => 0,
        LimitUnit::Second => 1,
        LimitUnit::Minute => 2,
        LimitUnit::Hour => 3,
        LimitUnit::Day => 4,
        LimitUnit::Month => 5,
        LimitUnit::Year => 6,
        LimitUnit::Week => 7,
    }
}

/// A descriptor's identity in the table: every entry length-prefixed, so that no two
/// descriptors share a key whatever their values hold.
pub fn descriptor_key(domain: &str, entries: &[DescriptorEntry]) -> String {
    let mut key = String::with_capacity(
        domain.len()
            + 8
            + entries
                .iter()
                .map(|e| e.key.len() + e.value.len() + 8)
                .sum::<usize>(),
    );
    for part in std::iter::once(domain).chain(entries.iter().flat_map(|e| [&*e.key, &*e.value])) {
        key.push_str(&part.len().to_string());
        key.push(':');
        key.push_str(part);
    }
    key
}

/// FNV-1a, 64 bits: spreads descriptor keys over the slots (not a defence: a slot
/// holds its full key, so a collision only costs the two descriptors exact counting).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A renewal claim: the deadline it wrote into the slot. A later claim (a takeover after
/// the deadline) writes a later one, so the deadline tells whose claim a slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim(pub u64);

/// What a request gets from the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spend {
    /// One leased hit spent: forward the request with these headers. `renew` when this
    /// worker claimed the descriptor's renewal, which it must now send.
    Admitted {
        /// `RateLimit-*` headers for the response.
        headers: Vec<(String, String)>,
        /// The renewal this worker claimed.
        renew: Option<Claim>,
    },
    /// No limit applies (the service said so, recently).
    Unlimited,
    /// Refused by the local over-limit verdict.
    Refused(LocalResponse),
    /// Nothing to spend: ask the service for this request. With a claim when this
    /// worker claimed the descriptor's renewal, so its call also tops the lease up (from
    /// nothing held); `None` for a call about this request alone.
    Ask(Option<Claim>),
}

/// Where a descriptor stands in the table.
enum Lookup {
    /// A slot holds it.
    Found {
        key: String,
        slot: Slot,
        cas: Option<u32>,
    },
    /// None does; the first free candidate slot, if any.
    Missing(Option<(String, Option<u32>)>),
}

/// The lease table of one filter configuration.
#[derive(Debug, Clone)]
pub struct LeaseTable {
    prefix: String,
    slots: u64,
    claim_deadline_ms: u64,
}

impl LeaseTable {
    /// A table of `slots` slots under a key prefix of its own; a renewal claim expires
    /// after `claim_deadline`.
    pub fn new(prefix: &str, slots: u64, claim_deadline: Duration) -> Self {
        Self {
            prefix: format!("bulwark_gateway.lease:{prefix}:"),
            slots: slots.max(1),
            claim_deadline_ms: u64::try_from(claim_deadline.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// Shared-data keys of a descriptor's two candidate slots.
    fn candidates(&self, descriptor: &str) -> [String; 2] {
        let hash = fnv1a(descriptor.as_bytes());
        let first = hash % self.slots;
        let mut second = hash.rotate_left(32) % self.slots;
        if second == first {
            second = (first + 1) % self.slots;
        }
        [
            format!("{}{first}", self.prefix),
            format!("{}{second}", self.prefix),
        ]
    }

    fn lookup(&self, host: &impl Host, descriptor: &str, now_ms: u64) -> Lookup {
        let mut free = None;
        for key in self.candidates(descriptor) {
            let (value, cas) = host.shared_data(&key);
            match value.as_deref().and_then(Slot::decode) {
                Some(slot) if slot.descriptor == descriptor => {
                    return Lookup::Found { key, slot, cas };
                }
                Some(slot) if !slot.is_free(now_ms) => {}
                _ => {
                    if free.is_none() {
                        free = Some((key, cas));
                    }
                }
            }
        }
        Lookup::Missing(free)
    }

    /// Spends one hit of `descriptor` for a request at `now_ms`.
    pub fn spend(&self, host: &impl Host, descriptor: &str, now_ms: u64) -> Spend {
        for _ in 0..CAS_ATTEMPTS {
            let (key, slot, cas) = match self.lookup(host, descriptor, now_ms) {
                Lookup::Found { key, slot, cas } => (key, slot, cas),
                Lookup::Missing(None) => return Spend::Ask(None),
                Lookup::Missing(Some((key, cas))) => {
                    let claim = Claim(now_ms + self.claim_deadline_ms);
                    let slot = Slot::claimed(descriptor, claim.0);
                    if host.set_shared_data(&key, &slot.encode(), cas) {
                        return Spend::Ask(Some(claim));
                    }
                    continue;
                }
            };
            let usable = slot.usable(now_ms);
            // Held hits were counted when granted: they are spent even after a renewal
            // was refused; the local verdict answers once they are gone.
            if usable == 0 && now_ms < slot.over_until_ms {
                return Spend::Refused(slot.refusal(now_ms));
            }
            if slot.mode == SlotMode::Unlimited && now_ms < slot.valid_until_ms {
                return Spend::Unlimited;
            }
            let mut next = slot;
            // No renewal while a refusal stands: the service would refuse it again.
            let may_claim = now_ms >= next.renew_after_ms && now_ms >= next.over_until_ms;
            let outcome = if usable > 0 {
                next.held = usable - 1;
                let renew = (may_claim && next.held <= next.lease_size / 2)
                    .then_some(Claim(now_ms + self.claim_deadline_ms));
                if let Some(claim) = renew {
                    next.renew_after_ms = claim.0;
                }
                Spend::Admitted {
                    headers: next.admitted_headers(now_ms),
                    renew,
                }
            } else if may_claim {
                let claim = Claim(now_ms + self.claim_deadline_ms);
                next.held = 0;
                next.renew_after_ms = claim.0;
                Spend::Ask(Some(claim))
            } else {
                // Another worker's call is in flight (or the service failed just now):
                // this request is decided on its own.
                return Spend::Ask(None);
            };
            if host.set_shared_data(&key, &next.encode(), cas) {
                return outcome;
            }
        }
        Spend::Ask(None)
    }

    /// Hits this instance holds for `descriptor` now (what a renewal reports), while
    /// `claim` is still the slot's live claim; `None` once it has expired or been taken
    /// over, so that a renewal is never sent twice.
    pub fn claimed_held(
        &self,
        host: &impl Host,
        descriptor: &str,
        claim: Claim,
        now_ms: u64,
    ) -> Option<u32> {
        match self.lookup(host, descriptor, now_ms) {
            Lookup::Found { slot, .. }
                if slot.renew_after_ms == claim.0 && now_ms < slot.renew_after_ms =>
            {
                Some(slot.usable(now_ms))
            }
            _ => None,
        }
    }

    /// Records the service's answer for `descriptor`. `spent` is what the grant
    /// includes for a request that waited on it (0 or 1); `claim` the renewal claim the
    /// call carried, which the answer releases (unless it was taken over meanwhile).
    pub fn apply(
        &self,
        host: &impl Host,
        descriptor: &str,
        grant: &Grant,
        spent: u32,
        claim: Option<Claim>,
        now_ms: u64,
    ) {
        for _ in 0..CAS_ATTEMPTS {
            let Lookup::Found { key, slot, cas } = self.lookup(host, descriptor, now_ms) else {
                // Evicted meanwhile (a claim outlived its deadline): the hits are lost,
                // which only ever admits less.
                return;
            };
            let claimed = claim.is_some_and(|c| slot.renew_after_ms == c.0);
            let mut next = slot;
            if claimed {
                next.renew_after_ms = 0;
            }
            match grant.mode {
                GrantMode::Exact => {
                    if claimed {
                        // An exact limit keeps no slot.
                        next = Slot::claimed(descriptor, 0);
                    }
                }
                GrantMode::Unlimited => {
                    next.mode = SlotMode::Unlimited;
                    next.held = 0;
                    next.valid_until_ms = now_ms + millis(grant.valid_for);
                }
                GrantMode::Leased => {
                    if let Some((limit, unit)) = grant.status.limit {
                        next.limit = limit;
                        next.unit = unit;
                    }
                    let reset_at = now_ms + grant.status.reset_after.map_or(0, millis);
                    if grant.status.over_limit || grant.granted == 0 {
                        if grant.lease_size > 0 {
                            next.lease_size = grant.lease_size;
                        }
                        if grant.status.over_limit {
                            next.over_until_ms =
                                reset_at.max(now_ms + next.min_refusal_ms()).max(now_ms + 1);
                        }
                    } else {
                        let held = next.usable(now_ms);
                        next.mode = SlotMode::Leased;
                        next.held = held.saturating_add(grant.granted.saturating_sub(spent));
                        next.lease_size = grant.lease_size;
                        next.remaining = grant.status.remaining;
                        next.valid_until_ms = now_ms + millis(grant.valid_for);
                        next.reset_at_ms = reset_at;
                        next.over_until_ms = 0;
                    }
                }
            }
            if host.set_shared_data(&key, &next.encode(), cas) {
                return;
            }
        }
    }

    /// Releases this worker's renewal claim after a failed call, with a back-off
    /// before the next claim; held hits stay spendable until they expire. A claim taken
    /// over meanwhile is left to its new owner.
    pub fn release(&self, host: &impl Host, descriptor: &str, claim: Claim, now_ms: u64) {
        for _ in 0..CAS_ATTEMPTS {
            let Lookup::Found { key, slot, cas } = self.lookup(host, descriptor, now_ms) else {
                return;
            };
            if slot.renew_after_ms != claim.0 {
                return;
            }
            let mut next = slot;
            next.renew_after_ms = now_ms + RENEW_BACKOFF_MS;
            if host.set_shared_data(&key, &next.encode(), cas) {
                return;
            }
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_round_trip() {
        let slot = Slot {
            descriptor: descriptor_key("edge", &[DescriptorEntry::new("user_id", "u-1")]),
            mode: SlotMode::Leased,
            held: 7,
            lease_size: 20,
            limit: 100,
            unit: LimitUnit::Second,
            remaining: 42,
            valid_until_ms: 1_000,
            over_until_ms: 2_000,
            renew_after_ms: 3_000,
            reset_at_ms: 4_000,
        };
        assert_eq!(Slot::decode(&slot.encode()), Some(slot));
        assert_eq!(Slot::decode(b"\x02rest"), None);
        assert_eq!(Slot::decode(&[]), None);
    }

    #[test]
    fn descriptor_keys_do_not_collide_across_entry_boundaries() {
        let a = descriptor_key("d", &[DescriptorEntry::new("a", "b:c")]);
        let b = descriptor_key(
            "d",
            &[
                DescriptorEntry::new("a", "b"),
                DescriptorEntry::new("c", ""),
            ],
        );
        assert_ne!(a, b);
        assert_eq!(a, "1:d1:a3:b:c");
    }

    #[test]
    fn a_descriptor_has_two_distinct_candidate_slots() {
        let table = LeaseTable::new("t", 2, Duration::from_millis(100));
        let [a, b] = table.candidates("x");
        assert_ne!(a, b);
        let table = LeaseTable::new("t", 1, Duration::from_millis(100));
        let [a, b] = table.candidates("x");
        assert_eq!(a, b, "one slot: both candidates are it");
    }

    #[test]
    fn seconds_until_rounds_up_and_is_at_least_one() {
        assert_eq!(seconds_until(10_001, 9_000), 2);
        assert_eq!(seconds_until(10_000, 9_000), 1);
        assert_eq!(seconds_until(5, 9_000), 1);
    }
}
