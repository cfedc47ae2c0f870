//! GrantRole, RevokeRole and ListUserRoles (who may call it: see `internal`).

use bulwark_kernel::tonic::Code;
use bulwark_proto::authz::v1::{GrantRoleRequest, ListUserRolesRequest, RevokeRoleRequest};
use uuid::Uuid;

use crate::support::{TestAuthz, assert_status};

fn grant(user: &str, role: &str) -> GrantRoleRequest {
    GrantRoleRequest {
        user_id: user.to_owned(),
        role: role.to_owned(),
    }
}

fn revoke(user: Uuid, role: &str) -> RevokeRoleRequest {
    RevokeRoleRequest {
        user_id: user.to_string(),
        role: role.to_owned(),
    }
}

#[tokio::test]
async fn role_grant_takes_effect_on_the_next_check() {
    let authz = TestAuthz::start().await;
    let user = Uuid::new_v4();
    authz.create_role("auditor", &["audit:read"]).await;
    assert!(
        !authz.allowed(user, "audit:read").await,
        "allowed before the grant"
    );
    authz.grant(user, "auditor").await;
    assert!(
        authz.allowed(user, "audit:read").await,
        "the grant was not seen by the very next check (stale cache?)"
    );
    assert!(
        !authz.allowed(user, "audit:write").await,
        "grant leaks other actions"
    );
    authz.stop().await;
}

#[tokio::test]
async fn revoke_denies_at_once() {
    let authz = TestAuthz::start().await;
    let user = Uuid::new_v4();
    authz.create_role("auditor", &["audit:read"]).await;
    authz.grant(user, "auditor").await;
    assert!(
        authz.allowed(user, "audit:read").await,
        "grant not effective"
    );
    authz
        .client
        .clone()
        .revoke_role(authz.tokens.request(authz.admin, revoke(user, "auditor")))
        .await
        .unwrap_or_else(|s| panic!("revoke failed: {s:?}"));
    assert!(
        !authz.allowed(user, "audit:read").await,
        "still allowed right after the revoke"
    );
    // Revoking what is not held succeeds and changes nothing.
    authz
        .client
        .clone()
        .revoke_role(authz.tokens.request(authz.admin, revoke(user, "auditor")))
        .await
        .unwrap_or_else(|s| panic!("second revoke failed: {s:?}"));
    authz.stop().await;
}

#[tokio::test]
async fn grant_is_idempotent_and_checks_its_arguments() {
    let authz = TestAuthz::start().await;
    let user = Uuid::new_v4();
    authz.create_role("auditor", &["audit:read"]).await;
    authz.grant(user, "auditor").await;
    authz.grant(user, "auditor").await;
    let roles = authz
        .client
        .clone()
        .list_user_roles(authz.as_service(
            "identity",
            &["roles:read"],
            ListUserRolesRequest {
                user_id: user.to_string(),
            },
        ))
        .await
        .unwrap_or_else(|s| panic!("list failed: {s:?}"))
        .into_inner();
    assert_eq!(roles.roles, ["auditor"]);

    let mut client = authz.client.clone();
    let unknown = client
        .grant_role(
            authz
                .tokens
                .request(authz.admin, grant(&user.to_string(), "ghost")),
        )
        .await;
    assert_status(
        unknown,
        Code::NotFound,
        "role ghost does not exist",
        "unknown role",
    );
    let bad_user = client
        .grant_role(authz.tokens.request(authz.admin, grant("alice", "auditor")))
        .await;
    assert_status(
        bad_user,
        Code::InvalidArgument,
        "user_id: ",
        "non-UUID user",
    );
    let bad_role = client
        .grant_role(
            authz
                .tokens
                .request(authz.admin, grant(&user.to_string(), "Bad Role")),
        )
        .await;
    assert_status(bad_role, Code::InvalidArgument, "role: ", "malformed role");
    let denied = client
        .grant_role(
            authz
                .tokens
                .request(user, grant(&user.to_string(), "admin")),
        )
        .await;
    assert_status(
        denied,
        Code::PermissionDenied,
        "requires permission roles:write",
        "self-grant",
    );
    authz.stop().await;
}

