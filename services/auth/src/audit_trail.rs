//! Audit events that stand alone (a refused attempt changes nothing else): one
//! outbox row, then a kick of the relay. Events that accompany a change are
//! recorded inside that change's transaction instead.

use bulwark_kernel::db::Database;
use bulwark_kernel::outbox::{self, NewAuditEvent, OutboxRelay};

use crate::error::Error;

/// The outbox of the `auth` schema and the relay that empties it.
#[derive(Debug, Clone)]
pub struct AuditTrail {
    db: Database,
    relay: OutboxRelay,
}

impl AuditTrail {
    pub fn new(db: Database, relay: OutboxRelay) -> Self {
        Self { db, relay }
    }

    /// Records one event on its own.
    pub async fn record(&self, event: NewAuditEvent) -> Result<(), Error> {
        let mut conn = self.db.conn().await?;
        outbox::record(&mut conn, crate::SPEC.name, event).await?;
        self.relay.kick();
        Ok(())
    }

    /// Wakes the relay after a transaction that recorded events has committed.
    pub fn committed(&self) {
        self.relay.kick();
    }
}
