//! The built filter in a real Envoy: the prebuilt `bulwark_gateway_filter.wasm` is loaded
//! into Envoy 1.40 (V8) in front of a local server that serves the JWKS and echoes the
//! request headers it receives, and requests are checked end to end.
//!
//! Needs the wasm (`cargo build -p bulwark-gateway-filter --target wasm32-wasip1 --profile
//! wasm`) and Envoy (`BULWARK_ENVOY`, else `.bulwark/venv/bin/envoy`, else `PATH`). Either
//! missing fails the test with instructions; it never skips.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod client;
mod harness;
mod ratelimit_stub;
mod tokens;
mod upstream;

use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::client::{Response, get, request, request_raw};
use crate::harness::{Backends, Envoy, free_port};
use crate::tokens::TestKeys;
use crate::upstream::Upstream;

fn plugin_config(refetch_seconds: u64) -> Value {
    json!({
        "issuer": tokens::ISSUER,
        "audiences": [tokens::AUDIENCE],
        "jwks": {
            "cluster": "jwks",
            "path": "/jwks.json",
            "authority": "jwks.local",
            "refresh_interval_seconds": 300,
            "min_refetch_interval_seconds": refetch_seconds
        }
    })
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn echoed(response: &Response) -> Value {
    serde_json::from_str(&response.body)
        .unwrap_or_else(|e| panic!("upstream echo is not JSON ({e}): {}", response.body))
}

/// Waits until the filter has keys: a valid token passes once the first fetch is in.
fn wait_for_keys(envoy: &Envoy, token: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = request(
            envoy.port,
            "GET",
            "/direct/me",
            &[("authorization", &bearer(token))],
        );
        if r.status == 200 {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "a valid token was still refused after 15 s (last answer {r:?}); envoy log:\n{}",
                envoy.log_tail()
            );
        }
        sleep(Duration::from_millis(200));
    }
}

