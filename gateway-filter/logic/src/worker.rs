//! One worker's state, shared by its root context and its HTTP contexts (a proxy-wasm VM
//! is single-threaded, so the adapter keeps it in an `Rc<RefCell<_>>`): the gateway and
//! the JWKS version it holds, the JWKS fetch protocol between workers, the lease
//! renewals this worker claimed, sent in batches from its timer, and the feed of revoked
//! sessions (see `revocation`).

use std::time::Duration;

use crate::config::GatewayConfig;
use crate::gateway::Gateway;
use crate::host::{Counter, Host};
use crate::jwks_sync::{
    self, FetchReason, FetchRecord, FetchState, MAX_JWKS_BYTES, document_key, fetch_due,
    fetch_record_key,
};
use crate::lease::{self, Claim, LeaseTable};
use crate::lease_call::{self, ItemRequest};
use crate::ratelimit::DescriptorEntry;
use crate::revocation::{self, SharedSet};

/// How often the JWKS shared data and fetch schedule are looked at; the schedule
/// itself (refresh and refetch intervals) is in the configuration.
pub const JWKS_TICK: Duration = Duration::from_secs(1);

/// A JWKS call in flight, owned by the context that dispatched it.
#[derive(Debug, Clone, Copy)]
pub struct PendingFetch {
    pub token: u32,
    pub started_at_ms: u64,
}

/// A descriptor whose renewal this worker claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renewal {
    /// Its key in the lease table.
    pub key: String,
    /// Its entries, for the call.
    pub entries: Vec<DescriptorEntry>,
    /// The claim this worker holds on it.
    pub claim: Claim,
}

/// A batch of renewals in flight.
#[derive(Debug, Clone)]
struct PendingRenewal {
    token: u32,
    started_at_ms: u64,
    items: Vec<Renewal>,
}

/// One worker's state.
#[derive(Debug)]
pub struct Worker {
    gateway: Gateway,
    /// CAS of the shared JWKS document installed here, so a tick re-parses only on change.
    jwks_version: Option<u32>,
    /// The JWKS document installed here: an unchanged refetch keeps the keys and the
    /// verified-token cache (installing keys clears it) and is not republished.
    installed_document: Option<Vec<u8>>,
    /// The periodic JWKS fetch this worker's timer started.
    pending_fetch: Option<PendingFetch>,
    /// When the timer last looked at the JWKS.
    last_jwks_tick_ms: Option<u64>,
    /// The lease table, when rate limiting is configured.
    leases: Option<LeaseTable>,
    /// Renewals claimed and not yet sent.
    renewals: Vec<Renewal>,
    /// The batch in flight.
    pending_renewal: Option<PendingRenewal>,
    /// Version of the shared revoked-session set installed here.
    revoked_version: Option<Vec<u8>>,
    /// When the timer last looked at the revoked sessions.
    last_revocation_tick_ms: Option<u64>,
    /// The fetch of revoked sessions this worker's timer started.
    pending_revocations: Option<PendingFetch>,
}

impl Worker {
    /// A worker for `config`, with no keys yet.
    pub fn new(config: GatewayConfig) -> Self {
        let leases = config.rate_limit.as_ref().map(|limits| {
            LeaseTable::new(
                &limits.domain,
                limits.lease_slots,
                limits.timeout + 2 * limits.renew_interval,
            )
        });
        Self {
            gateway: Gateway::new(config),
            jwks_version: None,
            installed_document: None,
            pending_fetch: None,
            last_jwks_tick_ms: None,
            leases,
            renewals: Vec::new(),
            pending_renewal: None,
            revoked_version: None,
            last_revocation_tick_ms: None,
            pending_revocations: None,
        }
    }

    /// The gateway.
    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// The gateway, to decide with (the verified-token cache changes).
    pub fn gateway_mut(&mut self) -> &mut Gateway {
        &mut self.gateway
    }

    /// The lease table, when rate limiting is configured.
    pub fn leases(&self) -> Option<&LeaseTable> {
        self.leases.as_ref()
    }

    /// How often the host should call [`Worker::on_tick`]: the shortest of the JWKS
    /// tick, the renewal interval when leases are in use, and the revocation interval.
    pub fn tick_period(&self) -> Duration {
        let config = self.gateway.config();
        let renew = config
            .rate_limit
            .as_ref()
            .map(|limits| limits.renew_interval);
        let revocation = config.revocation.as_ref().map(|source| source.interval);
        [renew, revocation]
            .into_iter()
            .flatten()
            .fold(JWKS_TICK, Duration::min)
    }

