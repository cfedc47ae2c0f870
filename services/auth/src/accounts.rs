//! The account flows of issue 11 that mail a token or end sessions: email verification,
//! password reset (request and confirm) and password change. Identity owns the user and
//! its password; Auth owns the mailed tokens, the sessions and the audit trail, and
//! changes each in one transaction with the mail it sends and the event it records.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use uuid::Uuid;

use bulwark_kernel::clients::IdentityApi;
use bulwark_kernel::db::Database;
use bulwark_kernel::outbox::{self, NewAuditEvent};
use bulwark_kernel::tonic::{Code, Status};
use bulwark_proto::identity::v1::User;

use crate::audit_trail::AuditTrail;
use crate::domain::account_token::{
    self, MAX_RESET_MAILS_PER_HOUR, NewAccountToken, TokenKind, TokenState,
};
use crate::domain::events;
use crate::domain::refresh_token::TokenHash;
use crate::error::Error;
use crate::mail::{Mail, MailError, Mailer};
use crate::sessions::Sessions;
use crate::store::account_tokens::{self, NewAccountTokenRow};

/// A password reset request answers no sooner than this after it arrived, whatever
/// happened: looking an email up, minting a token and queueing a mail take a few
/// milliseconds, finding no account takes fewer, and the floor hides the difference.
pub const RESET_ANSWER_FLOOR: Duration = Duration::from_millis(250);

/// The `revoked_reason` of the sessions a reset or change ends.
const REASON_RESET: &str = "password_reset";
const REASON_CHANGE: &str = "password_change";

/// What the flows need.
pub struct AccountFlows {
    pub db: Database,
    pub identity: Arc<dyn IdentityApi>,
    pub mailer: Mailer,
    pub audit: AuditTrail,
}

impl std::fmt::Debug for AccountFlows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountFlows").finish_non_exhaustive()
    }
}

/// What became of a reset request; all end in the same answer.
enum ResetRequest {
    Mailed,
    NotMailed(&'static str),
}

impl AccountFlows {
    /// Mails `user_id` a verification link, making its earlier unused links invalid.
    pub async fn request_verification(&self, user_id: Uuid) -> Result<(), Error> {
        let user =
            self.identity
                .get_user(user_id.to_string())
                .await
                .map_err(|status| match status.code() {
                    Code::NotFound => Error::NotFound("user"),
                    _ => Error::from_upstream("identity", status),
                })?;
        if user.email_verified {
            return Err(Error::AlreadyVerified);
        }
        let token = NewAccountToken::generate()?;
        let mail = self
            .mailer
            .email_verification(&user.email, &token.plaintext)
            .map_err(unmailable)?;
        let kind = TokenKind::EmailVerification;
        self.mint(
            user_id,
            kind,
            &token,
            &mail,
            events::verification_sent(user_id),
        )
        .await?;
        tracing::info!(%user_id, "verification mail queued");
        Ok(())
    }

    /// Marks the email of the token's user verified and returns the user.
    pub async fn verify_email(&self, hash: TokenHash) -> Result<User, Error> {
        let mut pooled = self.db.conn().await?;
        let conn: &mut AsyncPgConnection = &mut pooled;
        let user = conn
            .transaction::<_, Error, _>(async |conn| {
                let token = usable_token(conn, &hash, TokenKind::EmailVerification).await?;
                let user = self
                    .identity
                    .mark_email_verified(token.user_id.to_string())
                    .await
                    .map_err(|status| Error::from_upstream("identity", status))?;
                account_tokens::mark_used(conn, token.id, Utc::now()).await?;
                record(conn, events::email_verified(token.user_id)).await?;
                Ok(user)
            })
            .await?;
        self.audit.committed();
        tracing::info!(user_id = %user.id, "email verified");
        Ok(user)
    }

    /// Mails a reset link when `email` belongs to an active account under its hourly
    /// limit. Answers alike, and no sooner than [`RESET_ANSWER_FLOOR`], in every case.
    pub async fn request_reset(&self, email: &str) -> Result<(), Error> {
        let started = Instant::now();
        let outcome = self.reset_request(email).await;
        tokio::time::sleep_until((started + RESET_ANSWER_FLOOR).into()).await;
        match outcome? {
            ResetRequest::Mailed => tracing::info!("password reset mail queued"),
            ResetRequest::NotMailed(reason) => tracing::info!(reason, "no password reset mail"),
        }
        Ok(())
    }

