//! Thin, panic-free wrappers over the proxy-wasm hostcalls the filter uses, and
//! [`ProxyHost`], the logic crate's [`Host`] over them. The SDK's context-trait helpers
//! unwrap host errors; these return or log them instead.

use std::time::{Duration, UNIX_EPOCH};

use bulwark_gateway_logic::{Counter, Fact, Host, LocalResponse};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, GrpcStatusCode, MapType};

use crate::metrics::Metrics;

/// Envoy, as the logic crate's flow sees it. Holds the counter ids of this VM.
#[derive(Debug, Clone, Copy)]
pub struct ProxyHost {
    pub metrics: Metrics,
}

impl Host for ProxyHost {
    fn now_ms(&self) -> u64 {
        now_unix_ms()
    }

    fn request_headers(&self) -> Vec<(String, Vec<u8>)> {
        request_headers()
    }

    fn set_request_header(&self, name: &str, value: &str) {
        set_request_header(name, value);
    }

    fn add_request_header(&self, name: &str, value: &str) {
        add_request_header(name, value);
    }

    fn remove_request_header(&self, name: &str) {
        remove_request_header(name);
    }

    fn source_address(&self) -> Option<String> {
        source_address()
    }

    fn response_header(&self, name: &str) -> Option<Vec<u8>> {
        response_header(name)
    }

    fn set_response_header(&self, name: &str, value: &str) {
        set_response_header(name, value);
    }

    fn send_local_response(&self, response: &LocalResponse, grpc: bool) {
        send_local_response(response, grpc);
    }

    fn resume_request(&self) {
        resume_request();
    }

    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: Vec<(&str, &str)>,
        timeout: Duration,
    ) -> Option<u32> {
        dispatch_http_call(cluster, headers, timeout)
    }

    fn http_call_response(
        &self,
        body_size: usize,
        max_body: usize,
    ) -> (Option<String>, Option<Vec<u8>>) {
        http_call_response(body_size, max_body)
    }

    fn dispatch_grpc_call(
        &self,
        cluster: &str,
        service: &str,
        method: &str,
        message: &[u8],
        timeout: Duration,
    ) -> Option<u32> {
        dispatch_grpc_call(cluster, service, method, message, timeout)
    }

    fn grpc_call_response(&self, size: usize) -> Option<Vec<u8>> {
        grpc_call_response(size)
    }

    fn shared_data(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        shared_data(key)
    }

    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        set_shared_data(key, value, cas)
    }

    fn count(&self, counter: Counter) {
        self.metrics.count(counter);
    }

    fn record(&self, fact: Fact, value: &str) {
        // A request header, which the tracing custom tags (with the fact's default) and
        // the access log read; the edge drops the client's own before this filter runs.
        set_request_header(fact.header(), value);
    }
}

/// The proxy's clock in Unix milliseconds. If the host cannot tell the time, 0 makes
/// every token look not-yet-valid, so the filter fails closed rather than skipping `exp`.
pub fn now_unix_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub fn plugin_configuration(size: usize) -> Option<Vec<u8>> {
    hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size)
        .ok()
        .flatten()
}

/// Every request header, in one host call (each call crosses the VM boundary, and each
/// value returned costs the host a call back into the VM to allocate it). Values are raw
/// bytes: a client may send any octet in a header value, and the SDK's `String` getters
/// panic (killing the VM) on one that is not UTF-8. Names are HTTP tokens, always ASCII.
pub fn request_headers() -> Vec<(String, Vec<u8>)> {
    match hostcalls::get_map_bytes(MapType::HttpRequestHeaders) {
        Ok(headers) => headers,
        Err(status) => {
            log::error!("could not read the request headers: {status:?}");
            Vec::new()
        }
    }
}

pub fn set_request_header(name: &str, value: &str) {
    if let Err(status) = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value)) {
        log::error!("could not set request header {name}: {status:?}");
    }
}

pub fn add_request_header(name: &str, value: &str) {
    if let Err(status) = hostcalls::add_map_value(MapType::HttpRequestHeaders, name, value) {
        log::error!("could not add request header {name}: {status:?}");
    }
}

pub fn remove_request_header(name: &str) {
    if let Err(status) = hostcalls::remove_map_value(MapType::HttpRequestHeaders, name) {
        log::error!("could not remove request header {name}: {status:?}");
    }
}

/// Sends a reply of the filter's own: as a gRPC status (HTTP 200, `grpc-status`,
/// `grpc-message` and the reply's headers as metadata) to a gRPC client, else as the HTTP
/// status and JSON body.
pub fn send_local_response(response: &LocalResponse, grpc: bool) {
    let result = if grpc {
        let metadata: Vec<(&str, &[u8])> = response
            .headers
            .iter()
            .filter(|(name, _)| name != "content-type")
            .map(|(name, value)| (name.as_str(), value.as_bytes()))
            .collect();
        hostcalls::send_grpc_response(
            grpc_status(response.grpc_code),
            Some(&response.message),
            metadata,
        )
    } else {
        hostcalls::send_http_response(
            response.status,
            response.header_refs(),
            Some(&response.body),
        )
    };
    if let Err(status) = result {
        log::error!(
            "could not send the local {} reply: {status:?}",
            response.status
        );
    }
}

