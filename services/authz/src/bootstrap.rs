//! Start-up: the `admin` role exists with every permission, and the bootstrap admin
//! (whose id the kernel derives from the configured email, as Identity does) holds it.

use bulwark_kernel::db::Database;
use bulwark_kernel::outbox::{self, NewAuditEvent};
use bulwark_proto::audit::v1::Outcome;
use diesel_async::AsyncConnection as _;
use uuid::Uuid;

use crate::domain::RoleName;
use crate::error::Error;
use crate::{SPEC, store};

/// What the `admin` role grants: every permission.
pub const ADMIN_PERMISSIONS: &str = "*:*";

/// Ensures the `admin` role (with exactly `*:*`) and its grant to `admin`. Idempotent,
/// and safe when several instances start at once. Creating either records the usual
/// audit event, with no actor. Returns whether any event was recorded.
///
/// The grant is ensured on every start: the configured admin always holds `admin`, and
/// revoking it from them lasts until the next start (change `BULWARK_ADMIN_EMAIL`
/// to hand the bootstrap role to someone else).
pub async fn ensure_admin(db: &Database, admin: Uuid) -> Result<bool, Error> {
    let role = RoleName::admin();
    let permissions = vec![ADMIN_PERMISSIONS.to_owned()];
    let mut conn = db.conn().await?;
    conn.transaction::<bool, Error, _>(async |conn| {
        let mut recorded = false;
        if store::insert_role(conn, role.as_str(), &permissions)
            .await?
            .is_some()
        {
            record(
                conn,
                "role.create",
                format!("role:{role}"),
                serde_json::json!({
                    "permissions": permissions,
                    "bootstrap": true,
                }),
            )
            .await?;
            recorded = true;
        } else if store::set_role_permissions(conn, role.as_str(), &permissions).await? {
            tracing::warn!("the admin role's permissions had been changed; restored *:*");
        }
        if store::insert_grant(conn, admin, role.as_str()).await? {
            record(
                conn,
                "role.grant",
                admin.to_string(),
                serde_json::json!({
                    "role": role.as_str(),
                    "bootstrap": true,
                }),
            )
            .await?;
            recorded = true;
        }
        Ok(recorded)
    })
    .await
}

async fn record(
    conn: &mut diesel_async::AsyncPgConnection,
    action: &str,
    target: String,
    details: serde_json::Value,
) -> Result<(), Error> {
    outbox::record(
        conn,
        SPEC.name,
        NewAuditEvent {
            actor_id: String::new(),
            action: action.to_owned(),
            target,
            outcome: Outcome::Success,
            details,
        },
    )
    .await?;
    Ok(())
}
