//! Login: the token pair, its claims, and one answer for every wrong credential.

use bulwark_kernel::tonic::Code;

use crate::support::{PASSWORD, TestApp, assert_code, claims, failure, kid};

#[tokio::test]
async fn login_issues_a_token_that_verifies_against_the_jwks() {
    let app = TestApp::start().await;
    let user = app.user("alice@example.com");
    app.authz.grant_role(user.id, "auditor");

    let pair = app.logged_in(&user).await;

    assert_eq!(pair.token_type, "Bearer");
    assert_eq!(pair.expires_in, 900, "default access token lifetime");
    assert!(!pair.refresh_token.is_empty(), "no refresh token");
    let caller = app.verify(&pair.access_token).await;
    assert_eq!(caller.user_id(), Some(user.id), "sub is not the user id");
    assert_eq!(caller.roles, vec!["auditor".to_owned()], "roles from Authz");

    let claims = claims(&pair.access_token);
    let tokens = &app.kernel.config().tokens;
    assert_eq!(claims["iss"], tokens.issuer.as_str());
    assert_eq!(claims["aud"], tokens.audience.as_str());
    assert_eq!(claims["sub"], user.id.to_string());
    let (iat, nbf, exp) = (
        claims["iat"].as_i64().unwrap_or_default(),
        claims["nbf"].as_i64().unwrap_or_default(),
        claims["exp"].as_i64().unwrap_or_default(),
    );
    let now = chrono::Utc::now().timestamp();
    assert!((now - iat).abs() <= 5, "iat {iat} is not now ({now})");
    assert_eq!(nbf, iat, "nbf");
    assert_eq!(exp - iat, 900, "exp - iat");
    let jti = claims["jti"].as_str().unwrap_or_default();
    assert_eq!(
        uuid::Uuid::parse_str(jti)
            .map(|id| id.get_version_num())
            .ok(),
        Some(4),
        "jti {jti} is not a UUIDv4"
    );

    let header = jsonwebtoken::decode_header(&pair.access_token)
        .unwrap_or_else(|e| panic!("bad header: {e}"));
    assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
    let jwks = app.jwks().await;
    assert!(
        jwks.keys.iter().any(|k| k.kid == kid(&pair.access_token)),
        "the token's kid is not in the JWKS"
    );
    app.stop().await;
}

#[tokio::test]
async fn each_login_gets_distinct_tokens() {
    let app = TestApp::start().await;
    let user = app.user("alice@example.com");
    let first = app.logged_in(&user).await;
    let second = app.logged_in(&user).await;
    assert_ne!(first.refresh_token, second.refresh_token);
    assert_ne!(
        claims(&first.access_token)["jti"],
        claims(&second.access_token)["jti"]
    );
    app.stop().await;
}

#[tokio::test]
async fn wrong_password_and_unknown_email_get_the_same_answer() {
    let app = TestApp::start().await;
    let user = app.user("alice@example.com");

    let wrong_password = failure(
        app.login(&user.email, "not the password at all").await,
        "login with a wrong password",
    );
    let unknown_email = failure(
        app.login("nobody@example.com", PASSWORD).await,
        "login with an unknown email",
    );

    assert_code(&wrong_password, Code::Unauthenticated, "wrong password");
    assert_eq!(wrong_password.code(), unknown_email.code());
    assert_eq!(wrong_password.message(), unknown_email.message());
    assert_eq!(wrong_password.message(), "invalid email or password");
    app.stop().await;
}

#[tokio::test]
async fn inactive_account_gets_the_same_answer_as_a_wrong_password() {
    let app = TestApp::start().await;
    let user = app.user("alice@example.com");
    app.identity.deactivate(user.id);

    let status = failure(
        app.login(&user.email, PASSWORD).await,
        "login of an inactive user",
    );

    assert_code(&status, Code::Unauthenticated, "inactive user");
    assert_eq!(status.message(), "invalid email or password");
    app.stop().await;
}

#[tokio::test]
async fn login_input_sizes_are_validated_naming_the_field() {
    let app = TestApp::start().await;
    let long_email = format!("{}@example.com", "a".repeat(250));
    let long_password = "p".repeat(129);
    for (email, password, expected) in [
        ("", PASSWORD, "email: is required"),
        (
            long_email.as_str(),
            PASSWORD,
            "email: must be at most 254 bytes",
        ),
        ("alice@example.com", "", "password: is required"),
        (
            "alice@example.com",
            long_password.as_str(),
            "password: must be at most 128 characters",
        ),
    ] {
        let status = failure(app.login(email, password).await, expected);
        assert_code(&status, Code::InvalidArgument, expected);
        assert_eq!(status.message(), expected);
    }
    app.stop().await;
}

#[tokio::test]
async fn login_without_authz_issues_a_token_without_roles() {
    let app = TestApp::start().await;
    let user = app.user("alice@example.com");
    app.authz.grant_role(user.id, "admin");
    app.authz.set_down(true);

    let pair = app.logged_in(&user).await;

    let caller = app.verify(&pair.access_token).await;
    assert!(
        caller.roles.is_empty(),
        "roles despite Authz being down: {:?}",
        caller.roles
    );
    app.stop().await;
}

#[tokio::test]
async fn login_while_identity_is_down_is_unavailable() {
    let app = TestApp::start().await;
    let user = app.user("alice@example.com");
    app.identity.set_down(true);

    let status = failure(
        app.login(&user.email, PASSWORD).await,
        "login without Identity",
    );

    assert_code(&status, Code::Unavailable, "Identity down");
    assert!(
        !status.message().contains("refused"),
        "upstream detail leaked: {}",
        status.message()
    );
    app.stop().await;
}

#[tokio::test]
async fn access_token_lifetime_follows_configuration() {
    let app = TestApp::start_with(&[("auth.access_token_ttl_seconds", 60.into())]).await;
    let user = app.user("alice@example.com");

    let pair = app.logged_in(&user).await;

    assert_eq!(pair.expires_in, 60);
    let claims = claims(&pair.access_token);
    assert_eq!(
        claims["exp"].as_i64().unwrap_or_default() - claims["iat"].as_i64().unwrap_or_default(),
        60
    );
    app.stop().await;
}
