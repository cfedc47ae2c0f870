//! The OAuth 2.0 token request of the client-credentials grant (RFC 6749 §4.4.2), as
//! the edge passes it: the raw body and its content type, plus the `authorization`
//! metadata. Every refusal carries its RFC 6749 §5.2 error code.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::SecretString;

/// Largest token request body accepted.
const MAX_BODY_BYTES: usize = 4 * 1024;
/// Longest client id or secret accepted.
const MAX_CREDENTIAL_BYTES: usize = 256;

/// An RFC 6749 §5.2 error: its code and a description for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct OAuthError {
    pub code: OAuthErrorCode,
    pub description: String,
}

/// The RFC 6749 §5.2 error codes this endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthErrorCode {
    InvalidRequest,
    InvalidClient,
    UnsupportedGrantType,
    InvalidScope,
}

impl std::fmt::Display for OAuthErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
        })
    }
}

fn refuse(code: OAuthErrorCode, description: impl Into<String>) -> OAuthError {
    OAuthError {
        code,
        description: description.into(),
    }
}

fn invalid_request(description: impl Into<String>) -> OAuthError {
    refuse(OAuthErrorCode::InvalidRequest, description)
}

/// A well-formed client-credentials request: who says they are which client.
#[derive(Debug)]
pub struct ClientCredentials {
    pub client_id: String,
    pub secret: SecretString,
}

/// Parses a token request. `authorization` is the request's `authorization` value.
pub fn parse(
    content_type: &str,
    body: &[u8],
    authorization: Option<&str>,
) -> Result<ClientCredentials, OAuthError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(invalid_request(format!(
            "the body must be at most {MAX_BODY_BYTES} bytes"
        )));
    }
    let params = body_params(content_type, body)?;
    let get = |name: &str| -> Result<Option<&str>, OAuthError> {
        let mut values = params.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
        let first = values.next();
        // RFC 6749 §3.2: parameters must not be included more than once.
        if values.next().is_some() {
            return Err(invalid_request(format!("`{name}` is given more than once")));
        }
        Ok(first.map(String::as_str))
    };
    match get("grant_type")? {
        None | Some("") => return Err(invalid_request("`grant_type` is required")),
        Some("client_credentials") => {}
        Some(_) => {
            return Err(refuse(
                OAuthErrorCode::UnsupportedGrantType,
                "only the client_credentials grant is supported",
            ));
        }
    }
    if get("scope")?.is_some_and(|scope| !scope.trim().is_empty()) {
        return Err(refuse(
            OAuthErrorCode::InvalidScope,
            "scopes are not supported: a client's token carries the permissions of its roles",
        ));
    }
    let in_body = match (get("client_id")?, get("client_secret")?) {
        (None, None) => None,
        (Some(id), Some(secret)) => Some((id.to_owned(), secret.to_owned())),
        (Some(_), None) | (None, Some(_)) => {
            return Err(refuse(
                OAuthErrorCode::InvalidClient,
                "client authentication failed",
            ));
        }
    };
    let in_header = authorization.map(basic_credentials).transpose()?;
    let (client_id, secret) = match (in_header, in_body) {
        (Some(_), Some(_)) => {
            // RFC 6749 §2.3: a client must not use more than one authentication method.
            return Err(invalid_request(
                "authenticate with HTTP Basic or with client_id and client_secret in the body, not both",
            ));
        }
        (Some(credentials), None) | (None, Some(credentials)) => credentials,
        (None, None) => {
            return Err(refuse(
                OAuthErrorCode::InvalidClient,
                "client authentication is required (HTTP Basic, or client_id and client_secret)",
            ));
        }
    };
    if client_id.is_empty()
        || secret.is_empty()
        || client_id.len() > MAX_CREDENTIAL_BYTES
        || secret.len() > MAX_CREDENTIAL_BYTES
    {
        return Err(refuse(
            OAuthErrorCode::InvalidClient,
            "client authentication failed",
        ));
    }
    Ok(ClientCredentials {
        client_id,
        secret: SecretString::from(secret),
    })
}

/// The body's parameters: form-encoded as RFC 6749 says, or a flat JSON object of
/// strings for clients that only speak JSON.
fn body_params(content_type: &str, body: &[u8]) -> Result<Vec<(String, String)>, OAuthError> {
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match media_type.as_str() {
        "application/x-www-form-urlencoded" => {
            let text =
                std::str::from_utf8(body).map_err(|_| invalid_request("the body is not UTF-8"))?;
            text.split('&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                    Ok((form_decode(name)?, form_decode(value)?))
                })
                .collect()
        }
        "application/json" => {
            let object: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(body)
                    .map_err(|_| invalid_request("the body is not a JSON object"))?;
            object
                .into_iter()
                .map(|(name, value)| match value {
                    serde_json::Value::String(value) => Ok((name, value)),
                    _ => Err(invalid_request(format!("`{name}` must be a string"))),
                })
                .collect()
        }
        _ => Err(invalid_request(
            "the body must be application/x-www-form-urlencoded",
        )),
    }
}

/// `application/x-www-form-urlencoded` decoding of one name or value.
fn form_decode(text: &str) -> Result<String, OAuthError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'+' => out.push(b' '),
            b'%' => {
                // Two hex digits exactly: `from_str_radix` alone would also take a sign.
                let hex = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| invalid_request("the body has a malformed percent escape"))?;
                out.push(hex);
                i += 2;
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| invalid_request("the body is not UTF-8 once decoded"))
}

