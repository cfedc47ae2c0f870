//! The mail outbox and relay against a real SMTP server (aiosmtpd, as the local mesh
//! runs it): what is enqueued in a committed transaction arrives once, with its
//! recipient, subject and link; nothing else does; an unreachable server delays mail
//! without losing it.

use std::time::Duration;

use bulwark_auth::SPEC;
use bulwark_auth::mail::{self, Links, Mail};
use bulwark_e2e::{MailServer, free_port, poll_until};
use bulwark_kernel::db::DbError;
use bulwark_kernel::testing::fresh_database;
use diesel::sql_types::{BigInt, Bool, Int4};
use diesel_async::{AsyncConnection as _, RunQueryDsl as _};

use crate::support::TestApp;

const BASE_URL: &str = "https://app.example.com/accounts";
const DELIVERY: Duration = Duration::from_secs(15);

/// An aiosmtpd on a free port with its maildir in a temporary directory (kept with
/// the value); not started yet, so a test can start it when it chooses.
fn mail_server() -> (MailServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temporary directory: {e}"));
    let port = free_port().unwrap_or_else(|e| panic!("{e:#}"));
    let server = MailServer::stopped(&dir.path().join("mail"), port, &dir.path().join("mail.log"));
    (server, dir)
}

async fn started_mail_server() -> (MailServer, tempfile::TempDir) {
    let (mut server, dir) = mail_server();
    server
        .restart()
        .await
        .unwrap_or_else(|e| panic!("the test SMTP server did not start: {e:#}"));
    (server, dir)
}

