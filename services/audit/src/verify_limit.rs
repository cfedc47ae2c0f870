//! Audit's own limit on `VerifyChain`, which reads and re-hashes the whole log: the
//! most expensive call in the system, and one that the edge's per-user limit (100 a
//! second) does not keep from tying up every Audit instance. Each caller may start only
//! a few a minute (`limits.yaml`, domain `bulwark-audit`), counted in Redis across
//! instances by the limiter's tower layer.
//!
//! The caller is the subject of the bearer token, verified here with the verifier the
//! handlers use, never a header: a header can be set by anyone, who could then spend
//! another caller's allowance. A call whose token does not verify is not counted; the
//! handler refuses it UNAUTHENTICATED. A verified caller is counted before its
//! permission is checked, so a caller without `audit:read` spends only its own allowance.

use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use bulwark_kernel::Kernel;
use bulwark_kernel::caller::{TokenVerifier, bearer_token};
use bulwark_kernel::config::ConfigError;
use bulwark_kernel::tonic::body::Body;
use bulwark_kernel::tonic::metadata::MetadataMap;
use bulwark_kernel::tonic::server::NamedService;
use bulwark_limiter::limits::Lookup;
use bulwark_limiter::{
    Descriptor, FailureMode, Limiter, Limits, LimitsWatch, RateLimitLayer, RateLimited,
};
use futures::future::BoxFuture;
use tower::{Layer as _, Service};

use crate::config::AuditConfig;

/// The rate-limit domain of Audit's limits file.
pub const DOMAIN: &str = "bulwark-audit";
/// The one path the generated server answers as `VerifyChain`: every other spelling is
/// UNIMPLEMENTED, so this is the only one to count.
pub const VERIFY_CHAIN_PATH: &str = "/bulwark.audit.v1.AuditService/VerifyChain";
/// How often the limits file is read again for changes.
const RELOAD_INTERVAL: Duration = Duration::from_secs(1);
/// Bound on one decision's Redis work; past it the failure mode decides.
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);
/// Without Redis, `VerifyChain` goes ahead uncounted: it only reads, the edge's
/// per-user limit still holds, and a Redis outage must not also keep auditors from
/// checking the log, which is when they may most want to. For the same reason Redis
/// does not make Audit unready.
const FAILURE_MODE: FailureMode = FailureMode::Open;

/// One `VerifyChain` call by `caller` (a user id or `client:<id>`).
fn descriptor(caller: &str) -> Descriptor {
    Descriptor::new([("rpc", "VerifyChain"), ("caller", caller)])
}

/// Audit's limits, loaded and kept current, ready to guard its server.
pub struct VerifyLimit {
    limiter: Arc<Limiter>,
    verifier: Arc<TokenVerifier>,
}

impl std::fmt::Debug for VerifyLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyLimit")
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl VerifyLimit {
    /// Loads the limits file of `audit.limits_path` and reloads it until shutdown;
    /// `None` when it is not set (environment `local` only). A file that cannot be read,
    /// is refused, or sets no limit for `VerifyChain` stops the start, as does a missing
    /// `redis.url`. Callers verify tokens with `verifier`.
    pub async fn start(
        kernel: &Kernel,
        verifier: Arc<TokenVerifier>,
    ) -> anyhow::Result<Option<Self>> {
        let config: AuditConfig = kernel.settings().section("audit")?;
        let environment = &kernel.config().service.environment;
        let Some(path) = config.limiting(environment, kernel.redis.is_some())? else {
            return Ok(None);
        };
        let redis = kernel
            .redis
            .as_ref()
            .context("redis.url is not set, which limiting() refuses")?;
        // Audit works without Redis (the limit fails open): `/ready` shows it down but
        // does not take Audit out of the mesh for it.
        kernel.readiness.tolerate(redis);
        let watch = LimitsWatch::start(path.clone(), RELOAD_INTERVAL, kernel.errors.clone())
            .await
            .map_err(|error| invalid_file(error.to_string()))?;
        check_limits(&watch.handle().current(), &path)?;
        let limiter = Arc::new(Limiter::new(redis, watch.handle(), REDIS_TIMEOUT));
        kernel.on_shutdown("audit limits reload", move || async move { watch.stop() });
        // Connect and load the script now, so that the first calls do not pay for it.
        if let Err(error) = limiter.warm_up().await {
            tracing::warn!(%error, "Redis is not reachable yet: VerifyChain is not limited until it is");
        }
        tracing::info!(path = %path.display(), domain = DOMAIN, "VerifyChain is limited per caller");
        Ok(Some(Self { limiter, verifier }))
    }

    /// `server` with each verified caller's `VerifyChain` calls held to the limits.
    pub fn guard<S>(&self, server: S) -> Guarded<S> {
        let describe: DescribeFn = describe;
        let limited =
            RateLimitLayer::new(Arc::clone(&self.limiter), DOMAIN, describe, FAILURE_MODE)
                .layer(server);
        Authenticated {
            inner: limited,
            verifier: Arc::clone(&self.verifier),
        }
    }
}

fn invalid_file(reason: String) -> ConfigError {
    ConfigError::Invalid {
        key: "audit.limits_path".to_owned(),
        reason,
    }
}

