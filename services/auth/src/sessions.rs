//! Login sessions: login issues a token pair and starts a session (a refresh token
//! family), refresh exchanges a refresh token for a new pair in the same session (and
//! revokes it when a used token comes back), logout and the owner's revocation by id end
//! it. Revoked sessions are listed for the edge, which refuses their access tokens.

use std::sync::Arc;

use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use uuid::Uuid;

use bulwark_kernel::clients::{AuthzApi, IdentityApi};
use bulwark_kernel::config::TokensConfig;
use bulwark_kernel::db::Database;
use bulwark_kernel::outbox;
use bulwark_kernel::request::Refusal;
use bulwark_kernel::tonic::{Code, Status};
use bulwark_limiter::LockoutKey;
use bulwark_proto::auth::v1::TokenPair;

use crate::audit_trail::AuditTrail;
use crate::config::AuthConfig;
use crate::domain::access_token::AccessClaims;
use crate::domain::credentials::Credentials;
use crate::domain::events;
use crate::domain::refresh_token::{NewRefreshToken, TokenHash, TokenState};
use crate::domain::session::ClientInfo;
use crate::error::Error;
use crate::keys::KeyRing;
use crate::lockout::{Failure, LoginLockout};
use crate::mfa::{self, Mfa};
use crate::store::{self, NewRefreshRow, NewSessionRow, RefreshRow, SessionRow};

/// At most this many roles go into a token, each at most this long, so the token
/// stays well under the 4 KiB the API promises.
const MAX_TOKEN_ROLES: usize = 32;
const MAX_TOKEN_ROLE_BYTES: usize = 64;

/// Why a session was revoked when a used refresh token came back.
const REASON_REUSE: &str = "refresh_reuse";
/// At most this many sessions are listed.
const MAX_LISTED_SESSIONS: i64 = 100;
/// At most this many revoked sessions per page of the edge's feed.
const REVOKED_PAGE: usize = 1_000;
/// How far back each page of the feed looks again: a revocation's time is taken inside
/// its transaction, so one that commits late appears in the next answers still.
const REVOKED_LOOKBACK_MS: i64 = 10_000;

/// What login, refresh and logout need.
pub struct Sessions {
    pub db: Database,
    pub keys: Arc<KeyRing>,
    pub identity: Arc<dyn IdentityApi>,
    pub authz: Arc<dyn AuthzApi>,
    pub audit: AuditTrail,
    pub config: AuthConfig,
    pub tokens: TokensConfig,
    pub lockout: LoginLockout,
    pub mfa: Arc<Mfa>,
}

/// How a login's password step ended.
pub enum LoginOutcome {
    /// A session started.
    Pair(TokenPair),
    /// The password was right and a second factor is needed: `LoginMfa` with this.
    MfaRequired { mfa_token: String },
}

impl std::fmt::Debug for LoginOutcome {
    /// Names the case only: both carry secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Pair(_) => "Pair",
            Self::MfaRequired { .. } => "MfaRequired",
        })
    }
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A page of revoked sessions for the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedPage {
    /// Each session and when its last access token expires at the latest (Unix seconds).
    pub sessions: Vec<(Uuid, i64)>,
    /// Where the next call starts (Unix milliseconds).
    pub next_since_ms: i64,
    /// Whether more wait beyond this page.
    pub more: bool,
}

/// A token pair and the stored form of its refresh token.
struct Issued {
    pair: TokenPair,
    row: NewRefreshRow,
}

/// How the final, atomic step of a refresh ended.
enum Exchange {
    Done(TokenPair),
    Refused,
}

