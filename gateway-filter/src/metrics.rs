//! Envoy counters of the filter (`wasmcustom.bulwark_gateway.*` in Envoy's stats).

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

/// Counter ids; a counter the host refused to define is `None` and silently not counted.
#[derive(Debug, Clone, Copy, Default)]
pub struct Metrics {
    allowed: Option<u32>,
    unauthenticated: Option<u32>,
    rate_limited: Option<u32>,
    callout_failures: Option<u32>,
}

fn define(name: &str) -> Option<u32> {
    match hostcalls::define_metric(MetricType::Counter, name) {
        Ok(id) => Some(id),
        Err(status) => {
            log::warn!("could not define metric {name}: {status:?}");
            None
        }
    }
}

fn increment(id: Option<u32>) {
    if let Some(id) = id {
        let _ = hostcalls::increment_metric(id, 1);
    }
}

impl Metrics {
    pub fn define() -> Self {
        Self {
            allowed: define("bulwark_gateway.allowed"),
            unauthenticated: define("bulwark_gateway.unauthenticated"),
            rate_limited: define("bulwark_gateway.rate_limited"),
            callout_failures: define("bulwark_gateway.callout_failures"),
        }
    }

    pub fn allowed(&self) {
        increment(self.allowed);
    }

    pub fn unauthenticated(&self) {
        increment(self.unauthenticated);
    }

    pub fn rate_limited(&self) {
        increment(self.rate_limited);
    }

    pub fn callout_failure(&self) {
        increment(self.callout_failures);
    }
}
