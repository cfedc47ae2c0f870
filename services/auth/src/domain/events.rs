//! The audit events Auth records, one per login, refresh, logout, session revocation,
//! key rotation, and step of the account flows (verification, reset, change).
//! None carries a secret: no password, token or key material, and a failed login
//! names the email only by a hash prefix.

use bulwark_kernel::outbox::NewAuditEvent;
use bulwark_proto::audit::v1::Outcome;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;
use uuid::Uuid;

pub const LOGIN: &str = "auth.login";
pub const REFRESH: &str = "auth.refresh";
pub const REFRESH_REUSE: &str = "auth.refresh_reuse";
pub const LOGOUT: &str = "auth.logout";
pub const SESSION_REVOKE: &str = "auth.session_revoke";
pub const MFA_ENABLE: &str = "auth.mfa_enable";
pub const MFA_DISABLE: &str = "auth.mfa_disable";
pub const MFA_LOGIN: &str = "auth.mfa_login";
pub const ACCOUNT_LOCK: &str = "auth.account_lock";
pub const KEY_ROTATE: &str = "auth.key_rotate";
pub const CLIENT_CREATE: &str = "auth.client_create";
pub const CLIENT_TOKEN: &str = "auth.client_token";
pub const CLIENT_DELETE: &str = "auth.client_delete";
pub const VERIFICATION_SEND: &str = "auth.email_verification_send";
pub const EMAIL_VERIFY: &str = "auth.email_verify";
pub const PASSWORD_RESET_REQUEST: &str = "auth.password_reset_request";
pub const PASSWORD_RESET: &str = "auth.password_reset";
pub const PASSWORD_CHANGE: &str = "auth.password_change";

fn event(
    actor: Option<Uuid>,
    action: &str,
    target: String,
    outcome: Outcome,
    details: serde_json::Value,
) -> NewAuditEvent {
    NewAuditEvent {
        // Empty means anonymous, as the audit API defines it.
        actor_id: actor.map(|id| id.to_string()).unwrap_or_default(),
        action: action.to_owned(),
        target,
        outcome,
        details,
    }
}

pub fn login_succeeded(user_id: Uuid, family_id: Uuid) -> NewAuditEvent {
    event(
        Some(user_id),
        LOGIN,
        user_id.to_string(),
        Outcome::Success,
        json!({ "family_id": family_id }),
    )
}

/// A refused login. `user_id` is known only when the password was right but the
/// account is inactive; `email_target` is [`super::credentials::Credentials::audit_target`].
pub fn login_failed(user_id: Option<Uuid>, email_target: String, reason: &str) -> NewAuditEvent {
    event(
        user_id,
        LOGIN,
        email_target,
        Outcome::Failure,
        json!({ "reason": reason }),
    )
}

pub fn refreshed(user_id: Uuid, family_id: Uuid) -> NewAuditEvent {
    event(
        Some(user_id),
        REFRESH,
        user_id.to_string(),
        Outcome::Success,
        json!({ "family_id": family_id }),
    )
}

/// A refused refresh: unknown, expired or revoked token, or an inactive user.
pub fn refresh_refused(
    user_id: Option<Uuid>,
    family_id: Option<Uuid>,
    reason: &str,
) -> NewAuditEvent {
    event(
        user_id,
        REFRESH,
        user_id.map(|id| id.to_string()).unwrap_or_default(),
        Outcome::Failure,
        json!({ "reason": reason, "family_id": family_id }),
    )
}

/// A used refresh token presented again: its whole family was revoked.
pub fn refresh_reused(user_id: Uuid, family_id: Uuid, revoked_tokens: usize) -> NewAuditEvent {
    event(
        Some(user_id),
        REFRESH_REUSE,
        user_id.to_string(),
        Outcome::Failure,
        json!({ "family_id": family_id, "revoked_tokens": revoked_tokens }),
    )
}

/// A logout; `revoked_tokens` is 0 when the token was unknown, already revoked or
/// someone else's.
/// The password step of a login passed and a second factor is asked for.
pub fn login_needs_mfa(user_id: Uuid) -> NewAuditEvent {
    event(
        Some(user_id),
        LOGIN,
        user_id.to_string(),
        Outcome::Success,
        json!({ "mfa_required": true }),
    )
}

pub fn mfa_enabled(user_id: Uuid) -> NewAuditEvent {
    event(
        Some(user_id),
        MFA_ENABLE,
        user_id.to_string(),
        Outcome::Success,
        json!({ "method": "totp" }),
    )
}

pub fn mfa_disabled(user_id: Uuid) -> NewAuditEvent {
    event(
        Some(user_id),
        MFA_DISABLE,
        user_id.to_string(),
        Outcome::Success,
        json!({ "method": "totp" }),
    )
}

/// The second step of a login: passed (a session started), or refused with `reason`
/// (anonymous when the `mfa_token` named nobody).
pub fn mfa_login(
    user_id: Option<Uuid>,
    session_id: Option<Uuid>,
    reason: Option<&str>,
) -> NewAuditEvent {
    let (outcome, details) = match reason {
        None => (Outcome::Success, json!({ "family_id": session_id })),
        Some(reason) => (Outcome::Failure, json!({ "reason": reason })),
    };
    let target = user_id.map(|id| id.to_string()).unwrap_or_default();
    event(user_id, MFA_LOGIN, target, outcome, details)
}

