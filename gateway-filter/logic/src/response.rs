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
    /// The gRPC status code a gRPC client gets instead (see [`answers_in_grpc`]).
    pub grpc_code: u32,
    /// The human-readable message (the JSON body's, and a gRPC client's `grpc-message`).
    pub message: String,
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
        grpc_code: code,
        message: message.to_owned(),
        headers,
        body,
    }
}

/// Whether a refusal must be answered as a gRPC status rather than an HTTP status and JSON
/// body: the client speaks gRPC (`content-type: application/grpc...`) and the request is
/// not a REST call the transcoder turned into gRPC (those carry `x-envoy-original-path`,
/// and the client expects JSON). Left to Envoy, a gRPC client would get the gRPC code
/// Envoy derives from the HTTP status, UNAVAILABLE for 429, which clients retry, instead of
/// RESOURCE_EXHAUSTED.
pub fn answers_in_grpc(content_type: Option<&str>, transcoded: bool) -> bool {
    !transcoded
        && content_type.is_some_and(|t| {
            t.trim_start()
                .get(..16)
                .is_some_and(|head| head.eq_ignore_ascii_case("application/grpc"))
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_clients_get_grpc_statuses_and_transcoded_rest_calls_json() {
        assert!(answers_in_grpc(Some("application/grpc"), false));
        assert!(answers_in_grpc(Some("application/grpc+proto"), false));
        assert!(!answers_in_grpc(Some("application/grpc"), true));
        assert!(!answers_in_grpc(Some("application/json"), false));
        assert!(!answers_in_grpc(None, false));
    }

    #[test]
    fn every_reply_carries_its_grpc_code_and_message() {
        let limited = too_many_requests(Vec::new());
        assert_eq!(
            (limited.status, limited.grpc_code),
            (429, GRPC_RESOURCE_EXHAUSTED)
        );
        assert_eq!(limited.message, "rate limit exceeded, retry later");
        let refused = unauthorized(&AuthError::MissingToken);
        assert_eq!(
            (refused.status, refused.grpc_code),
            (401, GRPC_UNAUTHENTICATED)
        );
        assert_eq!(refused.message, "a bearer token is required");
        let down = rate_limit_unavailable();
        assert_eq!((down.status, down.grpc_code), (503, GRPC_UNAVAILABLE));
    }
}
