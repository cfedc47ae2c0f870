//! Every way a bearer token can pass or fail verification.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bulwark_gateway_logic::{AuthError, KeyStore, TokenVerifier, VerifiedClaims};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::support::{
    self, AUDIENCE, NOW, USER_ID, b64, claims, ed25519_a, ed25519_b, p256, parts, rsa, sign,
    verifier,
};

fn expect_valid(verifier: &mut TokenVerifier, token: &str) -> VerifiedClaims {
    let claims = verifier
        .verify(token, NOW)
        .unwrap_or_else(|e| panic!("token should verify, got {e:?}"));
    (*claims).clone()
}

fn expect_error(verifier: &mut TokenVerifier, token: &str, expected: AuthError) {
    match verifier.verify(token, NOW) {
        Ok(claims) => panic!("token should fail with {expected:?}, verified as {claims:?}"),
        Err(e) => assert_eq!(e, expected, "wrong rejection reason"),
    }
}

#[test]
fn valid_eddsa_token_yields_its_claims() {
    let key = ed25519_a();
    let mut verifier = verifier(&[&key]);
    let claims: VerifiedClaims = expect_valid(&mut verifier, &sign(&key, &claims()));
    assert_eq!(claims.sub, USER_ID);
    assert_eq!(
        claims.subject.user_id().map(|id| id.to_string()).as_deref(),
        Some(USER_ID)
    );
    assert_eq!(claims.roles, ["admin", "auditor"]);
    assert_eq!(claims.exp, NOW + 900);
    assert_eq!(claims.jti, "jti-1");
    assert!(claims.permissions().is_empty());
}

#[test]
fn valid_rs256_token_is_accepted() {
    let key = rsa();
    let mut verifier = verifier(&[&key]);
    assert_eq!(
        expect_valid(&mut verifier, &sign(&key, &claims())).sub,
        USER_ID
    );
}

#[test]
fn valid_es256_token_is_accepted() {
    let key = p256();
    let mut verifier = verifier(&[&key]);
    assert_eq!(
        expect_valid(&mut verifier, &sign(&key, &claims())).sub,
        USER_ID
    );
}

#[test]
fn each_key_of_a_mixed_key_set_verifies_its_own_tokens() {
    let (ed, rs, ec) = (ed25519_a(), rsa(), p256());
    let mut verifier = verifier(&[&ed, &rs, &ec]);
    for key in [&ed, &rs, &ec] {
        expect_valid(&mut verifier, &sign(key, &claims()));
    }
}

#[test]
fn expired_token_is_rejected() {
    let key = ed25519_a();
    let mut verifier = verifier(&[&key]);
    let mut c = claims();
    c["exp"] = json!(NOW - 61); // default skew is 60 s
    expect_error(&mut verifier, &sign(&key, &c), AuthError::Expired);
}

#[test]
fn token_expired_within_clock_skew_is_accepted() {
    let key = ed25519_a();
    let mut verifier = verifier(&[&key]);
    let mut c = claims();
    c["exp"] = json!(NOW - 60);
    expect_valid(&mut verifier, &sign(&key, &c));
}

#[test]
fn not_yet_valid_token_is_rejected() {
    let key = ed25519_a();
    let mut verifier = verifier(&[&key]);
    let mut c = claims();
    c["nbf"] = json!(NOW + 61);
    expect_error(&mut verifier, &sign(&key, &c), AuthError::NotYetValid);
}

#[test]
fn token_valid_within_clock_skew_of_nbf_is_accepted() {
    let key = ed25519_a();
    let mut verifier = verifier(&[&key]);
    let mut c = claims();
    c["nbf"] = json!(NOW + 60);
    expect_valid(&mut verifier, &sign(&key, &c));
}

#[test]
fn fractional_exp_is_accepted_as_numeric_date() {
    let key = ed25519_a();
    let mut verifier = verifier(&[&key]);
    let mut c = claims();
    c["exp"] = json!((NOW + 900) as f64 + 0.5);
    assert_eq!(expect_valid(&mut verifier, &sign(&key, &c)).exp, NOW + 900);
}

#[test]
fn non_numeric_exp_is_rejected() {
    let key = ed25519_a();
    let mut verifier = verifier(&[&key]);
    let mut c = claims();
    c["exp"] = json!("tomorrow");
    expect_error(
        &mut verifier,
        &sign(&key, &c),
        AuthError::InvalidClaim("exp"),
    );
}