/// Refuses a limits file that sets nothing for `VerifyChain` (another domain, a
/// misspelt key), which would leave it unlimited without a word. `unlimited: true` says
/// so on purpose and is accepted. A later reload is taken as written.
fn check_limits(limits: &Limits, path: &Path) -> Result<(), ConfigError> {
    let probe = descriptor("any-caller");
    match limits
        .domain(DOMAIN)
        .map(|domain| domain.find(&probe.entries))
    {
        Some(Lookup::Rule(_)) => Ok(()),
        _ => Err(invalid_file(format!(
            "{} sets no limit for VerifyChain: it needs domain `{DOMAIN}` with a descriptor \
             `rpc: VerifyChain` holding `caller` (services/audit/limits.yaml is the default; \
             `unlimited: true` lifts the limit on purpose)",
            path.display()
        ))),
    }
}

/// A caller whose bearer token [`Authenticated`] verified, by actor id. Private, so
/// that nothing but this module puts one on a request.
#[derive(Debug, Clone)]
struct VerifiedCaller(String);

/// How the limiter's layer describes a call: by the verified caller on it, if any.
type DescribeFn = fn(&http::Request<Body>) -> Option<Vec<Descriptor>>;

fn describe(request: &http::Request<Body>) -> Option<Vec<Descriptor>> {
    let VerifiedCaller(caller) = request.extensions().get::<VerifiedCaller>()?;
    Some(vec![descriptor(caller)])
}

/// Audit's server behind the limit.
pub type Guarded<S> = Authenticated<RateLimited<S, DescribeFn>>;

/// Verifies the bearer token of each `VerifyChain` call and marks the call with its
/// caller, for the limiter's layer inside to count.
#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    verifier: Arc<TokenVerifier>,
}

impl<S> std::fmt::Debug for Authenticated<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticated")
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}

/// Keeps the generated server's name, so the kernel routes to it and reports its health.
impl<S: NamedService> NamedService for Authenticated<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for Authenticated<S>
where
    S: Service<http::Request<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The clone that was polled ready serves this call (tower's usual swap).
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        if request.uri().path() != VERIFY_CHAIN_PATH {
            return Box::pin(inner.call(request));
        }
        // The kernel's reading of `authorization: Bearer`, as the handler reads it.
        let token =
            bearer_token(&MetadataMap::from_headers(request.headers().clone())).map(str::to_owned);
        let verifier = Arc::clone(&self.verifier);
        Box::pin(async move {
            if let Some(token) = token
                && let Ok(caller) = verifier.verify(&token).await
            {
                request
                    .extensions_mut()
                    .insert(VerifiedCaller(caller.actor_id()));
            }
            inner.call(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use bulwark_limiter::limits::Policy;
    use bulwark_limiter::{Rate, Unit};
    use bulwark_proto::audit::v1::audit_service_server::SERVICE_NAME;

    use super::*;

    #[test]
    fn the_limited_path_is_the_generated_servers_verify_chain() {
        assert_eq!(VERIFY_CHAIN_PATH, format!("/{SERVICE_NAME}/VerifyChain"));
    }

    fn limits(text: &str) -> Limits {
        Limits::parse("limits.yaml", text).unwrap_or_else(|e| panic!("refused: {e}"))
    }

    #[test]
    fn the_shipped_file_limits_verify_chain_per_caller() {
        let shipped = limits(include_str!("../limits.yaml"));
        assert!(check_limits(&shipped, Path::new("limits.yaml")).is_ok());
        let domain = shipped
            .domain(DOMAIN)
            .unwrap_or_else(|| panic!("no domain {DOMAIN}"));
        match domain.find(&descriptor("0192f0c4-7d4e-7b1a-9f00-000000000001").entries) {
            Lookup::Rule(rule) => assert_eq!(
                rule.policy,
                Policy::Limited(Rate {
                    requests_per_unit: 6,
                    unit: Unit::Minute
                })
            ),
            Lookup::NoLimit => panic!("the shipped file does not limit VerifyChain"),
        }
    }

    #[test]
    fn a_file_without_a_verify_chain_limit_is_refused_naming_the_setting() {
        for text in [
            // Another domain.
            "domain: bulwark-edge\ndescriptors:\n  - key: rpc\n    value: VerifyChain\n    descriptors:\n      - key: caller\n        rate_limit: { unit: minute, requests_per_unit: 6 }\n",
            // A misspelt key.
            "domain: bulwark-audit\ndescriptors:\n  - key: rpc\n    value: VerifyChain\n    descriptors:\n      - key: user\n        rate_limit: { unit: minute, requests_per_unit: 6 }\n",
            // A node without a limit.
            "domain: bulwark-audit\ndescriptors:\n  - key: rpc\n    value: VerifyChain\n",
        ] {
            let error = check_limits(&limits(text), Path::new("/etc/audit.yaml"))
                .err()
                .unwrap_or_else(|| panic!("accepted:\n{text}"))
                .to_string();
            assert!(
                error.contains("`audit.limits_path`")
                    && error.contains("/etc/audit.yaml sets no limit for VerifyChain"),
                "{error}"
            );
        }
        let unlimited = "domain: bulwark-audit\ndescriptors:\n  - key: rpc\n    value: VerifyChain\n    descriptors:\n      - key: caller\n        unlimited: true\n";
        assert!(check_limits(&limits(unlimited), Path::new("x")).is_ok());
    }
}
