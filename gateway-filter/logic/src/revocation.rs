//! Revoked sessions at the edge. Auth lists the sessions revoked recently
//! (`ListRevokedSessions`); one worker of the proxy at a time fetches the next page every
//! interval (elected through a fetch record in shared data, as for the JWKS) and merges
//! it into one shared set, bounded and pruned as its entries' tokens expire. Every worker
//! copies the set when its version changes and refuses, on every request, a token whose
//! `sid` is in its copy: a hash lookup, no host call.
//!
//! Shared data holds the set (with the feed's cursor, so both change under one CAS) and
//! a small version key each worker reads every interval instead of the whole set.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use bulwark_proto::auth::v1::{ListRevokedSessionsRequest, ListRevokedSessionsResponse};
use prost::Message;

use crate::config::RevocationSource;

/// The gRPC service and method of the feed.
pub const SERVICE: &str = "bulwark.auth.v1.AuthService";
/// See [`SERVICE`].
pub const METHOD: &str = "ListRevokedSessions";

/// Shared-data key of the set.
pub fn set_key(source: &RevocationSource) -> String {
    format!("bulwark_gateway.revoked:{}", source.cluster)
}

/// Shared-data key of the set's version (bumped after each write of the set).
pub fn version_key(source: &RevocationSource) -> String {
    format!("bulwark_gateway.revoked_version:{}", source.cluster)
}

/// Shared-data key of the fetch record (which worker fetches, and when it last did).
pub fn fetch_record_key(source: &RevocationSource) -> String {
    format!("bulwark_gateway.revoked_fetch:{}", source.cluster)
}

/// A session id: the 16 bytes of its UUID, as a number.
pub type SessionId = u128;

/// Session ids are random (UUID v4 from Auth, signed into the token): their low bits
/// hash them well enough, at the price of one XOR.
#[derive(Debug, Default, Clone, Copy)]
pub struct SessionIdHasher(u64);

impl Hasher for SessionIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
        }
    }

    fn write_u128(&mut self, value: u128) {
        // Truncation intended: the two halves folded into one word.
        #[allow(clippy::cast_possible_truncation)]
        {
            self.0 ^= (value as u64) ^ ((value >> 64) as u64);
        }
    }
}

/// A worker's copy of the revoked sessions, checked on every request.
pub type RevokedIds = HashSet<SessionId, BuildHasherDefault<SessionIdHasher>>;

/// The set as kept in shared data: each revoked session with the time (Unix seconds)
/// its last token expires, and where the feed goes on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedSet {
    /// The next call's `since_unix_ms`.
    pub next_since_ms: i64,
    /// Session → when its tokens have all expired.
    pub entries: HashMap<SessionId, i64>,
}

const FORMAT: u8 = 1;
const HEADER_BYTES: usize = 1 + 8 + 4;
const ENTRY_BYTES: usize = 16 + 8;

impl SharedSet {
    /// The stored form: format byte, cursor, count, then 24 bytes per session.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + self.entries.len() * ENTRY_BYTES);
        out.push(FORMAT);
        out.extend_from_slice(&self.next_since_ms.to_le_bytes());
        let count = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_le_bytes());
        for (id, expires_at) in self.entries.iter().take(count as usize) {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&expires_at.to_le_bytes());
        }
        out
    }

    /// Reads the stored form; `None` if it is not one (then the set is rebuilt from the
    /// feed's start).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (header, body) = bytes.split_at_checked(HEADER_BYTES)?;
        if header[0] != FORMAT {
            return None;
        }
        let next_since_ms = i64::from_le_bytes(header[1..9].try_into().ok()?);
        let count = u32::from_le_bytes(header[9..13].try_into().ok()?) as usize;
        if body.len() != count.checked_mul(ENTRY_BYTES)? {
            return None;
        }
        let mut entries = HashMap::with_capacity(count);
        for entry in body.chunks_exact(ENTRY_BYTES) {
            let id = u128::from_be_bytes(entry[..16].try_into().ok()?);
            let expires_at = i64::from_le_bytes(entry[16..].try_into().ok()?);
            entries.insert(id, expires_at);
        }
        Some(Self {
            next_since_ms,
            entries,
        })
    }

    /// The ids alone, for a worker's checks.
    pub fn ids(&self) -> RevokedIds {
        self.entries.keys().copied().collect()
    }

    /// Adds a page of the feed and moves the cursor; forgets sessions whose tokens have
    /// all expired (`expires_at + skew` before `now_s`); past `max_entries`, drops those
    /// that expire soonest. Returns how many were dropped for room.
    pub fn merge(&mut self, page: &Page, now_s: i64, skew_s: i64, max_entries: usize) -> usize {
        for &(id, expires_at) in &page.sessions {
            let slot = self.entries.entry(id).or_insert(expires_at);
            *slot = (*slot).max(expires_at);
        }
        self.next_since_ms = page.next_since_ms;
        self.entries
            .retain(|_, expires_at| expires_at.saturating_add(skew_s) >= now_s);
        let over = self.entries.len().saturating_sub(max_entries);
        if over > 0 {
            let mut by_expiry: Vec<(i64, SessionId)> =
                self.entries.iter().map(|(id, at)| (*at, *id)).collect();
            by_expiry.sort_unstable();
            for (_, id) in by_expiry.into_iter().take(over) {
                self.entries.remove(&id);
            }
        }
        over
    }
}

