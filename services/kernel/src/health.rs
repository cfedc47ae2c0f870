//! Liveness and readiness. `/healthz` says the process is up; `/ready` makes a real
//! round trip to every dependency (Postgres, Redis, ...) and answers 503 naming the
//! ones that failed, except those the service works without, which it only reports.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde::Serialize;

/// How long one dependency may take before it counts as down.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// A dependency that readiness checks with a real round trip.
pub trait ReadinessCheck: Send + Sync {
    fn name(&self) -> &str;
    fn check(&self) -> BoxFuture<'_, Result<(), String>>;
}

/// The outcome of one check, as `/ready` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct CheckOutcome {
    pub name: String,
    pub ok: bool,
    /// Whether a failure makes the service unready; `false` for a dependency the service
    /// works without ([`Readiness::tolerate`]).
    pub required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub latency_ms: u64,
}

/// The `/ready` body.
#[derive(Debug, Clone, Serialize)]
pub struct ReadinessReport {
    pub ready: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    pub checks: Vec<CheckOutcome>,
}

/// All readiness checks of a service, plus the draining flag set at shutdown. Clones
/// share the same checks.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Arc<RwLock<Vec<Arc<dyn ReadinessCheck>>>>,
    /// Names of the checks that are reported but never make the service unready.
    tolerated: Arc<RwLock<HashSet<String>>>,
    draining: Arc<AtomicBool>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.checks().iter().map(|c| c.name().to_owned()).collect();
        f.debug_struct("Readiness").field("checks", &names).finish()
    }
}

impl Readiness {
    pub fn add(&self, check: Arc<dyn ReadinessCheck>) {
        if let Ok(mut checks) = self.checks.write() {
            checks.push(check);
        }
    }

    /// Keeps `check` on `/ready` but no longer lets its failure make the service unready:
    /// for a dependency the service works without, such as Audit's Redis (only its
    /// limits count there, and calls go through while it is down). Unready for it,
    /// the service would be taken out of the mesh for no reason.
    pub fn tolerate(&self, check: &dyn ReadinessCheck) {
        if let Ok(mut tolerated) = self.tolerated.write() {
            tolerated.insert(check.name().to_owned());
        }
    }

    fn checks(&self) -> Vec<Arc<dyn ReadinessCheck>> {
        self.checks.read().map(|c| c.clone()).unwrap_or_default()
    }

    /// From now on the service reports not ready, so balancers stop sending to it.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Runs every check concurrently, each bounded by a timeout.
    pub async fn report(&self) -> ReadinessReport {
        let checks = self.checks();
        let tolerated = self.tolerated.read().map(|t| t.clone()).unwrap_or_default();
        let tolerated = &tolerated;
        let outcomes = futures::future::join_all(checks.iter().map(|check| async move {
            let started = Instant::now();
            let result = match tokio::time::timeout(CHECK_TIMEOUT, check.check()).await {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
            };
            CheckOutcome {
                name: check.name().to_owned(),
                ok: result.is_ok(),
                required: !tolerated.contains(check.name()),
                error: result.err(),
                latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            }
        }))
        .await;
        let draining = self.draining.load(Ordering::SeqCst);
        ReadinessReport {
            ready: !draining && outcomes.iter().all(|o| o.ok || !o.required),
            reason: draining.then_some("shutting down"),
            checks: outcomes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(&'static str, Result<(), String>);

    impl ReadinessCheck for Fixed {
        fn name(&self) -> &str {
            self.0
        }
        fn check(&self) -> BoxFuture<'_, Result<(), String>> {
            let result = self.1.clone();
            Box::pin(async move { result })
        }
    }

    struct Hangs;

    impl ReadinessCheck for Hangs {
        fn name(&self) -> &str {
            "hangs"
        }
        fn check(&self) -> BoxFuture<'_, Result<(), String>> {
            Box::pin(futures::future::pending())
        }
    }

    #[tokio::test]
    async fn one_failing_dependency_makes_the_service_unready_and_is_named() {
        let readiness = Readiness::default();
        readiness.add(Arc::new(Fixed("postgres", Ok(()))));
        readiness.add(Arc::new(Fixed("redis", Err("connection refused".into()))));
        let report = readiness.report().await;
        assert!(!report.ready);
        let redis = report.checks.iter().find(|c| c.name == "redis");
        assert_eq!(
            redis.and_then(|c| c.error.as_deref()),
            Some("connection refused")
        );
    }

    #[tokio::test]
    async fn a_tolerated_dependency_is_reported_but_leaves_the_service_ready() {
        let readiness = Readiness::default();
        let redis = Arc::new(Fixed("redis", Err("connection refused".into())));
        readiness.add(Arc::new(Fixed("postgres", Ok(()))));
        readiness.add(redis.clone());
        readiness.tolerate(redis.as_ref());
        let report = readiness.report().await;
        assert!(
            report.ready,
            "unready for a tolerated dependency: {report:?}"
        );
        let outcome = report.checks.iter().find(|c| c.name == "redis");
        assert_eq!(
            outcome.map(|c| (c.ok, c.required, c.error.as_deref())),
            Some((false, false, Some("connection refused"))),
            "{report:?}"
        );

        readiness.add(Arc::new(Fixed("postgres-2", Err("down".into()))));
        assert!(
            !readiness.report().await.ready,
            "a required dependency that failed left the service ready"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_dependency_times_out_instead_of_hanging_ready() {
        let readiness = Readiness::default();
        readiness.add(Arc::new(Hangs));
        let report = readiness.report().await;
        assert!(!report.ready);
        assert!(
            report.checks[0]
                .error
                .as_deref()
                .is_some_and(|e| e.contains("no answer")),
            "{report:?}"
        );
    }

    #[tokio::test]
    async fn draining_service_is_not_ready_even_with_healthy_dependencies() {
        let readiness = Readiness::default();
        readiness.add(Arc::new(Fixed("postgres", Ok(()))));
        assert!(readiness.report().await.ready);
        readiness.start_draining();
        let report = readiness.report().await;
        assert!(!report.ready);
        assert_eq!(report.reason, Some("shutting down"));
    }
}
