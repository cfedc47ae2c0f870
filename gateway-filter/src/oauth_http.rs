//! The HTTP context of the filter instance configured with `oauth_token_errors`: on the
//! token route it turns the transcoder's error answers into RFC 6749 §5.2 ones and marks
//! every answer uncacheable; the decisions are `bulwark_gateway_logic::oauth`'s.
//!
//! This instance sits before the gRPC-JSON transcoder (the gateway instance sits after
//! it), so on the way back it sees the JSON the transcoder made, not the gRPC answer.

use std::rc::Rc;

use bulwark_gateway_logic::oauth::{self, OAuthTokenErrors};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use crate::host;

pub struct OAuthHttp {
    config: Rc<OAuthTokenErrors>,
    /// Whether the request was on the token route (decided on its path).
    token_route: bool,
    /// Status of a response whose body is to be rewritten once complete.
    rewrite_status: Option<u32>,
}

impl OAuthHttp {
    pub fn new(config: Rc<OAuthTokenErrors>) -> Self {
        Self {
            config,
            token_route: false,
            rewrite_status: None,
        }
    }
}

impl Context for OAuthHttp {}

fn text(bytes: Option<Vec<u8>>) -> Option<String> {
    bytes.and_then(|b| String::from_utf8(b).ok())
}

impl HttpContext for OAuthHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.token_route = text(host::request_header(":path"))
            .is_some_and(|path| OAuthTokenErrors::is_token_route(&path));
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if !self.token_route {
            return Action::Continue;
        }
        let status = text(host::response_header(":status"))
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(0);
        let content_type = text(host::response_header("content-type"));
        let plan = self.config.plan(status, content_type.as_deref());
        for (name, value) in &plan.set_headers {
            host::set_response_header(name, value);
        }
        if plan.rewrite_body {
            host::remove_response_header("content-length");
            self.rewrite_status = Some(status);
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(status) = self.rewrite_status else {
            return Action::Continue;
        };
        if !end_of_stream {
            // Envoy keeps buffering until the last chunk.
            return Action::Pause;
        }
        self.rewrite_status = None;
        let rewritten = host::response_body(body_size)
            .and_then(|body| oauth::rewrite_error_body(status, &body));
        if let Some(body) = rewritten {
            host::replace_response_body(body_size, &body);
        }
        Action::Continue
    }
}