#[test]
fn wrong_issuer_is_rejected() {
    let key = ed25519_a();
    let mut verifier = verifier(&[&key]);
    let mut c = claims();
    c["iss"] = json!("https://evil.example");
    expect_error(&mut verifier, &sign(&key, &c), AuthError::WrongIssuer);
}

#[test]
fn wrong_audience_is_rejected() {
    let key = ed25519_a();
    let mut verifier = verifier(&[&key]);
    let mut c = claims();
    c["aud"] = json!("some-other-api");
    expect_error(&mut verifier, &sign(&key, &c), AuthError::WrongAudience);
}

#[test]
fn audience_list_naming_the_configured_audience_is_accepted() {
    let key = ed25519_a();
    let mut verifier = verifier(&[&key]);
    let mut c = claims();
    c["aud"] = json!(["other", AUDIENCE]);
    expect_valid(&mut verifier, &sign(&key, &c));
}

#[test]
fn missing_issuer_audience_subject_issued_at_expiry_or_id_is_rejected() {
    let key = ed25519_a();
    let mut verifier = verifier(&[&key]);
    for claim in ["iss", "aud", "sub", "iat", "exp", "jti"] {
        let mut c = claims();
        c.as_object_mut().unwrap().remove(claim);
        expect_error(
            &mut verifier,
            &sign(&key, &c),
            AuthError::MissingClaim(claim),
        );
    }
}

#[test]
fn token_without_jti_is_refused_at_the_edge_as_by_the_services() {
    // The edge once let such tokens through while the services refused them.
    let key = ed25519_a();
    let mut verifier = verifier(&[&key]);
    let mut c = claims();
    c.as_object_mut().unwrap().remove("jti");
    let token = sign(&key, &c);
    expect_error(&mut verifier, &token, AuthError::MissingClaim("jti"));
    assert_eq!(
        verifier.cache_stats().entries,
        0,
        "a refused token must not be cached"
    );
}

#[test]
fn subject_that_is_neither_a_user_id_nor_a_client_is_rejected() {
    let key = ed25519_a();
    let mut verifier = verifier(&[&key]);
    for sub in ["user-42", "client:", &USER_ID.to_uppercase()] {
        let mut c = claims();
        c["sub"] = json!(sub);
        expect_error(
            &mut verifier,
            &sign(&key, &c),
            AuthError::InvalidClaim("sub"),
        );
    }
}

#[test]
fn client_token_yields_its_client_and_permissions() {
    let key = ed25519_a();
    let mut verifier = verifier(&[&key]);
    let mut c = claims();
    c["sub"] = json!("client:audit");
    c["permissions"] = json!(["roles:read"]);
    let claims = expect_valid(&mut verifier, &sign(&key, &c));
    assert_eq!(claims.sub, "client:audit");
    assert_eq!(claims.subject.client_id(), Some("audit"));
    assert_eq!(claims.permissions(), ["roles:read"]);
}

#[test]
fn absent_roles_claim_yields_no_roles() {
    let key = ed25519_a();
    let mut verifier = verifier(&[&key]);
    let mut c = claims();
    c.as_object_mut().unwrap().remove("roles");
    assert!(
        expect_valid(&mut verifier, &sign(&key, &c))
            .roles
            .is_empty()
    );
}

#[test]
fn role_containing_a_comma_is_rejected_so_it_cannot_forge_a_second_role() {
    let key = ed25519_a();
    let mut verifier = verifier(&[&key]);
    let mut c = claims();
    c["roles"] = json!(["viewer,admin"]);
    expect_error(
        &mut verifier,
        &sign(&key, &c),
        AuthError::InvalidClaim("roles"),
    );
}

#[test]
fn roles_claim_that_is_not_an_array_of_strings_is_rejected() {
    let key = ed25519_a();
    let mut verifier = verifier(&[&key]);
    for roles in [json!("admin"), json!([1, 2]), json!({"admin": true})] {
        let mut c = claims();
        c["roles"] = roles;
        expect_error(
            &mut verifier,
            &sign(&key, &c),
            AuthError::InvalidClaim("roles"),
        );
    }
}

