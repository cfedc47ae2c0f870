//! TOTP second factor (RFC 6238): enrolment, confirmation with ten recovery codes,
//! disable, and the second step of a login (`mfa_token` plus a code). Secrets are sealed
//! under the key-encryption key like the signing keys; a TOTP code is accepted once
//! (the step it matched is stored in the same transaction), a recovery code once.

use std::sync::Arc;

use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use uuid::Uuid;

use bulwark_kernel::clients::IdentityApi;
use bulwark_kernel::db::Database;
use bulwark_kernel::outbox;
use bulwark_proto::auth::v1::EnrollTotpResponse;

use crate::audit_trail::AuditTrail;
use crate::domain::events;
use crate::domain::recovery_codes::{self, NewRecoveryCodes, RecoveryCode};
use crate::domain::refresh_token::{TokenHash, parse_secret, random_secret};
use crate::domain::totp::{self, TotpCode, TotpSecret};
use crate::error::Error;
use crate::key_encryption::KeyEncryption;
use crate::store::{self, NewChallengeRow, TotpRow};

/// The issuer authenticator apps show beside the account.
const ISSUER: &str = "Bulwark";
/// How long an `mfa_token` lives.
const CHALLENGE_TTL: chrono::Duration = chrono::Duration::minutes(5);
/// How many codes one `mfa_token` may try.
const CHALLENGE_TRIES: i32 = 5;
/// Longest `mfa_token` accepted, in bytes.
const MAX_MFA_TOKEN_BYTES: usize = 512;

/// The second step of a login, passed: whose, and the lockout key of its email.
#[derive(Debug, Clone)]
pub struct Passed {
    pub user_id: Uuid,
    pub lockout_key: String,
    pub audit_target: String,
}

/// The second step of a login, failed.
#[derive(Debug)]
pub enum Refused {
    /// An unknown, used, expired or exhausted `mfa_token`: nobody to count it against.
    Token,
    /// A wrong code for a real challenge: counted against its email.
    Code(Passed),
}

/// What MFA needs.
pub struct Mfa {
    pub db: Database,
    pub sealing: Arc<KeyEncryption>,
    pub identity: Arc<dyn IdentityApi>,
    pub audit: AuditTrail,
}

impl std::fmt::Debug for Mfa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mfa").finish_non_exhaustive()
    }
}

/// What a sealed secret is bound to: its user.
fn sealing_label(user_id: Uuid) -> String {
    format!("totp:{user_id}")
}

impl Mfa {
    fn open(&self, user_id: Uuid, row: &TotpRow) -> Result<TotpSecret, Error> {
        let bytes = self
            .sealing
            .open(&sealing_label(user_id), &row.kek_id, &row.secret)?;
        TotpSecret::from_bytes(&bytes)
    }

    /// Whether the user has confirmed a TOTP secret.
    pub async fn is_enabled(&self, user_id: Uuid) -> Result<bool, Error> {
        let mut conn = self.db.conn().await?;
        Ok(store::totp_secret(&mut conn, user_id)
            .await?
            .is_some_and(|row| row.confirmed_at.is_some()))
    }

    /// A new pending secret for the user (replacing a pending one).
    pub async fn enroll(&self, user_id: Uuid) -> Result<EnrollTotpResponse, Error> {
        let user = self
            .identity
            .get_user(user_id.to_string())
            .await
            .map_err(|status| Error::from_upstream("identity", status))?;
        let secret = TotpSecret::generate()?;
        let sealed = self
            .sealing
            .seal(&sealing_label(user_id), secret.as_bytes())?;
        let mut conn = self.db.conn().await?;
        if !store::put_pending_totp(&mut conn, user_id, &sealed).await? {
            return Err(Error::FailedPrecondition(
                "MFA is already enabled; disable it first to enrol a new authenticator",
            ));
        }
        Ok(EnrollTotpResponse {
            otpauth_uri: secret.otpauth_uri(ISSUER, &user.email)?,
            secret: secret.to_base32(),
        })
    }

    /// Confirms the pending secret with a current code: MFA is on, and the recovery
    /// codes (shown this once) are returned.
    pub async fn confirm(&self, user_id: Uuid, code: &str) -> Result<Vec<String>, Error> {
        let code = TotpCode::parse(code)?;
        let mut pooled = self.db.conn().await?;
        let conn: &mut AsyncPgConnection = &mut pooled;
        let row = store::totp_secret(conn, user_id)
            .await?
            .filter(|row| row.confirmed_at.is_none())
            .ok_or(Error::FailedPrecondition(
                "no TOTP enrolment is pending: start one with POST /v1/auth/mfa/totp",
            ))?;
        let secret = self.open(user_id, &row)?;
        let wrong = || Error::invalid("code", "is not a current code of the pending secret");
        let step = totp::verify(&secret, &code, Utc::now(), stored_step(&row))
            .and_then(|step| i64::try_from(step).ok())
            .ok_or_else(wrong)?;
        let codes = NewRecoveryCodes::generate(user_id)?;
        conn.transaction::<_, Error, _>(async |conn| {
            if !store::accept_totp_step(conn, user_id, step, true).await? {
                return Err(wrong());
            }
            store::replace_recovery_codes(conn, user_id, &codes.hashes).await?;
            outbox::record(conn, crate::SPEC.name, events::mfa_enabled(user_id)).await?;
            Ok(())
        })
        .await?;
        self.audit.committed();
        self.publish(user_id, true).await?;
        Ok(codes.codes)
    }

