//! The audit outbox: a service records each audit event in its own schema's
//! `audit_outbox` table in the same transaction as the change it describes; the relay
//! delivers pending events to Audit at least once (Audit drops duplicates by id), so
//! Audit being down delays events but never loses them.

use std::sync::Arc;
use std::time::Duration;

use bulwark_proto::audit::v1::{AuditEvent, Outcome};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use prost::Message as _;
use tokio::sync::Notify;

use crate::clients::AuditApi;
use crate::db::{Database, DbError};
use crate::error_bus::ErrorBus;

diesel::table! {
    /// Present in every service schema that records audit events (see its migration).
    audit_outbox (id) {
        id -> Uuid,
        occurred_at -> Timestamptz,
        event -> Bytea,
        delivered_at -> Nullable<Timestamptz>,
    }
}

/// Events per delivery batch (Audit accepts up to 500).
const BATCH: i64 = 200;
/// Poll interval when nothing is pending and nobody kicked the relay.
const IDLE_POLL: Duration = Duration::from_millis(500);
/// Longest wait between attempts while Audit is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Delivered rows are kept this long for inspection, then pruned.
const KEEP_DELIVERED: Duration = Duration::from_secs(24 * 3600);

/// An audit event as a service describes it; the outbox adds id, time and trace id.
#[derive(Debug, Clone)]
pub struct NewAuditEvent {
    pub actor_id: String,
    pub action: String,
    pub target: String,
    pub outcome: Outcome,
    /// Free-form JSON context; never secrets.
    pub details: serde_json::Value,
}

/// Writes `event` into the outbox on `conn`, which should be inside the transaction
/// that makes the change. Returns the event id.
pub async fn record(
    conn: &mut AsyncPgConnection,
    service: &str,
    event: NewAuditEvent,
) -> Result<uuid::Uuid, DbError> {
    let id = uuid::Uuid::now_v7();
    let now = chrono::Utc::now();
    let message = AuditEvent {
        id: id.to_string(),
        occurred_at: Some(crate::timestamp::to_proto(now)),
        service: service.to_owned(),
        actor_id: event.actor_id,
        action: event.action,
        target: event.target,
        outcome: event.outcome as i32,
        trace_id: crate::telemetry::current_trace_id().unwrap_or_default(),
        details: event.details.to_string(),
    };
    crate::db::traced(
        "outbox.record",
        diesel::insert_into(audit_outbox::table)
            .values((
                audit_outbox::id.eq(id),
                audit_outbox::occurred_at.eq(now),
                audit_outbox::event.eq(message.encode_to_vec()),
            ))
            .execute(conn),
    )
    .await?;
    Ok(id)
}

/// Delivers the outbox to Audit in the background until shutdown.
#[derive(Debug, Clone)]
pub struct OutboxRelay {
    kick: Arc<Notify>,
}

impl OutboxRelay {
    /// Starts the relay task; it stops when `stop` is notified (register that as a
    /// shutdown hook) after finishing the batch in hand.
    pub fn start(db: Database, audit: Arc<dyn AuditApi>, bus: ErrorBus, stop: Arc<Notify>) -> Self {
        let kick = Arc::new(Notify::new());
        tokio::spawn(run(db, audit, bus, kick.clone(), stop));
        Self { kick }
    }

    /// Wakes the relay now (after a commit) instead of at the next poll.
    pub fn kick(&self) {
        self.kick.notify_one();
    }
}

