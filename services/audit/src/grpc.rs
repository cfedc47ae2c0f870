//! gRPC handlers of `bulwark.audit.v1.AuditService`.
//!
//! `AppendEvents` is internal: the outbox relays call it with their service's token,
//! which must carry `audit:append`. `ListEvents`, `VerifyChain` and `ListCheckpoints`
//! need a bearer token whose subject holds `audit:read`. Audit records no audit events
//! of its own.

use std::collections::HashSet;
use std::sync::Arc;

use bulwark_kernel::Kernel;
use bulwark_kernel::caller::TokenVerifier;
use bulwark_kernel::clients::AuthzApi;
use bulwark_kernel::request::{PermissionSource, RequestLayer};
use bulwark_kernel::tonic::{Request, Response, Status};
use bulwark_proto::audit::v1::audit_service_server::AuditService;
use bulwark_proto::audit::v1::{
    AppendEventsRequest, AppendEventsResponse, AuditEvent, ChainProblem, CheckpointKey,
    InvalidCheckpoint, ListCheckpointsRequest, ListCheckpointsResponse, ListEventsRequest,
    ListEventsResponse, Outcome, VerifyChainRequest, VerifyChainResponse,
};
use diesel_async::AsyncConnection as _;

use crate::checkpoints::{Checkpoints, Gathered, Invalid};
use crate::domain::chain::{self, GENESIS};
use crate::domain::checkpoint_file;
use crate::domain::verification::{ChainWalk, Problem, Verdict};
use crate::domain::{self, ListQuery, OutcomeText as _, Page, PageToken};
use crate::error::Error;
use crate::store::{self, EventRow, NewEventRow};

/// Needed to list events and to verify the chain.
const AUDIT_READ: &str = "audit:read";
/// Needed (by a service account) to append events.
const AUDIT_APPEND: &str = "audit:append";
/// Events read per round trip while verifying the chain.
const VERIFY_BATCH: i64 = 1_000;
/// Most checkpoints one `VerifyChain` request may carry.
const MAX_KEPT_CHECKPOINTS: usize = 1_000;
/// Why checkpoint calls fail on an instance without a checkpoint key (`local` only).
const NO_CHECKPOINT_KEY: &str = "checkpoints are not configured on this Audit instance \
     (audit.checkpoint_key is unset, which only service.environment `local` allows)";

/// The audit service's handlers.
#[derive(Clone)]
pub struct AuditHandlers {
    kernel: Kernel,
    access: RequestLayer,
    /// `None` without a checkpoint key (`local` only): the chain is verified alone.
    checkpoints: Option<Arc<Checkpoints>>,
}

impl std::fmt::Debug for AuditHandlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditHandlers")
            .field("kernel", &self.kernel)
            .finish_non_exhaustive()
    }
}

impl AuditHandlers {
    pub fn new(
        kernel: Kernel,
        verifier: Arc<TokenVerifier>,
        authz: Arc<dyn AuthzApi>,
        checkpoints: Option<Arc<Checkpoints>>,
    ) -> Self {
        let authz: Arc<dyn PermissionSource> = Arc::new(authz);
        Self {
            kernel,
            access: RequestLayer::new(verifier, authz),
            checkpoints,
        }
    }

    fn checkpoints(&self) -> Result<&Checkpoints, Error> {
        self.checkpoints
            .as_deref()
            .ok_or_else(|| Error::FailedPrecondition(NO_CHECKPOINT_KEY.to_owned()))
    }

    /// Answers `result`; internal errors go to the error bus, clients see a bare
    /// "internal error".
    fn reply<T>(&self, result: Result<T, Error>) -> Result<Response<T>, Status> {
        result.map(Response::new).map_err(|error| {
            if error.is_internal() {
                self.kernel.errors.error("grpc", &error);
            }
            Status::from(error)
        })
    }

