//! Auth's runtime role may do to its tables only what its code does: refresh tokens
//! and clients are never rewritten, nothing is truncated or altered.

use bulwark_kernel::testing::assert_least_privilege;

use crate::support::TestApp;

#[tokio::test]
async fn the_runtime_role_holds_only_what_the_code_needs() {
    let app = TestApp::start().await;
    assert_least_privilege(
        &app.database,
        &[
            "__diesel_schema_migrations: SELECT",
            "account_tokens: INSERT, SELECT, UPDATE",
            "audit_outbox: DELETE, INSERT, SELECT, UPDATE",
            "clients: DELETE, INSERT, SELECT",
            "mail_outbox: DELETE, INSERT, SELECT, UPDATE",
            "mfa_challenges: DELETE, INSERT, SELECT, UPDATE",
            "recovery_codes: DELETE, INSERT, SELECT, UPDATE",
            "refresh_tokens: INSERT, SELECT, UPDATE",
            "sessions: INSERT, SELECT, UPDATE",
            "signing_keys: DELETE, INSERT, SELECT, UPDATE",
            "totp_secrets: DELETE, INSERT, SELECT, UPDATE",
        ],
        &[
            "DELETE FROM refresh_tokens",
            "DELETE FROM account_tokens",
            "UPDATE clients SET roles = '{admin}'",
            "TRUNCATE signing_keys",
            "TRUNCATE refresh_tokens",
            "TRUNCATE mail_outbox",
            "ALTER TABLE signing_keys DROP CONSTRAINT signing_keys_pkey",
            "DROP INDEX signing_keys_one_active",
            "CREATE TABLE shadow (id INT)",
            "DELETE FROM __diesel_schema_migrations",
        ],
    )
    .await;
}