    /// Turns MFA off given a current TOTP code or an unused recovery code.
    pub async fn disable(&self, user_id: Uuid, code: &str) -> Result<(), Error> {
        let factor = SecondFactor::parse(code)?;
        let mut pooled = self.db.conn().await?;
        let conn: &mut AsyncPgConnection = &mut pooled;
        let row = store::totp_secret(conn, user_id)
            .await?
            .filter(|row| row.confirmed_at.is_some())
            .ok_or(Error::FailedPrecondition("MFA is not enabled"))?;
        let secret = self.open(user_id, &row)?;
        let accepted = conn
            .transaction::<_, Error, _>(async |conn| {
                if !factor.accept(conn, user_id, &secret, &row).await? {
                    return Ok(false);
                }
                store::delete_mfa(conn, user_id).await?;
                outbox::record(conn, crate::SPEC.name, events::mfa_disabled(user_id)).await?;
                Ok(true)
            })
            .await?;
        if !accepted {
            return Err(Error::invalid(
                "code",
                "is neither a current TOTP code nor an unused recovery code",
            ));
        }
        self.audit.committed();
        self.publish(user_id, false).await?;
        Ok(())
    }

    /// Tells Identity, which shows `mfa_enabled` on the user. Auth's own tables decide
    /// logins; a failure here is reported, and the next enable or disable repeats it.
    async fn publish(&self, user_id: Uuid, enabled: bool) -> Result<(), Error> {
        self.identity
            .set_mfa_enabled(user_id.to_string(), enabled)
            .await
            .map(|_| ())
            .map_err(|status| Error::from_upstream("identity", status))
    }

    /// Starts the second step of a login whose password was right: the `mfa_token`.
    pub async fn challenge(
        &self,
        user_id: Uuid,
        lockout_key: String,
        audit_target: String,
    ) -> Result<String, Error> {
        let token = random_secret()?;
        let row = NewChallengeRow {
            token_hash: TokenHash::of(&token).0.to_vec(),
            user_id,
            lockout_key,
            audit_target,
            expires_at: Utc::now() + CHALLENGE_TTL,
        };
        let mut conn = self.db.conn().await?;
        store::insert_challenge(&mut conn, &row).await?;
        Ok(token)
    }

    /// Takes one try of `mfa_token` with `code`. Passed: the challenge is used up and
    /// the code with it.
    pub async fn complete(&self, mfa_token: &str, code: &str) -> Result<Passed, Refused> {
        let Ok(TokenHash(hash)) = parse_secret("mfa_token", mfa_token, MAX_MFA_TOKEN_BYTES) else {
            return Err(Refused::Token);
        };
        let outcome = self.try_once(&hash, code).await;
        match outcome {
            Ok(Some((passed, true))) => Ok(passed),
            Ok(Some((passed, false))) => Err(Refused::Code(passed)),
            Ok(None) => Err(Refused::Token),
            Err(error) => {
                tracing::error!(%error, "the second step of a login failed");
                Err(Refused::Token)
            }
        }
    }

    async fn try_once(&self, hash: &[u8], code: &str) -> Result<Option<(Passed, bool)>, Error> {
        let mut pooled = self.db.conn().await?;
        let conn: &mut AsyncPgConnection = &mut pooled;
        // The try is taken in a transaction of its own, so a wrong code still spends it.
        let Some(challenge) = store::try_challenge(conn, hash, Utc::now(), CHALLENGE_TRIES).await?
        else {
            return Ok(None);
        };
        let passed = Passed {
            user_id: challenge.user_id,
            lockout_key: challenge.lockout_key,
            audit_target: challenge.audit_target,
        };
        let Ok(factor) = SecondFactor::parse(code) else {
            return Ok(Some((passed, false)));
        };
        let Some(row) = store::totp_secret(conn, passed.user_id)
            .await?
            .filter(|row| row.confirmed_at.is_some())
        else {
            // MFA was turned off since the password step: start again.
            return Ok(None);
        };
        let secret = self.open(passed.user_id, &row)?;
        let user_id = passed.user_id;
        let accepted = conn
            .transaction::<_, Error, _>(async |conn| {
                if !factor.accept(conn, user_id, &secret, &row).await? {
                    return Ok(false);
                }
                store::use_challenge(conn, hash).await?;
                Ok(true)
            })
            .await?;
        Ok(Some((passed, accepted)))
    }
}

fn stored_step(row: &TotpRow) -> Option<u64> {
    row.last_used_step.and_then(|step| u64::try_from(step).ok())
}

/// A presented second factor: a TOTP code or a recovery code.
enum SecondFactor {
    Totp(TotpCode),
    Recovery(RecoveryCode),
}

impl SecondFactor {
    fn parse(code: &str) -> Result<Self, Error> {
        if let Ok(totp) = TotpCode::parse(code) {
            return Ok(Self::Totp(totp));
        }
        RecoveryCode::parse(code).map(Self::Recovery).map_err(|_| {
            Error::invalid(
                "code",
                "must be a 6-digit TOTP code or a recovery code (xxxx-xxxx-xxxx)",
            )
        })
    }

    /// Checks the factor and spends it, in the caller's transaction: `false` when it is
    /// wrong or was spent already.
    async fn accept(
        &self,
        conn: &mut AsyncPgConnection,
        user_id: Uuid,
        secret: &TotpSecret,
        row: &TotpRow,
    ) -> Result<bool, Error> {
        match self {
            Self::Totp(code) => {
                let Some(step) = totp::verify(secret, code, Utc::now(), stored_step(row))
                    .and_then(|step| i64::try_from(step).ok())
                else {
                    return Ok(false);
                };
                Ok(store::accept_totp_step(conn, user_id, step, false).await?)
            }
            Self::Recovery(code) => {
                let unused = store::unused_recovery_codes(conn, user_id).await?;
                let Some(index) = recovery_codes::find(user_id, code, &unused) else {
                    return Ok(false);
                };
                Ok(store::use_recovery_code(conn, user_id, &unused[index]).await?)
            }
        }
    }
}
