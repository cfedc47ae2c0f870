//! The internal RPCs, ListUserRoles and ResolveRoles: only a service account whose token
//! carries `roles:read` may call them, whatever headers a call brings and whatever roles
//! a person holds; and what ResolveRoles answers.

use bulwark_kernel::tonic::{Code, Request};
use bulwark_proto::authz::v1::{ListUserRolesRequest, ResolveRolesRequest};
use uuid::Uuid;

use crate::support::{TestAuthz, assert_status, with_edge_headers};

const SERVICE_ONLY: &str = "requires a service account with permission roles:read";
const UNAUTHENTICATED: &str = "missing or invalid bearer token";

/// Every caller an internal RPC at `path` must refuse, with the code and message
/// each gets: no token, no token but every edge and identity header, the bootstrap
/// admin's token (Authz allows it everything), the token of `reader` (a user granted
/// `roles:read`), and a service token lacking `roles:read`.
fn refused_callers<T>(
    authz: &TestAuthz,
    path: &str,
    reader: Uuid,
    message: impl Fn() -> T,
) -> [(&'static str, Request<T>, Code, &'static str); 5] {
    [
        (
            "no token",
            Request::new(message()),
            Code::Unauthenticated,
            UNAUTHENTICATED,
        ),
        (
            "no token, every edge and identity header",
            with_edge_headers(Request::new(message()), path, authz.admin),
            Code::Unauthenticated,
            UNAUTHENTICATED,
        ),
        (
            "the admin's token",
            authz.tokens.request(authz.admin, message()),
            Code::PermissionDenied,
            SERVICE_ONLY,
        ),
        (
            "the token of a user granted roles:read",
            authz.tokens.request(reader, message()),
            Code::PermissionDenied,
            SERVICE_ONLY,
        ),
        (
            "a service token without roles:read",
            authz.as_service("authz", &["audit:append", "roles:write"], message()),
            Code::PermissionDenied,
            SERVICE_ONLY,
        ),
    ]
}

/// A user who holds `roles:read` through a role, as Authz sees it.
async fn role_reader(authz: &TestAuthz) -> Uuid {
    let reader = Uuid::new_v4();
    authz.create_role("role-reader", &["roles:read"]).await;
    authz.grant(reader, "role-reader").await;
    assert!(
        authz.allowed(reader, "roles:read").await,
        "the reader's grant did not take"
    );
    reader
}

#[tokio::test]
async fn list_user_roles_requires_a_service_token_with_roles_read() {
    let authz = TestAuthz::start().await;
    let reader = role_reader(&authz).await;
    let mut client = authz.client.clone();
    let about_reader = || ListUserRolesRequest {
        user_id: reader.to_string(),
    };

    let path = "/bulwark.authz.v1.AuthzService/ListUserRoles";
    for (what, request, code, message) in refused_callers(&authz, path, reader, about_reader) {
        assert_status(client.list_user_roles(request).await, code, message, what);
    }

    let listed = client
        .list_user_roles(authz.as_service("identity", &["roles:read"], about_reader()))
        .await
        .unwrap_or_else(|s| panic!("a service token with roles:read: {s:?}"))
        .into_inner();
    assert_eq!(listed.roles, ["role-reader"]);
    assert_eq!(listed.permissions, ["roles:read"]);
    authz.stop().await;
}

#[tokio::test]
async fn resolve_roles_requires_a_service_token_with_roles_read() {
    let authz = TestAuthz::start().await;
    let reader = role_reader(&authz).await;
    let mut client = authz.client.clone();
    let resolve = || ResolveRolesRequest {
        roles: vec!["role-reader".to_owned()],
    };

    let path = "/bulwark.authz.v1.AuthzService/ResolveRoles";
    for (what, request, code, message) in refused_callers(&authz, path, reader, resolve) {
        assert_status(client.resolve_roles(request).await, code, message, what);
    }

    let resolved = client
        .resolve_roles(authz.as_service("auth", &["roles:read"], resolve()))
        .await
        .unwrap_or_else(|s| panic!("a service token with roles:read: {s:?}"))
        .into_inner();
    assert_eq!(resolved.permissions, ["roles:read"]);
    assert!(resolved.unknown.is_empty(), "{:?}", resolved.unknown);
    authz.stop().await;
}

#[tokio::test]
async fn resolve_roles_gives_the_union_of_known_roles_and_names_the_unknown() {
    let authz = TestAuthz::start().await;
    authz
        .create_role("writer", &["users:write", "users:read"])
        .await;
    authz
        .create_role("reader", &["users:read", "audit:read"])
        .await;
    let resolved = authz
        .client
        .clone()
        .resolve_roles(
            authz.as_service(
                "auth",
                &["roles:read"],
                ResolveRolesRequest {
                    roles: ["ghost", "writer", "reader", "phantom"]
                        .map(str::to_owned)
                        .to_vec(),
                },
            ),
        )
        .await
        .unwrap_or_else(|s| panic!("resolving roles: {s:?}"))
        .into_inner();
    assert_eq!(
        resolved.permissions,
        ["audit:read", "users:read", "users:write"],
        "the union, sorted, without duplicates"
    );
    assert_eq!(resolved.unknown, ["ghost", "phantom"]);
    authz.stop().await;
}

#[tokio::test]
async fn resolve_roles_refuses_more_than_twenty_roles_and_malformed_names() {
    let authz = TestAuthz::start().await;
    let mut client = authz.client.clone();
    let resolve = |roles: Vec<String>| {
        authz.as_service("auth", &["roles:read"], ResolveRolesRequest { roles })
    };
    let named = |n: usize| (0..n).map(|i| format!("role{i}")).collect::<Vec<_>>();

    // Twenty is the limit, not beyond it.
    let twenty = client
        .resolve_roles(resolve(named(20)))
        .await
        .unwrap_or_else(|s| panic!("twenty roles: {s:?}"))
        .into_inner();
    assert_eq!(twenty.unknown.len(), 20, "{:?}", twenty.unknown);
    assert_status(
        client.resolve_roles(resolve(named(21))).await,
        Code::InvalidArgument,
        "roles: must name at most 20 roles",
        "21 roles",
    );

    for (roles, field) in [
        (
            vec!["reader".to_owned(), "Bad Role".to_owned()],
            "roles[1]: ",
        ),
        (vec![String::new()], "roles[0]: "),
        (vec!["9lives".to_owned()], "roles[0]: "),
    ] {
        let what = format!("{roles:?}");
        assert_status(
            client.resolve_roles(resolve(roles)).await,
            Code::InvalidArgument,
            field,
            &what,
        );
    }
    authz.stop().await;
}