impl Sessions {
    /// Checks the credentials with Identity and issues a pair. Unknown email, wrong
    /// password and inactive account all end in the same [`Error::InvalidCredentials`],
    /// each with a failure event.
    pub async fn login(
        &self,
        credentials: Credentials,
        client: ClientInfo,
    ) -> Result<LoginOutcome, Error> {
        let lockout_key = self.lockout.key(&credentials.normalized_email());
        // A locked email is refused before its password is looked at, right or wrong.
        self.lockout.check(lockout_key.as_ref()).await?;
        let verified = self
            .identity
            .verify_credentials(
                credentials.email().to_owned(),
                credentials.password().to_owned(),
            )
            .await;
        let user_id = match verified {
            Ok(verified) => {
                let user_id = Uuid::parse_str(&verified.user_id).map_err(|_| {
                    Error::from_upstream(
                        "identity",
                        Status::internal("VerifyCredentials answered a malformed user id"),
                    )
                })?;
                if !verified.active {
                    return self
                        .refuse_login(
                            Some(user_id),
                            &credentials,
                            lockout_key.as_ref(),
                            "inactive_account",
                        )
                        .await;
                }
                user_id
            }
            // Identity's own input rules (e.g. a malformed email) end like a wrong
            // password: the answer must not tell which check failed. Identity refusing
            // Auth's own service token is also UNAUTHENTICATED, but with another
            // message: that is a fault of ours, not a wrong password, and must be loud.
            Err(status)
                if matches!(status.code(), Code::InvalidArgument | Code::NotFound)
                    || (status.code() == Code::Unauthenticated
                        && status.message() == crate::error::INVALID_CREDENTIALS) =>
            {
                return self
                    .refuse_login(
                        None,
                        &credentials,
                        lockout_key.as_ref(),
                        "invalid_credentials",
                    )
                    .await;
            }
            Err(status) => return Err(Error::from_upstream("identity", status)),
        };

        if self.mfa.is_enabled(user_id).await? {
            let mfa_token = self
                .mfa
                .challenge(
                    user_id,
                    lockout_key
                        .as_ref()
                        .map(|key| key.as_str().to_owned())
                        .unwrap_or_default(),
                    credentials.audit_target(),
                )
                .await?;
            self.audit.record(events::login_needs_mfa(user_id)).await?;
            return Ok(LoginOutcome::MfaRequired { mfa_token });
        }
        self.lockout.success(lockout_key.as_ref()).await;
        let pair = self
            .start_session(user_id, client, |family_id| {
                events::login_succeeded(user_id, family_id)
            })
            .await?;
        Ok(LoginOutcome::Pair(pair))
    }

    /// The second step of a login with MFA: a session starts when the code is right.
    /// A wrong code counts as a failed login of the email; every refusal is the same
    /// [`Error::InvalidMfa`] (or [`Error::LockedOut`] while the email is locked).
    pub async fn login_mfa(
        &self,
        mfa_token: &str,
        code: &str,
        client: ClientInfo,
    ) -> Result<TokenPair, Error> {
        match self.mfa.complete(mfa_token, code).await {
            Ok(passed) => {
                let key = LockoutKey::from_stored(&passed.lockout_key);
                self.lockout.check(key.as_ref()).await?;
                self.lockout.success(key.as_ref()).await;
                let user_id = passed.user_id;
                self.start_session(user_id, client, |family_id| {
                    events::mfa_login(Some(user_id), Some(family_id), None)
                })
                .await
            }
            Err(mfa::Refused::Token) => {
                self.audit
                    .record(events::mfa_login(None, None, Some("invalid_mfa_token")))
                    .await?;
                Err(Error::InvalidMfa)
            }
            Err(mfa::Refused::Code(passed)) => {
                let key = LockoutKey::from_stored(&passed.lockout_key);
                // Locked already: this try is refused as locked, and not counted.
                self.lockout.check(key.as_ref()).await?;
                self.audit
                    .record(events::mfa_login(
                        Some(passed.user_id),
                        None,
                        Some("wrong_code"),
                    ))
                    .await?;
                self.count_failure(
                    Some(passed.user_id),
                    passed.audit_target,
                    key.as_ref(),
                    "mfa",
                )
                .await?;
                Err(Error::InvalidMfa)
            }
        }
    }

