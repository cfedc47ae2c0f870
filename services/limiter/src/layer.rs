//! A tower layer that holds a service's own requests to limits, asking the same
//! [`Limiter`] as the rate-limit service: a closure describes each request (or says no
//! limit applies), an over-limit request is answered RESOURCE_EXHAUSTED with
//! `retry-after` and the `ratelimit-*` headers, and a limiter failure is let through or
//! refused UNAVAILABLE as the layer's failure mode says.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::{HeaderName, HeaderValue};
use tower::{Layer, Service};

use crate::limiter::Limiter;
use crate::request::{CheckRequest, Descriptor};
use crate::verdict::{DescriptorVerdict, Verdict};

/// The message of every refusal over a limit: the edge's words, so that a client reads
/// the same whichever limit refused it.
pub const RATE_LIMITED_MESSAGE: &str = "rate limit exceeded, retry later";

/// What to do with a request when the limiter cannot decide (Redis down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureMode {
    /// Let it through: availability over strictness.
    Open,
    /// Refuse it with UNAVAILABLE: for limits that guard against abuse (logins).
    Closed,
}

/// Builds a request's descriptors; `None` means no limit applies to it.
pub trait Describe<B>: Send + Sync + 'static {
    fn describe(&self, request: &http::Request<B>) -> Option<Vec<Descriptor>>;
}

impl<B, F> Describe<B> for F
where
    F: Fn(&http::Request<B>) -> Option<Vec<Descriptor>> + Send + Sync + 'static,
{
    fn describe(&self, request: &http::Request<B>) -> Option<Vec<Descriptor>> {
        self(request)
    }
}

/// The layer; cheap to clone.
pub struct RateLimitLayer<D> {
    shared: Arc<Shared<D>>,
}

impl<D> Clone for RateLimitLayer<D> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<D> std::fmt::Debug for RateLimitLayer<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("domain", &self.shared.domain)
            .field("failure_mode", &self.shared.failure_mode)
            .finish_non_exhaustive()
    }
}

struct Shared<D> {
    limiter: Arc<Limiter>,
    domain: String,
    describe: D,
    failure_mode: FailureMode,
}

impl<D> RateLimitLayer<D> {
    /// Limits requests in `domain` by the descriptors `describe` builds, each counted
    /// as one hit.
    pub fn new(
        limiter: Arc<Limiter>,
        domain: impl Into<String>,
        describe: D,
        failure_mode: FailureMode,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                limiter,
                domain: domain.into(),
                describe,
                failure_mode,
            }),
        }
    }
}

impl<S, D> Layer<S> for RateLimitLayer<D> {
    type Service = RateLimited<S, D>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimited {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// A service behind [`RateLimitLayer`].
pub struct RateLimited<S, D> {
    inner: S,
    shared: Arc<Shared<D>>,
}

impl<S: Clone, D> Clone for RateLimited<S, D> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S, D> std::fmt::Debug for RateLimited<S, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimited")
            .field("domain", &self.shared.domain)
            .finish_non_exhaustive()
    }
}

/// A wrapped generated tonic server keeps its name, so [`bulwark_kernel::GrpcServices::with`]
/// routes to it and reports its health as before.
impl<S: tonic::server::NamedService, D> tonic::server::NamedService for RateLimited<S, D> {
    const NAME: &'static str = S::NAME;
}

/// The layer's decision on one request.
enum Gate<RB> {
    /// Go on, adding these headers to the response.
    Pass(Vec<(HeaderName, HeaderValue)>),
    Refuse(http::Response<RB>),
}

impl<S, D, B, RB> Service<http::Request<B>> for RateLimited<S, D>
where
    S: Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    RB: Default + Send + 'static,
    D: Describe<B>,
{
    type Response = http::Response<RB>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The clone that was polled ready serves this call (tower's usual swap).
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let shared = Arc::clone(&self.shared);
        let descriptors = shared.describe.describe(&request);
        Box::pin(async move {
            let Some(descriptors) = descriptors else {
                return inner.call(request).await;
            };
            match shared.gate(descriptors).await {
                Gate::Refuse(response) => Ok(response),
                Gate::Pass(headers) => {
                    let mut response = inner.call(request).await?;
                    response.headers_mut().extend(headers);
                    Ok(response)
                }
            }
        })
    }
}

impl<D> Shared<D> {
    async fn gate<RB: Default>(&self, descriptors: Vec<Descriptor>) -> Gate<RB> {
        let request = match CheckRequest::new(self.domain.clone(), descriptors, 1) {
            Ok(request) => request,
            Err(error) => {
                tracing::warn!(%error, domain = %self.domain, "rate-limit descriptor refused");
                return self.on_failure();
            }
        };
        match self.limiter.check(&request).await {
            Ok(verdict) if verdict.over_limit() => {
                let mut response =
                    tonic::Status::resource_exhausted(RATE_LIMITED_MESSAGE).into_http::<RB>();
                response.headers_mut().extend(headers(&verdict));
                Gate::Refuse(response)
            }
            Ok(verdict) => Gate::Pass(headers(&verdict)),
            Err(error) => {
                tracing::warn!(%error, domain = %self.domain, "rate limiter unavailable");
                self.on_failure()
            }
        }
    }

    fn on_failure<RB: Default>(&self) -> Gate<RB> {
        match self.failure_mode {
            FailureMode::Open => Gate::Pass(Vec::new()),
            FailureMode::Closed => {
                Gate::Refuse(tonic::Status::unavailable("rate limiting is unavailable").into_http())
            }
        }
    }
}

/// `ratelimit-limit`, `ratelimit-remaining`, `ratelimit-reset` of the tightest limit,
/// plus `retry-after` when refused: the same headers the edge sends.
fn headers(verdict: &Verdict) -> Vec<(HeaderName, HeaderValue)> {
    let Some(status) = verdict.governing() else {
        return Vec::new();
    };
    let reset = reset_seconds(status);
    let mut headers = Vec::with_capacity(4);
    if let Some(limit) = &status.limit {
        headers.push((
            HeaderName::from_static("ratelimit-limit"),
            HeaderValue::from(limit.rate.requests_per_unit),
        ));
    }
    let remaining = if status.over_limit {
        0
    } else {
        status.remaining
    };
    headers.push((
        HeaderName::from_static("ratelimit-remaining"),
        HeaderValue::from(remaining),
    ));
    headers.push((
        HeaderName::from_static("ratelimit-reset"),
        HeaderValue::from(reset),
    ));
    if verdict.over_limit() {
        headers.push((http::header::RETRY_AFTER, HeaderValue::from(reset)));
    }
    headers
}

/// Whole seconds, rounded up: a client retrying after a rounded-down value would be
/// refused again.
fn reset_seconds(status: &DescriptorVerdict) -> u64 {
    status.reset_after.map_or(1, |after| {
        (after.as_secs() + u64::from(after.subsec_nanos() > 0)).max(1)
    })
}
