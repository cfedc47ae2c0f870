//! Claims an issuer signs: any mix of well-formed, odd and missing claims, signed with
//! the published key, verified at a time near the token's. A model of the contract's
//! rules, written here independently, says whether the token must be accepted; an
//! accepted token must carry exactly the claims that were signed.

use arbitrary::Arbitrary;
use bulwark_token::VerifiedClaims;
use bulwark_token::testing::{self, AUDIENCE, ISSUER, KID, USER_ID};
use serde_json::{Map, Value, json};

use crate::fixtures::{self, NOW, header_safe};

/// The claims to sign and when to verify them.
#[derive(Debug, Arbitrary)]
pub struct Input {
    iss: Claim,
    aud: Claim,
    sub: Claim,
    iat: Claim,
    exp: Claim,
    nbf: Claim,
    jti: Claim,
    roles: Claim,
    permissions: Claim,
    kid: Kid,
    /// Seconds from [`NOW`] to the verification.
    clock: i16,
}

/// One claim's value.
#[derive(Debug, Arbitrary)]
enum Claim {
    Absent,
    Null,
    /// What Auth would write for this claim.
    Typical,
    Text(Text),
    /// Seconds from the verification time: exercises the `exp`/`nbf` boundaries.
    Relative(i16),
    Integer(i64),
    Float(f64),
    Bool(bool),
    List(Vec<Text>),
    Object,
}

/// Text from a palette of values that matter to the rules, or any text.
#[derive(Debug, Arbitrary)]
enum Text {
    Known(u8),
    Any(String),
}

const PALETTE: &[&str] = &[
    ISSUER,
    AUDIENCE,
    USER_ID,
    "client:identity",
    "client:",
    "client:a,b",
    "0192F0C4-7D4E-7B1A-9F00-000000000001",
    "0192f0c47d4e7b1a9f00000000000001",
    "admin",
    "audit:append",
    "a,b",
    "with space",
    "",
    "é",
];