#[test]
fn filter_in_envoy_enforces_bearer_tokens() {
    let keys = TestKeys::load();
    let upstream = Upstream::start(keys.jwks(&[&keys.ed_a, &keys.rsa]));
    let envoy = Envoy::start(
        &plugin_config(1),
        Backends {
            upstream: upstream.port,
            ratelimit: free_port(),
        },
    );
    let valid = keys.ed_a.sign(&tokens::claims(0));
    wait_for_keys(&envoy, &valid);

    // No token: the RFC 6750 challenge and the contract's JSON body.
    let r = get(envoy.port, "/direct/me");
    assert_eq!(r.status, 401, "no token must answer 401: {r:?}");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\", error_description=\"a bearer token is required\""),
        "{r:?}"
    );
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&r.body).unwrap(),
        json!({"code": 16, "message": "a bearer token is required"})
    );

    // Valid tokens (EdDSA and RS256): identity headers reach upstream, forged ones do not.
    for token in [&valid, &keys.rsa.sign(&tokens::claims(0))] {
        let r = request(
            envoy.port,
            "GET",
            "/v1/users/me",
            &[
                ("authorization", &bearer(token)),
                ("x-bulwark-user-id", "forged-admin"),
                ("x-bulwark-roles", "admin"),
            ],
        );
        assert_eq!(r.status, 200, "valid token must pass: {r:?}");
        let seen = echoed(&r);
        assert_eq!(
            seen["headers"]["x-bulwark-user-id"],
            json!([tokens::USER_ID]),
            "upstream saw {seen}"
        );
        assert_eq!(
            seen["headers"]["x-bulwark-roles"],
            json!(["admin,auditor"]),
            "upstream saw {seen}"
        );
    }

    // Without client copies, the identity headers are added: upstream sees one value each.
    let r = request(
        envoy.port,
        "GET",
        "/v1/users/me",
        &[("authorization", &bearer(&valid))],
    );
    assert_eq!(r.status, 200, "valid token must pass: {r:?}");
    let seen = echoed(&r);
    assert_eq!(
        (
            &seen["headers"]["x-bulwark-user-id"],
            &seen["headers"]["x-bulwark-roles"]
        ),
        (&json!([tokens::USER_ID]), &json!(["admin,auditor"])),
        "upstream saw {seen}"
    );

    // Public route: passes without a token, and client identity headers are stripped.
    // (Envoy lowercases header names, so a client's capitals change nothing.)
    let r = request(
        envoy.port,
        "POST",
        "/v1/auth/login",
        &[
            ("x-bulwark-user-id", "forged-admin"),
            ("X-Bulwark-Roles", "admin"),
        ],
    );
    assert_eq!(
        r.status, 200,
        "public route must pass without a token: {r:?}"
    );
    let seen = echoed(&r);
    assert!(
        seen["headers"].get("x-bulwark-user-id").is_none()
            && seen["headers"].get("x-bulwark-roles").is_none(),
        "forged identity reached upstream: {seen}"
    );

    // Refused tokens.
    let expired = keys.ed_a.sign(&tokens::claims(-3600));
    let hs256 = keys.hs256_with_public_key(&keys.ed_a);
    for (name, token, message) in [
        ("expired", expired.as_str(), "the bearer token has expired"),
        (
            "HS256 keyed with the public key",
            hs256.as_str(),
            "algorithm that is not accepted",
        ),
        ("garbage", "not.a.jwt", "malformed"),
    ] {
        let r = request(
            envoy.port,
            "GET",
            "/v1/users/me",
            &[("authorization", &bearer(token))],
        );
        assert_eq!(r.status, 401, "{name} token must answer 401: {r:?}");
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.contains("error=\"invalid_token\"") && challenge.contains(message),
            "{name}: {challenge}"
        );
    }

    // A header value may hold any octet: bytes that are not UTF-8 in the token or the path
    // are refused like any bad token, and the VM survives them (the SDK's text getters
    // would panic on them, and a dead VM answers every later request 503).
    for (what, head) in [
        (
            "token",
            b"GET /v1/users/me HTTP/1.1\r\nhost: smoke.local\r\nconnection: close\r\nauthorization: Bearer \xff\xfe.\xc3(\r\n\r\n".as_slice(),
        ),
        (
            "bearer scheme",
            b"GET /v1/users/me HTTP/1.1\r\nhost: smoke.local\r\nconnection: close\r\nauthorization: \xbe\xefer x\r\n\r\n",
        ),
    ] {
        let r = request_raw(envoy.port, head);
        assert_eq!(r.status, 401, "non-UTF-8 {what} must answer 401: {r:?}");
    }
    let mut head = b"GET /v1/users/me?q=\xff HTTP/1.1\r\nhost: smoke.local\r\nconnection: close\r\nauthorization: ".to_vec();
    head.extend_from_slice(bearer(&valid).as_bytes());
    head.extend_from_slice(b"\r\n\r\n");
    let r = request_raw(envoy.port, &head);
    assert!(
        matches!(r.status, 200 | 400),
        "a non-UTF-8 query must pass or be refused by Envoy's codec, not break the filter: {r:?}"
    );
    let r = request(
        envoy.port,
        "GET",
        "/v1/users/me",
        &[("authorization", &bearer(&valid))],
    );
    assert_eq!(
        r.status,
        200,
        "the filter must keep serving after non-UTF-8 input: {r:?}\n{}",
        envoy.log_tail()
    );

    // Unknown kids refetch the JWKS at a bounded rate, not once per request.
    sleep(Duration::from_millis(1100));
    let fetches_before = upstream.jwks_fetches();
    for i in 0..5 {
        let token = keys
            .ed_b
            .sign_with_kid(&tokens::claims(0), &format!("made-up-{i}"));
        let r = request(
            envoy.port,
            "GET",
            "/v1/users/me",
            &[("authorization", &bearer(&token))],
        );
        assert_eq!(r.status, 401, "unknown kid must answer 401: {r:?}");
    }
    let extra = upstream.jwks_fetches() - fetches_before;
    assert!(
        extra <= 1,
        "5 unknown-kid requests within a second made {extra} JWKS fetches"
    );

    // Key rotation: a token from a key the JWKS gains later passes without waiting for the
    // periodic refresh (300 s here): the unknown kid triggers a refetch and the request is
    // resumed once the new key is in.
    let rotated = keys.ed_b.sign(&tokens::claims(0));
    upstream.set_jwks(keys.jwks(&[&keys.ed_a, &keys.rsa, &keys.ed_b]));
    sleep(Duration::from_millis(2100));
    let r = request(
        envoy.port,
        "GET",
        "/v1/users/me",
        &[("authorization", &bearer(&rotated))],
    );
    assert_eq!(
        r.status,
        200,
        "token of a rotated-in key must pass after a refetch: {r:?}\n{}",
        envoy.log_tail()
    );

    // Counters.
    let stats = get(envoy.admin_port, "/stats?filter=bulwark_gateway").body;
    let counter = |name: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("wasmcustom.bulwark_gateway.{name}: ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("counter {name} missing from stats:\n{stats}"))
    };
    assert!(counter("allowed") >= 4, "allowed counter too low:\n{stats}");
    assert!(
        counter("unauthenticated") >= 9,
        "unauthenticated counter too low:\n{stats}"
    );
}