    /// Queues a renewal this worker claimed; the next tick sends it.
    pub fn queue_renewal(&mut self, renewal: Renewal) {
        self.renewals.push(renewal);
    }

    /// Renewals claimed and not yet answered (queued or in flight).
    pub fn renewals_outstanding(&self) -> usize {
        self.renewals.len() + self.pending_renewal.as_ref().map_or(0, |p| p.items.len())
    }

    /// The timer: JWKS sync and fetch (every [`JWKS_TICK`]), then the queued renewals in
    /// one call.
    pub fn on_tick(&mut self, host: &impl Host) {
        let now_ms = host.now_ms();
        let jwks_due = self.last_jwks_tick_ms.is_none_or(|last| {
            now_ms < last
                || now_ms - last >= millis(JWKS_TICK).saturating_sub(millis(self.tick_period()) / 2)
        });
        if jwks_due {
            self.last_jwks_tick_ms = Some(now_ms);
            self.jwks_tick(host, now_ms);
        }
        if let Some(interval) = self
            .gateway
            .config()
            .revocation
            .as_ref()
            .map(|s| s.interval)
        {
            let due = self.last_revocation_tick_ms.is_none_or(|last| {
                now_ms < last
                    || now_ms - last
                        >= millis(interval).saturating_sub(millis(self.tick_period()) / 2)
            });
            if due {
                self.last_revocation_tick_ms = Some(now_ms);
                self.revocation_tick(host, now_ms);
            }
        }
        self.send_renewals(host, now_ms);
    }

    /// Installs the shared revoked sessions if they changed, then starts the next fetch
    /// of the feed if one is due and this worker wins the fetch record.
    fn revocation_tick(&mut self, host: &impl Host, now_ms: u64) {
        let Some(source) = self.gateway.config().revocation.clone() else {
            return;
        };
        self.sync_revoked(host);
        // Envoy answers every call by its deadline; this only guards against a lost one.
        let deadline = source.timeout + source.interval;
        if self
            .pending_revocations
            .is_some_and(|p| now_ms > p.started_at_ms.saturating_add(millis(deadline)))
        {
            self.pending_revocations = None;
        }
        if self.pending_revocations.is_some() {
            return;
        }
        let record_key = revocation::fetch_record_key(&source);
        let (stored, cas) = host.shared_data(&record_key);
        let due = match stored.as_deref().and_then(FetchRecord::decode) {
            None => true,
            Some(last) => {
                let wait = match last.state {
                    FetchState::InFlight => millis(source.timeout) + millis(source.interval),
                    FetchState::Succeeded | FetchState::Failed => millis(source.interval),
                };
                // Half a tick early, so a fetch per interval does not slip to every other
                // tick; a record from the future (clock step back) never blocks fetching.
                now_ms < last.started_at_ms
                    || now_ms + millis(self.tick_period()) / 2
                        >= last.started_at_ms.saturating_add(wait)
            }
        };
        if !due {
            return;
        }
        let claim = FetchRecord {
            started_at_ms: now_ms,
            state: FetchState::InFlight,
        };
        if !host.set_shared_data(&record_key, &claim.encode(), cas) {
            return;
        }
        let since_ms = host
            .shared_data(&revocation::set_key(&source))
            .0
            .as_deref()
            .and_then(SharedSet::decode)
            .map_or(0, |set| set.next_since_ms);
        match host.dispatch_grpc_call(
            &source.cluster,
            revocation::SERVICE,
            revocation::METHOD,
            &revocation::encode_request(since_ms),
            source.timeout,
        ) {
            Some(token) => {
                self.pending_revocations = Some(PendingFetch {
                    token,
                    started_at_ms: now_ms,
                });
            }
            None => {
                host.count(Counter::CalloutFailure);
                self.record_revocation_fetch(host, &source, now_ms, FetchState::Failed, false);
            }
        }
    }

    /// Installs the shared set of revoked sessions here if its version changed. `true`
    /// if a new set was installed.
    pub fn sync_revoked(&mut self, host: &impl Host) -> bool {
        let Some(source) = self.gateway.config().revocation.clone() else {
            return false;
        };
        let (Some(version), _) = host.shared_data(&revocation::version_key(&source)) else {
            return false;
        };
        if self.revoked_version.as_ref() == Some(&version) {
            return false;
        }
        let Some(set) = host
            .shared_data(&revocation::set_key(&source))
            .0
            .as_deref()
            .and_then(SharedSet::decode)
        else {
            return false;
        };
        self.revoked_version = Some(version);
        self.gateway.install_revoked(set.ids());
        true
    }