    /// Counts a failed login against its email, and records the lock it may start.
    async fn count_failure(
        &self,
        user_id: Option<Uuid>,
        audit_target: String,
        key: Option<&LockoutKey>,
        reason: &str,
    ) -> Result<(), Error> {
        if let Failure::Locked {
            retry_after_seconds,
        } = self.lockout.failure(key).await
        {
            tracing::warn!(%audit_target, retry_after_seconds, "account locked after consecutive failed logins");
            self.audit
                .record(events::account_locked(
                    user_id,
                    audit_target,
                    reason,
                    retry_after_seconds,
                ))
                .await?;
        }
        Ok(())
    }

    /// Starts a session for `user_id`: a token pair, the session row, its first refresh
    /// token and `event` (given the session id), in one transaction.
    async fn start_session(
        &self,
        user_id: Uuid,
        client: ClientInfo,
        event: impl FnOnce(Uuid) -> bulwark_kernel::outbox::NewAuditEvent,
    ) -> Result<TokenPair, Error> {
        let roles = self.roles_of(user_id).await;
        let family_id = Uuid::new_v4();
        let issued = self.issue(user_id, roles, family_id, None).await?;
        let mut pooled = self.db.conn().await?;
        let conn: &mut AsyncPgConnection = &mut pooled;
        let session = NewSessionRow {
            id: family_id,
            user_id,
            created_at: issued.row.created_at,
            last_used_at: issued.row.created_at,
            expires_at: issued.row.expires_at,
            ip: client.ip,
            user_agent: client.user_agent,
        };
        let event = event(family_id);
        conn.transaction::<_, Error, _>(async |conn| {
            store::insert_session(conn, &session).await?;
            store::insert_refresh_token(conn, &issued.row).await?;
            outbox::record(conn, crate::SPEC.name, event).await?;
            Ok(())
        })
        .await?;
        self.audit.committed();
        Ok(issued.pair)
    }

    async fn refuse_login(
        &self,
        user_id: Option<Uuid>,
        credentials: &Credentials,
        lockout_key: Option<&LockoutKey>,
        reason: &str,
    ) -> Result<LoginOutcome, Error> {
        self.audit
            .record(events::login_failed(
                user_id,
                credentials.audit_target(),
                reason,
            ))
            .await?;
        self.count_failure(user_id, credentials.audit_target(), lockout_key, "password")
            .await?;
        Err(Error::InvalidCredentials)
    }

    /// Exchanges a usable refresh token for a new pair in the same family. A token
    /// that was already used revokes its family; every refusal is the same
    /// [`Error::InvalidRefreshToken`].
    pub async fn refresh(&self, hash: TokenHash) -> Result<TokenPair, Error> {
        let found = {
            let mut conn = self.db.conn().await?;
            store::find_refresh_token(&mut conn, &hash).await?
        };
        let Some(row) = found else {
            return self.refuse_refresh(None, "unknown_token").await;
        };
        match row.state(Utc::now()) {
            TokenState::Usable => {}
            TokenState::Used => return self.reuse_detected(&row).await,
            state @ (TokenState::Revoked | TokenState::Expired) => {
                return self.refuse_refresh(Some(&row), state.as_str()).await;
            }
        }
        if !self.is_active(row.user_id).await {
            return self.revoke_for_inactive_user(&row).await;
        }

        let roles = self.roles_of(row.user_id).await;
        let issued = self
            .issue(row.user_id, roles, row.family_id, Some(row.id))
            .await?;
        let mut pooled = self.db.conn().await?;
        let conn: &mut AsyncPgConnection = &mut pooled;
        let exchange = conn
            .transaction::<_, Error, _>(async |conn| {
                store::lock_family(conn, row.family_id).await?;
                let now = Utc::now();
                if store::claim_refresh_token(conn, row.id, now).await? {
                    store::insert_refresh_token(conn, &issued.row).await?;
                    store::touch_session(conn, row.family_id, now, issued.row.expires_at).await?;
                    outbox::record(
                        conn,
                        crate::SPEC.name,
                        events::refreshed(row.user_id, row.family_id),
                    )
                    .await?;
                    return Ok(Exchange::Done(issued.pair));
                }
                // Someone changed the token since it was read: a concurrent refresh
                // used it (reuse), or a logout or reuse elsewhere revoked it.
                let state = store::refresh_token_by_id(conn, row.id)
                    .await?
                    .map_or(TokenState::Revoked, |current| current.state(now));
                let event = if state == TokenState::Used {
                    let revoked =
                        store::revoke_family(conn, row.family_id, now, REASON_REUSE).await?;
                    events::refresh_reused(row.user_id, row.family_id, revoked)
                } else {
                    events::refresh_refused(Some(row.user_id), Some(row.family_id), state.as_str())
                };
                outbox::record(conn, crate::SPEC.name, event).await?;
                Ok(Exchange::Refused)
            })
            .await?;
        self.audit.committed();
        match exchange {
            Exchange::Done(pair) => Ok(pair),
            Exchange::Refused => {
                tracing::info!(family_id = %row.family_id, "refresh token changed while being exchanged; refused");
                Err(Error::InvalidRefreshToken)
            }
        }
    }

