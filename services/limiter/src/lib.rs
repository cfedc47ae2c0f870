//! Rate limiting over Redis: limits from Envoy ratelimit's YAML files (hot-reloaded),
//! GCRA counting in one atomic Redis round trip, leased quotas for the edge
//! ([`Limiter::lease`], in the same buckets), and a tower layer for services that hold
//! their own requests to limits. The rate-limit service answers Envoy with the same
//! [`Limiter`]. [`AccountLockout`] locks accounts after consecutive failed logins.
//!
//! A service that wants its own limits builds a [`Limiter`] over the kernel's Redis and
//! wraps its generated tonic server in a [`RateLimitLayer`]:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use std::time::Duration;
//! # use anyhow::Context as _;
//! # use bulwark_kernel::{GrpcServices, Kernel};
//! use bulwark_limiter::{Descriptor, FailureMode, Limiter, LimitsWatch, RateLimitLayer};
//! use tower::Layer as _;
//!
//! # async fn app<S>(kernel: Kernel, server: S) -> anyhow::Result<GrpcServices>
//! # where
//! #     S: tower::Service<
//! #             http::Request<tonic::body::Body>,
//! #             Response = http::Response<tonic::body::Body>,
//! #             Error = std::convert::Infallible,
//! #         > + tonic::server::NamedService + Clone + Send + Sync + 'static,
//! #     S::Future: Send + 'static,
//! # {
//! let redis = kernel.redis.clone().context("redis.url is not set")?;
//! let watch = LimitsWatch::start(
//!     "limits.yaml".into(),
//!     Duration::from_secs(1),
//!     kernel.errors.clone(),
//! )
//! .await?;
//! let limiter = Arc::new(Limiter::new(&redis, watch.handle(), Duration::from_millis(500)));
//! kernel.on_shutdown("limit file reload", move || async move { watch.stop() });
//! // One hit per call, by the caller's address; calls without one are not limited.
//! let describe = |request: &http::Request<tonic::body::Body>| {
//!     let ip = request.headers().get("x-forwarded-for")?.to_str().ok()?;
//!     Some(vec![Descriptor::new([("client_ip", ip)])])
//! };
//! let layer = RateLimitLayer::new(limiter, "my-service", describe, FailureMode::Closed);
//! Ok(GrpcServices::new().with(layer.layer(server)))
//! # }
//! ```

pub mod layer;
pub mod lease;
pub mod limiter;
pub mod limits;
pub mod lockout;
pub mod metrics;
pub mod reload;
pub mod request;
pub mod verdict;

pub use layer::{Describe, FailureMode, RateLimitLayer, RateLimited};
pub use lease::{
    Grant, InvalidLeasePolicy, Lease, LeaseItem, LeaseMode, LeasePolicy, LeaseRequest,
};
pub use limiter::{Limiter, LimiterError};
pub use limits::{Limits, LimitsError, Rate, Unit};
pub use lockout::{
    AccountLockout, FailureOutcome, InvalidLockoutPolicy, LockoutKey, LockoutKeyer, LockoutPolicy,
    LockoutStatus, retry_after_seconds,
};
pub use reload::{LimitsHandle, LimitsWatch};
pub use request::{CheckRequest, Descriptor, Entry, InvalidRequest};
pub use verdict::{AppliedLimit, DescriptorVerdict, Verdict};
