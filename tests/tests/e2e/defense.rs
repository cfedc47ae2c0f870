//! Defense in depth on a mesh provisioned as the mesh command provisions it: every
//! service runs as a role that owns nothing (so Audit's cannot rewrite history), and a
//! dump of Auth's schema holds no signing key.

use bulwark_e2e::Mesh;

/// What each runtime role's code never does, refused by Postgres itself.
const REFUSED: &[(&str, &str)] = &[
    ("audit_svc", "UPDATE audit.events SET action = 'rewritten'"),
    ("audit_svc", "DELETE FROM audit.events"),
    ("audit_svc", "TRUNCATE audit.events"),
    ("audit_svc", "ALTER TABLE audit.events DISABLE TRIGGER ALL"),
    ("audit_svc", "DELETE FROM audit.checkpoints"),
    ("audit_svc", "DROP TABLE audit.events"),
    ("auth_svc", "TRUNCATE auth.refresh_tokens"),
    (
        "auth_svc",
        "ALTER TABLE auth.signing_keys ADD COLUMN leaked TEXT",
    ),
    ("identity_svc", "DELETE FROM identity.users"),
    ("authz_svc", "DELETE FROM authz.roles"),
    (
        "authz_svc",
        "ALTER TABLE authz.role_grants DISABLE TRIGGER ALL",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_roles_cannot_rewrite_history_and_a_dump_holds_no_signing_key() {
    let mesh = Mesh::builder()
        .all_services()
        .start()
        .await
        .expect("starting the mesh");
    let pg = mesh.postgres().expect("the mesh runs postgres");
    for (role, sql) in REFUSED {
        let error = match pg.psql_as(role, "bulwark", sql) {
            Ok(_) => panic!("{role} was allowed to run `{sql}`"),
            Err(error) => format!("{error:#}"),
        };
        assert!(
            error.contains("permission denied") || error.contains("must be owner"),
            "{role}: `{sql}` failed, but not for want of privilege: {error}"
        );
    }

    // What a dump of Auth's schema holds: sealed bytes under the mesh's KEK, no PKCS#8.
    let (kek_id, _) = mesh.auth_key_encryption_key();
    let rows = pg
        .psql(
            "bulwark",
            "SELECT coalesce(kek_id, '-') || ' ' || encode(private_key, 'hex') \
             FROM auth.signing_keys",
        )
        .expect("reading auth.signing_keys");
    assert!(!rows.is_empty(), "Auth made no signing key");
    for row in rows.lines() {
        let (row_kek, hex) = row.split_once(' ').unwrap_or((row, ""));
        assert_eq!(row_kek, kek_id, "a signing key not sealed: {row}");
        // 06 03 2b 65 70: the Ed25519 algorithm identifier of a PKCS#8 document.
        assert!(
            !hex.contains("06032b6570"),
            "PKCS#8 in auth.signing_keys: {row}"
        );
    }
}