#[test]
fn subject_with_control_characters_is_rejected() {
    let key = ed25519_a();
    let mut verifier = verifier(&[&key]);
    let mut c = claims();
    c["sub"] = json!(format!("{USER_ID}\r\nx-bulwark-roles: admin"));
    expect_error(
        &mut verifier,
        &sign(&key, &c),
        AuthError::InvalidClaim("sub"),
    );
}

#[test]
fn unknown_kid_is_reported_then_accepted_after_jwks_rotation() {
    let (old, new) = (ed25519_a(), ed25519_b());
    let mut verifier = verifier(&[&old]);
    let token = sign(&new, &claims());
    let err = verifier.verify(&token, NOW).unwrap_err();
    assert_eq!(err, AuthError::UnknownKid("ed-b".to_owned()));
    assert_eq!(
        err.unknown_kid(),
        Some("ed-b"),
        "the glue needs the kid to decide on a refetch"
    );

    let rotated = KeyStore::from_jwks_json(&support::jwks(&[&old, &new])).unwrap();
    verifier.install_keys(rotated.store);
    assert_eq!(expect_valid(&mut verifier, &token).sub, USER_ID);
}

#[test]
fn verifier_without_keys_reports_unknown_kid() {
    let key = ed25519_a();
    let mut verifier = TokenVerifier::new(&support::config());
    expect_error(
        &mut verifier,
        &sign(&key, &claims()),
        AuthError::UnknownKid("ed-a".to_owned()),
    );
}

#[test]
fn alg_none_token_is_rejected() {
    let key = ed25519_a();
    let mut verifier = verifier(&[&key]);
    let header = json!({"alg": "none", "kid": key.kid, "typ": "JWT"});
    for token in [
        format!("{}.{}.", b64(&header), b64(&claims())),
        format!("{}.{}", b64(&header), b64(&claims())),
    ] {
        let err = verifier.verify(&token, NOW).unwrap_err();
        assert!(
            matches!(
                err,
                AuthError::UnsupportedAlgorithm(_) | AuthError::Malformed(_)
            ),
            "alg none must be refused, got {err:?}"
        );
    }
    expect_error(
        &mut verifier,
        &format!("{}.{}.", b64(&header), b64(&claims())),
        AuthError::UnsupportedAlgorithm("none".to_owned()),
    );
}

#[test]
fn hs256_token_signed_with_the_public_key_as_hmac_secret_is_rejected() {
    // The classic key-confusion attack: a verifier that lets the token pick the algorithm
    // would check this HMAC with the public key bytes as the secret, and accept it.
    let key = ed25519_a();
    let mut verifier = verifier(&[&key]);
    let x = key.jwk["x"].as_str().unwrap();
    let public_secrets = [
        URL_SAFE_NO_PAD.decode(x).unwrap(),
        x.as_bytes().to_vec(),
        serde_json::to_vec(&key.jwk).unwrap(),
    ];
    for secret in public_secrets {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let mut header = Header::new(alg);
            header.kid = Some(key.kid.to_owned());
            let token =
                jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(&secret))
                    .unwrap();
            expect_error(
                &mut verifier,
                &token,
                AuthError::UnsupportedAlgorithm(format!("{alg:?}")),
            );
        }
    }
}

#[test]
fn token_whose_alg_differs_from_its_keys_alg_is_rejected() {
    let (ec, rs) = (p256(), rsa());
    let mut verifier = verifier(&[&ec, &rs]);
    // RS256-signed, but naming the ES256 key.
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(ec.kid.to_owned());
    let token = jsonwebtoken::encode(&header, &claims(), &rs.encoding).unwrap();
    expect_error(
        &mut verifier,
        &token,
        AuthError::AlgorithmMismatch {
            token: "RS256".to_owned(),
            key: "ES256".to_owned(),
        },
    );
}

#[test]
fn tampered_payload_is_rejected() {
    let key = ed25519_a();
    let mut verifier = verifier(&[&key]);
    let (header, _, signature) = parts(&sign(&key, &claims()));
    let mut forged = claims();
    forged["roles"] = json!(["admin", "superuser"]);
    let token = format!("{header}.{}.{signature}", b64(&forged));
    expect_error(&mut verifier, &token, AuthError::BadSignature);
}

