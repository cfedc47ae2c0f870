//! The OAuth 2.0 token endpoint's answers (RFC 6749 §5.1, §5.2), made from what the
//! gRPC-JSON transcoder produces for `IssueToken`.
//!
//! Auth reports a refused grant as a gRPC status whose message is `"<error>: <description>"`
//! (e.g. `invalid_client: client authentication failed`); the transcoder turns it into the
//! edge's usual `{"code": N, "message": "..."}` with the matching HTTP status. Clients of a
//! token endpoint expect `{"error", "error_description"}` instead, a `WWW-Authenticate`
//! challenge on 401 and no caching of any answer (tokens are secrets). This module decides
//! those changes; the filter glue applies them on the response path of the token route,
//! where it sees the transcoded answer (it runs before the transcoder in the filter chain,
//! so after it on the way back).

use serde::{Deserialize, Serialize};

use crate::config::{GRPC_ISSUE_TOKEN, REST_OAUTH_TOKEN};
use crate::routes::RouteRule;

/// The RFC 6749 §5.2 error codes a token endpoint answers with.
pub const ERROR_CODES: [&str; 6] = [
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
];

/// Configuration of the token endpoint's answer rewriting.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthTokenErrors {
    /// Realm of the `Basic` challenge on 401.
    #[serde(default = "default_realm")]
    pub realm: String,
}

fn default_realm() -> String {
    "bulwark".to_owned()
}

impl Default for OAuthTokenErrors {
    fn default() -> Self {
        Self {
            realm: default_realm(),
        }
    }
}

/// What to do with one response of the token route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponsePlan {
    /// Headers to set (replacing any value already there).
    pub set_headers: Vec<(&'static str, String)>,
    /// Whether the body is an error to rewrite once it is complete; the glue then drops
    /// `content-length`, which the new body would contradict.
    pub rewrite_body: bool,
}

impl OAuthTokenErrors {
    /// Whether `path` is the token endpoint, in REST or gRPC form, under any reading.
    pub fn is_token_route(path: &str) -> bool {
        [REST_OAUTH_TOKEN, GRPC_ISSUE_TOKEN]
            .into_iter()
            .any(|p| RouteRule::exact(p).matches_any_reading(path))
    }

    /// The changes to the response headers of the token route: `Cache-Control: no-store`
    /// and `Pragma: no-cache` on every answer (RFC 6749 §5.1), the `Basic` challenge on
    /// 401 (§5.2), and a body rewrite for a JSON 400 or 401. A gRPC answer (a gRPC client
    /// calling `IssueToken` directly) keeps its status in trailers and is left alone
    /// apart from the caching headers.
    pub fn plan(&self, status: u32, content_type: Option<&str>) -> ResponsePlan {
        let mut set_headers = vec![
            ("cache-control", "no-store".to_owned()),
            ("pragma", "no-cache".to_owned()),
        ];
        if status == 401 {
            set_headers.push((
                "www-authenticate",
                format!("Basic realm=\"{}\"", quoted_string_safe(&self.realm)),
            ));
        }
        let json = content_type.is_some_and(|t| {
            t.trim_start()
                .get(..16)
                .is_some_and(|head| head.eq_ignore_ascii_case("application/json"))
        });
        ResponsePlan {
            set_headers,
            rewrite_body: json && matches!(status, 400 | 401),
        }
    }
}

#[derive(Deserialize)]
struct TranscodedError {
    message: String,
}

#[derive(Serialize)]
struct TokenError<'a> {
    error: &'a str,
    error_description: String,
}

/// The RFC 6749 §5.2 body for a transcoded error `{"code", "message"}` answered with
/// `status`. A message of the form `"<error>: <description>"` with a known error code
/// gives that code; any other message is described as it is, under the code the status
/// implies (`invalid_client` for 401, `invalid_request` otherwise). `None` when the body
/// is not a transcoded error (it is then left as it is).
pub fn rewrite_error_body(status: u32, body: &[u8]) -> Option<Vec<u8>> {
    let parsed: TranscodedError = serde_json::from_slice(body).ok()?;
    let (error, description) = match parsed.message.split_once(':') {
        Some((code, rest)) if ERROR_CODES.contains(&code.trim()) => (code.trim(), rest.trim()),
        _ => (
            if status == 401 {
                "invalid_client"
            } else {
                "invalid_request"
            },
            parsed.message.trim(),
        ),
    };
    let error = ERROR_CODES.iter().find(|c| **c == error)?;
    serde_json::to_vec(&TokenError {
        error,
        error_description: description_safe(description),
    })
    .ok()
}

