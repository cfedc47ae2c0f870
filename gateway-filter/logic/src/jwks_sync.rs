//! When to fetch the JWKS and how workers agree on it. Envoy runs one VM per worker; the
//! fetched document is shared through proxy-wasm shared data (its CAS is the version each
//! worker compares before re-parsing), and a small fetch record in shared data elects one
//! worker per interval to fetch, so N workers do not each call the JWKS cluster.

use serde::{Deserialize, Serialize};

use crate::config::JwksSource;
use crate::host::Host;

/// Shared-data key of the JWKS document for a source. Shared data is per VM id; the
/// cluster and path are part of the key so two filter configs in one VM never mix keys.
pub fn document_key(source: &JwksSource) -> String {
    format!("bulwark_gateway.jwks:{}{}", source.cluster, source.path)
}

/// Shared-data key of the fetch record for a source.
pub fn fetch_record_key(source: &JwksSource) -> String {
    format!(
        "bulwark_gateway.jwks_fetch:{}{}",
        source.cluster, source.path
    )
}

/// Where the last fetch stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FetchState {
    /// Dispatched, no answer yet.
    InFlight,
    /// Answered with a usable JWKS.
    Succeeded,
    /// Failed (no answer, non-200, or no usable key).
    Failed,
}

/// The last fetch any worker started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchRecord {
    /// Unix milliseconds when it was started. Milliseconds, not seconds, so that the
    /// minimum refetch interval holds exactly instead of to the next second boundary.
    pub started_at_ms: u64,
    /// Its state.
    pub state: FetchState,
}

impl FetchRecord {
    /// Serialized form stored in shared data.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a stored record; an unreadable one counts as absent (so a fetch happens).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

/// Writes `record` as the outcome of the fetch started at `started_at_ms`, unless a
/// newer fetch has been claimed under `record_key` since (then that one's outcome
/// counts). Used for every fetch workers take turns at: the JWKS, the revoked sessions.
pub fn record_outcome(
    host: &impl Host,
    record_key: &str,
    started_at_ms: u64,
    record: &FetchRecord,
) {
    let (stored, cas) = host.shared_data(record_key);
    let current = stored.as_deref().and_then(FetchRecord::decode);
    if current.is_some_and(|r| r.started_at_ms != started_at_ms) {
        return;
    }
    let _ = host.set_shared_data(record_key, &record.encode(), cas);
}

/// Why a worker considers fetching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchReason {
    /// The timer.
    Periodic,
    /// A token named a `kid` the key set lacks (possible key rotation).
    UnknownKid,
}

/// How soon a failed fetch is retried while the gateway has no keys at all (at start,
/// before the issuer answers): every bearer request is refused until then, and no
/// `kid` can be made up against an empty key set, so the minimum interval is not needed.
pub const RETRY_WITHOUT_KEYS_MS: u64 = 500;

/// Whether a fetch should start now, given the last one and whether keys are loaded.
///
/// Periodic fetches follow the refresh interval after a success, and the (shorter)
/// minimum refetch interval after a failure. Unknown-`kid` fetches never come more often
/// than the minimum refetch interval, so tokens with made-up `kid`s cannot make the
/// gateway hammer the issuer. A fetch in flight blocks others until its deadline passes.
/// Without any keys, a failed fetch is retried after [`RETRY_WITHOUT_KEYS_MS`].
pub fn fetch_due(
    last: Option<&FetchRecord>,
    reason: FetchReason,
    source: &JwksSource,
    now_ms: u64,
    have_keys: bool,
) -> bool {
    let Some(last) = last else { return true };
    let millis = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let min_refetch = millis(source.min_refetch_interval);
    let wait = match (last.state, reason) {
        (FetchState::InFlight, _) => min_refetch.max(millis(source.timeout).saturating_add(1_000)),
        (FetchState::Failed, _) if !have_keys => RETRY_WITHOUT_KEYS_MS.min(min_refetch),
        (FetchState::Failed, _) | (FetchState::Succeeded, FetchReason::UnknownKid) => min_refetch,
        (FetchState::Succeeded, FetchReason::Periodic) => millis(source.refresh_interval),
    };
    // A record from the future (clock step back) must not block fetching forever.
    now_ms < last.started_at_ms || now_ms >= last.started_at_ms.saturating_add(wait)
}

/// Headers of the JWKS request.
pub fn request_headers(source: &JwksSource) -> Vec<(&str, &str)> {
    vec![
        (":method", "GET"),
        (":path", source.path.as_str()),
        (":authority", source.authority.as_str()),
        (":scheme", "http"),
        ("accept", "application/json"),
    ]
}

/// Largest JWKS document accepted; a real key set is a few KiB.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
