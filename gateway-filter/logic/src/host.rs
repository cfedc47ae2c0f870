//! What the filter's flow needs from its host, as a trait: the proxy-wasm adapter
//! implements it over Envoy's hostcalls, the tests over a mock. Every method is
//! infallible from the flow's side: the adapter logs a host error and answers as the
//! comment of each method says, so that no host failure can skip a check.

use std::time::Duration;

use crate::response::LocalResponse;

/// What the host does with the request after a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Go on to the next filter.
    Continue,
    /// Hold the request: a reply was sent, or a callout is in flight and its answer
    /// resumes or refuses the request.
    Pause,
}

/// The filter's counters (`wasmcustom.bulwark_gateway.*` in Envoy's stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    /// A request forwarded (public, or authenticated and within its limits).
    Allowed,
    /// A request refused with 401.
    Unauthenticated,
    /// A request refused with 429, by the rate-limit service or by a local verdict.
    RateLimited,
    /// A JWKS or rate-limit call that could not be made or got no usable answer.
    CalloutFailure,
    /// A request admitted from a lease, without a call.
    LeaseSpent,
    /// A background lease renewal call.
    LeaseRenewal,
    /// A JWKS fetch that got a usable key set (new or unchanged).
    JwksRefresh,
    /// A JWKS fetch that could not be made or gave no usable key set.
    JwksFailure,
    /// A request let through because its rate-limit call failed and its route fails open.
    FailOpen,
    /// A request answered 503 because its rate-limit call failed and its route fails
    /// closed.
    FailClosed,
}

/// A fact about one request the filter records for the proxy's span and access log
/// (Envoy: the request header [`Fact::header`], which the tracing custom tags and the
/// access log of `envoy/edge.yaml` read, and which the edge removes from what clients
/// send). Only what differs from [`Fact::default_value`] is recorded: the common request
/// (allowed, its token answered by the cache) records nothing and costs no host call,
/// and the span tags read the default when the header is absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fact {
    /// What the filter did: `unauthenticated`, `rate_limited`, `fail_open`,
    /// `fail_closed` or `error`; absent, `allowed`.
    Decision,
    /// Why a request was refused with 401 ([`crate::error::AuthError::reason`]).
    Reason,
    /// Whether the bearer token was answered by the verified-token cache: `miss`, or
    /// `none` when no token was looked up (a public route, no or a malformed
    /// `Authorization`); absent, `hit`.
    TokenCache,
}

impl Fact {
    /// The request header the fact is kept in.
    pub fn header(self) -> &'static str {
        match self {
            Self::Decision => "x-bulwark-decision",
            Self::Reason => "x-bulwark-reason",
            Self::TokenCache => "x-bulwark-token-cache",
        }
    }

    /// What an absent fact means (the span tag's default).
    pub fn default_value(self) -> Option<&'static str> {
        match self {
            Self::Decision => Some("allowed"),
            Self::Reason => None,
            Self::TokenCache => Some("hit"),
        }
    }
}

/// The proxy, as the flow sees it.
pub trait Host {
    /// The proxy's clock in Unix milliseconds; 0 when unknown, which makes every token
    /// look not yet valid, so the flow fails closed.
    fn now_ms(&self) -> u64;

    /// Every request header; values as raw bytes (a client may send any octet).
    fn request_headers(&self) -> Vec<(String, Vec<u8>)>;
    /// Sets a request header, replacing every value it had.
    fn set_request_header(&self, name: &str, value: &str);
    /// Adds a request header value, keeping any already there: for a header the request
    /// does not carry, where it is [`Host::set_request_header`] at a lower price.
    fn add_request_header(&self, name: &str, value: &str);
    /// Removes a request header.
    fn remove_request_header(&self, name: &str);
    /// The downstream peer address (`203.0.113.7:51234`), if known.
    fn source_address(&self) -> Option<String>;
    /// One response header's value (in the response-headers callback), if present.
    fn response_header(&self, name: &str) -> Option<Vec<u8>>;
    /// Sets a response header (in the response-headers callback).
    fn set_response_header(&self, name: &str, value: &str);
    /// Answers the request with the filter's own reply, as a gRPC status when `grpc`.
    fn send_local_response(&self, response: &LocalResponse, grpc: bool);
    /// Resumes a paused request.
    fn resume_request(&self);

    /// Starts an HTTP call; its answer comes to the context active now. `None` when the
    /// call could not be started.
    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: Vec<(&str, &str)>,
        timeout: Duration,
    ) -> Option<u32>;
    /// Status and body (at most `max_body` bytes, else `None`) of the HTTP answer being
    /// delivered.
    fn http_call_response(
        &self,
        body_size: usize,
        max_body: usize,
    ) -> (Option<String>, Option<Vec<u8>>);
    /// Starts a unary gRPC call; its answer comes to the context active now.
    fn dispatch_grpc_call(
        &self,
        cluster: &str,
        service: &str,
        method: &str,
        message: &[u8],
        timeout: Duration,
    ) -> Option<u32>;
    /// The message of the gRPC answer being delivered.
    fn grpc_call_response(&self, size: usize) -> Option<Vec<u8>>;

    /// Value and CAS of a shared-data key, shared by every worker of the proxy
    /// (`(None, None)` when absent or unreadable).
    fn shared_data(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Writes shared data if its CAS is still `cas` (`None`: unconditionally); `false`
    /// on a CAS mismatch (another worker wrote first) or an error.
    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool;

    /// Adds one to a counter.
    fn count(&self, counter: Counter);

    /// Records a fact about the request being handled (see [`Fact`]); a host that cannot
    /// keep it logs why, and the request goes on.
    fn record(&self, fact: Fact, value: &str);
}
