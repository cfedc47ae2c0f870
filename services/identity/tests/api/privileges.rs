//! Identity's runtime role may do to its tables only what its code does.

use bulwark_kernel::testing::assert_least_privilege;

use crate::support::TestApp;

#[tokio::test]
async fn the_runtime_role_holds_only_what_the_code_needs() {
    let app = TestApp::start().await;
    assert_least_privilege(
        &app.database,
        &[
            "__diesel_schema_migrations: SELECT",
            "audit_outbox: DELETE, INSERT, SELECT, UPDATE",
            "users: INSERT, SELECT, UPDATE",
        ],
        &[
            "DELETE FROM users",
            "TRUNCATE users",
            "TRUNCATE audit_outbox",
            "ALTER TABLE users DROP CONSTRAINT users_pkey",
            "DROP INDEX users_email_lower_key",
            "DROP TABLE audit_outbox",
            "CREATE TABLE shadow (id INT)",
            "DELETE FROM __diesel_schema_migrations",
        ],
    )
    .await;
}
