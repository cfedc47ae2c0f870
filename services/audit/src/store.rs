//! Diesel queries of the `audit` schema: appends under the chain lock, filtered
//! keyset listing, ordered batches for chain verification, and the signed checkpoints.
//!
//! Events and checkpoints are only ever inserted and selected: the runtime role needs
//! no UPDATE or DELETE on either.

use bulwark_kernel::db::{DbError, traced};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::domain::ListQuery;
use crate::domain::chain::EventFields;
use crate::domain::checkpoint::{Checkpoint, HASH_BYTES};
use crate::domain::verification::Link;
use crate::schema::{checkpoints, events};

/// Key of the transaction-level advisory lock every append takes, so that one append
/// at a time reads the chain's head and extends it (`seq` order is chain order).
/// Arbitrary but fixed: the first 8 bytes of SHA-256("bulwark.audit.chain") as a
/// big-endian i64 (0xf6856a81c7a4d88d).
const CHAIN_LOCK_KEY: i64 = -683_022_662_843_967_347;
/// Key of the transaction-level advisory lock taken while checkpointing, so that
/// instances take turns and one head is signed once: the first 8 bytes of
/// SHA-256("bulwark.audit.checkpoint") as a big-endian i64 (0x24fc67412fa4bca8).
const CHECKPOINT_LOCK_KEY: i64 = 2_665_118_609_166_351_528;

/// A stored event.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = events, check_for_backend(diesel::pg::Pg))]
pub struct EventRow {
    pub seq: i64,
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub service: String,
    pub actor_id: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub trace_id: String,
    pub details: String,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

impl EventRow {
    /// The row as the chain verification walks it.
    pub fn link(&self) -> Link<'_> {
        Link {
            seq: self.seq,
            prev_hash: &self.prev_hash,
            hash: &self.hash,
            fields: self.fields(),
        }
    }

    pub fn fields(&self) -> EventFields<'_> {
        EventFields {
            id: self.id,
            occurred_at: self.occurred_at,
            service: &self.service,
            actor_id: &self.actor_id,
            action: &self.action,
            target: &self.target,
            outcome: &self.outcome,
            trace_id: &self.trace_id,
            details: &self.details,
        }
    }
}

/// A chained event about to be stored.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = events)]
pub struct NewEventRow<'a> {
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub service: &'a str,
    pub actor_id: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub outcome: &'a str,
    pub trace_id: &'a str,
    pub details: &'a str,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

/// Takes the chain lock until the end of the current transaction.
pub async fn lock_chain(conn: &mut AsyncPgConnection) -> Result<(), DbError> {
    traced(
        "events.lock_chain",
        diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
            .bind::<diesel::sql_types::BigInt, _>(CHAIN_LOCK_KEY)
            .execute(conn),
    )
    .await?;
    Ok(())
}

/// Which of `ids` are already stored.
pub async fn existing_ids(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
) -> Result<Vec<Uuid>, DbError> {
    traced(
        "events.existing_ids",
        events::table
            .filter(events::id.eq_any(ids))
            .select(events::id)
            .load(conn),
    )
    .await
}

/// The hash of the newest event; `None` for an empty log.
pub async fn head_hash(conn: &mut AsyncPgConnection) -> Result<Option<Vec<u8>>, DbError> {
    traced("events.head", async {
        events::table
            .order(events::seq.desc())
            .select(events::hash)
            .first(conn)
            .await
            .optional()
    })
    .await
}

