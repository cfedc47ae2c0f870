//! The audit events Identity records, each in the transaction of the change it
//! describes. Details never hold secrets or the email (personal data stays in
//! Identity; the user id identifies the account).

use bulwark_kernel::outbox::NewAuditEvent;
use bulwark_proto::audit::v1::Outcome;
use serde_json::json;
use uuid::Uuid;

pub const REGISTER: &str = "user.register";
pub const UPDATE: &str = "user.update";
pub const DEACTIVATE: &str = "user.deactivate";

/// The `target` of an event about a user.
pub fn user_target(id: Uuid) -> String {
    format!("user:{id}")
}

/// A user registered themselves (the new user is the actor).
pub fn registered(user: Uuid) -> NewAuditEvent {
    NewAuditEvent {
        actor_id: user.to_string(),
        action: REGISTER.to_owned(),
        target: user_target(user),
        outcome: Outcome::Success,
        details: json!({}),
    }
}

/// The bootstrap admin was created at start from configuration.
pub fn admin_bootstrapped(user: Uuid) -> NewAuditEvent {
    NewAuditEvent {
        details: json!({ "source": "bootstrap" }),
        ..registered(user)
    }
}

/// `actor` changed (or was refused changing) a user's display name.
pub fn display_name_updated(actor: &str, user: Uuid, outcome: Outcome) -> NewAuditEvent {
    NewAuditEvent {
        actor_id: actor.to_owned(),
        action: UPDATE.to_owned(),
        target: user_target(user),
        outcome,
        details: json!({ "fields": ["display_name"] }),
    }
}

/// `actor` deactivated (or was refused deactivating) a user; `was_active` tells
/// whether the call changed anything.
pub fn deactivated(
    actor: &str,
    user: Uuid,
    outcome: Outcome,
    was_active: Option<bool>,
) -> NewAuditEvent {
    let details = match was_active {
        Some(was_active) => json!({ "was_active": was_active }),
        None => json!({}),
    };
    NewAuditEvent {
        actor_id: actor.to_owned(),
        action: DEACTIVATE.to_owned(),
        target: user_target(user),
        outcome,
        details,
    }
}
