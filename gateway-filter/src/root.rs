//! The root context: configuration, the worker's timer (JWKS sync and fetch, lease
//! renewals), and HTTP context creation. What the timer does is the logic crate's
//! [`Worker`]; this only binds it to the host.

use std::cell::RefCell;
use std::rc::Rc;

use bulwark_gateway_logic::oauth::OAuthTokenErrors;
use bulwark_gateway_logic::{PluginConfig, Worker};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use crate::host::{self, ProxyHost};
use crate::http::{GatewayHttp, SharedWorker};
use crate::metrics::Metrics;
use crate::oauth_http::OAuthHttp;

#[derive(Default)]
pub struct GatewayRoot {
    worker: Option<SharedWorker>,
    /// Set instead of `worker` when this instance rewrites the token endpoint's answers.
    oauth: Option<Rc<OAuthTokenErrors>>,
    host: Option<ProxyHost>,
}

impl GatewayRoot {
    fn with_worker(&self, step: impl FnOnce(&mut Worker, &ProxyHost)) {
        let (Some(shared), Some(host)) = (&self.worker, &self.host) else {
            return;
        };
        if let Ok(mut worker) = shared.try_borrow_mut() {
            step(&mut worker, host);
        }
    }
}

impl Context for GatewayRoot {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        self.with_worker(|worker, host| {
            worker.on_http_call_response(host, token_id, body_size);
        });
    }

    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        self.with_worker(|worker, host| {
            worker.on_grpc_call_response(host, token_id, status_code, response_size);
        });
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
        let host = *self.host.get_or_insert_with(|| ProxyHost {
            metrics: Metrics::define(),
        });
        let mut worker = Worker::new(config);
        worker.sync_jwks(&host);
        host::set_tick_period(worker.tick_period());
        self.worker = Some(Rc::new(RefCell::new(worker)));
        true
    }

    fn on_tick(&mut self) {
        self.with_worker(|worker, host| worker.on_tick(host));
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        if let Some(oauth) = &self.oauth {
            return Some(Box::new(OAuthHttp::new(oauth.clone())));
        }
        let host = self.host.unwrap_or(ProxyHost {
            metrics: Metrics::default(),
        });
        // Returning None would make the SDK panic; a context without a worker fails closed.
        Some(Box::new(GatewayHttp::new(self.worker.clone(), host)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