pub async fn insert(
    conn: &mut AsyncPgConnection,
    rows: &[NewEventRow<'_>],
) -> Result<usize, DbError> {
    traced(
        "events.insert",
        diesel::insert_into(events::table)
            .values(rows)
            .execute(conn),
    )
    .await
}

/// One page of `query`, newest first, with one extra row (if there is one) telling
/// whether another page follows.
pub async fn list(
    conn: &mut AsyncPgConnection,
    query: &ListQuery,
) -> Result<Vec<EventRow>, DbError> {
    let mut select = events::table.select(EventRow::as_select()).into_boxed();
    if let Some(actor_id) = &query.actor_id {
        select = select.filter(events::actor_id.eq(actor_id));
    }
    if let Some(action) = &query.action {
        select = select.filter(events::action.eq(action));
    }
    if let Some(from) = query.from_time {
        select = select.filter(events::occurred_at.ge(from));
    }
    if let Some(to) = query.to_time {
        select = select.filter(events::occurred_at.lt(to));
    }
    if let Some(after) = query.after {
        select = select.filter(events::seq.lt(after.before_seq));
    }
    traced(
        "events.list",
        select
            .order(events::seq.desc())
            .limit(query.page_size + 1)
            .load(conn),
    )
    .await
}

/// The highest `seq` stored; `None` for an empty log.
pub async fn max_seq(conn: &mut AsyncPgConnection) -> Result<Option<i64>, DbError> {
    traced(
        "events.max_seq",
        events::table
            .select(diesel::dsl::max(events::seq))
            .get_result(conn),
    )
    .await
}

/// Up to `limit` events with `after < seq <= up_to`, in chain order.
pub async fn chain_batch(
    conn: &mut AsyncPgConnection,
    after: i64,
    up_to: i64,
    limit: i64,
) -> Result<Vec<EventRow>, DbError> {
    traced(
        "events.chain_batch",
        events::table
            .filter(events::seq.gt(after))
            .filter(events::seq.le(up_to))
            .order(events::seq.asc())
            .limit(limit)
            .select(EventRow::as_select())
            .load(conn),
    )
    .await
}

/// Takes the checkpoint lock until the end of the current transaction.
pub async fn lock_checkpoints(conn: &mut AsyncPgConnection) -> Result<(), DbError> {
    traced(
        "checkpoints.lock",
        diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
            .bind::<diesel::sql_types::BigInt, _>(CHECKPOINT_LOCK_KEY)
            .execute(conn),
    )
    .await?;
    Ok(())
}

/// The newest event's `seq` and hash; `None` for an empty log.
pub async fn head(conn: &mut AsyncPgConnection) -> Result<Option<(i64, Vec<u8>)>, DbError> {
    traced("events.head_link", async {
        events::table
            .order(events::seq.desc())
            .select((events::seq, events::hash))
            .first(conn)
            .await
            .optional()
    })
    .await
}

/// A stored checkpoint.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = checkpoints, check_for_backend(diesel::pg::Pg))]
pub struct CheckpointRow {
    pub id: i64,
    pub sequence: i64,
    pub hash: Vec<u8>,
    pub signed_at: DateTime<Utc>,
    pub key_id: String,
    pub signature: Vec<u8>,
}

impl CheckpointRow {
    /// The checkpoint, if the row has the lengths the table's checks promise.
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        Some(Checkpoint {
            sequence: self.sequence,
            hash: <[u8; HASH_BYTES]>::try_from(self.hash.as_slice()).ok()?,
            signed_at: self.signed_at,
            key_id: self.key_id.clone(),
            signature: self.signature.as_slice().try_into().ok()?,
        })
    }
}

/// Whether a checkpoint of this (sequence, hash) is stored.
pub async fn is_checkpointed(
    conn: &mut AsyncPgConnection,
    sequence: i64,
    hash: &[u8],
) -> Result<bool, DbError> {
    traced(
        "checkpoints.exists",
        diesel::select(diesel::dsl::exists(
            checkpoints::table
                .filter(checkpoints::sequence.eq(sequence))
                .filter(checkpoints::hash.eq(hash)),
        ))
        .get_result(conn),
    )
    .await
}

pub async fn insert_checkpoint(
    conn: &mut AsyncPgConnection,
    checkpoint: &Checkpoint,
) -> Result<(), DbError> {
    traced(
        "checkpoints.insert",
        diesel::insert_into(checkpoints::table)
            .values((
                checkpoints::sequence.eq(checkpoint.sequence),
                checkpoints::hash.eq(checkpoint.hash.as_slice()),
                checkpoints::signed_at.eq(checkpoint.signed_at),
                checkpoints::key_id.eq(&checkpoint.key_id),
                checkpoints::signature.eq(checkpoint.signature.as_slice()),
            ))
            .execute(conn),
    )
    .await?;
    Ok(())
}

/// One page of checkpoints stored before `before_id` (all when `None`), newest
/// first, with one extra row (if there is one) telling whether another page follows.
pub async fn checkpoint_page(
    conn: &mut AsyncPgConnection,
    before_id: Option<i64>,
    page_size: i64,
) -> Result<Vec<CheckpointRow>, DbError> {
    let mut select = checkpoints::table
        .select(CheckpointRow::as_select())
        .into_boxed();
    if let Some(before_id) = before_id {
        select = select.filter(checkpoints::id.lt(before_id));
    }
    traced(
        "checkpoints.page",
        select
            .order(checkpoints::id.desc())
            .limit(page_size + 1)
            .load(conn),
    )
    .await
}

/// Every stored checkpoint, oldest first.
pub async fn all_checkpoints(conn: &mut AsyncPgConnection) -> Result<Vec<CheckpointRow>, DbError> {
    traced(
        "checkpoints.all",
        checkpoints::table
            .order(checkpoints::id.asc())
            .select(CheckpointRow::as_select())
            .load(conn),
    )
    .await
}
