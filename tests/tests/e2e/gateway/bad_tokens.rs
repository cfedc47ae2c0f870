//! Every kind of bad bearer token on a bearer route is refused at the edge with 401,
//! `WWW-Authenticate: Bearer error="invalid_token"` and `{"code": 16, "message"}`, and the
//! service behind the route never sees the request.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bulwark_e2e::ServiceKind;
use bulwark_proto::identity::v1::GetMeRequest;
use bulwark_proto::identity::v1::identity_service_client::IdentityServiceClient;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tonic::Code;

use super::{
    ADMIN_EMAIL, ADMIN_PASSWORD, SigningKey, bearer, claims_with, encode_part, envoy_stat, get_me,
    login, now_unix, rpc_calls, start_mesh, token_part,
};
use crate::support::assert_security_headers;

/// `header.claims.` with no signature: `alg: none`.
fn unsigned(kid: &str, claims: &Value) -> String {
    let header = json!({"alg": "none", "typ": "JWT", "kid": kid});
    format!("{}.{}.", encode_part(&header), encode_part(claims))
}

/// HS256 with `secret` as the HMAC key, under the real key's `kid`.
fn hs256(kid: &str, claims: &Value, secret: &[u8]) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap_or_else(|err| panic!("signing an HS256 token: {err}"))
}

