//! Signing keys at rest: sealed under a key-encryption key (KEK) from configuration, so
//! a dump of Auth's schema holds no key that can sign; Auth does not start without the
//! right KEK; a KEK rotation re-seals every row and keeps every published key working.

use diesel::QueryableByName;
use diesel::sql_types::{Bytea, Nullable, Text};
use diesel_async::RunQueryDsl;
use serde_json::json;

use bulwark_kernel::config::DatabaseConfig;

use crate::support::{TEST_KEK, TestApp, kid};

const OTHER_KEK: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// The Ed25519 algorithm identifier (OID 1.3.101.112) as it appears in PKCS#8 DER.
const ED25519_OID: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x70];

#[derive(QueryableByName, Debug)]
struct Row {
    #[diesel(sql_type = Text)]
    kid: String,
    #[diesel(sql_type = Nullable<Text>)]
    kek_id: Option<String>,
    #[diesel(sql_type = Bytea)]
    private_key: Vec<u8>,
}

/// The signing-key rows, read as an operator with a dump would: as the superuser.
async fn rows(database: &DatabaseConfig) -> Vec<Row> {
    let mut conn = bulwark_kernel::testing::superuser_connection(database)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    diesel::sql_query("SELECT kid, kek_id, private_key FROM signing_keys ORDER BY created_at")
        .load(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("reading signing_keys: {e}"))
}

fn assert_sealed(rows: &[Row], kek_id: &str) {
    let with_private: Vec<&Row> = rows.iter().filter(|r| !r.private_key.is_empty()).collect();
    assert!(
        !with_private.is_empty(),
        "no private key stored at all: {rows:?}"
    );
    for row in with_private {
        assert_eq!(row.kek_id.as_deref(), Some(kek_id), "row {}", row.kid);
        assert!(
            !row.private_key
                .windows(ED25519_OID.len())
                .any(|w| w == ED25519_OID),
            "row {} holds PKCS#8 plaintext",
            row.kid
        );
        // A 12-byte nonce, the PKCS#8 document (48 bytes or more) encrypted, a 16-byte tag.
        assert!(row.private_key.len() >= 12 + 48 + 16, "row {}", row.kid);
    }
}

fn kek(id: &str, hex: &str) -> (String, serde_json::Value) {
    (format!("auth.key_encryption.keys.{id}"), json!(hex))
}

async fn start_error(database: DatabaseConfig, sections: &[(&str, serde_json::Value)]) -> String {
    match TestApp::try_start_on(database, sections).await {
        Ok(app) => {
            app.stop().await;
            panic!("Auth started")
        }
        Err(error) => format!("{error:#}"),
    }
}

#[tokio::test]
async fn signing_keys_are_stored_sealed_not_as_pkcs8() {
    let app = TestApp::start().await;
    let admin = app.admin_token().await;
    app.rotate(&admin)
        .await
        .unwrap_or_else(|s| panic!("rotation: {s:?}"));
    let rows = rows(&app.database).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_sealed(&rows, "test");
    app.stop().await;
}

#[tokio::test]
async fn auth_refuses_to_start_without_a_key_encryption_key() {
    let database = bulwark_kernel::testing::fresh_database("auth")
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let error = start_error(database, &[("auth.key_encryption.current", json!("k1"))]).await;
    assert!(
        error.contains("auth.key_encryption.keys") && error.contains("no key-encryption key"),
        "{error}"
    );
}

#[tokio::test]
async fn auth_refuses_to_start_with_the_wrong_key_encryption_key() {
    let app = TestApp::start().await;
    let database = app.database.clone();
    app.stop().await;

    let (key, value) = kek("test", OTHER_KEK);
    let error = start_error(database.clone(), &[(&key, value)]).await;
    assert!(
        error.contains("does not open with key-encryption key `test`"),
        "{error}"
    );
    let (key, value) = kek("other", OTHER_KEK);
    let error = start_error(database, &[(&key, value)]).await;
    assert!(
        error.contains("sealed under key-encryption key `test`, which is not configured"),
        "{error}"
    );
}

#[tokio::test]
async fn rotating_the_key_encryption_key_reseals_and_keeps_every_published_key_working() {
    let app = TestApp::start().await;
    let database = app.database.clone();
    let user = app.user("alice@example.com");
    let before = app.logged_in(&user).await;
    let admin = app.admin_token().await;
    // A pending key beside the active one: both are re-sealed.
    app.rotate(&admin)
        .await
        .unwrap_or_else(|s| panic!("rotation: {s:?}"));
    let jwks = app.jwks().await;
    app.stop().await;

    // Step 1: the new KEK is current, the old one still opens.
    let (old_key, old_value) = kek("test", TEST_KEK);
    let (new_key, new_value) = kek("k2", OTHER_KEK);
    let both = [
        (old_key.as_str(), old_value),
        (new_key.as_str(), new_value.clone()),
        ("auth.key_encryption.current", json!("k2")),
    ];
    let app = TestApp::start_on(database.clone(), &both).await;
    assert_sealed(&rows(&database).await, "k2");
    assert_eq!(
        app.jwks().await,
        jwks,
        "re-sealing changed the published keys"
    );
    assert_eq!(
        app.verify(&before.access_token).await.user_id(),
        Some(user.id),
        "a token signed before the KEK rotation"
    );
    // Users live in the (fake) Identity of each instance.
    let during = app.logged_in(&app.user("alice@example.com")).await;
    assert_eq!(kid(&during.access_token), kid(&before.access_token));
    app.stop().await;

    // Step 2: the old KEK is gone; everything still opens and signs.
    let app = TestApp::start_on(database.clone(), &[(new_key.as_str(), new_value)]).await;
    let bob = app.user("bob@example.com");
    let after = app.logged_in(&bob).await;
    assert_eq!(
        app.verify(&after.access_token).await.user_id(),
        Some(bob.id)
    );
    assert_eq!(
        app.verify(&before.access_token).await.user_id(),
        Some(user.id)
    );
    app.stop().await;
}