    async fn refuse_refresh(
        &self,
        row: Option<&RefreshRow>,
        reason: &str,
    ) -> Result<TokenPair, Error> {
        self.audit
            .record(events::refresh_refused(
                row.map(|r| r.user_id),
                row.map(|r| r.family_id),
                reason,
            ))
            .await?;
        Err(Error::InvalidRefreshToken)
    }

    /// A used token came back: whoever holds the family may be an attacker who
    /// copied it, so every token of the login is revoked.
    async fn reuse_detected(&self, row: &RefreshRow) -> Result<TokenPair, Error> {
        let mut pooled = self.db.conn().await?;
        let conn: &mut AsyncPgConnection = &mut pooled;
        let revoked = conn
            .transaction::<_, Error, _>(async |conn| {
                store::lock_family(conn, row.family_id).await?;
                let revoked =
                    store::revoke_family(conn, row.family_id, Utc::now(), REASON_REUSE).await?;
                outbox::record(
                    conn,
                    crate::SPEC.name,
                    events::refresh_reused(row.user_id, row.family_id, revoked),
                )
                .await?;
                Ok(revoked)
            })
            .await?;
        self.audit.committed();
        tracing::warn!(family_id = %row.family_id, user_id = %row.user_id, revoked, "refresh token reused; family revoked");
        Err(Error::InvalidRefreshToken)
    }

    async fn revoke_for_inactive_user(&self, row: &RefreshRow) -> Result<TokenPair, Error> {
        let mut pooled = self.db.conn().await?;
        let conn: &mut AsyncPgConnection = &mut pooled;
        conn.transaction::<_, Error, _>(async |conn| {
            store::lock_family(conn, row.family_id).await?;
            store::revoke_family(conn, row.family_id, Utc::now(), "inactive_user").await?;
            outbox::record(
                conn,
                crate::SPEC.name,
                events::refresh_refused(Some(row.user_id), Some(row.family_id), "inactive_user"),
            )
            .await?;
            Ok(())
        })
        .await?;
        self.audit.committed();
        Err(Error::InvalidRefreshToken)
    }

    /// Revokes the family of `hash` if it belongs to `user_id`; an unknown or someone
    /// else's token changes nothing. Always records one logout event.
    pub async fn logout(&self, user_id: Uuid, hash: TokenHash) -> Result<(), Error> {
        let mut pooled = self.db.conn().await?;
        let conn: &mut AsyncPgConnection = &mut pooled;
        conn.transaction::<_, Error, _>(async |conn| {
            let revoked = match store::find_refresh_token(conn, &hash).await? {
                Some(row) if row.user_id == user_id => {
                    store::lock_family(conn, row.family_id).await?;
                    // After the lock, so it also sees a child that a refresh of the
                    // family committed meanwhile.
                    store::revoke_family(conn, row.family_id, Utc::now(), "logout").await?
                }
                _ => 0,
            };
            outbox::record(conn, crate::SPEC.name, events::logged_out(user_id, revoked)).await?;
            Ok(())
        })
        .await?;
        self.audit.committed();
        Ok(())
    }

