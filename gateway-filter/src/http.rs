//! The HTTP context: one per request.
//!
//! A token whose `kid` is unknown may be signed by a key the issuer just rotated in. The
//! request is then paused while this context refetches the JWKS (at most once per
//! `jwks.min_refetch_interval_seconds` across all workers) and re-verified when the answer
//! arrives. When no refetch may start now, the request is answered 401 at once rather than
//! waiting on another worker's fetch: a client retry after rotation settles succeeds.
//!
//! A request that passes authentication is paused for the rate-limit service when a limit
//! applies to it; its answer lets the request go on (its `RateLimit-*` headers are added
//! to the response) or refuses it with 429. When the call fails, the route's failure mode
//! decides: open lets the request go on, closed answers 503.

use bulwark_gateway_logic::config::FailureMode;
use bulwark_gateway_logic::jwks_sync::FetchReason;
use bulwark_gateway_logic::ratelimit::{self, RateLimitSubject};
use bulwark_gateway_logic::response::{answers_in_grpc, internal_error, unauthorized};
use bulwark_gateway_logic::{Access, RequestHead};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use crate::host;
use crate::ratelimit_call;
use crate::worker::{PendingFetch, SharedWorker, Worker};

/// The request facts kept while the request waits on a JWKS refetch.
struct PausedRequest {
    fetch: PendingFetch,
    path: String,
    authorization: Option<String>,
}

impl PausedRequest {
    fn head(&self) -> RequestHead<'_> {
        RequestHead {
            path: &self.path,
            authorization: self.authorization.as_deref(),
        }
    }
}

/// A rate-limit call in flight.
struct PendingRateLimit {
    token: u32,
    failure_mode: FailureMode,
}

pub struct GatewayHttp {
    worker: Option<SharedWorker>,
    paused: Option<PausedRequest>,
    rate_limit: Option<PendingRateLimit>,
    /// `RateLimit-*` headers for the response of an allowed request.
    response_headers: Vec<(String, String)>,
    /// Whether the filter's own replies go out as gRPC statuses.
    grpc: bool,
}

impl GatewayHttp {
    pub fn new(worker: Option<SharedWorker>) -> Self {
        Self {
            worker,
            paused: None,
            rate_limit: None,
            response_headers: Vec::new(),
            grpc: false,
        }
    }

    /// Carries out a decision: answer 401, or forward (with identity headers when
    /// verified) after the rate-limit check if one applies. `Pause` means a reply was sent
    /// or a rate-limit call is in flight.
    fn apply(&mut self, worker: &Worker, head: &RequestHead<'_>, access: Access) -> Action {
        let user_id = match access {
            Access::Public => None,
            Access::Authenticated(claims) => {
                for (name, value) in worker.gateway().identity_headers(&claims) {
                    host::set_request_header(name, &value);
                }
                Some(claims)
            }
            Access::Denied(err) => {
                log::debug!("bulwark gateway: 401 for {}: {err}", head.path);
                worker.metrics.unauthenticated();
                host::send_local_response(&unauthorized(&err), self.grpc);
                return Action::Pause;
            }
        };
        self.start_rate_limit(worker, head, user_id.as_ref().map(|c| c.sub.as_str()))
    }

    fn start_rate_limit(
        &mut self,
        worker: &Worker,
        head: &RequestHead<'_>,
        user_id: Option<&str>,
    ) -> Action {
        let address = if worker.gateway().limits_by_client_ip(head.path) {
            host::source_address()
        } else {
            None
        };
        let subject = RateLimitSubject {
            path: head.path,
            client_ip: address.as_deref().map(ratelimit::client_ip_from_address),
            user_id,
        };
        let Some(check) = worker.gateway().rate_limit_check(&subject) else {
            worker.metrics.allowed();
            return Action::Continue;
        };
        let message = ratelimit_call::encode(&check);
        match host::dispatch_grpc_call(
            &check.cluster,
            ratelimit_call::SERVICE,
            ratelimit_call::METHOD,
            &message,
            check.timeout,
        ) {
            Some(token) => {
                self.rate_limit = Some(PendingRateLimit {
                    token,
                    failure_mode: check.failure_mode,
                });
                Action::Pause
            }
            None => {
                worker.metrics.callout_failure();
                on_rate_limit_failure(worker, check.failure_mode, self.grpc)
            }
        }
    }
}

fn fail_closed(why: &str, grpc: bool) -> Action {
    log::error!("bulwark gateway: refusing request: {why}");
    host::send_local_response(&internal_error(), grpc);
    Action::Pause
}

