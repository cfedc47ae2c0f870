//! An HTTP filter that does nothing, built with the same proxy-wasm SDK and profile as the
//! gateway filter: the floor any proxy-wasm filter pays in Envoy (VM entries for context
//! creation, request and response headers, log, done and delete), against which
//! `cargo xtask edge-costs` prices the gateway filter. Not shipped.
//!
//! `cargo build --manifest-path xtask/empty-filter/Cargo.toml --target wasm32-wasip1 --profile wasm`

#![forbid(unsafe_code)]

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_context_id| Box::new(EmptyRoot));
}}

struct EmptyRoot;

impl Context for EmptyRoot {}

impl RootContext for EmptyRoot {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(EmptyHttp))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct EmptyHttp;

impl Context for EmptyHttp {}

impl HttpContext for EmptyHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }
}
