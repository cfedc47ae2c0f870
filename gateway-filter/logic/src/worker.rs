//! One worker's state, shared by its root context and its HTTP contexts (a proxy-wasm VM
//! is single-threaded, so `Rc<RefCell<_>>` is enough): the gateway and the JWKS version
//! it holds, plus the JWKS fetch protocol between workers.

use std::cell::RefCell;
use std::rc::Rc;

use bulwark_gateway_logic::Gateway;
use bulwark_gateway_logic::config::GatewayConfig;
use bulwark_gateway_logic::jwks_sync::{
    self, FetchReason, FetchRecord, FetchState, MAX_JWKS_BYTES, document_key, fetch_due,
    fetch_record_key,
};

use crate::host;
use crate::metrics::Metrics;

pub type SharedWorker = Rc<RefCell<Worker>>;

/// A JWKS call in flight, owned by the context that dispatched it.
#[derive(Debug, Clone, Copy)]
pub struct PendingFetch {
    pub token: u32,
    pub started_at_ms: u64,
}

pub struct Worker {
    gateway: Gateway,
    /// CAS of the shared JWKS document installed here, so a tick re-parses only on change.
    jwks_version: Option<u32>,
    /// The JWKS document installed here: an unchanged refetch keeps the keys and the
    /// verified-token cache (installing keys clears it) and is not republished.
    installed_document: Option<Vec<u8>>,
    pub metrics: Metrics,
}

impl Worker {
    pub fn new(config: GatewayConfig, metrics: Metrics) -> Self {
        Self {
            gateway: Gateway::new(config),
            jwks_version: None,
            installed_document: None,
            metrics,
        }
    }

    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    pub fn gateway_mut(&mut self) -> &mut Gateway {
        &mut self.gateway
    }

    /// Installs the JWKS another worker published, if it changed. `true` if new keys
    /// were installed.
    pub fn sync_jwks(&mut self) -> bool {
        let key = document_key(&self.gateway.config().jwks);
        let (Some(document), Some(version)) = host::shared_data(&key) else {
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
    pub fn start_fetch(&mut self, reason: FetchReason, now_ms: u64) -> Option<PendingFetch> {
        let source = &self.gateway.config().jwks;
        let record_key = fetch_record_key(source);
        let (stored, cas) = host::shared_data(&record_key);
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
        if !host::set_shared_data(&record_key, &claim.encode(), cas) {
            return None;
        }
        log::debug!(
            "bulwark gateway: fetching JWKS from cluster {} ({reason:?})",
            source.cluster
        );
        match host::dispatch_http_call(
            &source.cluster,
            jwks_sync::request_headers(source),
            source.timeout,
        ) {
            Some(token) => Some(PendingFetch {
                token,
                started_at_ms: now_ms,
            }),
            None => {
                self.metrics.callout_failure();
                self.record_outcome(now_ms, FetchState::Failed);
                None
            }
        }
    }

    /// Handles the JWKS answer being delivered: a usable key set is installed here and
    /// published to the other workers; anything else keeps the current keys.
    pub fn finish_fetch(&mut self, fetch: PendingFetch, body_size: usize) {
        let (status, body) = host::http_call_response(body_size, MAX_JWKS_BYTES);
        let source = self.gateway.config().jwks.clone();
        let outcome = match (status.as_deref(), body) {
            (Some("200"), Some(body)) if self.installed_document.as_ref() == Some(&body) => {
                log::debug!(
                    "bulwark gateway: JWKS from cluster {} unchanged",
                    source.cluster
                );
                self.record_outcome(fetch.started_at_ms, FetchState::Succeeded);
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
                if host::set_shared_data(&document, &body, None) {
                    self.jwks_version = host::shared_data(&document).1;
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
                self.record_outcome(fetch.started_at_ms, FetchState::Succeeded);
            }
            Err(reason) => {
                self.metrics.callout_failure();
                log::warn!(
                    "bulwark gateway: JWKS fetch from cluster {} failed: {reason}",
                    source.cluster
                );
                self.record_outcome(fetch.started_at_ms, FetchState::Failed);
            }
        }
    }

    /// Marks this worker's fetch as finished, unless a newer fetch has been claimed since.
    fn record_outcome(&self, started_at_ms: u64, state: FetchState) {
        let record_key = fetch_record_key(&self.gateway.config().jwks);
        let (stored, cas) = host::shared_data(&record_key);
        let current = stored.as_deref().and_then(FetchRecord::decode);
        if current.is_some_and(|r| r.started_at_ms != started_at_ms) {
            return;
        }
        let _ = host::set_shared_data(
            &record_key,
            &FetchRecord {
                started_at_ms,
                state,
            }
            .encode(),
            cas,
        );
    }
}