    /// Merges a page of the feed into the shared set (compare-and-swap, retried when
    /// another worker wrote meanwhile), bumps the version and installs the set here.
    fn apply_revocations(&mut self, host: &impl Host, page: &revocation::Page) -> bool {
        let Some(source) = self.gateway.config().revocation.clone() else {
            return false;
        };
        let now_s = i64::try_from(host.now_ms() / 1_000).unwrap_or(i64::MAX);
        let skew_s = i64::try_from(self.gateway.config().clock_skew_seconds).unwrap_or(i64::MAX);
        let set_key = revocation::set_key(&source);
        for _ in 0..4 {
            let (stored, cas) = host.shared_data(&set_key);
            let mut set = stored
                .as_deref()
                .and_then(SharedSet::decode)
                .unwrap_or_default();
            let dropped = set.merge(page, now_s, skew_s, source.max_entries);
            if !host.set_shared_data(&set_key, &set.encode(), cas) {
                continue;
            }
            if dropped > 0 {
                log::warn!(
                    "bulwark gateway: {dropped} revoked sessions dropped to stay within \
                     revocation.max_entries ({}); their tokens are accepted again until \
                     they expire",
                    source.max_entries
                );
            }
            let version_key = revocation::version_key(&source);
            let (current, version_cas) = host.shared_data(&version_key);
            let next = current
                .as_deref()
                .and_then(|v| <[u8; 8]>::try_from(v).ok())
                .map_or(1, |v| u64::from_le_bytes(v).wrapping_add(1));
            // Unconditional if the CAS lost: a bump by someone else is a bump too.
            if !host.set_shared_data(&version_key, &next.to_le_bytes(), version_cas) {
                let _ = host.set_shared_data(&version_key, &next.to_le_bytes(), None);
            }
            self.revoked_version = host.shared_data(&version_key).0;
            self.gateway.install_revoked(set.ids());
            return true;
        }
        false
    }

    /// Marks this worker's fetch as finished (or, after a page that said more, as due at
    /// once), unless a newer fetch has been claimed since.
    fn record_revocation_fetch(
        &self,
        host: &impl Host,
        source: &crate::config::RevocationSource,
        started_at_ms: u64,
        state: FetchState,
        more: bool,
    ) {
        let record = FetchRecord {
            // Dated at the epoch, a record is due at the next tick.
            started_at_ms: if more { 0 } else { started_at_ms },
            state,
        };
        jwks_sync::record_outcome(
            host,
            &revocation::fetch_record_key(source),
            started_at_ms,
            &record,
        );
    }

    fn jwks_tick(&mut self, host: &impl Host, now_ms: u64) {
        self.sync_jwks(host);
        // Envoy answers every call (with no headers on timeout); this only guards against
        // a lost answer blocking this worker's fetches for good.
        let timeout = self.gateway.config().jwks.timeout + 2 * JWKS_TICK;
        if self
            .pending_fetch
            .is_some_and(|p| now_ms > p.started_at_ms.saturating_add(millis(timeout)))
        {
            self.pending_fetch = None;
        }
        if self.pending_fetch.is_none() {
            self.pending_fetch = self.start_fetch(host, FetchReason::Periodic, now_ms);
        }
    }

    fn send_renewals(&mut self, host: &impl Host, now_ms: u64) {
        if self.renewals.is_empty() {
            return;
        }
        let Some(limits) = self.gateway.config().rate_limit.clone() else {
            return;
        };
        if let Some(pending) = &self.pending_renewal {
            // Envoy answers every call by its deadline; this only guards against a lost one.
            let deadline = limits.timeout + 2 * limits.renew_interval;
            if now_ms <= pending.started_at_ms.saturating_add(millis(deadline)) {
                return;
            }
            self.pending_renewal = None;
        }
        let Some(table) = &self.leases else { return };
        if self.renewals.is_empty() {
            return;
        }
        let take = self.renewals.len().min(lease::MAX_ITEMS);
        let (items, held): (Vec<Renewal>, Vec<u32>) = self
            .renewals
            .drain(..take)
            .filter_map(|item| {
                let held = table.claimed_held(host, &item.key, item.claim, now_ms)?;
                Some((item, held))
            })
            .unzip();
        if items.is_empty() {
            return;
        }
        let requests: Vec<ItemRequest<'_>> = items
            .iter()
            .zip(&held)
            .map(|(item, held)| ItemRequest {
                entries: &item.entries,
                held: *held,
                spend: 0,
            })
            .collect();
        let message = lease_call::encode(&limits.domain, &requests);
        host.count(Counter::LeaseRenewal);
        match host.dispatch_grpc_call(
            &limits.cluster,
            lease::LEASE_SERVICE,
            lease::LEASE_METHOD,
            &message,
            limits.timeout,
        ) {
            Some(token) => {
                self.pending_renewal = Some(PendingRenewal {
                    token,
                    started_at_ms: now_ms,
                    items,
                });
            }
            None => {
                host.count(Counter::CalloutFailure);
                for item in &items {
                    table.release(host, &item.key, item.claim, now_ms);
                }
            }
        }
    }

