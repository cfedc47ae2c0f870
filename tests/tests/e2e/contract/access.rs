//! Reading users, permission checks, and role administration.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::client::{Edge, PASSWORD, start_mesh};

/// `POST /v1/authz/check` as `access`; the answer must hold `allowed` as a boolean,
/// `false` included.
async fn allowed(edge: &Edge<'_>, access: &str, subject: &str, permission: &str) -> bool {
    let answer = edge
        .post(
            "/v1/authz/check",
            json!({"subject": subject, "permission": permission}),
        )
        .bearer(access)
        .send()
        .await
        .ok();
    answer["allowed"].as_bool().unwrap_or_else(|| {
        panic!("check of {permission} for {subject}: `allowed` is not a JSON boolean in {answer}")
    })
}

fn id_of(user: &Value) -> String {
    user["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {user}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_administration_needs_roles_write() {
    let mesh = start_mesh().await;
    let edge = Edge::new(&mesh);
    let mallory = id_of(&edge.register("mallory@example.com", "Mallory").await);
    let user = edge.login("mallory@example.com", PASSWORD).await;
    let admin = mesh.admin();

    // A user without roles:write can neither create roles nor grant any, not even to
    // itself; it holds nothing, and `allowed: false` is spelt out.
    edge.post(
        "/v1/authz/roles",
        json!({"name": "escalate", "permissions": ["*:*"]}),
    )
    .bearer(&user.access)
    .send()
    .await
    .error(StatusCode::FORBIDDEN, 7);
    edge.post(
        &format!("/v1/authz/users/{mallory}/roles"),
        json!({"role": "admin"}),
    )
    .bearer(&user.access)
    .send()
    .await
    .error(StatusCode::FORBIDDEN, 7);
    assert!(
        !allowed(&edge, &user.access, &mallory, "roles:write").await,
        "a refused self-grant of admin left the user with roles:write"
    );

    // The admin can: the role comes back as created.
    let role = edge
        .post(
            "/v1/authz/roles",
            json!({"name": "auditor", "permissions": ["audit:read"]}),
        )
        .bearer(&admin.access)
        .send()
        .await
        .ok();
    assert_eq!(role["name"], "auditor", "created role: {role}");
    assert_eq!(
        role["permissions"],
        json!(["audit:read"]),
        "created role: {role}"
    );
    edge.post(
        "/v1/authz/roles",
        json!({"name": "auditor", "permissions": ["users:read"]}),
    )
    .bearer(&admin.access)
    .send()
    .await
    .error(StatusCode::CONFLICT, 6);

    let granted = edge
        .post(
            &format!("/v1/authz/users/{mallory}/roles"),
            json!({"role": "auditor"}),
        )
        .bearer(&admin.access)
        .send()
        .await
        .ok();
    assert_eq!(
        granted,
        json!({}),
        "a grant answered {granted}, expected {{}}"
    );
    edge.post(
        &format!("/v1/authz/users/{mallory}/roles"),
        json!({"role": "no-such-role"}),
    )
    .bearer(&admin.access)
    .send()
    .await
    .error(StatusCode::NOT_FOUND, 5);

    assert!(
        allowed(&edge, &user.access, &mallory, "audit:read").await,
        "the granted role's permission is not allowed"
    );
    assert!(
        !allowed(&edge, &user.access, &mallory, "roles:write").await,
        "a role with audit:read grants roles:write"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_grant_takes_effect_at_once() {
    let mesh = start_mesh().await;
    let edge = Edge::new(&mesh);
    let alice = edge.register("alice@example.com", "Alice").await;
    let bob = edge.register("bob@example.com", "Bob").await;
    let (alice_id, bob_id) = (id_of(&alice), id_of(&bob));
    let tokens = edge.login("alice@example.com", PASSWORD).await;
    let admin = mesh.admin();

    // The caller itself, by /me and by id.
    let me = edge
        .get("/v1/users/me")
        .bearer(&tokens.access)
        .send()
        .await
        .ok();
    assert_eq!(
        me, alice,
        "GET /v1/users/me differs from the registration answer"
    );
    let itself = edge
        .get(&format!("/v1/users/{alice_id}"))
        .bearer(&tokens.access)
        .send()
        .await
        .ok();
    assert_eq!(itself, alice, "GET /v1/users/<own id>");

    // Someone else: not without users:read.
    edge.get(&format!("/v1/users/{bob_id}"))
        .bearer(&tokens.access)
        .send()
        .await
        .error(StatusCode::FORBIDDEN, 7);
    assert!(
        !allowed(&edge, &tokens.access, &alice_id, "users:read").await,
        "alice holds users:read before any grant"
    );

    let role = edge
        .post(
            "/v1/authz/roles",
            json!({"name": "user-reader", "permissions": ["users:read"]}),
        )
        .bearer(&admin.access)
        .send()
        .await
        .ok();
    assert_eq!(role["name"], "user-reader", "created role: {role}");
    let granted = edge
        .post(
            &format!("/v1/authz/users/{alice_id}/roles"),
            json!({"role": "user-reader"}),
        )
        .bearer(&admin.access)
        .send()
        .await
        .ok();
    assert_eq!(
        granted,
        json!({}),
        "a grant answered {granted}, expected {{}}"
    );

    // The very next call, with the same token, is allowed.
    let other = edge
        .get(&format!("/v1/users/{bob_id}"))
        .bearer(&tokens.access)
        .send()
        .await;
    assert_eq!(
        other.status,
        StatusCode::OK,
        "the call right after the grant was refused (the grant must not wait for a new token or a cache): {}",
        other.text
    );
    assert_eq!(other.ok(), bob, "GET /v1/users/<bob> after the grant");
    assert!(
        allowed(&edge, &tokens.access, &alice_id, "users:read").await,
        "check does not report the granted users:read"
    );

    // With the permission, an unknown id is a 404.
    edge.get("/v1/users/0190d2c4-0000-7000-8000-000000000000")
        .bearer(&tokens.access)
        .send()
        .await
        .error(StatusCode::NOT_FOUND, 5);
}