#[test]
fn tampered_signature_is_rejected() {
    for key in [ed25519_a(), rsa(), p256()] {
        let mut verifier = verifier(&[&key]);
        let (header, payload, signature) = parts(&sign(&key, &claims()));
        let mut sig = URL_SAFE_NO_PAD.decode(&signature).unwrap();
        sig[5] ^= 0x01;
        let token = format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode(sig));
        expect_error(&mut verifier, &token, AuthError::BadSignature);
    }
}

#[test]
fn token_signed_by_another_key_under_a_known_kid_is_rejected() {
    let (real, impostor) = (ed25519_a(), ed25519_b());
    let mut verifier = verifier(&[&real]);
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(real.kid.to_owned());
    let token = jsonwebtoken::encode(&header, &claims(), &impostor.encoding).unwrap();
    expect_error(&mut verifier, &token, AuthError::BadSignature);
}

#[test]
fn truncated_token_is_rejected() {
    let key = ed25519_a();
    let mut verifier = verifier(&[&key]);
    let token = sign(&key, &claims());
    let (header, payload, signature) = parts(&token);
    let half_signature = &signature[..signature.len() / 2];
    let cases = [
        format!("{header}.{payload}"),
        format!("{header}.{payload}."),
        format!("{header}.{payload}.{half_signature}"),
        token[..token.len() / 2].to_owned(),
        header.clone(),
    ];
    for case in cases {
        let err = verifier.verify(&case, NOW).unwrap_err();
        assert!(
            matches!(err, AuthError::Malformed(_) | AuthError::BadSignature),
            "truncated token {case:?} gave {err:?}"
        );
    }
}

#[test]
fn garbage_token_is_rejected_as_malformed() {
    let key = ed25519_a();
    let mut verifier = verifier(&[&key]);
    for garbage in [
        "",
        "garbage",
        "a.b.c",
        "....",
        "e30.e30.e30",
        "!!!.???.###",
        "ey J.ey J.x",
        "é.é.é",
    ] {
        let err = verifier.verify(garbage, NOW).unwrap_err();
        assert!(
            matches!(err, AuthError::Malformed(_)),
            "{garbage:?} gave {err:?}"
        );
    }
}

#[test]
fn payload_that_is_not_json_is_rejected_as_malformed() {
    let key = ed25519_a();
    let mut verifier = verifier(&[&key]);
    let header = json!({"alg": "EdDSA", "kid": key.kid});
    let token = format!(
        "{}.{}.{}",
        b64(&header),
        URL_SAFE_NO_PAD.encode("not json"),
        URL_SAFE_NO_PAD.encode([0u8; 64])
    );
    let err = verifier.verify(&token, NOW).unwrap_err();
    assert!(
        matches!(err, AuthError::Malformed(_) | AuthError::BadSignature),
        "gave {err:?}"
    );
}

#[test]
fn oversized_token_is_rejected_before_parsing() {
    let key = ed25519_a();
    let mut verifier = verifier(&[&key]);
    let mut c = claims();
    c["padding"] = json!("x".repeat(9000));
    let token = sign(&key, &c);
    let err = verifier.verify(&token, NOW).unwrap_err();
    assert_eq!(
        err,
        AuthError::TooLarge {
            len: token.len(),
            limit: 8192
        }
    );
    let garbage = "A".repeat(8193);
    assert!(matches!(
        verifier.verify(&garbage, NOW),
        Err(AuthError::TooLarge { .. })
    ));
}

#[test]
fn token_without_kid_is_rejected() {
    let key = ed25519_a();
    let mut verifier = verifier(&[&key]);
    let token =
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims(), &key.encoding).unwrap();
    expect_error(&mut verifier, &token, AuthError::MissingKid);
}

#[test]
fn token_with_critical_header_extension_is_rejected() {
    let key = ed25519_a();
    let mut verifier = verifier(&[&key]);
    let header = json!({"alg": "EdDSA", "kid": key.kid, "crit": ["exp"], "exp": 1});
    let token = format!(
        "{}.{}.{}",
        b64(&header),
        b64(&claims()),
        URL_SAFE_NO_PAD.encode([0u8; 64])
    );
    expect_error(
        &mut verifier,
        &token,
        AuthError::Malformed("header has crit extensions"),
    );
}