    async fn do_append(
        &self,
        request: Request<AppendEventsRequest>,
    ) -> Result<AppendEventsResponse, Error> {
        self.access.service(&request, AUDIT_APPEND).await?;
        let events = domain::validate_batch(request.into_inner().events)?;
        let ids: Vec<uuid::Uuid> = events.iter().map(|e| e.id).collect();
        let mut conn = self.kernel.db.conn().await?;
        let (appended, duplicates) = conn
            .transaction::<_, Error, _>(async |conn| {
                // One appender at a time from here to the commit: it reads the head and
                // extends it, so the chain stays linear across instances and tasks.
                store::lock_chain(conn).await?;
                let mut seen: HashSet<uuid::Uuid> =
                    store::existing_ids(conn, &ids).await?.into_iter().collect();
                let mut prev = store::head_hash(conn).await?.unwrap_or(GENESIS.to_vec());
                let mut rows = Vec::with_capacity(events.len());
                for event in &events {
                    // `insert` is false for an id stored before or earlier in this batch.
                    if !seen.insert(event.id) {
                        continue;
                    }
                    let hash = chain::link(&prev, &event.fields()).to_vec();
                    rows.push(NewEventRow {
                        id: event.id,
                        occurred_at: event.occurred_at,
                        service: &event.service,
                        actor_id: &event.actor_id,
                        action: &event.action,
                        target: &event.target,
                        outcome: event.outcome,
                        trace_id: &event.trace_id,
                        details: &event.details,
                        prev_hash: std::mem::replace(&mut prev, hash.clone()),
                        hash,
                    });
                }
                if !rows.is_empty() {
                    store::insert(conn, &rows).await?;
                }
                Ok((rows.len(), events.len() - rows.len()))
            })
            .await?;
        Ok(AppendEventsResponse {
            // Both are at most the batch limit (500).
            appended: i32::try_from(appended).unwrap_or(i32::MAX),
            duplicates: i32::try_from(duplicates).unwrap_or(i32::MAX),
        })
    }

    async fn do_list(
        &self,
        request: Request<ListEventsRequest>,
    ) -> Result<ListEventsResponse, Error> {
        let caller = self.access.caller(&request).await?;
        let query = ListQuery::parse(request.into_inner())?;
        self.access.require(&caller, AUDIT_READ).await?;

        let mut conn = self.kernel.db.conn().await?;
        let mut rows = store::list(&mut conn, &query).await?;
        let more = usize::try_from(query.page_size).is_ok_and(|size| rows.len() > size);
        if more {
            rows.pop();
        }
        let next_page_token = match rows.last() {
            Some(last) if more => PageToken {
                before_seq: last.seq,
            }
            .encode(),
            _ => String::new(),
        };
        Ok(ListEventsResponse {
            events: rows.into_iter().map(to_message).collect(),
            next_page_token,
        })
    }

    /// Recomputes the chain in `seq` order, in batches, up to the newest event at the
    /// start (appends made meanwhile are left for the next run), comparing it with the
    /// genuine checkpoints on the way (see `domain::verification`).
    async fn do_verify(
        &self,
        request: Request<VerifyChainRequest>,
    ) -> Result<VerifyChainResponse, Error> {
        self.access.authorize(&request, AUDIT_READ).await?;
        let kept = request.into_inner().checkpoints;
        if kept.len() > MAX_KEPT_CHECKPOINTS {
            return Err(Error::invalid(
                "checkpoints",
                format!("must hold at most {MAX_KEPT_CHECKPOINTS} checkpoints"),
            ));
        }

        let mut conn = self.kernel.db.conn().await?;
        // Gathered before the head is read: every genuine checkpoint is then at or
        // below the head, unless events were deleted.
        let gathered = match &self.checkpoints {
            Some(checkpoints) => checkpoints.gather(&mut conn, kept).await?,
            None if kept.is_empty() => Gathered::default(),
            None => return Err(Error::FailedPrecondition(NO_CHECKPOINT_KEY.to_owned())),
        };
        let up_to = store::max_seq(&mut conn).await?.unwrap_or(0);
        let mut walk = ChainWalk::new(gathered.genuine);
        let mut after = 0;
        'batches: loop {
            let batch = store::chain_batch(&mut conn, after, up_to, VERIFY_BATCH).await?;
            let Some(last) = batch.last() else {
                break;
            };
            after = last.seq;
            for row in &batch {
                if !walk.step(&row.link()) {
                    break 'batches;
                }
            }
        }
        let verdict = walk.finish();
        if let Some(problem) = verdict.problem {
            tracing::warn!(?problem, "audit chain problem");
        }
        Ok(verify_response(verdict, gathered.invalid))
    }

    async fn do_list_checkpoints(
        &self,
        request: Request<ListCheckpointsRequest>,
    ) -> Result<ListCheckpointsResponse, Error> {
        let caller = self.access.caller(&request).await?;
        let request = request.into_inner();
        let page = Page::parse(request.page_size, &request.page_token)?;
        self.access.require(&caller, AUDIT_READ).await?;
        let checkpoints = self.checkpoints()?;

        let mut conn = self.kernel.db.conn().await?;
        let before = page.after.map(|token| token.before_seq);
        let mut rows = store::checkpoint_page(&mut conn, before, page.page_size).await?;
        let more = usize::try_from(page.page_size).is_ok_and(|size| rows.len() > size);
        if more {
            rows.pop();
        }
        let next_page_token = match rows.last() {
            Some(last) if more => PageToken {
                before_seq: last.id,
            }
            .encode(),
            _ => String::new(),
        };
        Ok(ListCheckpointsResponse {
            // A row with wrong lengths cannot be a checkpoint (the table refuses them).
            checkpoints: rows
                .iter()
                .filter_map(store::CheckpointRow::checkpoint)
                .map(|checkpoint| checkpoint_file::to_message(&checkpoint))
                .collect(),
            next_page_token,
            keys: checkpoints
                .keys()
                .all()
                .iter()
                .map(|key| CheckpointKey {
                    key_id: key.key_id.clone(),
                    public_key: key.key.as_bytes().to_vec(),
                    current: key.current,
                })
                .collect(),
        })
    }
}

