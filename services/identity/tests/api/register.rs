//! CreateUser: validation, uniqueness, what is returned and what is recorded.

use std::time::Duration;

use bulwark_kernel::tonic::Code;
use bulwark_proto::audit::v1::Outcome;
use bulwark_proto::identity::v1::{
    CreateUserRequest, GetMeRequest, GetUserRequest, UpdateDisplayNameRequest,
    VerifyCredentialsRequest,
};

use crate::support::{PASSWORD, TestApp, as_user, refusal};

fn registration(email: &str, password: &str, display_name: &str) -> CreateUserRequest {
    CreateUserRequest {
        email: email.to_owned(),
        password: password.to_owned(),
        display_name: display_name.to_owned(),
    }
}

#[tokio::test]
async fn register_returns_the_new_user_with_email_as_given_and_name_trimmed() {
    let app = TestApp::start().await;
    let before = chrono::Utc::now().timestamp();
    let user = app
        .register("Ada.Lovelace@Example.COM", "  Ada Lovelace ")
        .await;

    assert!(
        uuid::Uuid::parse_str(&user.id).is_ok(),
        "id is not a UUID: {:?}",
        user.id
    );
    assert_eq!(
        user.email, "Ada.Lovelace@Example.COM",
        "email case not kept"
    );
    assert_eq!(
        user.display_name, "Ada Lovelace",
        "display name not trimmed"
    );
    assert!(user.active, "a new user must be active");
    let created = user.created_at.map(|t| t.seconds).unwrap_or_default();
    assert!(
        (before - 5..=before + 5).contains(&created),
        "created_at {created} is not about now ({before})"
    );
}

#[tokio::test]
async fn duplicate_email_in_another_case_is_already_exists() {
    let app = TestApp::start().await;
    app.register("Grace@Example.com", "Grace").await;

    let (code, message) = refusal(
        app.client()
            .create_user(registration("grace@EXAMPLE.com", PASSWORD, "Other Grace"))
            .await,
    );
    assert_eq!(code, Code::AlreadyExists, "{message}");
    assert_eq!(message, "email: already registered");
    assert_eq!(
        app.users_with_email("grace@example.com").await,
        1,
        "the duplicate was stored"
    );
}

#[tokio::test]
async fn short_password_is_invalid_argument_naming_password() {
    let app = TestApp::start().await;
    let (code, message) = refusal(
        app.client()
            .create_user(registration("a@example.com", "elevenchars", "A"))
            .await,
    );
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert_eq!(message, "password: must be at least 12 characters");
}

#[tokio::test]
async fn oversized_password_is_refused_before_hashing() {
    let app = TestApp::start().await;
    let (code, message) = refusal(
        app.client()
            .create_user(registration("a@example.com", &"p".repeat(129), "A"))
            .await,
    );
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert_eq!(message, "password: must be at most 128 characters");
}

#[tokio::test]
async fn malformed_emails_are_invalid_argument_naming_email() {
    let app = TestApp::start().await;
    let too_long = format!("{}@example.com", "a".repeat(250));
    for email in [
        "",
        "not-an-email",
        "a@b",
        "a b@example.com",
        "a@@example.com",
        &too_long,
    ] {
        let (code, message) = refusal(
            app.client()
                .create_user(registration(email, PASSWORD, "A"))
                .await,
        );
        assert_eq!(code, Code::InvalidArgument, "{email:?}: {message}");
        assert!(
            message.starts_with("email: "),
            "{email:?}: message does not name the field: {message}"
        );
    }
}

#[tokio::test]
async fn oversized_or_control_character_display_names_are_refused() {
    let app = TestApp::start().await;
    for (name, rule) in [
        (
            "x".repeat(101),
            "display_name: must be at most 100 characters",
        ),
        ("   ".to_owned(), "display_name: must not be empty"),
        (
            "bell\u{7}".to_owned(),
            "display_name: must not contain control characters",
        ),
    ] {
        let (code, message) = refusal(
            app.client()
                .create_user(registration("a@example.com", PASSWORD, &name))
                .await,
        );
        assert_eq!(code, Code::InvalidArgument, "{name:?}: {message}");
        assert_eq!(message, rule, "{name:?}");
    }
}

#[tokio::test]
async fn every_invalid_field_is_named_at_once() {
    let app = TestApp::start().await;
    let (code, message) = refusal(
        app.client()
            .create_user(registration("not-an-email", "short", ""))
            .await,
    );
    assert_eq!(code, Code::InvalidArgument, "{message}");
    for field in ["email: ", "password: ", "display_name: "] {
        assert!(message.contains(field), "{field} not named in: {message}");
    }
}