/// The real token with one claim changed and its original signature kept.
fn tampered(token: &str, claim: &str, value: Value) -> String {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(signature)) = (parts.next(), parts.next(), parts.next())
    else {
        panic!("not a compact JWS: {token}");
    };
    let claims = claims_with(token, &[(claim, value)]);
    format!("{header}.{}.{signature}", encode_part(&claims))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bearer_tokens_answer_401_invalid_token_before_reaching_identity() {
    let mesh = start_mesh(None).await;
    let session = login(&mesh, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let real = session.access_token.clone();
    let key = SigningKey::active(&mesh);
    assert_eq!(
        token_part(&real, 0)["kid"].as_str(),
        Some(key.kid.as_str()),
        "the login token is not signed by the active key read from auth.signing_keys"
    );

    let jwks = mesh
        .http()
        .get(mesh.edge_url("/.well-known/jwks.json"))
        .send()
        .await
        .expect("GET /.well-known/jwks.json")
        .text()
        .await
        .expect("reading the JWKS");
    let jwks: Value =
        serde_json::from_str(&jwks).unwrap_or_else(|err| panic!("JWKS ({err}): {jwks}"));
    let jwk = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"].as_str() == Some(&key.kid)))
        .unwrap_or_else(|| panic!("the active kid {} is not in the JWKS: {jwks}", key.kid))
        .clone();
    let public_x = jwk["x"]
        .as_str()
        .unwrap_or_else(|| panic!("the JWK has no x: {jwk}"))
        .to_owned();
    let public_raw = URL_SAFE_NO_PAD
        .decode(&public_x)
        .unwrap_or_else(|err| panic!("the JWK's x is not base64url ({err}): {jwk}"));

    let now = now_unix();
    let other_user = "00000000-0000-4000-8000-00000000beef";
    let stranger = SigningKey::foreign(&key.kid, [0x5a; 32]);
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no Authorization header", None),
        (
            "Basic credentials",
            Some("Basic YWRtaW46YWRtaW4=".to_owned()),
        ),
        ("Bearer without a token", Some("Bearer".to_owned())),
        ("a token that is not a JWT", Some(bearer("not-a-jwt"))),
        (
            "a JWT whose parts are not JSON",
            Some(bearer("aGVsbG8.d29ybGQ.c2lnbmF0dXJl")),
        ),
        (
            "an expired token",
            Some(bearer(&key.sign(&claims_with(
                &real,
                &[
                    ("iat", json!(now - 4000)),
                    ("nbf", json!(now - 4000)),
                    ("exp", json!(now - 3600)),
                ],
            )))),
        ),
        (
            "a token not valid yet",
            Some(bearer(&key.sign(&claims_with(
                &real,
                &[
                    ("iat", json!(now)),
                    ("nbf", json!(now + 3600)),
                    ("exp", json!(now + 4500)),
                ],
            )))),
        ),
        (
            "a token signed by a key outside the JWKS under a published kid",
            Some(bearer(&stranger.sign(&token_part(&real, 1)))),
        ),
        (
            "a real token whose sub was changed after signing",
            Some(bearer(&tampered(&real, "sub", json!(other_user)))),
        ),
        (
            "a token from another issuer",
            Some(bearer(&key.sign(&claims_with(
                &real,
                &[("iss", json!("https://evil.example"))],
            )))),
        ),
        (
            "a token for another audience",
            Some(bearer(
                &key.sign(&claims_with(&real, &[("aud", json!("another-api"))])),
            )),
        ),
        (
            "alg none",
            Some(bearer(&unsigned(&key.kid, &token_part(&real, 1)))),
        ),
        (
            "HS256 keyed with the raw public key",
            Some(bearer(&hs256(&key.kid, &token_part(&real, 1), &public_raw))),
        ),
        (
            "HS256 keyed with the JWK's x text",
            Some(bearer(&hs256(
                &key.kid,
                &token_part(&real, 1),
                public_x.as_bytes(),
            ))),
        ),
    ];

    let get_me_before = rpc_calls(&mesh, ServiceKind::Identity, "GetMe").await;
    let upstream_before = envoy_stat(&mesh, "cluster.identity.upstream_rq_total").await;
    let mut problems = Vec::new();
    for (what, authorization) in &cases {
        let reply = get_me(&mesh, authorization.as_deref()).await;
        if reply.status != StatusCode::UNAUTHORIZED {
            problems.push(format!(
                "{what}: answered {} {:?}",
                reply.status, reply.body
            ));
            continue;
        }
        let challenge = reply.header("www-authenticate").unwrap_or_default();
        if !challenge.starts_with(r#"Bearer error="invalid_token""#) {
            problems.push(format!(
                "{what}: WWW-Authenticate is {challenge:?}: {reply:?}"
            ));
        }
        reply.assert_error_body(16, what);
        assert_security_headers(&reply.headers, what);
    }
    // gRPC clients (HTTP/2 to the same port) meet the same filter.
    let mut grpc = IdentityServiceClient::connect(mesh.edge_url(""))
        .await
        .expect("connecting to the edge over HTTP/2");
    let grpc_cases = [
        ("gRPC without a token", None),
        (
            "gRPC with an expired token",
            cases
                .iter()
                .find(|(what, _)| *what == "an expired token")
                .and_then(|(_, authorization)| authorization.clone()),
        ),
    ];
    for (what, authorization) in grpc_cases {
        let mut request = tonic::Request::new(GetMeRequest {});
        if let Some(value) = authorization {
            request.metadata_mut().insert(
                "authorization",
                value.parse().expect("an authorization header value"),
            );
        }
        match grpc.get_me(request).await {
            Ok(response) => problems.push(format!("{what}: answered {:?}", response.get_ref())),
            Err(status) if status.code() == Code::Unauthenticated => {}
            Err(status) => problems.push(format!("{what}: answered {status:?}")),
        }
    }
    let get_me_after = rpc_calls(&mesh, ServiceKind::Identity, "GetMe").await;
    let upstream_after = envoy_stat(&mesh, "cluster.identity.upstream_rq_total").await;
    assert!(
        problems.is_empty(),
        "bad tokens on GET /v1/users/me not refused as RFC 6750 invalid_token:\n{}",
        problems.join("\n")
    );
    assert_eq!(
        get_me_after, get_me_before,
        "identity counted GetMe calls for refused tokens"
    );
    assert_eq!(
        upstream_after, upstream_before,
        "Envoy sent refused requests to the identity cluster"
    );

    // The control: the same minting with nothing wrong passes, so each refusal above is
    // down to the one defect of its token.
    let good = key.sign(&claims_with(
        &real,
        &[("jti", json!("gateway-e2e-control")), ("iat", json!(now))],
    ));
    let reply = get_me(&mesh, Some(&bearer(&good))).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "a token minted with Auth's active key and the login token's claims was refused: {reply:?}"
    );
    assert_eq!(
        reply.json("GetMe")["id"].as_str(),
        Some(session.user_id.as_str()),
        "GetMe answered another user: {reply:?}"
    );
    assert!(
        rpc_calls(&mesh, ServiceKind::Identity, "GetMe").await > get_me_after,
        "the accepted token's GetMe was not counted by identity"
    );
}
