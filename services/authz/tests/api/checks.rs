//! Check: always with a token; who may ask about whom (users and service accounts),
//! and argument validation.

use bulwark_kernel::tonic::{Code, Request};
use bulwark_proto::authz::v1::CheckRequest;
use uuid::Uuid;

use crate::support::{TestAuthz, assert_status, with_edge_headers};

const CHECK_PATH: &str = "/bulwark.authz.v1.AuthzService/Check";

fn check(subject: &str, permission: &str) -> CheckRequest {
    CheckRequest {
        subject: subject.to_owned(),
        permission: permission.to_owned(),
    }
}

#[tokio::test]
async fn checking_another_subject_needs_roles_read() {
    let authz = TestAuthz::start().await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    authz.create_role("auditor", &["audit:read"]).await;
    authz.grant(bob, "auditor").await;
    let mut client = authz.client.clone();

    let about_bob = client
        .check(
            authz
                .tokens
                .request(alice, check(&bob.to_string(), "audit:read")),
        )
        .await;
    assert_status(
        about_bob,
        Code::PermissionDenied,
        "checking another user",
        "alice on bob",
    );

    // Their own subject, by id or left empty, needs nothing.
    for subject in [bob.to_string(), String::new()] {
        let own = client
            .check(authz.tokens.request(bob, check(&subject, "audit:read")))
            .await
            .unwrap_or_else(|s| panic!("own check ({subject:?}) failed: {s:?}"))
            .into_inner();
        assert_eq!(own.allowed, Some(true), "bob's own check ({subject:?})");
    }

    authz.create_role("role-reader", &["roles:read"]).await;
    authz.grant(alice, "role-reader").await;
    let about_bob = client
        .check(
            authz
                .tokens
                .request(alice, check(&bob.to_string(), "audit:read")),
        )
        .await
        .unwrap_or_else(|s| panic!("check with roles:read failed: {s:?}"))
        .into_inner();
    assert_eq!(about_bob.allowed, Some(true));
    let admin_on_bob = client
        .check(
            authz
                .tokens
                .request(authz.admin, check(&bob.to_string(), "users:write")),
        )
        .await
        .unwrap_or_else(|s| panic!("admin check failed: {s:?}"))
        .into_inner();
    assert_eq!(
        admin_on_bob.allowed,
        Some(false),
        "bob does not hold users:write"
    );
    authz.stop().await;
}

#[tokio::test]
async fn check_validates_subject_and_permission() {
    let authz = TestAuthz::start().await;
    let mut client = authz.client.clone();
    let me = authz.admin.to_string();
    let cases = [
        (me.as_str(), "", "permission: "),
        (me.as_str(), "users", "permission: "),
        (me.as_str(), "Users:read", "permission: "),
        (me.as_str(), "users:read:x", "permission: "),
        ("bob", "users:read", "subject: "),
    ];
    for (subject, permission, field) in cases {
        let result = client
            .check(
                authz
                    .tokens
                    .request(authz.admin, check(subject, permission)),
            )
            .await;
        assert_status(
            result,
            Code::InvalidArgument,
            field,
            &format!("subject {subject:?}, permission {permission:?}"),
        );
    }
    let long = "a".repeat(129);
    let result = client
        .check(
            authz
                .tokens
                .request(authz.admin, check("", &format!("{long}:read"))),
        )
        .await;
    assert_status(
        result,
        Code::InvalidArgument,
        "permission: ",
        "long permission",
    );
    authz.stop().await;
}

#[tokio::test]
async fn unknown_subjects_and_permissions_are_simply_not_allowed() {
    let authz = TestAuthz::start().await;
    let answer = authz
        .client
        .clone()
        .check(authz.tokens.request(
            authz.admin,
            check(&Uuid::new_v4().to_string(), "never:granted"),
        ))
        .await
        .unwrap_or_else(|s| panic!("check failed: {s:?}"))
        .into_inner();
    assert_eq!(
        answer.allowed,
        Some(false),
        "absent answer must be an explicit false"
    );
    authz.stop().await;
}

#[tokio::test]
async fn check_without_a_token_is_unauthenticated_whatever_the_headers() {
    // There are no token-less "service" checks any more: services send their token.
    let authz = TestAuthz::start().await;
    let mut client = authz.client.clone();
    let admin = authz.admin.to_string();
    let mut forged = Request::new(check(&admin, "roles:write"));
    forged.metadata_mut().insert(
        "authorization",
        "Bearer forged".parse().unwrap_or_else(|_| panic!()),
    );
    let cases = [
        (
            "about the admin",
            Request::new(check(&admin, "roles:write")),
        ),
        ("without a subject", Request::new(check("", "roles:write"))),
        (
            "about the admin, with edge headers",
            with_edge_headers(
                Request::new(check(&admin, "roles:write")),
                CHECK_PATH,
                authz.admin,
            ),
        ),
        (
            "without a subject, with edge headers naming the admin",
            with_edge_headers(
                Request::new(check("", "roles:write")),
                CHECK_PATH,
                authz.admin,
            ),
        ),
        ("with a forged token", forged),
    ];
    for (what, request) in cases {
        let result = client.check(request).await;
        assert_status(
            result,
            Code::Unauthenticated,
            "missing or invalid bearer token",
            what,
        );
    }
    authz.stop().await;
}

#[tokio::test]
async fn a_service_token_with_roles_read_may_check_another_user() {
    let authz = TestAuthz::start().await;
    let bob = Uuid::new_v4();
    authz.create_role("auditor", &["audit:read"]).await;
    authz.grant(bob, "auditor").await;
    let mut client = authz.client.clone();
    let about_bob = |permission: &str| check(&bob.to_string(), permission);

    for (permission, expected) in [("audit:read", true), ("users:write", false)] {
        let answer = client
            .check(authz.as_service("audit", &["roles:read"], about_bob(permission)))
            .await
            .unwrap_or_else(|s| panic!("service check of bob's {permission}: {s:?}"))
            .into_inner();
        assert_eq!(answer.allowed, Some(expected), "bob's {permission}");
    }

    // Without roles:read in its token, even a service that may do much else is refused.
    let result = client
        .check(authz.as_service(
            "authz",
            &["audit:append", "users:read"],
            about_bob("audit:read"),
        ))
        .await;
    assert_status(
        result,
        Code::PermissionDenied,
        "checking another user's permissions requires permission roles:read",
        "service without roles:read",
    );
    authz.stop().await;
}

#[tokio::test]
async fn a_service_accounts_own_check_answers_from_its_token() {
    let authz = TestAuthz::start().await;
    let mut client = authz.client.clone();
    let permissions = ["audit:*", "users:read"];
    for (permission, expected) in [
        ("audit:read", true),
        ("audit:append", true),
        ("users:read", true),
        ("users:write", false),
        ("roles:read", false),
    ] {
        let answer = client
            .check(authz.as_service("ops", &permissions, check("", permission)))
            .await
            .unwrap_or_else(|s| panic!("own check of {permission}: {s:?}"))
            .into_inner();
        assert_eq!(
            answer.allowed,
            Some(expected),
            "a client holding {permissions:?} asked about {permission}"
        );
    }
    // Roles granted in Authz's tables are users'; a client's token is all it holds.
    let answer = client
        .check(authz.as_service("ops", &[], check("", "roles:write")))
        .await
        .unwrap_or_else(|s| panic!("own check without permissions: {s:?}"))
        .into_inner();
    assert_eq!(answer.allowed, Some(false), "a client without permissions");
    authz.stop().await;
}
