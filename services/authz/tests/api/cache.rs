//! The decision cache across instances: the policy version makes changes visible at
//! once everywhere; the TTL bounds changes that bypass it.

use std::time::Duration;

use bulwark_authz::SPEC;
use bulwark_kernel::testing::fresh_database;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection as _};
use uuid::Uuid;

use crate::support::TestAuthz;

#[tokio::test]
async fn grant_through_one_instance_is_seen_by_another_on_its_next_check() {
    let database = fresh_database(SPEC.name)
        .await
        .unwrap_or_else(|e| panic!("no test database: {e}"));
    // A long TTL: only the policy version can make B see the change.
    let a = TestAuthz::start_on(database.clone(), 60_000).await;
    let b = TestAuthz::start_on(database, 60_000).await;
    let user = Uuid::new_v4();
    a.create_role("auditor", &["audit:read"]).await;

    assert!(
        !b.allowed(user, "audit:read").await,
        "allowed before the grant"
    );
    a.grant(user, "auditor").await;
    assert!(
        b.allowed(user, "audit:read").await,
        "instance B served a cached denial after A's grant"
    );

    a.client
        .clone()
        .revoke_role(a.tokens.request(
            a.admin,
            bulwark_proto::authz::v1::RevokeRoleRequest {
                user_id: user.to_string(),
                role: "auditor".to_owned(),
            },
        ))
        .await
        .unwrap_or_else(|s| panic!("revoke failed: {s:?}"));
    assert!(
        !b.allowed(user, "audit:read").await,
        "instance B served a cached allow after A's revoke"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn cache_ttl_bounds_changes_that_bypass_the_policy_version() {
    const TTL: Duration = Duration::from_millis(1_500);
    let database = fresh_database(SPEC.name)
        .await
        .unwrap_or_else(|e| panic!("no test database: {e}"));
    let authz = TestAuthz::start_on(database, 1_500).await;
    let user = Uuid::new_v4();
    authz.create_role("auditor", &["audit:read"]).await;
    assert!(
        !authz.allowed(user, "audit:read").await,
        "allowed before the grant"
    );

    // A grant written behind Authz's back, with triggers off: no version bump.
    let mut sql = authz.sql().await;
    let before = policy_version(&mut sql).await;
    sql.batch_execute(&format!(
        "SET session_replication_role = replica; \
         INSERT INTO role_grants (user_id, role) VALUES ('{user}', 'auditor'); \
         SET session_replication_role = origin;"
    ))
    .await
    .unwrap_or_else(|e| panic!("cannot write the grant directly: {e}"));
    assert_eq!(
        policy_version(&mut sql).await,
        before,
        "the direct write bumped the version"
    );

    assert!(
        !authz.allowed(user, "audit:read").await,
        "the cached denial should still be served within the TTL (is the cache used?)"
    );
    tokio::time::sleep(TTL + Duration::from_millis(100)).await;
    assert!(
        authz.allowed(user, "audit:read").await,
        "the cached denial outlived the TTL"
    );
    authz.stop().await;
}

#[derive(diesel::QueryableByName)]
struct Version {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    version: i64,
}

async fn policy_version(sql: &mut diesel_async::AsyncPgConnection) -> i64 {
    diesel::sql_query("SELECT version FROM policy_version")
        .get_result::<Version>(sql)
        .await
        .unwrap_or_else(|e| panic!("cannot read the policy version: {e}"))
        .version
}