#[test]
fn filter_in_envoy_applies_global_rate_limits() {
    let keys = TestKeys::load();
    let upstream = Upstream::start(keys.jwks(&[&keys.ed_a]));
    let ratelimit = ratelimit_stub::start();
    let mut config = plugin_config(1);
    config["rate_limit"] = json!({
        "cluster": "ratelimit",
        "domain": "bulwark",
        "timeout_ms": 1000,
        "client_ip_routes": [
            {"path": "/v1/auth/login", "failure_mode": "closed"},
            {"path": "/v1/users", "name": "broken-closed", "failure_mode": "closed"},
            {"path": "/v1/auth/refresh", "name": "broken-open", "failure_mode": "open"}
        ],
        "per_user": {"failure_mode": "open"}
    });
    let envoy = Envoy::start(
        &config,
        Backends {
            upstream: upstream.port,
            ratelimit,
        },
    );
    let token = keys.ed_a.sign(&tokens::claims(0));
    wait_for_keys(&envoy, &token);
    // wait_for_keys spent one or more of the user's hits; use a fresh user for the count.
    let mut fresh = tokens::claims(0);
    fresh["sub"] = json!("0192f0c4-7d4e-7b1a-9f00-0000000000a1");
    let token = keys.ed_a.sign(&fresh);

    // Per client IP on login: LIMIT allowed, then 429 with the contract's headers.
    for i in 1..=ratelimit_stub::LIMIT {
        let r = request(envoy.port, "POST", "/v1/auth/login", &[]);
        assert_eq!(r.status, 200, "login {i} is within the limit: {r:?}");
        assert_eq!(
            r.header("ratelimit-remaining"),
            Some((ratelimit_stub::LIMIT - i).to_string().as_str()),
            "{r:?}"
        );
    }
    let r = request(envoy.port, "POST", "/v1/auth/login", &[]);
    assert_eq!(r.status, 429, "login over the limit must answer 429: {r:?}");
    assert_eq!(r.header("retry-after"), Some("30"), "{r:?}");
    assert_eq!(r.header("ratelimit-limit"), Some("2"), "{r:?}");
    assert_eq!(r.header("ratelimit-remaining"), Some("0"), "{r:?}");
    assert_eq!(r.header("ratelimit-reset"), Some("30"), "{r:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&r.body).unwrap()["code"],
        8,
        "{r:?}"
    );

    // Per user on bearer routes.
    let authorization = bearer(&token);
    let r = request(
        envoy.port,
        "GET",
        "/v1/users/me",
        &[("authorization", &authorization)],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("ratelimit-remaining"), Some("1"), "{r:?}");
    request(
        envoy.port,
        "GET",
        "/v1/users/me",
        &[("authorization", &authorization)],
    );
    let r = request(
        envoy.port,
        "GET",
        "/v1/users/me",
        &[("authorization", &authorization)],
    );
    assert_eq!(
        r.status, 429,
        "third request of the user must be limited: {r:?}"
    );

    // Failure modes when the service errors: closed refuses (503), open lets through.
    let r = request(envoy.port, "POST", "/v1/users", &[]);
    assert_eq!(
        r.status, 503,
        "fail-closed route must answer 503 when the limiter fails: {r:?}"
    );
    let r = request(envoy.port, "POST", "/v1/auth/refresh", &[]);
    assert_eq!(
        r.status, 200,
        "fail-open route must pass when the limiter fails: {r:?}"
    );

    let stats = get(envoy.admin_port, "/stats?filter=bulwark_gateway").body;
    assert!(
        stats.contains("wasmcustom.bulwark_gateway.rate_limited: 2"),
        "rate_limited counter:\n{stats}"
    );
    assert!(
        stats.contains("wasmcustom.bulwark_gateway.callout_failures: 2"),
        "callout_failures counter:\n{stats}"
    );
}