async fn run(
    db: Database,
    audit: Arc<dyn AuditApi>,
    bus: ErrorBus,
    kick: Arc<Notify>,
    stop: Arc<Notify>,
) {
    let mut backoff = Duration::from_millis(100);
    let mut failing = false;
    let mut rounds: u64 = 0;
    loop {
        let wait = match deliver_batch(&db, audit.as_ref()).await {
            Ok(delivered) => {
                if failing {
                    tracing::info!("audit outbox delivering again");
                    failing = false;
                }
                backoff = Duration::from_millis(100);
                metrics::counter!("audit_outbox_delivered_total").increment(delivered as u64);
                if delivered as i64 == BATCH {
                    Duration::ZERO
                } else {
                    IDLE_POLL
                }
            }
            Err(error) => {
                // Report the start of an outage once, not every retry.
                if !failing {
                    bus.report(
                        crate::error_bus::ErrorReport::error("outbox", &error)
                            .with_context("hint", "events stay queued until Audit is back"),
                    );
                    failing = true;
                }
                metrics::counter!("audit_outbox_delivery_failures_total").increment(1);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                backoff
            }
        };
        rounds += 1;
        if rounds.is_multiple_of(1000) {
            let _ = prune(&db).await;
        }
        tokio::select! {
            () = stop.notified() => {
                tracing::info!("audit outbox relay stopped");
                return;
            }
            () = kick.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("Audit refused the batch: {0}")]
    Audit(tonic::Status),
    #[error("undecodable outbox row {0}")]
    Corrupt(uuid::Uuid),
}

impl From<diesel::result::Error> for RelayError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Db(DbError::Query(error))
    }
}

/// Sends one batch of pending events; rows stay locked (and other relay instances
/// skip them) until Audit has acknowledged them.
async fn deliver_batch(db: &Database, audit: &dyn AuditApi) -> Result<usize, RelayError> {
    let mut conn = db.conn().await?;
    conn.transaction::<usize, RelayError, _>(async |conn| {
        let rows: Vec<(uuid::Uuid, Vec<u8>)> = audit_outbox::table
            .filter(audit_outbox::delivered_at.is_null())
            .order((audit_outbox::occurred_at, audit_outbox::id))
            .limit(BATCH)
            .select((audit_outbox::id, audit_outbox::event))
            .for_update()
            .skip_locked()
            .load(conn)
            .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut events = Vec::with_capacity(rows.len());
        for (id, bytes) in &rows {
            events
                .push(AuditEvent::decode(bytes.as_slice()).map_err(|_| RelayError::Corrupt(*id))?);
        }
        audit
            .append_events(events)
            .await
            .map_err(RelayError::Audit)?;
        let ids: Vec<uuid::Uuid> = rows.iter().map(|(id, _)| *id).collect();
        diesel::update(audit_outbox::table.filter(audit_outbox::id.eq_any(&ids)))
            .set(audit_outbox::delivered_at.eq(chrono::Utc::now()))
            .execute(conn)
            .await?;
        Ok(ids.len())
    })
    .await
}

async fn prune(db: &Database) -> Result<(), DbError> {
    let mut conn = db.conn().await?;
    let cutoff = chrono::Utc::now()
        - chrono::Duration::from_std(KEEP_DELIVERED).unwrap_or(chrono::Duration::days(1));
    diesel::delete(audit_outbox::table.filter(audit_outbox::delivered_at.lt(cutoff)))
        .execute(&mut conn)
        .await?;
    Ok(())
}

impl crate::Kernel {
    /// Starts this service's outbox relay to Audit and stops it during shutdown
    /// (after in-flight calls have drained, so their events are already committed).
    pub fn start_outbox_relay(&self) -> Result<OutboxRelay, crate::clients::ClientError> {
        Ok(self.start_outbox_relay_with(self.clients.audit()?))
    }

    /// [`Kernel::start_outbox_relay`] delivering to the given Audit client (tests pass
    /// an in-process one).
    pub fn start_outbox_relay_with(&self, audit: Arc<dyn AuditApi>) -> OutboxRelay {
        let stop = Arc::new(Notify::new());
        let relay = OutboxRelay::start(self.db.clone(), audit, self.errors.clone(), stop.clone());
        self.on_shutdown("audit outbox relay", move || async move {
            stop.notify_one();
        });
        relay
    }
}
