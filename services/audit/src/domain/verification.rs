//! `VerifyChain`'s verdict: one pass over the events in chain order that recomputes
//! each hash and compares the chain with the genuine checkpoints.
//!
//! The hash chain alone catches an edited row, not a log rewritten and re-hashed from
//! the edit onwards, nor the newest events deleted. A checkpoint, signed with a key that
//! is not in the database, catches both: its event must still be there with the hash it
//! was signed with (else REWRITTEN), and the chain must reach its sequence (else
//! TRUNCATED). The first problem in sequence order is the verdict.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::chain::{self, EventFields, GENESIS};
use super::checkpoint::HASH_BYTES;

/// One stored event, as the walk needs it.
#[derive(Debug, Clone, Copy)]
pub struct Link<'a> {
    pub seq: i64,
    pub prev_hash: &'a [u8],
    pub hash: &'a [u8],
    pub fields: EventFields<'a>,
}

/// What is wrong with the chain, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// This event's hash does not match its content or predecessor.
    Broken { seq: i64, event_id: Uuid },
    /// A checkpoint at `seq` (at or below the head) names another hash, or its event
    /// is gone.
    Rewritten { seq: i64 },
    /// The chain ends before a checkpoint at `seq`.
    Truncated { seq: i64 },
}

impl Problem {
    pub fn seq(self) -> i64 {
        match self {
            Self::Broken { seq, .. } | Self::Rewritten { seq } | Self::Truncated { seq } => seq,
        }
    }
}

/// The outcome of a walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub problem: Option<Problem>,
    /// Events checked, the broken one included.
    pub events_checked: i64,
    /// The newest event checked; 0 for an empty log.
    pub head_seq: i64,
    /// The highest checkpointed sequence the chain matched before the problem.
    pub last_good_seq: i64,
    /// Distinct (sequence, hash) pairs vouched for by genuine checkpoints.
    pub checkpoints: usize,
}

/// The walk in progress. Feed it the events in `seq` order with [`ChainWalk::step`]
/// until it answers `false`, then call [`ChainWalk::finish`].
#[derive(Debug)]
pub struct ChainWalk {
    prev: Vec<u8>,
    /// Hashes vouched for at each sequence not yet reached.
    pending: BTreeMap<i64, BTreeSet<[u8; HASH_BYTES]>>,
    checkpoints: usize,
    checked: i64,
    head: i64,
    last_good: i64,
    problem: Option<Problem>,
}

impl ChainWalk {
    /// A walk against these genuine checkpoints' (sequence, hash) pairs.
    pub fn new(checkpoints: impl IntoIterator<Item = (i64, [u8; HASH_BYTES])>) -> Self {
        let mut pending: BTreeMap<i64, BTreeSet<[u8; HASH_BYTES]>> = BTreeMap::new();
        for (seq, hash) in checkpoints {
            pending.entry(seq).or_default().insert(hash);
        }
        Self {
            prev: GENESIS.to_vec(),
            checkpoints: pending.values().map(BTreeSet::len).sum(),
            pending,
            checked: 0,
            head: 0,
            last_good: 0,
            problem: None,
        }
    }

    /// Checks the next event; `false` once a problem is found (the walk is over).
    pub fn step(&mut self, link: &Link<'_>) -> bool {
        if self.problem.is_some() {
            return false;
        }
        // A checkpointed sequence the chain went past without an event there.
        if let Some((&seq, _)) = self.pending.first_key_value()
            && seq < link.seq
        {
            self.problem = Some(Problem::Rewritten { seq });
            return false;
        }
        self.checked += 1;
        self.head = link.seq;
        let expected = chain::link(&self.prev, &link.fields);
        if link.prev_hash != self.prev.as_slice() || link.hash != expected.as_slice() {
            self.problem = Some(Problem::Broken {
                seq: link.seq,
                event_id: link.fields.id,
            });
            return false;
        }
        if let Some(hashes) = self.pending.remove(&link.seq) {
            if hashes.iter().any(|hash| hash.as_slice() != link.hash) {
                self.problem = Some(Problem::Rewritten { seq: link.seq });
                return false;
            }
            self.last_good = link.seq;
        }
        self.prev.clear();
        self.prev.extend_from_slice(link.hash);
        true
    }