fn mail_settings(server: &MailServer) -> [(&'static str, serde_json::Value); 3] {
    [
        ("auth.smtp_url", server.url().into()),
        (
            "auth.mail_from",
            "Bulwark Tests <accounts@example.com>".into(),
        ),
        ("auth.public_base_url", BASE_URL.into()),
    ]
}

fn links() -> Links {
    Links::parse(BASE_URL).unwrap_or_else(|e| panic!("{e}"))
}

/// Enqueues `mail` in its own committed transaction, as a flow would.
async fn enqueue(app: &TestApp, mail: &Mail) {
    let mut conn = app.kernel.db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    conn.transaction::<_, DbError, _>(async |conn| {
        mail::enqueue(conn, mail).await?;
        Ok(())
    })
    .await
    .unwrap_or_else(|e| panic!("enqueueing failed: {e}"));
}

#[derive(diesel::QueryableByName, Debug, PartialEq, Eq)]
struct OutboxState {
    #[diesel(sql_type = BigInt)]
    pending: i64,
    #[diesel(sql_type = BigInt)]
    sent: i64,
    #[diesel(sql_type = Int4)]
    max_attempts: i32,
    #[diesel(sql_type = Bool)]
    sent_bodies_blank: bool,
}

async fn outbox_state(app: &TestApp) -> OutboxState {
    let mut conn = app.kernel.db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    diesel::sql_query(
        "SELECT count(*) FILTER (WHERE sent_at IS NULL) AS pending, \
                count(*) FILTER (WHERE sent_at IS NOT NULL) AS sent, \
                coalesce(max(attempts), 0) AS max_attempts, \
                coalesce(bool_and(body = '') FILTER (WHERE sent_at IS NOT NULL), true) \
                  AS sent_bodies_blank \
         FROM mail_outbox",
    )
    .get_result(&mut *conn)
    .await
    .unwrap_or_else(|e| panic!("reading the outbox: {e}"))
}

#[tokio::test]
async fn an_enqueued_verification_mail_arrives_with_its_recipient_subject_and_link() {
    let (server, _dir) = started_mail_server().await;
    let app = TestApp::start_with(&mail_settings(&server)).await;
    let token = "k9_Zx-Q+/=&weird token";
    let mail = mail::email_verification(&links(), "ada@example.com", token)
        .unwrap_or_else(|e| panic!("{e}"));
    enqueue(&app, &mail).await;

    let message = server
        .wait_for("ada@example.com", DELIVERY)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(message.to(), Some("ada@example.com"));
    assert_eq!(message.subject(), Some("Verify your email address"));
    assert_eq!(
        message.from(),
        Some("\"Bulwark Tests\" <accounts@example.com>")
    );
    let link = message.first_link().unwrap_or_default();
    assert!(
        link.starts_with("https://app.example.com/accounts/verify-email?token="),
        "{link}"
    );
    assert_eq!(message.token().unwrap_or_default(), token);
    assert!(message.body.contains("24 hours"), "{}", message.body);
    assert!(
        message
            .header("Message-ID")
            .is_some_and(|id| id.ends_with("@example.com>")),
        "{:?}",
        message.headers
    );

    poll_until("the outbox row marked sent", DELIVERY, || async {
        let state = outbox_state(&app).await;
        (state.sent == 1 && state.pending == 0)
            .then_some(state)
            .ok_or("not yet marked sent".to_owned())
    })
    .await
    .map(|state| assert!(state.sent_bodies_blank, "the token stayed in the outbox"))
    .unwrap_or_else(|e| panic!("{e:#}"));
}

#[tokio::test]
async fn a_reset_mail_in_a_rolled_back_transaction_is_never_sent() {
    let (server, _dir) = started_mail_server().await;
    let app = TestApp::start_with(&mail_settings(&server)).await;
    let doomed = mail::password_reset(&links(), "eve@example.com", "never")
        .unwrap_or_else(|e| panic!("{e}"));
    let mut conn = app.kernel.db.conn().await.unwrap_or_else(|e| panic!("{e}"));
    let outcome = conn
        .transaction::<(), DbError, _>(async |conn| {
            mail::enqueue(conn, &doomed).await?;
            // The change the mail belonged to failed: everything goes back.
            Err(DbError::Query(diesel::result::Error::RollbackTransaction))
        })
        .await;
    assert!(outcome.is_err());
    drop(conn);
    // A committed mail after it, so the relay has demonstrably run past the rollback.
    let kept =
        mail::password_reset(&links(), "bob@example.com", "kept").unwrap_or_else(|e| panic!("{e}"));
    enqueue(&app, &kept).await;

    let message = server
        .wait_for("bob@example.com", DELIVERY)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(message.subject(), Some("Reset your password"));
    assert!(message.body.contains("30 minutes"), "{}", message.body);
    assert_eq!(message.token().unwrap_or_default(), "kept");
    let to_eve = server
        .messages_to("eve@example.com")
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(to_eve.is_empty(), "a rolled-back mail was sent");
}

#[tokio::test]
async fn mail_waits_while_smtp_is_unreachable_and_goes_out_once_it_is_back() {
    let (mut server, _dir) = mail_server();
    let app = TestApp::start_with(&mail_settings(&server)).await;
    let mail = mail::password_reset(&links(), "grace@example.com", "patience")
        .unwrap_or_else(|e| panic!("{e}"));
    enqueue(&app, &mail).await;

    // Nothing listens: the relay tries, fails, and keeps the message.
    poll_until("a failed attempt recorded", DELIVERY, || async {
        let state = outbox_state(&app).await;
        (state.max_attempts >= 1)
            .then_some(state)
            .ok_or("no attempt yet".to_owned())
    })
    .await
    .map(|state| assert_eq!((state.pending, state.sent), (1, 0), "{state:?}"))
    .unwrap_or_else(|e| panic!("{e:#}"));

    server
        .restart()
        .await
        .unwrap_or_else(|e| panic!("the test SMTP server did not start: {e:#}"));
    let message = server
        .wait_for("grace@example.com", Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("the mail was not retried: {e:#}"));
    assert_eq!(message.token().unwrap_or_default(), "patience");
    // Further retries would arrive within the back-off; none may.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let received = server
        .messages_to("grace@example.com")
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(received.len(), 1, "the mail was sent more than once");
    let state = outbox_state(&app).await;
    assert_eq!((state.pending, state.sent), (0, 1), "{state:?}");
}

#[tokio::test]
async fn two_replicas_send_each_mail_exactly_once() {
    let (server, _dir) = started_mail_server().await;
    let database = fresh_database(SPEC.name)
        .await
        .unwrap_or_else(|e| panic!("no test database: {e:#}"));
    let settings = mail_settings(&server);
    let first = TestApp::start_on(database.clone(), &settings).await;
    let second = TestApp::start_on(database, &settings).await;

    let recipients: Vec<String> = (0..12).map(|i| format!("user{i}@example.com")).collect();
    for (i, to) in recipients.iter().enumerate() {
        let app = if i % 2 == 0 { &first } else { &second };
        let mail = mail::email_verification(&links(), to, &format!("token-{i}"))
            .unwrap_or_else(|e| panic!("{e}"));
        enqueue(app, &mail).await;
    }
    for to in &recipients {
        server
            .wait_for(to, DELIVERY)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let received = server.messages().unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        received.len(),
        recipients.len(),
        "each mail once: {:?}",
        received.iter().map(|m| m.to()).collect::<Vec<_>>()
    );
    let state = outbox_state(&first).await;
    assert_eq!((state.pending, state.sent), (0, 12), "{state:?}");
}
