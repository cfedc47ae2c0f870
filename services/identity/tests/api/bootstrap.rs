//! The bootstrap admin: created once from configuration under its deterministic id.

use bulwark_kernel::bootstrap::admin_user_id;
use bulwark_kernel::tonic::Code;
use bulwark_proto::identity::v1::VerifyCredentialsRequest;

use crate::support::{ADMIN_EMAIL, ADMIN_PASSWORD, TestApp, as_auth, refusal};

async fn verify(app: &TestApp, password: &str) -> Result<String, Code> {
    app.client()
        .verify_credentials(as_auth(VerifyCredentialsRequest {
            email: ADMIN_EMAIL.to_owned(),
            password: password.to_owned(),
        }))
        .await
        .map(|r| r.into_inner().user_id)
        .map_err(|s| s.code())
}

#[tokio::test]
async fn admin_bootstrap_is_idempotent_across_two_starts() {
    let first = TestApp::start().await;
    let admin = admin_user_id(ADMIN_EMAIL).to_string();
    assert_eq!(
        verify(&first, ADMIN_PASSWORD).await,
        Ok(admin.clone()),
        "the admin does not exist (or has another id) after the first start"
    );
    let database = first.database.clone();
    first.shutdown().await;

    // A changed password in configuration does not reset an existing admin.
    let second = TestApp::start_on(database, "another admin password").await;
    assert_eq!(
        second.users_with_email(ADMIN_EMAIL).await,
        1,
        "admin duplicated"
    );
    assert_eq!(
        verify(&second, ADMIN_PASSWORD).await,
        Ok(admin.clone()),
        "the admin changed on the second start"
    );
    assert_eq!(
        verify(&second, "another admin password").await,
        Err(Code::Unauthenticated)
    );
    let created: Vec<_> = second
        .outbox_events_with("user.register")
        .await
        .into_iter()
        .filter(|e| e.target == format!("user:{admin}"))
        .collect();
    assert_eq!(
        created.len(),
        1,
        "the admin's creation must be audited once: {created:?}"
    );
}

#[tokio::test]
async fn start_fails_when_the_admin_email_belongs_to_another_user() {
    let first = TestApp::start().await;
    first.register("taken@example.com", "Taken").await;
    let database = first.database.clone();
    first.shutdown().await;

    let error = TestApp::try_start_on(database, "Taken@Example.com", ADMIN_PASSWORD)
        .await
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_else(|| panic!("started with an admin_email another user holds"));
    assert!(error.contains("admin_email"), "key not named: {error}");
}

#[tokio::test]
async fn start_fails_on_an_invalid_admin_configuration_naming_the_key() {
    for (email, password, key) in [
        ("not-an-email", ADMIN_PASSWORD, "admin_email"),
        (ADMIN_EMAIL, "short", "admin_password"),
    ] {
        let database = bulwark_kernel::testing::fresh_database("identity")
            .await
            .unwrap_or_else(|e| panic!("creating the test database: {e:#}"));
        let error = TestApp::try_start_on(database, email, password)
            .await
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_else(|| panic!("started with an invalid {key}"));
        assert!(error.contains(key), "{key} not named: {error}");
    }
}

#[tokio::test]
async fn the_admin_cannot_be_registered_again_through_the_api() {
    let app = TestApp::start().await;
    let (code, _) = refusal(
        app.client()
            .create_user(bulwark_proto::identity::v1::CreateUserRequest {
                email: ADMIN_EMAIL.to_uppercase(),
                password: "some other password".into(),
                display_name: "Impostor".into(),
            })
            .await,
    );
    assert_eq!(code, Code::AlreadyExists);
}
