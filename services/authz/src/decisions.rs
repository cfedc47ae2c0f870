//! Permission decisions with an in-process cache of each user's effective permissions.
//!
//! Freshness, within one instance and across several:
//! - every change of roles or grants bumps the `policy_version` row in the same
//!   transaction (a trigger, see the migration), and every lookup reads that version
//!   first (one primary-key read) and ignores entries computed under another one. A
//!   change committed through *any* Authz instance is therefore seen by every instance
//!   on its next Check, with no staleness window at all;
//! - the instance that made a change also drops the affected entries right away;
//! - entries expire after a short TTL (2 s by default) regardless, which bounds what a
//!   change that bypasses the version (a restored backup, SQL with triggers disabled)
//!   can leave behind.
//!
//! The version row was chosen over Postgres LISTEN/NOTIFY: NOTIFY needs a dedicated
//! connection outside the pool with reconnect handling, and a notification missed
//! while reconnecting silently leaves stale grants until the TTL; the version read is
//! transactional (a Check that starts after a commit sees it) and costs one indexed
//! read per Check, still far cheaper than joining grants and roles.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bulwark_kernel::db::Database;
use bulwark_kernel::request::PermissionSource;
use bulwark_kernel::tonic::Status;
use futures::future::BoxFuture;
use uuid::Uuid;

use crate::domain::{Permission, PermissionSet};
use crate::error::Error;
use crate::store;

/// Entries kept at most; beyond it expired entries are swept, then everything.
const MAX_ENTRIES: usize = 10_000;

struct Entry {
    version: i64,
    loaded_at: Instant,
    permissions: Arc<PermissionSet>,
}

/// Answers "does this user hold this permission?" from the database, cached.
pub struct Decisions {
    db: Database,
    ttl: Duration,
    entries: Mutex<HashMap<Uuid, Entry>>,
}

impl std::fmt::Debug for Decisions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decisions")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Decisions {
    pub fn new(db: Database, ttl: Duration) -> Self {
        Self {
            db,
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub async fn allows(&self, user: Uuid, wanted: &Permission) -> Result<bool, Error> {
        Ok(self.permissions_of(user).await?.allows(wanted))
    }

    /// The effective permissions of `user`.
    pub async fn permissions_of(&self, user: Uuid) -> Result<Arc<PermissionSet>, Error> {
        let mut conn = self.db.conn().await?;
        // The version is read before the grants: an entry is then filed under a
        // version no newer than the grants it was computed from, so a concurrent
        // change can make it be dropped too early, never kept too long.
        let version = store::policy_version(&mut conn).await?;
        if let Some(permissions) = self.cached(user, version) {
            return Ok(permissions);
        }
        let texts = store::granted_permissions(&mut conn, user).await?;
        let permissions = texts
            .iter()
            .filter_map(|text| match Permission::parse("permission", text) {
                Ok(permission) => Some(permission),
                Err(_) => {
                    // Only a hand-edited row can hold one; it grants nothing.
                    tracing::warn!(permission = %text, "ignoring a malformed stored permission");
                    None
                }
            })
            .collect();
        let permissions = Arc::new(PermissionSet::new(permissions));
        self.store(user, version, permissions.clone());
        Ok(permissions)
    }

    fn cached(&self, user: Uuid, version: i64) -> Option<Arc<PermissionSet>> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(&user)
            .filter(|entry| entry.version == version && entry.loaded_at.elapsed() < self.ttl)
            .map(|entry| entry.permissions.clone())
    }

    fn store(&self, user: Uuid, version: i64, permissions: Arc<PermissionSet>) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, entry| {
                entry.version == version && entry.loaded_at.elapsed() < self.ttl
            });
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(
            user,
            Entry {
                version,
                loaded_at: Instant::now(),
                permissions,
            },
        );
    }

    /// Drops what is cached for `user` (after a grant change committed here).
    pub fn forget(&self, user: Uuid) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(&user);
        }
    }

    /// Drops everything cached (after a role change committed here).
    pub fn forget_all(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}
/// Authz's own request layer decides users' permissions from its tables, not by
/// calling itself.
impl PermissionSource for Decisions {
    fn user_holds<'a>(
        &'a self,
        user: Uuid,
        permission: &'a Permission,
    ) -> BoxFuture<'a, Result<bool, Status>> {
        Box::pin(async move {
            self.allows(user, permission).await.map_err(|error| {
                tracing::error!(%error, "permission decision failed");
                Status::from(error)
            })
        })
    }
}

