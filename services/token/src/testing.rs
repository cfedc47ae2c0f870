//! The agreement table: token variants, each with the verdict the contract gives it.
//!
//! Written once, run three times: against [`Policy::verify`] here, through the gateway
//! filter's `TokenVerifier` and through the kernel's. Each side turns its outcome into a
//! [`Verdict`] and asserts it equals the table's, so the edge and the services cannot drift
//! apart on any of these tokens.
//!
//! Tokens are signed with fixed Ed25519 keys (Auth's algorithm) and the JWKS publishes one
//! of them; the algorithm-confusion rows are refused on their header, before any crypto.

#![allow(
    clippy::panic,
    clippy::expect_used,
    reason = "test support: a fixed key or JSON value that fails is a bug in the table"
)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer as _, SigningKey};
use serde_json::{Value, json};

use crate::claims::{Subject, VerifiedClaims};
use crate::error::TokenError;
use crate::verify::{DEFAULT_MAX_TOKEN_BYTES, Policy};

/// The issuer every table token names.
pub const ISSUER: &str = "bulwark";
/// The audience every table token names.
pub const AUDIENCE: &str = "bulwark-api";
/// The skew the table assumes on both sides.
pub const CLOCK_SKEW_SECONDS: u64 = 60;
/// The `kid` of the key the table's JWKS publishes.
pub const KID: &str = "agreement-ed25519";
/// The user of the table's user tokens.
pub const USER_ID: &str = "0192f0c4-7d4e-7b1a-9f00-000000000001";
/// The session of the table's session token, as written and as a number.
pub const SESSION_ID: &str = "0192f0c4-7d4e-7b1a-9f00-0000000000aa";
const SESSION_UUID: u128 = 0x0192_f0c4_7d4e_7b1a_9f00_0000_0000_00aa;

/// The policy the table's verdicts assume; each side configures itself the same way.
pub fn policy() -> Policy {
    Policy {
        issuer: ISSUER.to_owned(),
        audiences: vec![AUDIENCE.to_owned()],
        clock_skew_seconds: CLOCK_SKEW_SECONDS,
        max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
    }
}

fn published_key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn impostor_key() -> SigningKey {
    SigningKey::from_bytes(&[9; 32])
}

/// The members of the table's JWKS `keys` array (one Ed25519 key, [`KID`]).
pub fn jwks() -> Vec<Value> {
    let x = URL_SAFE_NO_PAD.encode(published_key().verifying_key().to_bytes());
    vec![json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": KID, "x": x})]
}

/// The table's JWKS as one document, as the edge fetches it.
pub fn jwks_json() -> Vec<u8> {
    serde_json::to_vec(&json!({ "keys": jwks() })).expect("a JSON value serializes")
}

/// What a side concluded about one token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted, with what the token says about its bearer.
    Accepted(Bearer),
    /// Refused, for this reason.
    Refused(TokenError),
}

/// The parts of the verified claims both sides expose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bearer {
    /// Who the token speaks for.
    pub subject: Subject,
    /// `roles`.
    pub roles: Vec<String>,
    /// The permissions the token grants (empty for users).
    pub permissions: Vec<String>,
    /// `jti`.
    pub jti: String,
    /// `exp`.
    pub exp: u64,
    /// `sid`.
    pub sid: Option<uuid::Uuid>,
}

impl Bearer {
    /// What verified claims say.
    pub fn of(claims: &VerifiedClaims) -> Self {
        Self {
            subject: claims.subject.clone(),
            roles: claims.roles.clone(),
            permissions: claims.permissions().to_vec(),
            jti: claims.jti.clone(),
            exp: claims.exp,
            sid: claims.sid,
        }
    }
}

impl Verdict {
    /// The verdict of a verification result.
    pub fn of(result: Result<&VerifiedClaims, &TokenError>) -> Self {
        match result {
            Ok(claims) => Self::Accepted(Bearer::of(claims)),
            Err(error) => Self::Refused(error.clone()),
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Case {
    /// What the row is about (named in assertion messages).
    pub name: &'static str,
    /// The token as presented.
    pub token: String,
    /// What every side must conclude.
    pub verdict: Verdict,
}

/// Claims of a valid user token at `now`.
pub fn user_claims(now: u64) -> Value {
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": USER_ID,
        "iat": now, "exp": now + 600, "jti": "jti-user",
        "roles": ["admin", "auditor"],
    })
}

/// Claims of a valid service-account token at `now`.
pub fn client_claims(now: u64) -> Value {
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "client:identity",
        "iat": now, "exp": now + 600, "jti": "jti-client",
        "permissions": ["audit:append", "roles:read"],
    })
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("a JSON value serializes"))
}

