//! The mail relay: a background task that sends the outbox over SMTP, one message per
//! transaction, the row locked (`FOR UPDATE SKIP LOCKED`) from the claim until the send
//! is recorded, so a replica never sends what another holds. A failed message is tried
//! again after a back-off that doubles with each attempt, up to [`MAX_RETRY_DELAY`];
//! none is ever dropped.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bulwark_kernel::Kernel;
use bulwark_kernel::db::{Database, DbError};
use bulwark_kernel::error_bus::{ErrorBus, ErrorReport};
use diesel_async::AsyncConnection as _;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport as _, Tokio1Executor};
use tokio::sync::Notify;

use super::outbox::{self, PendingMail};
use super::settings::MailSettings;

/// The wait before the first retry of a failed message.
const FIRST_RETRY_DELAY: Duration = Duration::from_secs(1);
/// The longest wait between two attempts at one message.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(15 * 60);
/// Messages sent per round before the relay looks at `stop` again.
const ROUND: usize = 50;
/// Poll interval when nothing is due and nobody kicked the relay.
const IDLE_POLL: Duration = Duration::from_millis(500);
/// Longest wait between rounds while the database is unreachable.
const MAX_DB_BACKOFF: Duration = Duration::from_secs(5);
/// The pending gauge is refreshed every this many rounds (about every 5 s when idle).
const GAUGE_EVERY: u64 = 10;
/// Sent messages are pruned every this many rounds.
const PRUNE_EVERY: u64 = 1000;

/// The wait after the `attempts`-th failed attempt: 1 s, 2 s, 4 s, ... at most
/// [`MAX_RETRY_DELAY`].
pub fn retry_delay(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(31);
    FIRST_RETRY_DELAY
        .saturating_mul(1 << doublings)
        .min(MAX_RETRY_DELAY)
}

/// Spawns the relay and registers its stop as a shutdown hook; returns the notify that
/// wakes it.
pub(super) fn start(kernel: &Kernel, settings: MailSettings) -> Arc<Notify> {
    let kick = Arc::new(Notify::new());
    let stop = Arc::new(Notify::new());
    let relay = Relay {
        db: kernel.db.clone(),
        sender: Sender {
            transport: settings.transport,
            from: settings.from,
        },
        bus: kernel.errors.clone(),
    };
    let task = tokio::spawn(relay.run(kick.clone(), stop.clone()));
    kernel.on_shutdown("mail relay", move || async move {
        stop.notify_one();
        // Let the message in hand be sent and recorded, so it is not sent again later.
        let _ = task.await;
    });
    kick
}

struct Relay {
    db: Database,
    sender: Sender,
    bus: ErrorBus,
}

/// What became of one claimed message.
enum Attempt {
    Sent,
    Failed,
}