#[tokio::test]
async fn password_and_its_hash_never_appear_in_any_response() {
    let app = TestApp::start().await;
    let user = app.register("secret@example.com", "Secretive").await;
    let mut client = app.client();

    let mut responses = vec![format!("{user:?}")];
    let me = client.get_me(as_user(&user.id, GetMeRequest {})).await;
    responses.push(format!("{me:?}"));
    let by_id = client
        .get_user(as_user(
            &user.id,
            GetUserRequest {
                id: user.id.clone(),
            },
        ))
        .await;
    responses.push(format!("{by_id:?}"));
    let renamed = client
        .update_display_name(as_user(
            &user.id,
            UpdateDisplayNameRequest {
                id: user.id.clone(),
                display_name: "Still Secretive".into(),
            },
        ))
        .await;
    responses.push(format!("{renamed:?}"));
    for password in [PASSWORD, "wrong password entirely"] {
        let checked = client
            .verify_credentials(VerifyCredentialsRequest {
                email: "secret@example.com".into(),
                password: password.into(),
            })
            .await;
        responses.push(format!("{checked:?}"));
    }
    let duplicate = client
        .create_user(registration("secret@example.com", PASSWORD, "Again"))
        .await;
    responses.push(format!("{duplicate:?}"));

    for response in &responses {
        assert!(
            !response.contains(PASSWORD),
            "password in a response: {response}"
        );
        assert!(
            !response.contains("argon2"),
            "hash in a response: {response}"
        );
    }
    let stored: Vec<String> = {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        #[derive(QueryableByName)]
        struct Hash {
            #[diesel(sql_type = diesel::sql_types::Text)]
            password_hash: String,
        }
        let mut conn = app
            .kernel
            .db
            .conn()
            .await
            .unwrap_or_else(|e| panic!("database connection: {e}"));
        diesel::sql_query("SELECT password_hash FROM users WHERE email = 'secret@example.com'")
            .load::<Hash>(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("reading the hash: {e}"))
            .into_iter()
            .map(|row| row.password_hash)
            .collect()
    };
    assert_eq!(stored.len(), 1);
    assert!(
        stored[0].starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "not an argon2id hash with OWASP parameters: {}",
        stored[0]
    );
}

#[tokio::test]
async fn register_records_exactly_one_audit_event() {
    let app = TestApp::start().await;
    let user = app.register("audited@example.com", "Audited").await;
    let target = format!("user:{}", user.id);

    let events: Vec<_> = app
        .outbox_events_with("user.register")
        .await
        .into_iter()
        .filter(|event| event.target == target)
        .collect();
    assert_eq!(events.len(), 1, "register events for {target}: {events:?}");
    let event = &events[0];
    assert_eq!(event.actor_id, user.id, "the new user is the actor");
    assert_eq!(event.service, "identity");
    assert_eq!(event.outcome, Outcome::Success as i32);
    assert!(
        !event.details.contains("audited@example.com") && !event.details.contains(PASSWORD),
        "personal data or secrets in details: {}",
        event.details
    );
}

#[tokio::test]
async fn register_and_its_audit_event_commit_together() {
    let app = TestApp::start().await;
    // Without an outbox table the event can not be written: the user must not be either.
    app.execute("ALTER TABLE audit_outbox RENAME TO audit_outbox_away")
        .await;
    let (code, message) = refusal(
        app.client()
            .create_user(registration("atomic@example.com", PASSWORD, "Atomic"))
            .await,
    );
    assert_eq!(code, Code::Internal, "{message}");
    assert_eq!(message, "internal error", "internals leaked: {message}");
    assert_eq!(
        app.users_with_email("atomic@example.com").await,
        0,
        "the user was committed without its audit event"
    );

    app.execute("ALTER TABLE audit_outbox_away RENAME TO audit_outbox")
        .await;
    app.register("atomic@example.com", "Atomic").await;
}

#[tokio::test]
async fn register_event_is_delivered_to_audit_by_the_relay() {
    let app = TestApp::start().await;
    let user = app.register("relayed@example.com", "Relayed").await;
    let target = format!("user:{}", user.id);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let delivered = app
            .audit
            .delivered()
            .iter()
            .filter(|e| e.action == "user.register" && e.target == target)
            .count();
        if delivered > 0 {
            assert_eq!(delivered, 1, "the event reached Audit more than once");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the register event for {target} was not delivered to Audit within 10 s \
             (delivered {delivered} times)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
