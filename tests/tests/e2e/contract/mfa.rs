//! TOTP MFA through the real edge: enrol, confirm with a code computed here, log in in
//! two steps, the same code refused twice, a recovery code once, disable; and each audit
//! event once.

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::client::{Edge, PASSWORD, Tokens, exactly, start_mesh};

/// The shared secret of the enrolment's answer (base32).
fn secret_of(base32: &str) -> Vec<u8> {
    data_encoding::BASE32_NOPAD
        .decode(base32.as_bytes())
        .unwrap_or_else(|e| panic!("secret {base32:?} is not base32: {e}"))
}

/// The code of the step `offset` steps from now, computed here as RFC 6238 says
/// (HMAC-SHA1, 30 s steps, 6 digits), as an authenticator app would.
fn code(secret: &[u8], offset: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs();
    let step = (now / 30).checked_add_signed(offset).expect("a valid step");
    let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(secret).expect("any key length");
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[19] & 0x0f);
    let binary = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    format!("{:06}", binary % 1_000_000)
}

/// The password step; it must ask for the second factor.
async fn mfa_token(edge: &Edge<'_>, email: &str) -> String {
    let body = edge
        .post(
            "/v1/auth/login",
            json!({"email": email, "password": PASSWORD}),
        )
        .send()
        .await
        .ok();
    assert_eq!(body["mfa_required"], true, "{body}");
    assert!(body.get("access_token").is_none(), "no pair yet: {body}");
    body["mfa_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no mfa_token: {body}"))
        .to_owned()
}

async fn second_step(edge: &Edge<'_>, token: &str, code: &str) -> (StatusCode, Value) {
    let reply = edge
        .post(
            "/v1/auth/login/mfa",
            json!({"mfa_token": token, "code": code}),
        )
        .send()
        .await;
    let status = reply.status;
    (status, reply.json())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totp_enrolment_two_step_login_single_use_codes_and_disable() {
    let mesh = start_mesh().await;
    let edge = Edge::new(&mesh);
    let email = "mfa-e2e@example.com";
    edge.register(email, "Two Factors").await;
    let tokens = edge.login(email, PASSWORD).await;

    let enrolled = edge
        .post("/v1/auth/mfa/totp", json!({}))
        .bearer(&tokens.access)
        .send()
        .await
        .ok();
    let secret = secret_of(enrolled["secret"].as_str().unwrap_or_default());
    let uri = enrolled["otpauth_uri"].as_str().unwrap_or_default();
    assert!(
        uri.starts_with("otpauth://totp/Bulwark:mfa-e2e%40example.com?"),
        "{uri}"
    );
    let confirmed = edge
        .post(
            "/v1/auth/mfa/totp/confirm",
            json!({"code": code(&secret, 0)}),
        )
        .bearer(&tokens.access)
        .send()
        .await
        .ok();
    let recovery: Vec<String> = confirmed["recovery_codes"]
        .as_array()
        .map(|codes| {
            codes
                .iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(recovery.len(), 10, "{confirmed}");
    let me = edge
        .get("/v1/users/me")
        .bearer(&tokens.access)
        .send()
        .await
        .ok();
    assert_eq!(me["mfa_enabled"], true, "{me}");

    // Two steps; the code is good once.
    let token = mfa_token(&edge, email).await;
    let (status, body) = second_step(&edge, &token, &code(&secret, 1)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let pair = Tokens::from_body(body, "the second step");
    let reply = edge.get("/v1/users/me").bearer(&pair.access).send().await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let again = mfa_token(&edge, email).await;
    let (status, body) = second_step(&edge, &again, &code(&secret, 1)).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the same code twice: {body}"
    );

    // A recovery code, once.
    let (status, body) = second_step(&edge, &again, &recovery[0]).await;
    assert_eq!(status, StatusCode::OK, "a recovery code: {body}");
    let third = mfa_token(&edge, email).await;
    let (status, body) = second_step(&edge, &third, &recovery[0]).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a recovery code twice: {body}"
    );

    edge.post("/v1/auth/mfa/totp/disable", json!({"code": recovery[1]}))
        .bearer(&tokens.access)
        .send()
        .await
        .ok();
    let plain = edge.login(email, PASSWORD).await;
    let me = edge
        .get("/v1/users/me")
        .bearer(&plain.access)
        .send()
        .await
        .ok();
    assert_eq!(me["mfa_enabled"], false, "{me}");

    let admin = mesh.admin().access.clone();
    for (action, count) in [("auth.mfa_enable", 1), ("auth.mfa_disable", 1)] {
        edge.await_audit(&admin, &[("action", action)], action, |events| {
            exactly(events, &[("action", action)], count)
        })
        .await;
    }
    edge.await_audit(
        &admin,
        &[("action", "auth.mfa_login")],
        "two MFA logins passed and two refused",
        |events| {
            exactly(events, &[("outcome", "OUTCOME_SUCCESS")], 2)?;
            exactly(events, &[("outcome", "OUTCOME_FAILURE")], 2)
        },
    )
    .await;
}
