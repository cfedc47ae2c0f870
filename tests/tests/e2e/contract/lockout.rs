//! Account lockout through the real edge: five failed logins for one email, each from
//! another client address, lock it (429 with `Retry-After`, even with the right
//! password), for a known and an unknown email alike, with one audit event each.

use std::net::{IpAddr, Ipv4Addr};

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::client::{Edge, PASSWORD, exactly, start_mesh};

/// A client whose connections come from `127.0.0.<n>` (every 127/8 address is this
/// machine's loopback), so the edge sees another client address.
fn client_from(n: u8) -> reqwest::Client {
    bulwark_e2e::http_client()
        .no_proxy()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)))
        .build()
        .expect("building an HTTP client")
}

/// `POST /v1/auth/login` from `127.0.0.<from>`; the status, `Retry-After` and body.
async fn login_from(
    edge_url: &str,
    from: u8,
    email: &str,
    password: &str,
) -> (StatusCode, Option<u64>, Value) {
    let response = client_from(from)
        .post(format!("{edge_url}/v1/auth/login"))
        .header("content-type", "application/json")
        .body(json!({"email": email, "password": password}).to_string())
        .send()
        .await
        .unwrap_or_else(|err| panic!("login from 127.0.0.{from}: {err}"));
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, retry_after, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_failures_from_five_addresses_lock_known_and_unknown_emails_alike() {
    let mesh = start_mesh().await;
    let edge = Edge::new(&mesh);
    let known = "lockout-known@example.com";
    edge.register(known, "Locked Out").await;
    let base = mesh.edge_url("");
    let base = base.trim_end_matches('/');

    for email in [known, "lockout-nobody@example.com"] {
        for from in 2..=6 {
            let (status, _, body) = login_from(base, from, email, "a wrong password!").await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{email} from .{from}: {body}"
            );
        }
        let (status, retry_after, body) = login_from(base, 7, email, PASSWORD).await;
        assert_eq!(
            status,
            StatusCode::TOO_MANY_REQUESTS,
            "{email}: the right password while locked: {body}"
        );
        assert_eq!(body["code"], 8, "RESOURCE_EXHAUSTED: {body}");
        let retry_after = retry_after.unwrap_or_else(|| panic!("{email}: no Retry-After"));
        assert!(
            (1..=60).contains(&retry_after),
            "{email}: Retry-After {retry_after}"
        );
    }

    let admin = mesh.admin().access.clone();
    edge.await_audit(
        &admin,
        &[("action", "auth.account_lock")],
        "one account_lock event per locked email",
        |events| exactly(events, &[("action", "auth.account_lock")], 2),
    )
    .await;
}
