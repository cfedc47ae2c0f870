//! The HTTP context: one per request. The flow itself is the logic crate's
//! [`RequestFlow`]; this only hands it the worker and the host.

use std::cell::RefCell;
use std::rc::Rc;

use bulwark_gateway_logic::flow::fail_closed;
use bulwark_gateway_logic::{Action as Step, RequestFlow, Worker};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use crate::host::ProxyHost;

pub type SharedWorker = Rc<RefCell<Worker>>;

pub struct GatewayHttp {
    worker: Option<SharedWorker>,
    host: ProxyHost,
    flow: RequestFlow,
}

impl GatewayHttp {
    pub fn new(worker: Option<SharedWorker>, host: ProxyHost) -> Self {
        Self {
            worker,
            host,
            flow: RequestFlow::new(),
        }
    }

    /// Runs `step` with the worker borrowed, or refuses the request when there is none
    /// (not configured) or it is busy (cannot happen in a single-threaded VM).
    fn with_worker(
        &mut self,
        step: impl FnOnce(&mut RequestFlow, &mut Worker, &ProxyHost) -> Step,
    ) -> Step {
        let Some(shared) = self.worker.clone() else {
            return fail_closed(&self.host, "filter is not configured", self.flow.grpc());
        };
        let Ok(mut worker) = shared.try_borrow_mut() else {
            return fail_closed(&self.host, "worker state busy", self.flow.grpc());
        };
        step(&mut self.flow, &mut worker, &self.host)
    }
}

fn action(step: Step) -> Action {
    match step {
        Step::Continue => Action::Continue,
        Step::Pause => Action::Pause,
    }
}

impl Context for GatewayHttp {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        self.with_worker(|flow, worker, host| {
            flow.on_http_call_response(worker, host, token_id, body_size);
            Step::Pause
        });
    }

    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        self.with_worker(|flow, worker, host| {
            flow.on_grpc_call_response(worker, host, token_id, status_code, response_size);
            Step::Pause
        });
    }
}

impl HttpContext for GatewayHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        action(self.with_worker(|flow, worker, host| flow.on_request_headers(worker, host)))
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        action(self.flow.on_response_headers(&self.host))
    }
}
