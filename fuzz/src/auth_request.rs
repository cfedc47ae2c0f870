//! Auth's requests as they arrive, through the validation its handlers run: `Login`,
//! `Refresh`, `CreateClient`, and the OAuth 2.0 token request (`IssueToken`: a raw body,
//! its content type and the `authorization` header, parsed by
//! `client_credentials::parse`).
//!
//! Checked: accepted logins, refresh tokens, client names and role lists are within the
//! documented bounds, and a client name or role list re-validates to itself; a token
//! request's credentials are 1 to 256 bytes; a form body with a malformed percent escape
//! is refused; and credentials written by a client as RFC 6749 says (HTTP Basic, a form
//! body or a JSON body) come back out exactly.

use arbitrary::{Arbitrary, Unstructured};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bulwark_auth::domain::client_credentials::{self, OAuthErrorCode};
use bulwark_auth::domain::credentials::Credentials;
use bulwark_auth::domain::refresh_token::{self, TokenHash};
use bulwark_auth::domain::service_account;
use bulwark_proto::auth::v1::{CreateClientRequest, LoginRequest, RefreshRequest};
use bulwark_proto::google::api::HttpBody;
use prost::Message as _;
use secrecy::ExposeSecret as _;

use crate::framed;

const FORM: &str = "application/x-www-form-urlencoded";
/// In the `IssueToken` framing, an `authorization` length saying "no header".
const NO_AUTHORIZATION: u8 = u8::MAX;

/// Checks one request: the first byte picks the message, the rest is its encoding.
pub fn check(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 5 {
        0 => {
            if let Ok(request) = LoginRequest::decode(rest) {
                login(request);
            }
        }
        1 => {
            if let Ok(request) = RefreshRequest::decode(rest) {
                refresh(&request.refresh_token);
            }
        }
        2 => {
            if let Ok(request) = CreateClientRequest::decode(rest) {
                create_client(&request);
            }
        }
        3 => issue_token_raw(rest),
        _ => {
            if let Ok(request) = TokenRequest::arbitrary_take_rest(Unstructured::new(rest)) {
                issue_token_round_trip(&request);
            }
        }
    }
}

fn login(request: LoginRequest) {
    let email_len = request.email.len();
    let blank = request.email.trim().is_empty();
    let password_chars = request.password.chars().count();
    let Ok(credentials) = Credentials::parse(request.email, request.password) else {
        return;
    };
    assert!(!blank && email_len <= 254, "email of {email_len} bytes");
    assert!(
        (1..=128).contains(&password_chars),
        "{password_chars} characters"
    );
    let target = credentials.audit_target();
    let hex = target.strip_prefix("email:").unwrap_or_default();
    assert!(
        hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "{target}"
    );
}

fn refresh(token: &str) {
    match refresh_token::parse_presented(token) {
        Ok(hash) => {
            assert!((1..=512).contains(&token.len()), "{} bytes", token.len());
            assert_eq!(hash, TokenHash::of(token));
        }
        Err(_) => assert!(token.is_empty() || token.len() > 512),
    }
}

fn create_client(request: &CreateClientRequest) {
    if let Ok(name) = service_account::client_name(&request.name) {
        assert_eq!(name, request.name.trim());
        assert!((1..=100).contains(&name.chars().count()));
        assert!(!name.chars().any(char::is_control));
        assert_eq!(service_account::client_name(&name).ok(), Some(name.clone()));
    }
    if let Ok(roles) = service_account::client_roles(&request.roles) {
        assert!((1..=20).contains(&request.roles.len()));
        let mut unique = request.roles.clone();
        let mut seen = std::collections::HashSet::new();
        unique.retain(|role| seen.insert(role.clone()));
        assert_eq!(roles, unique, "roles deduplicated in order");
        assert!(roles.iter().all(|r| (1..=64).contains(&r.len())));
        assert_eq!(
            service_account::client_roles(&roles).ok(),
            Some(roles.clone())
        );
    }
}

/// `[authorization length, or 255 for none][authorization][HttpBody]`.
fn issue_token_raw(data: &[u8]) {
    let Some((&length, rest)) = data.split_first() else {
        return;
    };
    let (authorization, body) = if length == NO_AUTHORIZATION {
        (None, rest)
    } else {
        let Some((header, body)) = rest.split_at_checked(usize::from(length)) else {
            return;
        };
        // A metadata value Auth cannot read as text counts as empty (see grpc.rs).
        (Some(std::str::from_utf8(header).unwrap_or_default()), body)
    };
    let Ok(body) = HttpBody::decode(body) else {
        return;
    };
    let result = client_credentials::parse(&body.content_type, &body.data, authorization);
    if let Ok(credentials) = &result {
        assert!((1..=256).contains(&credentials.client_id.len()));
        assert!((1..=256).contains(&credentials.secret.expose_secret().len()));
    }
    let media_type = body.content_type.split(';').next().unwrap_or_default();
    if media_type.trim().eq_ignore_ascii_case(FORM) && has_malformed_escape(&body.data) {
        let code = result.as_ref().err().map(|e| e.code);
        assert_eq!(
            code,
            Some(OAuthErrorCode::InvalidRequest),
            "a malformed escape"
        );
    }
}

fn has_malformed_escape(body: &[u8]) -> bool {
    body.iter().enumerate().any(|(i, &b)| {
        b == b'%'
            && !body
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    })
}

