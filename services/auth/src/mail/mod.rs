//! Mail: the messages Auth sends (email verification, password reset), a transactional
//! outbox they are written to, and the relay that sends the outbox over SMTP.
//!
//! A flow that mails builds the message with [`Mailer::email_verification`] or
//! [`Mailer::password_reset`], writes it with [`Mailer::enqueue`] inside the transaction
//! that stores the token (so both commit or neither does), and calls
//! [`Mailer::committed`] after the commit so the relay sends it at once:
//!
//! ```ignore
//! let mail = mailer.password_reset(&user.email, &token)?;
//! conn.transaction(async |conn| {
//!     store::insert_reset_token(conn, user.id, &token_hash).await?;
//!     mailer.enqueue(conn, &mail).await?;
//!     Ok::<_, Error>(())
//! })
//! .await?;
//! mailer.committed();
//! ```
//!
//! The relay ([`relay`]) sends each message at least once and, short of a crash between
//! the SMTP server's acceptance and the commit that records it, exactly once; replicas
//! share the outbox without sending a message twice.

mod outbox;
mod relay;
mod settings;
mod templates;

use std::sync::Arc;

use bulwark_kernel::Kernel;
use bulwark_kernel::db::DbError;
use diesel_async::AsyncPgConnection;
use lettre::Address;
use tokio::sync::Notify;

pub use outbox::enqueue;
pub use relay::{MAX_RETRY_DELAY, retry_delay};
pub use settings::{Links, MailSettings};
pub use templates::{
    EMAIL_VERIFICATION_TTL, PASSWORD_RESET_TTL, RESET_PASSWORD_PAGE, VERIFY_EMAIL_PAGE,
    email_verification, password_reset,
};

/// What a message is for; stored with it, and the label of the relay's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailKind {
    EmailVerification,
    PasswordReset,
}

impl MailKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EmailVerification => "email_verification",
            Self::PasswordReset => "password_reset",
        }
    }
}

/// Why a message could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The recipient is not a mailbox address (checked before anything is stored, so
    /// the relay never holds a message no server would take).
    #[error("not an email address: {0}")]
    InvalidRecipient(String),
}

/// A plain-text message to one recipient, ready for the outbox.
#[derive(Clone, PartialEq, Eq)]
pub struct Mail {
    kind: MailKind,
    to: Address,
    subject: String,
    body: String,
}

impl std::fmt::Debug for Mail {
    // The body holds a token: never let it reach a log through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mail")
            .field("kind", &self.kind)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl Mail {
    fn new(kind: MailKind, to: &str, subject: &str, body: String) -> Result<Self, MailError> {
        let to = to
            .parse::<Address>()
            .map_err(|e| MailError::InvalidRecipient(e.to_string()))?;
        Ok(Self {
            kind,
            to,
            subject: subject.to_owned(),
            body,
        })
    }

    pub fn kind(&self) -> MailKind {
        self.kind
    }

    pub fn to(&self) -> &str {
        self.to.as_ref()
    }

    pub fn subject(&self) -> &str {
        &self.subject
    }

    pub fn body(&self) -> &str {
        &self.body
    }
}

/// What the flows that mail hold: the templates under the configured public base URL,
/// the outbox, and a way to wake the relay.
#[derive(Debug, Clone)]
pub struct Mailer {
    links: Links,
    kick: Arc<Notify>,
}

impl Mailer {
    /// Starts the relay on `kernel`'s database, sending through `settings`, and stops it
    /// during shutdown once the message in hand is sent and recorded.
    pub fn start(kernel: &Kernel, settings: MailSettings) -> Self {
        let links = settings.links.clone();
        let kick = relay::start(kernel, settings);
        Self { links, kick }
    }

    /// The verification message for `to`, linking to `/verify-email?token=<token>`.
    pub fn email_verification(&self, to: &str, token: &str) -> Result<Mail, MailError> {
        email_verification(&self.links, to, token)
    }

    /// The password reset message for `to`, linking to `/reset-password?token=<token>`.
    pub fn password_reset(&self, to: &str, token: &str) -> Result<Mail, MailError> {
        password_reset(&self.links, to, token)
    }

    /// Writes `mail` to the outbox on `conn`, which should be inside the transaction
    /// that makes the change the mail is about. Returns the outbox id.
    pub async fn enqueue(
        &self,
        conn: &mut AsyncPgConnection,
        mail: &Mail,
    ) -> Result<uuid::Uuid, DbError> {
        enqueue(conn, mail).await
    }

    /// Wakes the relay after the transaction that enqueued has committed (without it,
    /// the relay finds the message at its next poll, within half a second).
    pub fn committed(&self) {
        self.kick.notify_one();
    }
}