    /// The answer to a call the timer made (a renewal batch, a page of revoked
    /// sessions). `false` when the token is not this worker's.
    pub fn on_grpc_call_response(
        &mut self,
        host: &impl Host,
        token: u32,
        status_code: u32,
        size: usize,
    ) -> bool {
        if let Some(fetch) = self.pending_revocations.take_if(|p| p.token == token) {
            self.finish_revocation_fetch(host, fetch, status_code, size);
            return true;
        }
        let Some(pending) = self.pending_renewal.take_if(|p| p.token == token) else {
            return false;
        };
        let Some(table) = &self.leases else {
            return true;
        };
        let now_ms = host.now_ms();
        let grants = match status_code {
            0 => host
                .grpc_call_response(size)
                .ok_or_else(|| "no response message".to_owned())
                .and_then(|bytes| {
                    lease_call::decode(&bytes, pending.items.len()).map_err(|e| e.to_string())
                }),
            code => Err(format!("gRPC status {code}")),
        };
        match grants {
            Ok(grants) => {
                for (item, grant) in pending.items.iter().zip(&grants) {
                    table.apply(host, &item.key, grant, 0, Some(item.claim), now_ms);
                }
            }
            Err(why) => {
                host.count(Counter::CalloutFailure);
                log::warn!(
                    "bulwark gateway: lease renewal of {} descriptors failed ({why}); \
                     held hits are spent, then the route's failure mode applies",
                    pending.items.len()
                );
                for item in &pending.items {
                    table.release(host, &item.key, item.claim, now_ms);
                }
            }
        }
        true
    }

    fn finish_revocation_fetch(
        &mut self,
        host: &impl Host,
        fetch: PendingFetch,
        status_code: u32,
        size: usize,
    ) {
        let Some(source) = self.gateway.config().revocation.clone() else {
            return;
        };
        let page = match status_code {
            0 => host
                .grpc_call_response(size)
                .ok_or_else(|| "no response message".to_owned())
                .and_then(|bytes| revocation::decode_response(&bytes)),
            code => Err(format!("gRPC status {code}")),
        };
        match page {
            Ok(page) if self.apply_revocations(host, &page) => {
                if page.more {
                    // The rest at this worker's next tick, not an interval later.
                    self.last_revocation_tick_ms = None;
                }
                self.record_revocation_fetch(
                    host,
                    &source,
                    fetch.started_at_ms,
                    FetchState::Succeeded,
                    page.more,
                );
            }
            outcome => {
                let why = outcome
                    .err()
                    .unwrap_or_else(|| "the shared set kept changing under this worker".to_owned());
                host.count(Counter::CalloutFailure);
                log::warn!(
                    "bulwark gateway: fetching revoked sessions from cluster {} failed \
                     ({why}); the sessions known so far stay refused",
                    source.cluster
                );
                self.record_revocation_fetch(
                    host,
                    &source,
                    fetch.started_at_ms,
                    FetchState::Failed,
                    false,
                );
            }
        }
    }

    /// The answer to an HTTP call the timer made (the periodic JWKS fetch). `false`
    /// when the token is not this worker's.
    pub fn on_http_call_response(
        &mut self,
        host: &impl Host,
        token: u32,
        body_size: usize,
    ) -> bool {
        let Some(fetch) = self.pending_fetch.take_if(|p| p.token == token) else {
            return false;
        };
        self.finish_fetch(host, fetch, body_size);
        true
    }

    /// Installs the JWKS another worker published, if it changed. `true` if new keys
    /// were installed.
    pub fn sync_jwks(&mut self, host: &impl Host) -> bool {
        let key = document_key(&self.gateway.config().jwks);
        let (Some(document), Some(version)) = host.shared_data(&key) else {
            return false;
        };
        if self.jwks_version == Some(version) {
            return false;
        }
        // Remember the version even if it does not parse: only validated documents are
        // published, and re-parsing a bad one every tick would only repeat the warning.
        self.jwks_version = Some(version);
        if self.installed_document.as_ref() == Some(&document) {
            return false;
        }
        match self.gateway.install_jwks(&document) {
            Ok(loaded) => {
                self.installed_document = Some(document);
                log::info!(
                    "bulwark gateway: installed shared JWKS version {version} with keys {:?}",
                    loaded.store.kids()
                );
                true
            }
            Err(e) => {
                log::warn!("bulwark gateway: shared JWKS version {version} refused: {e}");
                false
            }
        }
    }