/// A token request as a client writes it.
#[derive(Debug, Arbitrary)]
struct TokenRequest {
    client_id: String,
    secret: String,
    how: How,
    /// Other parameters (anything but the four the grant reads).
    extra: Vec<(String, String)>,
    /// `scope`: refused unless blank.
    scope: Option<String>,
    /// `application/x-www-form-urlencoded; charset=UTF-8`, in upper case.
    spelled_out: bool,
}

#[derive(Debug, Arbitrary)]
enum How {
    Basic,
    Form,
    Json,
}

/// RFC 6749 appendix B: `application/x-www-form-urlencoded`.
fn form_encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        match b {
            b' ' => out.push('+'),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(b));
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn issue_token_round_trip(request: &TokenRequest) {
    let reserved = ["grant_type", "scope", "client_id", "client_secret"];
    let mut params: Vec<(String, String)> =
        vec![("grant_type".into(), "client_credentials".into())];
    params.extend(
        request
            .extra
            .iter()
            .filter(|(name, _)| !reserved.contains(&name.as_str()) && !name.is_empty())
            .cloned(),
    );
    if let Some(scope) = &request.scope {
        params.push(("scope".into(), scope.clone()));
    }
    let mut authorization = None;
    match request.how {
        How::Basic => {
            let pair = format!(
                "{}:{}",
                form_encode(&request.client_id),
                form_encode(&request.secret)
            );
            authorization = Some(format!("Basic {}", STANDARD.encode(pair)));
        }
        How::Form | How::Json => {
            params.push(("client_id".into(), request.client_id.clone()));
            params.push(("client_secret".into(), request.secret.clone()));
        }
    }
    let (content_type, body) = match request.how {
        How::Json => {
            let object: serde_json::Map<String, serde_json::Value> = params
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            (
                "application/json".to_owned(),
                serde_json::Value::Object(object).to_string(),
            )
        }
        How::Basic | How::Form => {
            let pairs: Vec<String> = params
                .iter()
                .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
                .collect();
            let content_type = if request.spelled_out {
                "APPLICATION/X-WWW-FORM-URLENCODED; charset=UTF-8".to_owned()
            } else {
                FORM.to_owned()
            };
            (content_type, pairs.join("&"))
        }
    };
    let result =
        client_credentials::parse(&content_type, body.as_bytes(), authorization.as_deref());
    if body.len() > 4096 {
        assert_eq!(
            result.err().map(|e| e.code),
            Some(OAuthErrorCode::InvalidRequest)
        );
        return;
    }
    if request.scope.as_ref().is_some_and(|s| !s.trim().is_empty()) {
        assert_eq!(
            result.err().map(|e| e.code),
            Some(OAuthErrorCode::InvalidScope)
        );
        return;
    }
    let valid = |text: &str| (1..=256).contains(&text.len());
    match result {
        Ok(credentials) => {
            assert_eq!(
                credentials.client_id, request.client_id,
                "client_id changed"
            );
            assert_eq!(
                credentials.secret.expose_secret(),
                request.secret,
                "secret changed"
            );
        }
        Err(error) => {
            assert!(
                !(valid(&request.client_id) && valid(&request.secret)),
                "well-formed credentials refused: {error}\n{content_type}\n{body}\n{authorization:?}"
            );
            assert_eq!(error.code, OAuthErrorCode::InvalidClient, "{error}");
        }
    }
}

/// Valid requests of each kind, as a client sends them.
pub fn seeds() -> Vec<crate::Seed> {
    let issue = |authorization: Option<&str>, content_type: &str, body: &str| {
        let mut bytes = vec![3];
        match authorization {
            Some(header) => {
                bytes.push(u8::try_from(header.len()).unwrap_or(0));
                bytes.extend(header.as_bytes());
            }
            None => bytes.push(NO_AUTHORIZATION),
        }
        let body = HttpBody {
            content_type: content_type.to_owned(),
            data: body.as_bytes().to_vec(),
            extensions: Vec::new(),
        };
        bytes.extend(body.encode_to_vec());
        bytes
    };
    let basic = format!("Basic {}", STANDARD.encode("identity:s3cr%3At"));
    vec![
        (
            "login".to_owned(),
            framed(
                0,
                &LoginRequest {
                    email: "ada@example.com".to_owned(),
                    password: "correct horse battery".to_owned(),
                },
            ),
        ),
        (
            "refresh".to_owned(),
            framed(
                1,
                &RefreshRequest {
                    refresh_token: "q2v6yH0b1m4E8mBXoTQ3y2qmD2m0nJ6bT6a9cXKk1sA".to_owned(),
                },
            ),
        ),
        (
            "create_client".to_owned(),
            framed(
                2,
                &CreateClientRequest {
                    name: " reporting job ".to_owned(),
                    roles: vec![
                        "auditor".to_owned(),
                        "reader".to_owned(),
                        "auditor".to_owned(),
                    ],
                },
            ),
        ),
        (
            "issue_token_form".to_owned(),
            issue(
                None,
                FORM,
                "grant_type=client_credentials&client_id=identity&client_secret=s3cr%21t+x",
            ),
        ),
        (
            "issue_token_form_sign_in_escape".to_owned(),
            issue(
                None,
                FORM,
                "grant_type=client_credentials&client_id=identity&client_secret=%+1",
            ),
        ),
        (
            "issue_token_basic".to_owned(),
            issue(Some(&basic), FORM, "grant_type=client_credentials"),
        ),
        (
            "issue_token_json".to_owned(),
            issue(
                None,
                "application/json",
                r#"{"grant_type":"client_credentials","client_id":"identity","client_secret":"s3cret"}"#,
            ),
        ),
    ]
}
