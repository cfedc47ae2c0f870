//! The `mail_outbox` table: enqueueing, claiming the next due message, and recording
//! what became of it.

use std::time::Duration;

use bulwark_kernel::db::{self, DbError};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::Mail;
use crate::schema::mail_outbox;

/// Sent messages are kept (without their body) this long, then pruned.
const KEEP_SENT: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest SMTP error kept in `last_error`.
const MAX_ERROR_CHARS: usize = 500;

/// Writes `mail` to the outbox on `conn`, due at once. Returns its id.
pub async fn enqueue(conn: &mut AsyncPgConnection, mail: &Mail) -> Result<uuid::Uuid, DbError> {
    let id = uuid::Uuid::now_v7();
    db::traced(
        "mail_outbox.enqueue",
        diesel::insert_into(mail_outbox::table)
            .values((
                mail_outbox::id.eq(id),
                mail_outbox::kind.eq(mail.kind.as_str()),
                mail_outbox::recipient.eq(mail.to()),
                mail_outbox::subject.eq(&mail.subject),
                mail_outbox::body.eq(&mail.body),
            ))
            .execute(conn),
    )
    .await?;
    Ok(id)
}

/// A message the relay has claimed.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = mail_outbox)]
pub(super) struct PendingMail {
    pub id: uuid::Uuid,
    pub kind: String,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub attempts: i32,
}

/// The oldest due, unsent message, locked until `conn`'s transaction ends; rows another
/// relay holds are skipped, so two replicas never send the same message.
pub(super) async fn claim_next(
    conn: &mut AsyncPgConnection,
) -> Result<Option<PendingMail>, DbError> {
    let claimed = db::traced(
        "mail_outbox.claim",
        mail_outbox::table
            .filter(mail_outbox::sent_at.is_null())
            .filter(mail_outbox::next_attempt_at.le(Utc::now()))
            .order((mail_outbox::next_attempt_at, mail_outbox::id))
            .limit(1)
            .select(PendingMail::as_select())
            .for_update()
            .skip_locked()
            .first(conn),
    )
    .await;
    match claimed {
        Ok(mail) => Ok(Some(mail)),
        Err(DbError::Query(diesel::result::Error::NotFound)) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Records the send and blanks the body: the token it carried lives nowhere else in
/// the clear, and has no business staying in the database once delivered.
pub(super) async fn mark_sent(conn: &mut AsyncPgConnection, id: uuid::Uuid) -> Result<(), DbError> {
    db::traced(
        "mail_outbox.mark_sent",
        diesel::update(mail_outbox::table.find(id))
            .set((
                mail_outbox::sent_at.eq(Utc::now()),
                mail_outbox::body.eq(""),
                mail_outbox::last_error.eq(None::<String>),
            ))
            .execute(conn),
    )
    .await?;
    Ok(())
}

/// Records a failed attempt and when to try again.
pub(super) async fn mark_failed(
    conn: &mut AsyncPgConnection,
    id: uuid::Uuid,
    attempts: i32,
    retry_in: Duration,
    error: &str,
) -> Result<DateTime<Utc>, DbError> {
    let next = Utc::now() + chrono::Duration::from_std(retry_in).unwrap_or(chrono::Duration::MAX);
    let error: String = error.chars().take(MAX_ERROR_CHARS).collect();
    db::traced(
        "mail_outbox.mark_failed",
        diesel::update(mail_outbox::table.find(id))
            .set((
                mail_outbox::attempts.eq(attempts),
                mail_outbox::next_attempt_at.eq(next),
                mail_outbox::last_error.eq(error),
            ))
            .execute(conn),
    )
    .await?;
    Ok(next)
}

/// Unsent messages, due or not.
pub(super) async fn count_pending(conn: &mut AsyncPgConnection) -> Result<i64, DbError> {
    db::traced(
        "mail_outbox.count_pending",
        mail_outbox::table
            .filter(mail_outbox::sent_at.is_null())
            .count()
            .get_result(conn),
    )
    .await
}

/// Deletes messages sent longer than [`KEEP_SENT`] ago.
pub(super) async fn prune_sent(conn: &mut AsyncPgConnection) -> Result<usize, DbError> {
    let cutoff =
        Utc::now() - chrono::Duration::from_std(KEEP_SENT).unwrap_or(chrono::Duration::days(7));
    db::traced(
        "mail_outbox.prune",
        diesel::delete(mail_outbox::table.filter(mail_outbox::sent_at.lt(cutoff))).execute(conn),
    )
    .await
}