impl Text {
    fn value(&self) -> String {
        match self {
            Self::Known(i) => PALETTE[usize::from(*i) % PALETTE.len()].to_owned(),
            Self::Any(text) => text.clone(),
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Kid {
    Published,
    Missing,
    Other(String),
}

fn typical(name: &str, now: u64) -> Value {
    match name {
        "iss" => json!(ISSUER),
        "aud" => json!([AUDIENCE]),
        "sub" => json!(USER_ID),
        "iat" => json!(now),
        "exp" | "nbf" => json!(now + 600),
        "jti" => json!("jti-fuzz"),
        "roles" => json!(["admin"]),
        _ => json!(["audit:append"]),
    }
}

impl Claim {
    fn value(&self, name: &str, now: u64) -> Option<Value> {
        Some(match self {
            Self::Absent => return None,
            Self::Null => Value::Null,
            Self::Typical => typical(name, now),
            Self::Text(text) => json!(text.value()),
            Self::Relative(offset) => json!(now.saturating_add_signed(i64::from(*offset))),
            Self::Integer(n) => json!(n),
            Self::Float(f) => json!(f),
            Self::Bool(b) => json!(b),
            Self::List(items) => json!(items.iter().map(Text::value).collect::<Vec<_>>()),
            Self::Object => json!({"nested": true}),
        })
    }
}

/// Signs, verifies and compares with the model.
pub fn check(input: &Input) {
    let now = NOW.saturating_add_signed(i64::from(input.clock));
    let mut claims = Map::new();
    for (name, claim) in [
        ("iss", &input.iss),
        ("aud", &input.aud),
        ("sub", &input.sub),
        ("iat", &input.iat),
        ("exp", &input.exp),
        ("nbf", &input.nbf),
        ("jti", &input.jti),
        ("roles", &input.roles),
        ("permissions", &input.permissions),
    ] {
        if let Some(value) = claim.value(name, now) {
            claims.insert(name.to_owned(), value);
        }
    }
    let claims = Value::Object(claims);
    let token = match &input.kid {
        Kid::Published => testing::sign(&claims),
        Kid::Missing => testing::sign_with_kid("", &claims),
        Kid::Other(kid) => testing::sign_with_kid(kid, &claims),
    };
    let kid_published = match &input.kid {
        Kid::Published => true,
        Kid::Missing => false,
        Kid::Other(kid) => kid == KID,
    };
    let result = fixtures::policy().verify(&token, fixtures::keys(), now);
    // The model reads the claims as the verifier does, from their JSON text (a float
    // may come back one unit in the last place away).
    let claims: Value = match serde_json::from_str(&claims.to_string()) {
        Ok(claims) => claims,
        Err(error) => panic!("signed claims do not parse back: {error}"),
    };
    let fits = token.len() <= fixtures::policy().max_token_bytes;
    let expected = fits && kid_published && model_accepts(&claims, now);
    assert_eq!(
        result.is_ok(),
        expected,
        "claims {claims} at {now}: the contract says {result:?}"
    );
    if let Ok(verified) = &result {
        check_signed_claims_came_through(&claims, verified);
    }
}

fn get<'a>(claims: &'a Value, name: &str) -> Option<&'a Value> {
    claims.get(name).filter(|value| !value.is_null())
}

/// The contract's rules, as the token contract's documentation states them.
fn model_accepts(claims: &Value, now: u64) -> bool {
    let skew = fixtures::policy().clock_skew_seconds;
    let text = |name| get(claims, name).and_then(Value::as_str);
    let date = |name| get(claims, name).and_then(numeric_date);
    let list_ok = |name| match get(claims, name) {
        None => true,
        Some(Value::Array(items)) => items
            .iter()
            .all(|item| item.as_str().is_some_and(|s| header_safe(s, true))),
        Some(_) => false,
    };
    let aud_ok = match get(claims, "aud") {
        Some(Value::String(aud)) => aud == AUDIENCE,
        Some(Value::Array(items)) => items.iter().any(|a| a.as_str() == Some(AUDIENCE)),
        _ => false,
    };
    let sub_ok = text("sub").is_some_and(|sub| header_safe(sub, false) && is_subject(sub));
    let nbf_ok = match get(claims, "nbf") {
        None => true,
        Some(value) => numeric_date(value).is_some_and(|nbf| nbf <= now.saturating_add(skew)),
    };
    text("iss") == Some(ISSUER)
        && aud_ok
        && sub_ok
        && date("iat").is_some()
        && date("exp").is_some_and(|exp| now <= exp.saturating_add(skew))
        && nbf_ok
        && text("jti").is_some_and(|jti| header_safe(jti, false))
        && list_ok("roles")
        && list_ok("permissions")
}

/// `client:<id>`, or a user id as Auth writes it: lowercase, hyphenated.
fn is_subject(sub: &str) -> bool {
    match sub.strip_prefix("client:") {
        Some(id) => !id.is_empty(),
        None => uuid::Uuid::parse_str(sub).is_ok_and(|id| id.hyphenated().to_string() == sub),
    }
}

/// RFC 7519 NumericDate: a non-negative number of seconds, fractions truncated.
fn numeric_date(value: &Value) -> Option<u64> {
    if let Some(n) = value.as_u64() {
        return Some(n);
    }
    let f = value.as_f64()?;
    (0.0..9.0e15).contains(&f).then_some(f as u64)
}

fn check_signed_claims_came_through(claims: &Value, verified: &VerifiedClaims) {
    let text = |name| get(claims, name).and_then(Value::as_str);
    let list = |name| -> Vec<String> {
        get(claims, name)
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(Some(verified.sub.as_str()), text("sub"));
    assert_eq!(Some(verified.jti.as_str()), text("jti"));
    assert_eq!(verified.roles, list("roles"));
    assert_eq!(
        Some(verified.exp),
        get(claims, "exp").and_then(numeric_date)
    );
    assert_eq!(
        Some(verified.iat),
        get(claims, "iat").and_then(numeric_date)
    );
    assert_eq!(verified.nbf, get(claims, "nbf").and_then(numeric_date));
    let granted = if verified.subject.is_client() {
        list("permissions")
    } else {
        Vec::new()
    };
    assert_eq!(verified.permissions(), granted.as_slice());
    crate::jwt_verify::check_claims_shape(verified);
}

/// Structured targets start from an empty corpus: any bytes are an `Input`.
pub fn seeds() -> Vec<crate::Seed> {
    Vec::new()
}
