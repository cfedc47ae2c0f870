//! Audit's runtime role may append and read events and checkpoints, nothing else: history cannot be
//! rewritten, deleted, truncated or unguarded (its triggers disabled) through it.

use bulwark_kernel::testing::assert_least_privilege;

use crate::support::TestAudit;

#[tokio::test]
async fn the_runtime_role_can_append_and_read_events_and_nothing_else() {
    let app = TestAudit::start().await;
    assert_least_privilege(
        &app.database,
        &[
            "__diesel_schema_migrations: SELECT",
            "checkpoints: INSERT, SELECT",
            "checkpoints_id_seq: USAGE",
            "events: INSERT, SELECT",
            "events_seq_seq: USAGE",
        ],
        &[
            "UPDATE events SET action = 'rewritten'",
            "DELETE FROM events",
            "TRUNCATE events",
            "ALTER TABLE events DISABLE TRIGGER events_no_update",
            "ALTER TABLE events DISABLE TRIGGER ALL",
            "DROP TRIGGER events_no_update ON events",
            "DROP TABLE events",
            "CREATE TABLE events_copy (seq BIGINT)",
            "SELECT setval('events_seq_seq', 1)",
            "DELETE FROM __diesel_schema_migrations",
            "UPDATE checkpoints SET sequence = 1",
            "DELETE FROM checkpoints",
            "TRUNCATE checkpoints",
            "ALTER TABLE checkpoints DISABLE TRIGGER ALL",
            "CREATE OR REPLACE FUNCTION events_are_append_only() RETURNS trigger \
             LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
        ],
    )
    .await;
}
