//! gRPC handler of `bulwark.ratelimit.v1.LeaseService`: the edge leases budgets of hits
//! and renews them in batches instead of asking per request. The decisions are the
//! limiter's ([`Limiter::lease`](bulwark_limiter::Limiter::lease)); this module
//! translates the protocol and shares `ShouldRateLimit`'s failure reporting, so a
//! Redis outage answers the whole call UNAVAILABLE.

use bulwark_kernel::tonic::{Request, Response, Status};
use bulwark_limiter::{Grant, InvalidRequest, Lease, LeaseItem, LeaseMode, LeaseRequest};
use bulwark_proto::ratelimit::v1 as proto;
use bulwark_proto::ratelimit::v1::grant::Mode;
use bulwark_proto::ratelimit::v1::lease_service_server::LeaseService;

use crate::error::Error;
use crate::grpc::{RateLimitHandlers, descriptor_from_proto, descriptor_status, duration};

/// The lease handler: the rate-limit handlers' limiter and reporting, and the most items
/// one call may carry (`ratelimit.lease.max_items`).
#[derive(Debug, Clone)]
pub struct LeaseHandlers {
    handlers: RateLimitHandlers,
    max_items: usize,
}

impl LeaseHandlers {
    pub fn new(handlers: RateLimitHandlers, max_items: usize) -> Self {
        Self {
            handlers,
            max_items,
        }
    }

    async fn grant(&self, request: proto::LeaseRequest) -> Result<proto::LeaseResponse, Error> {
        let request = lease_request(request, self.max_items)?;
        let lease = self.handlers.limiter().lease(&request).await?;
        Ok(response(&lease))
    }
}

#[bulwark_kernel::tonic::async_trait]
impl LeaseService for LeaseHandlers {
    async fn lease(
        &self,
        request: Request<proto::LeaseRequest>,
    ) -> Result<Response<proto::LeaseResponse>, Status> {
        let result = self.grant(request.into_inner()).await;
        self.handlers.reply(result)
    }
}

/// Validates a lease request of at most `max_items` items into the limiter's (public for
/// the fuzz targets). Past `max_items + 1` items nothing is read: the count alone refuses.
pub fn lease_request(
    request: proto::LeaseRequest,
    max_items: usize,
) -> Result<LeaseRequest, InvalidRequest> {
    let items = request
        .items
        .into_iter()
        .take(max_items.saturating_add(1))
        .enumerate()
        .map(|(index, item)| {
            let at = format!("items[{index}].descriptor");
            let descriptor = item.descriptor.ok_or_else(|| InvalidRequest {
                field: at.clone(),
                rule: "is required".to_owned(),
            })?;
            Ok(LeaseItem {
                descriptor: descriptor_from_proto(&at, descriptor)?,
                held: item.held,
                spend: item.spend,
            })
        })
        .collect::<Result<Vec<_>, InvalidRequest>>()?;
    LeaseRequest::new(request.domain, items, max_items)
}

fn response(lease: &Lease) -> proto::LeaseResponse {
    proto::LeaseResponse {
        grants: lease.grants.iter().map(grant).collect(),
    }
}

fn grant(grant: &Grant) -> proto::Grant {
    proto::Grant {
        mode: mode(grant.mode).into(),
        granted: grant.granted,
        status: Some(descriptor_status(&grant.status)),
        lease_size: grant.lease_size,
        valid_for: grant.valid_for.map(duration),
    }
}

fn mode(mode: LeaseMode) -> Mode {
    match mode {
        LeaseMode::Unlimited => Mode::Unlimited,
        LeaseMode::Exact => Mode::Exact,
        LeaseMode::Leased => Mode::Leased,
    }
}
