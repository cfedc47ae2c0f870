//! When signing keys sign: the phase of a key at an instant, and what a rotation does
//! given the key already pending. Keys are published before use: a new key is in the
//! JWKS from its creation and signs from its activation, the instant the key before it
//! retires, so no edge meets a token of a key it has not had time to fetch.

use chrono::{DateTime, Utc};

use crate::error::Error;

/// Where a key stands at an instant; the order is the JWKS order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Activated and not retired: it signs (the latest activated one, should there
    /// ever be two).
    Active,
    /// Published; signs from its activation.
    Pending,
    /// Signs no more; published until the tokens it signed have expired.
    Retired,
}

impl Phase {
    /// The phase at `now` of a key that activates at `activates_at` and retires at
    /// `retired_at` (unset while no successor is scheduled).
    pub fn at(
        now: DateTime<Utc>,
        activates_at: DateTime<Utc>,
        retired_at: Option<DateTime<Utc>>,
    ) -> Self {
        if retired_at.is_some_and(|retired| retired <= now) {
            Self::Retired
        } else if activates_at > now {
            Self::Pending
        } else {
            Self::Active
        }
    }
}

/// A published key that does not sign yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingKey {
    pub kid: String,
    pub activates_at: DateTime<Utc>,
}

/// What a rotation does. Either way the key signing now retires at `activates_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotationPlan {
    /// Generate a key that signs from `activates_at`.
    Generate { activates_at: DateTime<Utc> },
    /// The pending key `kid`, already published, signs from `activates_at` (now).
    ActivatePending {
        kid: String,
        activates_at: DateTime<Utc>,
    },
}

impl RotationPlan {
    /// A rotation at `now`. A new key waits `delay` unless `immediate` (a compromised
    /// key must stop signing at once; edges then learn the new key through their
    /// unknown-kid refetch). While a key is pending, only `immediate` goes ahead, and
    /// it activates that key rather than publishing yet another one.
    pub fn decide(
        pending: Option<PendingKey>,
        immediate: bool,
        delay: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<Self, Error> {
        match (pending, immediate) {
            (Some(pending), false) => Err(Error::KeyPending {
                kid: pending.kid,
                activates_at: pending.activates_at,
            }),
            (Some(pending), true) => Ok(Self::ActivatePending {
                kid: pending.kid,
                activates_at: now,
            }),
            (None, true) => Ok(Self::Generate { activates_at: now }),
            (None, false) => Ok(Self::Generate {
                activates_at: now + delay,
            }),
        }
    }

    /// When the rotated-in key starts signing and the current one retires.
    pub fn activates_at(&self) -> DateTime<Utc> {
        match self {
            Self::Generate { activates_at } | Self::ActivatePending { activates_at, .. } => {
                *activates_at
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    #[test]
    fn a_key_is_pending_then_active_then_retired() {
        let activates = now();
        let retires = now() + TimeDelta::seconds(60);
        let phase = |at| Phase::at(at, activates, Some(retires));
        assert_eq!(phase(activates - TimeDelta::seconds(1)), Phase::Pending);
        assert_eq!(
            phase(activates),
            Phase::Active,
            "active from its activation"
        );
        assert_eq!(phase(retires - TimeDelta::seconds(1)), Phase::Active);
        assert_eq!(phase(retires), Phase::Retired, "retired at its retirement");
        assert_eq!(
            Phase::at(retires, activates, None),
            Phase::Active,
            "a key without a successor keeps signing"
        );
    }

    #[test]
    fn jwks_order_is_active_pending_retired() {
        assert!(Phase::Active < Phase::Pending && Phase::Pending < Phase::Retired);
    }

    #[test]
    fn rotation_without_a_pending_key_waits_the_delay_unless_immediate() {
        let delay = TimeDelta::seconds(90);
        let delayed = RotationPlan::decide(None, false, delay, now());
        assert_eq!(
            delayed.ok().map(|plan| plan.activates_at()),
            Some(now() + delay)
        );
        let immediate = RotationPlan::decide(None, true, delay, now());
        assert_eq!(
            immediate.ok(),
            Some(RotationPlan::Generate {
                activates_at: now()
            })
        );
    }

    #[test]
    fn rotation_while_a_key_is_pending_is_refused_unless_immediate() {
        let pending = PendingKey {
            kid: "pending-kid".into(),
            activates_at: now() + TimeDelta::seconds(30),
        };
        let delay = TimeDelta::seconds(90);
        match RotationPlan::decide(Some(pending.clone()), false, delay, now()) {
            Err(Error::KeyPending { kid, activates_at }) => {
                assert_eq!(
                    (kid, activates_at),
                    (pending.kid.clone(), pending.activates_at)
                );
            }
            other => panic!("a second rotation went ahead: {other:?}"),
        }
        let immediate = RotationPlan::decide(Some(pending), true, delay, now());
        assert_eq!(
            immediate.ok(),
            Some(RotationPlan::ActivatePending {
                kid: "pending-kid".into(),
                activates_at: now()
            })
        );
    }
}