#[tokio::test]
async fn admin_holds_any_permission() {
    let authz = TestAuthz::start().await;
    for permission in [
        "users:read",
        "roles:write",
        "audit:read",
        "anything:at-all",
        "x:*",
    ] {
        assert!(
            authz.allowed(authz.admin, permission).await,
            "admin lacks {permission}"
        );
    }
    let other = Uuid::new_v4();
    authz.grant(other, "admin").await;
    assert!(
        authz.allowed(other, "billing:refund").await,
        "a granted admin lacks a permission"
    );
    authz.stop().await;
}

#[tokio::test]
async fn revoking_the_last_admin_is_refused() {
    let authz = TestAuthz::start().await;
    let mut client = authz.client.clone();
    let last = client
        .revoke_role(
            authz
                .tokens
                .request(authz.admin, revoke(authz.admin, "admin")),
        )
        .await;
    assert_status(
        last,
        Code::FailedPrecondition,
        "cannot revoke admin",
        "last admin",
    );
    assert!(
        authz.allowed(authz.admin, "roles:write").await,
        "admin lost its role"
    );

    // With a second admin the first may go, and then the second is the last one.
    let second = Uuid::new_v4();
    authz.grant(second, "admin").await;
    client
        .revoke_role(authz.tokens.request(second, revoke(authz.admin, "admin")))
        .await
        .unwrap_or_else(|s| panic!("revoking one of two admins failed: {s:?}"));
    assert!(
        !authz.allowed(authz.admin, "roles:write").await,
        "revoked admin still allowed"
    );
    let last = client
        .revoke_role(authz.tokens.request(second, revoke(second, "admin")))
        .await;
    assert_status(
        last,
        Code::FailedPrecondition,
        "cannot revoke admin",
        "new last admin",
    );
    authz.stop().await;
}

#[tokio::test]
async fn concurrent_revokes_never_remove_every_admin() {
    let authz = TestAuthz::start().await;
    let second = Uuid::new_v4();
    authz.grant(second, "admin").await;
    let (mut a, mut b) = (authz.client.clone(), authz.client.clone());
    let (first, other) = tokio::join!(
        a.revoke_role(
            authz
                .tokens
                .request(authz.admin, revoke(authz.admin, "admin"))
        ),
        b.revoke_role(authz.tokens.request(authz.admin, revoke(second, "admin"))),
    );
    let succeeded = [first.is_ok(), other.is_ok()]
        .iter()
        .filter(|ok| **ok)
        .count();
    assert_eq!(
        succeeded, 1,
        "exactly one of two racing revokes must win: {first:?} {other:?}"
    );
    authz.stop().await;
}

#[tokio::test]
async fn list_user_roles_gives_roles_and_the_union_of_their_permissions() {
    let authz = TestAuthz::start().await;
    let user = Uuid::new_v4();
    authz
        .create_role("reader", &["users:read", "audit:read"])
        .await;
    authz
        .create_role("writer", &["users:write", "users:read"])
        .await;
    authz.grant(user, "writer").await;
    authz.grant(user, "reader").await;
    let mut client = authz.client.clone();
    let listed = client
        .list_user_roles(authz.as_service(
            "identity",
            &["roles:read"],
            ListUserRolesRequest {
                user_id: user.to_string(),
            },
        ))
        .await
        .unwrap_or_else(|s| panic!("list failed: {s:?}"))
        .into_inner();
    assert_eq!(listed.roles, ["reader", "writer"]);
    assert_eq!(
        listed.permissions,
        ["audit:read", "users:read", "users:write"]
    );

    let nobody = client
        .list_user_roles(authz.as_service(
            "identity",
            &["roles:read"],
            ListUserRolesRequest {
                user_id: Uuid::new_v4().to_string(),
            },
        ))
        .await
        .unwrap_or_else(|s| panic!("list of a user without roles failed: {s:?}"))
        .into_inner();
    assert!(nobody.roles.is_empty() && nobody.permissions.is_empty());

    authz.stop().await;
}
