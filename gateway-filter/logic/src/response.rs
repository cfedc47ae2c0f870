//! Local replies the filter sends instead of forwarding a request, in the edge contract's
//! shape: the HTTP status of the gRPC code and a JSON body `{"code", "message"}`.

use serde::Serialize;

use crate::error::AuthError;

/// gRPC UNAUTHENTICATED.
pub const GRPC_UNAUTHENTICATED: u32 = 16;
/// gRPC RESOURCE_EXHAUSTED.
pub const GRPC_RESOURCE_EXHAUSTED: u32 = 8;
/// gRPC UNAVAILABLE.
pub const GRPC_UNAVAILABLE: u32 = 14;
/// gRPC INTERNAL.
pub const GRPC_INTERNAL: u32 = 13;

/// A reply produced by the filter itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    /// HTTP status.
    pub status: u32,
    /// Headers, lower-case names.
    pub headers: Vec<(String, String)>,
    /// JSON body.
    pub body: Vec<u8>,
}

impl LocalResponse {
    /// The value of the first header named `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Headers borrowed in the form proxy-wasm's `send_http_response` takes.
    pub fn header_refs(&self) -> Vec<(&str, &str)> {
        self.headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: u32,
    message: &'a str,
}

fn json_error(
    status: u32,
    code: u32,
    message: &str,
    mut headers: Vec<(String, String)>,
) -> LocalResponse {
    // Serializing two plain fields cannot fail; the fallback keeps this path panic-free anyway.
    let body = serde_json::to_vec(&ErrorBody { code, message })
        .unwrap_or_else(|_| format!("{{\"code\":{code},\"message\":\"error\"}}").into_bytes());
    headers.push(("content-type".to_owned(), "application/json".to_owned()));
    headers.push(("cache-control".to_owned(), "no-store".to_owned()));
    LocalResponse {
        status,
        headers,
        body,
    }
}

/// The 401 for a refused credential (RFC 6750 §3): every failure, a missing token
/// included, is reported as `invalid_token`, as the edge contract fixes.
pub fn unauthorized(err: &AuthError) -> LocalResponse {
    let message = err.client_message();
    let challenge = format!("Bearer error=\"invalid_token\", error_description=\"{message}\"");
    json_error(
        401,
        GRPC_UNAUTHENTICATED,
        message,
        vec![("www-authenticate".to_owned(), challenge)],
    )
}

/// The 429 for a request over its limit, carrying the rate-limit headers.
pub fn too_many_requests(headers: Vec<(String, String)>) -> LocalResponse {
    json_error(
        429,
        GRPC_RESOURCE_EXHAUSTED,
        "rate limit exceeded, retry later",
        headers,
    )
}

/// The 503 for a fail-closed route whose rate-limit check could not be made.
pub fn rate_limit_unavailable() -> LocalResponse {
    json_error(
        503,
        GRPC_UNAVAILABLE,
        "the service is temporarily unavailable, retry later",
        vec![("retry-after".to_owned(), "1".to_owned())],
    )
}

/// The 500 for a request the filter could not decide on (it fails closed).
pub fn internal_error() -> LocalResponse {
    json_error(500, GRPC_INTERNAL, "internal error", Vec::new())
}
