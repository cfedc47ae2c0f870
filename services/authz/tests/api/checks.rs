//! Check: who may ask about whom, and argument validation.

use bulwark_kernel::tonic::{Code, Request};
use bulwark_proto::authz::v1::CheckRequest;
use uuid::Uuid;

use crate::support::{TestAuthz, assert_status};

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
async fn services_may_check_without_a_token_but_not_through_the_edge() {
    let authz = TestAuthz::start().await;
    let mut client = authz.client.clone();
    let admin = authz.admin.to_string();

    let from_service = client
        .check(Request::new(check(&admin, "roles:write")))
        .await
        .unwrap_or_else(|s| panic!("token-less check from a service failed: {s:?}"))
        .into_inner();
    assert_eq!(from_service.allowed, Some(true));

    let no_subject = client.check(Request::new(check("", "roles:write"))).await;
    assert_status(
        no_subject,
        Code::InvalidArgument,
        "subject: ",
        "service without subject",
    );

    for header in ["x-forwarded-for", "x-envoy-original-path"] {
        let mut from_edge = Request::new(check(&admin, "roles:write"));
        from_edge
            .metadata_mut()
            .insert(header, "203.0.113.9".parse().unwrap_or_else(|_| panic!()));
        let result = client.check(from_edge).await;
        assert_status(
            result,
            Code::Unauthenticated,
            "missing or invalid bearer token",
            &format!("token-less check with {header}"),
        );
    }

    let mut bad_token = Request::new(check(&admin, "roles:write"));
    bad_token.metadata_mut().insert(
        "authorization",
        "Bearer forged".parse().unwrap_or_else(|_| panic!()),
    );
    let result = client.check(bad_token).await;
    assert_status(
        result,
        Code::Unauthenticated,
        "missing or invalid",
        "invalid token",
    );
    authz.stop().await;
}