#[test]
fn repeated_token_is_answered_from_the_cache_with_the_same_claims() {
    let key = ed25519_a();
    let mut verifier = verifier(&[&key]);
    let token = sign(&key, &claims());
    let first = expect_valid(&mut verifier, &token);
    let before = verifier.cache_stats();
    let second = expect_valid(&mut verifier, &token);
    let after = verifier.cache_stats();
    assert_eq!(first, second);
    assert_eq!(
        after.hits,
        before.hits + 1,
        "second verification should be a cache hit"
    );
    assert_eq!(
        after.misses, before.misses,
        "second verification should not re-verify"
    );
    assert_eq!(after.entries, 1);
}

#[test]
fn cached_token_is_rejected_once_expired() {
    let key = ed25519_a();
    let mut verifier = verifier(&[&key]);
    let token = sign(&key, &claims());
    expect_valid(&mut verifier, &token);
    let exp = NOW + 900;
    assert!(
        verifier.verify(&token, exp + 60).is_ok(),
        "still valid within the skew"
    );
    assert_eq!(verifier.verify(&token, exp + 61), Err(AuthError::Expired));
    assert_eq!(
        verifier.cache_stats().entries,
        0,
        "expired entry should be dropped"
    );
}

#[test]
fn withdrawn_key_stops_cached_tokens_at_once() {
    let (old, new) = (ed25519_a(), ed25519_b());
    let mut verifier = verifier(&[&old]);
    let token = sign(&old, &claims());
    expect_valid(&mut verifier, &token);
    verifier.install_keys(
        KeyStore::from_jwks_json(&support::jwks(&[&new]))
            .unwrap()
            .store,
    );
    expect_error(
        &mut verifier,
        &token,
        AuthError::UnknownKid("ed-a".to_owned()),
    );
}

#[test]
fn rejected_tokens_are_not_cached() {
    let key = ed25519_a();
    let mut verifier = verifier(&[&key]);
    let mut c = claims();
    c["iss"] = json!("https://evil.example");
    let token = sign(&key, &c);
    for _ in 0..2 {
        expect_error(&mut verifier, &token, AuthError::WrongIssuer);
    }
    assert_eq!(verifier.cache_stats().entries, 0);
}

#[test]
fn client_messages_are_safe_to_quote_in_a_header() {
    let errors = [
        AuthError::MissingToken,
        AuthError::NotBearer,
        AuthError::TooLarge { len: 1, limit: 0 },
        AuthError::Malformed("x"),
        AuthError::MissingKid,
        AuthError::UnsupportedAlgorithm("none".to_owned()),
        AuthError::UnknownKid("k\"".to_owned()),
        AuthError::AlgorithmMismatch {
            token: "a".to_owned(),
            key: "b".to_owned(),
        },
        AuthError::BadSignature,
        AuthError::Expired,
        AuthError::NotYetValid,
        AuthError::WrongIssuer,
        AuthError::WrongAudience,
        AuthError::MissingClaim("sub"),
        AuthError::InvalidClaim("roles"),
    ];
    for err in errors {
        let message = err.client_message();
        assert!(!message.is_empty());
        assert!(
            message
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'),
            "{message}"
        );
    }
}

#[test]
fn the_edge_gives_every_agreement_table_token_the_contract_verdict() {
    use bulwark_token::testing::{self, Verdict};

    let policy = testing::policy();
    let config = bulwark_gateway_logic::GatewayConfig::from_json(
        &serde_json::to_vec(&json!({
            "issuer": policy.issuer,
            "audiences": policy.audiences,
            "clock_skew_seconds": policy.clock_skew_seconds,
            "max_token_bytes": policy.max_token_bytes,
            "jwks": { "cluster": "bulwark_auth" },
        }))
        .unwrap(),
    )
    .unwrap();
    let mut verifier = TokenVerifier::new(&config);
    verifier.install_keys(
        KeyStore::from_jwks_json(&testing::jwks_json())
            .unwrap()
            .store,
    );
    let cases = testing::cases(NOW);
    assert!(!cases.is_empty(), "the agreement table is empty");
    for case in cases {
        // Twice: the second answer of an accepted token comes from the cache.
        for attempt in ["first", "repeated"] {
            let result = verifier.verify(&case.token, NOW);
            assert_eq!(
                Verdict::of(result.as_deref()),
                case.verdict,
                "row {:?} ({attempt} verification)",
                case.name
            );
        }
    }
}