/// RFC 6749 §5.2 allows `%x20-21 / %x23-5B / %x5D-7E` in `error_description`: anything
/// else (quotes, backslashes, controls, non-ASCII) becomes a space.
fn description_safe(description: &str) -> String {
    description
        .chars()
        .map(|c| match c {
            '\x20'..='\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e' => c,
            _ => ' ',
        })
        .collect()
}

/// The realm without the characters that would end or escape a quoted-string.
fn quoted_string_safe(value: &str) -> String {
    value
        .chars()
        .filter(|c| !matches!(c, '"' | '\\') && !c.is_control())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(bytes: &[u8]) -> serde_json::Value {
        serde_json::from_slice(bytes).unwrap_or_default()
    }

    #[test]
    fn known_error_code_becomes_the_error_field() {
        let body =
            br#"{"code":16,"message":"invalid_client: client authentication failed","details":[]}"#;
        let rewritten = rewrite_error_body(401, body).unwrap_or_default();
        assert_eq!(
            json(&rewritten),
            serde_json::json!({"error": "invalid_client", "error_description": "client authentication failed"})
        );
    }

    #[test]
    fn unsupported_grant_type_keeps_its_code() {
        let body = br#"{"code":3,"message":"unsupported_grant_type: only client_credentials is supported"}"#;
        let rewritten = rewrite_error_body(400, body).unwrap_or_default();
        assert_eq!(
            json(&rewritten),
            serde_json::json!({"error": "unsupported_grant_type", "error_description": "only client_credentials is supported"})
        );
    }

    #[test]
    fn message_without_a_known_code_is_described_under_the_status_code() {
        let body = br#"{"code":3,"message":"body: \"x\" is not a form"}"#;
        let rewritten = rewrite_error_body(400, body).unwrap_or_default();
        assert_eq!(
            json(&rewritten),
            serde_json::json!({"error": "invalid_request", "error_description": "body:  x  is not a form"})
        );
        let body = br#"{"code":16,"message":"nope"}"#;
        assert_eq!(
            json(&rewrite_error_body(401, body).unwrap_or_default())["error"],
            "invalid_client"
        );
    }

    #[test]
    fn body_that_is_not_a_transcoded_error_is_left_alone() {
        assert_eq!(rewrite_error_body(400, b"not json"), None);
        assert_eq!(rewrite_error_body(400, br#"{"error":"x"}"#), None);
    }

    #[test]
    fn every_answer_is_not_cached_and_401_carries_a_basic_challenge() {
        let filter = OAuthTokenErrors::default();
        let ok = filter.plan(200, Some("application/json"));
        assert!(
            ok.set_headers
                .contains(&("cache-control", "no-store".to_owned()))
        );
        assert!(!ok.rewrite_body);
        assert!(!ok.set_headers.iter().any(|(n, _)| *n == "www-authenticate"));

        let unauthorized = filter.plan(401, Some("application/json; charset=utf-8"));
        assert!(unauthorized.rewrite_body);
        assert!(
            unauthorized
                .set_headers
                .contains(&("www-authenticate", "Basic realm=\"bulwark\"".to_owned()))
        );
        assert!(filter.plan(400, Some("application/json")).rewrite_body);
    }

    #[test]
    fn grpc_answers_and_other_statuses_keep_their_body() {
        let filter = OAuthTokenErrors::default();
        assert!(!filter.plan(200, Some("application/grpc")).rewrite_body);
        assert!(!filter.plan(401, Some("application/grpc")).rewrite_body);
        assert!(!filter.plan(429, Some("application/json")).rewrite_body);
        assert!(!filter.plan(400, None).rewrite_body);
    }

    #[test]
    fn token_route_is_recognized_in_both_forms_and_any_reading() {
        for path in [
            "/v1/oauth2/token",
            "/v1/oauth2/token?x=1",
            "/v1/oauth2/token/",
            "/bulwark.auth.v1.AuthService/IssueToken",
            "/V1/OAuth2/Token",
        ] {
            assert!(OAuthTokenErrors::is_token_route(path), "{path}");
        }
        assert!(!OAuthTokenErrors::is_token_route("/v1/auth/login"));
    }
}
