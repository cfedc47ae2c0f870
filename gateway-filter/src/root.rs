//! The root context: configuration, the JWKS timer, and HTTP context creation.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use bulwark_gateway_logic::PluginConfig;
use bulwark_gateway_logic::jwks_sync::FetchReason;
use bulwark_gateway_logic::oauth::OAuthTokenErrors;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use crate::host;
use crate::http::GatewayHttp;
use crate::metrics::Metrics;
use crate::oauth_http::OAuthHttp;
use crate::worker::{PendingFetch, SharedWorker, Worker};

/// How often each worker looks at shared data and the fetch schedule; the schedule
/// itself (refresh and refetch intervals) is in the configuration.
const TICK: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct GatewayRoot {
    worker: Option<SharedWorker>,
    /// Set instead of `worker` when this instance rewrites the token endpoint's answers.
    oauth: Option<Rc<OAuthTokenErrors>>,
    metrics: Option<Metrics>,
    pending_fetch: Option<PendingFetch>,
}

impl Context for GatewayRoot {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Some(fetch) = self.pending_fetch.take_if(|p| p.token == token_id) else {
            return;
        };
        if let Some(Ok(mut worker)) = self.worker.as_ref().map(|w| w.try_borrow_mut()) {
            worker.finish_fetch(fetch, body_size);
        }
    }
}

impl RootContext for GatewayRoot {
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        let Some(bytes) = host::plugin_configuration(plugin_configuration_size) else {
            log::error!(
                "bulwark gateway: no plugin configuration; set the filter's `configuration` to the JSON config"
            );
            return false;
        };
        let config = match PluginConfig::from_json(&bytes) {
            Ok(PluginConfig::Gateway(config)) => *config,
            Ok(PluginConfig::OAuthTokenErrors(oauth)) => {
                log::info!("bulwark gateway: configured to rewrite the token endpoint's answers");
                self.oauth = Some(Rc::new(oauth));
                self.worker = None;
                return true;
            }
            Err(e) => {
                log::error!("bulwark gateway: {e}");
                return false;
            }
        };
        self.oauth = None;
        log::info!(
            "bulwark gateway: configured (issuer {}, JWKS from cluster {} path {}, {} public routes)",
            config.issuer,
            config.jwks.cluster,
            config.jwks.path,
            config.public_routes.len()
        );
        // Envoy keeps metric definitions per VM; define them once even if reconfigured.
        let metrics = *self.metrics.get_or_insert_with(Metrics::define);
        let mut worker = Worker::new(config, metrics);
        worker.sync_jwks();
        self.worker = Some(Rc::new(RefCell::new(worker)));
        self.pending_fetch = None;
        host::set_tick_period(TICK);
        true
    }

    fn on_tick(&mut self) {
        let Some(Ok(mut worker)) = self.worker.as_ref().map(|w| w.try_borrow_mut()) else {
            return;
        };
        worker.sync_jwks();
        let now_ms = host::now_unix_ms();
        // Envoy answers every call (with no headers on timeout); this only guards against
        // a lost answer blocking this worker's fetches for good.
        let timeout = worker.gateway().config().jwks.timeout + 2 * TICK;
        let deadline_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        if self
            .pending_fetch
            .is_some_and(|p| now_ms > p.started_at_ms.saturating_add(deadline_ms))
        {
            self.pending_fetch = None;
        }
        if self.pending_fetch.is_none() {
            self.pending_fetch = worker.start_fetch(FetchReason::Periodic, now_ms);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        if let Some(oauth) = &self.oauth {
            return Some(Box::new(OAuthHttp::new(oauth.clone())));
        }
        // Returning None would make the SDK panic; a context without a worker fails closed.
        Some(Box::new(GatewayHttp::new(self.worker.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
