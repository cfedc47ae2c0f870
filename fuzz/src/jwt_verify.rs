//! A bearer token as a client presents it: the token contract's verification, the
//! edge's cached verifier and ed25519-dalek must agree on it.
//!
//! Checked on every input:
//! - the edge's `TokenVerifier` (with its cache) gives the contract's verdict, also when
//!   asked a second time (a cache hit), and its cache expires a token exactly when the
//!   contract does;
//! - for a token whose header names the published Ed25519 key, the signature is
//!   accepted exactly when ed25519-dalek's `verify` accepts it (the contract's verifier
//!   is its own, with a precomputed table per key);
//! - an accepted token's claims satisfy the contract's rules.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bulwark_gateway_logic::{GatewayConfig, TokenVerifier};
use bulwark_token::testing::{self, AUDIENCE, ISSUER, KID};
use bulwark_token::{KeyAlgorithm, Subject, TokenError, VerifiedClaims};
use ed25519_dalek::Verifier as _;

use crate::fixtures::{self, NOW, header_safe};

/// Checks one presented token.
pub fn check(data: &[u8]) {
    // Header values reach the filter and the services as text.
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let policy = fixtures::policy();
    let contract = policy.verify(token, fixtures::keys(), NOW);

    let mut edge = edge_verifier();
    let first = edge.verify(token, NOW).map(|claims| (*claims).clone());
    assert_eq!(first, contract, "the edge and the contract disagree");
    let again = edge.verify(token, NOW).map(|claims| (*claims).clone());
    assert_eq!(again, contract, "the edge's cached answer differs");

    check_signature_agrees(token, &contract);

    if let Ok(claims) = &contract {
        check_claims(claims);
        // The cache holds a token until `exp` plus the skew, as the contract accepts it.
        let last = claims.exp.saturating_add(policy.clock_skew_seconds);
        if last > NOW && last < u64::MAX {
            for at in [last, last + 1] {
                let cached = edge.verify(token, at).map(|claims| (*claims).clone());
                let fresh = policy.verify(token, fixtures::keys(), at);
                assert_eq!(cached, fresh, "at {at} the cache and the contract disagree");
            }
        }
    }
}

fn edge_verifier() -> TokenVerifier {
    let policy = fixtures::policy();
    let config = serde_json::json!({
        "issuer": policy.issuer,
        "audiences": policy.audiences,
        "clock_skew_seconds": policy.clock_skew_seconds,
        "max_token_bytes": policy.max_token_bytes,
        "jwks": { "cluster": "jwks" },
    });
    let config = match GatewayConfig::from_json(config.to_string().as_bytes()) {
        Ok(config) => config,
        Err(error) => panic!("the edge configuration of the contract's policy: {error}"),
    };
    let mut verifier = TokenVerifier::new(&config);
    verifier.install_keys(fixtures::keys().clone());
    verifier
}

/// The contract's signature verdict equals ed25519-dalek's, for tokens that reach the
/// signature check with the published key.
fn check_signature_agrees(token: &str, contract: &Result<VerifiedClaims, TokenError>) {
    let policy = fixtures::policy();
    let Ok(parsed) = policy.parse(token) else {
        return;
    };
    if parsed.kid() != KID || parsed.algorithm() != KeyAlgorithm::EdDsa {
        return;
    }
    let Some((signing_input, signature)) = token.rsplit_once('.') else {
        return;
    };
    let reference = URL_SAFE_NO_PAD
        .decode(signature)
        .ok()
        .and_then(|bytes| ed25519_dalek::Signature::from_slice(&bytes).ok())
        .is_some_and(|signature| {
            fixtures::reference_key()
                .verify(signing_input.as_bytes(), &signature)
                .is_ok()
        });
    let refused_signature = matches!(
        contract,
        Err(TokenError::BadSignature | TokenError::Malformed("signature is not base64url"))
    );
    assert_eq!(
        reference, !refused_signature,
        "ed25519-dalek says {reference}, the contract says {contract:?}"
    );
}

/// What an accepted token's claims must be at [`NOW`], whatever the token was.
fn check_claims(claims: &VerifiedClaims) {
    check_claims_shape(claims);
    let skew = fixtures::policy().clock_skew_seconds;
    assert!(
        claims.exp.saturating_add(skew) >= NOW,
        "expired token accepted"
    );
    assert!(
        claims.nbf.is_none_or(|nbf| nbf <= NOW + skew),
        "token accepted before nbf"
    );
}

/// What an accepted token's claims must look like, whatever the token and the time.
pub fn check_claims_shape(claims: &VerifiedClaims) {
    assert!(header_safe(&claims.sub, false), "sub {:?}", claims.sub);
    assert!(header_safe(&claims.jti, false), "jti {:?}", claims.jti);
    for role in &claims.roles {
        assert!(header_safe(role, true), "role {role:?}");
    }
    for permission in claims.permissions() {
        assert!(header_safe(permission, true), "permission {permission:?}");
    }
    assert_eq!(
        claims.subject.to_string(),
        claims.sub,
        "sub does not round-trip"
    );
    assert_eq!(Subject::parse(&claims.sub).as_ref(), Some(&claims.subject));
    if !claims.subject.is_client() {
        assert!(
            claims.permissions().is_empty(),
            "a user token granted permissions"
        );
    }
}

/// The agreement table's tokens (valid and refused ones) and a few hand-made headers.
pub fn seeds() -> Vec<crate::Seed> {
    let mut seeds: Vec<crate::Seed> = testing::cases(NOW)
        .into_iter()
        .map(|case| {
            (
                case.name.replace([' ', '/', '\''], "_"),
                case.token.into_bytes(),
            )
        })
        .collect();
    let claims = testing::user_claims(NOW);
    let encode = |value: serde_json::Value| URL_SAFE_NO_PAD.encode(value.to_string());
    let payload = encode(claims);
    for (name, header) in [
        (
            "header_rs256",
            serde_json::json!({"alg": "RS256", "kid": KID}),
        ),
        (
            "header_es256",
            serde_json::json!({"alg": "ES256", "kid": KID}),
        ),
        (
            "header_none",
            serde_json::json!({"alg": "none", "kid": KID}),
        ),
        (
            "header_hs256",
            serde_json::json!({"alg": "HS256", "kid": KID}),
        ),
        (
            "header_crit",
            serde_json::json!({"alg": "EdDSA", "kid": KID, "crit": ["exp"]}),
        ),
    ] {
        let token = format!("{}.{payload}.AAAA", encode(header));
        seeds.push((name.to_owned(), token.into_bytes()));
    }
    seeds.push((
        "issuer_and_audience".to_owned(),
        format!("{ISSUER}.{AUDIENCE}.x").into_bytes(),
    ));
    seeds
}
