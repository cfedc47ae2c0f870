//! gRPC handlers of `envoy.service.ratelimit.v3.RateLimitService`, the protocol Envoy's
//! ratelimit filter and the gateway filter speak, and the failure reporting that
//! `LeaseService` (in `lease.rs`) shares with them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bulwark_kernel::Kernel;
use bulwark_kernel::tonic::{Request, Response, Status};
use bulwark_limiter::metrics::REDIS_ERRORS_TOTAL;
use bulwark_limiter::{
    CheckRequest, Descriptor, DescriptorVerdict, Entry, InvalidRequest, Limiter, Rate, Unit,
    Verdict,
};
use bulwark_proto::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use bulwark_proto::envoy::service::ratelimit::v3::rate_limit_response::{
    self, Code, DescriptorStatus, rate_limit,
};
use bulwark_proto::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitService;
use bulwark_proto::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use bulwark_proto::envoy::r#type::v3::RateLimitUnit;

use crate::error::Error;

/// An outage fails every call; the error bus hears of it at most this often.
const OUTAGE_REPORT_PERIOD: Duration = Duration::from_secs(10);

/// The rate-limit service's handlers.
#[derive(Clone)]
pub struct RateLimitHandlers {
    kernel: Kernel,
    limiter: Arc<Limiter>,
    last_outage_report: Arc<Mutex<Option<Instant>>>,
}

impl std::fmt::Debug for RateLimitHandlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitHandlers")
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl RateLimitHandlers {
    pub fn new(kernel: Kernel, limiter: Arc<Limiter>) -> Self {
        Self {
            kernel,
            limiter,
            last_outage_report: Arc::default(),
        }
    }

    pub(crate) fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    async fn decide(&self, request: RateLimitRequest) -> Result<RateLimitResponse, Error> {
        let request = check_request(request)?;
        let verdict = self.limiter.check(&request).await?;
        Ok(response(&verdict))
    }

    /// Answers `result`; failures are counted, outages reported to the error bus at
    /// most every [`OUTAGE_REPORT_PERIOD`], internal errors every time.
    pub(crate) fn reply<T>(&self, result: Result<T, Error>) -> Result<Response<T>, Status> {
        result.map(Response::new).map_err(|error| {
            if error.is_unavailable() {
                metrics::counter!(REDIS_ERRORS_TOTAL, "kind" => "unavailable").increment(1);
                if self.outage_report_due() {
                    tracing::warn!(%error, "rate-limit store unavailable");
                    self.kernel.errors.error("redis", &error);
                }
            } else if error.is_internal() {
                metrics::counter!(REDIS_ERRORS_TOTAL, "kind" => "internal").increment(1);
                self.kernel.errors.error("grpc", &error);
            }
            error.into()
        })
    }

    fn outage_report_due(&self) -> bool {
        let Ok(mut last) = self.last_outage_report.lock() else {
            return true;
        };
        let now = Instant::now();
        match *last {
            Some(at) if now.duration_since(at) < OUTAGE_REPORT_PERIOD => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }
}

#[bulwark_kernel::tonic::async_trait]
impl RateLimitService for RateLimitHandlers {
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        let result = self.decide(request.into_inner()).await;
        self.reply(result)
    }
}

/// Validates Envoy's request into the limiter's question (public for the fuzz targets).
pub fn check_request(request: RateLimitRequest) -> Result<CheckRequest, InvalidRequest> {
    let descriptors = request
        .descriptors
        .into_iter()
        .enumerate()
        .map(|(index, descriptor)| {
            descriptor_from_proto(&format!("descriptors[{index}]"), descriptor)
        })
        .collect::<Result<Vec<_>, _>>()?;
    CheckRequest::new(request.domain, descriptors, request.hits_addend)
}

/// Envoy's descriptor as the limiter's; `at` names it in errors (`descriptors[0]`).
pub(crate) fn descriptor_from_proto(
    at: &str,
    descriptor: RateLimitDescriptor,
) -> Result<Descriptor, InvalidRequest> {
    let limit_override = match descriptor.limit {
        None => None,
        Some(limit) => {
            let field = |name: &str| format!("{at}.limit.{name}");
            let unit = match RateLimitUnit::try_from(limit.unit) {
                Ok(RateLimitUnit::Second) => Unit::Second,
                Ok(RateLimitUnit::Minute) => Unit::Minute,
                Ok(RateLimitUnit::Hour) => Unit::Hour,
                Ok(RateLimitUnit::Day) => Unit::Day,
                _ => {
                    return Err(InvalidRequest {
                        field: field("unit"),
                        rule: "must be SECOND, MINUTE, HOUR or DAY".to_owned(),
                    });
                }
            };
            if limit.requests_per_unit == 0 {
                return Err(InvalidRequest {
                    field: field("requests_per_unit"),
                    rule: "must be at least 1".to_owned(),
                });
            }
            Some(Rate {
                requests_per_unit: limit.requests_per_unit,
                unit,
            })
        }
    };
    Ok(Descriptor {
        entries: descriptor
            .entries
            .into_iter()
            .map(|entry| Entry {
                key: entry.key,
                value: entry.value,
            })
            .collect(),
        limit_override,
    })
}

fn response(verdict: &Verdict) -> RateLimitResponse {
    RateLimitResponse {
        overall_code: code(verdict.over_limit()).into(),
        statuses: verdict.statuses.iter().map(descriptor_status).collect(),
        ..RateLimitResponse::default()
    }
}

fn code(over_limit: bool) -> Code {
    if over_limit {
        Code::OverLimit
    } else {
        Code::Ok
    }
}

pub(crate) fn descriptor_status(status: &DescriptorVerdict) -> DescriptorStatus {
    DescriptorStatus {
        code: code(status.over_limit).into(),
        current_limit: status
            .limit
            .as_ref()
            .map(|limit| rate_limit_response::RateLimit {
                name: limit.name.clone().unwrap_or_default(),
                requests_per_unit: limit.rate.requests_per_unit,
                unit: unit(limit.rate.unit).into(),
            }),
        limit_remaining: status.remaining,
        duration_until_reset: status.reset_after.map(duration),
    }
}

pub(crate) fn duration(after: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(after.subsec_nanos()).unwrap_or(0),
    }
}

fn unit(unit: Unit) -> rate_limit::Unit {
    match unit {
        Unit::Second => rate_limit::Unit::Second,
        Unit::Minute => rate_limit::Unit::Minute,
        Unit::Hour => rate_limit::Unit::Hour,
        Unit::Day => rate_limit::Unit::Day,
    }
}