/// Signs `claims` under `header` with `key` (EdDSA), whatever the header claims.
fn sign_with(key: &SigningKey, header: &Value, claims: &Value) -> String {
    let signing_input = format!("{}.{}", b64(header), b64(claims));
    let signature = key.sign(signing_input.as_bytes()).to_bytes();
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// A token for `claims` signed by the published key, as Auth would issue it.
pub fn sign(claims: &Value) -> String {
    sign_with(&published_key(), &header(), claims)
}

/// A token for `claims` signed by the published key, naming `kid` (none when empty):
/// for key-rotation tests, where the same key is published under several `kid`s.
pub fn sign_with_kid(kid: &str, claims: &Value) -> String {
    let header = if kid.is_empty() {
        json!({"alg": "EdDSA", "typ": "JWT"})
    } else {
        json!({"alg": "EdDSA", "typ": "JWT", "kid": kid})
    };
    sign_with(&published_key(), &header, claims)
}

fn header() -> Value {
    json!({"alg": "EdDSA", "typ": "JWT", "kid": KID})
}

fn without(mut claims: Value, claim: &str) -> Value {
    if let Some(object) = claims.as_object_mut() {
        object.remove(claim);
    }
    claims
}

fn with(mut claims: Value, claim: &str, value: Value) -> Value {
    claims[claim] = value;
    claims
}

fn accepted(
    subject: Subject,
    roles: &[&str],
    permissions: &[&str],
    jti: &str,
    exp: u64,
) -> Verdict {
    Verdict::Accepted(Bearer {
        subject,
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
        jti: jti.to_owned(),
        exp,
        sid: None,
    })
}

fn user() -> Subject {
    Subject::parse(USER_ID).expect("USER_ID is a canonical UUID")
}

/// The table at time `now` (Unix seconds): every side verifies at this same `now`.
pub fn cases(now: u64) -> Vec<Case> {
    let skew = CLOCK_SKEW_SECONDS;
    let user_ok = accepted(user(), &["admin", "auditor"], &[], "jti-user", now + 600);
    let refused = Verdict::Refused;
    let row = |name, token, verdict| Case {
        name,
        token,
        verdict,
    };
    let mut table = vec![
        row("valid user", sign(&user_claims(now)), user_ok.clone()),
        row(
            "valid client with permissions",
            sign(&client_claims(now)),
            accepted(
                Subject::Client {
                    id: "identity".to_owned(),
                },
                &[],
                &["audit:append", "roles:read"],
                "jti-client",
                now + 600,
            ),
        ),
        row(
            "user token carrying permissions grants none",
            sign(&with(
                user_claims(now),
                "permissions",
                json!(["users:write"]),
            )),
            user_ok.clone(),
        ),
        row(
            "audience list naming ours",
            sign(&with(user_claims(now), "aud", json!(["other", AUDIENCE]))),
            user_ok.clone(),
        ),
        row(
            "expired within skew",
            sign(&with(user_claims(now), "exp", json!(now - skew))),
            accepted(user(), &["admin", "auditor"], &[], "jti-user", now - skew),
        ),
        row(
            "expired beyond skew",
            sign(&with(user_claims(now), "exp", json!(now - skew - 1))),
            refused(TokenError::Expired),
        ),
        row(
            "nbf within skew",
            sign(&with(user_claims(now), "nbf", json!(now + skew))),
            user_ok.clone(),
        ),
        row(
            "nbf in the future",
            sign(&with(user_claims(now), "nbf", json!(now + skew + 1))),
            refused(TokenError::NotYetValid),
        ),
        row(
            "wrong iss",
            sign(&with(
                user_claims(now),
                "iss",
                json!("https://evil.example"),
            )),
            refused(TokenError::WrongIssuer),
        ),
        row(
            "wrong aud",
            sign(&with(user_claims(now), "aud", json!("other-api"))),
            refused(TokenError::WrongAudience),
        ),
        row(
            "non-UUID non-client sub",
            sign(&with(user_claims(now), "sub", json!("user-42"))),
            refused(TokenError::InvalidClaim("sub")),
        ),
        row(
            "uppercase UUID sub",
            sign(&with(
                user_claims(now),
                "sub",
                json!(USER_ID.to_uppercase()),
            )),
            refused(TokenError::InvalidClaim("sub")),
        ),
        row(
            "client sub with empty id",
            sign(&with(client_claims(now), "sub", json!("client:"))),
            refused(TokenError::InvalidClaim("sub")),
        ),
        row(
            "sub with a header injection",
            sign(&with(
                user_claims(now),
                "sub",
                json!(format!("{USER_ID}\r\nx-bulwark-roles: admin")),
            )),
            refused(TokenError::InvalidClaim("sub")),
        ),
        row(
            "role with a comma",
            sign(&with(user_claims(now), "roles", json!(["viewer,admin"]))),
            refused(TokenError::InvalidClaim("roles")),
        ),
        row(
            "roles not an array",
            sign(&with(user_claims(now), "roles", json!("admin"))),
            refused(TokenError::InvalidClaim("roles")),
        ),
        row(
            "permissions not an array",
            sign(&with(
                client_claims(now),
                "permissions",
                json!("audit:append"),
            )),
            refused(TokenError::InvalidClaim("permissions")),
        ),
        row(
            "user token of a session",
            sign(&with(user_claims(now), "sid", json!(SESSION_ID))),
            match user_ok.clone() {
                Verdict::Accepted(bearer) => Verdict::Accepted(Bearer {
                    sid: Some(uuid::Uuid::from_u128(SESSION_UUID)),
                    ..bearer
                }),
                refused => refused,
            },
        ),
        row(
            "sid not a UUID",
            sign(&with(user_claims(now), "sid", json!("session-1"))),
            refused(TokenError::InvalidClaim("sid")),
        ),
        row(
            "uppercase UUID sid",
            sign(&with(
                user_claims(now),
                "sid",
                json!(SESSION_ID.to_uppercase()),
            )),
            refused(TokenError::InvalidClaim("sid")),
        ),
        row(
            "sid not a string",
            sign(&with(user_claims(now), "sid", json!(7))),
            refused(TokenError::InvalidClaim("sid")),
        ),
        row(
            "jti not a string",
            sign(&with(user_claims(now), "jti", json!(42))),
            refused(TokenError::InvalidClaim("jti")),
        ),
        row(
            "empty jti",
            sign(&with(user_claims(now), "jti", json!(""))),
            refused(TokenError::InvalidClaim("jti")),
        ),
        row(
            "null jti",
            sign(&with(user_claims(now), "jti", Value::Null)),
            refused(TokenError::MissingClaim("jti")),
        ),
        row(
            "exp not a number",
            sign(&with(user_claims(now), "exp", json!("tomorrow"))),
            refused(TokenError::InvalidClaim("exp")),
        ),
        row(
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "kid": KID})),
                b64(&user_claims(now))
            ),
            refused(TokenError::UnsupportedAlgorithm("none".to_owned())),
        ),
        // The key-confusion attack: HS256 with the public key as the HMAC secret. The
        // header alone refuses it, so the signature bytes do not matter.
        row(
            "alg HS256",
            format!(
                "{}.{}.{}",
                b64(&json!({"alg": "HS256", "kid": KID})),
                b64(&user_claims(now)),
                URL_SAFE_NO_PAD.encode([0u8; 32])
            ),
            refused(TokenError::UnsupportedAlgorithm("HS256".to_owned())),
        ),
        row(
            "alg differs from the key's",
            sign_with(
                &published_key(),
                &json!({"alg": "ES256", "kid": KID}),
                &user_claims(now),
            ),
            refused(TokenError::AlgorithmMismatch {
                token: "ES256".to_owned(),
                key: "EdDSA".to_owned(),
            }),
        ),
        row(
            "unknown kid",
            sign_with(
                &published_key(),
                &json!({"alg": "EdDSA", "kid": "not-published"}),
                &user_claims(now),
            ),
            refused(TokenError::UnknownKid("not-published".to_owned())),
        ),
        row(
            "no kid",
            sign_with(
                &published_key(),
                &json!({"alg": "EdDSA"}),
                &user_claims(now),
            ),
            refused(TokenError::MissingKid),
        ),
        row(
            "signed by another key under the published kid",
            sign_with(&impostor_key(), &header(), &user_claims(now)),
            refused(TokenError::BadSignature),
        ),
        row(
            "crit header",
            sign_with(
                &published_key(),
                &json!({"alg": "EdDSA", "kid": KID, "crit": ["exp"], "exp": 1}),
                &user_claims(now),
            ),
            refused(TokenError::Malformed("header has crit extensions")),
        ),
        row(
            "not a JWS",
            "not-a-token".to_owned(),
            refused(TokenError::Malformed("not three dot-separated parts")),
        ),
    ];
    let tampered = {
        let token = sign(&user_claims(now));
        let mut parts = token.split('.');
        let (header, _, signature) = (parts.next(), parts.next(), parts.next());
        let forged = with(user_claims(now), "roles", json!(["admin", "superuser"]));
        format!(
            "{}.{}.{}",
            header.unwrap_or_default(),
            b64(&forged),
            signature.unwrap_or_default()
        )
    };
    table.push(row(
        "tampered payload",
        tampered,
        refused(TokenError::BadSignature),
    ));
    for (claim, name) in [
        ("iss", "missing iss"),
        ("aud", "missing aud"),
        ("sub", "missing sub"),
        ("iat", "missing iat"),
        ("exp", "missing exp"),
        ("jti", "missing jti"),
    ] {
        table.push(row(
            name,
            sign(&without(user_claims(now), claim)),
            refused(TokenError::MissingClaim(claim)),
        ));
    }
    let oversized = sign(&with(
        user_claims(now),
        "padding",
        json!("x".repeat(DEFAULT_MAX_TOKEN_BYTES)),
    ));
    let len = oversized.len();
    table.push(row(
        "oversized",
        oversized,
        refused(TokenError::TooLarge {
            len,
            limit: DEFAULT_MAX_TOKEN_BYTES,
        }),
    ));
    table
}