/// The client id and secret of an HTTP Basic `authorization` value (RFC 6749 §2.3.1:
/// both form-encoded, then joined by `:` and base64-encoded).
fn basic_credentials(value: &str) -> Result<(String, String), OAuthError> {
    let failed = || {
        refuse(
            OAuthErrorCode::InvalidClient,
            "client authentication failed",
        )
    };
    let (scheme, encoded) = value.trim().split_once(' ').ok_or_else(failed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(refuse(
            OAuthErrorCode::InvalidClient,
            "the authorization header must use the Basic scheme",
        ));
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| failed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| failed())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(failed)?;
    Ok((
        form_decode(id).map_err(|_| failed())?,
        form_decode(secret).map_err(|_| failed())?,
    ))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret as _;

    use super::*;

    const FORM: &str = "application/x-www-form-urlencoded";

    fn basic(id: &str, secret: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
    }

    fn code_of(result: Result<ClientCredentials, OAuthError>) -> Option<OAuthErrorCode> {
        result.err().map(|e| e.code)
    }

    #[test]
    fn basic_and_form_credentials_are_both_accepted() {
        let header = parse(
            FORM,
            b"grant_type=client_credentials",
            Some(&basic("c1", "s%3Ax")),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(header.client_id, "c1");
        assert_eq!(
            header.secret.expose_secret(),
            "s:x",
            "Basic values are form-decoded"
        );

        let body = parse(
            "application/x-www-form-urlencoded; charset=UTF-8",
            b"grant_type=client_credentials&client_id=c2&client_secret=a+b%2F",
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(body.client_id, "c2");
        assert_eq!(body.secret.expose_secret(), "a b/");

        let json = parse(
            "application/json",
            br#"{"grant_type":"client_credentials","client_id":"c3","client_secret":"s"}"#,
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(json.client_id, "c3");
    }

    #[test]
    fn grant_type_must_be_client_credentials() {
        let auth = basic("c", "s");
        assert_eq!(
            code_of(parse(FORM, b"grant_type=password", Some(&auth))),
            Some(OAuthErrorCode::UnsupportedGrantType)
        );
        assert_eq!(
            code_of(parse(FORM, b"client_id=c", Some(&auth))),
            Some(OAuthErrorCode::InvalidRequest)
        );
        assert_eq!(
            code_of(parse(
                FORM,
                b"grant_type=client_credentials&grant_type=client_credentials",
                Some(&auth)
            )),
            Some(OAuthErrorCode::InvalidRequest)
        );
        assert_eq!(
            code_of(parse(
                FORM,
                b"grant_type=client_credentials&scope=admin",
                Some(&auth)
            )),
            Some(OAuthErrorCode::InvalidScope)
        );
    }

    #[test]
    fn a_percent_escape_needs_two_hex_digits() {
        // `%+1` was decoded as byte 1 (u8::from_str_radix takes a sign); seen while
        // writing the auth_request fuzz target's malformed-escape property.
        for body in [
            &b"grant_type=client_credentials&client_id=c&client_secret=%+1"[..],
            b"grant_type=client_credentials&client_id=c%-1&client_secret=s",
            b"grant_type=client_credentials&client_id=c&client_secret=%2",
        ] {
            assert_eq!(
                code_of(parse(FORM, body, None)),
                Some(OAuthErrorCode::InvalidRequest),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(
            code_of(parse(
                FORM,
                b"grant_type=client_credentials",
                Some(&basic("c%+1", "s"))
            )),
            Some(OAuthErrorCode::InvalidClient),
            "a malformed escape in HTTP Basic"
        );
        let parsed = parse(
            FORM,
            b"grant_type=client_credentials&client_id=c%2B&client_secret=s%2b",
            None,
        );
        let ids = parsed.map(|c| (c.client_id, c.secret.expose_secret().to_owned()));
        assert_eq!(ids.ok(), Some(("c+".to_owned(), "s+".to_owned())));
    }

    #[test]
    fn missing_mixed_or_malformed_client_authentication_is_refused() {
        let grant = b"grant_type=client_credentials";
        assert_eq!(
            code_of(parse(FORM, grant, None)),
            Some(OAuthErrorCode::InvalidClient)
        );
        assert_eq!(
            code_of(parse(
                FORM,
                b"grant_type=client_credentials&client_id=c&client_secret=s",
                Some(&basic("c", "s"))
            )),
            Some(OAuthErrorCode::InvalidRequest),
            "two authentication methods"
        );
        for header in ["Bearer abc", "Basic !!!", "Basic Y29sb24tbGVzcw=="] {
            assert_eq!(
                code_of(parse(FORM, grant, Some(header))),
                Some(OAuthErrorCode::InvalidClient),
                "{header}"
            );
        }
        assert_eq!(
            code_of(parse(
                FORM,
                b"grant_type=client_credentials&client_id=c",
                None
            )),
            Some(OAuthErrorCode::InvalidClient),
            "an id without a secret"
        );
    }

    #[test]
    fn other_bodies_are_invalid_requests() {
        let auth = basic("c", "s");
        for (content_type, body) in [
            ("text/plain", &b"grant_type=client_credentials"[..]),
            (FORM, b"grant_type=%zz"),
            ("application/json", b"[1]"),
            ("application/json", br#"{"grant_type":1}"#),
        ] {
            assert_eq!(
                code_of(parse(content_type, body, Some(&auth))),
                Some(OAuthErrorCode::InvalidRequest),
                "{content_type} {body:?}"
            );
        }
        let big = vec![b'a'; 5000];
        assert_eq!(
            code_of(parse(FORM, &big, Some(&auth))),
            Some(OAuthErrorCode::InvalidRequest)
        );
    }

    #[test]
    fn errors_read_code_first() {
        let error = invalid_request("`grant_type` is required");
        assert_eq!(
            error.to_string(),
            "invalid_request: `grant_type` is required"
        );
    }
}