    /// The user's live sessions, most recently used first; `current` marks the one the
    /// calling token belongs to.
    pub async fn list(
        &self,
        user_id: Uuid,
        current: Option<Uuid>,
    ) -> Result<Vec<(SessionRow, bool)>, Error> {
        let mut conn = self.db.conn().await?;
        if let Some(current) = current {
            Self::require_live(&mut conn, current).await?;
        }
        let rows =
            store::live_sessions(&mut conn, user_id, Utc::now(), MAX_LISTED_SESSIONS).await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let is_current = current == Some(row.id);
                (row, is_current)
            })
            .collect())
    }

    /// Refuses a token of a revoked session: the edge does too, within seconds; this
    /// holds for a caller that reaches Auth another way, and in those seconds.
    async fn require_live(conn: &mut AsyncPgConnection, session_id: Uuid) -> Result<(), Error> {
        match store::session_by_id(conn, session_id).await? {
            Some(row) if row.revoked_at.is_some() => Err(Refusal::Unauthenticated.into()),
            _ => Ok(()),
        }
    }

    /// Ends the user's session `session_id`. Someone else's session, an unknown one and
    /// one already ended or expired are all [`Error::NotFound`], with no event.
    pub async fn revoke(
        &self,
        user_id: Uuid,
        current: Option<Uuid>,
        session_id: Uuid,
    ) -> Result<(), Error> {
        let mut pooled = self.db.conn().await?;
        let conn: &mut AsyncPgConnection = &mut pooled;
        if let Some(current) = current {
            Self::require_live(conn, current).await?;
        }
        let found = conn
            .transaction::<_, Error, _>(async |conn| {
                store::lock_family(conn, session_id).await?;
                let now = Utc::now();
                let live = store::session_by_id(conn, session_id).await?.filter(|s| {
                    s.user_id == user_id && s.revoked_at.is_none() && s.expires_at > now
                });
                if live.is_none() {
                    return Ok(false);
                }
                let revoked =
                    store::revoke_family(conn, session_id, now, "revoked_by_user").await?;
                outbox::record(
                    conn,
                    crate::SPEC.name,
                    events::session_revoked(user_id, session_id, revoked),
                )
                .await?;
                Ok(true)
            })
            .await?;
        if !found {
            return Err(Error::NotFound("session"));
        }
        self.audit.committed();
        Ok(())
    }

    /// Ends every live session of `user_id` but `except` (the caller's own, for a
    /// password change), inside the caller's transaction, with `reason`; their access
    /// tokens are refused at the edge within seconds. Returns how many sessions ended.
    /// Sessions are locked in id order, so two of these for one user cannot deadlock.
    pub async fn revoke_all_in(
        conn: &mut AsyncPgConnection,
        user_id: Uuid,
        except: Option<Uuid>,
        reason: &str,
    ) -> Result<usize, Error> {
        let now = Utc::now();
        let mut ended = 0;
        for session_id in store::live_session_ids(conn, user_id, now).await? {
            if Some(session_id) == except {
                continue;
            }
            store::lock_family(conn, session_id).await?;
            store::revoke_family(conn, session_id, now, reason).await?;
            ended += 1;
        }
        Ok(ended)
    }

    /// A page of the edge's feed of revoked sessions: those revoked at or after
    /// `since_ms` (Unix milliseconds; 0 or anything older than the access-token
    /// lifetime means all whose tokens may still be unexpired), each with the time its
    /// last access token expires at the latest, and the `since_ms` of the next call.
    pub async fn revoked(&self, since_ms: i64) -> Result<RevokedPage, Error> {
        let now = Utc::now();
        let ttl_ms = i64::try_from(self.config.access_token_ttl_seconds)
            .unwrap_or(i64::MAX)
            .saturating_mul(1_000);
        let from_ms = since_ms.max(now.timestamp_millis().saturating_sub(ttl_ms));
        let from = chrono::DateTime::<Utc>::from_timestamp_millis(from_ms).unwrap_or(now);
        let limit = i64::try_from(REVOKED_PAGE).unwrap_or(i64::MAX) + 1;
        let mut rows = {
            let mut conn = self.db.conn().await?;
            store::revoked_since(&mut conn, from, limit).await?
        };
        let more = rows.len() > REVOKED_PAGE;
        rows.truncate(REVOKED_PAGE);
        let next_since_ms = match rows.last() {
            // A full page: go on from its last revocation (the next page repeats the
            // rows of that millisecond; the caller keeps a set). Forward by at least a
            // millisecond, so a thousand revocations in one cannot stall the feed.
            Some((_, at)) if more => at.timestamp_millis().max(from_ms + 1),
            _ => from_ms.max(now.timestamp_millis() - REVOKED_LOOKBACK_MS),
        };
        let ttl = i64::try_from(self.config.access_token_ttl_seconds).unwrap_or(i64::MAX);
        Ok(RevokedPage {
            sessions: rows
                .into_iter()
                .map(|(id, at)| (id, at.timestamp().saturating_add(ttl)))
                .collect(),
            next_since_ms,
            more,
        })
    }

    /// Whether Identity still knows the user as active. Only a definite answer
    /// (inactive, or no such user) refuses; when Identity cannot answer, the refresh
    /// goes ahead: login already checked the account, and failing every refresh
    /// while Identity is down would log everybody out.
    async fn is_active(&self, user_id: Uuid) -> bool {
        match self.identity.get_user(user_id.to_string()).await {
            Ok(user) => user.active,
            Err(status) if status.code() == Code::NotFound => false,
            Err(status) => {
                tracing::warn!(%user_id, code = ?status.code(), message = status.message(), "cannot confirm the user is active; refreshing anyway");
                true
            }
        }
    }

    /// The user's roles for the token. When Authz cannot answer the token carries
    /// none rather than failing the login: roles in a token are informational, every
    /// permission decision asks Authz itself.
    async fn roles_of(&self, user_id: Uuid) -> Vec<String> {
        match self.authz.list_user_roles(user_id.to_string()).await {
            Ok(response) => {
                let mut roles = response.roles;
                roles.retain(|role| role.len() <= MAX_TOKEN_ROLE_BYTES);
                roles.truncate(MAX_TOKEN_ROLES);
                roles
            }
            Err(status) => {
                tracing::warn!(%user_id, code = ?status.code(), message = status.message(), "cannot list the user's roles; issuing a token without roles");
                Vec::new()
            }
        }
    }

    /// Signs an access token and mints a refresh token for `user_id` in `family_id`.
    async fn issue(
        &self,
        user_id: Uuid,
        roles: Vec<String>,
        family_id: Uuid,
        parent_id: Option<Uuid>,
    ) -> Result<Issued, Error> {
        let now = Utc::now();
        let key = self.keys.signing_key().await?;
        let ttl = self.config.access_token_ttl_seconds;
        let claims = AccessClaims::new(&self.tokens, user_id, family_id, roles, now, ttl);
        let access_token = key.sign(&claims)?;
        let refresh = NewRefreshToken::generate()?;
        let expires_at = chrono::Duration::from_std(self.config.refresh_ttl())
            .ok()
            .and_then(|ttl| now.checked_add_signed(ttl))
            .unwrap_or(chrono::DateTime::<Utc>::MAX_UTC);
        Ok(Issued {
            pair: TokenPair {
                access_token,
                refresh_token: refresh.plaintext,
                token_type: "Bearer".to_owned(),
                expires_in: i32::try_from(ttl).unwrap_or(i32::MAX),
            },
            row: NewRefreshRow {
                id: Uuid::new_v4(),
                family_id,
                user_id,
                token_hash: refresh.hash.0.to_vec(),
                parent_id,
                created_at: now,
                expires_at,
            },
        })
    }
}