#[test]
fn envoy_refuses_an_invalid_plugin_configuration_and_logs_why() {
    let upstream = Upstream::start(b"{\"keys\": []}".to_vec());
    let config = json!({"audiences": ["bulwark-api"], "jwks": {"cluster": ""}});
    let backends = Backends {
        upstream: upstream.port,
        ratelimit: free_port(),
    };
    let (status, log) = harness::run_to_exit(&config, backends, Duration::from_secs(30));
    assert!(
        !status.success(),
        "Envoy must not start with an invalid filter config; log:\n{log}"
    );
    assert!(
        log.contains("`issuer` is required") && log.contains("`jwks.cluster` must not be empty"),
        "Envoy's log must name each bad field; log:\n{log}"
    );
}

#[test]
fn filter_in_envoy_decides_on_the_path_whatever_the_method() {
    let keys = TestKeys::load();
    let upstream = Upstream::start(keys.jwks(&[&keys.ed_a]));
    let envoy = Envoy::start(
        &plugin_config(1),
        Backends {
            upstream: upstream.port,
            ratelimit: free_port(),
        },
    );
    wait_for_keys(&envoy, &keys.ed_a.sign(&tokens::claims(0)));
    // A public route is public with any method; a bearer route needs a token with any
    // method, OPTIONS included (no longer public on every path).
    for method in ["POST", "GET", "PUT", "PATCH", "OPTIONS", "DELETE"] {
        for path in ["/v1/auth/login", "/bulwark.auth.v1.AuthService/Login"] {
            let r = request(envoy.port, method, path, &[]);
            assert_eq!(r.status, 200, "{method} {path} is public: {r:?}");
        }
        for path in ["/v1/users/me", "/bulwark.identity.v1.IdentityService/GetMe"] {
            let r = request(envoy.port, method, path, &[]);
            assert_eq!(r.status, 401, "{method} {path} needs a token: {r:?}");
        }
    }
}

#[test]
fn token_endpoint_errors_become_rfc6749_answers_in_envoy() {
    let keys = TestKeys::load();
    let upstream = Upstream::start(keys.jwks(&[&keys.ed_a]));
    let envoy = Envoy::start(
        &plugin_config(1),
        Backends {
            upstream: upstream.port,
            ratelimit: free_port(),
        },
    );
    let r = request(
        envoy.port,
        "POST",
        "/v1/oauth2/token",
        &[
            ("x-stub-status", "401"),
            (
                "x-stub-message",
                "invalid_client: client authentication failed",
            ),
        ],
    );
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&r.body).unwrap_or_default(),
        json!({"error": "invalid_client", "error_description": "client authentication failed"}),
        "{r:?}"
    );
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"bulwark\""),
        "{r:?}"
    );
    assert_eq!(r.header("cache-control"), Some("no-store"), "{r:?}");

    let r = request(
        envoy.port,
        "POST",
        "/v1/oauth2/token",
        &[
            ("x-stub-status", "400"),
            (
                "x-stub-message",
                "unsupported_grant_type: only client_credentials is supported",
            ),
        ],
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&r.body).unwrap_or_default(),
        json!({"error": "unsupported_grant_type", "error_description": "only client_credentials is supported"}),
        "{r:?}"
    );
    assert_eq!(r.header("www-authenticate"), None, "{r:?}");
    assert_eq!(r.header("cache-control"), Some("no-store"), "{r:?}");

    // A success keeps its body and is not cached either.
    let r = request(envoy.port, "POST", "/v1/oauth2/token", &[]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("cache-control"), Some("no-store"), "{r:?}");
    assert!(r.body.contains("\"code\""), "{r:?}");

    // Any other route is left alone: the instance is enabled on the token route only.
    let r = request(envoy.port, "POST", "/v1/auth/login", &[]);
    assert_eq!(r.header("cache-control"), None, "{r:?}");
}