impl Relay {
    async fn run(self, kick: Arc<Notify>, stop: Arc<Notify>) {
        let mut db_backoff = Duration::from_millis(100);
        let mut db_failing = false;
        let mut rounds: u64 = 0;
        loop {
            let wait = match self.round().await {
                Ok(sent) => {
                    if db_failing {
                        tracing::info!("mail relay reaches the database again");
                        db_failing = false;
                    }
                    db_backoff = Duration::from_millis(100);
                    if sent == ROUND {
                        Duration::ZERO
                    } else {
                        IDLE_POLL
                    }
                }
                Err(error) => {
                    // Report the start of an outage once, not every retry.
                    if !db_failing {
                        self.bus.report(
                            ErrorReport::error("mail relay", &error)
                                .with_context("hint", "mail stays queued until Postgres is back"),
                        );
                        db_failing = true;
                    }
                    db_backoff = (db_backoff * 2).min(MAX_DB_BACKOFF);
                    db_backoff
                }
            };
            if rounds.is_multiple_of(GAUGE_EVERY) {
                self.refresh_gauge().await;
            }
            if rounds.is_multiple_of(PRUNE_EVERY) {
                self.prune().await;
            }
            rounds += 1;
            tokio::select! {
                () = stop.notified() => {
                    tracing::info!("mail relay stopped");
                    return;
                }
                () = kick.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Sends due messages until none is left, one fails (the server is likely down, so
    /// the rest wait for the next round) or [`ROUND`] were sent. Returns how many were sent.
    async fn round(&self) -> Result<usize, DbError> {
        let mut sent = 0;
        while sent < ROUND {
            match self.attempt_next().await? {
                Some(Attempt::Sent) => sent += 1,
                Some(Attempt::Failed) | None => break,
            }
        }
        Ok(sent)
    }

    /// Claims the next due message, sends it and records the outcome, in one transaction.
    async fn attempt_next(&self) -> Result<Option<Attempt>, DbError> {
        let mut conn = self.db.conn().await?;
        conn.transaction::<_, DbError, _>(async |conn| {
            let Some(mail) = outbox::claim_next(conn).await? else {
                return Ok(None);
            };
            let kind = mail.kind.clone();
            match self.sender.send(&mail).await {
                Ok(()) => {
                    outbox::mark_sent(conn, mail.id).await?;
                    metrics::counter!("mail_outbox_sent_total", "kind" => kind).increment(1);
                    Ok(Some(Attempt::Sent))
                }
                Err(error) => {
                    let attempts = mail.attempts.saturating_add(1);
                    let delay = retry_delay(attempts.unsigned_abs());
                    let error = error.to_string();
                    let next = outbox::mark_failed(conn, mail.id, attempts, delay, &error).await?;
                    metrics::counter!("mail_outbox_failures_total", "kind" => kind.clone())
                        .increment(1);
                    tracing::warn!(
                        mail.id = %mail.id,
                        mail.kind = %kind,
                        attempts,
                        retry_at = %next.to_rfc3339(),
                        error = %error,
                        "sending mail failed; it stays in the outbox and is tried again"
                    );
                    Ok(Some(Attempt::Failed))
                }
            }
        })
        .await
    }

    async fn refresh_gauge(&self) {
        let pending = match self.db.conn().await {
            Ok(mut conn) => outbox::count_pending(&mut conn).await,
            Err(error) => Err(error),
        };
        if let Ok(pending) = pending {
            metrics::gauge!("mail_outbox_pending").set(pending as f64);
        }
    }

    async fn prune(&self) {
        if let Ok(mut conn) = self.db.conn().await
            && let Err(error) = outbox::prune_sent(&mut conn).await
        {
            tracing::warn!(error = %error, "pruning sent mail failed");
        }
    }
}

/// Why one message was not sent.
#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("stored recipient is not an address: {0}")]
    Recipient(#[from] lettre::address::AddressError),
    #[error("cannot build the message: {0}")]
    Build(#[from] lettre::error::Error),
    #[error("SMTP: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
}

/// The SMTP side: turns an outbox row into an RFC 5322 message and hands it over.
struct Sender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Sender {
    async fn send(&self, mail: &PendingMail) -> Result<(), SendError> {
        let to: Address = mail.recipient.parse()?;
        // The same Message-ID and Date on every attempt: a message the server took just
        // before a crash, then sent again, is recognisably the same one.
        let message = lettre::Message::builder()
            .message_id(Some(format!("<{}@{}>", mail.id, self.from.email.domain())))
            .date(SystemTime::from(mail.created_at))
            .from(self.from.clone())
            .to(Mailbox::new(None, to))
            .subject(mail.subject.as_str())
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body.clone())?;
        self.transport.send(message).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_from_one_second_up_to_fifteen_minutes() {
        let delays: Vec<u64> = (1..=12).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(
            delays,
            [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900],
            "the back-off must double and stop at MAX_RETRY_DELAY"
        );
        assert_eq!(retry_delay(0), FIRST_RETRY_DELAY);
        assert_eq!(retry_delay(u32::MAX), MAX_RETRY_DELAY);
    }
}