fn verify_response(verdict: Verdict, invalid: Vec<Invalid>) -> VerifyChainResponse {
    let (problem, first_broken_event_id) = match verdict.problem {
        None => (ChainProblem::None, String::new()),
        Some(Problem::Broken { event_id, .. }) => (ChainProblem::Broken, event_id.to_string()),
        Some(Problem::Rewritten { .. }) => (ChainProblem::Rewritten, String::new()),
        Some(Problem::Truncated { .. }) => (ChainProblem::Truncated, String::new()),
    };
    VerifyChainResponse {
        ok: verdict.problem.is_none() && invalid.is_empty(),
        first_broken_event_id,
        events_checked: verdict.events_checked,
        problem: problem as i32,
        first_bad_sequence: verdict.problem.map_or(0, Problem::seq),
        last_good_sequence: verdict.last_good_seq,
        head_sequence: verdict.head_seq,
        checkpoints_checked: i64::try_from(verdict.checkpoints).unwrap_or(i64::MAX),
        invalid_checkpoints: invalid
            .into_iter()
            .map(|invalid| InvalidCheckpoint {
                source: invalid.source,
                sequence: invalid.sequence,
                reason: invalid.reason,
            })
            .collect(),
    }
}

fn to_message(row: EventRow) -> AuditEvent {
    AuditEvent {
        id: row.id.to_string(),
        occurred_at: Some(bulwark_kernel::timestamp::to_proto(row.occurred_at)),
        outcome: Outcome::from_text(&row.outcome) as i32,
        service: row.service,
        actor_id: row.actor_id,
        action: row.action,
        target: row.target,
        trace_id: row.trace_id,
        details: row.details,
    }
}

#[bulwark_kernel::tonic::async_trait]
impl AuditService for AuditHandlers {
    async fn append_events(
        &self,
        request: Request<AppendEventsRequest>,
    ) -> Result<Response<AppendEventsResponse>, Status> {
        self.reply(self.do_append(request).await)
    }

    async fn list_events(
        &self,
        request: Request<ListEventsRequest>,
    ) -> Result<Response<ListEventsResponse>, Status> {
        self.reply(self.do_list(request).await)
    }

    async fn verify_chain(
        &self,
        request: Request<VerifyChainRequest>,
    ) -> Result<Response<VerifyChainResponse>, Status> {
        self.reply(self.do_verify(request).await)
    }

    async fn list_checkpoints(
        &self,
        request: Request<ListCheckpointsRequest>,
    ) -> Result<Response<ListCheckpointsResponse>, Status> {
        self.reply(self.do_list_checkpoints(request).await)
    }
}