fn on_rate_limit_failure(worker: &Worker, mode: FailureMode, grpc: bool) -> Action {
    match ratelimit::on_failure(mode) {
        Some(reply) => {
            host::send_local_response(&reply, grpc);
            Action::Pause
        }
        None => {
            worker.metrics.allowed();
            Action::Continue
        }
    }
}

/// A header value as text. Bytes that are not UTF-8 become U+FFFD, which no route, token
/// or bearer scheme contains, so such a request fails matching or verification (401)
/// instead of being misread.
fn text(value: Vec<u8>) -> String {
    String::from_utf8(value).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn needs_refetch(access: &Access) -> bool {
    matches!(access, Access::Denied(err) if err.unknown_kid().is_some())
}

impl Context for GatewayHttp {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Some(paused) = self.paused.take_if(|p| p.fetch.token == token_id) else {
            return;
        };
        let Some(shared) = self.worker.clone() else {
            fail_closed("filter is not configured", self.grpc);
            return;
        };
        let Ok(mut worker) = shared.try_borrow_mut() else {
            fail_closed("worker state busy after JWKS refetch", self.grpc);
            return;
        };
        worker.finish_fetch(paused.fetch, body_size);
        let head = paused.head();
        let access = worker.gateway_mut().authorize(&head, host::now_unix());
        if let Action::Continue = self.apply(&worker, &head, access) {
            host::resume_request();
        }
    }

    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        let Some(pending) = self.rate_limit.take_if(|p| p.token == token_id) else {
            return;
        };
        let Some(shared) = self.worker.clone() else {
            fail_closed("filter is not configured", self.grpc);
            return;
        };
        let Ok(worker) = shared.try_borrow() else {
            fail_closed("worker state busy after rate-limit call", self.grpc);
            return;
        };
        let verdict = match status_code {
            0 => host::grpc_call_response(response_size)
                .ok_or_else(|| "no response message".to_owned())
                .and_then(|bytes| ratelimit_call::decode(&bytes).map_err(|e| e.to_string())),
            code => Err(format!("gRPC status {code}")),
        };
        let action = match verdict {
            Ok(verdict) => match ratelimit::refusal(&verdict) {
                Some(reply) => {
                    worker.metrics.rate_limited();
                    host::send_local_response(&reply, self.grpc);
                    Action::Pause
                }
                None => {
                    self.response_headers = ratelimit::response_headers(&verdict);
                    worker.metrics.allowed();
                    Action::Continue
                }
            },
            Err(why) => {
                worker.metrics.callout_failure();
                log::warn!(
                    "bulwark gateway: rate-limit call failed ({why}); failing {:?}",
                    pending.failure_mode
                );
                on_rate_limit_failure(&worker, pending.failure_mode, self.grpc)
            }
        };
        if let Action::Continue = action {
            host::resume_request();
        }
    }
}

impl HttpContext for GatewayHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(shared) = self.worker.clone() else {
            return fail_closed("filter is not configured", self.grpc);
        };
        let Ok(mut worker) = shared.try_borrow_mut() else {
            return fail_closed("worker state busy", self.grpc);
        };
        // The method is not read: every decision is made on the route (the path).
        let mut path = String::new();
        let mut authorization = None;
        let mut content_type = None;
        let mut transcoded = false;
        let identity_names = worker.gateway().config().identity_headers.names();
        for (name, value) in host::request_headers() {
            match name.as_str() {
                ":path" => path = text(value),
                "authorization" if authorization.is_none() => authorization = Some(text(value)),
                "content-type" => content_type = Some(text(value)),
                "x-envoy-original-path" => transcoded = true,
                // Before any decision, so that no path (public, refused, error) forwards a
                // client's copy of an identity header.
                name if identity_names.contains(&name) => host::remove_request_header(name),
                _ => {}
            }
        }
        self.grpc = answers_in_grpc(content_type.as_deref(), transcoded);
        let head = RequestHead {
            path: &path,
            authorization: authorization.as_deref(),
        };
        let now = host::now_unix();

        let mut access = worker.gateway_mut().authorize(&head, now);
        if needs_refetch(&access) && worker.sync_jwks() {
            access = worker.gateway_mut().authorize(&head, now);
        }
        if needs_refetch(&access)
            && let Some(fetch) = worker.start_fetch(FetchReason::UnknownKid, host::now_unix_ms())
        {
            self.paused = Some(PausedRequest {
                fetch,
                path,
                authorization,
            });
            return Action::Pause;
        }
        self.apply(&worker, &head, access)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        for (name, value) in &self.response_headers {
            host::set_response_header(name, value);
        }
        Action::Continue
    }
}