/// Consecutive failed logins locked an email (known or not) for `retry_after_seconds`.
/// The target is the email's audit target, never the address.
pub fn account_locked(
    user_id: Option<Uuid>,
    email_target: String,
    failures_reason: &str,
    retry_after_seconds: u64,
) -> NewAuditEvent {
    event(
        user_id,
        ACCOUNT_LOCK,
        email_target,
        Outcome::Success,
        json!({ "reason": failures_reason, "locked_seconds": retry_after_seconds }),
    )
}

/// The user ended one of their sessions by id.
pub fn session_revoked(user_id: Uuid, session_id: Uuid, revoked_tokens: usize) -> NewAuditEvent {
    event(
        Some(user_id),
        SESSION_REVOKE,
        session_id.to_string(),
        Outcome::Success,
        json!({ "revoked_tokens": revoked_tokens }),
    )
}

pub fn logged_out(user_id: Uuid, revoked_tokens: usize) -> NewAuditEvent {
    event(
        Some(user_id),
        LOGOUT,
        user_id.to_string(),
        Outcome::Success,
        json!({ "revoked_tokens": revoked_tokens }),
    )
}

/// A new service account (never its secret).
pub fn client_created(actor: &str, client_id: Uuid, name: &str, roles: &[String]) -> NewAuditEvent {
    NewAuditEvent {
        actor_id: actor.to_owned(),
        action: CLIENT_CREATE.to_owned(),
        target: format!("client:{client_id}"),
        outcome: Outcome::Success,
        details: json!({ "name": name, "roles": roles }),
    }
}

/// A deleted service account.
pub fn client_deleted(actor: &str, client_id: Uuid) -> NewAuditEvent {
    NewAuditEvent {
        actor_id: actor.to_owned(),
        action: CLIENT_DELETE.to_owned(),
        target: format!("client:{client_id}"),
        outcome: Outcome::Success,
        details: json!({}),
    }
}

/// A client-credentials token request: issued, or refused with its reason. The client
/// id is the one claimed, which a refused request does not prove.
pub fn client_token(client_id: &str, outcome: Outcome, reason: Option<&str>) -> NewAuditEvent {
    let actor = match outcome {
        Outcome::Success => format!("client:{client_id}"),
        _ => String::new(),
    };
    NewAuditEvent {
        actor_id: actor,
        action: CLIENT_TOKEN.to_owned(),
        target: format!("client:{client_id}"),
        outcome,
        details: match reason {
            Some(reason) => json!({ "reason": reason }),
            None => json!({}),
        },
    }
}

/// A rotation: `kid` signs from `activates_at`, when `previous_kid` retires.
pub fn key_rotated(
    actor: &str,
    kid: &str,
    previous_kid: Option<&str>,
    activates_at: DateTime<Utc>,
) -> NewAuditEvent {
    NewAuditEvent {
        actor_id: actor.to_owned(),
        action: KEY_ROTATE.to_owned(),
        target: format!("kid:{kid}"),
        outcome: Outcome::Success,
        details: json!({
            "previous_kid": previous_kid,
            "activates_at": activates_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        }),
    }
}

pub fn key_rotation_denied(actor: &str) -> NewAuditEvent {
    NewAuditEvent {
        actor_id: actor.to_owned(),
        action: KEY_ROTATE.to_owned(),
        target: String::new(),
        outcome: Outcome::Denied,
        details: json!({ "missing_permission": super::signing_key::ROTATE_PERMISSION }),
    }
}

/// A verification mail was queued for the user.
pub fn verification_sent(user_id: Uuid) -> NewAuditEvent {
    event(
        Some(user_id),
        VERIFICATION_SEND,
        user_id.to_string(),
        Outcome::Success,
        json!({}),
    )
}

/// A mailed verification token came back: the user's email is verified.
pub fn email_verified(user_id: Uuid) -> NewAuditEvent {
    event(
        Some(user_id),
        EMAIL_VERIFY,
        user_id.to_string(),
        Outcome::Success,
        json!({}),
    )
}

/// Someone asked for a reset mail for `email_target` (a hash prefix of the email);
/// `user_id` is the account when the email is known, `mailed` whether a mail went out
/// (not for an unknown or inactive account, nor over the hourly limit: `reason`).
pub fn password_reset_requested(
    user_id: Option<Uuid>,
    email_target: String,
    mailed: bool,
    reason: Option<&str>,
) -> NewAuditEvent {
    event(
        None,
        PASSWORD_RESET_REQUEST,
        user_id.map_or(email_target, |id| id.to_string()),
        Outcome::Success,
        json!({ "mailed": mailed, "reason": reason }),
    )
}

/// A reset token set a new password; every session of the user ended.
pub fn password_reset(user_id: Uuid, sessions_ended: usize) -> NewAuditEvent {
    event(
        Some(user_id),
        PASSWORD_RESET,
        user_id.to_string(),
        Outcome::Success,
        json!({ "sessions_ended": sessions_ended }),
    )
}

/// The user changed their password; every other session ended.
pub fn password_changed(user_id: Uuid, sessions_ended: usize) -> NewAuditEvent {
    event(
        Some(user_id),
        PASSWORD_CHANGE,
        user_id.to_string(),
        Outcome::Success,
        json!({ "sessions_ended": sessions_ended }),
    )
}

/// A password change refused for a wrong current password.
pub fn password_change_refused(user_id: Uuid) -> NewAuditEvent {
    event(
        Some(user_id),
        PASSWORD_CHANGE,
        user_id.to_string(),
        Outcome::Failure,
        json!({ "reason": "wrong_password" }),
    )
}