    async fn reset_request(&self, email: &str) -> Result<ResetRequest, Error> {
        let email = account_token::reset_email(email)?;
        let target = account_token::email_target(email);
        let found = match self.identity.find_user_by_email(email.to_owned()).await {
            Ok(found) => found,
            // A malformed email is no more known than an unknown one.
            Err(status) if matches!(status.code(), Code::NotFound | Code::InvalidArgument) => {
                return self.reset_not_mailed(None, target, "unknown_email").await;
            }
            Err(status) => return Err(Error::from_upstream("identity", status)),
        };
        let user_id = Uuid::parse_str(&found.user_id).map_err(|_| {
            Error::from_upstream(
                "identity",
                Status::internal("FindUserByEmail answered a malformed user id"),
            )
        })?;
        if !found.active {
            return self
                .reset_not_mailed(Some(user_id), target, "inactive_account")
                .await;
        }
        let token = NewAccountToken::generate()?;
        let mail = self
            .mailer
            .password_reset(&found.email, &token.plaintext)
            .map_err(unmailable)?;
        let kind = TokenKind::PasswordReset;
        let mut pooled = self.db.conn().await?;
        let conn: &mut AsyncPgConnection = &mut pooled;
        let outcome = conn
            .transaction::<_, Error, _>(async |conn| {
                account_tokens::lock_user(conn, user_id, kind).await?;
                let hour_ago = Utc::now() - chrono::Duration::hours(1);
                let sent = account_tokens::count_since(conn, user_id, kind, hour_ago).await?;
                if sent >= MAX_RESET_MAILS_PER_HOUR {
                    let event = events::password_reset_requested(
                        Some(user_id),
                        target.clone(),
                        false,
                        Some("hourly_limit"),
                    );
                    record(conn, event).await?;
                    return Ok(ResetRequest::NotMailed("hourly_limit"));
                }
                let event =
                    events::password_reset_requested(Some(user_id), target.clone(), true, None);
                store_token(conn, &self.mailer, user_id, kind, &token, &mail, event).await?;
                Ok(ResetRequest::Mailed)
            })
            .await?;
        self.mailer.committed();
        self.audit.committed();
        Ok(outcome)
    }

    async fn reset_not_mailed(
        &self,
        user_id: Option<Uuid>,
        target: String,
        reason: &'static str,
    ) -> Result<ResetRequest, Error> {
        self.audit
            .record(events::password_reset_requested(
                user_id,
                target,
                false,
                Some(reason),
            ))
            .await?;
        Ok(ResetRequest::NotMailed(reason))
    }

    /// Sets the password of the token's user and ends every session of theirs, in one
    /// transaction with the token's use: a password Identity refuses leaves the token
    /// usable and the sessions alive.
    pub async fn confirm_reset(&self, hash: TokenHash, new_password: String) -> Result<(), Error> {
        account_token::new_password(&new_password)?;
        let mut pooled = self.db.conn().await?;
        let conn: &mut AsyncPgConnection = &mut pooled;
        let (user_id, ended) = conn
            .transaction::<_, Error, _>(async |conn| {
                let token = usable_token(conn, &hash, TokenKind::PasswordReset).await?;
                self.set_password(token.user_id, new_password.clone())
                    .await?;
                let now = Utc::now();
                account_tokens::mark_used(conn, token.id, now).await?;
                // Any other reset link of the user dies with this one.
                account_tokens::supersede_unused(
                    conn,
                    token.user_id,
                    TokenKind::PasswordReset,
                    now,
                )
                .await?;
                let ended =
                    Sessions::revoke_all_in(conn, token.user_id, None, REASON_RESET).await?;
                record(conn, events::password_reset(token.user_id, ended)).await?;
                Ok((token.user_id, ended))
            })
            .await?;
        self.audit.committed();
        tracing::info!(%user_id, sessions_ended = ended, "password reset");
        Ok(())
    }

