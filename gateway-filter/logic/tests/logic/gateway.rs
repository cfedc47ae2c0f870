//! The request decision and the 401 reply a client sees.

use bulwark_gateway_logic::response::unauthorized;
use bulwark_gateway_logic::{Access, AuthError, Gateway, RequestHead};
use serde_json::json;

use crate::support::{self, NOW, claims, ed25519_a, sign};

fn gateway() -> Gateway {
    let mut gateway = Gateway::new(support::config());
    gateway
        .install_jwks(&support::jwks(&[&ed25519_a()]))
        .unwrap();
    gateway
}

fn head<'a>(path: &'a str, authorization: Option<&'a str>) -> RequestHead<'a> {
    RequestHead {
        path,
        authorization: authorization.map(str::as_bytes),
    }
}

#[test]
fn public_routes_pass_without_a_token() {
    let mut gateway = gateway();
    for path in [
        "/v1/auth/login",
        "/v1/auth/refresh",
        "/v1/users",
        "/v1/oauth2/token",
        "/.well-known/jwks.json",
        "/healthz",
        "/bulwark.auth.v1.AuthService/Login",
        "/bulwark.auth.v1.AuthService/Login?x=1",
        "/bulwark.auth.v1.AuthService/Refresh",
        "/bulwark.auth.v1.AuthService/GetJwks",
        "/bulwark.auth.v1.AuthService/IssueToken",
        "/bulwark.identity.v1.IdentityService/CreateUser",
        "/v1/users/verify-email",
        "/v1/auth/password-reset",
        "/v1/auth/password-reset/confirm",
        "/v1/auth/login/mfa",
        "/bulwark.auth.v1.AuthService/VerifyEmail",
        "/bulwark.auth.v1.AuthService/RequestPasswordReset",
        "/bulwark.auth.v1.AuthService/ConfirmPasswordReset",
        "/bulwark.auth.v1.AuthService/LoginMfa",
    ] {
        assert_eq!(
            gateway.authorize(&head(path, None), NOW),
            Access::Public,
            "{path}"
        );
    }
}

#[test]
fn public_route_ignores_a_bad_token() {
    let mut gateway = gateway();
    let access = gateway.authorize(&head("/v1/auth/login", Some("Bearer garbage")), NOW);
    assert_eq!(access, Access::Public);
}

#[test]
fn bearer_routes_need_a_token() {
    let mut gateway = gateway();
    for path in [
        "/v1/users/me",
        "/v1/auth/logout",
        "/v1/users/123",
        "/v1/audit/events",
        "/v1/auth/clients",
        // The bearer account routes beside the public ones.
        "/v1/users/me/verification",
        "/v1/users/me/password",
        "/bulwark.auth.v1.AuthService/RequestEmailVerification",
        "/bulwark.auth.v1.AuthService/ChangePassword",
        "/bulwark.auth.v1.AuthService/Logout",
        "/bulwark.auth.v1.AuthService/CreateClient",
        "/bulwark.identity.v1.IdentityService/GetMe",
        "/bulwark.auth.v1.AuthService/RotateSigningKey",
        "/bulwark.authz.v1.AuthzService/ResolveRoles",
        // The former `OPTIONS /` rule made every path public for that method; a path
        // is now public or not whatever the method, so no path below `/` is.
        "/",
        "/bulwark.identity.v1.IdentityService/VerifyCredentials",
        "/bulwark.identity.v1.IdentityService/SetPassword",
    ] {
        assert_eq!(
            gateway.authorize(&head(path, None), NOW),
            Access::Denied(AuthError::MissingToken),
            "{path}"
        );
    }
}

#[test]
fn path_tricks_on_a_public_route_need_a_token() {
    let mut gateway = gateway();
    for path in [
        "/healthz/../v1/users/me",
        "/v1/auth/login/",
        "/v1/auth//login",
        "/V1/auth/login",
        "/v1/auth/%6cogin",
        "/v1/auth/./login",
        "/v1/auth/login;x=1",
        "/bulwark.auth.v1.AuthService/Login/",
        "/bulwark.auth.v1.AuthService//Login",
        "/bulwark.auth.v1.AuthService/login",
        "/bulwark.auth.v1.AuthService/%4Cogin",
        "/bulwark.auth.v1.AuthService/./Login",
        "/bulwark.auth.v1.AuthService/Login;x",
        "/bulwark.auth.v1.AuthService/Logout;/Login",
        "/bulwark.auth.v1.AuthService/Logout/../Login",
    ] {
        assert_eq!(
            gateway.authorize(&head(path, None), NOW),
            Access::Denied(AuthError::MissingToken),
            "{path}"
        );
    }
}

#[test]
fn valid_bearer_token_authenticates_and_yields_identity_headers() {
    let mut gateway = gateway();
    let token = sign(&ed25519_a(), &claims());
    let authorization = format!("Bearer {token}");
    let Access::Authenticated(verified) =
        gateway.authorize(&head("/v1/users/me", Some(&authorization)), NOW)
    else {
        panic!("token should authenticate");
    };
    let headers = gateway.identity_headers(&verified);
    assert_eq!(
        headers.map(|(name, value)| (name, value.into_owned())),
        [
            ("x-bulwark-user-id", support::USER_ID.to_owned()),
            ("x-bulwark-roles", "admin,auditor".to_owned())
        ]
    );
}

#[test]
fn basic_credentials_are_refused_on_bearer_routes() {
    let mut gateway = gateway();
    let access = gateway.authorize(&head("/v1/users/me", Some("Basic dXNlcjpwYXNz")), NOW);
    assert_eq!(access, Access::Denied(AuthError::NotBearer));
}

#[test]
fn invalid_jwks_keeps_the_previous_keys() {
    let mut gateway = gateway();
    assert!(gateway.install_jwks(b"{\"keys\": []}").is_err());
    let token = sign(&ed25519_a(), &claims());
    let authorization = format!("Bearer {token}");
    assert!(matches!(
        gateway.authorize(&head("/v1/users/me", Some(&authorization)), NOW),
        Access::Authenticated(_)
    ));
}

#[test]
fn unauthorized_reply_follows_rfc_6750_and_the_edge_contract() {
    let reply = unauthorized(&AuthError::Expired);
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\", error_description=\"the bearer token has expired\"")
    );
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(
        body,
        json!({"code": 16, "message": "the bearer token has expired"})
    );
}

#[test]
fn missing_token_reply_also_says_invalid_token() {
    let reply = unauthorized(&AuthError::MissingToken);
    let challenge = reply.header("www-authenticate").unwrap();
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\""),
        "{challenge}"
    );
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["code"], 16);
}

#[test]
fn unauthorized_reply_never_echoes_token_details() {
    let reply = unauthorized(&AuthError::UnknownKid(
        "attacker-controlled\"kid".to_owned(),
    ));
    let text = String::from_utf8(reply.body.clone()).unwrap();
    assert!(!text.contains("attacker-controlled"), "{text}");
    assert!(
        !reply
            .header("www-authenticate")
            .unwrap()
            .contains("attacker-controlled")
    );
}