/// One answer of the feed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// Revoked sessions and when their tokens have all expired (Unix seconds).
    pub sessions: Vec<(SessionId, i64)>,
    /// Where the next call starts.
    pub next_since_ms: i64,
    /// Whether more wait (fetch again at once).
    pub more: bool,
}

/// The serialized request for the page after `since_ms`.
pub fn encode_request(since_ms: i64) -> Vec<u8> {
    ListRevokedSessionsRequest {
        since_unix_ms: since_ms,
    }
    .encode_to_vec()
}

/// Reads an answer; a session id that is not 16 bytes makes the whole answer unusable.
pub fn decode_response(bytes: &[u8]) -> Result<Page, String> {
    let response = ListRevokedSessionsResponse::decode(bytes)
        .map_err(|e| format!("not a ListRevokedSessionsResponse: {e}"))?;
    let sessions = response
        .sessions
        .into_iter()
        .map(|s| {
            let id: [u8; 16] =
                s.id.as_slice()
                    .try_into()
                    .map_err(|_| format!("a session id of {} bytes", s.id.len()))?;
            Ok((u128::from_be_bytes(id), s.expires_at))
        })
        .collect::<Result<_, String>>()?;
    Ok(Page {
        sessions,
        next_since_ms: response.next_since_unix_ms,
        more: response.more,
    })
}

/// A session id as a token's `sid` holds it.
pub fn session_id(sid: &uuid::Uuid) -> SessionId {
    sid.as_u128()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(sessions: &[(u128, i64)], next: i64) -> Page {
        Page {
            sessions: sessions.to_vec(),
            next_since_ms: next,
            more: false,
        }
    }

    #[test]
    fn the_stored_form_reads_back_and_refuses_anything_else() {
        let mut set = SharedSet::default();
        set.merge(&page(&[(1, 100), (u128::MAX, 200)], 42), 0, 0, 10);
        let bytes = set.encode();
        assert_eq!(bytes.len(), HEADER_BYTES + 2 * ENTRY_BYTES);
        assert_eq!(SharedSet::decode(&bytes), Some(set));
        assert_eq!(SharedSet::decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(SharedSet::decode(&[]), None);
        let mut other_format = bytes.clone();
        other_format[0] = 2;
        assert_eq!(SharedSet::decode(&other_format), None);
    }

    #[test]
    fn merging_keeps_the_later_expiry_moves_the_cursor_and_forgets_the_expired() {
        let mut set = SharedSet::default();
        set.merge(&page(&[(1, 100), (2, 50)], 10), 0, 30, 10);
        set.merge(&page(&[(1, 90), (3, 300)], 20), 79, 30, 10);
        assert_eq!(set.next_since_ms, 20);
        // Session 2's tokens expired at 50, plus 30 s of skew: gone at 79 + 1.
        assert_eq!(set.entries.get(&2), Some(&50));
        set.merge(&page(&[], 30), 81, 30, 10);
        assert_eq!(set.entries.get(&2), None);
        assert_eq!(set.entries.get(&1), Some(&100), "the later expiry is kept");
        assert!(set.ids().contains(&3));
    }

    #[test]
    fn past_its_bound_the_set_drops_what_expires_soonest() {
        let mut set = SharedSet::default();
        let dropped = set.merge(&page(&[(1, 400), (2, 100), (3, 300), (4, 200)], 0), 0, 0, 2);
        assert_eq!(dropped, 2);
        let mut kept: Vec<_> = set.entries.keys().copied().collect();
        kept.sort_unstable();
        assert_eq!(kept, [1, 3]);
    }

    #[test]
    fn answers_are_read_and_a_malformed_id_is_refused() {
        let answer = ListRevokedSessionsResponse {
            sessions: vec![bulwark_proto::auth::v1::RevokedSession {
                id: uuid::Uuid::from_u128(7).as_bytes().to_vec(),
                expires_at: 99,
            }],
            next_since_unix_ms: 5,
            more: true,
        };
        assert_eq!(
            decode_response(&answer.encode_to_vec()),
            Ok(Page {
                sessions: vec![(7, 99)],
                next_since_ms: 5,
                more: true,
            })
        );
        let mut bad = answer;
        bad.sessions[0].id = vec![1, 2, 3];
        assert!(decode_response(&bad.encode_to_vec()).is_err());
        assert!(decode_response(b"\xff\xff").is_err());
        assert_eq!(
            ListRevokedSessionsRequest::decode(encode_request(12).as_slice())
                .map(|r| r.since_unix_ms),
            Ok(12)
        );
    }

    #[test]
    fn a_sid_is_found_by_its_number() {
        let sid = uuid::Uuid::from_u128(0x0192_f0c4_7d4e_7b1a_9f00_0000_0000_00aa);
        let ids: RevokedIds = [session_id(&sid)].into_iter().collect();
        assert!(ids.contains(&session_id(&sid)));
        assert!(!ids.contains(&(session_id(&sid) ^ 1)));
    }
}