    /// The verdict; checkpoints beyond the last event mean the log was cut short.
    pub fn finish(mut self) -> Verdict {
        if self.problem.is_none()
            && let Some((&seq, _)) = self.pending.first_key_value()
        {
            self.problem = Some(Problem::Truncated { seq });
        }
        Verdict {
            problem: self.problem,
            events_checked: self.checked,
            head_seq: self.head,
            last_good_seq: self.last_good,
            checkpoints: self.checkpoints,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;

    /// A consistent chain of `n` events with sequences 1..=n (or as given).
    struct Log {
        ids: Vec<Uuid>,
        seqs: Vec<i64>,
        hashes: Vec<[u8; 32]>,
        prevs: Vec<[u8; 32]>,
    }

    fn fields(id: Uuid) -> EventFields<'static> {
        EventFields {
            id,
            occurred_at: DateTime::from_timestamp_micros(1_700_000_000_000_000).unwrap_or_default(),
            service: "auth",
            actor_id: "alice",
            action: "auth.login",
            target: "",
            outcome: "success",
            trace_id: "",
            details: "{}",
        }
    }

    impl Log {
        fn with_seqs(seqs: &[i64]) -> Self {
            let mut log = Log {
                ids: Vec::new(),
                seqs: seqs.to_vec(),
                hashes: Vec::new(),
                prevs: Vec::new(),
            };
            let mut prev = GENESIS;
            for (i, _) in seqs.iter().enumerate() {
                let id = Uuid::from_u128(i as u128 + 1);
                let hash = chain::link(&prev, &fields(id));
                log.ids.push(id);
                log.prevs.push(prev);
                log.hashes.push(hash);
                prev = hash;
            }
            log
        }

        fn new(n: i64) -> Self {
            Self::with_seqs(&(1..=n).collect::<Vec<_>>())
        }

        /// The hash stored at `seq`.
        fn hash_at(&self, seq: i64) -> [u8; 32] {
            let index = self.seqs.iter().position(|s| *s == seq).unwrap_or(0);
            self.hashes[index]
        }

        fn walk(&self, checkpoints: &[(i64, [u8; 32])]) -> Verdict {
            let mut walk = ChainWalk::new(checkpoints.iter().copied());
            for i in 0..self.ids.len() {
                let link = Link {
                    seq: self.seqs[i],
                    prev_hash: &self.prevs[i],
                    hash: &self.hashes[i],
                    fields: fields(self.ids[i]),
                };
                if !walk.step(&link) {
                    break;
                }
            }
            walk.finish()
        }
    }

    #[test]
    fn an_intact_chain_matching_its_checkpoints_has_no_problem() {
        let log = Log::new(10);
        let verdict = log.walk(&[(4, log.hash_at(4)), (10, log.hash_at(10))]);
        assert_eq!(
            verdict,
            Verdict {
                problem: None,
                events_checked: 10,
                head_seq: 10,
                last_good_seq: 10,
                checkpoints: 2,
            }
        );
        assert_eq!(Log::new(0).walk(&[]).problem, None);
    }

    #[test]
    fn a_checkpoint_naming_another_hash_is_a_rewrite_at_its_sequence() {
        // What a rewritten and re-hashed log looks like: consistent, but event 8's hash
        // is not the one signed.
        let log = Log::new(10);
        let verdict = log.walk(&[(4, log.hash_at(4)), (8, [7; 32]), (10, [7; 32])]);
        assert_eq!(verdict.problem, Some(Problem::Rewritten { seq: 8 }));
        assert_eq!(verdict.last_good_seq, 4);
        assert_eq!(verdict.events_checked, 8);
    }

    #[test]
    fn a_checkpointed_sequence_with_no_event_is_a_rewrite() {
        let log = Log::with_seqs(&[1, 2, 3, 5, 6]);
        let verdict = log.walk(&[(2, log.hash_at(2)), (4, [1; 32])]);
        assert_eq!(verdict.problem, Some(Problem::Rewritten { seq: 4 }));
        assert_eq!(verdict.last_good_seq, 2);
    }

    #[test]
    fn a_checkpoint_past_the_head_is_a_truncation() {
        let log = Log::new(6);
        let full = Log::new(9);
        let verdict = log.walk(&[(5, log.hash_at(5)), (9, full.hash_at(9))]);
        assert_eq!(verdict.problem, Some(Problem::Truncated { seq: 9 }));
        assert_eq!((verdict.head_seq, verdict.last_good_seq), (6, 5));
        let empty = Log::new(0).walk(&[(3, full.hash_at(3))]);
        assert_eq!(empty.problem, Some(Problem::Truncated { seq: 3 }));
        assert_eq!(empty.head_seq, 0);
    }

    #[test]
    fn an_edited_event_is_broken_before_a_later_checkpoint_is_reached() {
        let mut log = Log::new(10);
        log.hashes[5] = [0; 32]; // event 6
        let checkpoints = [(10, log.hash_at(10))];
        let verdict = log.walk(&checkpoints);
        assert_eq!(
            verdict.problem,
            Some(Problem::Broken {
                seq: 6,
                event_id: Uuid::from_u128(6)
            })
        );
        assert_eq!(verdict.events_checked, 6);
    }

    #[test]
    fn two_checkpoints_disagreeing_at_one_sequence_are_a_rewrite() {
        let log = Log::new(3);
        let verdict = log.walk(&[(2, log.hash_at(2)), (2, [5; 32]), (2, log.hash_at(2))]);
        assert_eq!(verdict.problem, Some(Problem::Rewritten { seq: 2 }));
        assert_eq!(verdict.checkpoints, 2, "duplicates counted once");
    }
}