    /// Changes the password of `user_id` after checking `current_password` with
    /// Identity, and ends every session of theirs but `keep` (the caller's).
    pub async fn change_password(
        &self,
        user_id: Uuid,
        keep: Option<Uuid>,
        current_password: String,
        new_password: String,
    ) -> Result<(), Error> {
        account_token::new_password(&new_password)?;
        if current_password.is_empty() {
            return Err(Error::invalid("current_password", "is required"));
        }
        let user =
            self.identity
                .get_user(user_id.to_string())
                .await
                .map_err(|status| match status.code() {
                    Code::NotFound => Error::NotFound("user"),
                    _ => Error::from_upstream("identity", status),
                })?;
        match self
            .identity
            .verify_credentials(user.email.clone(), current_password)
            .await
        {
            Ok(verified) if verified.user_id == user.id => {}
            Ok(_) => return self.refuse_change(user_id).await,
            Err(status)
                if status.code() == Code::InvalidArgument
                    || (status.code() == Code::Unauthenticated
                        && status.message() == crate::error::INVALID_CREDENTIALS) =>
            {
                return self.refuse_change(user_id).await;
            }
            Err(status) => return Err(Error::from_upstream("identity", status)),
        }
        let mut pooled = self.db.conn().await?;
        let conn: &mut AsyncPgConnection = &mut pooled;
        let ended = conn
            .transaction::<_, Error, _>(async |conn| {
                self.set_password(user_id, new_password.clone()).await?;
                let ended = Sessions::revoke_all_in(conn, user_id, keep, REASON_CHANGE).await?;
                record(conn, events::password_changed(user_id, ended)).await?;
                Ok(ended)
            })
            .await?;
        self.audit.committed();
        tracing::info!(%user_id, sessions_ended = ended, "password changed");
        Ok(())
    }

    async fn refuse_change(&self, user_id: Uuid) -> Result<(), Error> {
        self.audit
            .record(events::password_change_refused(user_id))
            .await?;
        Err(Error::WrongPassword)
    }

    /// Identity's `SetPassword`; its refusal of the password names `new_password`.
    async fn set_password(&self, user_id: Uuid, password: String) -> Result<(), Error> {
        self.identity
            .set_password(user_id.to_string(), password)
            .await
            .map_err(|status| match status.code() {
                Code::InvalidArgument => {
                    let rule = status.message();
                    let rule = rule.strip_prefix("password: ").unwrap_or(rule);
                    Error::invalid("new_password", rule)
                }
                _ => Error::from_upstream("identity", status),
            })
    }

    /// Stores a new token of `kind` for `user_id`, superseding the older ones, and
    /// queues its mail, in one transaction with `event`.
    async fn mint(
        &self,
        user_id: Uuid,
        kind: TokenKind,
        token: &NewAccountToken,
        mail: &Mail,
        event: NewAuditEvent,
    ) -> Result<(), Error> {
        let mut pooled = self.db.conn().await?;
        let conn: &mut AsyncPgConnection = &mut pooled;
        conn.transaction::<_, Error, _>(async |conn| {
            account_tokens::lock_user(conn, user_id, kind).await?;
            store_token(conn, &self.mailer, user_id, kind, token, mail, event).await
        })
        .await?;
        self.mailer.committed();
        self.audit.committed();
        Ok(())
    }
}

/// Inside the caller's transaction, which holds the user's lock: supersedes the older
/// unused tokens of `kind`, stores the new one, queues its mail and records `event`.
async fn store_token(
    conn: &mut AsyncPgConnection,
    mailer: &Mailer,
    user_id: Uuid,
    kind: TokenKind,
    token: &NewAccountToken,
    mail: &Mail,
    event: NewAuditEvent,
) -> Result<(), Error> {
    let now = Utc::now();
    account_tokens::supersede_unused(conn, user_id, kind, now).await?;
    account_tokens::insert(
        conn,
        &NewAccountTokenRow {
            id: Uuid::new_v4(),
            user_id,
            kind: kind.as_str(),
            token_hash: token.hash.0.to_vec(),
            created_at: now,
            expires_at: kind.expires_at(now),
        },
    )
    .await?;
    mailer.enqueue(conn, mail).await?;
    record(conn, event).await
}

/// The usable token of `kind` with `hash`, locked; anything else is the one refusal.
async fn usable_token(
    conn: &mut AsyncPgConnection,
    hash: &TokenHash,
    kind: TokenKind,
) -> Result<account_tokens::AccountTokenRow, Error> {
    let Some(token) = account_tokens::find_for_update(conn, hash, kind).await? else {
        tracing::info!(kind = kind.as_str(), "unknown account token");
        return Err(Error::InvalidAccountToken);
    };
    match token.state(Utc::now()) {
        TokenState::Usable => Ok(token),
        state => {
            tracing::info!(kind = kind.as_str(), user_id = %token.user_id, state = state.as_str(), "account token refused");
            Err(Error::InvalidAccountToken)
        }
    }
}

async fn record(conn: &mut AsyncPgConnection, event: NewAuditEvent) -> Result<(), Error> {
    outbox::record(conn, crate::SPEC.name, event).await?;
    Ok(())
}

/// Identity holds an email no mail server would take: its fault, not the caller's.
fn unmailable(error: MailError) -> Error {
    Error::from_upstream("identity", Status::internal(error.to_string()))
}
