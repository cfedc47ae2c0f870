//! Authz's runtime role may do to its tables only what its code does: roles are never
//! deleted, grants never rewritten, the policy version never set by hand, and the
//! triggers that bump it cannot be disabled.

use bulwark_kernel::testing::assert_least_privilege;

use crate::support::TestAuthz;

#[tokio::test]
async fn the_runtime_role_holds_only_what_the_code_needs() {
    let app = TestAuthz::start().await;
    assert_least_privilege(
        &app.database,
        &[
            "__diesel_schema_migrations: SELECT",
            "audit_outbox: DELETE, INSERT, SELECT, UPDATE",
            "policy_version: SELECT, UPDATE",
            "role_grants: DELETE, INSERT, SELECT",
            "roles: INSERT, SELECT, UPDATE",
        ],
        &[
            "DELETE FROM roles",
            "UPDATE role_grants SET role = 'admin'",
            "DELETE FROM policy_version",
            "INSERT INTO policy_version (singleton, version) VALUES (TRUE, 0)",
            "TRUNCATE role_grants",
            "ALTER TABLE role_grants DISABLE TRIGGER role_grants_bump_policy_version",
            "DROP TRIGGER roles_bump_policy_version ON roles",
            "CREATE TABLE shadow (id INT)",
            "DELETE FROM __diesel_schema_migrations",
        ],
    )
    .await;
}