    /// Starts a JWKS fetch from the active context if one is due and this worker wins the
    /// claim on the shared fetch record.
    pub fn start_fetch(
        &mut self,
        host: &impl Host,
        reason: FetchReason,
        now_ms: u64,
    ) -> Option<PendingFetch> {
        let source = &self.gateway.config().jwks;
        let record_key = fetch_record_key(source);
        let (stored, cas) = host.shared_data(&record_key);
        let last = stored.as_deref().and_then(FetchRecord::decode);
        let have_keys = self.installed_document.is_some();
        if !fetch_due(last.as_ref(), reason, source, now_ms, have_keys) {
            return None;
        }
        let claim = FetchRecord {
            started_at_ms: now_ms,
            state: FetchState::InFlight,
        };
        // With the CAS just read, only one worker's claim succeeds.
        if !host.set_shared_data(&record_key, &claim.encode(), cas) {
            return None;
        }
        log::debug!(
            "bulwark gateway: fetching JWKS from cluster {} ({reason:?})",
            source.cluster
        );
        match host.dispatch_http_call(
            &source.cluster,
            jwks_sync::request_headers(source),
            source.timeout,
        ) {
            Some(token) => Some(PendingFetch {
                token,
                started_at_ms: now_ms,
            }),
            None => {
                host.count(Counter::CalloutFailure);
                host.count(Counter::JwksFailure);
                self.record_outcome(host, now_ms, FetchState::Failed);
                None
            }
        }
    }

    /// Handles the JWKS answer being delivered: a usable key set is installed here and
    /// published to the other workers; anything else keeps the current keys.
    pub fn finish_fetch(&mut self, host: &impl Host, fetch: PendingFetch, body_size: usize) {
        let (status, body) = host.http_call_response(body_size, MAX_JWKS_BYTES);
        let source = self.gateway.config().jwks.clone();
        let outcome = match (status.as_deref(), body) {
            (Some("200"), Some(body)) if self.installed_document.as_ref() == Some(&body) => {
                log::debug!(
                    "bulwark gateway: JWKS from cluster {} unchanged",
                    source.cluster
                );
                host.count(Counter::JwksRefresh);
                self.record_outcome(host, fetch.started_at_ms, FetchState::Succeeded);
                return;
            }
            (Some("200"), Some(body)) => self
                .gateway
                .install_jwks(&body)
                .map(|loaded| (loaded, body))
                .map_err(|e| e.to_string()),
            (status, _) => Err(format!(
                "answer status {}, body of {body_size} bytes (limit {MAX_JWKS_BYTES})",
                status.unwrap_or("none: no answer or timeout")
            )),
        };
        match outcome {
            Ok((loaded, body)) => {
                let document = document_key(&source);
                if host.set_shared_data(&document, &body, None) {
                    self.jwks_version = host.shared_data(&document).1;
                }
                self.installed_document = Some(body);
                for skipped in &loaded.skipped {
                    log::warn!("bulwark gateway: JWKS key skipped: {skipped}");
                }
                log::info!(
                    "bulwark gateway: fetched JWKS from cluster {} with keys {:?}",
                    source.cluster,
                    loaded.store.kids()
                );
                host.count(Counter::JwksRefresh);
                self.record_outcome(host, fetch.started_at_ms, FetchState::Succeeded);
            }
            Err(reason) => {
                host.count(Counter::CalloutFailure);
                host.count(Counter::JwksFailure);
                log::warn!(
                    "bulwark gateway: JWKS fetch from cluster {} failed: {reason}",
                    source.cluster
                );
                self.record_outcome(host, fetch.started_at_ms, FetchState::Failed);
            }
        }
    }

    /// Marks this worker's fetch as finished, unless a newer fetch has been claimed since.
    fn record_outcome(&self, host: &impl Host, started_at_ms: u64, state: FetchState) {
        let record = FetchRecord {
            started_at_ms,
            state,
        };
        jwks_sync::record_outcome(
            host,
            &fetch_record_key(&self.gateway.config().jwks),
            started_at_ms,
            &record,
        );
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
