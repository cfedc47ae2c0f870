//! CreateRole: validation, uniqueness, who may create roles.

use bulwark_kernel::tonic::{Code, Request};
use bulwark_proto::authz::v1::CreateRoleRequest;
use uuid::Uuid;

use crate::support::{TestAuthz, assert_status};

fn create(name: &str, permissions: &[&str]) -> CreateRoleRequest {
    CreateRoleRequest {
        name: name.to_owned(),
        permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
    }
}

#[tokio::test]
async fn create_role_returns_the_role_without_duplicate_permissions() {
    let authz = TestAuthz::start().await;
    let role = authz
        .client
        .clone()
        .create_role(authz.tokens.request(
            authz.admin,
            create("auditor", &["audit:read", "users:read", "audit:read"]),
        ))
        .await
        .unwrap_or_else(|s| panic!("admin could not create a role: {s:?}"))
        .into_inner();
    assert_eq!(role.name, "auditor");
    assert_eq!(
        role.permissions,
        ["audit:read", "users:read"],
        "duplicates kept"
    );
    assert!(role.created_at.is_some(), "created_at missing");
    authz.stop().await;
}

#[tokio::test]
async fn duplicate_role_name_is_already_exists() {
    let authz = TestAuthz::start().await;
    authz.create_role("auditor", &["audit:read"]).await;
    let again = authz
        .client
        .clone()
        .create_role(
            authz
                .tokens
                .request(authz.admin, create("auditor", &["users:read"])),
        )
        .await;
    assert_status(again, Code::AlreadyExists, "role auditor", "second create");
    let admin = authz
        .client
        .clone()
        .create_role(
            authz
                .tokens
                .request(authz.admin, create("admin", &["users:read"])),
        )
        .await;
    assert_status(admin, Code::AlreadyExists, "role admin", "recreating admin");
    authz.stop().await;
}

#[tokio::test]
async fn invalid_names_and_permissions_are_refused_naming_the_field() {
    let authz = TestAuthz::start().await;
    let many: Vec<String> = (0..101).map(|i| format!("r{i}:read")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let cases: [(&str, &[&str], &str); 10] = [
        ("", &["a:b"], "name: "),
        ("Auditor", &["a:b"], "name: "),
        ("9lives", &["a:b"], "name: "),
        ("has space", &["a:b"], "name: "),
        ("auditor", &[], "permissions: "),
        ("auditor", &many, "permissions: "),
        ("auditor", &["audit:read", "audit"], "permissions[1]: "),
        ("auditor", &["Audit:read"], "permissions[0]: "),
        ("auditor", &["audit:read:x"], "permissions[0]: "),
        ("auditor", &[":read"], "permissions[0]: "),
    ];
    for (name, permissions, field) in cases {
        let result = authz
            .client
            .clone()
            .create_role(authz.tokens.request(authz.admin, create(name, permissions)))
            .await;
        assert_status(
            result,
            Code::InvalidArgument,
            field,
            &format!("name {name:?}, permissions {permissions:?}"),
        );
    }
    let creates: Vec<_> = authz
        .outbox_actions()
        .await
        .into_iter()
        .filter(|(action, ..)| action == "role.create")
        .map(|(_, _, target)| target)
        .collect();
    assert_eq!(creates, ["role:admin"], "a refused create left an event");
    authz.stop().await;
}

#[tokio::test]
async fn create_role_without_roles_write_is_denied_and_audited() {
    let authz = TestAuthz::start().await;
    let nobody = Uuid::new_v4();
    let result = authz
        .client
        .clone()
        .create_role(authz.tokens.request(nobody, create("sneaky", &["*:*"])))
        .await;
    assert_status(
        result,
        Code::PermissionDenied,
        "requires permission roles:write",
        "create",
    );
    let denied = (
        "role.create".to_owned(),
        nobody.to_string(),
        "role:sneaky".to_owned(),
    );
    assert!(
        authz.outbox_actions().await.contains(&denied),
        "the refusal was not audited: {:?}",
        authz.outbox_actions().await
    );
    authz.stop().await;
}

#[tokio::test]
async fn create_role_without_a_valid_token_is_unauthenticated() {
    let authz = TestAuthz::start().await;
    let result = authz
        .client
        .clone()
        .create_role(Request::new(create("x", &["a:b"])))
        .await;
    assert_status(
        result,
        Code::Unauthenticated,
        "missing or invalid bearer token",
        "no token",
    );
    let mut request = Request::new(create("x", &["a:b"]));
    request.metadata_mut().insert(
        "authorization",
        "Bearer not.a.jwt".parse().unwrap_or_else(|_| panic!()),
    );
    let result = authz.client.clone().create_role(request).await;
    assert_status(
        result,
        Code::Unauthenticated,
        "missing or invalid bearer token",
        "garbage",
    );
    authz.stop().await;
}
