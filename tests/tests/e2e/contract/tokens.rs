//! Login, the access token and its JWKS, refresh, logout.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::client::{Edge, PASSWORD, Tokens, start_mesh};

/// One base64url segment of a JWT, decoded as JSON.
#[track_caller]
fn segment(token: &str, index: usize, what: &str) -> Value {
    let part = token
        .split('.')
        .nth(index)
        .unwrap_or_else(|| panic!("{what}: the token has no segment {index}: {token}"));
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .unwrap_or_else(|err| panic!("{what}: segment {index} is not base64url ({err}): {part}"));
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|err| panic!("{what}: segment {index} is not JSON ({err}): {part}"))
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Verifies `token`'s signature, issuer, audience and lifetime with `jwk`.
fn verify(token: &str, jwk: &Value, algorithm: Algorithm) -> Result<Value, String> {
    let jwk: Jwk = serde_json::from_value(jwk.clone()).map_err(|e| format!("JWK: {e}"))?;
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("decoding key: {e}"))?;
    let mut validation = Validation::new(algorithm);
    validation.set_issuer(&["bulwark"]);
    validation.set_audience(&["bulwark-api"]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_issues_a_jwt_signed_by_a_jwks_key_and_one_401_for_any_bad_credential() {
    let mesh = start_mesh().await;
    let edge = Edge::new(&mesh);
    let user = edge.register("alan@example.com", "Alan Turing").await;
    let user_id = user["id"].as_str().unwrap_or_default();

    let before = now();
    let tokens = edge.login("alan@example.com", PASSWORD).await;
    let after = now();

    // The JWKS: {keys: [{kid, kty, alg, use: "sig", ...}]}.
    let jwks = edge.get("/.well-known/jwks.json").send().await.ok();
    let keys = jwks["keys"]
        .as_array()
        .filter(|keys| !keys.is_empty())
        .unwrap_or_else(|| panic!("the JWKS has no keys: {jwks}"));
    for key in keys {
        for member in ["kid", "kty", "alg"] {
            assert!(
                key[member].as_str().is_some_and(|v| !v.is_empty()),
                "a JWK has no `{member}`: {jwks}"
            );
        }
        assert_eq!(key["use"], "sig", "a JWK's `use` is not \"sig\": {jwks}");
        assert!(
            key.get("d").is_none() && key.get("p").is_none(),
            "the JWKS publishes private key material: {jwks}"
        );
    }

    // The header names a key of the JWKS; the claims are the contract's.
    let header = segment(&tokens.access, 0, "access token header");
    let kid = header["kid"]
        .as_str()
        .unwrap_or_else(|| panic!("the access token's header has no kid: {header}"));
    let jwk = keys
        .iter()
        .find(|key| key["kid"] == kid)
        .unwrap_or_else(|| panic!("the token's kid {kid} is not in the JWKS: {jwks}"));
    assert_eq!(
        header["alg"], jwk["alg"],
        "the token's alg differs from its JWK's: header {header}, JWK {jwk}"
    );
    let claims = segment(&tokens.access, 1, "access token claims");
    assert_eq!(claims["iss"], "bulwark", "iss: {claims}");
    let audience_ok = claims["aud"] == "bulwark-api"
        || claims["aud"]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == "bulwark-api"));
    assert!(audience_ok, "aud is not bulwark-api: {claims}");
    assert_eq!(claims["sub"], user_id, "sub is not the user id: {claims}");
    let iat = claims["iat"]
        .as_i64()
        .unwrap_or_else(|| panic!("iat is not a number: {claims}"));
    assert!(
        (before - 5..=after + 5).contains(&iat),
        "iat {iat} is not the time of the login ({before}..{after}): {claims}"
    );
    assert_eq!(
        claims["exp"].as_i64(),
        Some(iat + 900),
        "exp is not iat + 900 (15 minutes): {claims}"
    );
    assert!(
        claims["jti"].as_str().is_some_and(|j| !j.is_empty()),
        "no jti: {claims}"
    );

    // The signature verifies with the JWKS key, and a changed token does not.
    let algorithm: Algorithm = header["alg"]
        .as_str()
        .and_then(|alg| alg.parse().ok())
        .unwrap_or_else(|| panic!("unknown alg in the header: {header}"));
    let verified = verify(&tokens.access, jwk, algorithm)
        .unwrap_or_else(|err| panic!("the access token does not verify with its JWK: {err}"));
    assert_eq!(verified["sub"], user_id, "verified claims: {verified}");
    let mut forged_claims = claims.clone();
    forged_claims["sub"] = json!("00000000-0000-0000-0000-000000000000");
    let parts: Vec<&str> = tokens.access.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(forged_claims.to_string()),
        parts[2]
    );
    assert!(
        verify(&forged, jwk, algorithm).is_err(),
        "a token with changed claims still verified: the check above proves nothing"
    );

    // The token is accepted at the edge as the user's.
    let me = edge
        .get("/v1/users/me")
        .bearer(&tokens.access)
        .send()
        .await
        .ok();
    assert_eq!(me["id"], user_id, "GET /v1/users/me: {me}");

    // Unknown email and wrong password: the same 401, the same message.
    let unknown = edge
        .post(
            "/v1/auth/login",
            json!({"email": "nobody@example.com", "password": PASSWORD}),
        )
        .send()
        .await
        .error(StatusCode::UNAUTHORIZED, 16);
    let wrong = edge
        .post(
            "/v1/auth/login",
            json!({"email": "alan@example.com", "password": "not-the-password"}),
        )
        .send()
        .await
        .error(StatusCode::UNAUTHORIZED, 16);
    assert_eq!(
        unknown, wrong,
        "an unknown email and a wrong password answer differently"
    );
    for message in [&unknown, &wrong] {
        assert!(
            !message.contains("alan@example.com") && !message.contains("nobody"),
            "the 401 names the email: {message:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_returns_a_new_pair_and_logout_revokes_it() {
    let mesh = start_mesh().await;
    let edge = Edge::new(&mesh);
    let user = edge.register("barbara@example.com", "Barbara Liskov").await;
    let first = edge.login("barbara@example.com", PASSWORD).await;

    let second = Tokens::from_body(
        edge.post("/v1/auth/refresh", json!({"refresh_token": first.refresh}))
            .send()
            .await
            .ok(),
        "POST /v1/auth/refresh",
    );
    assert_ne!(
        second.refresh, first.refresh,
        "refresh answered the same refresh token"
    );
    assert_ne!(
        second.access, first.access,
        "refresh answered the same access token"
    );
    let me = edge
        .get("/v1/users/me")
        .bearer(&second.access)
        .send()
        .await
        .ok();
    assert_eq!(
        me["id"], user["id"],
        "the refreshed access token is not the user's: {me}"
    );

    let logout = edge
        .post("/v1/auth/logout", json!({"refresh_token": second.refresh}))
        .bearer(&second.access)
        .send()
        .await
        .ok();
    assert_eq!(logout, json!({}), "logout answered {logout}, expected {{}}");

    edge.post("/v1/auth/refresh", json!({"refresh_token": second.refresh}))
        .send()
        .await
        .error(StatusCode::UNAUTHORIZED, 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_token_reuse_revokes_family() {
    let mesh = start_mesh().await;
    let edge = Edge::new(&mesh);
    edge.register("edsger@example.com", "Edsger Dijkstra").await;
    let first = edge.login("edsger@example.com", PASSWORD).await;
    // Another login of the same user: a family of its own, which the reuse must spare.
    let other_login = edge.login("edsger@example.com", PASSWORD).await;

    let refresh = |token: &str| {
        edge.post("/v1/auth/refresh", json!({"refresh_token": token}))
            .send()
    };
    let second = Tokens::from_body(refresh(&first.refresh).await.ok(), "first refresh");

    // The used token again: refused, and the newer token of that login dies with it.
    let reuse_message = refresh(&first.refresh)
        .await
        .error(StatusCode::UNAUTHORIZED, 16);
    let descendant = refresh(&second.refresh).await;
    assert_eq!(
        descendant.status,
        StatusCode::UNAUTHORIZED,
        "after the reuse of its ancestor, the newer refresh token of the same login still works: {}",
        descendant.text
    );
    let descendant_message = descendant.error(StatusCode::UNAUTHORIZED, 16);
    assert_eq!(
        reuse_message, descendant_message,
        "a reused and a revoked refresh token answer differently"
    );

    // The other login was not touched.
    Tokens::from_body(
        refresh(&other_login.refresh).await.ok(),
        "refresh of another login after the reuse",
    );
}
