//! Envoy counters of the filter (`wasmcustom.bulwark_gateway.*` in Envoy's stats).

use bulwark_gateway_logic::Counter;
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

/// Counter ids; a counter the host refused to define is `None` and silently not counted.
#[derive(Debug, Clone, Copy, Default)]
pub struct Metrics {
    allowed: Option<u32>,
    unauthenticated: Option<u32>,
    rate_limited: Option<u32>,
    callout_failures: Option<u32>,
    lease_spent: Option<u32>,
    lease_renewals: Option<u32>,
    jwks_refreshes: Option<u32>,
    jwks_failures: Option<u32>,
    fail_open: Option<u32>,
    fail_closed: Option<u32>,
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
            lease_spent: define("bulwark_gateway.lease_spent"),
            lease_renewals: define("bulwark_gateway.lease_renewals"),
            jwks_refreshes: define("bulwark_gateway.jwks_refreshes"),
            jwks_failures: define("bulwark_gateway.jwks_failures"),
            fail_open: define("bulwark_gateway.fail_open"),
            fail_closed: define("bulwark_gateway.fail_closed"),
        }
    }

    pub fn count(&self, counter: Counter) {
        increment(match counter {
            Counter::Allowed => self.allowed,
            Counter::Unauthenticated => self.unauthenticated,
            Counter::RateLimited => self.rate_limited,
            Counter::CalloutFailure => self.callout_failures,
            Counter::LeaseSpent => self.lease_spent,
            Counter::LeaseRenewal => self.lease_renewals,
            Counter::JwksRefresh => self.jwks_refreshes,
            Counter::JwksFailure => self.jwks_failures,
            Counter::FailOpen => self.fail_open,
            Counter::FailClosed => self.fail_closed,
        });
    }
}
