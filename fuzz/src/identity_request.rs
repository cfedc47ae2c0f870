//! Identity's requests as they arrive (protobuf bytes), through the validation its
//! handlers run: `CreateUser`, `VerifyCredentials` (Auth's login, forwarded),
//! `UpdateDisplayName`, `GetUser`.
//!
//! Checked: an accepted email is kept as given, ASCII, with one `@`, and its normalized
//! form is accepted too and normalizes to itself; an accepted display name is the input
//! trimmed and re-parses to itself; a password is accepted exactly at 12 to 128
//! characters; whoever can register can log in (Identity's `LoginAttempt` and Auth's
//! `Credentials` accept the same email and password); anything Auth accepts as a login,
//! Identity accepts when Auth forwards it; a user id re-parses from its canonical text.

use bulwark_auth::domain::credentials::Credentials;
use bulwark_identity::domain::{DisplayName, Email, LoginAttempt, Password, UserId};
use bulwark_proto::identity::v1::{
    CreateUserRequest, GetUserRequest, UpdateDisplayNameRequest, VerifyCredentialsRequest,
};
use prost::Message as _;

use crate::framed;

/// Checks one request: the first byte picks the message, the rest is its encoding.
pub fn check(data: &[u8]) {
    let Some((&selector, message)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        0 => {
            if let Ok(request) = CreateUserRequest::decode(message) {
                create_user(request);
            }
        }
        1 => {
            if let Ok(request) = VerifyCredentialsRequest::decode(message) {
                verify_credentials(request);
            }
        }
        2 => {
            if let Ok(request) = UpdateDisplayNameRequest::decode(message) {
                user_id(&request.id);
                display_name(&request.display_name);
            }
        }
        _ => {
            if let Ok(request) = GetUserRequest::decode(message) {
                user_id(&request.id);
            }
        }
    }
}

fn create_user(request: CreateUserRequest) {
    let email = email(&request.email);
    display_name(&request.display_name);
    let chars = request.password.chars().count();
    let password = Password::parse(request.password.clone());
    assert_eq!(
        password.is_ok(),
        (12..=128).contains(&chars),
        "{chars} characters"
    );
    if let (Some(email), Ok(_)) = (email, password) {
        match LoginAttempt::parse(email.as_str(), request.password.clone()) {
            Ok(attempt) => assert_eq!(attempt.normalized_email, email.normalized()),
            Err(error) => panic!("registered with {email:?} but cannot log in: {error}"),
        }
        if let Err(error) = Credentials::parse(request.email.clone(), request.password) {
            panic!("Auth refuses the login of a user Identity registered: {error}");
        }
    }
}

fn email(raw: &str) -> Option<Email> {
    let email = Email::parse(raw).ok()?;
    assert_eq!(email.as_str(), raw, "the email was changed");
    assert!(raw.is_ascii() && raw.len() <= 254, "email {raw:?}");
    assert_eq!(raw.matches('@').count(), 1, "email {raw:?}");
    let normalized = email.normalized();
    match Email::parse(&normalized) {
        Ok(again) => assert_eq!(again.normalized(), normalized, "normalizing twice differs"),
        Err(error) => panic!("{raw:?} is accepted but its normalized form is not: {error}"),
    }
    Some(email)
}

fn display_name(raw: &str) {
    let Ok(name) = DisplayName::parse(raw) else {
        return;
    };
    assert_eq!(name.as_str(), raw.trim());
    assert!((1..=100).contains(&name.as_str().chars().count()));
    assert!(!name.as_str().chars().any(char::is_control));
    assert_eq!(DisplayName::parse(name.as_str()).ok(), Some(name.clone()));
}

fn verify_credentials(request: VerifyCredentialsRequest) {
    let auth = Credentials::parse(request.email.clone(), request.password.clone());
    let identity = LoginAttempt::parse(&request.email, request.password);
    if auth.is_ok() {
        assert!(
            identity.is_ok(),
            "Auth forwards a login Identity refuses: {identity:?}"
        );
    }
    if let Ok(attempt) = identity {
        assert_eq!(attempt.normalized_email, request.email.to_ascii_lowercase());
    }
}

fn user_id(raw: &str) {
    if let Ok(UserId(id)) = UserId::parse("id", raw) {
        assert_eq!(UserId::parse("id", &id.to_string()).ok(), Some(UserId(id)));
    }
}

/// Valid requests of each kind, and a few the validation must refuse.
pub fn seeds() -> Vec<crate::Seed> {
    let create = |email: &str, password: &str, name: &str| CreateUserRequest {
        email: email.to_owned(),
        password: password.to_owned(),
        display_name: name.to_owned(),
    };
    let id = "0192f0c4-7d4e-7b1a-9f00-000000000001".to_owned();
    vec![
        (
            "create_user".to_owned(),
            framed(
                0,
                &create("ada@example.com", "correct horse battery", "Ada Lovelace"),
            ),
        ),
        (
            "create_user_odd".to_owned(),
            framed(
                0,
                &create(
                    "O'Neil+tag@Sub.Example.ORG",
                    "ü".repeat(12).as_str(),
                    "  Zoë \u{202e} ",
                ),
            ),
        ),
        (
            "verify_credentials".to_owned(),
            framed(
                1,
                &VerifyCredentialsRequest {
                    email: "Ada@Example.com".to_owned(),
                    password: "correct horse battery".to_owned(),
                },
            ),
        ),
        (
            "update_display_name".to_owned(),
            framed(
                2,
                &UpdateDisplayNameRequest {
                    id: id.clone(),
                    display_name: "Grace Hopper".to_owned(),
                },
            ),
        ),
        ("get_user".to_owned(), framed(3, &GetUserRequest { id })),
    ]
}