/// The SDK's enum for the gRPC codes the filter answers with.
fn grpc_status(code: u32) -> GrpcStatusCode {
    match code {
        8 => GrpcStatusCode::ResourceExhausted,
        14 => GrpcStatusCode::Unavailable,
        16 => GrpcStatusCode::Unauthenticated,
        _ => GrpcStatusCode::Internal,
    }
}

pub fn resume_request() {
    if let Err(status) = hostcalls::resume_http_request() {
        log::error!("could not resume the request: {status:?}");
    }
}

pub fn set_tick_period(period: Duration) {
    if let Err(status) = hostcalls::set_tick_period(period) {
        log::error!("could not set the tick period: {status:?}");
    }
}

/// Value and CAS of a shared-data key (`None` when absent or unreadable).
pub fn shared_data(key: &str) -> (Option<Vec<u8>>, Option<u32>) {
    hostcalls::get_shared_data(key).unwrap_or((None, None))
}

/// Writes shared data; `false` on a CAS mismatch (another worker wrote first) or error.
pub fn set_shared_data(key: &str, value: &[u8], cas: Option<u32>) -> bool {
    hostcalls::set_shared_data(key, Some(value), cas).is_ok()
}

/// Status, then body, of the HTTP call response being delivered.
pub fn http_call_response(body_size: usize, max_body: usize) -> (Option<String>, Option<Vec<u8>>) {
    let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
        .ok()
        .flatten();
    let body = if body_size == 0 || body_size > max_body {
        None
    } else {
        hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
            .ok()
            .flatten()
    };
    (status, body)
}

/// Starts an HTTP call; the answer comes to the context that is active now.
pub fn dispatch_http_call(
    cluster: &str,
    headers: Vec<(&str, &str)>,
    timeout: Duration,
) -> Option<u32> {
    match hostcalls::dispatch_http_call(cluster, headers, None, Vec::new(), timeout) {
        Ok(token) => Some(token),
        Err(status) => {
            log::warn!("could not call cluster {cluster}: {status:?}");
            None
        }
    }
}

pub fn set_response_header(name: &str, value: &str) {
    if let Err(status) = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some(value)) {
        log::error!("could not set response header {name}: {status:?}");
    }
}

/// The downstream peer address (`source.address`, e.g. `203.0.113.7:51234`).
pub fn source_address() -> Option<String> {
    hostcalls::get_property(vec!["source", "address"])
        .ok()
        .flatten()
        .and_then(|bytes| String::from_utf8(bytes).ok())
}

/// Starts a unary gRPC call on a cluster; the answer comes to the active context.
pub fn dispatch_grpc_call(
    cluster: &str,
    service: &str,
    method: &str,
    message: &[u8],
    timeout: Duration,
) -> Option<u32> {
    match hostcalls::dispatch_grpc_call(
        cluster,
        service,
        method,
        Vec::new(),
        Some(message),
        timeout,
    ) {
        Ok(token) => Some(token),
        Err(status) => {
            log::warn!("could not call {service}/{method} on cluster {cluster}: {status:?}");
            None
        }
    }
}

/// The message of the gRPC call response being delivered.
pub fn grpc_call_response(size: usize) -> Option<Vec<u8>> {
    if size == 0 {
        // An empty message is valid protobuf (all defaults).
        return Some(Vec::new());
    }
    hostcalls::get_buffer(BufferType::GrpcReceiveBuffer, 0, size)
        .ok()
        .flatten()
}

/// One response header's value, as bytes (`None` when absent or unreadable).
pub fn response_header(name: &str) -> Option<Vec<u8>> {
    hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, name)
        .ok()
        .flatten()
}

pub fn remove_response_header(name: &str) {
    if let Err(status) = hostcalls::remove_map_value(MapType::HttpResponseHeaders, name) {
        log::error!("could not remove response header {name}: {status:?}");
    }
}

/// The response body buffered so far (`size` bytes).
pub fn response_body(size: usize) -> Option<Vec<u8>> {
    hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size)
        .ok()
        .flatten()
}

/// Replaces the whole buffered response body (`size` bytes) with `body`.
pub fn replace_response_body(size: usize, body: &[u8]) {
    if let Err(status) = hostcalls::set_buffer(BufferType::HttpResponseBody, 0, size, body) {
        log::error!("could not replace the response body: {status:?}");
    }
}

/// One request header's value, as bytes (`None` when absent or unreadable).
pub fn request_header(name: &str) -> Option<Vec<u8>> {
    hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
        .ok()
        .flatten()
}
